"""Argument helpers shared by subcommands."""

from __future__ import annotations

import argparse

from thg_nerf.config import Config, load_config


def add_config_args(p: argparse.ArgumentParser, default_preset: str = "auto") -> None:
    """``--preset`` and repeated ``--set section.key=value`` overrides."""
    p.add_argument("--preset", default=default_preset,
                   help="config preset from configs/ (tiny, default), a YAML path, or auto: default on a CUDA GPU, "
                   f"tiny otherwise (default: {default_preset})")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config value, e.g. --set train.batch_rays=2048 (repeatable)")


def resolve_config(args: argparse.Namespace, extra: dict | None = None) -> Config:
    """Preset + ``extra`` (from dedicated flags, None values dropped) + ``--set`` overrides, in that order."""
    from thg_nerf.config import merge_dicts, parse_overrides

    over: dict = {}
    for section, values in (extra or {}).items():
        vals = {k: v for k, v in values.items() if v is not None}
        if vals:
            over[section] = vals
    over = merge_dicts(over, parse_overrides(getattr(args, "overrides", []) or []))
    return load_config(getattr(args, "preset", "auto"), over)
