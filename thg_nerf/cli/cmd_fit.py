"""``thg-nerf fit``: preprocess + train + eval in one command."""

from __future__ import annotations

import argparse
from pathlib import Path


def run(args: argparse.Namespace) -> int:
    from thg_nerf.cli.cmd_preprocess import preprocess_overrides
    from thg_nerf.cli.cmd_train import train_config
    from thg_nerf.errors import ThgError
    from thg_nerf.preprocess.pipeline import preprocess
    from thg_nerf.provenance import consent_from_flag
    from thg_nerf.train.distributed import launched_world
    from thg_nerf.train.evaluate import evaluate
    from thg_nerf.train.trainer import train

    if launched_world() is not None:
        raise ThgError("fit does not run under torchrun; use 'fit --nproc N', or preprocess, then torchrun ... train")
    video = Path(args.video)
    run_dir = Path(args.output) if args.output else Path("data") / video.stem / "run"
    data_dir = Path(args.data) if args.data else run_dir.parent / f"{run_dir.name}_data"
    cfg = train_config(args, run_dir, preprocess_overrides(args))
    consent = consent_from_flag(args.consent, args.resume)
    preprocess(video, data_dir, cfg.preprocess, audio=args.audio, force=args.force)
    train(data_dir, run_dir, cfg, resume=args.resume, device=args.device, consent=consent, nproc=args.nproc)
    evaluate(run_dir, data_dir, device=args.device)
    return 0


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    from thg_nerf.cli.cmd_preprocess import add_preprocess_args
    from thg_nerf.cli.cmd_train import add_train_args
    from thg_nerf.cli.common import add_config_args

    p = sub.add_parser("fit", parents=[common], help="preprocess + train + eval a video in one go",
                       description="Preprocess VIDEO into a dataset (reused if already done), train a run "
                       "and evaluate it on the held-out frames.")
    p.add_argument("video", help="input video of one person talking")
    p.add_argument("-o", "--output", metavar="RUN", help="run directory (default: data/<video name>/run)")
    p.add_argument("--data", metavar="DATA", help="dataset directory (default: <RUN>_data beside RUN)")
    add_preprocess_args(p)
    add_train_args(p)
    p.add_argument("--resume", action="store_true", help="continue training from the last checkpoint")
    p.add_argument("--force", action="store_true", help="redo preprocessing from scratch")
    add_config_args(p)
    p.set_defaults(func=run)
