"""Entry point of the ``thg-nerf`` command: parses arguments and dispatches to a subcommand module.

Each subcommand lives in its own module exposing ``register(subparsers)``, which adds a parser whose
``func(args) -> int`` runs it. User errors (:class:`ThgError`) print one line and exit non-zero.
"""

from __future__ import annotations

import argparse
import sys

from thg_nerf import __version__
from thg_nerf.errors import ThgError
from thg_nerf.log import get_logger, setup_logging

SUBCOMMANDS = ("info", "preprocess", "train", "fit", "fit-many", "render", "eval", "dub", "verify", "serve")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (all subcommands)."""
    from thg_nerf.cli import (
        cmd_dub,
        cmd_eval,
        cmd_fit,
        cmd_fit_many,
        cmd_info,
        cmd_preprocess,
        cmd_render,
        cmd_serve,
        cmd_train,
        cmd_verify,
    )

    def common_flags(suppress: bool) -> argparse.ArgumentParser:
        # subcommands repeat the flags without defaults, so `thg-nerf -q CMD` is not undone by CMD's default
        extra = {"default": argparse.SUPPRESS} if suppress else {}
        p = argparse.ArgumentParser(add_help=False)
        p.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors; no progress bars",
                       **extra)
        p.add_argument("-v", "--verbose", action="store_true", help="debug logging", **extra)
        p.add_argument("--debug", action="store_true", help="show full tracebacks on errors", **extra)
        return p

    common = common_flags(suppress=True)

    parser = argparse.ArgumentParser(
        prog="thg-nerf",
        description="Audio-driven talking-head NeRF: fit a person from a video, render them speaking new audio.",
        epilog="Run 'thg-nerf COMMAND --help' for the options of each command.",
        parents=[common_flags(suppress=False)],
    )
    parser.add_argument("--version", action="version", version=f"thg-nerf {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in (cmd_info, cmd_preprocess, cmd_train, cmd_fit, cmd_fit_many, cmd_render, cmd_eval, cmd_dub, cmd_verify,
                cmd_serve):
        mod.register(sub, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 0
    setup_logging(quiet=args.quiet, verbose=args.verbose)
    try:
        return int(args.func(args) or 0)
    except ThgError as e:
        if args.debug:
            raise
        print(f"thg-nerf: error: {e}", file=sys.stderr)
        return e.exit_code
    except BrokenPipeError:  # e.g. `thg-nerf info | head`
        return 0
    except KeyboardInterrupt:
        print("thg-nerf: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug, not bad input: still one line unless --debug
        if args.debug:
            raise
        get_logger().debug("unexpected error", exc_info=True)
        print(f"thg-nerf: internal error: {type(e).__name__}: {e} (rerun with --debug for a traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
