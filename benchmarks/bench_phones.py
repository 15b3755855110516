#!/usr/bin/env python
"""Phone features (pocketsphinx allphone): speed, silence vs the energy speech mask, bilabial phones.

Usage: python benchmarks/bench_phones.py [--repeat 2] [--lips]
Reads ../shared/media/drive_radio_16k.wav (English) and the audio of macron_50s_512px_30fps.mp4 (French; the
acoustic model is US English); a missing file is skipped. Needs the ``phones`` extra (pocketsphinx).
``--lips`` also tracks the macron video with mediapipe (``preprocess`` extra) and compares the mouth opening
(inner-lip gap / mouth width) of video frames by the phone at their window centre, at audio-video lags.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from thg_nerf.audio.features import MEL_HOP, SAMPLE_RATE, extract_features, log_mel, speech_frames  # noqa: E402
from thg_nerf.audio.io import load_audio  # noqa: E402
from thg_nerf.audio.phones import BILABIALS, PHONES, SIL, phone_posteriors  # noqa: E402
from thg_nerf.preprocess.signals import runs as true_runs  # noqa: E402
from thg_nerf.testing.signals import speech_like  # noqa: E402

MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"
CLIPS = (("drive_radio_16k.wav", "English", None), ("macron_50s_512px_30fps.mp4", "French", 30.0))
HOP_S = MEL_HOP / SAMPLE_RATE


def runs(labels: np.ndarray) -> list[tuple[int, int]]:
    """(label, length in frames) of each run of equal labels."""
    cut = np.flatnonzero(np.diff(labels)) + 1
    starts = np.concatenate([[0], cut])
    ends = np.concatenate([cut, [len(labels)]])
    return [(int(labels[a]), int(b - a)) for a, b in zip(starts, ends)]


def report(name: str, lang: str, fps: float | None, repeat: int, lips: bool) -> None:
    wave = load_audio(MEDIA / name)
    dur = len(wave) / SAMPLE_RATE
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        post = phone_posteriors(wave)
        best = min(best, time.perf_counter() - t0)
    labels = post.argmax(axis=1)
    speech = speech_frames(log_mel(wave)[1])
    sil = labels == SIL
    print(f"\n{name} ({lang}, {dur:.1f} s): {best:.2f} s -> {best / dur:.3f} s per s of audio (best of {repeat})")
    print(f"  frames (20 ms): SIL {sil.mean():.1%}; energy speech mask {speech.mean():.1%}; "
          f"speech frames labelled a phone {(~sil[speech]).mean():.1%}; "
          f"non-speech frames labelled SIL {sil[~speech].mean():.1%}")
    segs = [(lab, n) for lab, n in runs(labels) if lab != SIL]
    speech_s = (~sil).sum() * HOP_S
    print(f"  phone runs: {len(segs)} in {speech_s:.1f} s of non-SIL ({len(segs) / speech_s:.1f} per s), "
          f"median {np.median([n for _, n in segs]) * HOP_S * 1000:.0f} ms")
    counts = Counter()
    for lab, n in segs:
        counts[PHONES[lab]] += n
    total = sum(counts.values())
    print("  top phones (share of non-SIL frames): "
          + ", ".join(f"{p} {c / total:.1%}" for p, c in counts.most_common(10)))
    bil = [(PHONES[lab], n) for lab, n in segs if PHONES[lab] in BILABIALS]
    per = Counter(p for p, _ in bil)
    print(f"  bilabial runs (P/B/M): {len(bil)} = {len(bil) / dur * 60:.0f} per min "
          f"({', '.join(f'{p} {per[p]}' for p in BILABIALS)}), {len(bil) / max(len(segs), 1):.1%} of phone runs, "
          f"{sum(n for _, n in bil) / total:.1%} of non-SIL frames, median length "
          f"{np.median([n for _, n in bil]) * HOP_S * 1000 if bil else 0:.0f} ms")
    if fps:
        n_frames = int(dur * fps)
        centre = extract_features(wave, SAMPLE_RATE, fps, n_frames, "phones")[:, 8].argmax(axis=-1)
        is_bil = np.isin(centre, [PHONES.index(p) for p in BILABIALS])
        print(f"  video frames at {fps:g} fps whose centre step is bilabial: {is_bil.sum()} of {n_frames} "
              f"({is_bil.mean():.1%}); in {len(true_runs(is_bil))} runs")
        if lips:
            lip_check(MEDIA / name, fps, centre, is_bil)


def lip_check(video: Path, fps: float, centre: np.ndarray, is_bil: np.ndarray, max_lag: int = 4) -> None:
    """Mean mouth opening of video frames grouped by the phone at their window centre, at lags in frames."""
    from thg_nerf.preprocess.models import MediapipeLandmarker
    from thg_nerf.preprocess.signals import mouth_opening
    from thg_nerf.preprocess.topology import mediapipe_topology
    from thg_nerf.utils.video import iter_frames

    mouth, landmarker, opening = mediapipe_topology().mouth, MediapipeLandmarker(), []
    for frame in iter_frames(video):
        faces = landmarker(frame)
        opening.append(float(mouth_opening(faces[0], mouth)) if faces else np.nan)
    landmarker.close()
    opening = np.asarray(opening[: len(centre)])
    n = len(opening)
    centre, is_bil = centre[:n], is_bil[:n]
    print(f"  lips: mouth opening (inner-lip gap / mouth width) of {np.isfinite(opening).sum()} tracked frames, "
          f"median {np.nanmedian(opening):.3f}; mean by centre phone, video frame i + lag vs audio window i:")
    for lag in range(-max_lag, max_lag + 1):
        a = np.arange(max(0, -lag), min(n, n - lag))
        o, b, sil = opening[a + lag], is_bil[a], centre[a] == SIL
        print(f"    lag {lag:+d} ({lag / fps * 1000:+.0f} ms): bilabial {np.nanmean(o[b]):.3f}, "
              f"other phones {np.nanmean(o[~b & ~sil]):.3f}, SIL {np.nanmean(o[sil]):.3f}")
    per = {p: opening[centre == PHONES.index(p)] for p in ("B", "M", "P", "F", "V", "UW", "AA", "AE", "AY")}
    print("  lips at lag 0 by phone (frames, mean opening): "
          + ", ".join(f"{p} {len(o)} {np.nanmean(o):.3f}" for p, o in per.items() if len(o)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--lips", action="store_true", help="mouth opening by phone on the macron video (mediapipe)")
    args = p.parse_args()
    synth = speech_like(10.0, seed=0)
    labels = phone_posteriors(synth).argmax(axis=1)
    speech = speech_frames(log_mel(synth)[1])
    print(f"synthetic speech_like (10 s): SIL on {(labels == SIL).mean():.1%} of frames, "
          f"{(labels[speech] == SIL).mean():.1%} of its energy speech frames")
    for name, lang, fps in CLIPS:
        if (MEDIA / name).is_file():
            report(name, lang, fps, args.repeat, args.lips)
        else:
            print(f"{MEDIA / name} not found: skipped")


if __name__ == "__main__":
    main()
