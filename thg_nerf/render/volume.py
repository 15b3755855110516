"""Volume rendering of the head field: packed samples for training, compacted alive-ray marching for inference.

Training (:func:`render_head_train`) marches rays through the occupancy grid (``ops.march_rays``), evaluates
densities once without gradients to find where each ray's transmittance falls below ``early_stop``, drops
the samples behind that point, and runs the differentiable field only on the survivors (the dropped samples
would get zero weight anyway, so the result is identical and the backward pass is a fraction of the cost).
Inference (:func:`render_head_inference`) takes ``steps_per_iter`` occupied samples per alive ray per round
(``ops.march_step`` / ``ops.composite_step``) and compacts away finished rays after every round.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from thg_nerf.dataset import Intrinsics
from thg_nerf.fields.head import HeadField
from thg_nerf.fields.model import TalkingHeadModel
from thg_nerf.ops import accumulate, composite, composite_step, march_rays, march_step, ray_aabb_intersect
from thg_nerf.render.config import RenderConfig
from thg_nerf.render.occupancy import OccupancyGrid
from thg_nerf.render.rays import image_pixels, pixel_rays, pixel_uv


@dataclass
class HeadConditions:
    """Per-frame conditions of the head field: ``audio`` [F, A], ``eye`` [F, 1] or None, ``ind`` [F, I]."""

    audio: torch.Tensor
    eye: torch.Tensor | None
    ind: torch.Tensor

    def take(self, frame: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Conditions per sample, for samples of frames ``frame`` [S] (single-frame conditions broadcast)."""
        if self.audio.shape[0] == 1:
            return self.audio, self.eye, self.ind
        return self.audio[frame], None if self.eye is None else self.eye[frame], self.ind[frame]


def segment_exclusive_cumsum(x: torch.Tensor, ray_indices: torch.Tensor, n_rays: int) -> torch.Tensor:
    """Exclusive cumulative sum [S] of packed values ``x`` [S] within each ray (samples sorted by ray)."""
    cs = torch.cumsum(x.double(), 0)
    counts = torch.bincount(ray_indices, minlength=n_rays)
    starts = torch.cumsum(counts, 0) - counts
    base = torch.where(starts > 0, cs[(starts - 1).clamp_min(0)], torch.zeros_like(cs[:1]).expand(n_rays))
    return (cs - x.double() - base[ray_indices]).to(x.dtype)


def render_head_train(field: HeadField, grid: OccupancyGrid, rays_o: torch.Tensor, rays_d: torch.Tensor,
                      ray_frame: torch.Tensor, cond: HeadConditions, step_size: float, max_samples: int,
                      jitter: torch.Tensor | None = None, early_stop: float = 1e-4) -> dict[str, torch.Tensor]:
    """Differentiable head colour of rays [R, 3] whose frames are ``ray_frame`` [R] (indices into ``cond``).

    Returns ``rgb`` [R, 3] (premultiplied), ``acc`` [R] (opacity), ``n_samples`` and ``n_kept`` (0-dim).
    """
    n_rays = rays_o.shape[0]
    t_near, t_far = ray_aabb_intersect(rays_o, rays_d, grid.occupied_aabb())
    s = march_rays(rays_o, rays_d, t_near, t_far, grid.occ, grid.aabb, step_size, max_samples, jitter)
    ri, t0, t1 = s.ray_indices, s.t_starts, s.t_ends
    n_samples = torch.tensor(ri.numel())
    if ri.numel():
        with torch.no_grad():
            pts = rays_o[ri] + rays_d[ri] * ((t0 + t1) * 0.5)[:, None]
            audio, eye, _ = cond.take(ray_frame[ri])
            sigma, _ = field.density(pts, audio, eye)
            excl = segment_exclusive_cumsum(sigma * (t1 - t0), ri, n_rays)
            keep = excl <= -math.log(early_stop)
        ri, t0, t1 = ri[keep], t0[keep], t1[keep]
    if ri.numel() == 0:
        zero = rays_o.sum() * 0.0  # keeps the graph valid for an empty batch
        return {"rgb": torch.zeros(n_rays, 3, device=rays_o.device) + zero, "acc": torch.zeros(n_rays,
                device=rays_o.device) + zero, "n_samples": n_samples, "n_kept": torch.tensor(0)}
    pts = rays_o[ri] + rays_d[ri] * ((t0 + t1) * 0.5)[:, None]
    sigma, rgb = field(pts, *cond.take(ray_frame[ri]))
    w = composite(sigma, t0, t1, ri, n_rays, early_stop)
    return {"rgb": accumulate(w, rgb, ri, n_rays), "acc": accumulate(w, None, ri, n_rays)[:, 0],
            "n_samples": n_samples, "n_kept": torch.tensor(ri.numel())}


