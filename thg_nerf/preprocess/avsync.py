"""Audio-video offset of a talking-head clip, from the mouth opening and the speech.

Sign convention: ``offset_s > 0`` means the audio is LATE (a sound comes ``offset_s`` after the lip movement
that makes it), so the audio must be advanced by ``offset_s`` (:func:`shift_audio`).

Method (:func:`estimate_av_offset`): the clip's log-mel spectrogram (``thg_nerf.audio.features``) is averaged
over each video frame's period, one step per frame (32 normalised bands + the frame level). For each
candidate lag ``d`` in ``+-MAX_LAG_S`` (1-frame steps) a ridge regression predicts the per-frame mouth
opening from the audio at ``frame time + d``; its score is the cross-validated correlation (contiguous
folds, correlation within each held-out fold, averaged). The best lag, refined by a parabola through its
neighbours, minus a calibrated constant bias (:data:`BIAS_S`) is the offset. Confidence: the peak score as
a z-score (Fisher-transformed correlations) against a null of the same regression on the audio circularly
shifted by at least ``NULL_MIN_SHIFT_S`` (unrelated speech with the clip's own statistics). Measurements
behind the constants: docs/BENCHMARKS.md, "A/V offset" (``benchmarks/bench_avsync.py``).
"""

from __future__ import annotations

import wave as wavmod
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from thg_nerf.errors import ThgError

#: Search range of the offset (seconds, both signs).
MAX_LAG_S = 0.5
#: Contiguous cross-validation folds.
FOLDS = 5
#: Ridge penalty on the standardised features (relative to the number of training frames).
RIDGE = 0.1
#: The null's circular shifts: at least this far (s) from no shift, NULL_SHIFTS of them spread over the clip.
NULL_MIN_SHIFT_S = 1.0
NULL_SHIFTS = 48
#: Constant bias (s) of the raw peak lag on in-sync clips, subtracted from the estimate: the mouth leads the
#: sound it makes. 0 on the exactly synced synthetic pairs; +0.03 s on macron (believed in sync: full clip
#: and its 8 s windows), docs/BENCHMARKS.md.
BIAS_S = 0.03
#: Confidence from which ``auto`` applies the estimate: unrelated audio stays below 3.1 (docs/BENCHMARKS.md).
CONFIDENT = 4.0
#: ``auto`` leaves smaller estimates alone (the estimator's spread on real clips, far below an audible offset).
AUTO_MIN_S = 0.02
#: Fewest frames with a detected face for an estimate.
MIN_FRAMES = 50
#: Largest offset (s) accepted as a forced setting.
MAX_FORCED_S = 5.0


@dataclass(frozen=True)
class AvOffset:
    """An audio-video offset estimate (see the module docstring for the sign)."""

    offset_s: float
    """Estimated offset (s): positive = audio late; advance the audio by this much."""
    confidence: float
    """Peak score (Fisher z) as a z-score against unrelated, circularly shifted audio; 0 without an estimate."""
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


class FrameAudio:
    """Audio features of a clip at its video frames, at any lag (C = 33 per frame).

    Frame ``i`` at lag ``d``: the normalised log-mel bands and the frame level, averaged over the frame period
    centred at ``i / fps + d``; silence and times outside the audio are 0.
    """

    def __init__(self, wave: np.ndarray, sr: int, fps: float, n_frames: int) -> None:
        from thg_nerf.audio.features import (
            ACTIVE_RANGE_DB,
            DB_SCALE,
            MEL_HOP,
            SAMPLE_RATE,
            log_mel,
            normalise_log_mel,
            resample,
        )

        db, frame_db = log_mel(resample(wave, sr, SAMPLE_RATE))
        level = np.clip(frame_db - frame_db.max() + ACTIVE_RANGE_DB, 0.0, None) / DB_SCALE
        series = np.concatenate([normalise_log_mel(db, frame_db), level[:, None]], axis=1)
        self.hop_s = MEL_HOP / SAMPLE_RATE
        width = max(1, int(round(1.0 / (fps * self.hop_s))))
        if width > 1:  # box filter over one frame period
            kernel = np.ones(width) / width
            series = np.stack([np.convolve(c, kernel, mode="same") for c in series.T], axis=1)
        self.series = series
        self.t0 = -0.5 * self.hop_s * ((width - 1) % 2)  # an even box is centred half a hop early
        self.fps, self.n_frames = fps, n_frames

    def at(self, lag_s: float) -> np.ndarray:
        """[n_frames, C] float32: the features at ``frame time + lag_s``."""
        from thg_nerf.audio.features import window_series

        return window_series(self.series, self.hop_s, self.t0 - lag_s, self.fps, self.n_frames, 1, fill=0.0)[:, 0]


