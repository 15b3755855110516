"""The full talking-head model: condition encoder, head field, torso layer, codes, occupancy grid.

The head field is driven by one condition vector per frame, computed from a per-frame *source* array:

- ``condition: motion``: the source is the motion code ``[n, M]`` of each frame (tracked during training,
  predicted from audio by ``thg_nerf.motion`` at render time), normalised and mapped by a small MLP;
- ``condition: audio``: the source is the audio feature windows ``[n, T, C]``; an encoder and temporal
  attention over neighbouring frames learn the conditioning implicitly from pixels.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from thg_nerf.errors import ThgError
from thg_nerf.fields.audio import AudioAttention, AudioEncoder, window_indices
from thg_nerf.fields.config import ModelConfig
from thg_nerf.fields.head import HeadField
from thg_nerf.fields.mlp import mlp
from thg_nerf.fields.torso import POSE_DIM, TorsoField
from thg_nerf.render.occupancy import OccupancyGrid

POSE_CLAMP = 3.0


class TalkingHeadModel(nn.Module):
    """Everything a run learns. Buffers hold the audio/pose normalisation and the occupancy grid.

    Args:
        cfg: architecture.
        bound: half-size of the head cube (dataset units).
        audio_shape: ``(T, C)`` of one frame's audio feature window.
        n_train: number of training frames (one appearance code each).
        motion_dim: size M of the motion code (``condition: motion``).
    """

    def __init__(self, cfg: ModelConfig, bound: float, audio_shape: tuple[int, int], n_train: int,
                 motion_dim: int = 0) -> None:
        super().__init__()
        self.cfg = cfg
        self.bound = float(bound)
        n_steps, channels = int(audio_shape[0]), int(audio_shape[1])
        self.audio_shape = (n_steps, channels)
        self.n_train = int(n_train)
        self.window = max(1, int(cfg.audio_att_window))
        if cfg.condition == "motion":
            if motion_dim <= 0:
                raise ThgError("model.condition is 'motion' but the dataset has no motion targets")
            self.cond_shape: tuple[int, ...] = (int(motion_dim),)
            self.motion_encoder = mlp(int(motion_dim), cfg.motion_hidden, cfg.audio_dim)
            self.motion_gain = 1.0
            """Motion codes are scaled about the training mean by this before the field sees them: the run's
            calibrated mouth gain at render time (``thg_nerf.train.calibrate``), 1 while training."""
            self.register_buffer("motion_mean", torch.zeros(motion_dim))
            self.register_buffer("motion_std", torch.ones(motion_dim))
        elif cfg.condition == "audio":
            self.cond_shape = self.audio_shape
            self.audio_encoder = AudioEncoder(channels, n_steps, cfg.audio_dim)
            self.audio_att = AudioAttention(cfg.audio_dim, self.window) if self.window > 1 else None
            self.register_buffer("audio_mean", torch.zeros(channels))
            self.register_buffer("audio_std", torch.ones(channels))
        else:
            raise ThgError(f"config: model.condition must be 'motion' or 'audio', got '{cfg.condition}'")
        self.head = HeadField(cfg, bound)
        self.torso = TorsoField(cfg) if cfg.use_torso else None
        self.ind_head = nn.Parameter(0.1 * torch.randn(n_train, cfg.individual_dim))
        self.ind_torso = nn.Parameter(0.1 * torch.randn(n_train, cfg.individual_dim)) if cfg.use_torso else None
        self.register_buffer("pose_mean", torch.zeros(POSE_DIM))
        self.register_buffer("pose_std", torch.ones(POSE_DIM))
        self.occupancy = OccupancyGrid(cfg.occupancy_resolution, bound)

    @property
    def step_size(self) -> float:
        """Ray-marching step in world units."""
        return 2.0 * self.bound / self.cfg.march_steps

    @property
    def conditioned_on_motion(self) -> bool:
        return self.cfg.condition == "motion"

    def set_normalization(self, source: np.ndarray, train_c2w: np.ndarray) -> None:
        """Per-channel stats of the condition source of the training frames (``[n, T, C]`` audio windows or
        ``[n, M]`` motion codes) and pose stats from ``train_c2w`` [N, 4, 4]."""
        a = np.asarray(source, dtype=np.float32).reshape(-1, self.cond_shape[-1])
        p = np.asarray(train_c2w, dtype=np.float32)[:, :3, :4].reshape(len(train_c2w), -1)
        mean, std = (self.motion_mean, self.motion_std) if self.conditioned_on_motion else (self.audio_mean,
                                                                                             self.audio_std)
        mean.copy_(torch.from_numpy(a.mean(0)))
        std.copy_(torch.from_numpy(a.std(0) + 1e-3))
        self.pose_mean.copy_(torch.from_numpy(p.mean(0)))
        self.pose_std.copy_(torch.from_numpy(p.std(0) + 1e-3))

    def grid_parameters(self) -> list[nn.Parameter]:
        """Hash-grid tables (optimised with their own learning rate)."""
        return [p for n, p in self.named_parameters() if n.endswith("embeddings")]

    def code_parameters(self) -> list[nn.Parameter]:
        return [p for p in (self.ind_head, self.ind_torso) if p is not None]

    def net_parameters(self) -> list[nn.Parameter]:
        skip = {id(p) for p in self.grid_parameters() + self.code_parameters()}
        return [p for p in self.parameters() if id(p) not in skip]

    def cond_codes(self, source: np.ndarray | torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
        """Condition vectors [B, A] of frames ``centres`` [B] (long) of the per-frame ``source`` array
        (``[n, M]`` motion codes or ``[n, T, C]`` audio windows, see the module docstring)."""
        if self.conditioned_on_motion:
            dev = self.motion_mean.device
            idx = centres.to("cpu").long()
            if isinstance(source, torch.Tensor):
                rows = source[idx.to(source.device)].to(dev, torch.float32)
            else:
                rows = torch.from_numpy(np.asarray(source[idx.numpy()], dtype=np.float32)).to(dev)
            return self.motion_encoder(self.motion_gain * (rows - self.motion_mean) / self.motion_std)
        return self._audio_codes(source, centres)

    def _audio_codes(self, feats: np.ndarray | torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
        """Attended audio codes [B, A] of frames ``centres`` [B] (long) of the feature array ``feats`` [n, T, C]."""
        dev = self.audio_mean.device
        idx = window_indices(centres.to("cpu"), self.window, len(feats))  # [B, W]
        if isinstance(feats, torch.Tensor):
            win = feats[idx.to(feats.device)].to(dev, torch.float32)
        else:
            win = torch.from_numpy(np.asarray(feats[idx.numpy()], dtype=np.float32)).to(dev)
        b, w = idx.shape
        win = (win - self.audio_mean) / self.audio_std
        codes = self.audio_encoder(win.reshape(b * w, *win.shape[2:])).reshape(b, w, -1)
        if self.audio_att is None:
            return codes[:, 0]
        return self.audio_att(codes)

    def pose_codes(self, c2w: torch.Tensor) -> torch.Tensor:
        """Normalised head-pose vectors [B, 12] of camera-to-world matrices [B, 4, 4].

        Clamped to +-POSE_CLAMP standard deviations of the training poses, so novel poses far outside the
        training range (orbits) do not push the torso network out of its domain.
        """
        p = c2w[:, :3, :4].reshape(c2w.shape[0], -1).to(self.pose_mean)
        return ((p - self.pose_mean) / self.pose_std).clamp(-POSE_CLAMP, POSE_CLAMP)

    def mean_codes(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Mean appearance codes ``(head [1, I], torso [1, I] or None)`` used at render time."""
        torso = self.ind_torso.mean(0, keepdim=True) if self.ind_torso is not None else None
        return self.ind_head.mean(0, keepdim=True), torso
