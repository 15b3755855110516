"""Small reproducible random inputs of the ops, with their edge cases; no tests here.

Used by the self-test on first use (:mod:`thg_nerf.ops.selftest`), the ops tests (tests/test_ops.py,
tests/test_cuda_host.py, tests/test_cuda_ops.py, tests/test_selftest.py) and tools/gpu_smoke_ops.py.
Every generator takes a ``torch.Generator`` so that each caller draws fresh but reproducible inputs, and returns
CPU tensors (callers move them to the device they test).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from thg_nerf.ops.hash_encoding import HashGridLayout
from thg_nerf.ops.raymarch import ray_aabb_intersect

#: Layouts mixing dense and hashed levels, 2D and 3D, several features per level.
LAYOUTS = [
    HashGridLayout(dim=3, num_levels=4, level_dim=2, log2_hashmap_size=10, base_resolution=4, max_resolution=32),
    HashGridLayout(dim=2, num_levels=5, level_dim=4, log2_hashmap_size=8, base_resolution=3, max_resolution=40),
    HashGridLayout(dim=3, num_levels=2, level_dim=1, log2_hashmap_size=6, base_resolution=2, max_resolution=9),
    HashGridLayout(dim=2, num_levels=3, level_dim=8, log2_hashmap_size=7, base_resolution=5, max_resolution=20),
]


def layout_id(layout: HashGridLayout) -> str:
    return f"D{layout.dim}L{layout.num_levels}F{layout.level_dim}"


def hash_points(layout: HashGridLayout, n: int, gen: torch.Generator, dtype=torch.float32) -> torch.Tensor:
    """[n, D] points: mostly uniform in [0, 1], some slightly outside, some exactly on 0, 1 and grid vertices."""
    x = torch.rand(n, layout.dim, generator=gen, dtype=torch.float64)
    m = n // 8
    x[:m] = x[:m] * 1.2 - 0.1
    res = layout.resolutions[-1]
    x[m:2 * m] = torch.randint(0, res + 1, (m, layout.dim), generator=gen).double() / res
    x[2 * m, :] = 0.0
    x[2 * m + 1, :] = 1.0
    return x.to(dtype)


def hash_table(layout: HashGridLayout, gen: torch.Generator, dtype=torch.float32) -> torch.Tensor:
    """[P, F] table with O(1) entries."""
    return (torch.rand(layout.n_params, layout.level_dim, generator=gen, dtype=torch.float64) * 2 - 1).to(dtype)


class MarchScene(NamedTuple):
    rays_o: torch.Tensor
    rays_d: torch.Tensor
    t_near: torch.Tensor
    t_far: torch.Tensor
    occ: torch.Tensor
    aabb: torch.Tensor
    step: float
    jitter: torch.Tensor


def march_scene(gen: torch.Generator, n_rays: int = 256, res: tuple[int, int, int] = (12, 10, 14),
                n_steps_across: int = 96, kind: str = "blobs") -> MarchScene:
    """Rays through a box offset from the origin, with an occupancy grid of random ``blobs`` or ``noise``.

    The rays include axis-parallel ones, ones starting inside the box, unnormalised directions and misses.
    """
    aabb = torch.tensor([-1.3, -0.6, 0.2, 0.9, 1.1, 2.1])
    lo, hi = aabb[:3], aabb[3:]
    if kind == "noise":
        occ = torch.rand(res, generator=gen) < 0.25
    else:
        axes = [(torch.arange(r) + 0.5) / r for r in res]
        cells = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1)
        occ = torch.zeros(res, dtype=torch.bool)
        for _ in range(4):
            c = torch.rand(3, generator=gen)
            rad = 0.1 + 0.2 * float(torch.rand(1, generator=gen))
            occ |= ((cells - c).norm(dim=-1) < rad)
    center = (lo + hi) / 2
    direction = torch.randn(n_rays, 3, generator=gen)
    direction = direction / direction.norm(dim=-1, keepdim=True)
    origin = center + 3.0 * direction
    target = lo + torch.rand(n_rays, 3, generator=gen) * (hi - lo)
    d = target - origin
    d = d / d.norm(dim=-1, keepdim=True)
    q = n_rays // 8
    axis = torch.randint(0, 3, (q,), generator=gen)
    d[:q] = 0.0
    d[torch.arange(q), axis] = torch.where(torch.rand(q, generator=gen) < 0.5, -1.0, 1.0)
    origin[:q] = target[:q] - d[:q] * 2.5  # axis-parallel rays through the box
    origin[q:2 * q] = lo + torch.rand(q, 3, generator=gen) * (hi - lo)  # starting inside
    d[2 * q:3 * q] *= 0.5 + 2 * torch.rand(q, 1, generator=gen)  # unnormalised
    d[3 * q:3 * q + q // 2, 0] = 0.0  # in a coordinate plane
    origin[-2], d[-2] = torch.tensor([5.0, 5.0, 5.0]), torch.tensor([1.0, 0.0, 0.0])  # miss
    t_near, t_far = ray_aabb_intersect(origin, d, aabb)
    step = float((hi - lo).norm()) / n_steps_across
    jitter = torch.rand(n_rays, generator=gen)
    return MarchScene(origin.contiguous(), d.contiguous(), t_near, t_far, occ, aabb, step, jitter)


def reference_n_steps(t_near: torch.Tensor, t_far: torch.Tensor, step: float) -> int:
    """Lattice points per ray that ``march_rays_torch`` scans (and the CUDA binding passes to the kernel)."""
    if t_near.numel() == 0:
        return 1
    return max(1, int((t_far - t_near).max().item() / step) + 1)


class Packed(NamedTuple):
    sigmas: torch.Tensor
    t_starts: torch.Tensor
    t_ends: torch.Tensor
    ray_indices: torch.Tensor
    n_rays: int


def packed_samples(gen: torch.Generator, n_rays: int = 64, max_per_ray: int = 40, dtype=torch.float32,
                   scale: float = 30.0) -> Packed:
    """Packed samples sorted by ray (some rays empty) with densities >= 0 that stop many rays early."""
    counts = torch.randint(0, max_per_ray + 1, (n_rays,), generator=gen)
    counts[0] = 0
    ri = torch.repeat_interleave(torch.arange(n_rays), counts)
    n = ri.numel()
    dt = 0.01 + 0.04 * torch.rand(n, generator=gen, dtype=torch.float64)
    cs = torch.cumsum(dt, 0)
    first = torch.cumsum(counts, 0) - counts  # index of each ray's first sample
    base = torch.where(first > 0, cs[(first - 1).clamp_min(0)], torch.zeros(n_rays, dtype=torch.float64))
    t0 = 1.0 + cs - dt - base[ri]  # each ray starts at t = 1
    sig = torch.rand(n, generator=gen, dtype=torch.float64) * scale
    sig[torch.rand(n, generator=gen) < 0.3] = 0.0
    return Packed(sig.to(dtype), t0.to(dtype), (t0 + dt).to(dtype), ri, n_rays)


def ambiguous_rays(p: Packed, early_stop: float, rel: float = 1e-3) -> torch.Tensor:
    """Bool [R]: rays with a sample whose transmittance is within ``rel`` of ``early_stop`` (mask may flip)."""
    tau = p.sigmas.double() * (p.t_ends.double() - p.t_starts.double())
    cs = torch.cumsum(tau, 0)
    counts = torch.bincount(p.ray_indices, minlength=p.n_rays)
    first = torch.cumsum(counts, 0) - counts
    base = torch.where(first > 0, cs[(first - 1).clamp_min(0)], torch.zeros(p.n_rays, dtype=torch.float64))
    trans = torch.exp(-(cs - tau - base[p.ray_indices]))
    near = ((trans / early_stop - 1).abs() < rel).double() if early_stop > 0 else torch.zeros_like(trans)
    return torch.zeros(p.n_rays, dtype=torch.float64).index_add_(0, p.ray_indices, near) > 0


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b| (0 when both are empty or zero), computed in float64 on the CPU."""
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    if b.numel() == 0:
        return 0.0
    scale = b.abs().max().item()
    diff = (a - b).abs().max().item()
    return diff / scale if scale > 0 else diff


def inference_blocks(gen: torch.Generator, n_rays: int = 50, k: int = 8, step: float = 0.02):
    """(sigmas [R, K], rgbs [R, K, 3], t_starts [R, K] with inf slots, trans [R], rgb_acc [R, 3], depth_acc [R])."""
    sig = torch.rand(n_rays, k, generator=gen) * 40.0
    rgb = torch.rand(n_rays, k, 3, generator=gen)
    ts = 0.5 + step * (torch.arange(k) + torch.randint(0, 5, (n_rays, 1), generator=gen))
    ts = ts.float()
    empty = torch.rand(n_rays, k, generator=gen) < 0.2
    ts[empty] = math.inf
    trans = torch.rand(n_rays, generator=gen)
    trans[:5] = 1e-4  # already below / at the early-stop threshold
    return sig, rgb, ts, trans, torch.rand(n_rays, 3, generator=gen), torch.rand(n_rays, generator=gen)
