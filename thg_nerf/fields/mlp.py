"""Small building blocks: MLPs, truncated exponential, frequency encoding."""

from __future__ import annotations

import torch
from torch import nn


def mlp(in_dim: int, hidden: int, out_dim: int, n_hidden: int = 1) -> nn.Sequential:
    """``n_hidden`` ReLU layers of width ``hidden``, then a linear output layer."""
    layers: list[nn.Module] = []
    d = in_dim
    for _ in range(n_hidden):
        layers += [nn.Linear(d, hidden), nn.ReLU(inplace=True)]
        d = hidden
    layers.append(nn.Linear(d, out_dim))
    return nn.Sequential(*layers)


class _TruncExp(torch.autograd.Function):
    """exp(x) whose gradient uses exp(min(x, 15)), so large densities cannot blow up the gradients."""

    @staticmethod
    def forward(ctx, x):  # type: ignore[override]
        ctx.save_for_backward(x)
        return torch.exp(x)

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return g * torch.exp(x.clamp(max=15.0))


def trunc_exp(x: torch.Tensor) -> torch.Tensor:
    """Density activation of Instant-NGP: exp with a clamped gradient."""
    return _TruncExp.apply(x)


def freq_encode(x: torch.Tensor, n_freqs: int) -> torch.Tensor:
    """[N, D] -> [N, D * (1 + 2 * n_freqs)]: x, sin(2^k pi x), cos(2^k pi x)."""
    if n_freqs == 0:
        return x
    freqs = (2.0 ** torch.arange(n_freqs, device=x.device, dtype=x.dtype)) * torch.pi
    xf = x[..., None] * freqs  # [N, D, K]
    return torch.cat([x, torch.sin(xf).flatten(1), torch.cos(xf).flatten(1)], dim=-1)
