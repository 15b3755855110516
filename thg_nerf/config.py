"""Configuration: nested dataclasses, YAML presets, dotted overrides.

A :class:`Config` groups one dataclass per layer. Presets live in ``configs/<name>.yaml`` and hold only the
values that differ from the dataclass defaults. CLI flags become dotted overrides (``train.iters=200``).
YAML is always read with ``yaml.safe_load``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from thg_nerf.errors import ThgError
from thg_nerf.fields.config import ModelConfig
from thg_nerf.motion.config import MotionConfig
from thg_nerf.preprocess.config import PreprocessConfig
from thg_nerf.render.config import RenderConfig
from thg_nerf.train.config import TrainConfig


def _presets_dir() -> Path:
    """``configs/`` of a source checkout, else the copy installed as ``thg_nerf.presets``."""
    repo = Path(__file__).resolve().parent.parent / "configs"
    if repo.is_dir():
        return repo
    try:
        import importlib.resources

        return Path(str(importlib.resources.files("thg_nerf.presets")))
    except (ModuleNotFoundError, TypeError):
        return repo


PRESETS_DIR = _presets_dir()


@dataclass
class Config:
    """Everything that defines a run: preprocessing, model, training and rendering settings."""

    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    """How a video becomes a dataset directory."""
    motion: MotionConfig = field(default_factory=MotionConfig)
    """The audio -> motion model (trained with the field when ``model.condition`` is ``motion``)."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """Head/torso field architecture."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Optimisation schedule and ray sampling."""
    render: RenderConfig = field(default_factory=RenderConfig)
    """Inference-time rendering settings."""
    preset: str = "default"
    """Name of the preset this config started from (informational)."""
    seed: int = 0
    """Random seed for reproducible training."""


def _coerce(tp: Any, value: Any, where: str) -> Any:
    """Convert a YAML/JSON value to the dataclass field type ``tp`` (checked, one-line error on mismatch)."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ThgError(f"config: '{where}' must be a mapping, got {value!r}")
        return from_dict(tp, value, where)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(a, value, where)
            except ThgError as e:
                errors.append(str(e))
        raise ThgError(errors[0] if errors else f"config: bad value for '{where}': {value!r}")
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            raise ThgError(f"config: '{where}' must be one of {list(typing.get_args(tp))}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ThgError(f"config: '{where}' must be a list, got {value!r}")
        (inner, *_) = typing.get_args(tp) or (Any,)
        items = [_coerce(inner, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if tp is float and isinstance(value, str):  # YAML 1.1 reads "5e-3" as a string
        try:
            return float(value)
        except ValueError:
            raise ThgError(f"config: '{where}' must be float, got {value!r}") from None
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp is bool and isinstance(value, bool):
        return value
    if tp is str and isinstance(value, str):
        return value
    if tp is Any:
        return value
    if tp in (int, float, bool, str):
        raise ThgError(f"config: '{where}' must be {tp.__name__}, got {value!r}")
    return value


def from_dict(cls: type, data: dict, where: str = "") -> Any:
    """Build dataclass ``cls`` from a (possibly partial) nested dict; unknown keys are an error."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = set(data) - names
    if unknown:
        key = sorted(unknown)[0]
        raise ThgError(f"config: unknown key '{where + '.' if where else ''}{key}'")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints[name], value, f"{where}.{name}" if where else name)
    return cls(**kwargs)


def to_dict(cfg: Any) -> dict:
    """A plain nested dict of a config dataclass (tuples become lists)."""
    return _plain(dataclasses.asdict(cfg))


def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def merge_dicts(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge_dicts(out[k], v)
        else:
            out[k] = v
    return out


def available_presets() -> list[str]:
    """Names of the presets shipped in ``configs/``."""
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ThgError(f"config: cannot parse {path}: {str(e).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ThgError(f"config: {path} must hold a mapping at the top level")
    return data


def resolve_preset_name(preset: str) -> str:
    """``auto`` becomes ``default`` on a machine with a CUDA GPU and ``tiny`` otherwise."""
    if preset != "auto":
        return preset
    import torch

    return "default" if torch.cuda.is_available() else "tiny"


def load_config(preset: str = "default", overrides: list[str] | dict | None = None) -> Config:
    """Load a preset (a name from ``configs/``, ``auto``, or a path to a YAML file) and apply overrides.

    ``overrides`` is a nested dict or a list of ``"section.key=value"`` strings (values parsed as YAML).
    """
    preset = resolve_preset_name(preset)
    path = Path(preset)
    if not (path.suffix in (".yaml", ".yml") and path.is_file()):
        path = PRESETS_DIR / f"{preset}.yaml"
        if not path.is_file():
            raise ThgError(f"unknown preset '{preset}' (available: {', '.join(available_presets())})")
    data = _read_yaml(path)
    data.setdefault("preset", path.stem)
    if isinstance(overrides, dict):
        data = merge_dicts(data, overrides)
    elif overrides:
        data = merge_dicts(data, parse_overrides(overrides))
    return from_dict(Config, data)


def parse_overrides(items: list[str]) -> dict:
    """Turn ``["train.iters=200", "model.use_torso=false"]`` into a nested dict."""
    out: dict = {}
    for item in items:
        if "=" not in item:
            raise ThgError(f"config override '{item}' must look like section.key=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


def config_from_dict(data: dict) -> Config:
    """Rebuild a Config saved with :func:`save_config` (e.g. from a run directory)."""
    return from_dict(Config, data)


def save_config(cfg: Config, path: str | Path) -> None:
    """Write the fully resolved config as YAML next to an output."""
    from thg_nerf.utils.fs import atomic_file

    with atomic_file(path, suffix=".yaml") as tmp:
        tmp.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
