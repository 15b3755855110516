"""Semantic label maps (background / head / neck / torso) and the background plate.

Labels per frame, from the person probability (mediapipe selfie segmentation) and the landmarks:

- head = the face oval, plus the person pixels inside the oval grown outwards above the jaw (hair, ears):
  each outline point moves away from the face centre by a factor rising from 1.02 along the jaw to
  ``HAIR_GROWTH`` at the top of the forehead;
- neck = person pixels (not head) in a band below the jaw line, ``NECK_LENGTH`` face heights long and
  slightly narrower than the jaw;
- torso = every other person pixel; background = the rest.

Frames without landmarks (long face gaps) label every person pixel torso.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from thg_nerf.dataset import LABELS, encode_mask, masks_writer
from thg_nerf.log import progress
from thg_nerf.preprocess.topology import Topology

HAIR_GROWTH = 2.0
NECK_LENGTH = 0.4
PERSON_THRESHOLD = 127
#: Background plate: pixels this fraction of the frame size away from the person count as background.
BG_MARGIN = 0.02


def _outline(lm: np.ndarray, topo: Topology) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Face outline [M, 2], its centre, the face's up direction and height (pixels)."""
    oval = lm[list(topo.face_oval), :2].astype(np.float64)
    top, chin = lm[list(topo.top), :2].mean(0), lm[topo.chin, :2]
    up = top - chin
    height = float(np.linalg.norm(up)) or 1.0
    return oval, oval.mean(0), up / height, height


def head_and_neck_polygons(lm: np.ndarray, topo: Topology) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(face oval, grown head outline, neck band) polygons [M, 2] in pixels for one frame's landmarks."""
    oval, centre, up, height = _outline(lm, topo)
    rel = (oval - centre) @ up / (0.5 * height)  # -1 at the chin, +1 at the forehead
    factor = np.interp(rel, [-1.0, -0.4, 0.1, 0.6, 1.0], [1.02, 1.02, 1.2, 1.6, HAIR_GROWTH])
    grown = centre + (oval - centre) * factor[:, None]
    jaw_ids = np.flatnonzero(rel < -0.2)
    # the jaw is a contiguous run of the closed outline: rotate it to start after the largest index gap
    if len(jaw_ids) > 2:
        cut = int(np.argmax(np.diff(np.concatenate([jaw_ids, [jaw_ids[0] + len(oval)]]))))
        jaw_ids = np.roll(jaw_ids, -(cut + 1))
    jaw = oval[jaw_ids]
    mid = jaw.mean(0)
    side = np.array([up[1], -up[0]])
    narrowed = mid + ((jaw - mid) @ side)[:, None] * side * 0.8 + ((jaw - mid) @ up)[:, None] * up
    lower = narrowed - up * NECK_LENGTH * height
    neck = np.concatenate([jaw, lower[::-1]]) if len(jaw) > 2 else np.zeros((0, 2))
    return oval, grown, neck


def label_map(person: np.ndarray, lm: np.ndarray | None, topo: Topology) -> np.ndarray:
    """Labels [H, W] uint8 from a person mask [H, W] bool and the frame's landmarks [L, 2+] (or None)."""
    import cv2

    labels = np.where(person, LABELS["torso"], LABELS["background"]).astype(np.uint8)
    if lm is None:
        return labels
    oval, grown, neck = head_and_neck_polygons(lm, topo)
    shape = person.shape

    def fill(poly: np.ndarray) -> np.ndarray:
        m = np.zeros(shape, np.uint8)
        if len(poly) >= 3:
            cv2.fillPoly(m, [np.round(poly * 4).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=2)
        return m.astype(bool)

    head = (fill(grown) & person) | fill(oval)
    neck_m = fill(neck) & person & ~head
    labels[neck_m] = LABELS["neck"]
    labels[head] = LABELS["head"]
    return labels


def write_masks(path_dir: Path, seg: np.ndarray, landmarks: np.ndarray, use_landmarks: np.ndarray,
                topo: Topology, size: tuple[int, int], fps: float) -> None:
    """Write ``masks.mkv`` into ``path_dir``: seg [N, h, w] uint8 person probabilities, landmarks [N, L, 2+]."""
    import cv2

    w, h = size
    with masks_writer(path_dir, size, fps) as writer:
        for i in progress(range(len(seg)), desc="masks", unit="frame"):
            prob = cv2.resize(np.asarray(seg[i]), (w, h), interpolation=cv2.INTER_LINEAR)
            lm = landmarks[i] if use_landmarks[i] else None
            writer.write(encode_mask(label_map(prob > PERSON_THRESHOLD, lm, topo)))


def background_plate(frames: np.ndarray, seg: np.ndarray) -> tuple[np.ndarray, float]:
    """Median of the background pixels over sample frames; pixels never seen are inpainted.

    frames [K, H, W, 3] uint8, seg [K, h, w] uint8 person probabilities. Returns (plate [H, W, 3] uint8,
    fraction of pixels that had to be inpainted).
    """
    import cv2

    k, h, w = frames.shape[:3]
    r = max(1, int(round(BG_MARGIN * max(w, h))))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    bg = np.zeros((k, h, w), bool)
    for i in range(k):
        person = cv2.resize(np.asarray(seg[i]), (w, h), interpolation=cv2.INTER_LINEAR) > 64
        bg[i] = ~cv2.dilate(person.astype(np.uint8), kernel).astype(bool)
    plate = np.zeros((h, w, 3), np.uint8)
    seen = bg.any(axis=0)
    rows = max(1, (64 << 20) // max(k * w * 3 * 4, 1))  # about 64 MB of float32 at a time
    for y0 in range(0, h, rows):
        block = np.asarray(frames[:, y0:y0 + rows], dtype=np.float32)
        block[~bg[:, y0:y0 + rows]] = np.nan
        with warnings.catch_warnings():  # all-NaN pixels (never background) are filled below
            warnings.simplefilter("ignore", RuntimeWarning)
            med = np.nanmedian(block, axis=0)
        plate[y0:y0 + rows] = np.nan_to_num(np.round(med), nan=0).astype(np.uint8)
    hole = (~seen).astype(np.uint8)
    if hole.any():
        plate = cv2.inpaint(plate, hole, max(3, r), cv2.INPAINT_TELEA)
    return plate, float(hole.mean())
