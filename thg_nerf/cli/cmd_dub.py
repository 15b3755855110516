"""``thg-nerf dub``: re-voice an existing video of the person (only the lower face re-rendered)."""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    from thg_nerf.render.config import DubConfig
    from thg_nerf.render.dub import dub_to_file

    dub_to_file(args.run, args.video, args.audio, args.output, cfg=DubConfig(region=args.region, loop=args.loop),
                data=args.data, cache_dir=args.cache, device=args.device, crf=args.crf)
    return 0


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    from thg_nerf.render.dub import DUB_CRF, LOOPS, REGIONS

    p = sub.add_parser("dub", parents=[common], help="re-voice a video of the person with new audio",
                       description="Re-render only the mouth, jaw and chin of VIDEO (the run's person) so they speak "
                       "AUDIO, blended into the untouched footage; the output keeps the video's resolution and "
                       "frame rate and carries the new audio.")
    p.add_argument("run", help="run directory written by 'thg-nerf train' or 'fit'")
    p.add_argument("--video", required=True, metavar="ORIGINAL", help="a video of the same person")
    p.add_argument("--audio", required=True, metavar="NEW", help="the new speech (wav, mp3, m4a, flac, or a video)")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="output video (.mp4, .webm) or folder")
    p.add_argument("--region", default="mouth", choices=REGIONS,
                   help="mouth: lips, chin and jaw below them (default); lower-face: everything below the nose")
    p.add_argument("--loop", default="pingpong", choices=LOOPS,
                   help="audio longer than the video: pingpong runs the video back and forth (default), "
                   "trim cuts the audio to the video")
    p.add_argument("--data", metavar="DATA", help="a dataset preprocessed from ORIGINAL (skips tracking it)")
    p.add_argument("--cache", metavar="DIR",
                   help="where ORIGINAL's tracking is kept (default: $XDG_CACHE_HOME/thg-nerf/dub)")
    p.add_argument("--crf", type=int, default=DUB_CRF,
                   help=f"H.264 quality of an mp4 output, 0-51, lower is better (default {DUB_CRF})")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.set_defaults(func=run)
