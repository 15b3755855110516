"""One list of CUDA sources and flags, shared by ``setup.py`` and the JIT build."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CUDA_DIR = ROOT / "cuda_ext"

#: Translation units of ``thg_nerf._C`` relative to the repository root.
SOURCES: list[str] = sorted(str(p.relative_to(ROOT)) for p in CUDA_DIR.glob("*.cu")) + sorted(
    str(p.relative_to(ROOT)) for p in CUDA_DIR.glob("*.cpp")
)
NVCC_FLAGS: list[str] = ["-O3", "--use_fast_math", "-std=c++17", "--expt-relaxed-constexpr"]
CXX_FLAGS: list[str] = ["-O3", "-std=c++17"]


def jit_load():
    """Compile (or load from the torch extension cache) ``thg_nerf._C`` with torch's JIT builder."""
    from torch.utils.cpp_extension import load

    if not SOURCES:
        raise RuntimeError(f"no CUDA sources found in {CUDA_DIR}")
    return load(name="thg_nerf_C", sources=[str(ROOT / s) for s in SOURCES],
                extra_cuda_cflags=NVCC_FLAGS, extra_cflags=CXX_FLAGS, verbose=False)
