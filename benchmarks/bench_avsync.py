#!/usr/bin/env python
"""A/V offset estimator (thg_nerf/preprocess/avsync.py): synthetic pairs, the shared clips, unrelated audio.

Usage: python benchmarks/bench_avsync.py [--quick]

1. Synthetic: mouth = the per-frame RMS envelope of the audio (as in thg_nerf/testing/synthetic.py, exact
   sync), audio shifted by -0.2 / 0 / +0.2 s: the scene's periodic ``speech_like`` audio and
   ``varied_speech`` (no fixed rhythm), 10 s, seeds 0-4, 25 and 30 fps.
2. The shared clips with video (macron, katiehill, speaker2): the mouth opening from the landmarks of a
   preprocessed dataset (data/macron_tiny when present, else data/avsync_<clip>, written here with
   ``av_offset=0`` when missing), the original audio decoded from the video; then that audio delayed by
   +0.2 s and advanced by 0.2 s: estimate(shifted) - estimate(original) should equal the shift. Plus the
   estimates on 8 s windows of macron (precision on short clips).
3. Unrelated audio (the null the confidence threshold must reject): each clip's mouth with its own audio
   circularly shifted by 2 s or more, and with the other clips' audio.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from thg_nerf.audio.io import audio_envelope, load_audio  # noqa: E402
from thg_nerf.preprocess import avsync  # noqa: E402
from thg_nerf.testing.signals import speech_like, varied_speech  # noqa: E402

MEDIA = ROOT.parent / "shared" / "media"
SR = 16000
SHIFTS = (-0.2, 0.0, 0.2)
CLIPS = {"macron": "macron_50s_512px_30fps.mp4", "katiehill": "katiehill_8s_512px_25fps.mp4",
         "speaker2": "speaker2_20s_1080x1920_25fps.mp4"}
REUSE = {"macron": ROOT / "data" / "macron_tiny"}


def delayed(wave: np.ndarray, shift_s: float) -> np.ndarray:
    """The audio made ``shift_s`` late (so the true offset grows by ``shift_s``)."""
    return avsync.shift_audio(wave, SR, -shift_s)


def synthetic(seeds: range) -> None:
    print("\n### Synthetic pairs (exact sync), 10 s\n")
    print("| audio | fps | cases | raw lag error max abs (ms) | mean (ms) | confidence min / median | confident |")
    print("|---|---|---|---|---|---|---|")
    for name, make in (("speech_like (scene audio, periodic)", speech_like), ("varied_speech", varied_speech)):
        for fps in (25.0, 30.0):
            errs, confs = [], []
            for seed in seeds:
                wave = make(10.0, SR, seed=seed)
                env = audio_envelope(wave, SR, fps, int(10 * fps))
                mouth = env / env.max()
                for shift in SHIFTS:
                    est = avsync.estimate_av_offset(mouth, np.ones(len(mouth), bool), delayed(wave, shift), SR, fps)
                    errs.append(est.raw_lag_s - shift)
                    confs.append(est.confidence)
            errs, confs = np.array(errs) * 1000, np.array(confs)
            print(f"| {name} | {fps:g} | {len(errs)} | {np.abs(errs).max():.1f} | {errs.mean():+.1f} | "
                  f"{confs.min():.1f} / {np.median(confs):.1f} | {(confs >= avsync.CONFIDENT).sum()}/{len(confs)} |")


def clip_data(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(mouth [N], valid [N], original audio at 16 kHz, fps) of a shared clip."""
    from thg_nerf.dataset import load_dataset
    from thg_nerf.preprocess.signals import mouth_opening
    from thg_nerf.preprocess.topology import get_topology

    video = MEDIA / CLIPS[name]
    data = REUSE.get(name)
    if data is None or not data.is_dir() or not (data / "tracking.npz").is_file():
        data = ROOT / "data" / f"avsync_{name}"
    if not (data / "tracking.npz").is_file():
        from thg_nerf.config import load_config
        from thg_nerf.preprocess.pipeline import preprocess

        cfg = load_config("tiny", {"preprocess": {"size": 256, "av_offset": "0"}}).preprocess
        print(f"(preprocessing {video.name} into {data})", file=sys.stderr)
        preprocess(video, data, cfg)
    ds = load_dataset(data)
    trk = np.load(data / "tracking.npz")
    topo = get_topology(ds.meta.get("landmarks", {}).get("backend", "mediapipe"))
    mouth = mouth_opening(trk["landmarks"], topo.mouth)
    return mouth, trk["valid"].astype(bool), load_audio(video, sr=SR), ds.fps


