"""Static-camera fast path: re-render only the pixels whose colour depends on the motion code or the eyes.

With a fixed camera, everything but the head field's condition (motion code, eye signal) is the same in
every frame: the rays, their samples through the occupancy grid, the hash-grid encoding at those samples, the
torso layer. :class:`StaticFrameRenderer` finds, once, the pixels that any condition can change, by rendering
the view under the base condition and under probe conditions (random motion codes at ``+-amplitude`` training
standard deviations, the open and closed eye levels) and keeping the pixels that move, grown by a margin. Their
samples' condition-independent terms are cached (``HeadField.point_cache``); per frame only the
condition-dependent layers run on those samples, and the other pixels come from the base frame.

The result equals a full :func:`~thg_nerf.render.volume.render_image` within rounding inside the region and
within ``threshold`` outside it (measured PSNR against full renders: docs/BENCHMARKS.md, section Serve), and
costs in proportion to the region's samples. Samples are taken without early termination; compositing then
drops the samples behind the early-stop transmittance exactly like the inference renderer does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from thg_nerf.dataset import Intrinsics
from thg_nerf.fields.head import PointCache
from thg_nerf.fields.model import TalkingHeadModel
from thg_nerf.log import get_logger, progress
from thg_nerf.ops import accumulate, composite, march_rays, ray_aabb_intersect
from thg_nerf.render.config import FastPathConfig, RenderConfig
from thg_nerf.render.rays import image_pixels, pixel_rays, pixel_uv
from thg_nerf.render.volume import composite_layers

log = get_logger(__name__)

BUILD_CHUNK_RAYS = 4096
#: Samples shaded per call of the field's cached forward: small enough that the per-sample intermediates of
#: the tiny MLPs stay in the CPU cache (docs/BENCHMARKS.md, Serve).
SHADE_CHUNK = 65536


@dataclass
class _Samples:
    """Packed samples of a set of rays: ``ray`` [S] (sorted), ``slot`` [S] (position on its ray), ``t0`` [S]
    (start distance) and their cached field terms."""

    ray: torch.Tensor
    slot: torch.Tensor
    t0: torch.Tensor
    cache: PointCache
    n_rays: int

    def keep(self, mask: torch.Tensor) -> _Samples:
        """The samples where ``mask`` [S] is True."""
        idx = torch.nonzero(mask).squeeze(1)
        return _Samples(self.ray[idx], self.slot[idx], self.t0[idx], self.cache.take(idx), self.n_rays)


@dataclass
class FastPathInfo:
    """What the fast path re-renders: sizes and the build time."""

    pixels: int
    """Pixels in the frame."""
    region: int
    """Pixels re-rendered per frame."""
    samples: int
    """Field samples evaluated per frame."""
    build_s: float

    @property
    def fraction(self) -> float:
        return self.region / max(self.pixels, 1)


class StaticFrameRenderer:
    """Frames of one fixed camera for any per-frame condition (see the module docstring).

    Args:
        model: a motion-conditioned :class:`TalkingHeadModel` (eval mode).
        c2w: the camera [4, 4]; ``intr``: its intrinsics at the output size.
        rcfg: inference settings (``max_steps``, ``early_stop_transmittance``).
        cfg: probe and region settings.
        eye_levels: eye values to probe (e.g. the run's open and closed levels).
    """

    def __init__(self, model: TalkingHeadModel, c2w: np.ndarray, intr: Intrinsics, rcfg: RenderConfig,
                 device: torch.device, cfg: FastPathConfig | None = None,
                 eye_levels: tuple[float, ...] = (0.0, 1.0)) -> None:
        t_start = time.perf_counter()
        self.model, self.intr, self.rcfg, self.device = model, intr, rcfg, device
        self.cfg = cfg or FastPathConfig()
        self.pose = torch.from_numpy(np.asarray(c2w, dtype=np.float32)).to(device)
        self.ind_head, self.ind_torso = model.mean_codes()
        self.pose_code = model.pose_codes(self.pose[None])
        mean = model.motion_mean
        self.base_motion = mean.detach().cpu().numpy().astype(np.float32)
        self.base_eye = float(eye_levels[0])
        probes = self._probe_conditions(np.asarray(eye_levels, np.float32))
        with torch.no_grad():
            base, diff = self._scan(probes)
            self.base_fg, self.base_alpha = base
            region = self._region(diff)
            self.pixels = torch.from_numpy(region).to(device)
            samples, self._torso = self._march(self.pixels)
            self._samples = self._prune(samples, probes)
        self.info = FastPathInfo(intr.w * intr.h, int(region.size), int(self._samples.ray.numel()),
                                 time.perf_counter() - t_start)
        log.info("fast path: %d of %d pixels (%.1f %%) re-rendered per frame, %d samples; built in %.1f s",
                 self.info.region, self.info.pixels, 100 * self.info.fraction, self.info.samples, self.info.build_s)

    # ------------------------------------------------------------ per frame

    @torch.no_grad()
    def render_region(self, motion: np.ndarray, eye: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Premultiplied colour [P, 3] and alpha [P] of the region's pixels (``self.pixels``) for one frame's
        motion code [M] and eye value."""
        return self._shade(self._samples, self._torso, self._code(motion), float(eye))

    def render(self, motion: np.ndarray, eye: float) -> dict[str, torch.Tensor]:
        """The whole frame ``{"fg": [H, W, 3], "alpha": [H, W]}`` (as ``render_image`` returns it)."""
        fg_p, a_p = self.render_region(motion, eye)
        fg, alpha = self.base_fg.clone(), self.base_alpha.clone()
        fg.view(-1, 3)[self.pixels] = fg_p
        alpha.view(-1)[self.pixels] = a_p
        return {"fg": fg, "alpha": alpha}

    # ------------------------------------------------------------ building

    def _probe_conditions(self, eye_levels: np.ndarray) -> list[tuple[np.ndarray, float]]:
        """(motion code [M], eye) pairs: the base first, then the probes."""
        rng = np.random.default_rng(self.cfg.seed)
        std = self.model.motion_std.detach().cpu().numpy().astype(np.float32)
        out = [(self.base_motion, self.base_eye)]
        for _ in range(self.cfg.probes):
            direction = rng.choice([-1.0, 1.0], size=std.shape).astype(np.float32) * std * self.cfg.amplitude
            out += [(self.base_motion + direction, self.base_eye), (self.base_motion - direction, self.base_eye)]
        out += [(self.base_motion, float(e)) for e in eye_levels[1:]]
        return out

    def _rays(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Rays (origins, directions) and torso uv of row-major pixel indices [R]."""
        u, v = pixels % self.intr.w, torch.div(pixels, self.intr.w, rounding_mode="floor")
        o, d = pixel_rays(self.pose, u, v, self.intr)
        return o, d, pixel_uv(u, v, self.intr.w, self.intr.h)

    def _march(self, pixels: torch.Tensor) -> tuple[_Samples, tuple[torch.Tensor, torch.Tensor] | None]:
        """Samples (with cached field terms) and the static torso layer of pixels [R]."""
        m = self.model
        o, d, uv = self._rays(pixels)
        t_near, t_far = ray_aabb_intersect(o, d, m.occupancy.occupied_aabb())
        s = march_rays(o, d, t_near, t_far, m.occupancy.occ, m.occupancy.aabb, m.step_size, self.rcfg.max_steps)
        ray = s.ray_indices
        counts = torch.bincount(ray, minlength=len(pixels))
        slot = torch.arange(ray.numel(), device=ray.device) - (torch.cumsum(counts, 0) - counts)[ray]
        pts = o[ray] + d[ray] * (s.t_starts + 0.5 * m.step_size)[:, None]
        samples = _Samples(ray, slot, s.t_starts, m.head.point_cache(pts), len(pixels))
        torso = None
        if m.torso is not None and self.ind_torso is not None:
            torso = m.torso(uv, self.pose_code, self.ind_torso)
        return samples, torso

    def _shade(self, s: _Samples, torso: tuple[torch.Tensor, torch.Tensor] | None, code: torch.Tensor,
               eye: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Colour [R, 3] and alpha [R] of a ray set under one condition (compositing as the inference renderer)."""
        _, _, head_rgb, trans = self._composite(s, code, eye)
        early = self.rcfg.early_stop_transmittance
        head_acc = torch.where(trans > early, 1.0 - trans, torch.ones_like(trans))
        fg, alpha = composite_layers(head_rgb, head_acc, *(torso if torso is not None else (None, None)))
        return fg.clamp(0, 1), alpha.clamp(0, 1)

    def _composite(self, s: _Samples, code: torch.Tensor, eye: float
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Densities [S] and compositing weights [S] of the samples, composited colour [R, 3] and final
        transmittance [R]."""
        m = self.model
        eye_t = torch.tensor([[eye]], device=self.device) if m.cfg.use_eye else None
        sigma, rgb = self._field(s.cache, code, eye_t)
        w = composite(sigma, s.t0, s.t0 + m.step_size, s.ray, s.n_rays, self.rcfg.early_stop_transmittance)
        tau = torch.zeros(s.n_rays, device=self.device).index_add_(0, s.ray, sigma * m.step_size)
        return sigma, w, accumulate(w, rgb, s.ray, s.n_rays), torch.exp(-tau)

    def _field(self, cache: PointCache, code: torch.Tensor, eye: torch.Tensor | None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Density [S] and RGB [S, 3] of cached samples, shaded in chunks of :data:`SHADE_CHUNK` on a CPU."""
        head, n = self.model.head, len(cache)
        if self.device.type != "cpu" or n <= SHADE_CHUNK:
            return head.forward_cached(cache, code, eye, self.ind_head)
        sigma = torch.empty(n, device=self.device)
        rgb = torch.empty(n, 3, device=self.device)
        for a in range(0, n, SHADE_CHUNK):
            sigma[a:a + SHADE_CHUNK], rgb[a:a + SHADE_CHUNK] = head.forward_cached(
                cache.chunk(a, a + SHADE_CHUNK), code, eye, self.ind_head)
        return sigma, rgb

    def _prune(self, s: _Samples, conditions: list[tuple[np.ndarray, float]]) -> _Samples:
        """Drop the samples more than ``cfg.margin`` behind the last one that any condition composites, and
        those in front of it whose compositing weight stays below ``cfg.min_weight`` under every condition."""
        early = self.rcfg.early_stop_transmittance
        last = torch.full((s.n_rays,), -1, dtype=torch.long, device=self.device)
        heaviest = torch.zeros(s.ray.numel(), device=self.device)
        counts = torch.bincount(s.ray, minlength=s.n_rays)
        starts = torch.cumsum(counts, 0) - counts
        for motion, eye in conditions:
            sigma, weight, _, _ = self._composite(s, self._code(motion), eye)
            tau = (sigma * self.model.step_size).double()
            cs = torch.cumsum(tau, 0)
            base = torch.where(starts > 0, cs[(starts - 1).clamp_min(0)], torch.zeros_like(cs[:1]).expand(s.n_rays))
            trans = torch.exp(-(cs - tau - base[s.ray]))  # transmittance in front of each sample
            live = trans >= early
            last = last.scatter_reduce(0, s.ray, torch.where(live, s.slot, -1), "amax")
            heaviest = torch.maximum(heaviest, weight)
        behind = s.slot > last[s.ray]
        return s.keep((s.slot <= last[s.ray] + self.cfg.margin) & (behind | (heaviest >= self.cfg.min_weight)))

    def _code(self, motion: np.ndarray) -> torch.Tensor:
        """The head field's condition code [1, A] of one motion code [M]."""
        return self.model.cond_codes(np.asarray(motion, np.float32)[None], torch.zeros(1, dtype=torch.long))

    def _scan(self, conditions: list[tuple[np.ndarray, float]]) -> tuple[tuple[torch.Tensor, torch.Tensor], np.ndarray]:
        """Base frame (fg [H, W, 3], alpha [H, W]) and each pixel's largest change [H * W] under the probes."""
        w, h = self.intr.w, self.intr.h
        codes = [self._code(c) for c, _ in conditions]
        u, v = image_pixels(w, h, self.device)
        flat = v * w + u
        fgs, alphas, diffs = [], [], []
        chunks = range(0, flat.numel(), BUILD_CHUNK_RAYS)
        for a in progress(chunks, desc="fast path", unit="chunk"):
            samples, torso = self._march(flat[a:a + BUILD_CHUNK_RAYS])
            base_fg, base_a = self._shade(samples, torso, codes[0], conditions[0][1])
            diff = torch.zeros_like(base_a)
            for code, (_, eye) in zip(codes[1:], conditions[1:]):
                fg, al = self._shade(samples, torso, code, eye)
                diff = torch.maximum(diff, torch.maximum((fg - base_fg).abs().amax(1), (al - base_a).abs()))
            fgs.append(base_fg)
            alphas.append(base_a)
            diffs.append(diff)
        fg = torch.cat(fgs).reshape(h, w, 3)
        alpha = torch.cat(alphas).reshape(h, w)
        return (fg, alpha), torch.cat(diffs).cpu().numpy()

    def _region(self, diff: np.ndarray) -> np.ndarray:
        """Row-major indices [P] (int64) of the pixels to re-render: changed ones, dilated."""
        from scipy.ndimage import binary_dilation

        mask = (diff * 255.0 > self.cfg.threshold).reshape(self.intr.h, self.intr.w)
        if self.cfg.dilate > 0 and mask.any():
            r = int(self.cfg.dilate)
            yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
            mask = binary_dilation(mask, structure=(yy ** 2 + xx ** 2) <= r * r + 0.5)
        return np.flatnonzero(mask).astype(np.int64)
