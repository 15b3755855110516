"""Occupancy-grid ray marching: ray/box intersection, packed training samples, inference steps.

Samples are uniform steps of ``step_size`` along each ray starting at its box entry ``t_near`` shifted by a
per-ray jitter in [0, 1): sample k of ray r spans ``[t_near + (k + u_r) * step, ... + step]`` and is kept when
its midpoint lies in an occupied cell and its start is before ``t_far``. At most ``max_samples`` kept samples
per ray. The CUDA kernels produce exactly these samples (they only skip empty cells faster).

The occupancy grid is a bool tensor [G, G, G] over the axis-aligned box ``aabb = (x0, y0, z0, x1, y1, z1)``,
indexed ``[ix, iy, iz]``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from thg_nerf.ops import backend


class RaySamples(NamedTuple):
    """Packed samples, sorted by ray: ``ray_indices`` [S] int64, ``t_starts`` [S], ``t_ends`` [S]."""

    ray_indices: torch.Tensor
    t_starts: torch.Tensor
    t_ends: torch.Tensor


def ray_aabb_intersect(rays_o: torch.Tensor, rays_d: torch.Tensor, aabb: torch.Tensor,
                       near: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Entry/exit distances [R] of rays [R, 3] with the box; rays that miss get ``t_near = t_far``."""
    inv = 1.0 / torch.where(rays_d.abs() < 1e-9, torch.full_like(rays_d, 1e-9), rays_d)
    t0 = (aabb[:3] - rays_o) * inv
    t1 = (aabb[3:] - rays_o) * inv
    t_near = torch.minimum(t0, t1).amax(-1).clamp_min(near)
    t_far = torch.maximum(t0, t1).amin(-1)
    t_far = torch.maximum(t_far, t_near)
    return t_near, t_far


def occupied(points: torch.Tensor, occ: torch.Tensor, aabb: torch.Tensor) -> torch.Tensor:
    """Whether points [..., 3] fall in an occupied cell (points outside the box are empty)."""
    g = torch.tensor(occ.shape, device=points.device)
    rel = (points - aabb[:3]) / (aabb[3:] - aabb[:3])
    inside = ((rel >= 0) & (rel < 1)).all(-1)
    idx = (rel * g).long().clamp(torch.zeros_like(g), g - 1)
    return inside & occ[idx[..., 0], idx[..., 1], idx[..., 2]]


def _f32(*tensors: torch.Tensor) -> list[torch.Tensor]:
    """Contiguous float32 copies (no-ops when already so) for the CUDA kernels."""
    return [t.float().contiguous() for t in tensors]


