"""Audio-video offset of a talking-head clip, from the mouth opening and the speech.

Sign convention: ``offset_s > 0`` means the audio is LATE (a sound comes ``offset_s`` after the lip movement
that makes it), so the audio must be advanced by ``offset_s`` (:func:`shift_audio`).

Method: the clip's log-mel spectrogram (``thg_nerf.audio.features``) is averaged over each video frame's
duration, giving one step per frame (32 normalised bands + the frame level). For every candidate lag ``d`` in
``+-max_lag_s`` (1-frame steps) a ridge regression predicts the per-frame mouth opening from the audio at
``frame time + d``; its score is the correlation of the cross-validated predictions (contiguous folds, so
neighbouring frames never leak into their own test fold) with the mouth signal. The best lag, refined by a
parabola through its neighbours, minus a calibrated constant bias (:data:`BIAS_S`) is the offset.
Confidence: how far the peak stands above the other lags, in robust standard deviations of the score curve
away from the peak (:data:`CONFIDENT`). Measurements: docs/BENCHMARKS.md, "A/V offset".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from thg_nerf.errors import ThgError

#: Search range of the offset (seconds, both signs).
MAX_LAG_S = 0.5
#: Contiguous cross-validation folds.
FOLDS = 5
#: Ridge penalty relative to the mean feature variance (features are standardised).
RIDGE = 1.0
#: Lags within this many seconds of the peak are left out of the confidence's reference scores.
PEAK_EXCLUSION_S = 0.12
#: Constant estimator bias (seconds) subtracted from the raw peak lag.
BIAS_S = 0.0
#: Confidence from which ``auto`` applies the estimate.
CONFIDENT = 4.0
#: Fewest usable frames (with a detected face) for an estimate.
MIN_FRAMES = 50


@dataclass(frozen=True)
class AvOffset:
    """An audio-video offset estimate (see the module docstring for the sign)."""

    offset_s: float
    """Estimated offset (s): positive = audio late; advance the audio by this much."""
    confidence: float
    """Peak prominence over the other lags in robust standard deviations (0 when no estimate was possible)."""
    peak_corr: float
    """Cross-validated correlation of predicted and measured mouth opening at the peak."""
    raw_lag_s: float
    """The refined peak lag before the bias correction."""
    lags_s: np.ndarray
    """[L] candidate lags (s)."""
    scores: np.ndarray
    """[L] cross-validated correlation at each lag."""

    @property
    def confident(self) -> bool:
        """Whether ``auto`` trusts this estimate (confidence >= :data:`CONFIDENT`)."""
        return self.confidence >= CONFIDENT


def frame_audio_features(wave: np.ndarray, sr: int, fps: float, n_frames: int,
                         lags_s: np.ndarray) -> np.ndarray:
    """Per-frame audio features at each lag: [L, n_frames, C] float32.

    Row ``i`` of lag ``d`` is the normalised log-mel (+ level) averaged over the frame period centred at
    ``i / fps + d``; silence and time outside the audio are 0.
    """
    from thg_nerf.audio.features import (
        ACTIVE_RANGE_DB,
        DB_SCALE,
        MEL_HOP,
        SAMPLE_RATE,
        log_mel,
        normalise_log_mel,
        resample,
        window_series,
    )

    db, frame_db = log_mel(resample(wave, sr, SAMPLE_RATE))
    level = np.clip(frame_db - frame_db.max() + ACTIVE_RANGE_DB, 0.0, None) / DB_SCALE
    series = np.concatenate([normalise_log_mel(db, frame_db), level[:, None]], axis=1)
    hop_s = MEL_HOP / SAMPLE_RATE
    width = max(1, int(round(1.0 / (fps * hop_s))))
    if width > 1:  # box filter over one frame period: each frame sees its whole duration
        kernel = np.ones(width) / width
        series = np.stack([np.convolve(c, kernel, mode="same") for c in series.T], axis=1)
    t0 = -hop_s * ((width - 1) % 2) / 2.0  # an even box is centred half a hop late
    return np.stack([window_series(series, hop_s, t0 - d, fps, n_frames, 1, fill=0.0)[:, 0] for d in lags_s])


def _cv_correlation(x: np.ndarray, y: np.ndarray, folds: int, ridge: float) -> float:
    """Correlation of contiguous-fold cross-validated ridge predictions of y [n] from x [n, C]."""
    n = len(y)
    edges = np.linspace(0, n, folds + 1).astype(int)
    pred = np.empty(n)
    for a, b in zip(edges[:-1], edges[1:]):
        train = np.ones(n, bool)
        train[a:b] = False
        xt, yt = x[train], y[train]
        mu, sd = xt.mean(0), xt.std(0) + 1e-6
        z = (xt - mu) / sd
        gram = z.T @ z + ridge * len(yt) * np.eye(z.shape[1])
        w = np.linalg.solve(gram, z.T @ (yt - yt.mean()))
        pred[a:b] = ((x[a:b] - mu) / sd) @ w + yt.mean()
    if pred.std() < 1e-9 or y.std() < 1e-9:
        return 0.0
    return float(np.corrcoef(pred, y)[0, 1])


def estimate_av_offset(mouth: np.ndarray, valid: np.ndarray, wave: np.ndarray, sr: int, fps: float,
                       max_lag_s: float = MAX_LAG_S, folds: int = FOLDS, ridge: float = RIDGE) -> AvOffset:
    """Estimate the audio-video offset of a clip.

    ``mouth`` [N] is the per-frame mouth opening (``signals.mouth_opening``), ``valid`` [N] bool the frames
    where it was measured, ``wave`` the clip's audio (mono, any rate ``sr``), ``fps`` the video frame rate.
    Too few valid frames or no audio variation give confidence 0.
    """
    mouth = np.asarray(mouth, dtype=np.float64).reshape(-1)
    valid = np.asarray(valid, bool).reshape(-1) & np.isfinite(mouth)
    n = len(mouth)
    step = 1.0 / fps
    k = int(np.floor(max_lag_s * fps + 1e-9))
    lags = np.arange(-k, k + 1) * step
    if valid.sum() < max(MIN_FRAMES, 2 * folds) or len(lags) < 3:
        return AvOffset(0.0, 0.0, 0.0, 0.0, lags, np.zeros(len(lags)))
    feats = frame_audio_features(wave, sr, fps, n, lags)
    y = mouth[valid]
    scores = np.array([_cv_correlation(f[valid].astype(np.float64), y, folds, ridge) for f in feats])
    i = int(np.argmax(scores))
    frac = 0.0
    if 0 < i < len(lags) - 1:
        a, b, c = scores[i - 1], scores[i], scores[i + 1]
        den = a - 2 * b + c
        frac = float(np.clip(0.5 * (a - c) / den, -0.5, 0.5)) if den < 0 else 0.0
    raw = float(lags[i] + frac * step)
    return AvOffset(raw - BIAS_S, _prominence(lags, scores, i), float(scores[i]), raw, lags, scores)


def _prominence(lags: np.ndarray, scores: np.ndarray, i: int) -> float:
    """(peak - median of the far lags) / robust std of the far lags; 0 without a positive peak."""
    far = scores[np.abs(lags - lags[i]) > PEAK_EXCLUSION_S]
    if scores[i] <= 0 or len(far) < 3:
        return 0.0
    med = float(np.median(far))
    scale = 1.4826 * float(np.median(np.abs(far - med)))
    return float((scores[i] - med) / max(scale, 1e-3))


def parse_av_offset(value: str | float) -> float | None:
    """``auto`` -> None; a number of seconds (string or float, |x| <= 5) -> float; anything else ThgError."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = float("nan")
    if not np.isfinite(seconds) or isinstance(value, bool) or abs(seconds) > 5.0:
        raise ThgError(f"preprocess.av_offset must be 'auto' or a number of seconds in [-5, 5], got {value!r}")
    return seconds


def applied_offset(setting: str | float, estimate: AvOffset) -> float:
    """The offset to apply (s): the estimate under ``auto`` when confident (else 0), or the forced number."""
    forced = parse_av_offset(setting)
    if forced is not None:
        return forced
    return estimate.offset_s if estimate.confident else 0.0


def shift_audio(wave: np.ndarray, sr: int, offset_s: float) -> np.ndarray:
    """Advance ``wave`` [n] by ``offset_s`` (delay it when negative); same length, silence fills the gap."""
    wave = np.asarray(wave)
    n = len(wave)
    s = int(round(offset_s * sr))
    out = np.zeros_like(wave)
    if s >= 0:
        out[:max(n - s, 0)] = wave[s:]
    else:
        out[-s:] = wave[:max(n + s, 0)]
    return out
