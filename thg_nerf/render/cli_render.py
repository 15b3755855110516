"""``thg-nerf render``: check the flags up front (one-line errors), then a thin wrapper over TalkingHead."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from thg_nerf.errors import ThgError
from thg_nerf.render.output import check_background, output_kind
from thg_nerf.render.poses import parse_pose_mode


def check_args(args: argparse.Namespace) -> None:
    """Validate everything that needs neither the model nor decoding the audio."""
    for name in ("orbit_deg", "orbit_period", "yaw", "pitch", "roll", "smooth"):
        if not math.isfinite(getattr(args, name)):
            raise ThgError(f"--{name.replace('_', '-')} must be a finite number")
    if args.orbit_period <= 0:
        raise ThgError(f"--orbit-period must be > 0 seconds, got {args.orbit_period:g}")
    if args.smooth < 0:
        raise ThgError(f"--smooth must be >= 0 seconds, got {args.smooth:g}")
    if args.start is not None and args.start < 0:
        raise ThgError(f"--start must be >= 0 s, got {args.start:g}")
    if args.end is not None and args.end <= (args.start or 0.0):
        raise ThgError(f"--end ({args.end:g} s) must be after --start ({args.start or 0.0:g} s)")
    kind, pose_file = parse_pose_mode(args.pose)
    if pose_file is not None and not pose_file.is_file():
        raise ThgError(f"pose file not found: {pose_file}")
    bg = check_background(args.bg)
    output_kind(Path(args.output), alpha=bg == "alpha")
    if not Path(args.audio).is_file():
        raise ThgError(f"audio file not found: {args.audio}")
    if not Path(args.run).is_dir():
        raise ThgError(f"run directory not found: {args.run}")


def render_from_args(args: argparse.Namespace) -> Path:
    """Run ``thg-nerf render`` (see ``thg_nerf/cli/cmd_render.py`` for the flags). Returns the output path."""
    from thg_nerf.render.talking_head import TalkingHead

    check_args(args)
    head = TalkingHead.load(args.run, device=args.device)
    return head.render_to_file(
        args.audio, args.output, poses=args.pose, blink=args.blink, bg=args.bg, size=args.size, fps=args.fps,
        start=args.start, end=args.end, orbit_deg=args.orbit_deg, orbit_period=args.orbit_period, yaw=args.yaw,
        pitch=args.pitch, roll=args.roll, smooth=args.smooth, fast=not args.no_fast_path)
