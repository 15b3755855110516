"""Deterministic test audio: speech-like voiced signals with syllables and pauses, beeps."""

from __future__ import annotations

import numpy as np


def speech_like(duration: float, sr: int = 16000, seed: int = 0, f0: float = 120.0, tilt: float = 1.0,
                syllable_hz: float = 4.0, pauses: bool = True, gain: float = 0.3) -> np.ndarray:
    """A voiced harmonic source (jittered ``f0``, harmonics decaying as ``1/k**tilt``) with a ``syllable_hz``
    amplitude envelope and digitally silent pauses (about 0.4 s every 2 s when ``pauses``).

    Returns [round(duration * sr)] float32 with peak ``gain``.
    """
    rng = np.random.default_rng(seed)
    n = int(round(duration * sr))
    t = np.arange(n) / sr
    pitch = f0 * (1.0 + 0.08 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6.3)))
    phase = 2 * np.pi * np.cumsum(pitch) / sr
    ks = np.arange(1, int(3800 // f0) + 1)
    amps = (1.0 / ks**tilt) * rng.uniform(0.6, 1.0, len(ks))
    voiced = np.sin(np.outer(phase, ks) + rng.uniform(0, 6.3, len(ks))) @ amps
    voiced += 0.05 * rng.standard_normal(n) * np.abs(voiced).max()
    rate = syllable_hz * (1.0 + 0.15 * np.sin(2 * np.pi * 0.31 * t))
    env = np.clip(np.sin(np.pi * np.cumsum(rate) / sr), 0.0, None) ** 1.5
    if pauses:
        env *= ((t % 2.0) < 1.6).astype(np.float64)
    wave = voiced * env
    return (gain * wave / max(np.abs(wave).max(), 1e-12)).astype(np.float32)


def beep(duration: float, at: float, length: float = 0.06, freq: float = 1000.0, sr: int = 16000,
         amp: float = 0.5) -> np.ndarray:
    """Silence of ``duration`` s with a Hann-shaped sine beep of ``length`` s centred at ``at``: [n] float32."""
    t = np.arange(int(round(duration * sr))) / sr
    shape = np.cos(np.pi * np.clip((t - at) / length, -0.5, 0.5)) ** 2
    return (amp * shape * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def varied_speech(duration: float, sr: int = 16000, seed: int = 0, gain: float = 0.3) -> np.ndarray:
    """Speech-like audio without a fixed rhythm: :func:`speech_like` phrases of random length (0.5-2 s),
    syllable rate (3-6 Hz) and pitch (90-220 Hz), separated by digitally silent pauses of 0.1-0.6 s.

    Returns [round(duration * sr)] float32 with peak ``gain``.
    """
    rng = np.random.default_rng(seed)
    n = int(round(duration * sr))
    parts, total = [], 0
    while total < n:
        phrase = speech_like(rng.uniform(0.5, 2.0), sr, seed=int(rng.integers(1 << 31)), f0=rng.uniform(90, 220),
                             syllable_hz=rng.uniform(3.0, 6.0), pauses=False, gain=rng.uniform(0.5, 1.0))
        parts += [phrase, np.zeros(int(rng.uniform(0.1, 0.6) * sr), np.float32)]
        total += len(parts[-2]) + len(parts[-1])
    wave = np.concatenate(parts)[:n]
    return (gain * wave / max(np.abs(wave).max(), 1e-12)).astype(np.float32)


#: (F1, F2, F3) in Hz of five vowels of an adult male voice (textbook averages).
VOWELS = ((730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480), (570, 840, 2410))


def vowel_speech(duration: float, sr: int = 16000, seed: int = 0, f0: float = 110.0, formant_scale: float = 1.0,
                 syllable_s: float = 0.2, gain: float = 0.3) -> np.ndarray:
    """A source-filter voice: syllables of random :data:`VOWELS` (formants x ``formant_scale``, i.e. a vocal
    tract ``1 / formant_scale`` as long) on a jittered harmonic source at ``f0``, with short pauses.

    Each harmonic ``k`` of a syllable gets the sum of the three formant resonances at ``k * f0`` (100 Hz
    bandwidths). Returns [round(duration * sr)] float32 with peak ``gain``.
    """
    rng = np.random.default_rng(seed)
    n = int(round(duration * sr))
    seg = int(syllable_s * sr)
    t = np.arange(seg) / sr
    parts, total = [], 0
    while total < n:
        formants = np.array(VOWELS[int(rng.integers(len(VOWELS)))], np.float64) * formant_scale
        pitch = f0 * rng.uniform(0.9, 1.1) * (1.0 + 0.03 * np.sin(2 * np.pi * rng.uniform(2, 5) * t))
        phase = 2 * np.pi * np.cumsum(pitch) / sr
        ks = np.arange(1, int(0.45 * sr / pitch.max()) + 1)
        amps = (1.0 / (1.0 + ((ks[:, None] * pitch.mean() - formants[None]) / 100.0) ** 2)).sum(1) / ks**0.5
        voiced = np.sin(np.outer(phase, ks) + rng.uniform(0, 6.3, len(ks))) @ amps
        parts.append(voiced * np.sin(np.pi * t / syllable_s) ** 0.5)
        total += seg
        if rng.random() < 0.2:
            parts.append(np.zeros(int(rng.uniform(0.1, 0.3) * sr)))
            total += len(parts[-1])
    wave = np.concatenate(parts)[:n]
    wave = wave + 0.01 * np.abs(wave).max() * rng.standard_normal(n)
    return (gain * wave / max(np.abs(wave).max(), 1e-12)).astype(np.float32)