class _FoldRidge:
    """Contiguous-fold cross-validated ridge regressions of one target y [n] from features x [n, C]."""

    def __init__(self, y: np.ndarray, folds: int, ridge: float) -> None:
        self.y = np.asarray(y, dtype=np.float64)
        self.edges = np.linspace(0, len(self.y), folds + 1).astype(int)
        self.ridge = ridge

    def score(self, x: np.ndarray) -> float:
        """Mean over the held-out folds of the correlation between prediction and target."""
        x = np.asarray(x, dtype=np.float64)
        y, n, c = self.y, len(self.y), x.shape[1]
        sx, sy = x.sum(0), y.sum()
        sxx, sxy = x.T @ x, x.T @ y
        corrs = []
        for a, b in zip(self.edges[:-1], self.edges[1:]):
            xf, yf = x[a:b], y[a:b]
            m = n - (b - a)
            mu, my = (sx - xf.sum(0)) / m, (sy - yf.sum()) / m
            cov = (sxx - xf.T @ xf) / m - np.outer(mu, mu)
            cxy = (sxy - xf.T @ yf) / m - mu * my
            sd = np.sqrt(np.maximum(np.diag(cov), 0.0)) + 1e-6
            w = np.linalg.solve(cov / np.outer(sd, sd) + self.ridge * np.eye(c), cxy / sd) / sd
            pred = xf @ w
            if pred.std() < 1e-9 or yf.std() < 1e-9:
                corrs.append(0.0)
            else:
                corrs.append(float(np.corrcoef(pred, yf)[0, 1]))
        return float(np.mean(corrs))


def estimate_av_offset(mouth: np.ndarray, valid: np.ndarray, wave: np.ndarray, sr: int, fps: float,
                       max_lag_s: float = MAX_LAG_S) -> AvOffset:
    """Estimate the audio-video offset of a clip (positive = audio late).

    ``mouth`` [N] is the per-frame mouth opening (``signals.mouth_opening``), ``valid`` [N] bool the frames
    where it was measured, ``wave`` [n_samples] the clip's mono audio at ``sr`` Hz starting with frame 0,
    ``fps`` the video frame rate. Too few valid frames, a clip too short for the null or a constant mouth
    give confidence 0.
    """
    mouth = np.asarray(mouth, dtype=np.float64).reshape(-1)
    valid = np.asarray(valid, bool).reshape(-1) & np.isfinite(mouth)
    n, step = len(mouth), 1.0 / fps
    lags = lag_steps(fps, max_lag_s) * step
    if valid.sum() < max(MIN_FRAMES, 4 * FOLDS) or not len(null_shifts(n, fps)) or np.ptp(mouth[valid]) <= 0:
        return AvOffset(0.0, 0.0, 0.0, 0.0, lags, np.zeros(len(lags)))
    audio = FrameAudio(wave, sr, fps, n)
    model = _FoldRidge(mouth[valid], FOLDS, RIDGE)
    scores = np.array([model.score(audio.at(d)[valid]) for d in lags])
    i = int(np.argmax(scores))
    frac = 0.0
    if 0 < i < len(lags) - 1:
        a, b, c = scores[i - 1], scores[i], scores[i + 1]
        den = a - 2.0 * b + c
        frac = float(np.clip(0.5 * (a - c) / den, -0.5, 0.5)) if den < 0 else 0.0
    raw = float(lags[i] + frac * step)
    still = audio.at(0.0)
    null = [model.score(np.roll(still, s, axis=0)[valid]) for s in null_shifts(n, fps)]
    return AvOffset(raw - BIAS_S, peak_confidence(float(scores[i]), null), float(scores[i]), raw, lags, scores)