@torch.no_grad()
def render_head_inference(field: HeadField, grid: OccupancyGrid, rays_o: torch.Tensor, rays_d: torch.Tensor,
                          cond: HeadConditions, step_size: float, steps_per_iter: int = 8, max_steps: int = 512,
                          early_stop: float = 1e-3) -> dict[str, torch.Tensor]:
    """Head colour of rays [R, 3] for one frame's conditions (``cond`` with F = 1), without gradients.

    Returns ``rgb`` [R, 3] (premultiplied), ``acc`` [R] (opacity) and ``depth`` [R] (weighted, premultiplied).
    """
    n_rays = rays_o.shape[0]
    dev = rays_o.device
    t_near, t_far = ray_aabb_intersect(rays_o, rays_d, grid.occupied_aabb())
    rgb = torch.zeros(n_rays, 3, device=dev)
    depth = torch.zeros(n_rays, device=dev)
    trans = torch.ones(n_rays, device=dev)
    alive = torch.nonzero(t_far > t_near).squeeze(1)
    t, tf = t_near[alive], t_far[alive]
    audio, eye, ind = cond.take(torch.zeros(1, dtype=torch.long, device=dev))
    taken = 0
    while alive.numel() and taken < max_steps:
        o, d = rays_o[alive], rays_d[alive]
        starts, t = march_step(o, d, t, tf, grid.occ, grid.aabb, step_size, steps_per_iter)
        valid = torch.isfinite(starts)
        sig = torch.zeros_like(starts)
        col = torch.zeros(*starts.shape, 3, device=dev)
        if valid.any():
            r, k = valid.nonzero(as_tuple=True)
            pts = o[r] + d[r] * (starts[r, k] + 0.5 * step_size)[:, None]
            s_v, c_v = field(pts, audio, eye, ind)
            sig[r, k] = s_v.to(sig.dtype)
            col[r, k] = c_v.to(col.dtype)
        tr, acc_rgb, acc_d = trans[alive], rgb[alive], depth[alive]
        composite_step(sig, col, starts, step_size, tr, acc_rgb, acc_d, early_stop)
        trans[alive], rgb[alive], depth[alive] = tr, acc_rgb, acc_d
        taken += steps_per_iter
        more = (tr > early_stop) & (t < tf)
        alive, t, tf = alive[more], t[more], tf[more]
    acc = torch.where(trans > early_stop, 1.0 - trans, torch.ones_like(trans))
    return {"rgb": rgb, "acc": acc, "depth": depth}


def frame_uint8(fg: torch.Tensor, alpha: torch.Tensor, bg: torch.Tensor | None) -> np.ndarray:
    """Premultiplied ``fg`` [H, W, 3] + ``alpha`` [H, W] over ``bg`` [H, W, 3] (floats in [0, 1]) -> uint8.

    With ``bg=None`` returns straight-alpha RGBA [H, W, 4] (colour un-premultiplied).
    """
    a = alpha.float().clamp(0.0, 1.0)[..., None]
    fg = fg.float()
    if bg is None:
        rgb = torch.where(a > 1e-4, fg / a.clamp_min(1e-4), torch.zeros_like(fg))
        img = torch.cat([rgb, a], dim=-1)
    else:
        img = fg + (1.0 - a) * bg
    return (img.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).cpu().numpy()


