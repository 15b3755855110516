"""Synthetic 3D face landmarks with known camera, head poses and expressions: the tracker's test oracle.

:func:`face_shape` builds a face-like 478-point shape in head space (decimetres; +x subject's left, +y up,
+z out of the face) with the eyes, irises, brows, lips, nose and face outline at their mediapipe indices
(from :func:`thg_nerf.preprocess.topology.mediapipe_topology`); the other points cover the face surface.
:func:`synthetic_sequence` moves it with realistic head motion and low-rank expressions (jaw, smile, blinks,
brows), projects it through a pinhole camera with pixel noise, and also returns a mediapipe-like relative
depth (camera-space depth about the head centre, in the scale of x, normalised by the image width).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from thg_nerf.preprocess.topology import Topology, mediapipe_topology

#: Distance between the eye-contour centroids of the synthetic face (dm): the tracker's scale prior.
INTEROCULAR_DM = 0.63


@dataclass
class SyntheticLandmarks:
    """A projected landmark sequence and its ground truth (N frames, L landmarks)."""

    landmarks: np.ndarray
    """[N, L, 2] float32 noisy 2D landmarks in pixels."""
    z_rel: np.ndarray
    """[N, L] float32 mediapipe-like relative depth (pixels / w; smaller = closer)."""
    rotation: np.ndarray
    """[N, 3, 3] head-to-camera rotations (OpenCV camera)."""
    translation: np.ndarray
    """[N, 3] head-to-camera translations (dm)."""
    shape: np.ndarray
    """[L, 3] identity shape in head space (dm)."""
    offsets: np.ndarray
    """[N, L, 3] per-frame expression offsets in head space (dm)."""
    coefficients: np.ndarray
    """[N, K] expression coefficients."""
    focal: float
    cx: float
    cy: float
    w: int
    h: int
    fps: float
    topology: Topology

    def camera_points(self) -> np.ndarray:
        """[N, L, 3] landmark positions in camera space (dm)."""
        x = self.shape[None] + self.offsets
        return np.einsum("nij,nlj->nli", self.rotation, x) + self.translation[:, None]


def _halton(n: int, base: int) -> np.ndarray:
    out = np.zeros(n)
    for i in range(n):
        f, k, r = 1.0, i + 1, 0.0
        while k:
            f /= base
            r += f * (k % base)
            k //= base
        out[i] = r
    return out


def _ellipse(loop: tuple[int, ...], centre: tuple[float, float], ax: float, ay: float, start_deg: float,
             clockwise: bool) -> dict[int, tuple[float, float]]:
    """Evenly spaced points of a loop on an ellipse, from angle ``start_deg``."""
    sign = -1.0 if clockwise else 1.0
    ang = np.deg2rad(start_deg) + sign * 2 * np.pi * np.arange(len(loop)) / len(loop)
    return {i: (centre[0] + ax * np.cos(a), centre[1] + ay * np.sin(a)) for i, a in zip(loop, ang)}


def _depth(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Face surface depth z(x, y): an ellipsoid cap with a nose and eye sockets (dm)."""
    r2 = (x / 0.9) ** 2 + ((y + 0.15) / 1.3) ** 2
    z = 0.85 * np.sqrt(np.clip(1.0 - r2, 0.0, None))
    z += 0.32 * np.exp(-(x**2 / 0.008 + (y + 0.25) ** 2 / 0.05))
    for ex in (-0.315, 0.315):
        z -= 0.08 * np.exp(-((x - ex) ** 2 + y**2) / 0.012)
    return z


def face_shape(topology: Topology | None = None) -> np.ndarray:
    """A face-like identity shape [L, 3] (dm) in mediapipe landmark order."""
    topo = topology or mediapipe_topology()
    xy: dict[int, tuple[float, float]] = {}
    xy.update(_ellipse(topo.face_oval, (0.0, -0.15), 0.72, 1.05, 90.0, clockwise=True))
    # eyes start at the outer corner and walk the lower lid first
    xy.update(_ellipse(topo.left_eye, (0.315, 0.0), 0.14, 0.055, 0.0, clockwise=True))
    xy.update(_ellipse(topo.right_eye, (-0.315, 0.0), 0.14, 0.055, 180.0, clockwise=False))
    for centre_x, ring in ((-0.315, topo.irises[:5]), (0.315, topo.irises[5:])):
        xy[ring[0]] = (centre_x, 0.0)
        xy.update(_ellipse(ring[1:], (centre_x, 0.0), 0.05, 0.05, 0.0, clockwise=False))
    outer, inner = _lip_loops(topo)
    xy.update(_ellipse(outer, (0.0, -0.62), 0.25, 0.09, 180.0, clockwise=False))
    xy.update(_ellipse(inner, (0.0, -0.62), 0.2, 0.02, 180.0, clockwise=False))
    brows = sorted(topo.brows)
    half = len(brows) // 2
    for side, ids in ((1.0, brows[half:]), (-1.0, brows[:half])):
        for k, i in enumerate(sorted(ids)):
            xy[i] = (side * (0.14 + 0.34 * k / max(len(ids) - 1, 1)), 0.2 + 0.04 * (k % 2))
    ridge = (168, 6, 197, 195, 5, 4, 1, 19, 94, 2)
    for k, i in enumerate(ridge):
        xy[i] = (0.0, 0.08 - 0.5 * k / (len(ridge) - 1))
    rest = [i for i in range(topo.n) if i not in xy]
    u, v = _halton(len(rest), 2), _halton(len(rest), 3)
    r, a = 0.93 * np.sqrt(u), 2 * np.pi * v
    for i, rr, aa in zip(rest, r, a):
        xy[i] = (0.72 * rr * np.cos(aa), -0.15 + 1.05 * rr * np.sin(aa))
    pts = np.array([xy[i] for i in range(topo.n)], dtype=np.float64)
    return np.concatenate([pts, _depth(pts[:, 0], pts[:, 1])[:, None]], axis=1)


