"""Head-pose paths for rendering: camera-to-world matrices [n, 4, 4] in head space (pure numpy).

Conventions (see docs/DATA_FORMAT.md): world = canonical head space in decimetres, origin at the head centre,
+x towards the subject's left, +y up, +z out of the face; ``c2w`` is in the OpenGL camera convention.

Modes (:func:`build_pose_path`):

- ``track``: replays the training poses at their own speed, ping-pong (forwards, backwards, ...).
- ``static``: the mean training pose (rotation: SVD projection of the summed rotations; mean position).
- ``orbit``: the static pose swung about the head's vertical axis through the head centre,
  ``yaw(t) = orbit_deg * sin(2 pi t / orbit_period)``.
- ``file:PATH``: one pose per output frame from JSON, CSV or NPY (see :func:`load_pose_file`).

Offsets (``yaw``, ``pitch``, ``roll`` in degrees) rotate the camera about the head centre on top of any
mode: the rotation ``O = Ry(yaw) @ Rx(-pitch) @ Rz(roll)`` is applied as ``c2w' = [O 0; 0 1] @ c2w``.
Positive yaw moves the camera towards the subject's left (+x; the face appears turned towards the image's
left), positive pitch raises the camera (looking down on the head), positive roll turns the camera
counter-clockwise about the head's forward axis (the picture turns clockwise).

``smooth`` is a Gaussian low-pass with a standard deviation of ``smooth`` seconds, applied to the rotation
(as rotation vectors relative to the path's mean rotation) and to the head centre in camera coordinates
(the world-to-camera translation), so paths that rotate about the head centre keep their distance.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from thg_nerf.errors import ThgError

POSE_MODES = ("track", "static", "orbit", "file:PATH")
#: Tolerance on ``R^T R - I`` for rotations read from pose files.
ROTATION_TOL = 1e-3
_ANGLE_COLS = ("yaw", "pitch", "roll")
_TRANS_COLS = ("tx", "ty", "tz")

POSE_FILE_HELP = """\
Pose files (--pose file:PATH) hold exactly one pose per output frame (round(audio duration x fps)):
  NPY : [n, 4, 4] or [n, 3, 4] camera-to-world matrices; or [n, 3] yaw, pitch, roll (degrees);
        or [n, 6] yaw, pitch, roll, tx, ty, tz.
  CSV : one row per frame, comma separated. Without a header: 16 (row-major 4x4) or 12 (3x4) matrix values,
        or 3 / 6 values as above. With a header: columns named yaw, pitch, roll, tx, ty, tz (any subset,
        others such as 'frame' or 'time' are ignored).
  JSON: a list of 4x4 matrices; or {"frames": [{"transform_matrix": 4x4}, ...]} (transforms_*.json);
        or a list (or {"frames": [...]}) of objects with keys yaw, pitch, roll, tx, ty, tz.
