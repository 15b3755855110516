"""Detection: find the mark in a video and read its payload, with a calibrated false-positive probability.

1. Frames are decoded as luma at a working size (shorter side ``WORK_SIZE``) and averaged, over the whole
   video and over every window of two consecutive ``SEGMENT_S`` segments: the mark is the same in every
   frame, moving content averages out.
2. Each average is whitened: a band-pass (difference of Gaussians) removes the picture's low frequencies,
   then every pixel is divided by the local residual energy, so textured and flat areas weigh alike.
3. For each candidate tile period (crops change it relative to the frame, ``SCALES``) the residual is folded
   into one tile of ``BINS x BINS`` bins (pixel -> position inside its tile). In the fold's frequency domain
   the remaining picture is treated as coloured noise whose spectrum is the fold's smoothed periodogram; the
   whitened (generalised) cross-correlation with the pilot pattern gives the tile offset at its peak, and
   ``z`` = peak / its standard deviation under that noise model (~N(0, 1) at any one offset without a mark).
4. At the best period and offset, whitened matched filters read every data cell, a regularised
   zero-forcing equaliser undoes the overlap of neighbouring cells, and the soft bits are decoded (soft
   Viterbi + CRC-16, :mod:`thg_nerf.provenance.payload`).

False-positive probability of a reported mark (Bonferroni over every period, offset and window tried):
``windows * 2**-16 * min(1, periods * BINS**2 * Q(z / NULL_INFLATION))`` where Q is the normal tail. The
mark is reported as found when its payload passes the CRC and that probability is at most ``FOUND_P``.
"""

from __future__ import annotations

import math
import re
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from thg_nerf.errors import ThgError
from thg_nerf.log import progress
from thg_nerf.provenance.pattern import BINS, CELLS, TILES, bin_matrix, layout, pilot_cells
from thg_nerf.provenance.payload import CRC_BITS, Payload, decode_payload

#: Shorter side (pixels) of the luma frames the detector works on.
WORK_SIZE = 256
#: Tile periods tried, relative to an uncropped frame (1.0); 1.11 is a 5 % crop on every side.
SCALES = tuple(float(1.01 ** k) for k in range(-10, 27))
#: Length of one accumulation segment (s); windows are two consecutive segments.
SEGMENT_S = 1.5
#: Reported as found at or below this false-positive probability.
FOUND_P = 1e-6
#: The sync z is divided by this before the normal tail is taken: an unmarked clip with a tiled wall reaches
#: z = 6.1, beyond the Gaussian noise model (benchmarks/bench_provenance.py, docs/PROVENANCE.md).
NULL_INFLATION = 1.25
#: Band-pass and normalisation widths (pixels at the working size, where a carrier cell is 4 pixels).
HIGHPASS_SIGMA = 2.0
SMOOTH_SIGMA = 1.0
ENERGY_SIGMA = 3.0
#: Width (frequency bins) of the smoothing that estimates the fold's noise spectrum.
NOISE_SMOOTH = 9
#: A frequency's noise estimate is at least its own power / PEAK_GUARD (see :meth:`Fold.of`).
PEAK_GUARD = 4.0
#: Regularisation of the zero-forcing equaliser (fraction of its mean gain).
EQ_REG = 1.0


@dataclass
class Candidate:
    """The best synchronisation found in one averaged image."""

    z: float
    scale: float
    offset: tuple[float, float]
    """(x, y) of a tile corner, pixels of the working size."""
    payload: Payload | None
    window: tuple[float, float] = (0.0, 0.0)


@dataclass
class Detection:
    """The answer of :func:`verify_video`."""

    found: bool
    payload: Payload | None
    false_positive_probability: float
    sync_z: float
    scale: float
    window: tuple[float, float]
    """Start and end (s) of the frames the answer comes from."""
    frames: int
    duration: float
    candidates: int
    tag: str | None = None
    """The container's provenance tag, if any (the second, easily stripped signal)."""
    extra: dict = field(default_factory=dict)

    @property
    def tag_matches(self) -> bool | None:
        """Whether the container tag says the same as the mark (None without both)."""
        if self.tag is None or self.payload is None:
            return None
        return self.tag.strip() == self.payload.tag()

    def to_dict(self) -> dict:
        return {"found": self.found, "false_positive_probability": self.false_positive_probability,
                "payload": self.payload.to_dict() if self.payload else None, "sync_z": round(self.sync_z, 3),
                "sync_p": self.extra.get("sync_p"), "scale": round(self.scale, 4),
                "window_s": [round(t, 3) for t in self.window],
                "frames": self.frames, "duration_s": round(self.duration, 3), "windows_tested": self.candidates,
                "container_tag": self.tag, "container_tag_matches": self.tag_matches}


