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


@dataclass
class DubConfig:
    """``thg-nerf dub``: which region is re-rendered and how it is blended into the original footage.

    Distances are in mouth widths (the tracked lip-corner distance of each frame), so they scale with the face.
    """

    region: str = "mouth"
    """``mouth``: lips, chin and the jaw below them; ``lower-face``: everything below the nose tip."""
    loop: str = "pingpong"
    """Audio longer than the video: ``pingpong`` runs the video back and forth, ``trim`` cuts the audio."""
    margin: float = 0.1
    """The blend weight is 1 up to this far outside the region's landmarks (room for a lower or higher jaw)."""
    feather: float = 0.3
    """Width of the feathered edge over which the weight falls from 1 to 0."""
    ring: float = 0.2
    """Width of the ring outside the feather where colour and sharpness of render and footage are compared."""
    match: bool = True
    """Match the render's colour and sharpness to the footage around it (off: blend the render as it is)."""
    match_every: int = 6
    """Render the ring and update the matching on every n-th output frame only (it costs a third more rays)."""
    max_gain: float = 1.25
    """Colour matching scales each channel's contrast by at most this factor (or its inverse)."""
    max_sharpen: float = 2.0
    """Sharpness matching adds at most this multiple of the render's own high-pass detail."""
    smooth: float = 0.5
    """Weight of the newest measurement in the running (exponential) average of the matching parameters."""
    turn_window_s: float = 2.0
    """Ping-pong turns at the stillest frame within this many seconds of either end of the clip."""
    identity_threshold: float = 0.03
    """Largest face-shape difference to the run's person (``thg_nerf.render.dub.identity_distance``) accepted
    as the same person; measured: at most 0.021 for clips of the same person, at least 0.050 for others
    (docs/BENCHMARKS.md, section Dub)."""


@dataclass
class FastPathConfig:
    """Static-camera fast path (``thg_nerf.render.fastpath``): which pixels are re-rendered per frame.

    The camera's view is rendered under the base condition and under probe motion codes and eye values; pixels
    whose colour moves by more than ``threshold`` under any probe, grown by ``dilate`` pixels, are re-rendered
    every frame, the rest is reused from the base frame.
    """

    probes: int = 6
    """Random probe directions; each is tried at +-``amplitude`` (plus one probe per eye level)."""
    amplitude: float = 2.0
    """Probe distance from the mean motion code, in training standard deviations per dimension."""
    threshold: float = 0.5
    """Colour change (grey levels of 0..255, any channel or alpha) that marks a pixel as condition-dependent."""
    dilate: int = 3
    """Pixels added around the condition-dependent ones."""
    margin: int = 2
    """Samples kept behind the last one any probe composites (early termination drops the others)."""
    min_weight: float = 1e-4
    """Samples in front of that whose compositing weight stays below this under every probe are dropped
    (each changes its pixel by less than this fraction of full scale; 0 keeps them all)."""
    seed: int = 0
    """Seed of the probe directions."""
