"""The spatial carrier: a key-seeded tile of +-1 cells, repeated over the frame, smoothly interpolated.

A tile is ``CELLS x CELLS`` cells and spans ``1 / TILES`` of the shorter frame side, so the mark scales with
the frame (a render at any size, or one downscaled afterwards, carries the same pattern relative to the
picture). Cells are of two kinds, chosen by a key-seeded permutation: ``PILOT`` cells carry a fixed
pseudo-random sign (the synchronisation pattern the detector searches for), data cells carry one coded
payload bit each, XOR a pseudo-random sign (so the tile looks random whatever the payload). Between cell
centres the value is interpolated with raised-cosine weights (a smooth, band-limited pattern: no block edges).
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

import numpy as np

from thg_nerf.provenance.payload import CODED_BITS

KEY = b"thg-nerf provenance v1"
#: Cells per tile side.
CELLS = 16
#: Tiles across the shorter side of the frame.
TILES = 4
#: Detector bins per tile side (4 per cell).
BINS = 64


@lru_cache(maxsize=1)
def layout() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(data_cells [CODED_BITS], pilot_mask [CELLS, CELLS] bool, signs [CELLS, CELLS] +-1)``.

    ``data_cells[i]`` is the flat index of the cell carrying coded bit ``i``.
    """
    seed = int.from_bytes(hashlib.sha256(KEY).digest()[:8], "little")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(CELLS * CELLS)
    signs = rng.choice(np.array([-1.0, 1.0]), size=CELLS * CELLS)
    pilot = np.zeros(CELLS * CELLS, bool)
    pilot[perm[CODED_BITS:]] = True
    return perm[:CODED_BITS], pilot.reshape(CELLS, CELLS), signs.reshape(CELLS, CELLS)


def cell_values(coded: np.ndarray) -> np.ndarray:
    """Coded bits [CODED_BITS] -> the tile's cell values [CELLS, CELLS] in {-1, +1}."""
    data_cells, pilot, signs = layout()
    values = signs.copy().reshape(-1)
    values[data_cells] *= 1.0 - 2.0 * np.asarray(coded, np.float64)
    return values.reshape(CELLS, CELLS)


def pilot_cells() -> np.ndarray:
    """[CELLS, CELLS]: the pilot signs, 0 on data cells."""
    _, pilot, signs = layout()
    return np.where(pilot, signs, 0.0)


def interpolation_matrix(n: int, period: float, offset: float = 0.0) -> np.ndarray:
    """[n, CELLS] raised-cosine weights of the (circular) cells for samples ``0..n-1`` along one axis.

    Sample ``i`` covers ``[i, i + 1)``; its centre lies at ``(i + 0.5 - offset) / period`` tiles. Cell ``c``
    is centred at ``(c + 0.5) / CELLS`` tiles. Each row sums to 1.
    """
    u = ((np.arange(n) + 0.5 - offset) / period) * CELLS - 0.5  # in cells, cell centres at integers
    i0 = np.floor(u).astype(np.int64)
    f = u - i0
    w1 = np.sin(0.5 * np.pi * f) ** 2
    m = np.zeros((n, CELLS))
    rows = np.arange(n)
    m[rows, i0 % CELLS] += 1.0 - w1
    m[rows, (i0 + 1) % CELLS] += w1
    return m


def tile_period(width: int, height: int) -> float:
    """Tile size in pixels of a ``width x height`` frame."""
    return min(width, height) / TILES


def frame_pattern(cells: np.ndarray, width: int, height: int, block: int = 1) -> np.ndarray:
    """The carrier of a ``width x height`` frame for a tile ``cells`` [CELLS, CELLS] (tiles start at 0, 0).

    Returns [H', W'] float32 in [-1, 1], with H', W' rounded up to whole ``block`` s (the extra rows and
    columns continue the pattern).
    """
    period = tile_period(width, height)
    my = interpolation_matrix(-(-height // block) * block, period)
    mx = interpolation_matrix(-(-width // block) * block, period)
    return (my @ cells @ mx.T).astype(np.float32)


@lru_cache(maxsize=1)
def bin_matrix() -> np.ndarray:
    """[BINS, CELLS]: the interpolation weights at the detector's bins (one tile)."""
    return interpolation_matrix(BINS, BINS)
