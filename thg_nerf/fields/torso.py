"""The torso layer: an image-plane hash grid with head-pose-driven deformation (ER-NeRF style).

Pixel coordinates ``uv`` in [0, 1]^2 are shifted by a small offset predicted from ``[freq(uv), pose,
code]`` (the shoulders follow the head), then encoded by a 2D hash grid; a small MLP gives RGB and alpha.
"""

from __future__ import annotations

import torch
from torch import nn

from thg_nerf.fields.config import ModelConfig
from thg_nerf.fields.encoding import HashGrid, make_layout
from thg_nerf.fields.mlp import freq_encode, mlp

POSE_DIM = 12
DEFORM_FREQS = 4
MAX_DEFORM = 0.1


class TorsoField(nn.Module):
    """RGB [R, 3] and alpha [R] of the torso at image positions, given the head pose and an appearance code."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        layout = make_layout(2, cfg.torso_levels, 2, cfg.log2_hashmap_size, 16, cfg.torso_max_resolution)
        self.grid = HashGrid(layout)
        cond_dim = POSE_DIM + cfg.individual_dim
        self.deform_net = mlp(2 * (1 + 2 * DEFORM_FREQS) + cond_dim, 32, 2)
        nn.init.zeros_(self.deform_net[-1].weight)
        nn.init.zeros_(self.deform_net[-1].bias)
        self.net = mlp(self.grid.out_dim + cond_dim, cfg.hidden_dim, 4)

    def forward(self, uv: torch.Tensor, pose: torch.Tensor, ind: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``uv`` [R, 2] in [0, 1]; ``pose`` [R, 12] / [1, 12] normalised pose; ``ind`` [R, I] / [1, I]."""
        n = uv.shape[0]
        cond = torch.cat([pose.expand(n, -1), ind.expand(n, -1)], dim=-1)
        offset = MAX_DEFORM * torch.tanh(self.deform_net(torch.cat([freq_encode(uv, DEFORM_FREQS), cond], -1)))
        h = self.grid((uv + offset.float()).clamp(0.0, 1.0))
        out = self.net(torch.cat([h, cond.to(h.dtype)], dim=-1)).float()
        return torch.sigmoid(out[:, :3]), torch.sigmoid(out[:, 3])
