"""A/B of the audio -> motion model's inputs and augmentation, at the motion level (no rendering).

    .venv/bin/python benchmarks/bench_motion_ab.py --data data/macron_tiny \\
        --cross ../shared/media/katiehill_8s_512px_25fps.mp4 \\
        --cross ../shared/media/speaker2_20s_1080x1920_25fps.mp4 --out motion_ab.json

For each variant (features, augmentation, lifter; ``--variants``), trains the audio -> motion model on the dataset's
training split exactly as ``thg-nerf train`` does, then reports
- ``val_mouth_corr`` / ``val_amp``: predicted (readout of the predicted motion) vs tracked 2D mouth opening of
  the dataset's validation frames, and the amplitude ratio after calibration;
- ``cross:<clip>``: the same correlation on other speakers' clips (their audio through this person's model vs
  their own tracked mouth opening), each clip preprocessed once into ``--cache`` (default ``data/cross``);
  ``cross:<clip>:best_lag``: [lag in frames, corr] of the best lag within +-10 frames;
  ``cross:<clip>:av_check``: [lag in frames, confidence] of the clip's A/V offset as ``eval --cross`` reads it
  with this model (``thg_nerf.train.metrics.series_av_offset``);
- training seconds.

``--ensemble``: also, per variant, the same figures for the mean of its first k seeds' calibrated mouth
predictions (k = 2..``--seeds``)
(validation frames from the clip's own audio, unnormalised, as training scores them; ``val_mouth_corr_seeds``
is each seed's figure on that same path, for comparison).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

#: The motion loss and gain of the third session's defaults, which the older variants were measured with
#: (one network each: the ensemble of the eighth session is pinned off for every variant before it).
_OWN_GAIN = {"mouth_weight": 0.0, "gain_voices": False, "voice_norm": False, "ensemble": 1}
#: Voice normalisation as the fifth session measured it: the warp alone.
_WARP_ONLY = {"voice_norm": True, "voice_spread": False}
_WIDE = {"warp": [0.72, 1.38], "tempo": [0.8, 1.25]}
_MOUTH = {"features": "mel", "lifter": 12, "mouth_weight": 1.0, "voice_norm": False, "ensemble": 1}
_VTLN = {**_MOUTH, "gain_voices": True, **_WARP_ONLY}

#: name -> motion config overrides (on top of the tiny preset's defaults)
VARIANTS = {
    "mel+aug": {"features": "mel", "lifter": 0, **_OWN_GAIN},
    "mel": {"features": "mel", "lifter": 0, "augment": {"copies": 0}, **_OWN_GAIN},
    "phones+aug": {"features": "phones", **_OWN_GAIN},
    "mel+phones+aug": {"features": "mel+phones", "lifter": 0, **_OWN_GAIN},
    "mel+aug+lifter": {"features": "mel", "lifter": 12, **_OWN_GAIN},
    "mel+aug16+lifter": {"features": "mel", "lifter": 12, "augment": {"copies": 16}, **_OWN_GAIN},
    "mel+aug+lifter8": {"features": "mel", "lifter": 8, **_OWN_GAIN},
    "mel+aug+lifter+h32": {"features": "mel", "lifter": 12, "hidden": 32, **_OWN_GAIN},
    "mel+aug+lifter+drop30": {"features": "mel", "lifter": 12, "dropout": 0.3, **_OWN_GAIN},
    "mel+aug+lifter+widewarp": {"features": "mel", "lifter": 12, "augment": _WIDE, **_OWN_GAIN},
    "mel+aug+lifter+ctx6": {"features": "mel", "lifter": 12, "context_frames": 6, **_OWN_GAIN},
    "mel+aug+lifter+mouth1": {**_MOUTH, "gain_voices": False},
    "mel+aug+lifter+mouth1+gainvoices": {**_MOUTH, "gain_voices": True},  # the defaults since the fourth session
    "mel+aug+lifter+mouth1+gainvoices+low200": {**_MOUTH, "gain_voices": True, "min_band_hz": 200.0},
    "mel+aug+lifter+mouth1+gainvoices+low250": {**_MOUTH, "gain_voices": True, "min_band_hz": 250.0},
    "mel+aug+lifter+mouth1+widewarp": {**_MOUTH, "gain_voices": True, "augment": _WIDE},
    "mel+aug+lifter+mouth1+upwarp": {**_MOUTH, "gain_voices": True, "augment": {"warp": [0.85, 1.45]}},
    # fifth session: vocal tract length normalisation of new voices (default), and of the training copies
    "mel+aug+lifter+mouth1+gainvoices+vtln": _VTLN,
    "mel+aug+lifter+mouth1+gainvoices+vtln+sat": {**_VTLN, "voice_norm_train": True},
    "mel+aug+lifter+mouth1+gainvoices+vtln+sat+noaugwarp": {**_VTLN, "voice_norm_train": True,
                                                            "augment": {"warp": [1.0, 1.0]}},
    "mel+aug+lifter16+mouth1+gainvoices+vtln": {**_VTLN, "lifter": 16},
    "mel+aug+lifter+mouth1+gainvoices+vtln+narrowwarp": {**_VTLN, "augment": {"warp": [0.91, 1.1]}},
    # sixth session: new voices' log-mel band spread matched to the person's too (default)
    "mel+aug+lifter+mouth1+gainvoices+vtln+spread": {**_VTLN, "voice_spread": True},
    # eighth session: the mean of six networks from consecutive seeds (default)
    "mel+aug+lifter+mouth1+gainvoices+vtln+spread+ens6": {**_VTLN, "voice_spread": True, "ensemble": 6},
}


def shift_scan(mm, ds) -> dict[str, float]:
    """{shift s: corr} of ``mm``'s predicted mouth opening with ``ds``'s tracked one, its audio advanced by
    each shift (``thg_nerf.preprocess.avsync.shift_audio``; negative = delayed)."""
    import numpy as np

    from thg_nerf.audio.io import load_audio
    from thg_nerf.preprocess.avsync import shift_audio
    from thg_nerf.train.evaluate import cross_mouth

    wave = load_audio(ds.path("audio"), 16000)
    return {f"{d:+.2f}": cross_mouth(mm, ds, shift_audio(wave, 16000, float(d)))[0]["corr"]
            for d in np.round(np.arange(-0.24, 0.241, 0.04), 2)}


def ensemble_rows(name: str, preds: dict[str, list], reals: dict[str, tuple], val_true) -> list[dict]:
    """``--ensemble``: the figures of the mean of a variant's first k seeds' mouth predictions, k = 2..seeds
    (``preds``: [seeds] of [N] each, ``"val"`` over the clip's own frames; ``reals``: clip -> (tracked mouth
    [N], valid [N], fps); ``val_true``: (validation frame ids, their tracked mouth))."""
    import numpy as np

    from thg_nerf.motion.model import corr
    from thg_nerf.train.metrics import series_av_offset

    ids, true = val_true
    rows = []
    for k in range(2, len(preds["val"]) + 1):
        row = {"variant": f"{name}, mean of the first {k} seeds",
               "val_mouth_corr": round(corr(np.mean(preds["val"][:k], 0)[ids], true), 4),
               "val_mouth_corr_seeds": [round(corr(p[ids], true), 4) for p in preds["val"][:k]]}
        for clip, (real, ok, fps) in reals.items():
            pred = np.mean(preds[clip][:k], 0)
            row[f"cross:{clip}"] = round(corr(pred[ok], real[ok]), 4)
            check = series_av_offset(pred, np.where(ok, real, np.nan), fps)
            row[f"cross:{clip}:av_check"] = [check["offset_frames"], check["confidence"]]
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--cross", action="append", default=[], type=Path)
    ap.add_argument("--cache", type=Path, default=REPO / "data" / "cross")
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, from {list(VARIANTS)}")
    ap.add_argument("--seeds", type=int, default=1,
                    help="repeat each variant with seeds S..S+N-1 (an ensemble's first network's seed)")
    ap.add_argument("--first-seed", type=int, default=0, help="S above (default 0)")
    ap.add_argument("--shift-scan", action="store_true",
                    help="also: each cross clip's correlation with its audio shifted by -0.24..+0.24 s "
                         "(positive = advanced, as preprocessing corrects late audio), first variant, seed 0")
    ap.add_argument("--ensemble", action="store_true",
                    help="also score the mean of each variant's seeds' predictions (module docstring)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    import numpy as np
    import torch

    from thg_nerf.audio.io import load_audio
    from thg_nerf.config import load_config
    from thg_nerf.dataset import load_dataset
    from thg_nerf.log import setup_logging
    from thg_nerf.motion.model import train_audio_motion
    from thg_nerf.preprocess.motion import dataset_motion
    from thg_nerf.train.evaluate import cross_dataset, cross_mouth
    from thg_nerf.train.metrics import series_av_offset

    torch.set_num_threads(2)
    setup_logging(quiet=True)
    ds = load_dataset(args.data)
    cfg0 = load_config("tiny")
    crosses = {v.stem.split("_")[0]: cross_dataset(v, args.cache, cfg0.preprocess) for v in args.cross}
    rows = []
    own = load_audio(ds.path("audio"), 16000)
    reals: dict[str, tuple] = {}
    val_ids = np.array([r.img_id for r in ds.val], dtype=np.int64)
    for name in args.variants.split(","):
        preds: dict[str, list] = {"val": [], **{clip: [] for clip in crosses}}
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            cfg = load_config("tiny", {"motion": {**VARIANTS[name], "seed": seed}}).motion
            t0 = time.perf_counter()
            mm = train_audio_motion(ds, cfg)
            m = mm.meta["metrics"]
            row = {"variant": name, "seed": seed, "seconds": round(time.perf_counter() - t0, 1),
                   "iterations": m["iterations"], "val_mouth_corr": m.get("val_mouth_corr"),
                   "val_amp_raw": m.get("val_mouth_amplitude_raw"), "val_amp": m.get("val_mouth_amplitude"),
                   "val_amp_voices_raw": m.get("val_mouth_amplitude_voices_raw"),
                   "gain": round(mm.gain, 3)}
            if mm.normalises_voice:
                row["voice_warps"] = {clip: round(mm.voice_warp(load_audio(c.path("audio"), 16000), 16000), 3)
                                      for clip, c in crosses.items()}
            if args.ensemble:
                preds["val"].append(mm.mouth(mm.predict(mm.features(own, 16000, ds.fps, ds.n_frames, warp=1.0))))
            for clip, cds in crosses.items():
                res, pred, real, ok = cross_mouth(mm, cds)
                preds[clip].append(pred)
                reals[clip] = (real, ok, cds.fps)
                row[f"cross:{clip}"] = res["corr"]
                row[f"cross:{clip}:best_lag"] = [res["best_lag_frames"], res["best_lag_corr"]]
                check = series_av_offset(pred, np.where(ok, real, np.nan), cds.fps)
                row[f"cross:{clip}:av_check"] = [check["offset_frames"], check["confidence"]]
            if args.shift_scan and not rows:
                row["shift_scan"] = {clip: shift_scan(mm, cds) for clip, cds in crosses.items()}
            rows.append(row)
            print(json.dumps(row), flush=True)
        if args.ensemble and args.seeds > 1:
            truth = (val_ids, dataset_motion(ds, write=False).mouth[val_ids])
            for row in ensemble_rows(name, preds, reals, truth):
                print(json.dumps(row), flush=True)
    summary = {}
    for name in dict.fromkeys(r["variant"] for r in rows):
        sel = [r for r in rows if r["variant"] == name]
        keys = [k for k, v in sel[0].items() if k != "seed" and (v is None or isinstance(v, (int, float)))]
        summary[name] = {k: round(float(np.mean([r[k] for r in sel if r[k] is not None])), 4) for k in keys
                         if any(r[k] is not None for r in sel)}
    print(json.dumps(summary, indent=1))
    if args.out:
        args.out.write_text(json.dumps({"rows": rows, "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
