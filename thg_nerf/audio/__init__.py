"""Audio loading and per-frame audio features, shared by preprocessing and rendering."""

from thg_nerf.audio.features import extract_features, feature_shape, parse_spec
from thg_nerf.audio.io import audio_envelope, load_audio, write_wav

__all__ = ["audio_envelope", "extract_features", "feature_shape", "load_audio", "parse_spec", "write_wav"]