def lag_steps(fps: float, max_lag_s: float = MAX_LAG_S) -> np.ndarray:
    """The whole-frame lags [L] an offset search tries: every frame within +-``max_lag_s`` (at least +-1)."""
    k = max(1, int(np.floor(max_lag_s * fps + 1e-9)))
    return np.arange(-k, k + 1)


def null_shifts(n: int, fps: float) -> np.ndarray:
    """The circular shifts (frames) of a clip of ``n`` frames its confidence null uses: NULL_SHIFTS spread
    over ``NULL_MIN_SHIFT_S .. n - NULL_MIN_SHIFT_S`` (empty when the clip is too short)."""
    lo = int(np.ceil(NULL_MIN_SHIFT_S * fps))
    if n - 2 * lo < 2:
        return np.zeros(0, int)
    return np.unique(np.linspace(lo, n - lo, NULL_SHIFTS).round().astype(int))


def peak_confidence(peak: float, null: list[float] | np.ndarray) -> float:
    """A peak correlation's confidence: its Fisher z as a z-score against the null correlations (unrelated,
    circularly shifted audio), 0 when the peak is not positive or there is no null."""
    if peak <= 0 or len(null) < 2:
        return 0.0
    z = np.arctanh(np.clip(np.asarray(null, np.float64), -0.999, 0.999))
    return float(max((np.arctanh(min(peak, 0.999)) - z.mean()) / max(float(z.std()), 1e-3), 0.0))


def parse_av_offset(value: str | float) -> float | None:
    """The ``preprocess.av_offset`` setting: ``auto`` -> None, a number of seconds (string or float) -> float.

    Anything else, or more than :data:`MAX_FORCED_S` seconds, is a one-line ThgError.
    """
    if isinstance(value, str) and value.strip().lower() == "auto":
        return None
    seconds = float("nan")
    if not isinstance(value, bool):
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            pass
    if not abs(seconds) <= MAX_FORCED_S:
        raise ThgError(f"--av-offset / preprocess.av_offset must be 'auto' or a number of seconds in "
                       f"[-{MAX_FORCED_S:g}, {MAX_FORCED_S:g}] (positive: the audio is late), got {value!r}")
    return seconds


def applied_offset(setting: str | float, estimate_s: float, confidence: float) -> float:
    """The offset to apply (s): a forced number as is; under ``auto`` the estimate when its confidence
    reaches :data:`CONFIDENT` and it is at least :data:`AUTO_MIN_S`, else 0."""
    forced = parse_av_offset(setting)
    if forced is not None:
        return forced
    return float(estimate_s) if confidence >= CONFIDENT and abs(estimate_s) >= AUTO_MIN_S else 0.0


def shift_audio(wave: np.ndarray, sr: int, offset_s: float) -> np.ndarray:
    """Advance ``wave`` [n] by ``offset_s`` seconds (delay it when negative): same length, silence fills in."""
    wave = np.asarray(wave)
    n, s = len(wave), int(round(offset_s * sr))
    out = np.zeros_like(wave)
    if s >= 0:
        out[:max(n - s, 0)] = wave[s:]
    else:
        out[-s:] = wave[:max(n + s, 0)]
    return out


def shift_wav(src: str | Path, dst: str | Path, offset_s: float) -> None:
    """Write the 16-bit mono WAV ``src`` advanced by ``offset_s`` (:func:`shift_audio`) to ``dst``, exactly."""
    from thg_nerf.audio.io import write_wav

    with wavmod.open(str(src), "rb") as w:
        if w.getsampwidth() != 2 or w.getnchannels() != 1:
            raise ThgError(f"{src} is not a 16-bit mono WAV")
        sr = w.getframerate()
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    write_wav(dst, shift_audio(pcm, sr, offset_s).astype(np.float64) / 32767.0, sr)
