"""The audio -> motion network: a per-frame audio-window encoder, then causal temporal layers over frames.

Look-ahead is bounded by the audio window alone (half of it: 160 ms for the 16-step mel window): the
temporal layers see only the current and past frames, so a live stream can run the same model with a delay
of half a window.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


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


class CausalConv(nn.Module):
    """1D convolution over frames [B, C, L] that sees only the current and past ``(k - 1) * dilation`` frames."""

    def __init__(self, channels: int, kernel: int, dilation: int) -> None:
        super().__init__()
        self.pad = (kernel - 1) * dilation
        self.conv = nn.Conv1d(channels, channels, kernel, dilation=dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (self.pad, 0), mode="replicate"))


class AudioMotionNet(nn.Module):
    """Audio feature windows [B, L, T, C] of L consecutive frames -> motion codes [B, L, M] (normalised units).

    Args:
        n_steps, channels: ``(T, C)`` of one frame's feature window.
        motion_dim: M.
        hidden: channel width.
        context_frames: past frames the temporal layers see (two causal layers, kernel 5, dilations 1 and
            ``ceil(context / 4) - 1``).
        dropout: dropout between the temporal layers.
        lifter: ``(bands, keep)``: smooth the first ``bands`` input channels (log-mel bands) across frequency
            by keeping ``keep`` cepstral coefficients (``(0, 0)``: off), see :func:`lifter_matrix`.
        ignore_low: the lowest this many input channels (log-mel bands) are held at their mean (0 in
            standardised units) before the lifter (``MotionConfig.min_band_hz``; off by default, see its A/B).
    """

    def __init__(self, n_steps: int, channels: int, motion_dim: int, hidden: int = 64, context_frames: int = 12,
                 dropout: float = 0.15, lifter: tuple[int, int] = (0, 0), ignore_low: int = 0) -> None:
        super().__init__()
        m = lifter_matrix(channels, *lifter)
        m[:ignore_low] = 0.0
        self.register_buffer("lifter", m, persistent=False)
        self.encoder = AudioEncoder(channels, n_steps, hidden, width=hidden)
        dil2 = max(1, math.ceil(context_frames / 4) - 1)
        self.temporal = nn.ModuleList([CausalConv(hidden, 5, 1), CausalConv(hidden, 5, dil2)])
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, motion_dim)

    @property
    def receptive_frames(self) -> int:
        """Past frames (plus the current one) an output depends on."""
        return 1 + sum(layer.pad for layer in self.temporal)

    def encode(self, windows: torch.Tensor) -> torch.Tensor:
        """[B, L, T, C] feature windows -> [B, L, H] per-frame audio codes (each frame on its own)."""
        b, length = windows.shape[:2]
        windows = windows @ self.lifter
        return self.encoder(windows.reshape(b * length, *windows.shape[2:])).reshape(b, length, -1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """[B, L, H] per-frame audio codes -> [B, L, M] motion (the causal temporal layers)."""
        x = self.drop(F.leaky_relu(codes, 0.02)).transpose(1, 2)  # [B, H, L]
        for layer in self.temporal:
            x = x + self.drop(F.leaky_relu(layer(x), 0.02))
        return self.out(x.transpose(1, 2))

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(windows))


class MotionEnsemble(nn.Module):
    """The mean of several :class:`AudioMotionNet` trained alike from different seeds: [B, L, T, C] ->
    [B, L, M]. Averaging cancels much of what one seed fits by chance (``MotionConfig.ensemble``)."""

    def __init__(self, members: list[AudioMotionNet]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    @property
    def receptive_frames(self) -> int:
        """Past frames (plus the current one) an output depends on: the most any member sees."""
        return max(m.receptive_frames for m in self.members)

    def encode(self, windows: torch.Tensor) -> torch.Tensor:
        """[B, L, T, C] -> [B, L, K * H]: each member's per-frame codes, side by side."""
        return torch.cat([m.encode(windows) for m in self.members], dim=-1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """[B, L, K * H] (from :meth:`encode`) -> [B, L, M]: the members' mean motion."""
        parts = codes.split([m.out.in_features for m in self.members], dim=-1)
        return torch.stack([m.decode(c) for m, c in zip(self.members, parts)]).mean(0)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(windows))


def lifter_matrix(channels: int, bands: int, keep: int) -> torch.Tensor:
    """[C, C] map that low-pass filters channels ``0..bands`` across frequency: DCT-II, keep the first ``keep``
    coefficients, inverse DCT. Log-mel rows keep their spectral envelope (formants: what the mouth shapes) and
    lose the harmonic ripple of the voice's pitch (who is speaking). Identity when ``keep`` is 0."""
    m = torch.eye(channels)
    if keep <= 0 or bands <= 0:
        return m
    k = torch.arange(bands, dtype=torch.float64)
    dct = torch.cos(torch.pi / bands * (k[None, :] + 0.5) * k[:, None]) * (2.0 / bands) ** 0.5
    dct[0] /= 2.0**0.5  # orthonormal DCT-II [coefficient, band]
    low = dct[:keep].T @ dct[:keep]  # [band, band] projection on the first `keep` cosines
    m[:bands, :bands] = low.float()
    return m
