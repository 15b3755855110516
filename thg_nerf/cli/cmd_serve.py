"""``thg-nerf serve``: live telepresence in the browser (microphone or audio file in, the person talking out)."""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    from thg_nerf.serve.app import require_aiohttp

    require_aiohttp()  # before the slow model load: a missing extra is one line, at once
    from thg_nerf.errors import ThgError
    from thg_nerf.log import get_logger
    from thg_nerf.render.stream import FrameRenderer
    from thg_nerf.serve.app import serve
    from thg_nerf.serve.config import ServeConfig
    from thg_nerf.train.checkpoint import load_run

    if not 0 <= args.port <= 65535:
        raise ThgError(f"--port must be between 0 and 65535, got {args.port}")
    cfg = ServeConfig()
    if args.max_clients is not None:
        if args.max_clients < 1:
            raise ThgError(f"--max-clients must be >= 1, got {args.max_clients}")
        cfg.max_clients = args.max_clients
    loaded = load_run(args.run, device=args.device)
    if args.pose != "static" and loaded.device.type == "cpu":
        get_logger(__name__).warning("--pose %s renders every pixel of every frame: expect well under 1 frame/s "
                                     "on a CPU (use --pose static, or a GPU)", args.pose)
    renderer = FrameRenderer(loaded, args.size, args.pose, args.bg, fast=not args.no_fast_path, fast_cfg=cfg.fast_path)
    serve(loaded, renderer, args.host, args.port, cfg, blink=args.blink)
    return 0


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("serve", parents=[common], help="live: microphone or audio file in the browser -> the person "
                       "talking, streamed back",
                       description="Serve a web page that streams the browser's microphone (or a dropped audio "
                       "file) to RUN and shows the person saying it, with the audio delayed to match.\nBinds "
                       "127.0.0.1 unless --host says otherwise; any other address requires the access token "
                       "printed at start.",
                       epilog="See docs/SERVE.md for the protocol, the limits and the measured latency.",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="run directory written by 'thg-nerf train' or 'fit' (motion-conditioned, mel)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine "
                   "only; e.g. 0.0.0.0 for the LAN, which requires the printed token)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default 8000; 0 picks a free one)")
    p.add_argument("--size", type=int, help="longer side of the frames in pixels (default: the training size)")
    p.add_argument("--pose", default="static", choices=["static", "idle", "track"],
                   help="static (fast path, default), idle (subtle sway) or track (training poses)")
    p.add_argument("--bg", default="plate", help="plate | black | white | #RRGGBB | IMAGE")
    p.add_argument("--blink", default="auto", choices=["auto", "track", "none"], help="eye blinks")
    p.add_argument("--max-clients", type=int, help="simultaneous clients (default 8)")
    p.add_argument("--no-fast-path", action="store_true", help="render every pixel of every frame (for comparison)")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.set_defaults(func=run)
