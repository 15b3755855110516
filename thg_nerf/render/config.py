"""Rendering settings."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class RenderConfig:
    """Inference-time rendering."""

    max_steps: int = 512
    """Maximum marching steps per ray."""
    steps_per_iter: int = 8
    """Samples taken per alive ray per inference marching round."""
    early_stop_transmittance: float = 1e-3
    """Rays whose transmittance falls below this stop marching."""
    fps: float = 25.0
    """Default output frame rate when the run does not define one."""
    chunk_rays: int = 65536
    """Rays rendered per chunk (bounds memory)."""
