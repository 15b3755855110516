"""Iterations per second of data-parallel training (``train --nproc N``) at the same global batch.

    .venv/bin/python benchmarks/bench_ddp.py --work /tmp/thg_bench_ddp [--device cpu] [--procs 1,2] \\
        [--frames 100 --size 64 --iters 300 --batch-rays 1024] [--out ddp.json]

Trains the ``tiny`` preset on the synthetic scene once per process count (``--nproc N``; N = 1 is the plain
single-process path) and reports the training loop's iterations per second, from the ``elapsed_s`` the last
checkpoint records (the loop only: not the start-up, data decoding or the audio -> motion model), and the
final loss of each run, which should agree across process counts up to floating-point rounding. On the CPU
each of N ranks gets ``cores // N`` torch threads (``--threads`` sets the single process's, default all).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def run_once(data: Path, run: Path, nproc: int, args: argparse.Namespace) -> dict:
    from thg_nerf.config import load_config
    from thg_nerf.train import checkpoint as ckpt
    from thg_nerf.train.trainer import train

    cfg = load_config("tiny", {"train": {"iters": args.iters, "batch_rays": args.batch_rays,
                                         "checkpoint_every": args.iters, "eval_every": 0},
                               "motion": {"iters": 10, "augment": {"copies": 1}}})
    shutil.rmtree(run, ignore_errors=True)
    train(data, run, cfg, device=args.device, nproc=nproc)
    _, state = ckpt.load_checkpoint(ckpt.list_checkpoints(run)[-1][1])
    return {"nproc": nproc, "iters": args.iters, "loop_s": round(state["elapsed_s"], 2),
            "it_per_s": round(args.iters / state["elapsed_s"], 2)}


def final_loss(run: Path) -> float | None:
    """The last ``train/loss`` tensorboard scalar of a run (None without tensorboard)."""
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:
        return None
    acc = EventAccumulator(str(run / "tb"))
    acc.Reload()
    return round(acc.Scalars("train/loss")[-1].value, 6)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/thg_bench_ddp"))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--procs", default="1,2", help="comma-separated process counts")
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--batch-rays", type=int, default=1024, help="global ray batch (the tiny preset's)")
    ap.add_argument("--threads", type=int, help="torch threads of the single process (default: all cores)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    import torch

    from thg_nerf.log import setup_logging
    from thg_nerf.testing.synthetic import make_synthetic_dataset

    setup_logging(quiet=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    data = args.work / "data"
    if not (data / "meta.json").is_file():
        make_synthetic_dataset(data, n_frames=args.frames, size=args.size, seed=0, overwrite=True)
    rows = []
    for n in (int(x) for x in args.procs.split(",")):
        row = run_once(data, args.work / f"run{n}", n, args)
        row["final_loss"] = final_loss(args.work / f"run{n}")
        row["threads_per_rank"] = torch.get_num_threads() if n == 1 else max(1, (os.cpu_count() or 1) // n)
        rows.append(row)
        print(json.dumps(row), flush=True)
    base = rows[0]["it_per_s"]
    for row in rows:
        row["speedup"] = round(row["it_per_s"] / base, 2)
    report = {"device": args.device, "cores": os.cpu_count(), "torch": torch.__version__, "frames": args.frames,
              "size": args.size, "batch_rays": args.batch_rays, "runs": rows}
    print(json.dumps(report, indent=1))
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
