"""Calibrate (or re-calibrate) the mouth gain of a trained motion-conditioned run.

    .venv/bin/python tools/calibrate_mouth.py RUN [--data DATA] [--frames 16] [--max-gain 1.5]

Training does this itself at its last iteration (``thg_nerf.train.calibrate``); this is for runs trained
before it existed, or to try other settings. Writes RUN/calibration.json; every later render, dub, serve
and eval of the run uses its gain.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--data", type=Path, help="the run's dataset (default: the one in run.json)")
    ap.add_argument("--frames", type=int, default=None, help="training frames to render (default: config)")
    ap.add_argument("--max-gain", type=float, default=None, help="upper bound (default: config)")
    args = ap.parse_args()

    from thg_nerf.dataset import load_dataset
    from thg_nerf.log import setup_logging
    from thg_nerf.train.calibrate import calibrate_run
    from thg_nerf.train.checkpoint import load_run, read_run_info

    setup_logging(quiet=False)
    run = load_run(args.run)
    if not run.model.conditioned_on_motion:
        sys.exit(f"{args.run} is not motion-conditioned: nothing to calibrate")
    ds = load_dataset(args.data or read_run_info(args.run)["data_dir"])
    t = run.cfg.train
    gain = calibrate_run(args.run, run.model, ds, run.intrinsics, run.background, run.cfg.render, run.device,
                         args.frames or t.calibrate_frames, args.max_gain or t.max_mouth_gain, run.iteration)
    print(f"mouth gain {gain:.3f} written to {args.run / 'calibration.json'}")


if __name__ == "__main__":
    main()
