"""Training settings."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TrainConfig:
    """Optimisation schedule, ray sampling and checkpointing."""

    iters: int = 30000
    """Total training iterations (head and torso are trained jointly)."""
    max_minutes: float | None = None
    """Stop (and checkpoint) after this many minutes of training in this session."""
    batch_rays: int = 4096
    """Rays per iteration."""
    frames_per_batch: int = 8
    """Training frames the rays of one iteration are drawn from (frames are read from a memmap)."""
    mouth_ratio: float = 0.25
    """Share of each batch drawn from the mouth box."""
    face_ratio: float = 0.25
    """Share of each batch drawn from the face box."""
    lr: float = 1e-2
    """Learning rate of the hash grids."""
    lr_net: float = 1e-3
    """Learning rate of the networks and per-frame codes."""
    lr_final_ratio: float = 0.1
    """Both learning rates decay exponentially to this fraction of their value at the last iteration."""
    mask_weight: float = 0.1
    """Weight of the head/torso alpha losses against the label masks."""
    amp: bool = True
    """Mixed precision (bfloat16 autocast) on GPU."""
    checkpoint_every: int = 1000
    """Save a checkpoint every N iterations (and on Ctrl-C and at the end)."""
    eval_every: int = 1000
    """Log a rendered validation frame (tensorboard) every N iterations; 0 = never."""
    occupancy_every: int = 16
    """Update the occupancy grid every N iterations."""
    occupancy_warmup: int = 64
    """Iterations before the first occupancy update (the grid starts fully occupied)."""
    max_samples_per_ray: int = 256
    """Cap on ray-marching samples per ray."""
    early_stop: float = 1e-4
    """Transmittance below which training samples are dropped (early ray termination)."""
    calibrate_frames: int = 16
    """Training frames rendered after training to calibrate the mouth gain (``thg_nerf.train.calibrate``;
    motion-conditioned runs, needs mediapipe); 0 = keep the gain at 1."""
    max_mouth_gain: float = 1.5
    """Upper bound of the calibrated mouth gain (motion codes are extrapolated at most this far)."""
