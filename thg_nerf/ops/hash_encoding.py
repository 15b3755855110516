"""Multiresolution hash-grid encoding (Instant-NGP style) for 2D or 3D points.

Public: :func:`hash_encode`, :class:`HashGridLayout`. Reference: :func:`hash_encode_torch` (pure PyTorch,
differentiable by autograd in both the table and the input points). The CUDA kernel behind
``_HashEncodeFunction`` must match the reference bit for bit in indexing and to fp32 rounding in values.

Level ``l`` has ``res_l = floor(base * scale**l)`` cells per side and ``res_l + 1`` grid vertices per side.
Its table holds ``size_l = min(2**log2_hashmap_size, (res_l + 1)**D)`` rows, rounded up to a multiple of 8.
Vertices index the table densely (row-major, x fastest) when ``(res_l + 1)**D <= size_l``, otherwise by the
spatial hash ``(x * 1) ^ (y * 2654435761) ^ (z * 805459861)`` (uint32 wrap-around) modulo ``size_l``.
Inputs are points in [0, 1]^D; values outside are clamped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.autograd.function import once_differentiable

from thg_nerf.ops import backend

PRIMES = (1, 2654435761, 805459861)
_MASK32 = 0xFFFFFFFF


@dataclass(frozen=True)
class HashGridLayout:
    """Per-level resolutions and table offsets of a hash grid."""

    dim: int
    num_levels: int
    level_dim: int
    log2_hashmap_size: int
    base_resolution: int
    max_resolution: int

    @property
    def scale(self) -> float:
        if self.num_levels == 1:
            return 1.0
        return math.exp(math.log(self.max_resolution / self.base_resolution) / (self.num_levels - 1))

    @property
    def resolutions(self) -> list[int]:
        """Cells per side of each level."""
        return [int(math.floor(self.base_resolution * self.scale**lvl)) for lvl in range(self.num_levels)]

    @property
    def offsets(self) -> list[int]:
        """Row offset of each level's table in the concatenated embedding matrix, plus the total (L + 1)."""
        out = [0]
        cap = 2**self.log2_hashmap_size
        for res in self.resolutions:
            size = min(cap, (res + 1) ** self.dim)
            size = int(math.ceil(size / 8) * 8)
            out.append(out[-1] + size)
        return out

    @property
    def n_params(self) -> int:
        return self.offsets[-1]

    @property
    def out_dim(self) -> int:
        return self.num_levels * self.level_dim

    def tensors(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """``(offsets [L+1] int32, resolutions [L] int32)`` on ``device`` for the op."""
        return (torch.tensor(self.offsets, dtype=torch.int32, device=device),
                torch.tensor(self.resolutions, dtype=torch.int32, device=device))


def _corner_offsets(dim: int, device: torch.device) -> torch.Tensor:
    """[2^D, D] int64 binary corner offsets (bit d of corner c is its offset along axis d)."""
    c = torch.arange(2**dim, device=device)
    return torch.stack([(c >> d) & 1 for d in range(dim)], dim=-1)


def _vertex_index(v: torch.Tensor, res: int, size: int) -> torch.Tensor:
    """Table row of integer vertices ``v`` [..., D] (int64) for a level with ``res`` cells and ``size`` rows."""
    dim = v.shape[-1]
    side = res + 1
    if side**dim <= size:
        idx = torch.zeros_like(v[..., 0])
        stride = 1
        for d in range(dim):
            idx = idx + v[..., d] * stride
            stride *= side
        return idx
    h = torch.zeros_like(v[..., 0])
    for d in range(dim):
        h = h ^ ((v[..., d] * PRIMES[d]) & _MASK32)
    return h % size


def hash_encode_torch(x: torch.Tensor, embeddings: torch.Tensor, offsets: torch.Tensor,
                      resolutions: torch.Tensor) -> torch.Tensor:
    """Reference hash encoding.

    Args:
        x: [N, D] points in [0, 1]^D (D = 2 or 3).
        embeddings: [P, F] concatenated level tables.
        offsets: [L + 1] int table offsets; resolutions: [L] int cells per side.
    Returns:
        [N, L * F] features, level-major (level l occupies columns l*F:(l+1)*F), dtype of ``embeddings``.
    """
    n, dim = x.shape
    offs = [int(o) for o in offsets.tolist()]
    ress = [int(r) for r in resolutions.tolist()]
    corners = _corner_offsets(dim, x.device)  # [C, D]
    x = x.clamp(0.0, 1.0)
    feats = []
    for lvl, res in enumerate(ress):
        size = offs[lvl + 1] - offs[lvl]
        pos = (x if x.dtype == torch.float64 else x.float()) * res
        p0 = pos.floor().clamp(0, res - 1)
        frac = pos - p0  # [N, D]
        p0 = p0.long()
        verts = p0[:, None, :] + corners[None]  # [N, C, D]
        idx = _vertex_index(verts, res, size) + offs[lvl]  # [N, C]
        w = torch.where(corners[None].bool(), frac[:, None, :], 1.0 - frac[:, None, :]).prod(-1)  # [N, C]
        table = embeddings[idx.reshape(-1)].reshape(n, corners.shape[0], -1)  # [N, C, F]
        feats.append((w[..., None].to(table.dtype) * table).sum(1))
    return torch.cat(feats, dim=-1)


class _HashEncodeFunction(torch.autograd.Function):
    """CUDA hash encoding with the kernel module ``kernels``; gradients for the table and (when required) the
    input points.

    Tables may be float32, float16 (interpolated and accumulated in float32) or float64 (then ``x`` is
    float64 too, which makes the kernels gradcheck-able).
    """

    @staticmethod
    def forward(ctx, kernels, x, embeddings, offsets, resolutions):  # type: ignore[override]
        emb = embeddings.contiguous()
        x = x.to(torch.float64 if emb.dtype == torch.float64 else torch.float32).contiguous()
        offsets = offsets.to(device=x.device, dtype=torch.int32).contiguous()
        resolutions = resolutions.to(device=x.device, dtype=torch.int32).contiguous()
        out = kernels.hash_encode_forward(x, emb, offsets, resolutions)
        ctx.save_for_backward(x, emb, offsets, resolutions)
        ctx.kernels = kernels
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):  # type: ignore[override]
        x, emb, offsets, resolutions = ctx.saved_tensors
        need_x = bool(ctx.needs_input_grad[1])
        grad_emb, grad_x = ctx.kernels.hash_encode_backward(grad_out.to(emb.dtype).contiguous(), x, emb, offsets,
                                                            resolutions, need_x)
        return None, grad_x, grad_emb, None, None


def hash_encode(x: torch.Tensor, embeddings: torch.Tensor, offsets: torch.Tensor,
                resolutions: torch.Tensor) -> torch.Tensor:
    """Multiresolution hash encoding of ``x`` [N, D] in [0, 1]^D -> [N, L * F] (see module docstring)."""
    kernels = backend.kernels("hash_encode", x, embeddings)
    if kernels is not None:
        return _HashEncodeFunction.apply(kernels, x, embeddings, offsets, resolutions)
    return hash_encode_torch(x, embeddings, offsets, resolutions)
