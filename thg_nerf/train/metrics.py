"""Image and lip-sync metrics for evaluation: PSNR, SSIM, lip landmark distance (LMD) and a sync proxy.

Images are float arrays/tensors in [0, 1], ``[H, W, 3]``.

- **LMD**: mean Euclidean distance between the mediapipe face-mesh lip landmarks (``FACEMESH_LIPS``, 40
  points) of a render and of the ground truth, in pixels of a 512-pixel-wide frame (images are upscaled to
  512 for detection and distances are measured at that scale).
- **Sync proxy**: SyncNet weights cannot be fetched offline, so lip sync is measured as the lag of the peak
  normalised cross-correlation between a *mouth-opening series* of the rendered frames (inner-lip gap over
  mouth width from landmarks, or, without mediapipe/faces, the fraction of dark pixels in the mouth box)
  and the *audio RMS envelope* of the same frames. ``offset_frames`` > 0 means the mouth lags the audio.
  ``confidence`` is peak minus median correlation over the lags searched (like SyncNet's confidence, a
  value near 0 means no sync). It is a proxy: a mouth that opens with loudness scores well even if the
  visemes are wrong.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

LMD_SIZE = 512
#: Inner-lip midpoints (upper, lower) and mouth corners in the mediapipe face-mesh numbering.
MEDIAPIPE_MOUTH = (13, 14, 61, 291)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two images in [0, 1]."""
    mse = float(torch.mean((a.float() - b.float()) ** 2))
    return 10.0 * math.log10(1.0 / max(mse, 1e-12))


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).float()


def ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean SSIM (Gaussian 11x11, sigma 1.5, per channel, valid region) of two [H, W, 3] images in [0, 1]."""
    x = a.float().permute(2, 0, 1)[None].cpu()
    y = b.float().permute(2, 0, 1)[None].cpu()
    c = x.shape[1]
    win = _gaussian_window().to(x)[None, None].expand(c, 1, -1, -1)
    if min(x.shape[-2:]) < win.shape[-1]:
        win = win[..., : min(x.shape[-2:]), : min(x.shape[-2:])]
        win = win / win.sum(dim=(-1, -2), keepdim=True)

    def filt(z: torch.Tensor) -> torch.Tensor:
        return F.conv2d(z, win, groups=c)

    mu_x, mu_y = filt(x), filt(y)
    sxx = filt(x * x) - mu_x**2
    syy = filt(y * y) - mu_y**2
    sxy = filt(x * y) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    return float(s.mean())


class LipLandmarker:
    """Mediapipe face-mesh lip landmarks at 512-pixel scale (raises MissingDependencyError without mediapipe)."""

    def __init__(self) -> None:
        try:
            import mediapipe as mp
        except ImportError:
            from thg_nerf.errors import MissingDependencyError

            raise MissingDependencyError("mediapipe", "preprocess", "lip landmark distance") from None
        fm = mp.solutions.face_mesh
        self.lips = sorted({i for edge in fm.FACEMESH_LIPS for i in edge})
        self._mesh = fm.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=False)

    def __call__(self, image: np.ndarray) -> np.ndarray | None:
        """Landmarks [478 or 468, 2] in pixels of the image resized to 512 wide (None: no face)."""
        from PIL import Image

        h, w = image.shape[:2]
        size = (LMD_SIZE, max(1, round(h * LMD_SIZE / w)))
        img = np.asarray(Image.fromarray(image).resize(size, Image.BICUBIC)) if (w, h) != size else image
        res = self._mesh.process(np.ascontiguousarray(img))
        if not res.multi_face_landmarks:
            return None
        lm = res.multi_face_landmarks[0].landmark
        return np.array([[p.x * size[0], p.y * size[1]] for p in lm], dtype=np.float32)

    def close(self) -> None:
        self._mesh.close()


def lip_distance(lm_a: np.ndarray, lm_b: np.ndarray, lips: list[int]) -> float:
    """Mean distance (pixels at 512 scale) between the lip landmarks of two faces."""
    return float(np.linalg.norm(lm_a[lips] - lm_b[lips], axis=-1).mean())


def mouth_opening_landmarks(lm: np.ndarray) -> float:
    """Inner-lip gap over mouth width (dimensionless) of mediapipe landmarks [478, 2]."""
    from thg_nerf.preprocess.signals import mouth_opening

    return float(mouth_opening(lm, MEDIAPIPE_MOUTH))


def mouth_opening_dark(image: np.ndarray, box: np.ndarray) -> float:
    """Fraction of dark pixels in the mouth box [x0, y0, x1, y1] of a uint8 image (mouth-interior proxy).

    "Dark" is below half the box's 90th-percentile luminance, so it adapts to skin tone and lighting.
    """
    h, w = image.shape[:2]
    x0, y0 = max(0, int(math.floor(box[0]))), max(0, int(math.floor(box[1])))
    x1, y1 = min(w, int(math.ceil(box[2]))), min(h, int(math.ceil(box[3])))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return 0.0
    lum = image[y0:y1, x0:x1].astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return float((lum < 0.5 * np.percentile(lum, 90)).mean())


def sync_offset(mouth: np.ndarray, envelope: np.ndarray, max_lag: int) -> dict:
    """Peak lag and confidence of the normalised cross-correlation of two per-frame series.

    ``corr(k) = mean_t z_m[t] * z_e[t - k]`` for ``|k| <= max_lag`` (z = zero-mean, unit-variance). Returns
    ``{"offset_frames": k*, "confidence": corr(k*) - median_k corr(k), "peak_corr": corr(k*)}`` or Nones
    when a series is constant or too short.
    """
    m = np.asarray(mouth, dtype=np.float64)
    e = np.asarray(envelope, dtype=np.float64)
    n = min(len(m), len(e))
    max_lag = int(min(max_lag, n // 3))
    if n < 4 or m[:n].std() < 1e-9 or e[:n].std() < 1e-9:
        return {"offset_frames": None, "confidence": None, "peak_corr": None}
    zm = (m[:n] - m[:n].mean()) / m[:n].std()
    ze = (e[:n] - e[:n].mean()) / e[:n].std()
    lags = list(range(-max_lag, max_lag + 1))
    corr = []
    for k in lags:
        a, b = (zm[k:], ze[: n - k]) if k >= 0 else (zm[: n + k], ze[-k:])
        corr.append(float(np.mean(a * b)))
    best = int(np.argmax(corr))
    return {"offset_frames": lags[best], "confidence": round(corr[best] - float(np.median(corr)), 4),
            "peak_corr": round(corr[best], 4)}


def series_av_offset(pred: np.ndarray, real: np.ndarray, fps: float) -> dict:
    """A clip's audio-video offset read from a prediction of its mouth opening made from its audio (a run's
    audio -> motion model, which no fitting on the clip itself weakens) and its tracked mouth opening.

    ``pred`` [N] per frame, ``real`` [N] per frame (NaN = not measured). The lag is the whole number of frames
    within +-``avsync.MAX_LAG_S`` at which ``pred[t + lag]`` correlates best with ``real[t]``: positive = the
    prediction, so the audio, is late (the sign of ``thg_nerf.preprocess.avsync``). ``confidence``: the
    peak's Fisher z as a z-score against ``pred`` circularly shifted as avsync's null
    (:func:`~thg_nerf.preprocess.avsync.peak_confidence`; 0 for a clip too short for it). Returns
    ``{offset_frames, offset_s, peak_corr, confidence}``.
    """
    from thg_nerf.motion.model import corr
    from thg_nerf.preprocess import avsync

    pred, real = np.asarray(pred, np.float64), np.asarray(real, np.float64)
    n, fin = len(pred), np.isfinite(real)
    lags = avsync.lag_steps(fps)
    shifts = avsync.null_shifts(n, fps)
    scores = []
    for d in lags:
        p, r, m = pred[max(d, 0):n + min(d, 0)], real[max(-d, 0):n - max(d, 0)], fin[max(-d, 0):n - max(d, 0)]
        c = corr(p[m], r[m])
        scores.append(np.nan if c is None else c)
    scores = np.array(scores)
    if not len(shifts) or not np.isfinite(scores).any():
        return {"offset_frames": 0, "offset_s": 0.0, "peak_corr": None, "confidence": 0.0}
    i = int(np.nanargmax(scores))
    null = _rows_corr(np.stack([np.roll(pred, s)[fin] for s in shifts]), real[fin][None, :])
    return {"offset_frames": int(lags[i]), "offset_s": round(float(lags[i] / fps), 4),
            "peak_corr": round(float(scores[i]), 4),
            "confidence": round(avsync.peak_confidence(float(scores[i]), null[np.isfinite(null)]), 2)}


#: Values per chunk of :func:`corr_reliability`'s row-wise correlations (bounds its memory on long clips).
CORR_CHUNK_VALUES = 1 << 20


def _rows_corr(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row of ``x`` [R, N] with the same row of ``y`` [R or 1, N] (NaN if constant)."""
    x = x - x.mean(1, keepdims=True)
    y = y - y.mean(1, keepdims=True)
    den = np.sqrt((x**2).sum(1) * (y**2).sum(1))
    return np.where(den > 1e-12, (x * y).sum(1) / np.maximum(den, 1e-12), np.nan)


