"""``thg-nerf train``: dataset directory -> trained run directory."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from thg_nerf.config import Config


def add_train_args(p: argparse.ArgumentParser) -> None:
    """Options shared by ``train`` and ``fit``."""
    p.add_argument("--iters", type=int, help="training iterations (default: preset)")
    p.add_argument("--max-minutes", type=float, help="stop after this many minutes (checkpointed)")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--nproc", type=int, metavar="N",
                   help="data-parallel training in N local processes (one per GPU on CUDA; gloo on the CPU); "
                   "the config's batch_rays is the global batch. Under torchrun, leave it out")
    p.add_argument("--consent", metavar="TEXT_OR_FILE",
                   help="statement (or a file holding it) that the person in the video agreed to be modelled; "
                   "stored in the run with its SHA-256 and flagged in every output's provenance mark")


def train_config(args: argparse.Namespace, run_dir: str | Path, extra: dict | None = None) -> Config:
    """The config of ``train``/``fit``: preset + ``extra`` + training flags; ``--resume`` keeps the run's iters."""
    from thg_nerf.cli.common import resolve_config
    from thg_nerf.motion.model import check_motion_config
    from thg_nerf.train.trainer import resume_iters

    cfg = resolve_config(args, {**(extra or {}), "train": {"iters": args.iters, "max_minutes": args.max_minutes}})
    if args.seed is not None:
        cfg.seed = args.seed
    if args.resume and args.iters is None:
        cfg.train.iters = resume_iters(run_dir)
    if not args.resume and cfg.model.condition == "motion":  # fail before preprocessing or writing anything
        check_motion_config(cfg.motion)
    return cfg


def run(args: argparse.Namespace) -> int:
    from thg_nerf.provenance import consent_from_flag
    from thg_nerf.train.trainer import train

    cfg = train_config(args, args.output)
    consent = consent_from_flag(args.consent, args.resume)
    train(args.data, args.output, cfg, resume=args.resume, device=args.device, consent=consent, nproc=args.nproc)
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
