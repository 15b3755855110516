"""Benchmark: train + evaluate a preset on the synthetic scene (or any dataset) and print the figures.

    .venv/bin/python benchmarks/bench_train.py                       # tiny preset, synthetic 128 px, 2 threads
    .venv/bin/python benchmarks/bench_train.py --threads 1 --iters 600
    .venv/bin/python benchmarks/bench_train.py --data DATA --preset tiny --out /tmp/bench_run
    .venv/bin/python benchmarks/bench_train.py --video ../shared/media/katiehill_8s_512px_25fps.mp4   # = thg-nerf fit

Prints one JSON object: training time and s/iteration, evaluation time, validation PSNR/SSIM/LMD, the
baselines, and the machine load average before/after (the 2-core development machine is shared, so the load
tells how contended the numbers are).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="dataset directory (default: generate the synthetic scene)")
    p.add_argument("--video", help="preprocess this video first (the whole 'thg-nerf fit', timed per step)")
    p.add_argument("--frames", type=int, default=120, help="synthetic frames (default 120)")
    p.add_argument("--size", type=int, default=128, help="synthetic frame size (default 128)")
    p.add_argument("--preset", default="tiny")
    p.add_argument("--iters", type=int, help="override train.iters")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="run directory (default: a temporary one, deleted)")
    args = p.parse_args()

    import torch

    from thg_nerf.config import load_config
    from thg_nerf.log import setup_logging
    from thg_nerf.testing.synthetic import make_synthetic_dataset
    from thg_nerf.train.evaluate import evaluate
    from thg_nerf.train.trainer import train

    torch.set_num_threads(args.threads)
    setup_logging(quiet=True)
    overrides = list(args.overrides) + ([f"train.iters={args.iters}"] if args.iters else [])
    cfg = load_config(args.preset, overrides)
    cfg.seed = args.seed
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        data = Path(args.data) if args.data else Path(tmp) / "data"
        load0 = os.getloadavg()[0]
        t_pre = time.perf_counter()
        if args.video:
            from thg_nerf.preprocess.pipeline import preprocess

            preprocess(args.video, data, cfg.preprocess, force=True)
        elif not args.data:
            make_synthetic_dataset(data, n_frames=args.frames, size=args.size, seed=args.seed)
        t_pre = time.perf_counter() - t_pre
        run = Path(args.out) if args.out else Path(tmp) / "run"
        t0 = time.perf_counter()
        train(data, run, cfg, device=args.device)
        t_train = time.perf_counter() - t0
        load1 = os.getloadavg()[0]
        t1 = time.perf_counter()
        report = evaluate(run, data, device=args.device)
        t_eval = time.perf_counter() - t1
    result = {
        "preset": cfg.preset, "iters": cfg.train.iters, "batch_rays": cfg.train.batch_rays,
        "data": args.video or args.data or "synthetic", "data_s": round(t_pre, 1),
        "resolution": report["resolution"], "threads": args.threads, "device": args.device,
        "train_s": round(t_train, 1), "s_per_iter": round(t_train / cfg.train.iters, 4),
        "eval_s": round(t_eval, 1), "eval_frames": report["n_frames"],
        "total_s": round(t_pre + t_train + t_eval, 1),
        "psnr": report["psnr"], "ssim": report["ssim"], "lmd": report["lmd"],
        "sync": {k: report["sync"][k] for k in ("offset_frames", "confidence")},
        "baselines": report["baselines"],
        "loadavg_1min": [round(load0, 2), round(load1, 2)], "cpu_count": os.cpu_count(),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
