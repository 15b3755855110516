"""Voice normalisation (VTLN, ``thg_nerf.audio.voice``) of a run: recovery of known warps, the warps it picks
for other voices, the same on a live stream, and its cost.

    .venv/bin/python benchmarks/bench_voice.py --run data/vn/run \\
        --own ../shared/media/drive_macron_speech_48k.wav --clip ../shared/media/drive_radio_16k.wav \\
        --clip ../shared/media/katiehill_8s_512px_25fps.mp4 --clip ../shared/media/speaker2_20s_1080x1920_25fps.mp4

- ``recovery``: the run's own validation audio (and each ``--own`` recording of the same person) warped by
  known factors (the augmentation's warp: resampling, pitch and formants together), then estimated: a perfect
  estimator returns 1 / factor. No lips are involved anywhere, so this is the estimator's own check.
- ``clips``: the warp each ``--clip`` (another voice; audio of a video or a wav) gets offline (whole clip) and
  on a live stream (``StreamingFeatures`` fed 20 ms chunks: its warp after each 2 s and at the end; a
  re-estimate happens once the audio of its log-mel frame has arrived, so a mark shows those up to about
  0.2 s before it).
- ``curves`` (with ``--wide LO HI``): how sharply each clip's warp is determined. The mean per-frame
  log-likelihood of its speech at each warp, relative to its best, under the run's voice model over the run's
  own grid, and under a model refitted the same way on the same training audio with the bands that stay
  below Nyquist down to LO (fewer bands), over a log grid LO..HI; ``within_0.2``: the warps scoring within
  0.2 nats per frame of the best.
- ``own_band_sd`` and, per clip, ``band_sd_mean`` / ``band_sd_lowest``: the spread over speech of the
  referenced log-mel bands (dB; mean over bands, lowest band) of the run's voice model (train split) and of
  each clip (warp 1), and ``spread_scale_range``: the smallest and largest per-band factor band spread
  matching applies to the clip after its warp.
- ``cost``: milliseconds per offline estimate and per streaming re-estimate, and the whole streaming
  feature extraction per second of audio with and without normalisation (the first ``--own`` recording, or
  the validation audio, repeated to 60 s and fed in 20 ms chunks).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SR = 16000
FACTORS = (0.8, 0.87, 0.93, 1.0, 1.08, 1.15, 1.25)
#: Points of the ``--wide`` likelihood curve.
CURVE_STEPS = 33


def likelihood_curve(voice, power: np.ndarray, warps: np.ndarray) -> dict:
    """Mean per-frame log-likelihood of speech power spectra [S, F] at each warp, relative to the best."""
    from thg_nerf.audio.voice import cepstra

    s = np.array([voice.score(cepstra(power, w)) for w in warps])
    near = warps[s >= s.max() - 0.2]
    return {"best": round(float(warps[np.argmax(s)]), 3), "within_0.2": [round(float(near.min()), 3),
            round(float(near.max()), 3)], "curve": {f"{w:.3f}": round(float(v - s.max()), 3)
                                                     for w, v in zip(warps, s)}}


def spread_summary(wave: np.ndarray, voice, warp: float) -> dict:
    """A clip's log-mel band spread (dB, at warp 1: mean over bands and the lowest band) and the range of the
    per-band factors band spread matching gives it after ``warp``."""
    from thg_nerf.audio.features import band_spread, log_mel, mel_reference, spread_scale

    db, level = log_mel(wave)
    sd = band_spread(db, level, mel_reference(db, level))
    out = {"band_sd_mean": None if sd is None else round(float(sd.mean()), 1),
           "band_sd_lowest": None if sd is None else round(float(sd[0]), 1)}
    if voice.band_sd is not None:
        db, level = log_mel(wave, warp=warp)
        scale = spread_scale(voice.band_sd, band_spread(db, level, mel_reference(db, level)))
        out["spread_scale_range"] = None if scale is None else [round(float(scale.min()), 2),
                                                                 round(float(scale.max()), 2)]
    return out


def wide_curves(run_voice, train_wave: np.ndarray, clips: dict[str, np.ndarray], lo: float, hi: float) -> dict:
    """``curves`` of the module docstring: the run's model on its grid, and a refitted one on LO..HI."""
    import thg_nerf.audio.voice as V

    out = {"run_model": {"bands": V.scored_bands()}}
    own = V.warp_grid()
    powers = {k: V.speech_power(x) for k, x in clips.items()}
    out["run_model"].update({k: likelihood_curve(run_voice, p, own) for k, p in powers.items()})
    saved = V.WARP_RANGE
    V.WARP_RANGE = (lo, hi)  # scored_bands() and cepstra() read it: the refitted model keeps fewer bands
    try:
        wide = V.VoiceModel.fit(train_wave)
        out["wide_model"] = {"bands": V.scored_bands()}
        warps = np.exp(np.linspace(np.log(lo), np.log(hi), CURVE_STEPS))
        out["wide_model"].update({k: likelihood_curve(wide, p, warps) for k, p in powers.items()})
    finally:
        V.WARP_RANGE = saved
    return out


