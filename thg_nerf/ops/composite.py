"""Volume-rendering compositing of packed samples (training) and of fixed-size sample blocks (inference).

Training (packed, sorted by ray): ``tau_i = sigma_i * (t_end_i - t_start_i)``, transmittance
``T_i = exp(-sum_{j<i, same ray} tau_j)``, ``alpha_i = 1 - exp(-tau_i)``, ``w_i = T_i * alpha_i``; samples
whose ``T_i`` is below ``early_stop`` get weight 0 (early termination). Reference: :func:`composite_torch`
(autograd); the CUDA kernel has a hand-written backward.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from thg_nerf.ops import backend


def composite_torch(sigmas: torch.Tensor, t_starts: torch.Tensor, t_ends: torch.Tensor,
                    ray_indices: torch.Tensor, n_rays: int, early_stop: float = 1e-4) -> torch.Tensor:
    """Reference packed weights ``w`` [S] for densities ``sigmas`` [S] (differentiable)."""
    if sigmas.numel() == 0:
        return sigmas
    tau = sigmas * (t_ends - t_starts)
    # exclusive per-ray cumulative sum, in float64 so long packed arrays don't drift
    cs = torch.cumsum(tau.double(), 0)
    counts = torch.bincount(ray_indices, minlength=n_rays)
    starts = torch.cumsum(counts, 0) - counts
    base = torch.where(starts > 0, cs[(starts - 1).clamp_min(0)], torch.zeros_like(cs[:1]).expand(n_rays))
    excl = (cs - tau.double() - base[ray_indices]).to(sigmas.dtype)
    trans = torch.exp(-excl)
    weights = trans * (1.0 - torch.exp(-tau))
    return torch.where(trans.detach() >= early_stop, weights, torch.zeros_like(weights))


class _CompositeFunction(torch.autograd.Function):
    """CUDA packed compositing with the kernel module ``kernels``, with early termination (float32, or float64
    for gradchecks); backward w.r.t. sigmas. The forward also returns per-ray ``(begin, end, alive)`` info reused
    by the backward pass."""

    @staticmethod
    def forward(ctx, kernels, sigmas, t_starts, t_ends, ray_indices, n_rays, early_stop):  # type: ignore[override]
        dtype = torch.float64 if sigmas.dtype == torch.float64 else torch.float32
        sig = sigmas.to(dtype).contiguous()
        t0, t1 = t_starts.to(dtype).contiguous(), t_ends.to(dtype).contiguous()
        weights, info = kernels.composite_forward(sig, t0, t1, ray_indices.long().contiguous(), int(n_rays),
                                                  float(early_stop))
        ctx.save_for_backward(sig, t0, t1, weights, info)
        ctx.kernels = kernels
        return weights

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_w):  # type: ignore[override]
        sig, t0, t1, weights, info = ctx.saved_tensors
        grad_sigma = ctx.kernels.composite_backward(grad_w.to(sig.dtype).contiguous(), sig, t0, t1, weights, info)
        return None, grad_sigma, None, None, None, None, None


def composite(sigmas: torch.Tensor, t_starts: torch.Tensor, t_ends: torch.Tensor, ray_indices: torch.Tensor,
              n_rays: int, early_stop: float = 1e-4) -> torch.Tensor:
    """Per-sample volume-rendering weights [S] of packed samples (sorted by ray)."""
    kernels = backend.kernels("composite", sigmas, t_starts)
    if kernels is not None:
        return _CompositeFunction.apply(kernels, sigmas, t_starts, t_ends, ray_indices, n_rays, early_stop)
    return composite_torch(sigmas, t_starts, t_ends, ray_indices, n_rays, early_stop)


def accumulate(weights: torch.Tensor, values: torch.Tensor | None, ray_indices: torch.Tensor,
               n_rays: int) -> torch.Tensor:
    """Sum ``weights * values`` per ray: [S] x [S, C] -> [R, C] (``values=None`` sums the weights -> [R, 1])."""
    src = weights[:, None] if values is None else weights[:, None] * values
    out = torch.zeros(n_rays, src.shape[1], device=src.device, dtype=src.dtype)
    return out.index_add(0, ray_indices, src)


def composite_step_torch(sigmas: torch.Tensor, rgbs: torch.Tensor, t_starts: torch.Tensor, step_size: float,
                         trans: torch.Tensor, rgb_acc: torch.Tensor, depth_acc: torch.Tensor,
                         early_stop: float) -> None:
    """Reference inference compositing of blocks ``sigmas`` [R, K], ``rgbs`` [R, K, 3] into accumulators.

    Updates in place ``trans`` [R] (transmittance), ``rgb_acc`` [R, 3] and ``depth_acc`` [R]. Slots with
    ``t_starts = inf`` are empty. Stops accumulating a ray once its transmittance falls below ``early_stop``.
    """
    valid = torch.isfinite(t_starts)
    tau = torch.where(valid, sigmas * step_size, torch.zeros_like(sigmas))
    excl = torch.cumsum(tau, 1) - tau
    t_i = trans[:, None] * torch.exp(-excl)
    alive = t_i >= early_stop
    w = torch.where(alive, t_i * (1.0 - torch.exp(-tau)), torch.zeros_like(tau))
    rgb_acc += (w[..., None] * rgbs).sum(1)
    depth_acc += (w * torch.where(valid, t_starts + 0.5 * step_size, torch.zeros_like(t_starts))).sum(1)
    trans.mul_(torch.exp(-tau.sum(1)))


def _composite_step_kernel(kernels, sigmas: torch.Tensor, rgbs: torch.Tensor, t_starts: torch.Tensor,
                           step_size: float, trans: torch.Tensor, rgb_acc: torch.Tensor, depth_acc: torch.Tensor,
                           early_stop: float) -> None:
    """:func:`composite_step` on the kernel module ``kernels``."""
    kernels.composite_inference(sigmas.float().contiguous(), rgbs.float().contiguous(), t_starts.float().contiguous(),
                                float(step_size), trans, rgb_acc, depth_acc, float(early_stop))


def composite_step(sigmas: torch.Tensor, rgbs: torch.Tensor, t_starts: torch.Tensor, step_size: float,
                   trans: torch.Tensor, rgb_acc: torch.Tensor, depth_acc: torch.Tensor,
                   early_stop: float = 1e-3) -> None:
    """In-place inference compositing (see :func:`composite_step_torch`)."""
    with torch.no_grad():
        kernels = backend.kernels("composite_step", sigmas, trans)
        if kernels is not None:
            _composite_step_kernel(kernels, sigmas, rgbs, t_starts, step_size, trans, rgb_acc, depth_acc, early_stop)
            return
        composite_step_torch(sigmas, rgbs, t_starts, step_size, trans, rgb_acc, depth_acc, early_stop)
