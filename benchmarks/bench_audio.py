#!/usr/bin/env python
"""Audio decode and per-frame feature speed (mel), and the mel features' loudness invariance.

Usage: python benchmarks/bench_audio.py [--seconds 60]
Decodes ../shared/media/drive_macron_speech_48k.wav when present (skipped otherwise).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from thg_nerf.audio.features import extract_features  # noqa: E402
from thg_nerf.audio.io import load_audio, write_wav  # noqa: E402
from thg_nerf.testing.signals import speech_like  # noqa: E402

MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media" / "drive_macron_speech_48k.wav"


def timed(fn, repeat: int = 3) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=60.0)
    args = p.parse_args()
    fps, sr = 25.0, 16000
    wave = speech_like(args.seconds, sr, seed=0)
    n = int(args.seconds * fps)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "a.wav"
        write_wav(path, wave, sr)
        dt, _ = timed(lambda: load_audio(path))
        print(f"load_audio {args.seconds:.0f} s 16 kHz wav: {1000 * dt:.0f} ms")
    dt, feats = timed(lambda: extract_features(wave, sr, fps, n))
    print(f"mel features {args.seconds:.0f} s -> {feats.shape}: {1000 * dt:.0f} ms")
    quiet = extract_features(wave * 0.03, sr, fps, n)
    print(f"mel loudness invariance (gain 0.03, -30 dB): mean |diff| {np.abs(quiet - feats).mean():.2e}, "
          f"max {np.abs(quiet - feats).max():.2e} (features span 0..3)")
    if MEDIA.is_file():
        dt, real = timed(lambda: load_audio(MEDIA), repeat=1)
        print(f"load_audio {MEDIA.name} ({real.size / sr:.1f} s, 48 kHz stereo -> 16 kHz mono): {1000 * dt:.0f} ms")
    else:
        print(f"{MEDIA} not found: real-media decode skipped")


if __name__ == "__main__":
    main()