def corr_reliability(a: np.ndarray, b: np.ndarray, fps: float, n_boot: int = 2000, seed: int = 0) -> dict:
    """How far the Pearson correlation of two per-frame series [N] can be trusted on a clip this short.

    - ``interval_90``: 5th / 95th percentile of the correlation over ``n_boot`` moving-block bootstrap
      resamples (blocks of 1 s, which keep the series' autocorrelation);
    - ``chance_95``: 95th percentile of ``|corr|`` with ``a`` circularly shifted by every lag of at least
      1 s (unrelated stretches of the same two series: the level chance reaches here).

    Values are None when the series are constant or shorter than 4 s.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    n, block = len(a), max(1, int(round(fps)))
    if n < 4 * block or a.std() < 1e-12 or b.std() < 1e-12:
        return {"interval_90": None, "chance_95": None}

    step = max(1, CORR_CHUNK_VALUES // n)  # rows per chunk: a long clip stays within a few tens of MB
    pos, shifts = np.arange(n), np.arange(block, n - block + 1)
    null = np.concatenate([_rows_corr(a[(pos[None, :] - shifts[r:r + step, None]) % n], b[None, :])
                           for r in range(0, len(shifts), step)])
    starts = np.random.default_rng(seed).integers(0, n - block + 1, (n_boot, n // block + 1))
    offsets = np.arange(block)[None, None, :]
    boots = []
    for r in range(0, n_boot, step):
        idx = (starts[r:r + step, :, None] + offsets).reshape(len(starts[r:r + step]), -1)[:, :n]
        boots.append(_rows_corr(a[idx], b[idx]))
    boots = np.concatenate(boots)
    lo, hi = np.nanpercentile(boots, [5, 95])
    return {"interval_90": [round(float(lo), 3), round(float(hi), 3)],
            "chance_95": round(float(np.nanpercentile(np.abs(null), 95)), 3)}
