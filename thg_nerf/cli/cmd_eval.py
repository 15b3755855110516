"""``thg-nerf eval``: held-out metrics, baselines and plots for a run."""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    from thg_nerf.train.evaluate import evaluate

    evaluate(args.run, args.data, device=args.device, cross=args.cross or ())
    return 0


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("eval", parents=[common], help="validation metrics, baselines and plots of a run",
                       description="Render the validation frames of a run and write RUN/eval/report.json "
                       "(PSNR, SSIM, LMD, lip-sync figures of the tracked-motion and audio-driven renders, "
                       "motion-level and cross-speaker checks, baselines), side_by_side.mp4 and plots.")
    p.add_argument("run", help="run directory written by 'thg-nerf train'")
    p.add_argument("--data", metavar="DATA", help="dataset directory (default: the one the run was trained on)")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--cross", action="append", metavar="VIDEO",
                   help="a talking video of someone else: predict motion from its audio with this run's model "
                   "and correlate the predicted mouth opening with the person's tracked one (repeatable)")
    p.set_defaults(func=run)
