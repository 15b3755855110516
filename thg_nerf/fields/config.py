"""Model architecture settings."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ModelConfig:
    """Architecture of the audio-conditioned head field and the torso layer."""

    condition: str = "motion"
    """What drives the head field: ``motion`` (the tracked motion code of each frame; at render time the
    audio -> motion model predicts it) or ``audio`` (audio features, the conditioning learnt implicitly)."""
    motion_hidden: int = 64
    """Width of the network mapping a motion code to the head field's condition vector."""
    encoding: str = "triplane"
    """Spatial encoding of the head field: ``triplane`` (three 2D hash grids) or ``grid3d``."""
    num_levels: int = 12
    """Hash-grid levels."""
    level_dim: int = 2
    """Features per level."""
    log2_hashmap_size: int = 14
    """log2 of the hash table size per level."""
    base_resolution: int = 16
    """Coarsest grid resolution."""
    max_resolution: int = 512
    """Finest grid resolution."""
    bound: float | None = None
    """Half-size of the head's cube in canonical head space (dataset units); None = the dataset's ``head_bound``."""
    audio_dim: int = 32
    """Size of the per-frame condition vector (audio or motion code) the head field receives."""
    audio_att_window: int = 8
    """Neighbouring frames smoothed by temporal attention over audio codes (``condition: audio`` only)."""
    hidden_dim: int = 64
    """Width of the density/colour networks."""
    geo_dim: int = 15
    """Geometry features passed from the density network to the colour network."""
    individual_dim: int = 4
    """Per-frame appearance code size (its mean is used at render time)."""
    use_eye: bool = True
    """Condition the head field on the eye-blink signal."""
    use_torso: bool = True
    """Train and render the torso layer."""
    torso_levels: int = 8
    """Hash-grid levels of the image-plane torso grid."""
    torso_max_resolution: int = 256
    """Finest resolution of the torso grid (cells across the image)."""
    occupancy_resolution: int = 64
    """Occupancy grid cells per side over the head box."""
    march_steps: int = 128
    """Ray-marching steps across the head cube's edge (step = 2 * bound / march_steps)."""
