"""Audio conditioning: a per-frame encoder over the feature window and temporal attention across frames."""

from __future__ import annotations

import torch
from torch import nn

from thg_nerf.motion.net import AudioEncoder

__all__ = ["AudioAttention", "AudioEncoder", "window_indices"]


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
