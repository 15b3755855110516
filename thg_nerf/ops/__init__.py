"""Differentiable rendering ops with a pure-PyTorch reference and an optional CUDA backend (``thg_nerf._C``).

Every op has a typed public function (dispatching on the tensors' device, per op, after a self-test of the
kernels on first use: see :mod:`thg_nerf.ops.backend`) and a ``*_torch`` reference that is the test oracle of the
CUDA kernels in ``cuda_ext/``.
"""

from thg_nerf.ops.composite import accumulate, composite, composite_step
from thg_nerf.ops.hash_encoding import HashGridLayout, hash_encode
from thg_nerf.ops.occupancy import update_occupancy
from thg_nerf.ops.raymarch import RaySamples, march_rays, march_step, occupied, ray_aabb_intersect

__all__ = [
    "HashGridLayout", "RaySamples", "accumulate", "composite", "composite_step", "hash_encode", "march_rays",
    "march_step", "occupied", "ray_aabb_intersect", "update_occupancy",
]
