"""Preprocessing settings."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class PreprocessConfig:
    """How ``thg-nerf preprocess`` turns a video into a dataset directory."""

    size: int = 512
    """Output frame size in pixels (square) when cropping; with ``crop='none'`` the long side (aspect kept)."""
    crop: str = "auto"
    """``auto``: one stable square around head and shoulders for the whole clip; ``none``: keep the frame."""
    fps: float | None = None
    """Resample the video to this frame rate; ``None`` keeps the native rate."""
    val_fraction: float = 1.0 / 11.0
    """The last fraction of frames (contiguous) used for validation."""
    landmarks: str = "mediapipe"
    """Landmark backend: ``mediapipe`` (bundled weights) or ``face-alignment`` (optional extra)."""
    audio_features: str = "mel"
    """``mel`` | ``phones`` | ``mel+phones`` | ``hubert:DIR`` | ``wav2vec2:DIR`` | ``npy:FILE``."""
    max_missing_fraction: float = 0.3
    """Fail when more than this fraction of frames has no face."""
    max_interp_gap_s: float = 0.25
    """Gaps without a face up to this long are interpolated; longer ones are excluded from training."""
    av_offset: str | float = "auto"
    """Audio-video offset correction (s, positive = audio late; thg_nerf/preprocess/avsync.py): ``auto``
    applies the estimate only when it is confident, a number forces that offset, ``0`` disables it."""
