"""``thg-nerf preprocess``: video -> dataset directory."""

from __future__ import annotations

import argparse


def add_preprocess_args(p: argparse.ArgumentParser, audio: bool = True) -> None:
    """Options shared by ``preprocess``, ``fit`` and ``fit-many`` (whose manifest gives each person's audio)."""
    if audio:
        p.add_argument("--audio", metavar="WAV", help="take the audio from this file instead of the video")
    p.add_argument("--fps", type=float, help="resample the video to this frame rate (default: native)")
    p.add_argument("--size", type=int, help="output frame size in pixels (default: preset, 512)")
    p.add_argument("--crop", choices=["auto", "none"], help="auto: one stable square around head and "
                   "shoulders for the whole clip (default); none: keep the frame")
    p.add_argument("--val-fraction", type=float, help="last fraction of frames kept for validation (1/11)")
    p.add_argument("--landmarks", choices=["mediapipe", "face-alignment"], help="landmark backend")
    p.add_argument("--audio-features", metavar="KIND",
                   help="mel (default) | phones | mel+phones | hubert:DIR | wav2vec2:DIR | npy:FILE")
    p.add_argument("--av-offset", metavar="auto|SECONDS",
                   help="audio-video offset correction, positive = the audio is late: auto (default) applies the "
                   "estimate from the lips when it is confident, a number forces that shift, 0 disables it")


def preprocess_overrides(args: argparse.Namespace) -> dict:
    """The preprocess section overrides given by dedicated flags."""
    return {"preprocess": {"fps": args.fps, "size": args.size, "crop": args.crop,
                           "val_fraction": args.val_fraction, "landmarks": args.landmarks,
                           "audio_features": args.audio_features, "av_offset": args.av_offset}}


def run(args: argparse.Namespace) -> int:
    from thg_nerf.cli.common import resolve_config
    from thg_nerf.preprocess.pipeline import preprocess

    cfg = resolve_config(args, preprocess_overrides(args))
    preprocess(args.video, args.output, cfg.preprocess, audio=args.audio, force=args.force)
    return 0


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    from thg_nerf.cli.common import add_config_args

    p = sub.add_parser("preprocess", parents=[common], help="video -> tracked, parsed training dataset",
                       description="Decode a talking-head video, track the face and head pose, compute masks, "
                       "background plate, blinks and audio features, and write a dataset directory.")
    p.add_argument("video", help="input video (mp4, mov, webm, ...)")
    p.add_argument("-o", "--output", required=True, metavar="DATA", help="dataset directory to write")
    add_preprocess_args(p)
    p.add_argument("--force", action="store_true", help="redo finished steps and overwrite DATA")
    add_config_args(p)
    p.set_defaults(func=run)
