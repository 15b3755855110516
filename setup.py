"""Build script: packages + presets, and the optional CUDA extension ``thg_nerf._C``.

A plain install never needs CUDA. The extension is built only when a CUDA-enabled torch and a CUDA toolkit
are present and ``BUILD_NO_CUDA`` is not set; otherwise ``thg_nerf`` JIT-compiles it on first GPU use.
Sources and flags come from ``thg_nerf/ops/_build.py`` (shared with the JIT path).
"""

import os
import runpy
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).resolve().parent
build_cfg = runpy.run_path(str(ROOT / "thg_nerf" / "ops" / "_build.py"))

ext_modules = []
cmdclass = {}
if os.environ.get("BUILD_NO_CUDA", "0") != "1":
    try:
        import torch
        from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CUDAExtension

        want = torch.version.cuda is not None and CUDA_HOME is not None and build_cfg["SOURCES"]
        if want:
            ext_modules.append(CUDAExtension(
                name="thg_nerf._C",
                sources=build_cfg["SOURCES"],
                extra_compile_args={"cxx": build_cfg["CXX_FLAGS"], "nvcc": build_cfg["NVCC_FLAGS"]},
            ))
            cmdclass["build_ext"] = BuildExtension
    except ImportError:
        pass

setup(
    packages=find_packages(include=["thg_nerf", "thg_nerf.*"]) + ["thg_nerf.presets"],
    package_dir={"thg_nerf.presets": "configs"},
    package_data={"thg_nerf.presets": ["*.yaml"], "thg_nerf": ["py.typed"], "thg_nerf.serve": ["static/*"]},
    ext_modules=ext_modules,
    cmdclass=cmdclass,
)