# ---------------------------------------------------------------- one averaged image


def whiten(luma: np.ndarray) -> np.ndarray:
    """Band-pass and locally normalise an averaged luma image [h, w] -> residual [h, w] float32."""
    from scipy.ndimage import gaussian_filter

    y = np.asarray(luma, np.float32)
    r = gaussian_filter(y, SMOOTH_SIGMA, mode="reflect") - gaussian_filter(y, HIGHPASS_SIGMA, mode="reflect")
    energy = gaussian_filter(r * r, ENERGY_SIGMA, mode="reflect")
    r /= np.sqrt(energy + 0.25)
    return np.clip(r, -4.0, 4.0)


def _bins(n: int, period: float) -> np.ndarray:
    return (np.floor((np.arange(n) + 0.5) / period * BINS).astype(np.int64)) % BINS


def fold(residual: np.ndarray, period: float) -> np.ndarray:
    """Average the pixels of ``residual`` [h, w] by their position in a tile of ``period`` px -> [BINS, BINS].

    Row and column means are removed (they hold block-grid artefacts, not the mark).
    """
    h, w = residual.shape
    index = (_bins(h, period)[:, None] * BINS + _bins(w, period)[None, :]).reshape(-1)
    sums = np.bincount(index, weights=residual.reshape(-1), minlength=BINS * BINS)
    counts = np.bincount(index, minlength=BINS * BINS)
    f = (sums / np.maximum(counts, 1)).reshape(BINS, BINS)
    f -= f.mean(axis=0, keepdims=True)
    f -= f.mean(axis=1, keepdims=True)
    return f


@lru_cache(maxsize=1)
def _pulses() -> tuple[np.ndarray, np.ndarray]:
    """Spectra [BINS, BINS] of one cell's bump at the tile origin and of the whole pilot pattern."""
    m = bin_matrix()
    unit = np.zeros((CELLS, CELLS))
    unit[0, 0] = 1.0
    return np.fft.fft2(m @ unit @ m.T), np.fft.fft2(m @ pilot_cells() @ m.T)


def bandpass_response(period: float) -> np.ndarray:
    """[BINS, BINS] transfer function of :func:`whiten`'s band-pass at the fold's bin frequencies."""
    f = np.fft.fftfreq(BINS) * (BINS / period)  # cycles per pixel
    f2 = f[:, None] ** 2 + f[None, :] ** 2
    return np.exp(-2 * np.pi ** 2 * SMOOTH_SIGMA ** 2 * f2) - np.exp(-2 * np.pi ** 2 * HIGHPASS_SIGMA ** 2 * f2)


@dataclass
class Fold:
    """A folded residual in the frequency domain with its noise spectrum estimate."""

    spectrum: np.ndarray
    """[BINS, BINS] complex FFT of the fold."""
    noise: np.ndarray
    """[BINS, BINS] smoothed power spectrum (the noise model of the whitened matched filters)."""
    response: np.ndarray
    """[BINS, BINS] band-pass response at this period."""

    @classmethod
    def of(cls, f: np.ndarray, period: float) -> Fold:
        from scipy.ndimage import uniform_filter

        spec = np.fft.fft2(f)
        power = np.abs(spec) ** 2
        # a smoothed periodogram, never far below the power actually there: periodic picture content
        # (tiled walls, blinds, block grids) gives isolated spectral peaks that must not dominate the match
        noise = np.maximum(uniform_filter(power, NOISE_SMOOTH, mode="wrap"), power / PEAK_GUARD) + 1e-20
        return cls(spec, noise, bandpass_response(period))


def synchronise(fold_: Fold) -> tuple[float, tuple[int, int]]:
    """Whitened cross-correlation with the pilot -> (z of the peak, (dy, dx) in bins).

    ``z`` divides by the correlation's standard deviation under the noise model, so it is ~N(0, 1) at any
    one offset when there is no mark.
    """
    _, pilot = _pulses()
    expected = pilot * fold_.response
    corr = np.fft.ifft2(fold_.spectrum * np.conj(expected) / fold_.noise).real
    std = math.sqrt(float((np.abs(expected) ** 2 / fold_.noise).sum())) / (BINS * BINS)
    if not std > 0.0 or not np.isfinite(corr).all():
        return 0.0, (0, 0)
    k = int(np.argmax(corr))
    return float(corr.flat[k]) / std, divmod(k, BINS)


