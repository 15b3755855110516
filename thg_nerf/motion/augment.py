"""Speaker augmentation of a training wave: frequency warp, tempo, gain, noise and reverberation.

A warp by ``a`` resamples the wave so that every frequency (pitch and formants alike, as a longer or shorter
vocal tract and a higher or lower voice would) is scaled by ``a``, then time-stretches it back to its
duration; a tempo change by ``b`` time-stretches it to ``1 / b`` of its duration without changing pitch.
Time stretching is WSOLA (overlap-add of 40 ms Hann frames, each aligned to the previous one by
cross-correlation within +-5 ms). The motion targets are re-timed by the returned time scale.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from thg_nerf.motion.config import AugmentConfig

FRAME_S = 0.04
TOLERANCE_S = 0.005


@dataclass
class Perturbation:
    """One draw of the augmentation parameters."""

    warp: float = 1.0
    tempo: float = 1.0
    gain_db: float = 0.0
    snr_db: float | None = None
    pink: bool = False
    rt60_s: float | None = None

    @classmethod
    def draw(cls, cfg: AugmentConfig, rng: np.random.Generator) -> Perturbation:
        def uniform(lo_hi: tuple[float, float]) -> float:
            return float(rng.uniform(*lo_hi))

        return cls(warp=float(np.exp(rng.uniform(*np.log(cfg.warp)))), tempo=uniform(cfg.tempo),
                   gain_db=uniform(cfg.gain_db),
                   snr_db=uniform(cfg.noise_snr_db) if rng.random() < cfg.noise_prob else None,
                   pink=bool(rng.random() < 0.5),
                   rt60_s=uniform(cfg.rt60_s) if rng.random() < cfg.reverb_prob else None)


def resample_ratio(wave: np.ndarray, ratio: float) -> np.ndarray:
    """Resample [n] to about ``n * ratio`` samples (polyphase, ratio as a fraction with denominator <= 200)."""
    from scipy.signal import resample_poly

    frac = Fraction(ratio).limit_denominator(200)
    return resample_poly(wave, frac.numerator, frac.denominator).astype(np.float32)


def wsola(wave: np.ndarray, rate: float, sr: int) -> np.ndarray:
    """Time-stretch [n] to about ``n / rate`` samples without changing pitch (WSOLA, see module docstring)."""
    if abs(rate - 1.0) < 1e-6 or len(wave) < 4 * FRAME_S * sr:
        return wave.astype(np.float32)
    n_win = int(FRAME_S * sr) // 2 * 2
    hop = n_win // 2
    tol = int(TOLERANCE_S * sr)
    win = np.hanning(n_win).astype(np.float32)
    n_out = int(len(wave) / rate)
    padded = np.pad(wave.astype(np.float32), (tol, n_win + tol + hop))
    out = np.zeros(n_out + n_win, np.float32)
    norm = np.zeros(n_out + n_win, np.float32)
    prev = None  # the continuation of the previously placed frame: what the next frame should look like
    for k in range(n_out // hop + 1):
        centre = int(round(k * hop * rate)) + tol
        if prev is None:
            start = centre
        else:
            region = padded[centre - tol:centre + tol + n_win]
            scores = np.correlate(region, prev, mode="valid")
            start = centre - tol + int(np.argmax(scores))
        frame = padded[start:start + n_win]
        out[k * hop:k * hop + n_win] += frame * win
        norm[k * hop:k * hop + n_win] += win
        prev = padded[start + hop:start + hop + n_win]
    return (out / np.maximum(norm, 1e-3))[:n_out]


def room_response(rt60_s: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """A synthetic room impulse response: direct path plus exponentially decaying noise (-60 dB at rt60)."""
    n = max(1, int(rt60_s * sr))
    t = np.arange(n) / sr
    tail = rng.standard_normal(n) * np.exp(-6.9 * t / rt60_s)
    tail[: int(0.002 * sr)] = 0.0
    ir = 0.4 * tail / np.sqrt(np.sum(tail**2) + 1e-12)
    ir[0] = 1.0
    return ir.astype(np.float32)


def noise(n: int, pink: bool, rng: np.random.Generator) -> np.ndarray:
    """White or pink (1/f power) unit-variance noise [n]."""
    x = rng.standard_normal(n)
    if pink:
        spec = np.fft.rfft(x)
        spec /= np.sqrt(np.maximum(np.arange(len(spec)), 1.0))
        x = np.fft.irfft(spec, n)
    return (x / (x.std() + 1e-12)).astype(np.float32)


def perturb(wave: np.ndarray, sr: int, p: Perturbation, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Apply ``p`` to a mono wave; returns the new wave and its time scale (new duration / old duration)."""
    from scipy.signal import fftconvolve

    x = np.asarray(wave, np.float32) * np.float32(10.0 ** (p.gain_db / 20.0))
    if p.rt60_s is not None:
        x = fftconvolve(x, room_response(p.rt60_s, sr, rng))[: len(x)].astype(np.float32)
    if abs(p.warp - 1.0) > 1e-6:
        x = resample_ratio(x, 1.0 / p.warp)         # frequencies x warp, duration / warp
    scale = 1.0 / p.tempo
    x = wsola(x, len(x) / (len(wave) * scale), sr)  # duration -> scale x the original
    if p.snr_db is not None:
        level = np.sqrt(np.mean(x.astype(np.float64) ** 2) + 1e-12)
        x = x + noise(len(x), p.pink, rng) * np.float32(level * 10.0 ** (-p.snr_db / 20.0))
    return x.astype(np.float32), len(x) / max(1, len(wave))
