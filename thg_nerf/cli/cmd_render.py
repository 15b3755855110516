"""``thg-nerf render``: new audio + a head-pose path -> video."""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    from thg_nerf.render.cli_render import render_from_args

    render_from_args(args)
    return 0


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    from thg_nerf.render.poses import POSE_FILE_HELP

    p = sub.add_parser("render", parents=[common], help="render a trained person speaking new audio",
                       description="Render RUN speaking AUDIO with a chosen head-pose path to an mp4 with the "
                       "audio muxed in\n(or an alpha video / PNG sequence with --bg alpha).",
                       epilog=POSE_FILE_HELP + "\nSee docs/RENDERING.md for pose conventions and outputs.",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="run directory written by 'thg-nerf train' or 'fit'")
    p.add_argument("--audio", required=True, metavar="WAV", help="driving audio (wav, mp3, m4a, flac; any rate)")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="output video (.mp4, .webm) or folder")
    p.add_argument("--pose", default="track", metavar="MODE",
                   help="track (replay training poses), static, orbit, or file:PATH (JSON/CSV/NPY)")
    p.add_argument("--orbit-deg", type=float, default=20.0, help="orbit amplitude in degrees (default 20)")
    p.add_argument("--orbit-period", type=float, default=6.0, help="orbit period in seconds (default 6)")
    p.add_argument("--yaw", type=float, default=0.0, help="yaw offset in degrees, on top of any mode")
    p.add_argument("--pitch", type=float, default=0.0, help="pitch offset in degrees")
    p.add_argument("--roll", type=float, default=0.0, help="roll offset in degrees")
    p.add_argument("--smooth", type=float, default=0.0, help="low-pass the pose path (seconds; 0 = off)")
    p.add_argument("--size", type=int, help="output size in pixels (default: the training size)")
    p.add_argument("--fps", type=float, help="output frame rate (default: the training fps)")
    p.add_argument("--bg", default="plate", help="plate | black | white | #RRGGBB | IMAGE | alpha")
    p.add_argument("--blink", default="auto", choices=["auto", "track", "none"], help="eye blinks")
    p.add_argument("--start", type=float, help="start time in the audio (s)")
    p.add_argument("--end", type=float, help="end time in the audio (s)")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--no-fast-path", action="store_true",
                   help="render every pixel of every frame even when the camera is fixed (--pose static)")
    p.set_defaults(func=run)
