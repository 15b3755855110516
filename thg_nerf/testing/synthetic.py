"""A synthetic talking head with exact ground truth: the oracle for training, rendering and eval tests.

The head is an ellipsoid in canonical head space (decimetres, +x subject's left, +y up, +z out of the face)
with a procedural colour texture (skin with smooth colour variation, hair, baked head-space shading, so its
appearance is a pure function of the head-space point), two eyes that close with the blink signal and a mouth
whose opening follows the RMS envelope of a generated speech-like audio track. Facial features live in
"sphere coordinates" ``s = p / radii`` (``p`` on the surface, ``|s| = 1``): a feature is an ellipse in
``(s_x, s_y)`` on the front (``s_z > 0``).

The camera is static; the head moves (yaw/pitch/roll oscillations and translation). Each frame is rendered
by casting the rays of docs/DATA_FORMAT.md through the per-frame ``c2w`` into head space and intersecting
the ellipsoid analytically, with ``ss x ss`` supersampling. Behind the head: a static textured background
plate and image-space neck (label 2) and torso (label 3) layers that follow the projected head centre.
Landmarks use the mediapipe 478-point numbering for the face outline, eyes, irises and lips (the other
points cover the face), in continuous pixel coordinates (pixel ``(u, v)`` spans ``[u, u+1) x [v, v+1)``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from thg_nerf.dataset import FILES, LABELS, FrameRecord, Intrinsics

SAMPLE_RATE = 16000
FLIP = np.diag([1.0, -1.0, -1.0])  # OpenCV <-> OpenGL camera axes, also frontal head -> OpenCV camera

# mediapipe face-mesh index loops (from mediapipe's face_mesh_connections; checked in tests/test_synthetic.py).
# Eyes and lips start at the subject's-right corner of the loop (outer corner for eyes), lower part first.
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152, 148,
             176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)
RIGHT_EYE = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
LEFT_EYE = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
LIPS_OUTER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185)
LIPS_INNER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312, 13, 82, 81, 80, 191)
RIGHT_IRIS, LEFT_IRIS = (468, 469, 470, 471, 472), (473, 474, 475, 476, 477)
NOSE = (1, 4)
N_LANDMARKS = 478

COLOURS = {"skin": (0.86, 0.66, 0.53), "hair": (0.28, 0.18, 0.11), "sclera": (0.93, 0.92, 0.9),
           "iris": (0.12, 0.08, 0.06), "lips": (0.74, 0.32, 0.32), "mouth": (0.2, 0.04, 0.05),
           "neck": (0.74, 0.55, 0.44), "torso": (0.2, 0.32, 0.56)}


@dataclass(frozen=True)
class Scene:
    """Geometry and layout of the synthetic head (head space in dm, features in sphere coordinates)."""

    radii: tuple[float, float, float] = (0.75, 1.0, 0.85)
    distance: float = 5.5
    """Distance of the head centre from the camera at rest (dm)."""
    head_y: float = -0.35
    """Camera-space (OpenCV, y down) height of the head centre at rest: negative puts it above centre."""
    focal_factor: float = 1.5
    """focal = focal_factor * image width."""
    eye_centre: tuple[float, float] = (0.33, 0.12)
    """(|s_x|, s_y) of the eye centres."""
    eye_size: tuple[float, float] = (0.13, 0.075)
    """Half-width and open half-height of an eye."""
    iris_radius: float = 0.055
    mouth_centre: tuple[float, float] = (0.0, -0.5)
    lips_size: tuple[float, float, float] = (0.24, 0.05, 0.13)
    """Half-width, closed half-height and extra half-height at full opening of the lips."""
    mouth_size: tuple[float, float] = (0.19, 0.12)
    """Half-width and half-height at full opening of the dark mouth interior."""
    head_bound: float = 1.2
    seed: int = 0
    """Seed of the background texture."""

    def intrinsics(self, size: int) -> Intrinsics:
        """The camera for a square image of ``size`` pixels."""
        return Intrinsics(self.focal_factor * size, size / 2.0, size / 2.0, size, size)

    def rest_translation(self) -> np.ndarray:
        """Head-to-camera translation at rest (OpenCV camera, dm)."""
        return np.array([0.0, self.head_y, self.distance])

    def surface_point(self, s_xy: np.ndarray) -> np.ndarray:
        """Head-space points [..., 3] on the front of the ellipsoid at sphere coordinates [..., 2]."""
        s_xy = np.asarray(s_xy, dtype=np.float64)
        s_z = np.sqrt(np.clip(1.0 - (s_xy**2).sum(-1), 0.0, None))
        return np.concatenate([s_xy, s_z[..., None]], axis=-1) * np.asarray(self.radii)

    def mouth_point(self) -> np.ndarray:
        """Head-space centre of the mouth [3]."""
        return self.surface_point(self.mouth_centre)


@dataclass
class SyntheticInfo:
    """Ground truth of a generated dataset (N frames)."""

    root: Path
    scene: Scene
    intrinsics: Intrinsics
    fps: float
    c2w: np.ndarray
    """[N, 4, 4] camera-to-world (OpenGL) as written to transforms_*.json."""
    rotation: np.ndarray
    """[N, 3, 3] head-to-camera rotation (OpenCV)."""
    translation: np.ndarray
    """[N, 3] head-to-camera translation (dm)."""
    mouth_open: np.ndarray
    """[N] mouth opening in [0, 1] (= envelope / max envelope)."""
    eye: np.ndarray
    """[N] blink signal in [0, 1] (1 = closed)."""
    envelope: np.ndarray
    """[N] RMS audio envelope per frame (thg_nerf.audio.io.audio_envelope)."""
    landmarks: np.ndarray
    """[N, 478, 2] projected landmarks (continuous pixels)."""
    wave: np.ndarray
    """[n_samples] float32 audio at SAMPLE_RATE."""
    train_ids: list[int] = field(default_factory=list)
    val_ids: list[int] = field(default_factory=list)

    @property
    def n_frames(self) -> int:
        return len(self.c2w)

    def path(self, key: str) -> Path:
        """Path of a dataset file by its key in ``thg_nerf.dataset.FILES``."""
        return self.root / FILES[key]

    def render(self, i: int, ss: int = 2) -> tuple[np.ndarray, np.ndarray]:
        """Ground-truth frame ``i``: (rgb [H, W, 3] float in [0, 1], labels [H, W] uint8)."""
        return render_synthetic_frame(self.c2w[i], self.intrinsics, self.mouth_open[i], self.eye[i],
                                      self.scene, ss)


# ---------------------------------------------------------------- poses and cameras


def rotation_xyz(yaw: np.ndarray, pitch: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """Head rotations [N, 3, 3] = Ry(yaw) @ Rx(pitch) @ Rz(roll) (radians, head-space axes)."""
    def rot(axis: int, ang: np.ndarray) -> np.ndarray:
        c, s = np.cos(ang), np.sin(ang)
        i, j = [k for k in range(3) if k != axis]
        m = np.zeros(np.shape(ang) + (3, 3))
        m[..., axis, axis] = 1.0
        m[..., i, i], m[..., j, j], m[..., i, j], m[..., j, i] = c, c, -s, s
        return m

    return rot(1, np.asarray(yaw)) @ rot(0, np.asarray(pitch)) @ rot(2, np.asarray(roll))


def head_motion(n_frames: int, fps: float, motion_deg: float, seed: int, scene: Scene
                ) -> tuple[np.ndarray, np.ndarray]:
    """Smooth head motion: (R [N, 3, 3] head-to-camera OpenCV, t [N, 3] dm).

    Yaw/pitch/roll oscillate with amplitudes motion_deg x (1, 0.6, 0.4); the head also drifts by up to
    +-0.12 dm sideways, +-0.06 dm vertically and +-0.2 dm in depth.
    """
    rng = np.random.default_rng(seed + 101)
    t = np.arange(n_frames) / fps

    def osc(amp: float, freq: float) -> np.ndarray:
        return amp * np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi))

    ang = np.deg2rad(motion_deg)
    rot = FLIP @ rotation_xyz(osc(ang, 0.29), osc(0.6 * ang, 0.41), osc(0.4 * ang, 0.17))
    trans = scene.rest_translation() + np.stack([osc(0.12, 0.13), osc(0.06, 0.23), osc(0.2, 0.11)], axis=1)
    return rot, trans


def c2w_from_rt(rot: np.ndarray, trans: np.ndarray) -> np.ndarray:
    """Camera-to-world [..., 4, 4] (OpenGL) from head-to-camera R [..., 3, 3], t [..., 3] (OpenCV):
    ``inv([R t; 0 1]) @ diag(1, -1, -1, 1)`` (docs/DATA_FORMAT.md)."""
    rot_t = np.swapaxes(rot, -1, -2)
    out = np.zeros(rot.shape[:-2] + (4, 4))
    out[..., :3, :3] = rot_t @ FLIP
    out[..., :3, 3] = -(rot_t @ trans[..., None])[..., 0]
    out[..., 3, 3] = 1.0
    return out


def rt_from_c2w(c2w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`c2w_from_rt`: (R [..., 3, 3], t [..., 3])."""
    rot = np.swapaxes(c2w[..., :3, :3] @ FLIP, -1, -2)
    return rot, -(rot @ c2w[..., :3, 3, None])[..., 0]