Matrices are camera-to-world in head space (OpenGL camera, decimetres, as transforms_train.json).
Angles rotate the camera about the head centre relative to the run's static (mean) pose, exactly like
--yaw/--pitch/--roll; tx, ty, tz (decimetres, default 0) then shift the camera in head space."""


@dataclass(frozen=True)
class PosePath:
    """A camera path: ``c2w`` [n, 4, 4] float32 camera-to-world matrices, one per frame at ``fps``."""

    c2w: np.ndarray
    fps: float

    def __post_init__(self) -> None:
        c2w = np.asarray(self.c2w, dtype=np.float32)
        if c2w.ndim != 3 or c2w.shape[1:] != (4, 4) or len(c2w) == 0:
            raise ValueError(f"a pose path needs [n, 4, 4] matrices, got {list(c2w.shape)}")
        object.__setattr__(self, "c2w", c2w)

    def __len__(self) -> int:
        return len(self.c2w)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.c2w[i]


# ---------------------------------------------------------------- rotations


def rot_x(deg: np.ndarray | float) -> np.ndarray:
    """Rotation(s) about +x by ``deg`` degrees: [..., 3, 3]."""
    a = np.deg2rad(np.asarray(deg, dtype=np.float64))
    c, s, o, z = np.cos(a), np.sin(a), np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([o, z, z], -1), np.stack([z, c, -s], -1), np.stack([z, s, c], -1)], -2)


def rot_y(deg: np.ndarray | float) -> np.ndarray:
    """Rotation(s) about +y by ``deg`` degrees: [..., 3, 3]."""
    a = np.deg2rad(np.asarray(deg, dtype=np.float64))
    c, s, o, z = np.cos(a), np.sin(a), np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([c, z, s], -1), np.stack([z, o, z], -1), np.stack([-s, z, c], -1)], -2)


def rot_z(deg: np.ndarray | float) -> np.ndarray:
    """Rotation(s) about +z by ``deg`` degrees: [..., 3, 3]."""
    a = np.deg2rad(np.asarray(deg, dtype=np.float64))
    c, s, o, z = np.cos(a), np.sin(a), np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([c, -s, z], -1), np.stack([s, c, z], -1), np.stack([z, z, o], -1)], -2)


def offset_rotation(yaw: np.ndarray | float = 0.0, pitch: np.ndarray | float = 0.0,
                    roll: np.ndarray | float = 0.0) -> np.ndarray:
    """The camera-about-head-centre rotation ``Ry(yaw) @ Rx(-pitch) @ Rz(roll)`` (degrees): [..., 3, 3]."""
    return rot_y(yaw) @ rot_x(-np.asarray(pitch, dtype=np.float64)) @ rot_z(roll)


def project_to_rotation(m: np.ndarray) -> np.ndarray:
    """Nearest rotation(s) (Frobenius norm) to 3x3 matrices [..., 3, 3], via SVD."""
    u, _, vt = np.linalg.svd(np.asarray(m, dtype=np.float64))
    d = np.sign(np.linalg.det(u @ vt))
    d = np.where(d == 0, 1.0, d)
    u = u.copy()
    u[..., :, 2] *= d[..., None]
    return u @ vt


def mean_rotation(rots: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Chordal L2 mean of rotations [n, 3, 3] (optionally weighted): the rotation nearest their sum. [3, 3]."""
    rots = np.asarray(rots, dtype=np.float64)
    w = np.ones(len(rots)) if weights is None else np.asarray(weights, dtype=np.float64)
    return project_to_rotation(np.einsum("n,nij->ij", w, rots))


def rotvec_to_matrix(rv: np.ndarray) -> np.ndarray:
    """Rodrigues: rotation vectors [..., 3] (radians) -> matrices [..., 3, 3]."""
    rv = np.asarray(rv, dtype=np.float64)
    theta = np.linalg.norm(rv, axis=-1)[..., None, None]
    k = np.zeros(rv.shape[:-1] + (3, 3))
    k[..., 0, 1], k[..., 0, 2], k[..., 1, 2] = -rv[..., 2], rv[..., 1], -rv[..., 0]
    k[..., 1, 0], k[..., 2, 0], k[..., 2, 1] = rv[..., 2], -rv[..., 1], rv[..., 0]
    small = theta < 1e-8
    safe = np.where(small, 1.0, theta)
    a = np.where(small, 1.0 - theta ** 2 / 6.0, np.sin(safe) / safe)
    b = np.where(small, 0.5 - theta ** 2 / 24.0, (1.0 - np.cos(safe)) / safe ** 2)
    return np.eye(3) + a * k + b * (k @ k)