def read_soft_bits(fold_: Fold, offset: tuple[int, int]) -> np.ndarray:
    """Whitened matched filter per cell, then a regularised zero-forcing equaliser -> soft coded bits."""
    unit, _ = _pulses()
    expected = unit * fold_.response
    step = BINS // CELLS
    y = np.fft.ifft2(fold_.spectrum * np.conj(expected) / fold_.noise).real
    y = np.roll(y, (-offset[0], -offset[1]), axis=(0, 1))[::step, ::step]  # [CELLS, CELLS]
    gain = (np.abs(expected) ** 2 / fold_.noise).reshape(step, CELLS, step, CELLS).sum(axis=(0, 2))
    cells = np.fft.ifft2(np.fft.fft2(y) / (gain + EQ_REG * gain.mean())).real
    data_cells, _, signs = layout()
    return cells.reshape(-1)[data_cells] * signs.reshape(-1)[data_cells]


def analyse(luma: np.ndarray, scales: Iterable[float] = SCALES) -> Candidate:
    """Search one averaged luma image [h, w] (any size; best at the working size) for the mark."""
    h, w = luma.shape
    residual = whiten(luma)
    nominal = min(h, w) / TILES
    best = Candidate(z=-math.inf, scale=1.0, offset=(0.0, 0.0), payload=None)
    best_fold = None
    for s in scales:
        f = Fold.of(fold(residual, nominal * s), nominal * s)
        z, off = synchronise(f)
        if z > best.z:
            best = Candidate(z=z, scale=s, offset=off, payload=None)
            best_fold = f
    if best_fold is None:
        return best
    period = nominal * best.scale
    best.payload = decode_payload(read_soft_bits(best_fold, best.offset))
    dy, dx = best.offset
    best.offset = (dx / BINS * period, dy / BINS * period)
    return best


def sync_p_value(z: float, n_scales: int = len(SCALES)) -> float:
    """P(a pilot peak this high anywhere | no mark), Bonferroni over periods and offsets.

    ``z`` is divided by ``NULL_INFLATION`` first: pictures with periodic structure (a tiled wall) have
    heavier tails than the Gaussian noise model (docs/PROVENANCE.md, *Calibration*).
    """
    if not math.isfinite(z):
        return 1.0
    return min(1.0, n_scales * BINS * BINS * 0.5 * math.erfc(z / NULL_INFLATION / math.sqrt(2.0)))


def false_positive_probability(z: float, windows: int, n_scales: int = len(SCALES)) -> float:
    """P(a decoded payload at this sync level | no mark), over ``windows`` averaged images."""
    return min(1.0, windows * 2.0 ** -CRC_BITS * sync_p_value(z, n_scales))


# ---------------------------------------------------------------- frames -> detection


def detect_frames(frames: Iterable[np.ndarray], fps: float, total: int | None = None) -> Detection:
    """Detect the mark in luma frames [h, w] (uint8 or float, any fixed size; best at the working size).

    Averages every ``SEGMENT_S`` segment, analyses each window of two consecutive segments and the whole.
    """
    seg_len = max(1, int(round(SEGMENT_S * fps)))
    whole: np.ndarray | None = None
    seg: np.ndarray | None = None
    prev: tuple[np.ndarray, int, int] | None = None
    results: list[Candidate] = []
    n = seg_n = 0
    for frame in progress(frames, total=total, desc="verifying", unit="frame"):
        y = np.asarray(frame, np.float32)
        if y.ndim == 3:
            y = y[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32)
        if whole is None:
            whole = np.zeros_like(y, dtype=np.float64)
            seg = np.zeros_like(whole)
        if y.shape != whole.shape:
            raise ThgError(f"frame {n} has size {y.shape[::-1]}, the first had {whole.shape[::-1]}")
        whole += y
        seg += y
        n += 1
        seg_n += 1
        if seg_n == seg_len:
            if prev is not None:
                results.append(_window(prev[0] + seg, prev[1] + seg_n, prev[2], n, fps))
            prev = (seg.copy(), seg_n, n - seg_n)
            seg[:] = 0.0
            seg_n = 0
    if whole is None or n == 0:
        raise ThgError("no frames to verify")
    if prev is not None and seg_n > 0:  # the tail window ends with the last frame
        results.append(_window(prev[0] + seg, prev[1] + seg_n, prev[2], n, fps))
    all_frames = _window(whole, n, 0, n, fps)
    if len(results) <= 1:  # one window would be the whole video again
        results = []
    results.append(all_frames)
    windows = len(results)
    decoded = [c for c in results if c.payload is not None]
    pick = max(decoded, key=lambda c: c.z) if decoded else max(results, key=lambda c: c.z)
    p = false_positive_probability(pick.z, windows) if pick.payload is not None else 1.0
    found = pick.payload is not None and p <= FOUND_P
    return Detection(found=found, payload=pick.payload if found else None, false_positive_probability=p,
                     sync_z=pick.z, scale=pick.scale, window=pick.window, frames=n, duration=n / fps,
                     candidates=windows, extra={"sync_p": sync_p_value(pick.z),
                                                "payload_unconfirmed": pick.payload is not None and not found})


