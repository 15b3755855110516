"""Per-frame signals from the landmarks: face gaps, blink signal, face and mouth boxes, pose jitter."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from thg_nerf.preprocess.topology import Topology


@dataclass
class Gaps:
    """Frames without a detected face, split into short (interpolated) and long (excluded) gaps."""

    detected: np.ndarray
    """[N] bool: a face was found."""
    interpolated: np.ndarray
    """[N] bool: filled by interpolation (gap <= max_gap frames)."""
    excluded: np.ndarray
    """[N] bool: inside a longer gap; dropped from training."""

    def ranges_s(self, fps: float) -> list[list[float]]:
        """Excluded runs as [start, end) times in seconds."""
        return [[round(a / fps, 3), round(b / fps, 3)] for a, b in runs(self.excluded)]


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) index pairs of the True runs of a 1-D bool array."""
    m = np.concatenate([[False], np.asarray(mask, bool), [False]])
    d = np.flatnonzero(np.diff(m.astype(np.int8)))
    return list(zip(d[::2].tolist(), d[1::2].tolist()))


def find_gaps(detected: np.ndarray, max_gap: int) -> Gaps:
    """Classify runs of missing faces: at most ``max_gap`` frames -> interpolated, longer -> excluded."""
    detected = np.asarray(detected, bool)
    interp = np.zeros_like(detected)
    excl = np.zeros_like(detected)
    for a, b in runs(~detected):
        (interp if b - a <= max_gap else excl)[a:b] = True
    return Gaps(detected, interp, excl)


def fill_missing(values: np.ndarray, have: np.ndarray) -> np.ndarray:
    """Linear interpolation over frames without data (held constant before the first/after the last).

    values [N, ...] (anything at missing frames), have [N] bool with at least one True.
    """
    idx = np.flatnonzero(have)
    flat = values.reshape(len(values), -1).astype(np.float64)
    out = np.empty_like(flat)
    t = np.arange(len(values))
    for j in range(flat.shape[1]):
        out[:, j] = np.interp(t, idx, flat[idx, j])
    return out.reshape(values.shape).astype(values.dtype)


def eye_aspect_ratio(landmarks: np.ndarray, topo: Topology) -> np.ndarray:
    """Mean eye aspect ratio of both eyes [N] from 2D landmarks [N, L, 2+]."""
    ears = []
    for p in (topo.left_ear, topo.right_ear):
        q = landmarks[:, list(p), :2]
        vert = np.linalg.norm(q[:, 1] - q[:, 5], axis=-1) + np.linalg.norm(q[:, 2] - q[:, 4], axis=-1)
        horiz = 2.0 * np.linalg.norm(q[:, 0] - q[:, 3], axis=-1)
        ears.append(vert / np.maximum(horiz, 1e-6))
    return np.mean(ears, axis=0)


def mouth_opening(landmarks: np.ndarray, mouth: tuple[int, int, int, int]) -> np.ndarray:
    """Inner-lip gap over mouth width [...] of landmarks [..., L, 2+] (``mouth`` = ``Topology.mouth``).

    Dimensionless, so it compares across image sizes and between real and rendered frames.
    """
    up, lo, cr, cl = mouth
    pts = np.asarray(landmarks, dtype=np.float64)[..., :2]
    width = np.linalg.norm(pts[..., cl, :] - pts[..., cr, :], axis=-1)
    return np.linalg.norm(pts[..., lo, :] - pts[..., up, :], axis=-1) / np.maximum(width, 1e-6)


def blink_signal(ear: np.ndarray, use: np.ndarray) -> np.ndarray:
    """Eye closure in [0, 1] (1 = closed) from the eye aspect ratio, normalised per clip.

    Open = 90th percentile of the ratio over ``use`` frames; closed = the mean of its lowest 0.5 % (at
    least one frame), but at most half the open value (so a clip without blinks does not stretch landmark
    noise to the full range).
    """
    vals = np.sort(ear[use] if np.any(use) else ear)
    open_ = float(np.percentile(vals, 90))
    closed = min(float(vals[:max(1, round(0.005 * len(vals)))].mean()), 0.5 * open_)
    return np.clip((open_ - ear) / max(open_ - closed, 1e-6), 0.0, 1.0).astype(np.float32)


def boxes(landmarks: np.ndarray, idx: tuple[int, ...] | None = None, margin: float = 0.0) -> np.ndarray:
    """[N, 4] x0, y0, x1, y1 around the landmarks (or the subset ``idx``), grown by ``margin`` x size."""
    pts = landmarks[:, list(idx), :2] if idx is not None else landmarks[..., :2]
    lo, hi = pts.min(axis=1), pts.max(axis=1)
    pad = (hi - lo) * margin
    return np.concatenate([lo - pad, hi + pad], axis=1).astype(np.float32)


def euler_deg(rotation: np.ndarray) -> np.ndarray:
    """[N, 3] yaw, pitch, roll (degrees) of head-to-camera rotations, relative to facing the camera."""
    from scipy.spatial.transform import Rotation

    frontal = np.diag([1.0, -1.0, -1.0])  # head +z (out of the face) towards the camera
    return Rotation.from_matrix(frontal @ rotation).as_euler("yxz", degrees=True)


def jitter_deg(rotation: np.ndarray, use: np.ndarray) -> float:
    """RMS over consecutive used frames of the second differences of the rotation angles (degrees)."""
    e = euler_deg(rotation)
    ok = use[2:] & use[1:-1] & use[:-2]
    if not np.any(ok):
        return 0.0
    d2 = e[2:] - 2 * e[1:-1] + e[:-2]
    return float(np.sqrt((d2[ok] ** 2).sum(axis=1).mean()))
