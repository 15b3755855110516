"""The audio-conditioned head field in canonical head space (ER-NeRF style).

A point ``x`` in the cube ``[-bound, bound]^3`` is encoded by a tri-plane (or 3D) hash grid into ``h``.
Region-aware attention gates the frame's audio code channel-wise by ``sigmoid(W_a h)`` (so lips react to
audio and the forehead doesn't) and the eye-blink signal by ``sigmoid(w_e . h)``. A density MLP maps
``[h, gated audio, gated eye]`` to a density (truncated exp) and geometry features; a colour MLP maps
``[geometry, per-frame appearance code]`` to RGB. Colour is view-independent: the camera barely moves
relative to the head in a talking-head clip, and dropping view directions saves work and overfitting.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from thg_nerf.fields.config import ModelConfig
from thg_nerf.fields.encoding import Grid3DEncoding, TriPlaneEncoding, make_layout
from thg_nerf.fields.mlp import mlp, trunc_exp


class HeadField(nn.Module):
    """Density and colour of the head at points, given per-point audio code, eye signal and appearance code."""

    def __init__(self, cfg: ModelConfig, bound: float) -> None:
        super().__init__()
        if cfg.encoding not in ("triplane", "grid3d"):
            from thg_nerf.errors import ThgError

            raise ThgError(f"config: model.encoding must be 'triplane' or 'grid3d', got '{cfg.encoding}'")
        self.bound = float(bound)
        self.use_eye = cfg.use_eye
        dim = 2 if cfg.encoding == "triplane" else 3
        layout = make_layout(dim, cfg.num_levels, cfg.level_dim, cfg.log2_hashmap_size, cfg.base_resolution,
                             cfg.max_resolution)
        self.encoder = TriPlaneEncoding(layout) if dim == 2 else Grid3DEncoding(layout)
        h_dim = self.encoder.out_dim
        self.audio_gate = nn.Linear(h_dim, cfg.audio_dim)
        self.eye_gate = nn.Linear(h_dim, 1) if cfg.use_eye else None
        self.sigma_net = mlp(h_dim + cfg.audio_dim + int(cfg.use_eye), cfg.hidden_dim, 1 + cfg.geo_dim)
        self.color_net = mlp(cfg.geo_dim + cfg.individual_dim, cfg.hidden_dim, 3)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """World points [N, 3] -> [0, 1]^3 box coordinates."""
        return (x + self.bound) / (2.0 * self.bound)

    def density(self, x: torch.Tensor, audio: torch.Tensor,
                eye: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Density [N] and geometry features [N, G] at world points ``x`` [N, 3].

        ``audio`` [N, A] (or broadcastable [1, A]) and ``eye`` [N, 1] (or [1, 1]) are the conditions.
        """
        h = self.encoder(self.normalize(x))
        parts = [h, audio * torch.sigmoid(self.audio_gate(h))]
        if self.eye_gate is not None:
            e = eye if eye is not None else torch.zeros(1, 1, device=x.device)
            parts.append(e * torch.sigmoid(self.eye_gate(h)))
        cond = [p.expand(h.shape[0], -1) if p.shape[0] != h.shape[0] else p for p in parts]
        out = self.sigma_net(torch.cat(cond, dim=-1))
        return trunc_exp(out[:, 0].float()), out[:, 1:]

    def forward(self, x: torch.Tensor, audio: torch.Tensor, eye: torch.Tensor | None,
                ind: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Density [N] and RGB [N, 3] in [0, 1]; ``ind`` [N, I] (or [1, I]) is the appearance code."""
        sigma, geo = self.density(x, audio, eye)
        ind = ind.expand(geo.shape[0], -1) if ind.shape[0] != geo.shape[0] else ind
        rgb = torch.sigmoid(self.color_net(torch.cat([geo, ind.to(geo.dtype)], dim=-1)).float())
        return sigma, rgb

    def point_cache(self, x: torch.Tensor) -> PointCache:
        """The condition-independent terms at world points ``x`` [N, 3] (for :meth:`forward_cached`)."""
        first = self.sigma_net[0]
        n_gates = self.audio_gate.out_features + int(self.eye_gate is not None)
        if x.shape[0] == 0:
            return PointCache(torch.zeros(0, first.out_features, device=x.device),
                              torch.zeros(0, n_gates, device=x.device))
        h = self.encoder(self.normalize(x))
        pre = torch.nn.functional.linear(h, first.weight[:, :h.shape[1]], first.bias)
        gates = [self.audio_gate(h)] + ([self.eye_gate(h)] if self.eye_gate is not None else [])
        return PointCache(pre, torch.sigmoid(torch.cat(gates, dim=1)))

    def forward_cached(self, cache: PointCache, audio: torch.Tensor, eye: torch.Tensor | None,
                       ind: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`forward` at the points of ``cache`` for one frame's ``audio`` [1, A], ``eye`` [1, 1] and
        ``ind`` [1, I]: density [N] and RGB [N, 3]; only the condition-dependent layers run.

        The frame's conditions are folded into the weights: into the first density layer (one multiply-add
        with the cached gates) and, since the geometry features enter the colour network without an
        activation, the density output layer and the first colour layer become one layer. Callers with many
        points pass them in cache-sized chunks (``PointCache.chunk``).
        """
        first, last = self.sigma_net[0], self.sigma_net[-1]
        cond = audio if self.eye_gate is None else torch.cat(
            [audio, eye if eye is not None else torch.zeros(1, 1, device=audio.device)], dim=1)
        h_dim = first.weight.shape[1] - cond.shape[1]
        pre = torch.addmm(cache.pre, cache.gate, (first.weight[:, h_dim:] * cond.to(first.weight.dtype)).T)
        hidden = self.sigma_net[1:-1](pre)
        col_first = self.color_net[0]
        g_dim = last.out_features - 1
        w_geo = col_first.weight[:, :g_dim]  # [C, G]
        bias_col = torch.nn.functional.linear(ind.to(w_geo.dtype), col_first.weight[:, g_dim:], col_first.bias)
        weight = torch.cat([last.weight[:1], w_geo @ last.weight[1:]])  # [1 + C, H]
        bias = torch.cat([last.bias[:1], w_geo @ last.bias[1:] + bias_col[0]])
        out = torch.nn.functional.linear(hidden, weight, bias)
        rgb = torch.sigmoid(self.color_net[1:](out[:, 1:]).float())
        return trunc_exp(out[:, 0].float()), rgb


@dataclass
class PointCache:
    """Condition-independent terms of :class:`HeadField` at fixed points (the samples of a static camera):
    ``pre`` [N, H] the point's share of the first density layer, ``gate`` [N, A (+1)] its audio (and eye)
    gates."""

    pre: torch.Tensor
    gate: torch.Tensor

    def __len__(self) -> int:
        return int(self.pre.shape[0])

    def chunk(self, start: int, stop: int) -> PointCache:
        """Rows ``start:stop`` of every term (views, no copy)."""
        return PointCache(self.pre[start:stop], self.gate[start:stop])

    def take(self, idx: torch.Tensor) -> PointCache:
        """The rows ``idx`` [K] of every term."""
        return PointCache(self.pre[idx], self.gate[idx])
