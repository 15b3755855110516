"""Re-fit only the audio -> motion model of a trained run (the head field is untouched).

    .venv/bin/python tools/retrain_motion.py RUN [--data DATA] [--set motion.lifter=12 ...]

The field is trained on tracked motion, so the audio -> motion model can be swapped without retraining it:
this trains a new one with the current defaults (plus ``--set motion.*`` overrides), writes it into RUN and
updates the ``motion`` section of RUN/config.yaml to match.
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
    ap.add_argument("--set", action="append", default=[], metavar="motion.KEY=VALUE")
    args = ap.parse_args()

    from thg_nerf.config import load_config, save_config
    from thg_nerf.dataset import load_dataset
    from thg_nerf.log import setup_logging
    from thg_nerf.motion.model import train_audio_motion
    from thg_nerf.train.checkpoint import read_run_config, read_run_info

    setup_logging(quiet=False)
    info = read_run_info(args.run)
    cfg = read_run_config(args.run)
    if cfg.model.condition != "motion":
        sys.exit(f"{args.run} is not motion-conditioned (model.condition: {cfg.model.condition})")
    cfg.motion = load_config(cfg.preset if cfg.preset != "auto" else "tiny", args.set).motion
    train_audio_motion(load_dataset(args.data or info["data_dir"]), cfg.motion, args.run)
    save_config(cfg, args.run / "config.yaml")


if __name__ == "__main__":
    main()
