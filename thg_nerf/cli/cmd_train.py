"""``thg-nerf train``: dataset directory -> trained run directory."""

from __future__ import annotations

import argparse


def add_train_args(p: argparse.ArgumentParser) -> None:
    """Options shared by ``train`` and ``fit``."""
    p.add_argument("--iters", type=int, help="training iterations (default: preset)")
    p.add_argument("--max-minutes", type=float, help="stop after this many minutes (checkpointed)")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")


def run(args: argparse.Namespace) -> int:
    from thg_nerf.cli.common import resolve_config
    from thg_nerf.train.trainer import resume_iters, train

    cfg = resolve_config(args, {"train": {"iters": args.iters, "max_minutes": args.max_minutes}})
    if args.seed is not None:
        cfg.seed = args.seed
    if args.resume and args.iters is None:
        cfg.train.iters = resume_iters(args.output)
    train(args.data, args.output, cfg, resume=args.resume, device=args.device)
    return 0


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    from thg_nerf.cli.common import add_config_args

    p = sub.add_parser("train", parents=[common], help="train the head + torso model on a dataset",
                       description="Train the audio-conditioned hash-grid head field and torso layer on a "
                       "dataset directory written by 'thg-nerf preprocess'.")
    p.add_argument("data", help="dataset directory")
    p.add_argument("-o", "--output", required=True, metavar="RUN", help="run directory to write")
    add_train_args(p)
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in RUN")
    add_config_args(p)
    p.set_defaults(func=run)