def stream_warps(voice, wave: np.ndarray, fps: float = 25.0) -> tuple[dict[str, float], float]:
    """The streaming warp after each 2 s of a wave fed in 20 ms chunks, and the mean ms per re-estimate."""
    from thg_nerf.audio.stream import StreamingFeatures

    feats = StreamingFeatures(fps, voice=voice)
    chunk, marks = SR // 50, {}
    calls = [0, 0.0]
    update = feats._update_warp

    def timed() -> None:
        t = time.perf_counter()
        update()
        calls[0] += 1
        calls[1] += time.perf_counter() - t

    feats._update_warp = timed
    for a in range(0, len(wave), chunk):
        feats.push(wave[a:a + chunk])
        end = a + chunk
        if end % (2 * SR) == 0:
            marks[f"{end // SR}s"] = round(feats.warp, 3)
    feats.flush()
    marks["end"] = round(feats.warp, 3)
    return marks, round(1000 * calls[1] / max(1, calls[0]), 1)


def stream_cost(voice, wave: np.ndarray, seconds: float = 60.0) -> dict[str, float]:
    """Milliseconds of streaming feature extraction per second of audio, without and with ``voice``."""
    from thg_nerf.audio.stream import StreamingFeatures

    x = np.tile(wave, int(np.ceil(seconds * SR / len(wave))))[:int(seconds * SR)]
    out = {}
    for name, v in (("stream_ms_per_s_plain", None), ("stream_ms_per_s_voice_norm", voice)):
        feats = StreamingFeatures(25.0, voice=v)
        t = time.perf_counter()
        for a in range(0, len(x), SR // 50):
            feats.push(x[a:a + SR // 50])
        feats.flush()
        out[name] = round(1000 * (time.perf_counter() - t) / seconds, 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, type=Path)
    ap.add_argument("--own", action="append", default=[], type=Path, help="other recordings of the same person")
    ap.add_argument("--clip", action="append", default=[], type=Path, help="other voices (wav or video)")
    ap.add_argument("--wide", nargs=2, type=float, metavar=("LO", "HI"),
                    help="also the likelihood curves of every clip, on the run's grid and on LO..HI")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    from thg_nerf.audio.io import load_audio
    from thg_nerf.dataset import load_dataset
    from thg_nerf.log import setup_logging
    from thg_nerf.motion.augment import Perturbation, perturb
    from thg_nerf.motion.model import AudioMotionModel
    from thg_nerf.train.checkpoint import read_run_info

    setup_logging(quiet=True)
    mm = AudioMotionModel.load(args.run)
    if not mm.normalises_voice:
        sys.exit(f"{args.run}'s motion model has no voice model (trained with motion.voice_norm false or before it)")
    voice = mm.voice
    ds = load_dataset(read_run_info(args.run)["data_dir"])
    wave = load_audio(ds.path("audio"), SR)
    val = np.array([r.img_id for r in ds.val])
    own = {"val": wave[int(val.min() / ds.fps * SR):int((val.max() + 1) / ds.fps * SR)]}
    own.update({p.stem: load_audio(p, SR) for p in args.own})
    rng = np.random.default_rng(0)
    recovery, errs = {}, []
    for name, x in own.items():
        row = {}
        for a in FACTORS:
            est = voice.estimate_warp(perturb(x, SR, Perturbation(warp=a), rng)[0])
            row[f"{a:.2f}"] = round(est, 3)
            errs.append(np.log(est * a))
        recovery[name] = row
    out: dict = {"run": str(args.run), "recovery": recovery,
                 "recovery_rms_pct": round(100 * float(np.sqrt(np.mean(np.square(errs)))), 2),
                 "recovery_max_pct": round(100 * float(np.max(np.abs(errs))), 2), "clips": {}}
    if voice.band_sd is not None:
        out["own_band_sd"] = {"mean": round(float(voice.band_sd.mean()), 1),
                              "lowest": round(float(voice.band_sd[0]), 1)}
    print(json.dumps({k: out[k] for k in ("recovery", "recovery_rms_pct", "recovery_max_pct", "own_band_sd")
                      if k in out}), flush=True)
    ms_offline, ms_stream = [], []
    for path in [Path("val")] + args.clip:
        x = own["val"] if str(path) == "val" else load_audio(path, SR)
        t = time.perf_counter()
        offline = voice.estimate_warp(x)
        ms_offline.append(1000 * (time.perf_counter() - t))
        marks, ms = stream_warps(voice, x)
        ms_stream.append(ms)
        row = {"seconds": round(len(x) / SR, 1), "offline": round(offline, 3), "stream": marks,
               **spread_summary(x, voice, offline)}
        out["clips"][path.stem] = row
        print(path.stem, json.dumps(row), flush=True)
    out["cost"] = {"offline_ms_mean": round(float(np.mean(ms_offline)), 1),
                   "stream_reestimate_ms_mean": round(float(np.mean(ms_stream)), 1),
                   **stream_cost(voice, list(own.values())[-1])}
    print(json.dumps(out["cost"]))
    if args.wide:
        from thg_nerf.motion.model import frames_audio

        train_wave = frames_audio(wave, ds.fps, np.array([r.img_id for r in ds.train]))
        clips = {"val": own["val"], **{p.stem: load_audio(p, SR) for p in args.own + args.clip}}
        out["curves"] = wide_curves(voice, train_wave, clips, *args.wide)
        for model in ("run_model", "wide_model"):
            for k, v in out["curves"][model].items():
                if k != "bands":
                    print(model, k, "best", v["best"], "within 0.2 nats:", v["within_0.2"], flush=True)
    if args.out:
        args.out.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
