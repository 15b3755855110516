"""How much a cross-speaker lip figure can be trusted, and what moves it.

    .venv/bin/python benchmarks/bench_cross_speaker.py --run data/gv/run \\
        --cross ../shared/media/katiehill_8s_512px_25fps.mp4 \\
        --cross ../shared/media/speaker2_20s_1080x1920_25fps.mp4 --cache data/macron_gain/run/cross_data

For each ``--cross`` clip (preprocessed once into ``--cache``, as ``thg-nerf eval --cross`` does), with the
run's audio -> motion model:

- ``corr``: predicted vs tracked mouth opening at lag 0 (the figure ``eval --cross`` reports, with the run's
  voice normalisation), ``voice_warp``: the filterbank warp it applied, ``corr_plain``: the same without it,
  ``corr_warp_only``: with the warp but not the band spread matching;
- ``corr_speech_frames`` / ``speech_frames``: ``corr`` on the frames whose audio is speech only (pauses, where
  a mouth may open to breathe, left out), and their number;
- ``chance_95``: 95th percentile of the absolute correlation with the prediction circularly shifted by at
  least 1 s (unrelated speech of the same clip), ``interval_90``: 5th / 95th percentile of the correlation
  over 2000 moving-block bootstrap resamples (blocks of 1 s); both as ``thg-nerf eval --cross`` reports them
  (``thg_nerf.train.metrics.corr_reliability``; before the sixth session this script computed them itself,
  as ``null_abs_95`` and ``bootstrap_90``, and also reported the null's mean and standard deviation);
- ``warp_scan``: the lag-0 correlation with the clip's audio frequency-warped by each factor first (the
  augmentation's warp: pitch and formants scaled together; < 1 = a lower, longer vocal tract), without the
  run's voice normalisation (as is the high-pass scan);
- ``highpass_scan``: the lag-0 correlation with the clip's audio high-passed first (4th-order Butterworth,
  zero phase) at each cutoff (Hz), a probe of how much the lowest bands (pitch, room rumble) hurt;
- ``median_f0_hz``: the clip's median pitch (YIN, voiced frames of its speech), and the run's own clip's.
- ``ridge`` / ``ridge_voice_norm``: the same lag-0 correlation for an independent predictor, the ridge
  regressor from mel windows to the mouth opening fitted on the run's training frames (``bench_lipsync.py``'s
  ``corr_regressor``), from the clip's features without and with the run's voice normalisation (warp, and
  band spread when the run's voice model has one).
- ``av_check``: the clip's A/V offset read with the run's model as ``eval --cross`` reads it
  (``thg_nerf.train.metrics.series_av_offset``) and whether ``eval`` applies it (``avsync.applied_offset``:
  confidence >= ``avsync.CONFIDENT``); ``offset_null``: the confidence the same reading reaches on unrelated audio (each
  clip's tracked mouth against its own audio circularly shifted by 2 s or more, 10 draws, and against the
  other clips' and every ``--null-audio`` file's audio, tiled to length): the check that the threshold
  rejects audio that does not belong to the lips.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SR = 16000
WARPS = (0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0, 1.05, 1.1, 1.2)
HIGHPASS_HZ = (100, 150, 200, 250, 300)


def median_f0(wave: np.ndarray, sr: int = SR, fmin: float = 60.0, fmax: float = 450.0,
              threshold: float = 0.15) -> float | None:
    """Median pitch (Hz) of a wave's voiced frames: YIN (40 ms frames, 10 ms hop) on frames within 25 dB of
    the loud (90th percentile) level."""
    n, hop, tmax, tmin = int(0.04 * sr), int(0.01 * sr), int(sr / fmin), int(sr / fmax)
    if len(wave) < n + tmax + 1:
        return None
    frames = np.lib.stride_tricks.sliding_window_view(wave.astype(np.float64), n + tmax)[::hop]
    level = 10 * np.log10((frames[:, :n] ** 2).mean(1) + 1e-12)
    f0 = []
    for x in frames[level > np.percentile(level, 90) - 25]:
        d = np.array([np.sum((x[:n] - x[t:t + n]) ** 2) for t in range(1, tmax + 1)])
        cmnd = d * np.arange(1, tmax + 1) / (np.cumsum(d) + 1e-12)
        below = np.nonzero(cmnd[tmin - 1:] < threshold)[0]
        if len(below):
            t = below[0] + tmin - 1
            while t + 1 < len(cmnd) and cmnd[t + 1] < cmnd[t]:
                t += 1
            f0.append(sr / (t + 1))
    return round(float(np.median(f0)), 1) if f0 else None


def plain_mouth(mm, wave: np.ndarray, ds, warp: float = 1.0) -> np.ndarray:
    """``mm``'s predicted mouth opening [N] from ``wave`` without voice normalisation (or with the filterbank
    warp ``warp`` alone)."""
    from thg_nerf.audio.features import extract_features

    return mm.mouth(mm.predict(extract_features(wave, SR, ds.fps, ds.n_frames, mm.spec, warp=warp)))


def lag0_corr(mm, wave: np.ndarray, ds, real: np.ndarray, ok: np.ndarray, warp: float = 1.0) -> float:
    """Lag-0 correlation of ``mm``'s predicted mouth opening from ``wave`` (no voice normalisation, or the warp
    alone) with ``real`` on ``ok`` frames."""
    from thg_nerf.motion.model import corr

    p = plain_mouth(mm, wave, ds, warp)
    return round(float(corr(p[ok], real[ok])), 3)


def speech_frames_corr(pred: np.ndarray, real: np.ndarray, ok: np.ndarray, wave: np.ndarray, fps: float) -> dict:
    """The lag-0 correlation on the video frames whose audio is speech (the mel normalisation's speech gate at
    the frame's time) and how many there are: pauses, where a mouth may open to breathe, left out."""
    from thg_nerf.audio.features import MEL_HOP, frame_level_db, speech_frames, stft_frames
    from thg_nerf.motion.model import corr

    speech = speech_frames(frame_level_db(stft_frames(wave)))
    idx = np.clip(np.rint(np.arange(len(pred)) / fps * SR / MEL_HOP).astype(int), 0, len(speech) - 1)
    sel = ok & speech[idx]
    c = corr(pred[sel], real[sel])
    return {"corr_speech_frames": None if c is None else round(c, 3), "speech_frames": int(sel.sum())}


def offset_null(mm, clips: dict, extra: dict[str, np.ndarray], rng: np.random.Generator, draws: int = 10) -> dict:
    """Confidence of ``series_av_offset`` on audio unrelated to each clip's lips (see the module docstring)."""
    from bench_avsync import unrelated_audio

    from thg_nerf.preprocess.avsync import CONFIDENT
    from thg_nerf.train.evaluate import cross_mouth
    from thg_nerf.train.metrics import series_av_offset

    confs, worst = [], ("", 0.0)
    for name, (ds, wave, real) in clips.items():
        others = {**{o: c[1] for o, c in clips.items() if o != name}, **extra}
        for label, w in unrelated_audio(name, wave, others, rng, draws):
            _, pred, _, _ = cross_mouth(mm, ds, w)
            c = series_av_offset(pred, real, ds.fps)["confidence"]
            confs.append(c)
            if c > worst[1]:
                worst = (label, c)
    confs = np.array(confs)
    return {"cases": len(confs), "median": round(float(np.median(confs)), 2),
            "p95": round(float(np.percentile(confs, 95)), 2), "max": round(float(confs.max()), 2),
            "max_case": worst[0], "at_or_above_confident": int((confs >= CONFIDENT).sum())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, type=Path)
    ap.add_argument("--cross", action="append", required=True, type=Path)
    ap.add_argument("--cache", type=Path, default=REPO / "data" / "cross")
    ap.add_argument("--null-audio", action="append", default=[], type=Path,
                    help="more unrelated speech for the A/V check's null (WAV or video)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    from bench_lipsync import ridge_mouth
    from scipy.signal import butter, sosfiltfilt

    from thg_nerf.audio.features import extract_features
    from thg_nerf.audio.io import load_audio
    from thg_nerf.dataset import load_dataset
    from thg_nerf.log import setup_logging
    from thg_nerf.motion.augment import Perturbation, perturb
    from thg_nerf.motion.model import corr
    from thg_nerf.preprocess.avsync import applied_offset
    from thg_nerf.train.checkpoint import load_run, read_run_info
    from thg_nerf.train.evaluate import cross_dataset, cross_mouth
    from thg_nerf.train.metrics import corr_reliability, series_av_offset

    setup_logging(quiet=True)
    run = load_run(args.run)
    mm = run.motion_model
    own = load_dataset(read_run_info(args.run)["data_dir"])
    out = {"run": str(args.run), "own_median_f0_hz": median_f0(load_audio(own.path("audio"), SR)[: 30 * SR])}
    r_w, r_mu, r_sd = ridge_mouth(own)
    rng = np.random.default_rng(0)
    clips = {}
    for video in args.cross:
        ds = cross_dataset(video, args.cache, run.cfg.preprocess)
        res, pred, real, ok = cross_mouth(mm, ds)
        wave = load_audio(ds.path("audio"), SR)
        warp_scan = {}
        for a in WARPS:
            w, _ = perturb(wave, SR, Perturbation(warp=a), rng)
            w = np.pad(w[:len(wave)], (0, max(0, len(wave) - len(w))))
            warp_scan[f"{a:.2f}"] = lag0_corr(mm, w, ds, real, ok)
        hp_scan = {str(fc): lag0_corr(mm, sosfiltfilt(butter(4, fc, fs=SR, btype="high", output="sos"), wave)
                                      .astype(np.float32), ds, real, ok) for fc in HIGHPASS_HZ}
        x = [extract_features(wave, SR, ds.fps, ds.n_frames, "mel", warp=a, spread=sp).reshape(ds.n_frames, -1)
             for a, sp in ((1.0, None), (res["voice_warp"], mm.voice_spread))]
        ridge_plain, ridge_norm = (round(float(corr((((v - r_mu) / r_sd) @ r_w)[ok], real[ok])), 3) for v in x)
        row = {"corr": res["corr"], "voice_warp": res["voice_warp"], "corr_plain": lag0_corr(mm, wave, ds, real, ok),
               "corr_warp_only": lag0_corr(mm, wave, ds, real, ok, res["voice_warp"]),
               **speech_frames_corr(pred, real, ok, wave, ds.fps),
               "ridge": ridge_plain, "ridge_voice_norm": ridge_norm,
               "frames": res["frames"], **corr_reliability(pred[ok], real[ok], ds.fps),
               "warp_scan": warp_scan, "highpass_scan": hp_scan, "median_f0_hz": median_f0(wave)}
        check = series_av_offset(pred, np.where(ok, real, np.nan), ds.fps)
        row["av_check"] = {**check, "applied": bool(applied_offset("auto", check["offset_s"], check["confidence"]))}
        out[video.stem] = row
        clips[video.stem] = (ds, wave, np.where(ok, real, np.nan))
        print(video.stem, json.dumps(row), flush=True)
    out["offset_null"] = offset_null(mm, clips, {f.stem: load_audio(f, SR) for f in args.null_audio}, rng)
    print("offset_null", json.dumps(out["offset_null"]), flush=True)
    if args.out:
        args.out.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
