"""Thin wrappers around the bundled mediapipe models (face detection, face mesh, person segmentation) and the
optional ``face-alignment`` landmark backend. All run offline on the CPU.

Frames are RGB uint8 [H, W, 3]. Landmarks come back as [L, 3] float32: x, y in pixels and a relative depth
(mediapipe's z: about the head centre, in the scale of x, i.e. divided by the frame width; smaller = closer).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

import numpy as np

from thg_nerf.errors import MissingDependencyError, ThgError

# quiet mediapipe's native logging (set before its first import)
os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Silence C++ libraries writing straight to file descriptor 2 (mediapipe/TFLite banners)."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no real stderr (e.g. captured in an embedding process)
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _mediapipe():
    try:
        with quiet_native_stderr():
            import mediapipe as mp
    except ImportError:
        raise MissingDependencyError("mediapipe", extra="preprocess", purpose="face tracking") from None
    return mp


class FaceDetector:
    """Full-range face detector (faces up to ~5 m): boxes for the crop and main-speaker choice."""

    def __init__(self, min_confidence: float = 0.5) -> None:
        mp = _mediapipe()
        with quiet_native_stderr():
            self._det = mp.solutions.face_detection.FaceDetection(min_detection_confidence=min_confidence,
                                                                  model_selection=1)
            self._det.process(np.zeros((64, 64, 3), np.uint8))

    def __call__(self, frame: np.ndarray) -> list[tuple[np.ndarray, float]]:
        """[(box [x0, y0, x1, y1] in pixels, score)] of the faces in a frame."""
        h, w = frame.shape[:2]
        res = self._det.process(frame)
        out = []
        for d in res.detections or []:
            b = d.location_data.relative_bounding_box
            box = np.array([b.xmin * w, b.ymin * h, (b.xmin + b.width) * w, (b.ymin + b.height) * h], np.float32)
            out.append((box, float(d.score[0]) if d.score else 1.0))
        return out

    def close(self) -> None:
        self._det.close()


class MediapipeLandmarker:
    """Face mesh with refined irises (478 landmarks) in video mode (tracks between frames)."""

    name = "mediapipe"

    def __init__(self, max_faces: int = 1) -> None:
        mp = _mediapipe()
        with quiet_native_stderr():
            self._mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=False, max_num_faces=max_faces,
                                                         refine_landmarks=True, min_detection_confidence=0.5,
                                                         min_tracking_confidence=0.5)
            self._mesh.process(np.zeros((64, 64, 3), np.uint8))  # wait for the models to load (and log)
        self._first = True

    def __call__(self, frame: np.ndarray) -> list[np.ndarray]:
        """Landmarks [478, 3] (x px, y px, relative z) of each face found."""
        h, w = frame.shape[:2]
        if self._first:  # the landmark model loads (and logs) when the first face turns up
            with quiet_native_stderr():
                res = self._mesh.process(frame)
            self._first = not res.multi_face_landmarks
        else:
            res = self._mesh.process(frame)
        faces = []
        for f in res.multi_face_landmarks or []:
            a = np.array([(p.x * w, p.y * h, p.z) for p in f.landmark], dtype=np.float32)
            faces.append(a)
        return faces

    def close(self) -> None:
        self._mesh.close()


class FaceAlignmentLandmarker:
    """The optional ``face-alignment`` package (68 iBUG landmarks, 3D); its weights download on first use."""

    name = "face-alignment"

    def __init__(self, max_faces: int = 1) -> None:
        try:
            import face_alignment
        except ImportError:
            raise MissingDependencyError("face-alignment", extra="face-alignment",
                                         purpose="--landmarks face-alignment") from None
        try:
            kind = face_alignment.LandmarksType.THREE_D
        except AttributeError:
            kind = face_alignment.LandmarksType._3D
        try:
            self._fa = face_alignment.FaceAlignment(kind, device="cpu", flip_input=False)
        except Exception as e:  # weights missing offline, incompatible versions, ...
            raise ThgError(f"cannot start face-alignment ({type(e).__name__}: {str(e)[:120]}); "
                           "use --landmarks mediapipe") from None

    def __call__(self, frame: np.ndarray) -> list[np.ndarray]:
        w = frame.shape[1]
        preds = self._fa.get_landmarks_from_image(frame) or []
        out = []
        for p in preds:
            p = np.asarray(p, dtype=np.float32)
            z = (p[:, 2] - p[:, 2].mean()) / w if p.shape[1] > 2 else np.zeros(len(p), np.float32)
            out.append(np.concatenate([p[:, :2], z[:, None]], axis=1).astype(np.float32))
        return out

    def close(self) -> None:
        pass


def make_landmarker(backend: str, max_faces: int = 1):
    """A landmark backend by name (``mediapipe`` or ``face-alignment``)."""
    if backend == "mediapipe":
        return MediapipeLandmarker(max_faces)
    if backend == "face-alignment":
        return FaceAlignmentLandmarker(max_faces)
    raise ThgError(f"unknown landmark backend '{backend}' (use mediapipe or face-alignment)")


class PersonSegmenter:
    """Person-vs-background probability from mediapipe selfie segmentation (general model, 256x256)."""

    def __init__(self) -> None:
        mp = _mediapipe()
        with quiet_native_stderr():
            self._seg = mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0)
            self._seg.process(np.zeros((64, 64, 3), np.uint8))

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """Probability [H, W] uint8 (0..255) at the frame's size."""
        mask = self._seg.process(frame).segmentation_mask
        return np.clip(mask * 255.0 + 0.5, 0, 255).astype(np.uint8)

    def close(self) -> None:
        self._seg.close()