def real_clips(clips: dict) -> None:
    print("\n### Shared clips\n")
    print("| clip | frames | estimate (raw lag) s | confidence | peak CV corr | est(+0.2 late) - est | "
          "est(0.2 early) - est | auto applies | time (s) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, (mouth, valid, wave, fps) in clips.items():
        t0 = time.perf_counter()
        base = avsync.estimate_av_offset(mouth, valid, wave, SR, fps)
        dt = time.perf_counter() - t0
        late = avsync.estimate_av_offset(mouth, valid, delayed(wave, 0.2), SR, fps)
        early = avsync.estimate_av_offset(mouth, valid, delayed(wave, -0.2), SR, fps)
        applied = avsync.applied_offset("auto", base.offset_s, base.confidence)
        print(f"| {name} | {len(mouth)} @ {fps:g} fps | {base.offset_s:+.3f} ({base.raw_lag_s:+.3f}) | "
              f"{base.confidence:.1f} | "
              f"{base.peak_corr:.2f} | {late.offset_s - base.offset_s:+.3f} ({late.confidence:.1f}) | "
              f"{early.offset_s - base.offset_s:+.3f} ({early.confidence:.1f}) | "
              f"{f'{applied:+.3f} s' if applied else 'no'} | {dt:.1f} |")


def windows(clips: dict, name: str = "macron", seconds: float = 8.0) -> None:
    if name not in clips:
        return
    mouth, valid, wave, fps = clips[name]
    n = int(seconds * fps)
    rows = []
    for a in range(0, len(mouth) - n + 1, n):
        w = wave[int(a / fps * SR):int((a + n) / fps * SR)]
        est = avsync.estimate_av_offset(mouth[a:a + n], valid[a:a + n], w, SR, fps)
        rows.append(f"{a / fps:.0f}-{(a + n) / fps:.0f} s: {est.raw_lag_s:+.3f} ({est.confidence:.1f})")
    print(f"\n{name}, {seconds:g} s windows, raw lag s (confidence): " + "; ".join(rows))


def unrelated_audio(name: str, wave: np.ndarray, others: dict[str, np.ndarray], rng: np.random.Generator,
                    draws: int) -> list[tuple[str, np.ndarray]]:
    """(label, audio) pairs that do not belong to clip ``name``'s lips, each as long as its ``wave``: the wave
    circularly shifted by 2 s or more (``draws`` of them), then each of ``others`` tiled to length."""
    cases = [(f"{name} own audio circularly shifted {s:.1f} s", np.roll(wave, int(s * SR)))
             for s in rng.uniform(2.0, len(wave) / SR - 2.0, draws)]
    for other, w in others.items():
        cases.append((f"{name} mouth with {other} audio", np.tile(w, int(np.ceil(len(wave) / len(w))))[:len(wave)]))
    return cases


def negatives(clips: dict, per_clip: int) -> None:
    rng = np.random.default_rng(0)
    confs, worst = [], ("", 0.0)
    for name, (mouth, valid, wave, fps) in clips.items():
        others = {o: c[2] for o, c in clips.items() if o != name}
        for label, w in unrelated_audio(name, wave, others, rng, per_clip):
            c = avsync.estimate_av_offset(mouth, valid, w, SR, fps).confidence
            confs.append(c)
            if c > worst[1]:
                worst = (label, c)
    confs = np.array(confs)
    print(f"\nUnrelated audio: {len(confs)} cases, confidence median {np.median(confs):.1f}, "
          f"95th percentile {np.percentile(confs, 95):.1f}, max {confs.max():.1f} ({worst[0]}); "
          f"at or above CONFIDENT = {avsync.CONFIDENT:g}: {(confs >= avsync.CONFIDENT).sum()}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="2 synthetic seeds, 4 circular shifts per clip")
    args = p.parse_args()
    t0 = time.perf_counter()
    print(f"estimator: lags +-{avsync.MAX_LAG_S} s, {avsync.FOLDS} folds, ridge {avsync.RIDGE}, "
          f"bias {avsync.BIAS_S} s, CONFIDENT {avsync.CONFIDENT}, AUTO_MIN_S {avsync.AUTO_MIN_S}")
    synthetic(range(2 if args.quick else 5))
    clips = {n: clip_data(n) for n in CLIPS if (MEDIA / CLIPS[n]).is_file()}
    if not clips:
        print(f"\n(no shared media at {MEDIA}: real clips skipped)")
        return
    real_clips(clips)
    windows(clips)
    negatives(clips, 4 if args.quick else 30)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
