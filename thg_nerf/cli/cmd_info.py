"""``thg-nerf info``: versions, device and available backends."""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import platform


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def collect_info() -> dict:
    """A dict of versions, device and backend availability (cheap: imports only torch)."""
    import torch

    from thg_nerf import __version__
    from thg_nerf.ops import backend

    cuda = torch.cuda.is_available()
    optional = {
        "mediapipe": ("mediapipe", "landmarks + segmentation (preprocess)"),
        "tensorboard": ("tensorboard", "training logs"),
        "transformers": ("transformers", "hubert/wav2vec2 audio features"),
        "face_alignment": ("face-alignment", "alternative landmark backend"),
        "nerfacc": ("nerfacc", "benchmark peer for ray marching"),
        "tinycudann": ("tinycudann", "optional hash-encoding backend"),
    }
    extras = {}
    for module, (dist, purpose) in optional.items():
        found = importlib.util.find_spec(module) is not None
        extras[module] = {"available": found, "version": _version(dist) if found else None, "for": purpose}
    return {
        "thg_nerf": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "numpy": _version("numpy"),
        "imageio_ffmpeg": _version("imageio-ffmpeg"),
        "device": {
            "cuda_available": cuda,
            "name": torch.cuda.get_device_name(0) if cuda else "cpu",
            "torch_cuda": torch.version.cuda,
            "cpu_threads": torch.get_num_threads(),
        },
        "backends": {
            "cuda_extension_built": backend.cuda_extension_built(),
            "default_backend": backend.default_backend_name(torch.device("cuda" if cuda else "cpu")),
            "env_override": backend.env_override(),
        },
        "optional": extras,
    }


def run(args: argparse.Namespace) -> int:
    info = collect_info()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    dev = info["device"]
    be = info["backends"]
    print(f"thg-nerf {info['thg_nerf']}  (python {info['python']}, torch {info['torch']}, "
          f"numpy {info['numpy']})")
    print(f"device:  {dev['name']}  (cuda available: {dev['cuda_available']}, torch cuda: {dev['torch_cuda']}, "
          f"cpu threads: {dev['cpu_threads']})")
    print(f"kernels: CUDA extension thg_nerf._C built: {be['cuda_extension_built']}; "
          f"default backend: {be['default_backend']}"
          + (f"; THG_NERF_BACKEND={be['env_override']}" if be["env_override"] else ""))
    print("optional:")
    for name, e in info["optional"].items():
        state = f"yes ({e['version']})" if e["available"] else "no"
        print(f"  {name:<15} {state:<22} {e['for']}")
    return 0


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("info", parents=[common], help="versions, device and available backends",
                       description="Print versions, the compute device and which backends/extras are available.")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)
