"""Streaming entry point of the audio -> motion model: motion codes of frames fed a few at a time.

The network's temporal layers are causal (``AudioMotionNet.receptive_frames`` frames of context), so keeping
that many past feature windows and predicting on ``history + new`` gives, for every new frame, the same output
as :meth:`AudioMotionModel.predict` on the whole sequence (the sequence start is padded the same way).
"""

from __future__ import annotations

import numpy as np

from thg_nerf.motion.model import AudioMotionModel


class MotionStream:
    """Incremental :meth:`AudioMotionModel.predict`: ``push(windows [k, T, C]) -> motion [k, M]``."""

    def __init__(self, model: AudioMotionModel) -> None:
        self.model = model
        self.context = max(0, model.net.receptive_frames - 1)
        t, c = model.feature_shape
        self._past = np.zeros((0, t, c), np.float32)

    def push(self, windows: np.ndarray) -> np.ndarray:
        """Motion codes [k, M] of the next ``k`` frames' feature windows [k, T, C]."""
        windows = np.asarray(windows, np.float32)
        if len(windows) == 0:
            return np.zeros((0, self.model.motion_dim), np.float32)
        seq = np.concatenate([self._past, windows])
        motion = self.model.predict(seq)[len(self._past):]
        self._past = seq[len(seq) - self.context:] if self.context else seq[:0]
        return motion
