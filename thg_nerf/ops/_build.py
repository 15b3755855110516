"""One list of CUDA sources and flags, shared by ``setup.py`` and the JIT build (``thg_nerf._C`` / ``thg_nerf_C``).

The C++ standard is left to torch (C++17 or C++20 depending on its version; the kernels compile with both).
No ``--use_fast_math``: the marching kernels must reproduce the reference's IEEE float ops bit for bit and the
compositing kernels use accurate ``expf``. This module imports nothing heavy; only :func:`jit_load` touches
``torch.utils.cpp_extension``.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CUDA_DIR = ROOT / "cuda_ext"

#: Translation units of ``thg_nerf._C`` relative to the repository root. They include their headers
#: (cuda_ext/*.cuh, thg_kernels.h) by relative path, so no include directories are needed.
SOURCES: list[str] = [
    "cuda_ext/bindings.cpp",
    "cuda_ext/composite.cu",
    "cuda_ext/hash_encoding.cu",
    "cuda_ext/occupancy.cu",
    "cuda_ext/raymarch.cu",
]
NVCC_FLAGS: list[str] = ["-O3", "-lineinfo"]
CXX_FLAGS: list[str] = ["-O3"]


def jit_load():
    """Compile (or load from the torch extension cache) ``thg_nerf._C`` with torch's JIT builder."""
    from torch.utils.cpp_extension import load

    missing = [s for s in SOURCES if not (ROOT / s).is_file()]
    if missing:
        raise RuntimeError(f"CUDA sources missing from {ROOT}: {', '.join(missing)}")
    return load(name="thg_nerf_C", sources=[str(ROOT / s) for s in SOURCES],
                extra_cuda_cflags=NVCC_FLAGS, extra_cflags=CXX_FLAGS, verbose=False)
