"""Backend selection for the ops: the CUDA extension ``thg_nerf._C`` or the pure-PyTorch reference.

The backend follows the tensors' device: CUDA tensors use the extension when it is built (or can be JIT
compiled) and its self-test passed, everything else uses the torch reference. ``THG_NERF_BACKEND=torch|cuda``
overrides the choice. Nothing here compiles at import time.

**Self-test on first use.** The first op call that would run a kernel first runs every op once on small
random inputs against its reference (:mod:`thg_nerf.ops.selftest`, tens of milliseconds on a GPU). An op that
fails (a mismatch or an exception such as a CUDA error) is named in one warning and uses its torch reference
from then on, in this process; the others keep their kernels. With ``THG_NERF_BACKEND=cuda`` a failed
self-test is a :class:`ThgError` instead. :func:`op_status` reports the outcome (``thg-nerf info``).

Each public op asks :func:`kernels` for the backend module of its tensors (None = reference) and hands it to
its autograd wrapper. :func:`use_extension` installs another backend module: a fake extension serving CPU
tensors (tests of the self-test logic), or the real one with the self-test off, so that the kernel tests and
tools see the kernels themselves and never a silent fallback.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import torch

from thg_nerf.errors import ThgError
from thg_nerf.log import get_logger

_ENV = "THG_NERF_BACKEND"
_ext: dict[str, ModuleType | None] = {}

#: The public ops behind a kernel, in the order the self-test runs them.
OPS: tuple[str, ...] = ("hash_encode", "march_rays", "march_step", "composite", "composite_step",
                        "update_occupancy")


@dataclass(frozen=True)
class OpCheck:
    """Self-test outcome of one op: ``detail`` is the worst error found, or the exception raised."""

    op: str
    passed: bool
    detail: str
    ms: float


@dataclass
class Backend:
    """A kernel module with the API of ``cuda_ext/bindings.cpp``, the device type whose tensors it serves, and
    its self-test results (None until the first use; never run when ``self_test`` is False)."""

    module: Any
    device_type: str = "cuda"
    self_test: bool = True
    results: dict[str, OpCheck] | None = None


_installed: list[Backend] = []  # stack of use_extension() backends; the last one wins
_loaded: dict[str, Backend] = {}  # "cuda": the real extension, wrapped once it has been loaded


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


@contextmanager
def use_extension(module: Any, device_type: str = "cuda", self_test: bool = True) -> Iterator[Backend]:
    """Serve the ops on ``device_type`` tensors with ``module`` (the API of ``thg_nerf._C``) inside the block.

    ``self_test=False`` uses every kernel of ``module`` unchecked (kernel tests, benchmarks, the sanitizer run).
    """
    entry = Backend(module, device_type, self_test)
    _installed.append(entry)
    try:
        yield entry
    finally:
        _installed.remove(entry)


def _served_type() -> str:
    return _installed[-1].device_type if _installed else "cuda"


def _current(load: bool) -> Backend | None:
    """The installed backend, else the real extension (loaded, or JIT-compiled, only when ``load``)."""
    if _installed:
        return _installed[-1]
    if "cuda" not in _loaded and load:
        module = load_extension(jit=True)
        if module is not None:
            _loaded["cuda"] = Backend(module)
    return _loaded.get("cuda")


def _device_name(t: torch.Tensor) -> str:
    return "CPU" if t.device.type == "cpu" else t.device.type


def _candidate(tensors: tuple[torch.Tensor, ...]) -> Backend | None:
    """The backend for these tensors before the self-test: None for the reference."""
    served = _served_type()
    forced = env_override()
    if not tensors or not all(t.device.type == served for t in tensors):
        if forced == "cuda" and tensors and tensors[0].device.type != served:
            raise ThgError(f"{_ENV}=cuda but the tensors are on the {_device_name(tensors[0])}")
        return None
    if forced == "torch":
        return None
    entry = _current(load=True)
    if entry is None and forced == "cuda":
        raise ThgError(f"{_ENV}=cuda but the CUDA extension is unavailable")
    return entry


def _failure_text(failed: list[OpCheck]) -> str:
    return "; ".join(f"{c.op} ({c.detail})" for c in failed)


def _self_tested(entry: Backend, device: torch.device) -> dict[str, OpCheck]:
    """The self-test results of ``entry``, running it once on ``device`` (one warning naming failed ops)."""
    if entry.results is None:
        from thg_nerf.ops import selftest

        entry.results = selftest.run_self_test(entry.module, device)
        failed = [c for c in entry.results.values() if not c.passed]
        if failed and env_override() != "cuda":
            get_logger().warning(f"CUDA kernel self-test failed for {_failure_text(failed)}; "
                                 f"{', '.join(c.op for c in failed)} will use the PyTorch reference "
                                 "(slower, correct). Please report this with the output of 'thg-nerf info'.")
    return entry.results


def kernels(op: str, *tensors: torch.Tensor) -> Any | None:
    """The kernel module to run ``op`` on ``tensors`` with, or None for the torch reference.

    Runs the self-test on the first call that would use a kernel; an op that failed it gets None, or, with
    ``THG_NERF_BACKEND=cuda``, any failed op makes every call a :class:`ThgError`.
    """
    entry = _candidate(tensors)
    if entry is None or not entry.self_test:
        return None if entry is None else entry.module
    results = _self_tested(entry, tensors[0].device)
    failed = [c for c in results.values() if not c.passed]
    if failed and env_override() == "cuda":
        raise ThgError(f"{_ENV}=cuda but the CUDA kernel self-test failed for {_failure_text(failed)}; "
                       f"unset {_ENV} to use the PyTorch reference for these ops")
    return entry.module if results[op].passed else None


def run_self_test(device: torch.device | str | None = None, load: bool = True) -> dict[str, OpCheck] | None:
    """The self-test results of the current kernel backend, running the self-test now if it has not run (on
    ``device``; default: the first device of the served type). None when no kernel backend is available;
    ``load`` allows loading (or JIT-compiling) the extension."""
    entry = _current(load=load)
    if entry is None:
        return None
    if device is None:
        device = "cuda:0" if entry.device_type == "cuda" else entry.device_type
    return _self_tested(entry, torch.device(device))


def default_backend_name(device: torch.device) -> str:
    """Which backend tensors on ``device`` would use, without compiling anything (self-test aside)."""
    forced = env_override()
    if device.type != _served_type():
        return "torch"
    if forced == "torch":
        return "torch"
    if _installed:
        return "cuda"
    return "cuda" if (cuda_extension_built() or forced == "cuda") else "cuda (JIT on first use)"


def op_status() -> dict[str, dict[str, str]]:
    """Per op: the ``backend`` its tensors on the kernels' device use now and the ``self_test`` outcome."""
    entry = _current(load=False)
    served = _served_type()
    forced = env_override()
    if served == "cuda" and not torch.cuda.is_available():
        return {op: {"backend": "torch", "self_test": "not run (no CUDA device)"} for op in OPS}
    if forced == "torch":
        return {op: {"backend": "torch", "self_test": f"not run ({_ENV}=torch)"} for op in OPS}
    base = default_backend_name(torch.device(served))
    if entry is None or entry.results is None:
        state = "off (kernels used unchecked)" if entry is not None and not entry.self_test else \
            "not run yet (runs on first use)"
        return {op: {"backend": base, "self_test": state} for op in OPS}
    out = {}
    for op in OPS:
        check = entry.results[op]
        if check.passed:
            out[op] = {"backend": "cuda", "self_test": f"passed ({check.detail}, {check.ms:.1f} ms)"}
        else:
            used = "torch (fallback)"
            if not entry.self_test:
                used = "cuda (self-test off: used anyway)"
            elif forced == "cuda":
                used = f"none ({_ENV}=cuda makes this an error)"
            out[op] = {"backend": used, "self_test": f"FAILED ({check.detail})"}
    return out


def use_cuda(*tensors: torch.Tensor) -> bool:
    """Whether a kernel backend serves these tensors (the extension loads), ignoring the self-test."""
    return _candidate(tensors) is not None


def ext() -> Any:
    """The current kernel module (the extension, loaded or JIT-compiled on demand; tools and tests only)."""
    entry = _current(load=True)
    assert entry is not None, "the CUDA extension is unavailable"
    return entry.module