def _lip_loops(topo: Topology) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Outer and inner lip loops of the mediapipe mesh, each from the subject's right corner, lower lip first."""
    from mediapipe.python.solutions import face_mesh_connections as fmc

    from thg_nerf.preprocess.topology import order_loop

    edges = list(fmc.FACEMESH_LIPS)
    inner_ids = {78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312, 13, 82, 81, 80, 191}
    outer = order_loop([e for e in edges if e[0] not in inner_ids], 61, second_half=0)
    inner = order_loop([e for e in edges if e[0] in inner_ids], 78, second_half=13)
    return tuple(outer), tuple(inner)


def expression_basis(shape: np.ndarray, topology: Topology | None = None) -> np.ndarray:
    """Four expression modes [4, L, 3] (dm per unit coefficient): jaw open, smile, blink, brow raise."""
    topo = topology or mediapipe_topology()
    x, y = shape[:, 0], shape[:, 1]
    basis = np.zeros((4,) + shape.shape)
    below = np.clip((-0.6 - y) / 0.5, 0.0, 1.0)
    lower_lip = [i for i in topo.lips if y[i] < -0.625]
    below[lower_lip] = np.maximum(below[lower_lip], 0.6)
    basis[0, :, 1] = -0.18 * below
    basis[0, :, 2] = -0.03 * below
    for side in (-1.0, 1.0):
        g = np.exp(-((x - side * 0.25) ** 2 + (y + 0.62) ** 2) / 0.01)
        basis[1, :, 0] += side * 0.05 * g
        basis[1, :, 1] += 0.03 * g
    for eye in (topo.left_eye, topo.right_eye):
        upper = [i for i in eye if y[i] > 1e-6]
        basis[2, upper, 1] = -0.9 * y[upper]
    basis[3, list(topo.brows), 1] = 0.05
    return basis


def _rot(axis: int, ang: np.ndarray) -> np.ndarray:
    c, s = np.cos(ang), np.sin(ang)
    m = np.zeros(ang.shape + (3, 3))
    i, j = [k for k in range(3) if k != axis]
    m[..., axis, axis] = 1.0
    m[..., i, i], m[..., j, j] = c, c
    m[..., i, j], m[..., j, i] = -s, s
    return m


def synthetic_sequence(n_frames: int = 300, fps: float = 25.0, size: tuple[int, int] = (512, 512),
                       focal: float = 1100.0, distance: float = 7.5, noise_px: float = 1.0,
                       z_scale: float = 0.85, seed: int = 0) -> SyntheticLandmarks:
    """A talking head: smooth head motion (yaw +-24 deg, pitch +-10, roll +-5, a few cm of translation),
    speech-like jaw motion, blinks, smiles and brow raises, projected with ``noise_px`` Gaussian noise.

    ``z_scale`` flattens the mediapipe-like depth (mediapipe's own z is only roughly metric).
    """
    rng = np.random.default_rng(seed)
    topo = mediapipe_topology()
    shape = face_shape(topo)
    basis = expression_basis(shape, topo)
    t = np.arange(n_frames) / fps

    def wave(amp: float, *freqs: float) -> np.ndarray:
        out = np.zeros(n_frames)
        for f in freqs:
            out += np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
        return amp * out / len(freqs)

    yaw, pitch, roll = (np.deg2rad(wave(24, 0.11, 0.37)), np.deg2rad(wave(10, 0.17, 0.53)),
                        np.deg2rad(wave(5, 0.09, 0.29)))
    r_head = _rot(1, yaw) @ _rot(0, pitch) @ _rot(2, roll)
    rotation = np.diag([1.0, -1.0, -1.0])[None] @ r_head
    translation = np.stack([wave(0.3, 0.07, 0.23), wave(0.2, 0.05, 0.31),
                            distance + wave(0.5, 0.04, 0.19)], axis=1)
    jaw = np.clip(np.abs(wave(1.0, 3.1, 4.7, 5.9)) * (0.6 + 0.4 * np.sin(2 * np.pi * 0.3 * t)) - 0.1, 0, 1)
    blink = np.zeros(n_frames)
    for start in np.arange(rng.uniform(0.5, 1.5), t[-1] if n_frames else 0, 3.2):
        blink = np.maximum(blink, np.exp(-((t - start) / 0.06) ** 2))
    coefficients = np.stack([jaw, 0.5 + wave(0.5, 0.13), blink, 0.5 + wave(0.5, 0.21)], axis=1)
    offsets = np.einsum("nk,kld->nld", coefficients, basis)
    seq = SyntheticLandmarks(landmarks=np.zeros(0), z_rel=np.zeros(0), rotation=rotation,
                             translation=translation, shape=shape, offsets=offsets, coefficients=coefficients,
                             focal=float(focal), cx=size[0] / 2, cy=size[1] / 2, w=size[0], h=size[1], fps=fps,
                             topology=topo)
    cam = seq.camera_points()
    uv = focal * cam[..., :2] / cam[..., 2:3] + np.array([seq.cx, seq.cy])
    seq.landmarks = (uv + rng.normal(0.0, noise_px, uv.shape)).astype(np.float32)
    centre_z = cam[..., 2].mean(axis=1, keepdims=True)
    z_rel = z_scale * (cam[..., 2] - centre_z) * focal / centre_z / size[0]
    seq.z_rel = (z_rel + rng.normal(0.0, 0.5 * noise_px / size[0], z_rel.shape)).astype(np.float32)
    return seq
