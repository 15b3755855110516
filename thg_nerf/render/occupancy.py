"""Occupancy grid over the head cube: which cells can hold density, so ray marching skips empty space.

The grid keeps a running density per cell (:func:`thg_nerf.ops.update_occupancy`: decayed moving maximum).
Each update evaluates the field at one random point per cell under *random* audio/eye conditions supplied
by the caller, so the running maximum covers every mouth shape seen in training and an open mouth is
never culled. Values are optical thickness per marching step (``sigma * step``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from thg_nerf.dataset import Intrinsics
from thg_nerf.ops import update_occupancy


class OccupancyGrid(nn.Module):
    """A ``G^3`` occupancy grid over the cube ``[-bound, bound]^3`` (buffers are saved with the model)."""

    def __init__(self, resolution: int, bound: float) -> None:
        super().__init__()
        self.resolution = int(resolution)
        g = self.resolution
        self.register_buffer("aabb", torch.tensor([-bound] * 3 + [bound] * 3, dtype=torch.float32))
        self.register_buffer("density", torch.zeros(g**3))
        self.register_buffer("occ", torch.ones(g, g, g, dtype=torch.bool))
        self.register_buffer("visible", torch.ones(g, g, g, dtype=torch.bool))

    def cell_centres(self) -> torch.Tensor:
        """Centres [G^3, 3] of the cells, ix-major (the order of ``density``)."""
        g = self.resolution
        ar = torch.arange(g, device=self.aabb.device)
        cells = torch.stack(torch.meshgrid(ar, ar, ar, indexing="ij"), -1).reshape(-1, 3).float()
        lo, hi = self.aabb[:3], self.aabb[3:]
        return lo + (cells + 0.5) / g * (hi - lo)

    @torch.no_grad()
    def mark_visible(self, c2w: torch.Tensor, intr: Intrinsics, max_cameras: int = 64) -> None:
        """Keep only cells seen by at least one training camera ``c2w`` [N, 4, 4] (others stay empty forever).

        Cells outside every training frustum get no gradient, so whatever density they start with would
        otherwise survive as floaters that appear in novel views. A cell counts as seen when its centre
        projects inside the image grown by the cell's projected half-diagonal.
        """
        pts = self.cell_centres()
        half_diag = float((self.aabb[3:] - self.aabb[:3]).norm()) / self.resolution / 2
        step = max(1, len(c2w) // max_cameras)
        seen = torch.zeros(pts.shape[0], dtype=torch.bool, device=pts.device)
        for pose in c2w[::step].to(pts):
            cam = (pts - pose[:3, 3]) @ pose[:3, :3]  # OpenGL camera coordinates
            depth = -cam[:, 2]
            ok = depth > 1e-3
            d = depth.clamp_min(1e-3)
            u = intr.cx + intr.focal * cam[:, 0] / d
            v = intr.cy - intr.focal * cam[:, 1] / d
            m = intr.focal * half_diag / d
            seen |= ok & (u > -m) & (u < intr.w + m) & (v > -m) & (v < intr.h + m)
        self.visible.copy_(seen.view_as(self.visible))
        self.occ &= self.visible
        self.density.masked_fill_(~seen, 0.0)

    def occupied_aabb(self) -> torch.Tensor:
        """Bounding box [6] of the occupied cells (rays outside it need no samples); the full box if none."""
        idx = self.occ.nonzero()
        if idx.numel() == 0:
            return self.aabb
        lo, hi = self.aabb[:3], self.aabb[3:]
        cell = (hi - lo) / self.resolution
        return torch.cat([lo + idx.amin(0) * cell, lo + (idx.amax(0) + 1) * cell])

    @property
    def occupied_fraction(self) -> float:
        return float(self.occ.float().mean())

    @torch.no_grad()
    def update(self, density_fn: Callable[[torch.Tensor], torch.Tensor], step_size: float,
               generator: torch.Generator | None = None, decay: float = 0.95, threshold: float = 0.01,
               chunk: int = 1 << 18) -> None:
        """Evaluate ``density_fn`` (points [N, 3] -> densities [N]) at one random point per cell and update."""
        g = self.resolution
        lo, hi = self.aabb[:3], self.aabb[3:]
        u = torch.rand(g**3, 3, generator=generator, device=self.density.device)
        pts = self.cell_centres() + (u - 0.5) / g * (hi - lo)
        new = torch.cat([density_fn(pts[i:i + chunk]).float() for i in range(0, pts.shape[0], chunk)])
        new = (new * step_size).clamp_min(0.0)
        occ = update_occupancy(self.density, new, decay=decay, threshold=threshold)
        self.occ.copy_(occ.view(g, g, g) & self.visible)
