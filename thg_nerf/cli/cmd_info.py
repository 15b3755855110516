"""``thg-nerf info``: versions, device, available backends and, per op, the kernel backend and its self-test."""

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


def _self_test_summary(self_test: bool) -> str:
    """Run the kernel self-test when asked (loading, or JIT-compiling, the extension), or when the extension is
    prebuilt and a GPU is there (tens of ms); a one-line summary."""
    import torch

    from thg_nerf.ops import backend

    if backend.env_override() == "torch":
        return "not run (THG_NERF_BACKEND=torch)"
    kernels_on_cpu = backend.default_backend_name(torch.device("cpu")) != "torch"  # a test's fake extension
    if not (torch.cuda.is_available() or kernels_on_cpu):
        return "not run (no CUDA device)"
    if not (self_test or backend.cuda_extension_built()):
        return "not run (runs on the first use of the kernels; --self-test runs it now)"
    checks = backend.run_self_test(load=True)
    if checks is None:
        return "not run (CUDA extension unavailable)"
    failed = [c.op for c in checks.values() if not c.passed]
    total = sum(c.ms for c in checks.values())
    return f"FAILED for {', '.join(failed)}" if failed else f"passed ({total:.0f} ms)"


def collect_info(self_test: bool = False) -> dict:
    """A dict of versions, device, backend availability and per-op kernel state (cheap: imports only torch;
    ``self_test`` loads the CUDA extension, JIT-compiling it if needed, and runs its self-test)."""
    import torch

    from thg_nerf import __version__
    from thg_nerf.ops import backend

    cuda = torch.cuda.is_available()
    summary = _self_test_summary(self_test)
    optional = {
        "mediapipe": ("mediapipe", "landmarks + segmentation (preprocess)"),
        "tensorboard": ("tensorboard", "training logs"),
        "transformers": ("transformers", "hubert/wav2vec2 audio features"),
        "face_alignment": ("face-alignment", "alternative landmark backend"),
        "nerfacc": ("nerfacc", "benchmark peer for ray marching"),
        "tinycudann": ("tinycudann", "optional hash-encoding backend"),
        "ray": ("ray", "fit-many on a cluster"),
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
            "self_test": summary,
            "ops": backend.op_status(),
        },
        "optional": extras,
    }


def run(args: argparse.Namespace) -> int:
    info = collect_info(self_test=args.self_test)
    be = info["backends"]
    # with --self-test, scripts get a non-zero exit when a GPU is there but a kernel is not in use
    bad = args.self_test and (be["self_test"].startswith("FAILED") or "unavailable" in be["self_test"])
    if args.json:
        print(json.dumps(info, indent=2))
        return 1 if bad else 0
    dev = info["device"]
    print(f"thg-nerf {info['thg_nerf']}  (python {info['python']}, torch {info['torch']}, "
          f"numpy {info['numpy']})")
    print(f"device:  {dev['name']}  (cuda available: {dev['cuda_available']}, torch cuda: {dev['torch_cuda']}, "
          f"cpu threads: {dev['cpu_threads']})")
    print(f"kernels: CUDA extension thg_nerf._C built: {be['cuda_extension_built']}; "
          f"default backend: {be['default_backend']}"
          + (f"; THG_NERF_BACKEND={be['env_override']}" if be["env_override"] else ""))
    print(f"kernel self-test: {be['self_test']}")
    for op, state in be["ops"].items():
        print(f"  {op:<17} {state['backend']:<22} self-test: {state['self_test']}")
    print("optional:")
    for name, e in info["optional"].items():
        state = f"yes ({e['version']})" if e["available"] else "no"
        print(f"  {name:<15} {state:<22} {e['for']}")
    return 1 if bad else 0


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("info", parents=[common], help="versions, device and available backends",
                       description="Print versions, the compute device and which backends/extras are available.")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--self-test", action="store_true",
                   help="load the CUDA kernels (compiling them if needed) and run their self-test now; exit 1 when "
                   "an op failed it or a GPU is present but the kernels are unavailable")
    p.set_defaults(func=run)
