"""Streaming entry point of the audio -> motion model: motion codes of frames fed a few at a time.

The network encodes each frame's audio window on its own, and its temporal layers are causal
(``AudioMotionNet.receptive_frames`` frames of context), so encoding each new frame once, keeping that many
past frames' codes and decoding ``history + new`` gives, for every new frame, the same output as
:meth:`AudioMotionModel.predict` on the whole sequence (the sequence start is padded the same way).
"""

from __future__ import annotations

import numpy as np
import torch

from thg_nerf.motion.model import AudioMotionModel


class MotionStream:
    """Incremental :meth:`AudioMotionModel.predict`: ``push(windows [k, T, C]) -> motion [k, M]``.

    Each frame's window is encoded once (:meth:`AudioMotionModel.encode`); the codes of the last
    ``receptive_frames - 1`` frames are kept for the temporal layers.
    """

    def __init__(self, model: AudioMotionModel) -> None:
        self.model = model
        self.context = max(0, model.net.receptive_frames - 1)
        self._past: torch.Tensor | None = None  # [<= context, E] codes of the latest frames

    def push(self, windows: np.ndarray) -> np.ndarray:
        """Motion codes [k, M] of the next ``k`` frames' feature windows [k, T, C]."""
        if len(windows) == 0:
            return np.zeros((0, self.model.motion_dim), np.float32)
        codes = self.model.encode(windows)
        seq = codes if self._past is None else torch.cat([self._past, codes])
        motion = self.model.decode(seq)[len(seq) - len(codes):]
        self._past = seq[max(0, len(seq) - self.context):] if self.context else seq[:0]
        return motion