def _window(total: np.ndarray, count: int, start: int, end: int, fps: float) -> Candidate:
    c = analyse(total / count)
    c.window = (start / fps, end / fps)
    return c


# ---------------------------------------------------------------- files


#: ffmpeg filter to the working size (after any rotation ffmpeg applies): shorter side WORK_SIZE, aspect kept.
WORK_FILTER = (f"scale=w='if(lt(iw,ih),{WORK_SIZE},-2)':h='if(lt(iw,ih),-2,{WORK_SIZE})':flags=area")


def working_size(width: int, height: int) -> tuple[int, int]:
    """(w, h) with the shorter side ``WORK_SIZE`` (even numbers), aspect kept."""
    s = WORK_SIZE / min(width, height)
    return max(2, 2 * round(width * s / 2)), max(2, 2 * round(height * s / 2))


def _png_frames(folder: Path) -> tuple[list[Path], Iterator[np.ndarray]]:
    from PIL import Image

    files = sorted(folder.glob("frame_*.png")) or sorted(folder.glob("*.png"))
    if not files:
        raise ThgError(f"{folder} holds no PNG frames (frame_000000.png ...)")

    def gen() -> Iterator[np.ndarray]:
        size = None
        for path in files:
            try:
                with Image.open(path) as im:
                    gray = im.convert("RGB").convert("L")
                    size = size or working_size(*gray.size)
                    yield np.asarray(gray.resize(size, Image.Resampling.BOX), np.float32)
            except OSError as e:
                raise ThgError(f"cannot read {path}: {e}") from None

    return files, gen()


def read_tag(path: str | Path) -> str | None:
    """The provenance tag of a video's container comment, or of a PNG's text chunk (None if absent)."""
    path = Path(path)
    if path.is_dir():
        from PIL import Image

        files = sorted(path.glob("frame_*.png")) or sorted(path.glob("*.png"))
        if not files:
            return None
        with Image.open(files[0]) as im:
            text = im.info.get("Comment")
        return text if isinstance(text, str) and text.startswith("thg-nerf provenance") else None
    from thg_nerf.utils.video import ffmpeg_exe

    proc = subprocess.run([ffmpeg_exe(), "-v", "error", "-nostdin", "-i", str(path), "-f", "ffmetadata", "-"],
                          capture_output=True, check=False)
    for line in proc.stdout.decode("utf-8", "replace").splitlines():
        key, _, value = line.partition("=")
        value = re.sub(r"\\(.)", r"\1", value)  # ffmetadata escapes = ; # \ and newlines with a backslash
        if key.strip().lower() == "comment" and value.startswith("thg-nerf provenance"):
            return value.strip()
    return None


def verify_video(path: str | Path) -> Detection:
    """Look for the provenance mark in a video file (or a folder of PNG frames). ThgError on bad input."""
    from thg_nerf.utils.video import iter_frames, probe_video

    path = Path(path)
    if path.is_dir():
        files, frames = _png_frames(path)
        fps, total = 25.0, len(files)
    else:
        info = probe_video(path, count=False)
        fps, total = info.fps, info.n_frames
        frames = iter_frames(path, filters=WORK_FILTER, gray=True)
    det = detect_frames(frames, fps, total=total)
    det.tag = read_tag(path)
    return det
