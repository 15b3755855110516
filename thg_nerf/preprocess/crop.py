"""First pass: find the main speaker on subsampled frames and choose one stable crop for the whole clip.

The crop (``--crop auto``) is a square of ``CROP_FACE_RATIO`` face-box sizes plus the head's range of motion,
with the face centre ``FACE_ABOVE_CENTRE`` of the side above the square's centre (room for the shoulders),
clamped to the frame (so a frame that is already a head-and-shoulders shot is kept whole).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from thg_nerf.errors import ThgError
from thg_nerf.log import get_logger, progress
from thg_nerf.utils.video import VideoInfo, iter_frames

log = get_logger(__name__)

#: Side of the crop in face-detector box sizes (the box spans brows to chin): head, hair and shoulders.
CROP_FACE_RATIO = 2.6
#: The face centre sits this fraction of the crop side above the crop centre.
FACE_ABOVE_CENTRE = 0.08
#: Long side of the frames the detector sees, and how many frames it looks at.
DETECT_SIZE = 640
MAX_SAMPLES = 120


@dataclass
class FaceTrack:
    """The main speaker's detections on the sampled frames (source pixels)."""

    times: np.ndarray
    """[M] seconds of the sampled frames that have this face."""
    boxes: np.ndarray
    """[M, 4] x0, y0, x1, y1."""
    n_samples: int
    """How many frames were sampled."""
    max_faces: int
    """Most faces seen in one sampled frame."""

    def to_json(self) -> dict:
        return {"times": self.times.round(4).tolist(), "boxes": self.boxes.round(2).tolist(),
                "n_samples": self.n_samples, "max_faces": self.max_faces}

    @classmethod
    def from_json(cls, d: dict) -> FaceTrack:
        return cls(np.asarray(d["times"], float), np.asarray(d["boxes"], float).reshape(-1, 4),
                   int(d["n_samples"]), int(d["max_faces"]))


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def find_main_face(video: str | Path, info: VideoInfo, size: tuple[int, int]) -> FaceTrack:
    """Detect faces on up to MAX_SAMPLES frames and keep the main speaker's track.

    ``size`` is the source frame size as displayed (after any rotation metadata). Detections are linked
    into tracks by box overlap; the main speaker is the track with the largest sum of box area x
    confidence (big and present most of the time). ThgError when no face is found.
    """
    from thg_nerf.preprocess.models import FaceDetector

    src_w, src_h = size
    duration = max(info.duration, 1.0 / info.fps)
    rate = float(np.clip(MAX_SAMPLES / duration, 0.5, 5.0))
    scale = min(1.0, DETECT_SIZE / max(src_w, src_h))
    filters = f"scale={_even(src_w * scale)}:{_even(src_h * scale)}"
    detector = FaceDetector()
    tracks: list[dict] = []
    n_samples = max_faces = 0
    try:
        frames = iter_frames(video, fps=rate, filters=filters)
        for k, frame in enumerate(progress(frames, total=int(duration * rate) + 1, desc="finding the face",
                                           unit="frame")):
            n_samples += 1
            sx, sy = src_w / frame.shape[1], src_h / frame.shape[0]
            dets = detector(frame)
            max_faces = max(max_faces, len(dets))
            t = k / rate
            for box, score in dets:
                box = box * np.array([sx, sy, sx, sy], np.float32)
                best, best_iou = None, 0.2
                for tr in tracks:
                    if tr["times"][-1] < t - 1e-9:
                        iou = _iou(tr["boxes"][-1], box)
                        if iou > best_iou:
                            best, best_iou = tr, iou
                if best is None:
                    tracks.append({"times": [t], "boxes": [box], "score": 0.0})
                    best = tracks[-1]
                else:
                    best["times"].append(t)
                    best["boxes"].append(box)
                best["score"] += float((box[2] - box[0]) * (box[3] - box[1]) * score)
    finally:
        detector.close()
    if not tracks:
        raise ThgError(f"no face found in {video}")
    main = max(tracks, key=lambda tr: tr["score"])
    log.debug("face detection: %d samples, %d tracks, main track in %d samples", n_samples, len(tracks),
              len(main["times"]))
    return FaceTrack(np.asarray(main["times"]), np.asarray(main["boxes"]), n_samples, max_faces)


def _even(x: float) -> int:
    return max(2, int(round(x / 2)) * 2)


def auto_crop(track: FaceTrack, width: int, height: int) -> tuple[int, int, int]:
    """One square ``(x0, y0, side)`` in source pixels around the main speaker's head and shoulders."""
    b = track.boxes
    centres = np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2], axis=1)
    face = float(np.median(np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])))
    lo, hi = np.percentile(centres, 5, axis=0), np.percentile(centres, 95, axis=0)
    side = CROP_FACE_RATIO * face + float(np.max(hi - lo))
    side = _even(min(side, width, height))
    cx, cy = (lo + hi) / 2
    cy += FACE_ABOVE_CENTRE * side
    x0 = int(np.clip(round(cx - side / 2), 0, width - side))
    y0 = int(np.clip(round(cy - side / 2), 0, height - side))
    return x0, y0, side
