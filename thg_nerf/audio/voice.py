"""Vocal tract length normalisation (VTLN): another voice's spectrum warped towards the person's own.

A longer or shorter vocal tract scales every formant by about the same factor, and the audio -> motion model,
trained on one person, reads formants. So before another voice's features are computed, its frequency axis is
scaled by the warp ``a`` that makes its speech most likely under a model of the person's own speech (the
maximum-likelihood VTLN of speech recognition): no lips and no transcript are involved, and the person's own
voice comes out at about 1.

The model of a voice (:class:`VoiceModel`) is a diagonal Gaussian mixture (``N_MIX`` components) over the
cepstra ``c1 .. c{N_CEPS}`` (DCT-II of the log-mel frame) of its speech frames, mean-normalised per clip so
that the microphone and the room drop out. The log-mel bands are the features' own, less the top ones that
some warp searched would push past Nyquist (:func:`scored_bands`: 29 of 32, up to 6 kHz).
:meth:`VoiceModel.estimate_warp` scores the clip's speech frames with the filterbank warped by each factor
of a log-spaced grid over ``WARP_RANGE`` (coarse to fine: 13 of its 25 points) and refines the best one with
a parabola through its neighbours (the log-likelihood varies smoothly with the warp, and the coarse step
is 5.6 %).
The warp is applied in the filterbank (:func:`thg_nerf.audio.features.mel_filterbank`), so it costs one
matrix product per frame and works on a live stream.

Besides the warp, the model keeps how far each feature log-mel band of the person's speech swings about its
reference (``band_sd``: its standard deviation over speech frames, :func:`thg_nerf.audio.features.band_spread`).
After the warp, each band of another voice is stretched about its reference to the same spread
(:func:`thg_nerf.audio.features.spread_scale`, limited to 0.5-2x): the mean-variance normalisation of speech
recognition, with the person's spread as the target, so the person's own voice is left almost unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from thg_nerf.audio.features import (
    MEL_BINS,
    MEL_NFFT,
    SAMPLE_RATE,
    band_spread,
    frame_level_db,
    log_mel,
    mel_db,
    mel_edges,
    mel_reference,
    power_spectrum,
    speech_frames,
    stft_frames,
)

#: Cepstral coefficients c1 .. c{N_CEPS} model a voice (c0, the loudness, is left out).
N_CEPS = 12
#: Gaussian components of a voice model.
N_MIX = 16
#: Warps searched (frequency scale factors; the usual VTLN range, adult voices); a log-spaced grid of
#: WARP_STEPS points.
WARP_RANGE = (0.8, 1.25)
WARP_STEPS = 25
#: The search scores every COARSE-th warp of the grid first, then the grid around the best of those.
COARSE = 3
#: Speech frames (20 ms) a clip needs before its warp is estimated (fewer: warp 1).
MIN_SPEECH_FRAMES = 100
#: At most this many speech frames (evenly spaced) are scored.
MAX_FRAMES = 3000
EM_ITERS = 60


def warp_grid() -> np.ndarray:
    """The warps searched [WARP_STEPS], log-spaced over WARP_RANGE."""
    return np.exp(np.linspace(np.log(WARP_RANGE[0]), np.log(WARP_RANGE[1]), WARP_STEPS))


def speech_power(wave: np.ndarray, max_frames: int = MAX_FRAMES) -> np.ndarray:
    """Power spectra [S, F] of a 16 kHz wave's speech frames (the mel normalisation's gate), at most
    ``max_frames`` of them, evenly spaced."""
    frames = stft_frames(wave)
    idx = np.nonzero(speech_frames(frame_level_db(frames)))[0]
    if len(idx) > max_frames:
        idx = idx[np.linspace(0, len(idx) - 1, max_frames).astype(np.int64)]
    return power_spectrum(frames[idx]) if len(idx) else np.zeros((0, MEL_NFFT // 2 + 1), np.float32)


def scored_bands() -> int:
    """How many of the feature log-mel bands (from the lowest) a voice is modelled on: those that stay below
    Nyquist under every warp searched."""
    return int(np.sum(mel_edges()[2:] <= 0.5 * SAMPLE_RATE * WARP_RANGE[0]))


def cepstra(power: np.ndarray, warp: float = 1.0) -> np.ndarray:
    """Mean-normalised cepstra [S, N_CEPS] of power spectra [S, F] through the filterbank warped by ``warp``."""
    from scipy.fft import dct

    db = mel_db(power, warp)[:, :scored_bands()]
    c = dct(db.astype(np.float64), type=2, norm="ortho", axis=1)[:, 1:N_CEPS + 1]
    return c - c.mean(0) if len(c) else c


def _component_loglik(x: np.ndarray, weights: np.ndarray, means: np.ndarray, variances: np.ndarray) -> np.ndarray:
    """log(weight_k N(x_i; mean_k, diag var_k)) [S, K]."""
    d = ((x[:, None, :] - means[None]) ** 2 / variances[None]).sum(2)
    return np.log(weights)[None] - 0.5 * (np.log(2.0 * np.pi * variances).sum(1)[None] + d)


def _logsumexp(a: np.ndarray) -> np.ndarray:
    m = a.max(1, keepdims=True)
    return (m + np.log(np.exp(a - m).sum(1, keepdims=True)))[:, 0]


@dataclass
class VoiceModel:
    """Diagonal GMM of one voice's cepstra (see the module docstring). weights [K], means / variances [K, D];
    ``band_sd`` [MEL_BINS]: the spread of each feature log-mel band over its speech (dB,
    :func:`thg_nerf.audio.features.band_spread`), or None (another voice's spread is then left alone)."""

    weights: np.ndarray
    means: np.ndarray
    variances: np.ndarray
    band_sd: np.ndarray | None = None

    @classmethod
    def fit(cls, wave: np.ndarray, n_mix: int = N_MIX, seed: int = 0) -> VoiceModel | None:
        """EM fit on a 16 kHz wave's speech frames; None when it has fewer than MIN_SPEECH_FRAMES of them."""
        x = cepstra(speech_power(wave, max_frames=10 * MAX_FRAMES))
        if len(x) < max(MIN_SPEECH_FRAMES, 4 * n_mix):
            return None
        rng = np.random.default_rng(seed)
        floor = 1e-3 * x.var(0)
        means = x[rng.choice(len(x), n_mix, replace=False)]
        variances = np.tile(x.var(0), (n_mix, 1))
        weights = np.full(n_mix, 1.0 / n_mix)
        for _ in range(EM_ITERS):
            ll = _component_loglik(x, weights, means, variances)
            r = np.exp(ll - _logsumexp(ll)[:, None])
            nk = r.sum(0) + 1e-9
            weights = nk / nk.sum()
            means = (r.T @ x) / nk[:, None]
            variances = np.maximum((r.T @ x**2) / nk[:, None] - means**2, 0.0) + floor
        db, level = log_mel(wave)
        ref = mel_reference(db, level)
        return cls(weights.astype(np.float64), means.astype(np.float64), variances.astype(np.float64),
                   None if ref is None else band_spread(db, level, ref))

    def score(self, x: np.ndarray) -> float:
        """Mean log-likelihood of cepstra [S, D] under the model."""
        return float(np.mean(_logsumexp(_component_loglik(x, self.weights, self.means, self.variances))))

    def estimate_warp(self, wave: np.ndarray) -> float:
        """The warp (frequency scale factor) that brings a 16 kHz wave's voice closest to this one; 1 when the
        wave has too little speech."""
        return self.estimate_warp_power(speech_power(wave))

    def estimate_warp_power(self, power: np.ndarray) -> float:
        """:meth:`estimate_warp` from speech frames' power spectra [S, F]: every ``COARSE``-th warp of the grid,
        then the grid around the best of those, then a parabola through the best warp and its neighbours."""
        if len(power) < MIN_SPEECH_FRAMES:
            return 1.0
        grid = warp_grid()
        s = np.full(len(grid), -np.inf)

        def score_at(idx) -> None:
            for i in idx:
                if 0 <= i < len(grid) and not np.isfinite(s[i]):
                    s[i] = self.score(cepstra(power, grid[i]))

        score_at(range(0, len(grid), COARSE))
        best = int(np.argmax(s))
        score_at(range(best - COARSE + 1, best + COARSE))
        k = int(np.argmax(s))
        score_at((k - 1, k + 1))
        if 0 < k < len(grid) - 1:
            den = s[k - 1] - 2.0 * s[k] + s[k + 1]
            step = 0.5 * (s[k - 1] - s[k + 1]) / den if den < 0 else 0.0
            log_step = np.log(grid[1] / grid[0])
            return float(np.exp(np.log(grid[k]) + np.clip(step, -0.5, 0.5) * log_step))
        return float(grid[k])

    def tensors(self) -> dict[str, np.ndarray]:
        """The model as named float32 arrays (for a safetensors file)."""
        out = {"weights": self.weights.astype(np.float32), "means": self.means.astype(np.float32),
               "variances": self.variances.astype(np.float32)}
        if self.band_sd is not None:
            out["band_sd"] = np.asarray(self.band_sd, np.float32)
        return out

    @classmethod
    def from_tensors(cls, t: dict) -> VoiceModel:
        """Inverse of :meth:`tensors` (arrays or torch tensors); ValueError when the shapes disagree."""
        w, m, v = (np.asarray(t[k], np.float64) for k in ("weights", "means", "variances"))
        if w.ndim != 1 or m.shape != v.shape or m.shape != (len(w), N_CEPS) or (v <= 0).any() or (w <= 0).any():
            raise ValueError(f"voice model arrays have shapes {w.shape}, {m.shape}, {v.shape}")
        sd = None if t.get("band_sd") is None else np.asarray(t["band_sd"], np.float32)
        if sd is not None and (sd.shape != (MEL_BINS,) or not (sd > 0).all()):
            raise ValueError(f"voice band spread has shape {sd.shape} or a value <= 0")
        return cls(w / w.sum(), m, v, sd)