def matrix_to_rotvec(r: np.ndarray) -> np.ndarray:
    """Rotation matrices [..., 3, 3] -> rotation vectors [..., 3] (angle in [0, pi], radians)."""
    m = np.asarray(r, dtype=np.float64)
    tr = np.trace(m, axis1=-2, axis2=-1)
    # four candidate quaternions (w, x, y, z), each proportional to the true one; the one with the
    # largest diagonal term is numerically safe (near 0 and near pi)
    cands = np.stack([
        np.stack([1 + tr, m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]], -1),
        np.stack([m[..., 2, 1] - m[..., 1, 2], 1 + 2 * m[..., 0, 0] - tr, m[..., 0, 1] + m[..., 1, 0],
                  m[..., 0, 2] + m[..., 2, 0]], -1),
        np.stack([m[..., 0, 2] - m[..., 2, 0], m[..., 0, 1] + m[..., 1, 0], 1 + 2 * m[..., 1, 1] - tr,
                  m[..., 1, 2] + m[..., 2, 1]], -1),
        np.stack([m[..., 1, 0] - m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0], m[..., 1, 2] + m[..., 2, 1],
                  1 + 2 * m[..., 2, 2] - tr], -1),
    ], -2)
    best = np.argmax(np.diagonal(cands, axis1=-2, axis2=-1), axis=-1)
    q = np.take_along_axis(cands, best[..., None, None], -2)[..., 0, :]
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    q = q * np.where(q[..., :1] < 0, -1.0, 1.0)
    s = np.linalg.norm(q[..., 1:], axis=-1)
    angle = 2.0 * np.arctan2(s, q[..., 0])
    scale = np.where(s < 1e-12, 2.0, angle / np.maximum(s, 1e-300))
    return q[..., 1:] * scale[..., None]


