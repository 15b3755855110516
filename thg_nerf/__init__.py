"""thg-nerf: audio-driven talking-head neural radiance fields.

Importing the package never compiles anything and never needs CUDA or mediapipe; heavy modules are imported
lazily by the subcommands that use them.
"""

__version__ = "0.1.0"

#: Schema version of dataset directories written by ``thg-nerf preprocess``.
DATA_SCHEMA_VERSION = 1
#: Schema version of run directories (checkpoints + config) written by ``thg-nerf train``.
RUN_SCHEMA_VERSION = 1

__all__ = ["__version__", "DATA_SCHEMA_VERSION", "RUN_SCHEMA_VERSION"]
