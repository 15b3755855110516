"""The dataset directory: the contract between preprocessing, training and rendering.

See ``docs/DATA_FORMAT.md`` for the layout. This module is the only code that knows the file names; it
reads and writes them, validates a directory up front (one-line errors), and decodes the compact video
storage into memory-mapped caches so training never holds every frame in RAM.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from thg_nerf import DATA_SCHEMA_VERSION, __version__
from thg_nerf.errors import IncompatibleVersionError, ThgError
from thg_nerf.utils.fs import read_json, write_json

#: Semantic labels stored in ``masks.mkv`` (pixel value = label * MASK_SCALE).
LABELS: dict[str, int] = {"background": 0, "head": 1, "neck": 2, "torso": 3}
MASK_SCALE = 60
#: H.264 quality of ``frames.mp4`` (yuv444p); ~40 dB PSNR against the source crop.
FRAMES_CRF = 14

FILES = {
    "meta": "meta.json",
    "train": "transforms_train.json",
    "val": "transforms_val.json",
    "frames": "frames.mp4",
    "masks": "masks.mkv",
    "background": "bg.png",
    "audio": "audio.wav",
    "audio_features": "audio_features.npy",
    "tracking": "tracking.npz",
}
#: Arrays expected in ``tracking.npz`` with their per-frame leading dimension.
TRACKING_KEYS = ("landmarks", "valid", "rotation", "translation", "eye", "face_box", "mouth_box")


@dataclass
class Intrinsics:
    """Pinhole camera in output pixels (square pixels, ``fl_x == fl_y == focal``)."""

    focal: float
    cx: float
    cy: float
    w: int
    h: int

    def matrix(self) -> np.ndarray:
        """3x3 intrinsic matrix K."""
        return np.array([[self.focal, 0, self.cx], [0, self.focal, self.cy], [0, 0, 1]], dtype=np.float64)

    def scaled(self, w: int, h: int) -> Intrinsics:
        """The same camera for an output of size w x h."""
        sx, sy = w / self.w, h / self.h
        return Intrinsics(self.focal * sx, self.cx * sx, self.cy * sy, w, h)


@dataclass
class FrameRecord:
    """One frame of a split: indices into frames/audio features, camera-to-world pose, eye signal."""

    img_id: int
    aud_id: int
    transform_matrix: np.ndarray
    eye: float = 0.0


@dataclass
class Dataset:
    """A loaded dataset directory (arrays are read lazily)."""

    root: Path
    meta: dict
    intrinsics: Intrinsics
    train: list[FrameRecord]
    val: list[FrameRecord]
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def fps(self) -> float:
        return float(self.meta["fps"])

    @property
    def n_frames(self) -> int:
        return int(self.meta["n_frames"])

    @property
    def size(self) -> tuple[int, int]:
        """(w, h) of the frames."""
        return int(self.meta["w"]), int(self.meta["h"])

    def path(self, key: str) -> Path:
        return self.root / FILES[key]

    def audio_features(self) -> np.ndarray:
        """Per-frame audio feature windows [n_frames, T, C] (memory-mapped, float16 or float32)."""
        if "aud" not in self._cache:
            self._cache["aud"] = np.load(self.path("audio_features"), mmap_mode="r")
        return self._cache["aud"]

    def tracking(self) -> dict[str, np.ndarray]:
        """Per-frame tracking arrays (see docs/DATA_FORMAT.md)."""
        if "trk" not in self._cache:
            with np.load(self.path("tracking")) as z:
                self._cache["trk"] = {k: z[k] for k in z.files}
        return self._cache["trk"]

    def background(self) -> np.ndarray:
        """Background plate [H, W, 3] uint8."""
        if "bg" not in self._cache:
            from PIL import Image

            self._cache["bg"] = np.asarray(Image.open(self.path("background")).convert("RGB"))
        return self._cache["bg"]

    def iter_frames(self) -> Iterator[np.ndarray]:
        """Stream all frames [H, W, 3] uint8 in order."""
        from thg_nerf.utils.video import iter_frames

        return iter_frames(self.path("frames"))

    def iter_masks(self) -> Iterator[np.ndarray]:
        """Stream all label masks [H, W] uint8 (values in LABELS) in order."""
        from thg_nerf.utils.video import iter_frames

        for m in iter_frames(self.path("masks"), gray=True):
            yield decode_mask(m)

    def frames(self, cache_dir: str | Path | None = None) -> np.ndarray:
        """All frames as a read-only memmap [N, H, W, 3] uint8, decoded once into a cache file."""
        return self._memmap("frames", 3, self.iter_frames, cache_dir)

    def masks(self, cache_dir: str | Path | None = None) -> np.ndarray:
        """All label masks as a read-only memmap [N, H, W] uint8."""
        return self._memmap("masks", 0, self.iter_masks, cache_dir)

    def _memmap(self, key: str, channels: int, source, cache_dir) -> np.ndarray:
        if key in self._cache:
            return self._cache[key]
        w, h = self.size
        shape = (self.n_frames, h, w, channels) if channels else (self.n_frames, h, w)
        cdir = Path(cache_dir) if cache_dir else self.root / "cache"
        try:
            cdir.mkdir(parents=True, exist_ok=True)
            if not os.access(cdir, os.W_OK):
                raise OSError
        except OSError:
            cdir = Path(tempfile.gettempdir()) / f"thg_nerf_cache_{abs(hash(str(self.root.resolve())))}"
            cdir.mkdir(parents=True, exist_ok=True)
        src = self.path(key)
        stamp = f"{src.stat().st_size}_{int(src.stat().st_mtime)}"
        final = cdir / f"{key}_{w}x{h}_{stamp}.u8"
        if not final.exists():
            from thg_nerf.log import progress

            fd, tmp_name = tempfile.mkstemp(dir=cdir, suffix=".tmp")
            os.close(fd)
            try:
                mm = np.lib.format.open_memmap(tmp_name, mode="w+", dtype=np.uint8, shape=shape)
                n = 0
                for i, fr in enumerate(progress(source(), total=self.n_frames, desc=f"decoding {key}",
                                                unit="frame")):
                    if i >= self.n_frames:
                        break
                    mm[i] = fr
                    n += 1
                if n != self.n_frames:
                    raise ThgError(f"{src} holds {n} frames, meta.json says {self.n_frames}")
                mm.flush()
                del mm
                os.replace(tmp_name, final)
            except BaseException:
                Path(tmp_name).unlink(missing_ok=True)
                raise
        self._cache[key] = np.load(final, mmap_mode="r")
        return self._cache[key]


def encode_mask(labels: np.ndarray) -> np.ndarray:
    """Label map [H, W] (values 0..3) -> stored gray pixels."""
    return (labels.astype(np.uint8) * MASK_SCALE).astype(np.uint8)


def decode_mask(pixels: np.ndarray) -> np.ndarray:
    """Stored gray pixels -> label map [H, W] uint8 (robust to small deviations)."""
    return np.clip(np.rint(pixels.astype(np.float32) / MASK_SCALE), 0, len(LABELS) - 1).astype(np.uint8)


def frames_writer(root: str | Path, size: tuple[int, int], fps: float):
    """A VideoWriter for ``frames.mp4`` (H.264 yuv444p, CRF FRAMES_CRF)."""
    from thg_nerf.utils.video import VideoWriter

    return VideoWriter(Path(root) / FILES["frames"], size, fps, pix_fmt_out="yuv444p", crf=FRAMES_CRF)


def masks_writer(root: str | Path, size: tuple[int, int], fps: float):
    """A VideoWriter for ``masks.mkv`` (lossless FFV1 gray); write ``encode_mask(labels)`` frames."""
    from thg_nerf.utils.video import VideoWriter

    return VideoWriter(Path(root) / FILES["masks"], size, fps, codec="ffv1", pix_fmt_out="gray", crf=None,
                       gray=True)


def write_background(root: str | Path, image: np.ndarray) -> None:
    """Write the background plate [H, W, 3] uint8 as ``bg.png``."""
    from PIL import Image

    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(Path(root) / FILES["background"])


def write_transforms(root: str | Path, split: str, intr: Intrinsics, records: Sequence[FrameRecord]) -> None:
    """Write ``transforms_<split>.json`` in the ER-NeRF layout."""
    obj = {
        "focal_len": float(intr.focal), "fl_x": float(intr.focal), "fl_y": float(intr.focal),
        "cx": float(intr.cx), "cy": float(intr.cy), "w": int(intr.w), "h": int(intr.h),
        "frames": [{"img_id": int(r.img_id), "aud_id": int(r.aud_id),
                    "transform_matrix": np.asarray(r.transform_matrix, dtype=float).round(8).tolist(),
                    "eye": round(float(r.eye), 6)} for r in records],
    }
    write_json(Path(root) / FILES[split], obj)


def write_meta(root: str | Path, meta: dict) -> None:
    """Write ``meta.json``; schema and package versions are added here."""
    full = {"schema_version": DATA_SCHEMA_VERSION, "thg_nerf_version": __version__, **meta}
    for key in ("fps", "n_frames", "w", "h"):
        if key not in full:
            raise ValueError(f"meta.json needs '{key}'")
    write_json(Path(root) / FILES["meta"], full)


def write_tracking(root: str | Path, **arrays: np.ndarray) -> None:
    """Write ``tracking.npz`` (see TRACKING_KEYS; extra arrays are allowed)."""
    missing = [k for k in TRACKING_KEYS if k not in arrays]
    if missing:
        raise ValueError(f"tracking.npz needs {missing}")
    np.savez_compressed(Path(root) / FILES["tracking"], **arrays)


def _read_split(root: Path, split: str) -> tuple[Intrinsics, list[FrameRecord]]:
    d = read_json(root / FILES[split])
    try:
        intr = Intrinsics(float(d["focal_len"]), float(d["cx"]), float(d["cy"]), int(d["w"]), int(d["h"]))
        recs = [FrameRecord(int(f["img_id"]), int(f["aud_id"]),
                            np.asarray(f["transform_matrix"], dtype=np.float32), float(f.get("eye", 0.0)))
                for f in d["frames"]]
    except (KeyError, TypeError, ValueError) as e:
        raise ThgError(f"{root / FILES[split]} is malformed ({type(e).__name__}: {e})") from None
    for r in recs:
        if r.transform_matrix.shape != (4, 4):
            raise ThgError(f"{root / FILES[split]}: transform_matrix of frame {r.img_id} is not 4x4")
    return intr, recs


def load_dataset(root: str | Path) -> Dataset:
    """Open and validate a dataset directory (one-line ThgError when missing, malformed or incompatible)."""
    root = Path(root)
    if not root.is_dir():
        raise ThgError(f"dataset directory not found: {root}")
    missing = [name for name in FILES.values() if not (root / name).is_file()]
    if missing:
        raise ThgError(f"{root} is not a complete thg-nerf dataset (missing: {', '.join(missing)}); "
                       "run 'thg-nerf preprocess' again")
    meta = read_json(root / FILES["meta"])
    version = meta.get("schema_version")
    if version != DATA_SCHEMA_VERSION:
        raise IncompatibleVersionError(
            f"{root} was written with dataset schema {version!r} (thg-nerf {meta.get('thg_nerf_version', '?')});"
            f" this thg-nerf reads schema {DATA_SCHEMA_VERSION}: run 'thg-nerf preprocess --force' again")
    intr, train = _read_split(root, "train")
    _, val = _read_split(root, "val")
    n = int(meta["n_frames"])
    for r in train + val:
        if not (0 <= r.img_id < n and 0 <= r.aud_id < n):
            raise ThgError(f"{root}: frame index {r.img_id} out of range (n_frames={n})")
    return Dataset(root=root, meta=meta, intrinsics=intr, train=train, val=val)
