"""Trainable hash-grid encodings on top of :func:`thg_nerf.ops.hash_encode`.

On the CPU the encoding runs :class:`_HashEncodeCPU`, a vectorised implementation of exactly the same
function as the ops reference (same vertex indexing, same weights; checked against ``hash_encode_torch`` in
``tests/test_fields.py``): all levels at once, per-axis index terms combined per corner instead of
materialising ``[N, L, 2^D, D]`` vertex tensors, the corners' weighted sum as one ``embedding_bag``, and a
hand-written backward (one ``index_add_`` for the table,
analytic gradient for the points). It is 2-3x faster than the reference on 2 cores. CUDA tensors go
through :func:`thg_nerf.ops.hash_encode` (the CUDA kernels).
"""

from __future__ import annotations

import torch
from torch import nn

from thg_nerf.ops import HashGridLayout, hash_encode
from thg_nerf.ops import backend as ops_backend
from thg_nerf.ops.hash_encoding import PRIMES


def _corner_terms(p0: torch.Tensor, frac: torch.Tensor, mult: list[torch.Tensor] | list[int],
                  combine: str) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Table rows (before offsets/masking) and weights of the 2^D corners of levels ``p0``/``frac`` [N, L', D].

    Per-axis terms of the lower/upper vertex are computed once: ``(p0 + b) * mult[d]``, combined by ``+``
    (dense levels, ``mult`` = strides) or ``^`` (hashed levels, ``mult`` = primes).
    """
    dim = p0.shape[-1]
    terms = [((p0[..., d] * mult[d]), (p0[..., d] + 1) * mult[d]) for d in range(dim)]
    wts = [(1.0 - frac[..., d], frac[..., d]) for d in range(dim)]
    rows, weights = [], []
    for c in range(2**dim):
        bits = [(c >> d) & 1 for d in range(dim)]
        r, w = terms[0][bits[0]], wts[0][bits[0]]
        for d in range(1, dim):
            r = r + terms[d][bits[d]] if combine == "+" else r ^ terms[d][bits[d]]
            w = w * wts[d][bits[d]]
        rows.append(r)
        weights.append(w)
    return rows, weights


class _HashEncodeCPU(torch.autograd.Function):
    """Hash encoding of [N, D] points (levels ``:n_dense`` indexed densely, the rest hashed); see module doc.

    Hashed levels have ``2^log2_hashmap_size`` rows (a power of two), so ``(h & 0xFFFFFFFF) % size`` equals
    ``h & (size - 1)`` and the uint32 masking of the reference can be skipped.
    """

    @staticmethod
    def forward(ctx, x, embeddings, res, strides, offs, n_dense, hash_mask):  # type: ignore[override]
        n, dim = x.shape
        inside = (x >= 0) & (x <= 1)
        pos = x.clamp(0.0, 1.0).float()[:, None, :] * res[None, :, None]  # [N, L, D]
        p0 = torch.minimum(pos.floor(), (res - 1)[None, :, None])
        frac = pos - p0
        p0 = p0.long()
        idx_parts, w_parts = [], []
        if n_dense > 0:
            rows, w = _corner_terms(p0[:, :n_dense], frac[:, :n_dense], list(strides[:n_dense].unbind(-1)), "+")
            idx_parts.append(torch.stack(rows, -1) + offs[:n_dense, None])
            w_parts.append(torch.stack(w, -1))
        if n_dense < res.shape[0]:
            rows, w = _corner_terms(p0[:, n_dense:], frac[:, n_dense:], list(PRIMES[:dim]), "^")
            idx_parts.append((torch.stack(rows, -1) & hash_mask) + offs[n_dense:, None])
            w_parts.append(torch.stack(w, -1))
        idx = torch.cat(idx_parts, 1) if len(idx_parts) > 1 else idx_parts[0]  # [N, L, C]
        w = torch.cat(w_parts, 1) if len(w_parts) > 1 else w_parts[0]  # [N, L, C]
        corners = idx.shape[-1]
        # the corner rows' weighted sum, without materialising the [N, L, C, F] gather
        out = torch.nn.functional.embedding_bag(idx.reshape(-1, corners), embeddings, mode="sum",
                                                per_sample_weights=w.reshape(-1, corners).to(embeddings.dtype))
        ctx.save_for_backward(idx, w, frac, inside, res, embeddings)
        return out.reshape(n, -1)

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        idx, w, frac, inside, res, embeddings = ctx.saved_tensors
        n, levels, corners = w.shape
        f_dim = embeddings.shape[1]
        g = grad_out.reshape(n, levels, 1, f_dim)
        grad_emb = None
        if ctx.needs_input_grad[1]:
            src = (w.to(g.dtype)[..., None] * g).reshape(-1, f_dim)
            grad_emb = torch.zeros_like(embeddings).index_add_(0, idx.reshape(-1), src.to(embeddings.dtype))
        grad_x = None
        if ctx.needs_input_grad[0]:
            dim = frac.shape[-1]
            gf = (embeddings[idx] * g).sum(-1)  # [N, L, C]: d loss / d corner weight
            cols = []
            for d in range(dim):
                dw = []
                for c in range(corners):
                    term = torch.ones_like(frac[..., 0])
                    for e in range(dim):
                        b = (c >> e) & 1
                        if e == d:
                            term = term * (1.0 if b else -1.0)
                        else:
                            term = term * (frac[..., e] if b else 1.0 - frac[..., e])
                    dw.append(term)
                cols.append(((torch.stack(dw, -1) * gf).sum(-1) * res).sum(-1))  # [N]
            grad_x = torch.stack(cols, -1) * inside
        return grad_x, grad_emb, None, None, None, None, None


class HashGrid(nn.Module):
    """A multiresolution hash grid over [0, 1]^D with its own embedding table."""

    def __init__(self, layout: HashGridLayout, init_scale: float = 1e-4) -> None:
        super().__init__()
        self.layout = layout
        self.embeddings = nn.Parameter(torch.empty(layout.n_params, layout.level_dim).uniform_(-init_scale,
                                                                                                init_scale))
        offsets, resolutions = layout.tensors(torch.device("cpu"))
        self.register_buffer("offsets", offsets, persistent=False)
        self.register_buffer("resolutions", resolutions, persistent=False)
        res = [int(r) for r in resolutions]
        sizes = [int(b - a) for a, b in zip(layout.offsets[:-1], layout.offsets[1:])]
        dense = [(r + 1) ** layout.dim <= s for r, s in zip(res, sizes)]
        self._n_dense = sum(dense)
        if dense != [True] * self._n_dense + [False] * (len(res) - self._n_dense):
            raise ValueError("hash grid levels must be dense first, then hashed")
        self._hash_mask = 2**layout.log2_hashmap_size - 1
        strides = torch.tensor([[(r + 1) ** d for d in range(layout.dim)] for r in res], dtype=torch.long)
        self.register_buffer("_res", resolutions.float(), persistent=False)
        self.register_buffer("_strides", strides, persistent=False)
        self.register_buffer("_offs", offsets[:-1].long(), persistent=False)

    @property
    def out_dim(self) -> int:
        return self.layout.out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[N, D] points in [0, 1]^D -> [N, L * F] features."""
        if x.is_cuda or ops_backend.env_override() == "cuda":
            return hash_encode(x, self.embeddings, self.offsets, self.resolutions)
        return _HashEncodeCPU.apply(x, self.embeddings, self._res, self._strides, self._offs, self._n_dense,
                                    self._hash_mask)


def make_layout(dim: int, num_levels: int, level_dim: int, log2_hashmap_size: int, base_resolution: int,
                max_resolution: int) -> HashGridLayout:
    """A layout whose finest level is at least the base level."""
    return HashGridLayout(dim=dim, num_levels=num_levels, level_dim=level_dim, log2_hashmap_size=log2_hashmap_size,
                          base_resolution=base_resolution, max_resolution=max(max_resolution, base_resolution))


class TriPlaneEncoding(nn.Module):
    """Three 2D hash grids on the xy, yz and xz planes, features concatenated (ER-NeRF)."""

    PLANES = ((0, 1), (1, 2), (0, 2))

    def __init__(self, layout: HashGridLayout) -> None:
        super().__init__()
        self.grids = nn.ModuleList(HashGrid(layout) for _ in self.PLANES)

    @property
    def out_dim(self) -> int:
        return 3 * self.grids[0].out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[N, 3] points in [0, 1]^3 -> [N, 3 * L * F]."""
        return torch.cat([g(x[:, list(p)]) for g, p in zip(self.grids, self.PLANES)], dim=-1)


class Grid3DEncoding(nn.Module):
    """One 3D hash grid."""

    def __init__(self, layout: HashGridLayout) -> None:
        super().__init__()
        self.grid = HashGrid(layout)

    @property
    def out_dim(self) -> int:
        return self.grid.out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[N, 3] points in [0, 1]^3 -> [N, L * F]."""
        return self.grid(x)