def _interp_rotations(r0: np.ndarray, r1: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Geodesic interpolation between rotations [n, 3, 3] with weights w [n] (0 -> r0, 1 -> r1)."""
    rel = matrix_to_rotvec(np.swapaxes(r0, -1, -2) @ r1)
    return r0 @ rotvec_to_matrix(rel * w[:, None])


def _compose(rot: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """[n, 3, 3] rotations + [n, 3] positions -> [n, 4, 4] c2w."""
    out = np.zeros((len(rot), 4, 4))
    out[:, :3, :3] = rot
    out[:, :3, 3] = pos
    out[:, 3, 3] = 1.0
    return out


# ---------------------------------------------------------------- modes


def static_pose(train_c2w: np.ndarray) -> np.ndarray:
    """Mean of the training poses [N, 4, 4]: mean rotation (SVD) and mean camera position. [4, 4] float64."""
    c2w = _check_c2w(train_c2w, "training poses")
    return _compose(mean_rotation(c2w[:, :3, :3])[None], c2w[:, :3, 3].mean(0)[None])[0]


def pingpong_positions(n_frames: int, fps: float, n_src: int, src_fps: float) -> np.ndarray:
    """Fractional source indices [n_frames] replaying ``n_src`` samples at ``src_fps`` forwards then backwards."""
    p = np.arange(n_frames, dtype=np.float64) * (src_fps / fps)
    if n_src <= 1:
        return np.zeros(n_frames)
    period = 2.0 * (n_src - 1)
    q = np.mod(p, period)
    return np.where(q > n_src - 1, period - q, q)


def track_poses(train_c2w: np.ndarray, n_frames: int, fps: float, train_fps: float) -> np.ndarray:
    """Training poses replayed ping-pong at their own speed (interpolated when fps differs): [n, 4, 4]."""
    c2w = _check_c2w(train_c2w, "training poses")
    pos = pingpong_positions(n_frames, fps, len(c2w), train_fps)
    i0 = np.floor(pos).astype(np.int64)
    i1 = np.minimum(i0 + 1, len(c2w) - 1)
    w = pos - i0
    rot = _interp_rotations(c2w[i0, :3, :3], c2w[i1, :3, :3], w)
    trans = c2w[i0, :3, 3] * (1 - w[:, None]) + c2w[i1, :3, 3] * w[:, None]
    return _compose(rot, trans)


def orbit_poses(base: np.ndarray, n_frames: int, fps: float, orbit_deg: float, orbit_period: float) -> np.ndarray:
    """``base`` [4, 4] swung about the head's vertical axis: yaw(t) = deg * sin(2 pi t / period). [n, 4, 4]."""
    if orbit_period <= 0:
        raise ThgError(f"--orbit-period must be > 0 seconds, got {orbit_period}")
    t = np.arange(n_frames) / fps
    yaw = orbit_deg * np.sin(2.0 * np.pi * t / orbit_period)
    return apply_rotation_about_origin(np.broadcast_to(base, (n_frames, 4, 4)), rot_y(yaw))


def apply_rotation_about_origin(c2w: np.ndarray, rot: np.ndarray) -> np.ndarray:
    """Rotate cameras [n, 4, 4] about the head centre by ``rot`` ([3, 3] or [n, 3, 3]): ``[R 0; 0 1] @ c2w``."""
    c2w = np.asarray(c2w, dtype=np.float64)
    rot = np.broadcast_to(np.asarray(rot, dtype=np.float64), (len(c2w), 3, 3))
    return _compose(rot @ c2w[:, :3, :3], np.einsum("nij,nj->ni", rot, c2w[:, :3, 3]))


def apply_offsets(c2w: np.ndarray, yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0) -> np.ndarray:
    """Rotate every camera of a path [n, 4, 4] about the head centre (degrees; see the module docstring)."""
    if yaw == 0 and pitch == 0 and roll == 0:
        return np.asarray(c2w, dtype=np.float64)
    return apply_rotation_about_origin(c2w, offset_rotation(yaw, pitch, roll))


def gaussian_smooth(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian low-pass along axis 0 of [n, ...] with ``sigma`` samples; edges padded with the end values."""
    x = np.asarray(x, dtype=np.float64)
    if sigma <= 1e-3 or len(x) < 2:
        return x.copy()
    radius = int(np.ceil(4.0 * sigma))
    k = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    k /= k.sum()
    flat = x.reshape(len(x), -1)
    padded = np.pad(flat, ((radius, radius), (0, 0)), mode="edge")
    out = np.stack([np.convolve(padded[:, j], k, mode="valid") for j in range(flat.shape[1])], axis=1)
    return out.reshape(x.shape)


def smooth_path(c2w: np.ndarray, fps: float, smooth_s: float) -> np.ndarray:
    """Low-pass a path [n, 4, 4] with a Gaussian of ``smooth_s`` seconds (std; see the module docstring)."""
    c2w = np.asarray(c2w, dtype=np.float64)
    if smooth_s < 0:
        raise ThgError(f"--smooth must be >= 0 seconds, got {smooth_s}")
    sigma = smooth_s * fps
    if sigma <= 1e-3 or len(c2w) < 2:
        return c2w.copy()
    rot = c2w[:, :3, :3]
    ref = mean_rotation(rot)
    rv = gaussian_smooth(matrix_to_rotvec(ref.T @ rot), sigma)
    new_rot = ref @ rotvec_to_matrix(rv)
    # head centre in camera coordinates (w2c translation), then back to camera positions
    head_in_cam = gaussian_smooth(-np.einsum("nji,nj->ni", rot, c2w[:, :3, 3]), sigma)
    return _compose(new_rot, -np.einsum("nij,nj->ni", new_rot, head_in_cam))


# ---------------------------------------------------------------- files


def load_pose_file(path: str | Path, n_frames: int, base: np.ndarray) -> np.ndarray:
    """Read per-frame poses from JSON, CSV or NPY (formats: ``POSE_FILE_HELP``) -> c2w [n_frames, 4, 4].

    ``base`` [4, 4] is the static pose that angle rows are relative to. A length other than ``n_frames``
    is an error.
    """
    path = Path(path)
    if not path.is_file():
        raise ThgError(f"pose file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        rows = _read_npy(path)
    elif suffix == ".csv":
        rows = _read_csv(path)
    elif suffix == ".json":
        rows = _read_json(path)
    else:
        raise ThgError(f"pose file {path} must end in .json, .csv or .npy")
    c2w = _rows_to_c2w(rows, base, path)
    if len(c2w) != n_frames:
        raise ThgError(f"pose file {path} holds {len(c2w)} poses but the audio needs {n_frames} frames "
                       "(one pose per output frame: round(duration x fps))")
    return c2w


def _read_npy(path: Path) -> np.ndarray | dict[str, np.ndarray]:
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ThgError(f"cannot read pose file {path}: {str(e).splitlines()[0][:120]}") from None
    if not isinstance(arr, np.ndarray) or not np.issubdtype(arr.dtype, np.number):
        raise ThgError(f"pose file {path} must hold a numeric array")
    return arr.astype(np.float64)


def _read_csv(path: Path) -> np.ndarray | dict[str, np.ndarray]:
    try:
        with open(path, newline="") as f:
            lines = [row for row in csv.reader(f) if row and any(c.strip() for c in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise ThgError(f"cannot read pose file {path}: {e}") from None
    if not lines:
        raise ThgError(f"pose file {path} is empty")
    header = None
    if not _is_number(lines[0][0]):
        header = [c.strip().lower() for c in lines[0]]
        lines = lines[1:]
    try:
        values = np.array([[float(c) for c in row] for row in lines], dtype=np.float64)
    except ValueError as e:
        raise ThgError(f"pose file {path}: non-numeric value ({e})") from None
    if values.ndim != 2:
        raise ThgError(f"pose file {path}: rows have different numbers of columns")
    if header is None:
        return values
    if len(header) != values.shape[1]:
        raise ThgError(f"pose file {path}: the header has {len(header)} columns, rows have {values.shape[1]}")
    cols = {name: values[:, i] for i, name in enumerate(header) if name in _ANGLE_COLS + _TRANS_COLS}
    if not cols:
        raise ThgError(f"pose file {path}: header names none of {', '.join(_ANGLE_COLS + _TRANS_COLS)}")
    return cols


def _read_json(path: Path) -> np.ndarray | dict[str, np.ndarray]:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ThgError(f"cannot read pose file {path}: {e}") from None
    if isinstance(data, dict):
        data = data.get("frames", data.get("poses"))
    if not isinstance(data, list) or not data:
        raise ThgError(f"pose file {path} must hold a non-empty list of poses (or {{\"frames\": [...]}})")
    try:
        if all(isinstance(d, dict) for d in data):
            if all("transform_matrix" in d for d in data):
                return np.array([d["transform_matrix"] for d in data], dtype=np.float64)
            keys = [k for k in _ANGLE_COLS + _TRANS_COLS if any(k in d for d in data)]
            if not keys:
                raise ThgError(f"pose file {path}: objects need transform_matrix or yaw/pitch/roll/tx/ty/tz")
            return {k: np.array([float(d.get(k, 0.0)) for d in data]) for k in keys}
        return np.array(data, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ThgError(f"pose file {path}: malformed poses ({e})") from None


def _rows_to_c2w(rows: np.ndarray | dict[str, np.ndarray], base: np.ndarray, path: Path) -> np.ndarray:
    """Matrices or angle rows -> validated c2w [n, 4, 4]."""
    if isinstance(rows, dict):
        n = len(next(iter(rows.values())))
        ang = [rows.get(k, np.zeros(n)) for k in _ANGLE_COLS]
        trans = np.stack([rows.get(k, np.zeros(n)) for k in _TRANS_COLS], -1)
        return _angles_to_c2w(np.stack(ang, -1), trans, base, path)
    arr = np.asarray(rows, dtype=np.float64)
    if arr.ndim == 2 and arr.shape[1] in (12, 16):
        arr = arr.reshape(len(arr), arr.shape[1] // 4, 4)
    if arr.ndim == 3 and arr.shape[1:] in ((3, 4), (4, 4)):
        return _check_c2w(arr, f"pose file {path}")
    if arr.ndim == 2 and arr.shape[1] in (3, 6):
        trans = arr[:, 3:6] if arr.shape[1] == 6 else np.zeros((len(arr), 3))
        return _angles_to_c2w(arr[:, :3], trans, base, path)
    raise ThgError(f"pose file {path}: cannot interpret an array of shape {list(arr.shape)} "
                   "(expected [n, 4, 4], [n, 3, 4], [n, 16], [n, 12], [n, 3] or [n, 6])")


def _angles_to_c2w(angles: np.ndarray, trans: np.ndarray, base: np.ndarray, path: Path) -> np.ndarray:
    if len(angles) == 0:
        raise ThgError(f"pose file {path} holds no poses")
    if not (np.isfinite(angles).all() and np.isfinite(trans).all()):
        raise ThgError(f"pose file {path} holds non-finite values")
    rot = offset_rotation(angles[:, 0], angles[:, 1], angles[:, 2])
    c2w = apply_rotation_about_origin(np.broadcast_to(base, (len(angles), 4, 4)), rot)
    c2w[:, :3, 3] += trans
    return c2w


def _check_c2w(c2w: np.ndarray, what: str) -> np.ndarray:
    """Validate camera-to-world matrices [n, 3|4, 4]; returns [n, 4, 4] float64 with exact rotations."""
    arr = np.asarray(c2w, dtype=np.float64)
    if arr.ndim != 3 or arr.shape[1:] not in ((3, 4), (4, 4)) or len(arr) == 0:
        raise ThgError(f"{what}: expected [n, 4, 4] camera-to-world matrices, got shape {list(arr.shape)}")
    if not np.isfinite(arr).all():
        raise ThgError(f"{what}: non-finite values")
    rot = arr[:, :3, :3]
    err = np.abs(np.swapaxes(rot, 1, 2) @ rot - np.eye(3)).max(axis=(1, 2))
    bad = np.flatnonzero((err > ROTATION_TOL) | (np.linalg.det(rot) < 0))
    if len(bad):
        raise ThgError(f"{what}: pose {int(bad[0])} is not a rotation + translation (|R^T R - I| = "
                       f"{err[bad[0]]:.3g}, det = {np.linalg.det(rot[bad[0]]):.3g})")
    return _compose(project_to_rotation(rot), arr[:, :3, 3])


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------- entry point


def parse_pose_mode(mode: str) -> tuple[str, Path | None]:
    """``"track" | "static" | "orbit" | "file:PATH"`` -> (kind, path). One-line ThgError otherwise."""
    text = str(mode).strip()
    if text in ("track", "static", "orbit"):
        return text, None
    if text.startswith("file:") and text[5:].strip():
        return "file", Path(text[5:].strip()).expanduser()
    raise ThgError(f"unknown pose mode {mode!r}: expected {', '.join(POSE_MODES)}")


def build_pose_path(mode: str, n_frames: int, fps: float, train_c2w: np.ndarray, train_fps: float, *,
                    orbit_deg: float = 20.0, orbit_period: float = 6.0, yaw: float = 0.0, pitch: float = 0.0,
                    roll: float = 0.0, smooth: float = 0.0) -> PosePath:
    """The camera path of ``n_frames`` frames at ``fps`` for ``mode`` (see the module docstring).

    Order: the mode's path, then ``smooth`` (seconds), then the ``yaw/pitch/roll`` offsets (degrees).
    """
    kind, path = parse_pose_mode(mode)
    if n_frames <= 0 or fps <= 0:
        raise ValueError(f"need n_frames > 0 and fps > 0, got {n_frames}, {fps}")
    if kind == "track":
        c2w = track_poses(train_c2w, n_frames, fps, train_fps)
    elif kind == "static":
        c2w = np.repeat(static_pose(train_c2w)[None], n_frames, axis=0)
    elif kind == "orbit":
        c2w = orbit_poses(static_pose(train_c2w), n_frames, fps, orbit_deg, orbit_period)
    else:
        c2w = load_pose_file(path, n_frames, static_pose(train_c2w))
    return finish_path(c2w, fps, yaw=yaw, pitch=pitch, roll=roll, smooth=smooth)


def finish_path(c2w: np.ndarray, fps: float, *, yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0,
                smooth: float = 0.0) -> PosePath:
    """Smooth a raw path [n, 4, 4] and apply the offsets -> PosePath."""
    c2w = _check_c2w(c2w, "pose path")
    return PosePath(apply_offsets(smooth_path(c2w, fps, smooth), yaw, pitch, roll), fps)
