"""Audio conditioning: a per-frame encoder over the feature window and temporal attention across frames."""

from __future__ import annotations

import math

import torch
from torch import nn


class AudioEncoder(nn.Module):
    """Per-frame feature window [B, T, C] -> audio code [B, out_dim] (1D convolutions over time, then a mean)."""

    def __init__(self, in_channels: int, n_steps: int, out_dim: int, width: int = 32) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv1d(in_channels, width, 3, padding=1), nn.LeakyReLU(0.02)]
        for _ in range(max(0, math.ceil(math.log2(max(n_steps, 1))) - 1)):
            layers += [nn.Conv1d(width, width, 3, stride=2, padding=1), nn.LeakyReLU(0.02)]
        self.convs = nn.Sequential(*layers)
        self.out = nn.Sequential(nn.Linear(width, width), nn.LeakyReLU(0.02), nn.Linear(width, out_dim))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """[B, T, C] -> [B, out_dim]."""
        h = self.convs(feats.transpose(1, 2))  # [B, width, T']
        return self.out(h.mean(-1))


class AudioAttention(nn.Module):
    """Temporal attention over the codes of ``window`` neighbouring frames: [B, W, D] -> [B, D]."""

    def __init__(self, dim: int, window: int) -> None:
        super().__init__()
        self.window = window
        self.convs = nn.Sequential(nn.Conv1d(dim, 16, 3, padding=1), nn.LeakyReLU(0.02),
                                   nn.Conv1d(16, 1, 3, padding=1), nn.LeakyReLU(0.02))
        self.mix = nn.Linear(window, window)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        """[B, W, D] -> ([B, D] attended code)."""
        logits = self.mix(self.convs(codes.transpose(1, 2)).squeeze(1))  # [B, W]
        weights = torch.softmax(logits, dim=-1)
        return (weights[..., None] * codes).sum(1)


def window_indices(centres: torch.Tensor, window: int, n: int) -> torch.Tensor:
    """Frame indices [B, W] of the attention window around each centre [B], clamped to [0, n)."""
    offs = torch.arange(window, device=centres.device) - window // 2
    return (centres[:, None] + offs[None]).clamp(0, n - 1)
