"""Embedding: add the payload's carrier to a frame's luma, scaled by a perceptual mask.

The carrier (:mod:`thg_nerf.provenance.pattern`) is precomputed per frame size. Per frame only a coarse
activity map is computed (one luma sample per carrier cell: |luma - 3x3 mean|, averaged over 3x3 cells, then
the minimum over 3x3 cells so an edge does not lend its activity to the smooth area next to it). The
amplitude is ``min(gain * (activity - floor), texture_ratio * activity, max_amplitude)`` grey levels: zero on
flat areas, where a static pattern would be visible. When a frame's mean squared change would
exceed the PSNR budget, the amplitudes are capped lower (water-filling) until it fits; the rounded change is
then checked exactly. The same value is added to R, G and B (a pure luma change).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from thg_nerf.provenance.pattern import CELLS, cell_values, frame_pattern, tile_period
from thg_nerf.provenance.payload import Payload, encode_payload


@dataclass(frozen=True)
class MaskSettings:
    """Perceptual mask of the mark (amplitudes in grey levels of 0..255)."""

    gain: float = 4.0
    """Amplitude per grey level of local activity above ``floor`` (see the module docstring)."""
    floor: float = 0.25
    """Activity below which an area counts as flat and gets no mark (a plain background, a flat plate)."""
    texture_ratio: float = 3.0
    """At most this many grey levels per grey level of activity. With the floor, smooth but not flat areas
    (rendered skin, shading) carry the mark too: a render over a flat background keeps it under CRF 35
    (docs/BENCHMARKS.md, Provenance; before: gain 3, floor 1, ratio 1, and such renders lost it)."""
    max_amplitude: float = 6.0
    """Largest amplitude. When a frame's budget is exceeded the amplitudes are capped lower (water-filling)
    rather than scaled down: the mark stays spread over all textured areas (robust: the picture's own
    interference is weakest on moderate texture) instead of piling onto the strongest edges."""
    min_psnr: float = 42.2
    """PSNR floor per frame (dB): the rounded change of every frame is scaled down to meet it."""


#: The expected change is first scaled to this fraction of the budget (rounding to integers adds a little).
_ROUNDING_MARGIN = 0.93


@dataclass
class _SizeCache:
    block: int
    """Pixels per mask block (about one carrier cell)."""
    pattern: np.ndarray
    """[Hb, block, Wb, block] float32 carrier over the frame padded to whole blocks."""
    energy: np.ndarray
    """[Hb, Wb] mean squared carrier per block."""


class Watermarker:
    """Marks uint8 frames with one payload: ``marked = Watermarker(payload).mark(frame)``.

    Frames are [H, W, 3] RGB or [H, W, 4] RGBA (alpha untouched), any size; the input is not modified. The
    carrier of each frame size is computed once (about 2 MB per 512x512 size).
    """

    def __init__(self, payload: Payload, mask: MaskSettings | None = None) -> None:
        self.payload = payload
        self.mask = mask or MaskSettings()
        self._cells = cell_values(encode_payload(payload))
        self._cache: dict[tuple[int, int], _SizeCache] = {}

    @property
    def tag(self) -> str:
        """The container metadata text of this payload."""
        return self.payload.tag()

    def _size(self, h: int, w: int) -> _SizeCache:
        cache = self._cache.get((h, w))
        if cache is None:
            block = max(1, int(tile_period(w, h) / CELLS))
            hb, wb = -(-h // block), -(-w // block)
            pattern = frame_pattern(self._cells, w, h, block).reshape(hb, block, wb, block)
            cache = _SizeCache(block, pattern, np.square(pattern).mean(axis=(1, 3)))
            if len(self._cache) >= 8:
                self._cache.pop(next(iter(self._cache)))
            self._cache[(h, w)] = cache
        return cache

    def amplitude(self, frame: np.ndarray) -> np.ndarray:
        """The mark's amplitude per mask block [Hb, Wb] (grey levels) for a frame [H, W, C] uint8."""
        from scipy.ndimage import minimum_filter, uniform_filter

        h, w = frame.shape[:2]
        c = self._size(h, w)
        b, hb, wb = c.block, c.energy.shape[0], c.energy.shape[1]
        samples = frame[b // 2::b, b // 2::b, :3].astype(np.float32)
        luma = samples @ np.array([0.299, 0.587, 0.114], np.float32)
        if luma.shape != (hb, wb):  # the last partial block has no centre sample: repeat the edge
            luma = np.pad(luma, ((0, hb - luma.shape[0]), (0, wb - luma.shape[1])), mode="edge")
        activity = uniform_filter(np.abs(luma - uniform_filter(luma, 3, mode="nearest")), 3, mode="nearest")
        activity = minimum_filter(activity, 3, mode="nearest")  # no bleeding from an edge onto smooth neighbours
        m = self.mask
        amp = np.minimum(np.maximum(m.gain * (activity - m.floor), 0.0), m.texture_ratio * activity)
        amp = np.minimum(amp, m.max_amplitude)
        budget = _ROUNDING_MARGIN * self._budget
        if float(np.mean(np.square(amp) * c.energy)) > budget:  # water-fill: lower the cap until it fits
            lo, hi = 0.0, float(amp.max())
            for _ in range(20):
                cap = 0.5 * (lo + hi)
                fits = float(np.mean(np.square(np.minimum(amp, cap)) * c.energy)) <= budget
                lo, hi = (cap, hi) if fits else (lo, cap)
            amp = np.minimum(amp, np.float32(lo))
        return amp

    @property
    def _budget(self) -> float:
        """Largest mean squared change (grey levels^2) of a frame."""
        return 255.0 ** 2 / 10.0 ** (self.mask.min_psnr / 10.0)

    def delta(self, frame: np.ndarray) -> np.ndarray:
        """The integer luma change [H, W] int16 that :meth:`mark` adds to a frame (its PSNR >= ``min_psnr``)."""
        h, w = frame.shape[:2]
        c = self._size(h, w)
        amp = self.amplitude(frame)
        for _ in range(4):
            d = (c.pattern * amp[:, None, :, None]).reshape(amp.shape[0] * c.block, amp.shape[1] * c.block)
            d = np.rint(d[:h, :w]).astype(np.int16)
            mse = float(np.einsum("ij,ij->", d, d, dtype=np.float64)) / d.size
            if mse <= self._budget:
                break
            amp *= np.float32(0.98 * np.sqrt(self._budget / mse))
        return d

    def mark(self, frame: np.ndarray) -> np.ndarray:
        """A marked copy of ``frame`` ([H, W, 3] or [H, W, 4] uint8)."""
        frame = np.asarray(frame)
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] not in (3, 4):
            raise ValueError(f"frames to mark are uint8 [H, W, 3|4], got {frame.dtype} {list(frame.shape)}")
        d = self.delta(frame)
        out = frame.astype(np.int16)
        out[..., :3] += d[..., None]
        np.clip(out, 0, 255, out=out)
        return out.astype(np.uint8)


class MarkedWriter:
    """Wraps a frame writer (``write(frame)``, ``frames_written``): every frame is marked right before writing.

    The one place new output paths (``dub``, ``serve``) go through: ``MarkedWriter(writer, marker)``.
    """

    def __init__(self, writer, marker: Watermarker) -> None:
        self.writer = writer
        self.marker = marker

    @property
    def frames_written(self) -> int:
        return int(self.writer.frames_written)

    def write(self, frame: np.ndarray) -> None:
        self.writer.write(self.marker.mark(frame))
