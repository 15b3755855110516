#!/usr/bin/env python
"""fit-many vs one person after another: wall time to fit N tiny synthetic people on this machine.

Usage: python benchmarks/bench_fit_many.py [--people 3] [--frames 100] [--size 64] [--iters 300] [--cpus 2]
       [--order seq-first|many-first] [--json OUT]

The people are synthetic datasets (``thg_nerf.testing.synthetic``; ``fit`` needs a video, so both sides start
from the datasets and skip preprocessing). Sequential: ``thg-nerf train`` then ``thg-nerf eval`` for each person
in turn, each process using every core (what ``fit`` does after preprocessing). fit-many: one command on a
local Ray with ``--num-cpus CPUS`` (a job per CPU at once, one torch thread each), Ray's start included. Both
use the tiny preset with the same overrides. The machine's 1-minute load average before and after each side is
reported with the figures (on a shared machine, run both orders).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def overrides(iters: int) -> list[str]:
    sets = [f"train.iters={iters}", f"train.checkpoint_every={iters}", "train.eval_every=0",
            "train.max_samples_per_ray=48", "motion.hidden=32", "motion.iters=400", "motion.seq_len=32",
            "motion.augment.copies=2"]
    return [a for s in sets for a in ("--set", s)]


def cli(*args: str) -> float:
    """Run ``thg-nerf ARGS`` quietly; its wall time in seconds."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "thg_nerf.cli.main", "-q", *args], env=env, cwd=REPO,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"thg-nerf {' '.join(args[:2])} failed: {proc.stderr.strip()[-2000:]}")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--people", type=int, default=3)
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--cpus", type=int, default=2, help="CPUs of fit-many's local Ray")
    ap.add_argument("--order", choices=["seq-first", "many-first"], default="seq-first")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    from thg_nerf.log import setup_logging
    from thg_nerf.testing.synthetic import make_synthetic_dataset

    setup_logging(quiet=True)
    tmp = Path(tempfile.mkdtemp(prefix="bench_fit_many_"))
    names = [f"person{i}" for i in range(args.people)]
    for i, name in enumerate(names):
        make_synthetic_dataset(tmp / f"{name}_data", n_frames=args.frames, size=args.size, seed=i)
    sets = [*overrides(args.iters), "--preset", "tiny", "--device", "cpu"]
    load: dict[str, list[float]] = {}

    def sequential() -> dict:
        load["sequential"] = [os.getloadavg()[0]]
        out = {}
        for name in names:
            run = tmp / "sequential" / name
            t_train = cli("train", str(tmp / f"{name}_data"), "-o", str(run), *sets)
            t_eval = cli("eval", str(run), "--device", "cpu")
            out[name] = {"train_s": round(t_train, 1), "eval_s": round(t_eval, 1)}
        load["sequential"].append(os.getloadavg()[0])
        return out

    def fit_many() -> float:
        load["fit_many"] = [os.getloadavg()[0]]
        manifest = tmp / "people.csv"
        manifest.write_text("name,data\n" + "".join(f"{n},{n}_data\n" for n in names))
        t = cli("fit-many", str(manifest), "-o", str(tmp / "fit_many"), "--num-cpus", str(args.cpus), *sets)
        load["fit_many"].append(os.getloadavg()[0])
        return t

    if args.order == "seq-first":
        seq, many_total = sequential(), fit_many()
    else:
        many_total, seq = fit_many(), sequential()
    seq_total = sum(v["train_s"] + v["eval_s"] for v in seq.values())
    summary = json.loads((tmp / "fit_many" / "summary.json").read_text())["people"]

    result = {
        "people": args.people, "frames": args.frames, "size": args.size, "iters": args.iters, "cpus": args.cpus,
        "cores": os.cpu_count(), "order": args.order,
        "load_avg_1m_before_after": {k: [round(x, 2) for x in v] for k, v in load.items()},
        "sequential_total_s": round(seq_total, 1), "sequential": seq,
        "fit_many_total_s": round(many_total, 1),
        "fit_many_minutes": {r["name"]: r["minutes"] for r in summary},
        "psnr_sequential": {n: json.loads((tmp / "sequential" / n / "eval" / "report.json").read_text())["psnr"]
                            for n in names},
        "psnr_fit_many": {r["name"]: r["psnr"] for r in summary},
        "speedup": round(seq_total / many_total, 2),
    }
    print(json.dumps(result, indent=2))
    print(f"\n| {args.people} people x {args.frames} frames x {args.size}² x {args.iters} it, {args.order} | "
          f"{seq_total:.0f} s | {many_total:.0f} s | {seq_total / many_total:.2f}x | "
          f"{'; '.join(f'{k} {v[0]:.1f} -> {v[1]:.1f}' for k, v in load.items())} |")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
