"""Second pass, the only full decode: one streaming pass over the cropped/resized frames that runs the
landmarker and the person segmenter, writes ``frames.mp4``, and keeps only small per-frame arrays in memory.

Per frame it keeps the main speaker's landmarks [L, 3], the person probability at <= 256 px (appended to a
raw file on disk, ~64 KB a frame) and, for a few evenly spread frames, the frame itself for the background
plate. Memory therefore stays flat whatever the clip length.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from thg_nerf.dataset import frames_writer
from thg_nerf.log import get_logger, progress
from thg_nerf.utils.video import iter_frames

log = get_logger(__name__)

#: Long side of the stored person probability maps (the segmentation model runs at 256x256).
SEG_SIZE = 256
#: Frames kept for the background plate.
BG_SAMPLES = 40

SEG_FILE = "seg.u8"
SCAN_FILE = "scan.npz"
BG_FILE = "bg_samples.npy"


@dataclass
class ScanResult:
    """Per-frame results of the streaming pass (N frames, L landmarks)."""

    landmarks: np.ndarray
    """[N, L, 3] float32: x, y in output pixels and relative depth; NaN where no face was found."""
    n_faces: np.ndarray
    """[N] int16 faces found per frame."""
    seg_size: tuple[int, int]
    """(w, h) of the stored person probability maps."""
    bg_ids: np.ndarray
    """[K] frame indices kept for the background plate."""

    @property
    def n_frames(self) -> int:
        return len(self.landmarks)

    @property
    def valid(self) -> np.ndarray:
        return ~np.isnan(self.landmarks[:, 0, 0])

    def save(self, work: Path) -> None:
        np.savez(work / SCAN_FILE, landmarks=self.landmarks, n_faces=self.n_faces,
                 seg_size=np.array(self.seg_size), bg_ids=self.bg_ids)

    @classmethod
    def load(cls, work: Path) -> ScanResult:
        with np.load(work / SCAN_FILE) as z:
            return cls(z["landmarks"], z["n_faces"], tuple(int(v) for v in z["seg_size"]), z["bg_ids"])

    def seg(self, work: Path) -> np.ndarray:
        """Person probabilities [N, h, w] uint8 (memory-mapped from the work directory)."""
        w, h = self.seg_size
        return np.memmap(work / SEG_FILE, dtype=np.uint8, mode="r", shape=(self.n_frames, h, w))

    def bg_frames(self, work: Path) -> np.ndarray:
        """[K, H, W, 3] uint8 frames kept for the background plate."""
        return np.load(work / BG_FILE, mmap_mode="r")


def seg_size_for(size: tuple[int, int]) -> tuple[int, int]:
    """(w, h) of the stored person maps for frames of ``size``."""
    w, h = size
    s = min(1.0, SEG_SIZE / max(w, h))
    return max(1, round(w * s)), max(1, round(h * s))


def _pick_face(faces: list[np.ndarray], target: np.ndarray | None) -> np.ndarray | None:
    """The face nearest ``target`` (previous centre), else the largest."""
    if not faces:
        return None
    if len(faces) == 1:
        return faces[0]
    if target is not None:
        return min(faces, key=lambda f: float(np.linalg.norm(f[:, :2].mean(0) - target)))
    return max(faces, key=lambda f: float(np.ptp(f[:, 0]) * np.ptp(f[:, 1])))


def scan_video(video: str | Path, work: Path, *, filters: str, fps: float, size: tuple[int, int],
               backend: str, max_faces: int, start_centre: tuple[float, float] | None, n_est: int) -> ScanResult:
    """Decode ``video`` through ``filters`` at ``fps``, track landmarks/segmentation, write work/frames.mp4."""
    import cv2

    from thg_nerf.preprocess.models import PersonSegmenter, make_landmarker

    sw, sh = seg_size_for(size)
    bg_every = max(1, n_est // BG_SAMPLES)
    landmarker = make_landmarker(backend, max_faces)
    segmenter = PersonSegmenter()
    lms: list[np.ndarray | None] = []
    counts: list[int] = []
    bg_ids: list[int] = []
    bg_frames: list[np.ndarray] = []
    target = None if start_centre is None else np.asarray(start_centre, np.float32)
    try:
        with frames_writer(work, size, fps) as writer, open(work / SEG_FILE, "wb") as seg_file:
            frames = iter_frames(video, fps=fps, filters=filters)
            for i, frame in enumerate(progress(frames, total=n_est, desc="tracking face", unit="frame")):
                if frame.shape[1::-1] != tuple(size):
                    frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
                writer.write(frame)
                faces = landmarker(frame)
                face = _pick_face(faces, target)
                lms.append(face)
                counts.append(len(faces))
                if face is not None:
                    target = face[:, :2].mean(0)
                small = cv2.resize(frame, (sw, sh), interpolation=cv2.INTER_AREA) if (sw, sh) != size else frame
                seg_file.write(segmenter(small).tobytes())
                if i % bg_every == 0:
                    bg_ids.append(i)
                    bg_frames.append(frame.copy())
    finally:
        landmarker.close()
        segmenter.close()
    n_lm = next((f.shape[0] for f in lms if f is not None), 478)
    landmarks = np.full((len(lms), n_lm, 3), np.nan, np.float32)
    for i, f in enumerate(lms):
        if f is not None:
            landmarks[i] = f
    np.save(work / BG_FILE, np.stack(bg_frames) if bg_frames else np.zeros((0, size[1], size[0], 3), np.uint8))
    result = ScanResult(landmarks, np.asarray(counts, np.int16), (sw, sh), np.asarray(bg_ids, np.int64))
    result.save(work)
    return result
