"""Optional tiny-cuda-nn hash encoding, used only when asked for (``THG_NERF_ENCODING=tcnn`` or explicitly).

The default encoding (:func:`thg_nerf.ops.hash_encode`) never needs tiny-cuda-nn. tcnn's ``HashGrid`` uses its own
vertex placement and table layout, so its parameters are not interchangeable with thg-nerf's tables (a run trained
with one encoding must be rendered with the same one).
"""

from __future__ import annotations

import importlib.util
import os

import torch
from torch import nn

from thg_nerf.errors import MissingDependencyError, ThgError
from thg_nerf.ops.hash_encoding import HashGridLayout

ENV = "THG_NERF_ENCODING"
_INSTALL = "pip install git+https://github.com/NVlabs/tiny-cuda-nn/#subdirectory=bindings/torch"


class TcnnMissingError(MissingDependencyError):
    """tinycudann is not importable (it is installed from source, not from PyPI)."""

    def __init__(self) -> None:
        ThgError.__init__(self, f"optional dependency 'tinycudann' is not installed (needed for {ENV}=tcnn); "
                                f"install it with: {_INSTALL}, or unset {ENV}")
        self.package = "tinycudann"


def encoding_backend(requested: str | None = None) -> str:
    """``'thg'`` (default) or ``'tcnn'``: ``requested`` if given, else ``THG_NERF_ENCODING``."""
    value = (requested if requested is not None else os.environ.get(ENV, "")).strip().lower() or "thg"
    if value not in ("thg", "tcnn"):
        raise ThgError(f"{ENV} must be 'thg' or 'tcnn', got '{value}'")
    return value


def tcnn_available() -> bool:
    """Whether ``tinycudann`` can be imported (does not import it)."""
    return importlib.util.find_spec("tinycudann") is not None


class TcnnHashEncoder(nn.Module):
    """A tiny-cuda-nn ``HashGrid`` encoding shaped like a :class:`HashGridLayout`: [N, D] in [0, 1] -> [N, L * F]."""

    def __init__(self, encoding: nn.Module, layout: HashGridLayout) -> None:
        super().__init__()
        self.encoding = encoding
        self.layout = layout

    @property
    def out_dim(self) -> int:
        return self.layout.out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoding(x.float().clamp(0.0, 1.0)).float()


def tcnn_hash_encoder(layout: HashGridLayout) -> TcnnHashEncoder:
    """A tiny-cuda-nn hash encoder with the layout's levels, features, table size and resolutions.

    Raises :class:`MissingDependencyError` (one clear line) when tinycudann is not installed.
    """
    try:
        import tinycudann
    except ImportError as e:
        raise TcnnMissingError() from e
    config = {
        "otype": "HashGrid",
        "n_levels": layout.num_levels,
        "n_features_per_level": layout.level_dim,
        "log2_hashmap_size": layout.log2_hashmap_size,
        "base_resolution": layout.base_resolution,
        "per_level_scale": layout.scale,
        "interpolation": "Linear",
    }
    return TcnnHashEncoder(tinycudann.Encoding(layout.dim, config, dtype=torch.float32), layout)