def project(points: np.ndarray, rot: np.ndarray, trans: np.ndarray, intr: Intrinsics) -> np.ndarray:
    """Continuous pixel coordinates [..., 2] of head-space points [..., 3] (pixel (u, v) centre = u + 0.5)."""
    cam = points @ rot.T + trans
    return intr.focal * cam[..., :2] / cam[..., 2:3] + np.array([intr.cx, intr.cy])


def pixel_rays(c2w: np.ndarray, intr: Intrinsics, x: np.ndarray, y: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
    """Rays through continuous image points x, y (pixel (u, v) centre is x = u + 0.5): (origin [3], dirs [..., 3])."""
    d = np.stack([(x - intr.cx) / intr.focal, -(y - intr.cy) / intr.focal, -np.ones_like(x)], axis=-1)
    return c2w[:3, 3], d @ c2w[:3, :3].T


def ray_ellipsoid(origin: np.ndarray, dirs: np.ndarray, radii) -> np.ndarray:
    """Distance along each ray [...] to the first hit of the origin-centred ellipsoid (inf on a miss)."""
    r = np.asarray(radii, dtype=np.float64)
    o, d = origin / r, dirs / r
    a = (d * d).sum(-1)
    b = (o * d).sum(-1)
    c = (o * o).sum() - 1.0
    disc = b * b - a * c
    t = (-b - np.sqrt(np.maximum(disc, 0.0))) / a
    return np.where((disc > 0) & (t > 0), t, np.inf)


# ---------------------------------------------------------------- appearance


def _ellipse_inside(sx: np.ndarray, sy: np.ndarray, centre, half_w: float, half_h: float) -> np.ndarray:
    return ((sx - centre[0]) / half_w) ** 2 + ((sy - centre[1]) / max(half_h, 1e-9)) ** 2 < 1.0


def head_texture(s: np.ndarray, mouth_open: float, eye: float, scene: Scene) -> np.ndarray:
    """Colour [..., 3] of the head at sphere coordinates s [..., 3] for a mouth opening and eye signal."""
    sx, sy, sz = s[..., 0], s[..., 1], s[..., 2]
    wobble = np.stack([np.sin(5 * sx + 1.0) * np.cos(4 * sy), np.sin(7 * sz + 3 * sy), np.cos(6 * sx - 2 * sy)],
                      axis=-1)
    rgb = np.asarray(COLOURS["skin"]) + 0.07 * wobble
    hair = sy + 0.3 * sz > 0.62
    rgb[hair] = np.asarray(COLOURS["hair"]) + 0.06 * np.sin(30 * sx[hair] + 8 * sz[hair])[:, None]
    front = sz > 0.2
    ex, ey = scene.eye_centre
    eh = scene.eye_size[1] * (1.0 - float(eye))
    for cx in (-ex, ex):
        socket = front & _ellipse_inside(sx, sy, (cx, ey), scene.eye_size[0], eh)
        rgb[socket] = COLOURS["sclera"]
        rgb[socket & _ellipse_inside(sx, sy, (cx, ey), scene.iris_radius, scene.iris_radius)] = COLOURS["iris"]
    lw, lh0, lh1 = scene.lips_size
    rgb[front & _ellipse_inside(sx, sy, scene.mouth_centre, lw, lh0 + lh1 * mouth_open)] = COLOURS["lips"]
    mw, mh = scene.mouth_size
    rgb[front & _ellipse_inside(sx, sy, scene.mouth_centre, mw, mh * mouth_open)] = COLOURS["mouth"]
    return rgb * (0.72 + 0.28 * np.clip(sz, 0.0, 1.0))[..., None]


def background(xn: np.ndarray, yn: np.ndarray, seed: int = 0) -> np.ndarray:
    """Smooth static background colour [..., 3] at normalised image coordinates (x / w, y / h)."""
    ph = np.random.default_rng(seed + 7).uniform(0, 2 * np.pi, 3)
    return np.clip(np.stack([0.5 + 0.2 * yn + 0.08 * np.sin(6 * xn + ph[0]) * np.cos(5 * yn),
                             0.58 + 0.07 * np.cos(4 * xn + 3 * yn + ph[1]),
                             0.66 - 0.16 * xn + 0.06 * np.sin(7 * yn + ph[2])], axis=-1), 0.0, 1.0)


def _body_layers(xn: np.ndarray, yn: np.ndarray, head_uv: np.ndarray, rest_uv: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Neck and torso masks and their colours [..., 3] (torso over neck) in normalised image coordinates."""
    du, dv = head_uv - rest_uv
    neck_x = head_uv[0] + 0.2 * du
    neck = (np.abs(xn - neck_x) < 0.1) & (yn > head_uv[1])
    tx, ty = 0.5 + 0.6 * du, 1.18 + 0.3 * dv
    torso = ((xn - tx) / 0.48) ** 2 + ((yn - ty) / 0.3) ** 2 < 1.0
    neck_rgb = np.asarray(COLOURS["neck"]) * (1.0 - 2.0 * np.abs(xn - neck_x))[..., None]
    stripes = 0.05 * np.sin(45 * (xn - tx))[..., None]
    torso_rgb = np.asarray(COLOURS["torso"]) * (1.0 - 0.5 * np.abs(xn - tx))[..., None] + stripes
    return neck, torso, np.where(torso[..., None], torso_rgb, neck_rgb)


def render_synthetic_frame(c2w: np.ndarray, intrinsics: Intrinsics, mouth_open: float, eye: float,
                           scene: Scene | None = None, ss: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Ground-truth image for any camera pose / mouth / eye state.

    Returns (rgb [H, W, 3] float64 in [0, 1], the ``ss x ss`` supersample mean; labels [H, W] uint8, the
    majority label of the supersamples, ties to the front layer). ``c2w`` is [4, 4] (OpenGL, head space).
    """
    scene = scene or Scene()
    c2w = np.asarray(c2w, dtype=np.float64)
    w, h = intrinsics.w, intrinsics.h
    x, y = _sample_grid(w, h, ss)
    origin, dirs = pixel_rays(c2w, intrinsics, x, y)
    t_hit = ray_ellipsoid(origin, dirs, scene.radii)
    head = np.isfinite(t_hit)
    rot, trans = rt_from_c2w(c2w)
    rest = project(np.zeros(3), FLIP, scene.rest_translation(), intrinsics)
    head_uv = project(np.zeros(3), rot, trans, intrinsics)
    size = np.array([w, h], dtype=np.float64)
    neck, torso, body_rgb = _body_layers(x / w, y / h, head_uv / size, rest / size)
    rgb = np.where((neck | torso)[..., None], body_rgb, background(x / w, y / h, scene.seed))
    s = (origin + t_hit[head][:, None] * dirs[head]) / np.asarray(scene.radii)
    rgb[head] = head_texture(s, float(mouth_open), float(eye), scene)
    label = np.select([head, torso, neck], [LABELS["head"], LABELS["torso"], LABELS["neck"]], LABELS["background"])
    counts = _pool(np.stack([label == k for k in range(len(LABELS))], axis=-1), ss)
    priority = np.array([0.0, 0.3, 0.1, 0.2]) / (ss * ss)  # ties: head > torso > neck > background
    labels = np.argmax(counts + priority, axis=-1).astype(np.uint8)
    return _pool(np.clip(rgb, 0, 1), ss), labels


def background_plate(w: int, h: int, seed: int = 0, ss: int = 2) -> np.ndarray:
    """The background layer alone, supersampled like the frames: [H, W, 3] float in [0, 1]."""
    x, y = _sample_grid(w, h, ss)
    return _pool(background(x / w, y / h, seed), ss)


def _sample_grid(w: int, h: int, ss: int) -> tuple[np.ndarray, np.ndarray]:
    """Continuous image coordinates x, y [h * ss, w * ss] of ss x ss samples per pixel (row v * ss + k)."""
    offs = (np.arange(ss) + 0.5) / ss
    return np.meshgrid((np.arange(w)[:, None] + offs).reshape(-1), (np.arange(h)[:, None] + offs).reshape(-1))


def _pool(a: np.ndarray, ss: int) -> np.ndarray:
    """Mean over ss x ss sample blocks: [h * ss, w * ss, C] -> [h, w, C]."""
    return a.reshape(a.shape[0] // ss, ss, a.shape[1] // ss, ss, -1).mean((1, 3))


def dark_centroid(rgb: np.ndarray, box, dark: float, bright: float) -> np.ndarray:
    """Centroid (continuous pixels, [2]) of the dark pixels of ``rgb`` [H, W, 3] inside ``box`` (x0, y0, x1, y1).

    Pixels are weighted by darkness: 0 at colour sum ``bright``, 1 at ``dark`` and below, so anti-aliased
    edges count by coverage. Used to locate the rendered mouth interior and irises.
    """
    box = np.asarray(box, dtype=np.float64)
    x0, y0 = np.maximum(np.floor(box[:2]).astype(int), 0)
    x1, y1 = np.ceil(box[2:]).astype(int)
    weight = np.clip((bright - rgb[y0:y1, x0:x1].sum(-1)) / (bright - dark), 0.0, 1.0)
    if weight.sum() <= 0:
        raise ValueError(f"no dark pixels in box {box.tolist()}")
    yy, xx = np.mgrid[y0:y1, x0:x1] + 0.5
    return np.array([(weight * xx).sum(), (weight * yy).sum()]) / weight.sum()


# ---------------------------------------------------------------- landmarks


def _loop_xy(loop: tuple[int, ...], centre, half_w: float, half_h: float, start: float, turn: float
             ) -> dict[int, np.ndarray]:
    ang = start + turn * 2 * np.pi * np.arange(len(loop)) / len(loop)
    pts = np.stack([centre[0] + half_w * np.cos(ang), centre[1] + half_h * np.sin(ang)], axis=1)
    return dict(zip(loop, pts))


def landmarks_3d(mouth_open: float, eye: float, scene: Scene | None = None) -> np.ndarray:
    """Head-space landmarks [478, 3] on the rendered features: lid and lip contours follow the eye signal
    and the mouth opening, irises sit at the eye centres, the face outline and other points on the face."""
    scene = scene or Scene()
    ex, ey = scene.eye_centre
    eh = scene.eye_size[1] * (1.0 - eye)
    lw, lh0, lh1 = scene.lips_size
    xy = _loop_xy(FACE_OVAL, (0.0, -0.25), 0.8, 0.6, np.pi / 2, -1.0)
    xy.update(_loop_xy(RIGHT_EYE, (-ex, ey), scene.eye_size[0], eh, np.pi, 1.0))
    xy.update(_loop_xy(LEFT_EYE, (ex, ey), scene.eye_size[0], eh, 0.0, -1.0))
    xy.update(_loop_xy(LIPS_OUTER, scene.mouth_centre, lw, lh0 + lh1 * mouth_open, np.pi, 1.0))
    xy.update(_loop_xy(LIPS_INNER, scene.mouth_centre, scene.mouth_size[0], scene.mouth_size[1] * mouth_open,
                       np.pi, 1.0))
    for cx, iris in ((-ex, RIGHT_IRIS), (ex, LEFT_IRIS)):
        xy[iris[0]] = np.array([cx, ey])
        xy.update(_loop_xy(iris[1:], (cx, ey), scene.iris_radius, scene.iris_radius, 0.0, 1.0))
    xy.update({NOSE[0]: np.array([0.0, -0.18]), NOSE[1]: np.array([0.0, -0.24])})
    rest = [i for i in range(N_LANDMARKS) if i not in xy]
    k = np.arange(len(rest)) + 0.5
    r, a = 0.95 * np.sqrt(k / len(rest)), k * np.pi * (3.0 - np.sqrt(5.0))
    xy.update(zip(rest, np.stack([0.78 * r * np.cos(a), -0.25 + 0.58 * r * np.sin(a)], axis=1)))
    return scene.surface_point(np.stack([xy[i] for i in range(N_LANDMARKS)]))


# ---------------------------------------------------------------- signals and dataset


def blink_signal(n_frames: int, fps: float, seed: int) -> np.ndarray:
    """Blinks (triangular, 0.24 s) roughly every 2.5 s: [N] float in [0, 1], 1 = closed."""
    rng = np.random.default_rng(seed + 202)
    t = np.arange(n_frames) / fps
    starts = np.cumsum(rng.uniform(1.8, 3.2, int(n_frames / fps / 1.8) + 2)) - 1.2
    return np.clip(1.0 - np.abs(t[:, None] - starts[None]) / 0.12, 0.0, 1.0).max(axis=1)


def make_synthetic_dataset(out_dir: str | Path, n_frames: int = 120, size: int = 128, fps: float = 25.0,
                           seed: int = 0, motion_deg: float = 8.0, scene: Scene | None = None,
                           val_fraction: float = 1.0 / 11.0, overwrite: bool = False) -> SyntheticInfo:
    """Write a complete dataset directory (docs/DATA_FORMAT.md) of the synthetic head and return its truth.

    ``size`` must be even. Audio: a speech-like signal (thg_nerf.testing.signals.speech_like), features
    ``mel``; the mouth opening is the per-frame RMS envelope over its maximum. The last ``val_fraction`` of the
    frames (at least one) is the validation split.
    """
    from thg_nerf import dataset as ds
    from thg_nerf.audio.features import extract_features, feature_shape
    from thg_nerf.audio.io import audio_envelope, write_wav
    from thg_nerf.log import progress
    from thg_nerf.testing.signals import speech_like
    from thg_nerf.utils.fs import atomic_dir, write_json

    if n_frames < 2 or size < 16 or size % 2 or fps <= 0:
        raise ValueError(f"need n_frames >= 2, an even size >= 16 and fps > 0, got {n_frames}, {size}, {fps}")
    t_start = time.perf_counter()
    scene = scene or Scene(seed=seed)
    intr = scene.intrinsics(size)
    rot, trans = head_motion(n_frames, fps, motion_deg, seed, scene)
    c2w = c2w_from_rt(rot, trans)
    wave = speech_like(n_frames / fps, SAMPLE_RATE, seed=seed)
    envelope = audio_envelope(wave, SAMPLE_RATE, fps, n_frames)
    mouth = envelope / max(float(envelope.max()), 1e-12)
    eye = blink_signal(n_frames, fps, seed)
    lms = np.stack([project(landmarks_3d(m, e, scene), r, t, intr) for m, e, r, t in zip(mouth, eye, rot, trans)])
    n_val = max(1, int(round(n_frames * val_fraction)))
    ids = list(range(n_frames))
    info = SyntheticInfo(root=Path(out_dir), scene=scene, intrinsics=intr, fps=fps, c2w=c2w, rotation=rot,
                         translation=trans, mouth_open=mouth, eye=eye, envelope=envelope,
                         landmarks=lms.astype(np.float32), wave=wave, train_ids=ids[:-n_val], val_ids=ids[-n_val:])
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        with ds.frames_writer(tmp, (size, size), fps) as fw, ds.masks_writer(tmp, (size, size), fps) as mw:
            for i in progress(range(n_frames), desc="rendering synthetic frames", unit="frame"):
                rgb, labels = info.render(i)
                fw.write(np.round(rgb * 255).astype(np.uint8))
                mw.write(ds.encode_mask(labels))
        ds.write_background(tmp, np.round(background_plate(size, size, scene.seed) * 255))
        write_wav(tmp / FILES["audio"], wave, SAMPLE_RATE)
        np.save(tmp / FILES["audio_features"],
                extract_features(wave, SAMPLE_RATE, fps, n_frames, "mel").astype(np.float16))
        for split, split_ids in (("train", info.train_ids), ("val", info.val_ids)):
            ds.write_transforms(tmp, split, intr, [FrameRecord(i, i, c2w[i], float(eye[i])) for i in split_ids])
        boxes = np.concatenate([lms.min(axis=1), lms.max(axis=1)], axis=1)
        lips = lms[:, list(LIPS_OUTER)]
        ds.write_tracking(tmp, landmarks=lms.astype(np.float32), valid=np.ones(n_frames, bool),
                          rotation=rot.astype(np.float32), translation=trans.astype(np.float32),
                          eye=eye.astype(np.float32), face_box=boxes.astype(np.float32),
                          mouth_box=np.concatenate([lips.min(1), lips.max(1)], axis=1).astype(np.float32),
                          shape=landmarks_3d(0.0, 0.0, scene).astype(np.float32),
                          mouth_open=mouth.astype(np.float32))
        duration = n_frames / fps
        ds.write_meta(tmp, {
            "fps": fps, "n_frames": n_frames, "w": size, "h": size, "units": "dm", "head_bound": scene.head_bound,
            "source": {"path": "synthetic", "w": size, "h": size, "fps": fps, "duration": duration},
            "crop": None, "labels": LABELS,
            "audio": {"sample_rate": SAMPLE_RATE, "features": "mel", "feature_shape": list(feature_shape("mel"))},
            "synthetic": {"seed": seed, "motion_deg": motion_deg},
        })
        write_json(tmp / "report.json", {
            "frames": n_frames, "fps": fps, "duration": duration, "faces_missing": 0, "excluded": [],
            "tracking": {"synthetic": True, "reprojection_px": 0.0},
            "timings_s": {"total": round(time.perf_counter() - t_start, 3)},
        })
    return info
