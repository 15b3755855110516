"""Trainable hash-grid encodings on top of :func:`thg_nerf.ops.hash_encode`."""

from __future__ import annotations

import torch
from torch import nn

from thg_nerf.ops import HashGridLayout, hash_encode


class HashGrid(nn.Module):
    """A multiresolution hash grid over [0, 1]^D with its own embedding table."""

    def __init__(self, layout: HashGridLayout, init_scale: float = 1e-4) -> None:
        super().__init__()
        self.layout = layout
        self.embeddings = nn.Parameter(torch.empty(layout.n_params, layout.level_dim).uniform_(-init_scale,
                                                                                                init_scale))
        offsets, resolutions = layout.tensors(torch.device("cpu"))
        self.register_buffer("offsets", offsets, persistent=False)
        self.register_buffer("resolutions", resolutions, persistent=False)

    @property
    def out_dim(self) -> int:
        return self.layout.out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[N, D] points in [0, 1]^D -> [N, L * F] features."""
        return hash_encode(x, self.embeddings, self.offsets, self.resolutions)


def make_layout(dim: int, num_levels: int, level_dim: int, log2_hashmap_size: int, base_resolution: int,
                max_resolution: int) -> HashGridLayout:
    """A layout whose finest level is at least the base level."""
    return HashGridLayout(dim=dim, num_levels=num_levels, level_dim=level_dim, log2_hashmap_size=log2_hashmap_size,
                          base_resolution=base_resolution, max_resolution=max(max_resolution, base_resolution))


class TriPlaneEncoding(nn.Module):
    """Three 2D hash grids on the xy, yz and xz planes, features concatenated (ER-NeRF)."""

    PLANES = ((0, 1), (1, 2), (0, 2))

    def __init__(self, layout: HashGridLayout) -> None:
        super().__init__()
        self.grids = nn.ModuleList(HashGrid(layout) for _ in self.PLANES)

    @property
    def out_dim(self) -> int:
        return 3 * self.grids[0].out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[N, 3] points in [0, 1]^3 -> [N, 3 * L * F]."""
        return torch.cat([g(x[:, list(p)]) for g, p in zip(self.grids, self.PLANES)], dim=-1)


class Grid3DEncoding(nn.Module):
    """One 3D hash grid."""

    def __init__(self, layout: HashGridLayout) -> None:
        super().__init__()
        self.grid = HashGrid(layout)

    @property
    def out_dim(self) -> int:
        return self.grid.out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[N, 3] points in [0, 1]^3 -> [N, L * F]."""
        return self.grid(x)
