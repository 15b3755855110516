"""Camera rays per docs/DATA_FORMAT.md: pixel ``(u, v)`` (v down, pixel centre at +0.5) has the camera-space
direction ``((u + 0.5 - cx) / f, -(v + 0.5 - cy) / f, -1)`` (OpenGL camera), rotated by ``c2w[:3, :3]``,
with origin ``c2w[:3, 3]``. Directions are normalised so ray distances are in world units.
"""

from __future__ import annotations

import torch

from thg_nerf.dataset import Intrinsics


def pixel_rays(c2w: torch.Tensor, u: torch.Tensor, v: torch.Tensor,
               intr: Intrinsics) -> tuple[torch.Tensor, torch.Tensor]:
    """Rays of pixels ``u``, ``v`` [R] (integer or float pixel indices).

    ``c2w`` is one pose [4, 4] or one per ray [R, 4, 4]. Returns ``(origins [R, 3], unit directions [R, 3])``.
    """
    c2w = c2w.to(torch.float32)
    d_cam = torch.stack([(u.float() + 0.5 - intr.cx) / intr.focal, -(v.float() + 0.5 - intr.cy) / intr.focal,
                         -torch.ones_like(u, dtype=torch.float32)], dim=-1)
    if c2w.dim() == 2:
        d = d_cam @ c2w[:3, :3].T
        o = c2w[:3, 3].expand_as(d)
    else:
        d = torch.einsum("rij,rj->ri", c2w[:, :3, :3], d_cam)
        o = c2w[:, :3, 3]
    return o.contiguous(), d / d.norm(dim=-1, keepdim=True)


def image_pixels(w: int, h: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Row-major pixel indices ``(u [H*W], v [H*W])`` (long) of a w x h image."""
    v, u = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    return u.reshape(-1), v.reshape(-1)


def pixel_uv(u: torch.Tensor, v: torch.Tensor, w: int, h: int) -> torch.Tensor:
    """Normalised image-plane coordinates [R, 2] in [0, 1] of pixel centres (for the torso layer)."""
    return torch.stack([(u.float() + 0.5) / w, (v.float() + 0.5) / h], dim=-1)
