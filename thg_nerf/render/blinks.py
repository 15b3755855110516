"""Eye-blink signals for rendering: one value per output frame in [0, 1] (1 = closed), like ``tracking.eye``.

Modes (:func:`blink_signal`):

- ``auto``: synthetic blinks at random intervals of 2-6 s (seeded), each 150-250 ms long with a smooth
  close/open profile (closing takes 40 % of the blink), going from the training signal's open level to its
  closed level (:func:`eye_levels`); one frame of each blink lands on the fully closed peak.
- ``track``: the training signal replayed ping-pong at its own speed (like ``--pose track``).
- ``none``: eyes held at the training signal's open level.
"""

from __future__ import annotations

import numpy as np

from thg_nerf.errors import ThgError
from thg_nerf.render.poses import pingpong_positions

BLINK_MODES = ("auto", "track", "none")
#: Random gap between blinks (s) and blink length (s) of ``auto``.
BLINK_INTERVAL_S = (2.0, 6.0)
BLINK_DURATION_S = (0.15, 0.25)
#: Share of a blink spent closing (the rest reopens, more slowly).
CLOSE_FRACTION = 0.4
#: Percentile of the training eye signal used as the fully closed level.
CLOSED_PERCENTILE = 99.9


def eye_levels(train_eye: np.ndarray) -> tuple[float, float]:
    """(open, closed) levels of a training eye signal [N]: its median and its CLOSED_PERCENTILE.

    The high percentile is the peak of the real blinks (a value the model saw in training) while a single
    outlier frame in a long clip does not set it.
    """
    eye = np.asarray(train_eye, dtype=np.float64).reshape(-1)
    eye = eye[np.isfinite(eye)]
    if eye.size == 0:
        return 0.0, 0.0
    open_level = float(np.median(eye))
    return open_level, float(max(open_level, np.percentile(eye, CLOSED_PERCENTILE)))


def blink_profile(u: np.ndarray) -> np.ndarray:
    """Closure in [0, 1] over a blink's normalised time ``u`` in [0, 1] (0 outside): smooth, C1, peak 1."""
    u = np.asarray(u, dtype=np.float64)
    close = np.sin(0.5 * np.pi * np.clip(u / CLOSE_FRACTION, 0.0, 1.0)) ** 2
    reopen = np.cos(0.5 * np.pi * np.clip((u - CLOSE_FRACTION) / (1.0 - CLOSE_FRACTION), 0.0, 1.0)) ** 2
    out = np.where(u < CLOSE_FRACTION, close, reopen)
    return np.where((u >= 0.0) & (u <= 1.0), out, 0.0)


def blink_times(duration_s: float, fps: float, seed: int = 0) -> list[tuple[float, float]]:
    """(peak time, length) of each synthetic blink in ``[0, duration_s)``; peaks lie on frame times."""
    rng = np.random.default_rng(seed)
    out = []
    t = rng.uniform(0.5, BLINK_INTERVAL_S[0])  # first blink soon, but not on the first frame
    while t < duration_s:
        length = rng.uniform(*BLINK_DURATION_S)
        peak = round(t * fps) / fps
        out.append((peak, length))
        t += rng.uniform(*BLINK_INTERVAL_S)
    return out


def auto_blinks(n_frames: int, fps: float, open_level: float, closed_level: float, seed: int = 0) -> np.ndarray:
    """Synthetic blinks [n_frames] float32 between ``open_level`` and ``closed_level`` (see module docstring)."""
    t = np.arange(n_frames) / fps
    closure = np.zeros(n_frames)
    for peak, length in blink_times(n_frames / fps, fps, seed):
        start = peak - CLOSE_FRACTION * length
        lo, hi = np.searchsorted(t, [start, start + length])
        closure[lo:hi] = np.maximum(closure[lo:hi], blink_profile((t[lo:hi] - start) / length))
    return (open_level + (closed_level - open_level) * closure).astype(np.float32)


def track_blinks(train_eye: np.ndarray, n_frames: int, fps: float, train_fps: float) -> np.ndarray:
    """The training eye signal [N] replayed ping-pong at its own speed: [n_frames] float32."""
    eye = np.asarray(train_eye, dtype=np.float64).reshape(-1)
    if eye.size == 0:
        return np.zeros(n_frames, np.float32)
    pos = pingpong_positions(n_frames, fps, len(eye), train_fps)
    i0 = np.floor(pos).astype(np.int64)
    i1 = np.minimum(i0 + 1, len(eye) - 1)
    w = pos - i0
    return (eye[i0] * (1 - w) + eye[i1] * w).astype(np.float32)


def blink_signal(mode: str, n_frames: int, fps: float, train_eye: np.ndarray, train_fps: float,
                 seed: int = 0) -> np.ndarray:
    """Eye signal [n_frames] float32 for ``mode`` in BLINK_MODES."""
    if mode not in BLINK_MODES:
        raise ThgError(f"unknown blink mode {mode!r}: expected {', '.join(BLINK_MODES)}")
    if mode == "track":
        return track_blinks(train_eye, n_frames, fps, train_fps)
    open_level, closed_level = eye_levels(train_eye)
    if mode == "none":
        return np.full(n_frames, open_level, np.float32)
    return auto_blinks(n_frames, fps, open_level, closed_level, seed)
