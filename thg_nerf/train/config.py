"""Training settings."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TrainConfig:
    """Optimisation schedule, ray sampling and checkpointing."""

    iters: int = 30000
    """Total training iterations (head and torso stages together)."""
    max_minutes: float | None = None
    """Stop (and checkpoint) after this many minutes of training."""
    batch_rays: int = 4096
    """Rays per iteration."""
    mouth_ratio: float = 0.25
    """Share of each batch drawn from the mouth box."""
    face_ratio: float = 0.25
    """Share of each batch drawn from the face box."""
    lr: float = 1e-2
    """Learning rate of the hash grids."""
    lr_net: float = 1e-3
    """Learning rate of the networks."""
    amp: bool = True
    """Mixed precision on GPU."""
    checkpoint_every: int = 1000
    """Save a checkpoint every N iterations (and on Ctrl-C)."""
    eval_every: int = 1000
    """Log validation images every N iterations."""
    max_samples_per_ray: int = 256
    """Cap on ray-marching samples per ray."""