def composite_layers(head_rgb: torch.Tensor, head_acc: torch.Tensor, torso_rgb: torch.Tensor | None,
                     torso_alpha: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Head over torso: premultiplied colour [R, 3] and alpha [R]; the caller adds ``(1 - alpha) * bg``."""
    if torso_rgb is None or torso_alpha is None:
        return head_rgb, head_acc
    fg = head_rgb + (1.0 - head_acc)[:, None] * torso_rgb * torso_alpha[:, None]
    return fg, head_acc + (1.0 - head_acc) * torso_alpha


CPU_CHUNK_RAYS = 8192


@torch.no_grad()
def render_image(model: TalkingHeadModel, c2w: np.ndarray, intr: Intrinsics, cond: np.ndarray | torch.Tensor,
                 index: int, eye: float, rcfg: RenderConfig, device: torch.device,
                 codes: tuple[torch.Tensor, torch.Tensor | None] | None = None,
                 pixels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Render a frame: ``{"fg": [H, W, 3] premultiplied, "alpha": [H, W]}`` on ``device``.

    ``cond`` is the per-frame condition source (``[n, M]`` motion or ``[n, T, C]`` audio, see
    ``TalkingHeadModel.cond_codes``) with frame ``index``; ``codes`` are the appearance codes (default: the means).
    ``pixels``: render only these row-major pixel indices ``v * W + u`` [P] (long) of the frame; the result is
    then ``{"fg": [P, 3], "alpha": [P]}`` (a region costs in proportion to its pixels).
    """
    w, h = intr.w, intr.h
    pose = torch.from_numpy(np.asarray(c2w, dtype=np.float32)).to(device)
    audio = model.cond_codes(cond, torch.tensor([int(index)]))
    ind_head, ind_torso = codes if codes is not None else model.mean_codes()
    eye_t = torch.tensor([[float(eye)]], device=device) if model.cfg.use_eye else None
    cond = HeadConditions(audio, eye_t, ind_head)
    pose_code = model.pose_codes(pose[None])
    if pixels is None:
        u, v = image_pixels(w, h, device)
    else:
        flat = torch.as_tensor(pixels, dtype=torch.long, device=device).reshape(-1)
        u, v = flat % w, torch.div(flat, w, rounding_mode="floor")
    chunk = rcfg.chunk_rays if device.type == "cuda" else min(rcfg.chunk_rays, CPU_CHUNK_RAYS)
    fgs, alphas = [], []
    for i in range(0, u.numel(), chunk):
        uc, vc = u[i:i + chunk], v[i:i + chunk]
        o, d = pixel_rays(pose, uc, vc, intr)
        head = render_head_inference(model.head, model.occupancy, o, d, cond, model.step_size, rcfg.steps_per_iter,
                                     rcfg.max_steps, rcfg.early_stop_transmittance)
        t_rgb = t_alpha = None
        if model.torso is not None and ind_torso is not None:
            t_rgb, t_alpha = model.torso(pixel_uv(uc, vc, w, h), pose_code, ind_torso)
        fg, alpha = composite_layers(head["rgb"], head["acc"], t_rgb, t_alpha)
        fgs.append(fg)
        alphas.append(alpha)
    fg = torch.cat(fgs).clamp(0, 1) if fgs else torch.zeros(0, 3, device=device)
    alpha = torch.cat(alphas).clamp(0, 1) if alphas else torch.zeros(0, device=device)
    if pixels is not None:
        return {"fg": fg, "alpha": alpha}
    return {"fg": fg.reshape(h, w, 3), "alpha": alpha.reshape(h, w)}
