"""Backend selection for the ops: the CUDA extension ``thg_nerf._C`` or the pure-PyTorch reference.

The backend follows the tensors' device: CUDA tensors use the extension when it is built (or can be JIT
compiled), everything else uses the torch reference. ``THG_NERF_BACKEND=torch|cuda`` overrides the choice.
Nothing here compiles at import time.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import torch

from thg_nerf.errors import ThgError
from thg_nerf.log import get_logger

_ENV = "THG_NERF_BACKEND"
_ext: dict[str, ModuleType | None] = {}


def env_override() -> str | None:
    """The value of ``THG_NERF_BACKEND`` (``torch`` or ``cuda``) or None."""
    value = os.environ.get(_ENV, "").strip().lower()
    if value in ("", "auto"):
        return None
    if value not in ("torch", "cuda"):
        raise ThgError(f"{_ENV} must be 'torch', 'cuda' or 'auto', got '{value}'")
    return value


def cuda_extension_built() -> bool:
    """True when a prebuilt ``thg_nerf._C`` can be imported (never compiles)."""
    if "built" not in _ext:
        try:
            _ext["built"] = importlib.import_module("thg_nerf._C")
        except ImportError:
            _ext["built"] = None
    return _ext["built"] is not None


def load_extension(jit: bool = True) -> ModuleType | None:
    """The CUDA extension module: prebuilt if present, else JIT-compiled once (with a visible message)."""
    if cuda_extension_built():
        return _ext["built"]
    if not jit or not torch.cuda.is_available():
        return None
    if "jit" not in _ext:
        from thg_nerf.ops import _build

        get_logger().info("compiling the thg_nerf CUDA kernels (first GPU use; cached afterwards)...")
        try:
            _ext["jit"] = _build.jit_load()
        except Exception as e:  # compiler missing or failing: fall back to torch, loudly
            get_logger().warning(f"CUDA kernels could not be built ({type(e).__name__}: {e}); "
                                 "using the PyTorch reference ops")
            _ext["jit"] = None
    return _ext["jit"]


def default_backend_name(device: torch.device) -> str:
    """Which backend tensors on ``device`` would use, without compiling anything."""
    forced = env_override()
    if device.type != "cuda":
        return "torch"
    if forced == "torch":
        return "torch"
    return "cuda" if (cuda_extension_built() or forced == "cuda") else "cuda (JIT on first use)"


def use_cuda(*tensors: torch.Tensor) -> bool:
    """Whether an op on these tensors should run the CUDA kernels."""
    if not tensors or not all(t.is_cuda for t in tensors):
        if env_override() == "cuda" and tensors and not tensors[0].is_cuda:
            raise ThgError(f"{_ENV}=cuda but the tensors are on the CPU")
        return False
    if env_override() == "torch":
        return False
    ext = load_extension(jit=True)
    if ext is None and env_override() == "cuda":
        raise ThgError(f"{_ENV}=cuda but the CUDA extension is unavailable")
    return ext is not None


def ext() -> ModuleType:
    """The loaded extension (call only after :func:`use_cuda` returned True)."""
    module = load_extension(jit=True)
    assert module is not None
    return module