def _grid(occ: torch.Tensor, aabb: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The occupancy grid as contiguous bool and the box as float32, on ``device``, for the CUDA kernels."""
    occ = occ.to(device=device, dtype=torch.bool).contiguous()
    return occ, aabb.to(device=device, dtype=torch.float32).contiguous()


def march_rays_torch(rays_o: torch.Tensor, rays_d: torch.Tensor, t_near: torch.Tensor, t_far: torch.Tensor,
                     occ: torch.Tensor, aabb: torch.Tensor, step_size: float, max_samples: int,
                     jitter: torch.Tensor | None = None) -> RaySamples:
    """Reference training sampler (see module docstring). ``jitter`` [R] in [0, 1) or None (= 0)."""
    n_rays = rays_o.shape[0]
    device = rays_o.device
    if n_rays == 0:
        empty = torch.zeros(0, device=device)
        return RaySamples(torch.zeros(0, dtype=torch.long, device=device), empty, empty)
    u = torch.zeros(n_rays, device=device) if jitter is None else jitter
    span = (t_far - t_near).max().item()
    n_steps = max(1, int(span / step_size) + 1)
    out_idx, out_t0 = [], []
    count = torch.zeros(n_rays, dtype=torch.long, device=device)
    chunk = max(1, (1 << 22) // max(n_rays, 1))  # bound memory: steps processed per chunk
    for k0 in range(0, n_steps, chunk):
        k = torch.arange(k0, min(n_steps, k0 + chunk), device=device, dtype=rays_o.dtype)
        t0 = t_near[:, None] + (k[None] + u[:, None]) * step_size  # [R, K]
        mid = t0 + 0.5 * step_size
        pts = rays_o[:, None] + rays_d[:, None] * mid[..., None]
        keep = (t0 < t_far[:, None]) & occupied(pts, occ, aabb)
        rank = count[:, None] + torch.cumsum(keep.long(), 1)  # 1-based rank of kept samples
        keep &= rank <= max_samples
        count += keep.sum(1)
        r, c = keep.nonzero(as_tuple=True)
        out_idx.append(r)
        out_t0.append(t0[r, c])
        if bool((t0[:, -1] >= t_far).all()) or bool((count >= max_samples).all()):
            break
    ray_indices = torch.cat(out_idx)
    t_starts = torch.cat(out_t0)
    order = torch.argsort(ray_indices * (n_steps + 1) + ((t_starts - t_near[ray_indices]) / step_size).long(),
                          stable=True)
    ray_indices, t_starts = ray_indices[order], t_starts[order]
    t_ends = torch.minimum(t_starts + step_size, t_far[ray_indices])
    return RaySamples(ray_indices, t_starts, t_ends)


def _march_rays_kernel(kernels, rays_o: torch.Tensor, rays_d: torch.Tensor, t_near: torch.Tensor,
                       t_far: torch.Tensor, occ: torch.Tensor, aabb: torch.Tensor, step_size: float, max_samples: int,
                       jitter: torch.Tensor | None) -> RaySamples:
    """:func:`march_rays` on the kernel module ``kernels``."""
    ri, t0, t1 = kernels.march_rays_train(*_f32(rays_o, rays_d, t_near, t_far), *_grid(occ, aabb, rays_o.device),
                                          float(step_size), int(max_samples),
                                          None if jitter is None else _f32(jitter)[0])
    return RaySamples(ri, t0, t1)


def march_rays(rays_o: torch.Tensor, rays_d: torch.Tensor, t_near: torch.Tensor, t_far: torch.Tensor,
               occ: torch.Tensor, aabb: torch.Tensor, step_size: float, max_samples: int,
               jitter: torch.Tensor | None = None) -> RaySamples:
    """Packed training samples of rays [R, 3] through the occupancy grid (no gradients)."""
    with torch.no_grad():
        kernels = backend.kernels("march_rays", rays_o, occ)
        if kernels is not None:
            return _march_rays_kernel(kernels, rays_o, rays_d, t_near, t_far, occ, aabb, step_size, max_samples,
                                      jitter)
        return march_rays_torch(rays_o, rays_d, t_near, t_far, occ, aabb, step_size, max_samples, jitter)


def march_step_torch(rays_o: torch.Tensor, rays_d: torch.Tensor, t: torch.Tensor, t_far: torch.Tensor,
                     occ: torch.Tensor, aabb: torch.Tensor, step_size: float,
                     n_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference inference step for alive rays: the next ``n_steps`` occupied sample starts of each ray.

    ``t`` [R] is where each ray's marching resumes (a multiple of ``step_size`` from its entry).
    Returns ``(t_starts [R, n_steps], t_next [R])``; unused slots hold ``inf``. Empty steps are skipped, at
    most ``64 * n_steps`` steps are scanned per call.
    """
    n_rays = rays_o.shape[0]
    remaining = int(((t_far - t).clamp_min(0).max() / step_size).item()) + 1 if n_rays else 1
    scan = min(64 * n_steps, remaining)  # steps past every ray's t_far can never be kept
    k = torch.arange(scan, device=rays_o.device, dtype=rays_o.dtype)
    t0 = t[:, None] + k[None] * step_size
    pts = rays_o[:, None] + rays_d[:, None] * (t0 + 0.5 * step_size)[..., None]
    keep = (t0 < t_far[:, None]) & occupied(pts, occ, aabb)
    rank = torch.cumsum(keep.long(), 1)
    keep &= rank <= n_steps
    out = torch.full((n_rays, n_steps), float("inf"), device=rays_o.device, dtype=rays_o.dtype)
    r, c = keep.nonzero(as_tuple=True)
    out[r, rank[r, c] - 1] = t0[r, c]
    full = keep.sum(1) >= n_steps
    last = torch.where(full, out[:, -1] + step_size, t + scan * step_size)
    t_next = torch.minimum(last, torch.maximum(t_far, t))
    return out, t_next


def _march_step_kernel(kernels, rays_o: torch.Tensor, rays_d: torch.Tensor, t: torch.Tensor, t_far: torch.Tensor,
                       occ: torch.Tensor, aabb: torch.Tensor, step_size: float,
                       n_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`march_step` on the kernel module ``kernels``."""
    t_starts, t_next = kernels.march_rays_inference(*_f32(rays_o, rays_d, t, t_far), *_grid(occ, aabb, rays_o.device),
                                                    float(step_size), int(n_steps))
    return t_starts, t_next


def march_step(rays_o: torch.Tensor, rays_d: torch.Tensor, t: torch.Tensor, t_far: torch.Tensor,
               occ: torch.Tensor, aabb: torch.Tensor, step_size: float,
               n_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Next occupied samples of alive rays for inference (see :func:`march_step_torch`)."""
    with torch.no_grad():
        kernels = backend.kernels("march_step", rays_o, occ)
        if kernels is not None:
            return _march_step_kernel(kernels, rays_o, rays_d, t, t_far, occ, aabb, step_size, n_steps)
        return march_step_torch(rays_o, rays_d, t, t_far, occ, aabb, step_size, n_steps)
