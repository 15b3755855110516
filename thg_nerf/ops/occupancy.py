"""Occupancy-grid update: an exponential moving maximum of densities, thresholded into a bool grid.

``density [G^3]`` holds a decayed running density per cell; ``new_density [G^3]`` are fresh estimates
(``-1`` for cells not sampled this round, which then only decay). ``occ = density > threshold``.
"""

from __future__ import annotations

import torch

from thg_nerf.ops import backend


def update_occupancy_torch(density: torch.Tensor, new_density: torch.Tensor, decay: float,
                           threshold: float) -> torch.Tensor:
    """Reference: updates ``density`` in place, returns the bool grid (same shape)."""
    sampled = new_density >= 0
    density.copy_(torch.where(sampled, torch.maximum(density * decay, new_density), density * decay))
    return density > threshold


def _update_occupancy_kernel(kernels, density: torch.Tensor, new_density: torch.Tensor, decay: float,
                             threshold: float) -> torch.Tensor:
    """:func:`update_occupancy` on the kernel module ``kernels``."""
    return kernels.occupancy_update(density, new_density.float().contiguous(), float(decay), float(threshold))


def update_occupancy(density: torch.Tensor, new_density: torch.Tensor, decay: float = 0.95,
                     threshold: float = 0.01) -> torch.Tensor:
    """Update the running density grid in place and return the occupancy bool grid."""
    with torch.no_grad():
        kernels = backend.kernels("update_occupancy", density, new_density)
        if kernels is not None:
            return _update_occupancy_kernel(kernels, density, new_density, decay, threshold)
        return update_occupancy_torch(density, new_density, decay, threshold)
