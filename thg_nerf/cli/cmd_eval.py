"""``thg-nerf eval``: held-out metrics, baselines and plots for a run."""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    from thg_nerf.train.evaluate import evaluate

    evaluate(args.run, args.data, device=args.device)
    return 0


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("eval", parents=[common], help="validation metrics, baselines and plots of a run",
                       description="Render the validation frames of a run and write RUN/eval/report.json "
                       "(PSNR, SSIM, LMD, sync proxy, baselines), side_by_side.mp4 and plots.")
    p.add_argument("run", help="run directory written by 'thg-nerf train'")
    p.add_argument("--data", metavar="DATA", help="dataset directory (default: the one the run was trained on)")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.set_defaults(func=run)
