#!/usr/bin/env python3
"""Benchmark the thg_nerf CUDA kernels; prints one markdown table.

On a GPU (CUDA events, after warm-up), in one run:
  (a) training sampling + compositing (march_rays, composite, accumulate, backward) on one occupancy grid and
      one ray batch vs nerfacc 0.5.3 (``OccGridEstimator.sampling`` + ``nerfacc.rendering``) on the same grid and
      rays, with the same analytic field; the ratio is nerfacc time / ours;
  (b) hash encoding forward + backward vs the PyTorch reference on the same GPU (ratio), and the achieved
      bandwidth of the kernels (bytes they must touch / time) vs the measured device copy bandwidth.
  (c) the same training step with the PyTorch reference ops on the same GPU (ratio).
The kernels run with the first-use self-test off (timings of the kernels themselves, whatever the self-test says).
Without CUDA (or with ``--cpu-smoke``) it times the PyTorch reference ops on the CPU, says so, and exits 0.

    python benchmarks/bench_kernels.py                 # full GPU benchmark
    python benchmarks/bench_kernels.py --cpu-smoke     # tiny CPU run (exercises the script, < 10 s)
    python benchmarks/bench_kernels.py --json out.json # also write the table's rows as JSON
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from thg_nerf.ops import (  # noqa: E402
    HashGridLayout,
    accumulate,
    backend,
    composite,
    hash_encode,
    march_rays,
    ray_aabb_intersect,
)
from thg_nerf.ops.composite import composite_torch  # noqa: E402
from thg_nerf.ops.hash_encoding import hash_encode_torch  # noqa: E402
from thg_nerf.ops.raymarch import march_rays_torch  # noqa: E402

ROWS: list[tuple[str, ...]] = []
HEADER = ("op", "config", "time (ms)", "baseline", "baseline (ms)", "speed-up", "notes")


def timeit(fn: Callable[[], object], device: torch.device, warmup: int, iters: int) -> float:
    """Milliseconds per call: CUDA events around ``iters`` calls after ``warmup`` calls (wall clock on CPU)."""
    for _ in range(warmup):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(iters):
            fn()
        end.record()
        torch.cuda.synchronize(device)
        return start.elapsed_time(end) / iters
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    return (time.perf_counter() - t0) * 1e3 / iters


# ----------------------------------------------------------------------------------------------- scene


def make_scene(n_rays: int, grid: int, steps_across: int, device: torch.device, seed: int = 0):
    """A head-like scene in [-1, 1]^3: an ellipsoid shell density, its occupancy grid, and camera rays."""
    gen = torch.Generator().manual_seed(seed)
    aabb = torch.tensor([-1.0, -1.0, -1.0, 1.0, 1.0, 1.0])
    radii = torch.tensor([0.55, 0.7, 0.6])

    def field(pts: torch.Tensor, scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r = (pts / radii.to(pts.device)).norm(dim=-1)
        sigma = scale * torch.relu(1.0 - (r - 0.9).abs() * 8.0) * 40.0
        return sigma, torch.sigmoid(4.0 * pts)

    axis = (torch.arange(grid) + 0.5) / grid * 2 - 1
    cells = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1)
    r = (cells / radii).norm(dim=-1)
    occ = (r - 0.9).abs() < 0.125 + 2.0 / grid * 4  # shell plus a margin of a few cells
    # cameras on a sphere of radius 3 looking at the origin, rays to random points of the box
    cam = torch.randn(n_rays, 3, generator=gen)
    origins = 3.0 * cam / cam.norm(dim=-1, keepdim=True)
    target = (torch.rand(n_rays, 3, generator=gen) * 2 - 1) * 0.8
    dirs = target - origins
    dirs = dirs / dirs.norm(dim=-1, keepdim=True)
    step = 2.0 * math.sqrt(3.0) / steps_across
    return (origins.to(device), dirs.to(device), occ.to(device), aabb.to(device), step, field)


def bench_marching(args, device: torch.device, reference: bool) -> float:
    """Time one training sampling + compositing step (ours, or the torch reference); adds a row, returns ms."""
    rays_o, rays_d, occ, aabb, step, field = make_scene(args.rays, args.grid, args.steps, device)
    scale = torch.ones((), device=device, requires_grad=True)
    n_rays = rays_o.shape[0]
    march = march_rays_torch if reference else march_rays
    comp = composite_torch if reference else composite
    counts: dict[str, int] = {}

    def ours() -> None:
        t_near, t_far = ray_aabb_intersect(rays_o, rays_d, aabb)
        s = march(rays_o, rays_d, t_near, t_far, occ, aabb, step, args.max_samples)
        pts = rays_o[s.ray_indices] + rays_d[s.ray_indices] * ((s.t_starts + s.t_ends) / 2)[:, None]
        sigma, rgb = field(pts, scale)
        w = comp(sigma, s.t_starts, s.t_ends, s.ray_indices, n_rays, 1e-4)
        accumulate(w, rgb, s.ray_indices, n_rays).sum().backward()
        counts["ours"] = s.ray_indices.numel()

    config = f"{n_rays} rays, {args.grid}^3 grid, {args.steps} steps/diag"
    t_ours = timeit(ours, device, args.warmup, args.iters)
    label = "march+composite (torch reference)" if reference else "march+composite fwd+bwd"
    if reference or device.type != "cuda":
        ROWS.append((label, config, f"{t_ours:.3f}", "-", "-", "-", f"{counts['ours']} samples"))
        return t_ours
    try:
        import nerfacc
    except ImportError:
        ROWS.append((label, config, f"{t_ours:.3f}", "nerfacc 0.5.3", "not installed", "-",
                     f"{counts['ours']} samples; pip install nerfacc==0.5.3 to compare"))
        return t_ours
    estimator = nerfacc.OccGridEstimator(roi_aabb=aabb.tolist(), resolution=args.grid, levels=1).to(device)
    estimator.binaries = occ[None].clone()

    def theirs() -> None:
        ri, t0, t1 = estimator.sampling(rays_o, rays_d, render_step_size=step, near_plane=0.0,
                                        early_stop_eps=1e-4, alpha_thre=0.0, stratified=False)

        def rgb_sigma_fn(ts, te, idx):
            pts = rays_o[idx] + rays_d[idx] * ((ts + te) / 2)[:, None]
            sigma, rgb = field(pts, scale)
            return rgb, sigma

        colors, _, _, _ = nerfacc.rendering(t0, t1, ri, n_rays=n_rays, rgb_sigma_fn=rgb_sigma_fn)
        colors.sum().backward()
        counts["nerfacc"] = ri.numel()

    t_theirs = timeit(theirs, device, args.warmup, args.iters)
    ROWS.append((label, config, f"{t_ours:.3f}", f"nerfacc {nerfacc.__version__}", f"{t_theirs:.3f}",
                 f"{t_theirs / t_ours:.2f}x", f"samples: ours {counts['ours']}, nerfacc {counts['nerfacc']}"))
    return t_ours


# ----------------------------------------------------------------------------------------------- hash encoding


def copy_bandwidth(device: torch.device, mbytes: int) -> float:
    """Device-to-device copy bandwidth in GB/s (read + write) of a large ``copy_``."""
    n = mbytes * (1 << 20) // 4
    a = torch.empty(n, device=device)
    b = torch.empty_like(a)
    ms = timeit(lambda: b.copy_(a), device, 3, 10)
    return 2 * a.numel() * 4 / (ms * 1e-3) / 1e9


def hash_bytes(layout: HashGridLayout, n: int, elem: int) -> int:
    """Bytes a fwd+bwd pass must touch at least: inputs, outputs, gathered corners, gradient read-modify-writes."""
    corners = n * layout.num_levels * 2**layout.dim * layout.level_dim
    fwd = n * layout.dim * 4 + corners * elem + n * layout.out_dim * elem
    bwd = n * layout.dim * 4 + n * layout.out_dim * elem + corners * 4 * 2
    return fwd + bwd


def hash_step(fn: Callable, x: torch.Tensor, table: torch.Tensor, offsets: torch.Tensor,
              res: torch.Tensor) -> Callable[[], None]:
    """One forward + backward of the encoding ``fn`` (table gradient only, as in training)."""
    def step() -> None:
        table.grad = None
        fn(x, table, offsets, res).sum().backward()
    return step


def bench_hash(args, device: torch.device, reference_only: bool) -> None:
    layouts = {
        "3D L16 F2 T2^19": HashGridLayout(3, 16, 2, 19, 16, 2048),
        "2D L12 F2 T2^14 (tri-plane)": HashGridLayout(2, 12, 2, 14, 16, 512),
    }
    bw = copy_bandwidth(device, args.copy_mb) if device.type == "cuda" and not reference_only else None
    gen = torch.Generator().manual_seed(1)
    for name, layout in layouts.items():
        if reference_only and layout.dim == 3 and args.points < 4096:
            layout = HashGridLayout(3, 4, 2, 12, 16, 128)
            name = "3D L4 F2 T2^12"
        offsets, res = layout.tensors(device)
        x = torch.rand(args.points, layout.dim, generator=gen).to(device)
        table = ((torch.rand(layout.n_params, layout.level_dim, generator=gen) * 2 - 1) * 1e-2).to(device)
        table.requires_grad_(True)
        config = f"{args.points} pts, {name}"

        t_ref = timeit(hash_step(hash_encode_torch, x, table, offsets, res), device, args.warmup, args.iters)
        if reference_only:
            ROWS.append(("hash encode fwd+bwd (torch reference)", config, f"{t_ref:.3f}", "-", "-", "-", ""))
            continue
        t_ours = timeit(hash_step(hash_encode, x, table, offsets, res), device, args.warmup, args.iters)
        gbs = hash_bytes(layout, args.points, 4) / (t_ours * 1e-3) / 1e9
        note = f"{gbs:.0f} GB/s touched vs {bw:.0f} GB/s copy ({100 * gbs / bw:.0f}%)" if bw else ""
        ROWS.append(("hash encode fwd+bwd", config, f"{t_ours:.3f}", "torch reference", f"{t_ref:.3f}",
                     f"{t_ref / t_ours:.1f}x", note))


def print_table() -> None:
    print("| " + " | ".join(HEADER) + " |")
    print("|" + "|".join("---" for _ in HEADER) + "|")
    for row in ROWS:
        print("| " + " | ".join(row) + " |")


def write_json(path: Path | None, device: str) -> None:
    """The table's rows as a list of dicts keyed by the header (no file when ``path`` is None)."""
    if path is not None:
        rows = [dict(zip(HEADER, row)) for row in ROWS]
        path.write_text(json.dumps({"device": device, "torch": torch.__version__, "rows": rows}, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rays", type=int, default=1 << 16)
    parser.add_argument("--grid", type=int, default=128)
    parser.add_argument("--steps", type=int, default=1024, help="marching steps along the box diagonal")
    parser.add_argument("--max-samples", type=int, default=1024)
    parser.add_argument("--points", type=int, default=1 << 19)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--copy-mb", type=int, default=1024)
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny CPU run of the torch reference ops")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)

    cuda = torch.cuda.is_available() and not args.cpu_smoke
    if not cuda:
        if args.cpu_smoke:
            args.rays, args.grid, args.steps, args.points, args.warmup, args.iters = 128, 32, 96, 1024, 0, 1
        else:
            args.rays, args.grid, args.steps, args.points, args.warmup, args.iters = 4096, 64, 256, 1 << 15, 1, 3
        device = torch.device("cpu")
        bench_marching(args, device, reference=True)
        bench_hash(args, device, reference_only=True)
        print_table()
        write_json(args.json, "cpu")
        reason = "--cpu-smoke" if args.cpu_smoke else "CUDA is not available"
        print(f"\n{reason}: timed only the PyTorch reference ops on the CPU; no kernel numbers.")
        return 0
    device = torch.device("cuda")
    module = backend.load_extension(jit=True)
    if module is None:
        print("error: the CUDA extension could not be loaded (see the warning above)", file=sys.stderr)
        return 1
    name = torch.cuda.get_device_name(device)
    print(f"device: {name}, torch {torch.__version__}\n")
    with backend.use_extension(module, self_test=False):
        t_ours = bench_marching(args, device, reference=False)
        bench_hash(args, device, reference_only=False)
    t_ref = bench_marching(args, device, reference=True)
    config = ROWS.pop()[1]  # the reference's row becomes the ratio row
    ROWS.append(("march+composite fwd+bwd", config, f"{t_ours:.3f}", "torch reference", f"{t_ref:.3f}",
                 f"{t_ref / t_ours:.1f}x", "same GPU"))
    print_table()
    write_json(args.json, name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
