"""``preview.mp4``: the processed clip with tinted masks, landmarks and the tracked head axes, for a person to
check the preprocessing at a glance (at most ``PREVIEW_SIZE`` pixels, with the clip's audio)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from thg_nerf.dataset import LABELS, Intrinsics, decode_mask
from thg_nerf.log import progress
from thg_nerf.utils.video import VideoWriter, iter_frames

PREVIEW_SIZE = 256
#: Tint per label (RGB) and its opacity.
TINTS = {LABELS["head"]: (255, 60, 60), LABELS["neck"]: (60, 220, 60), LABELS["torso"]: (70, 110, 255)}
TINT_ALPHA = 0.3
#: Length of the drawn head axes (dm).
AXIS_DM = 0.8


def preview_size(size: tuple[int, int]) -> tuple[int, int]:
    w, h = size
    s = min(1.0, PREVIEW_SIZE / max(w, h))
    return max(2, int(round(w * s / 2)) * 2), max(2, int(round(h * s / 2)) * 2)


def write_preview(path: Path, frames_path: Path, masks_path: Path, audio_path: Path | None, fps: float,
                  intr: Intrinsics, landmarks: np.ndarray, state: np.ndarray, rotation: np.ndarray,
                  translation: np.ndarray) -> None:
    """Render the preview. landmarks [N, L, 2]; state [N] int (0 detected, 1 interpolated, 2 excluded);
    rotation [N, 3, 3], translation [N, 3] head-to-camera (OpenCV)."""
    import cv2

    pw, ph = preview_size((intr.w, intr.h))
    s = pw / intr.w
    filt = f"scale={pw}:{ph}:flags=area"
    tint = np.zeros((256, 3), np.uint8)  # label -> colour lookup (0 = untinted)
    for label, rgb in TINTS.items():
        tint[label] = rgb
    k = intr.matrix() * np.array([[s], [s], [1.0]])
    axes = np.array([[0, 0, 0], [AXIS_DM, 0, 0], [0, AXIS_DM, 0], [0, 0, AXIS_DM]], np.float64)
    colours = ((255, 0, 0), (0, 255, 0), (0, 128, 255))
    with VideoWriter(path, (pw, ph), fps, crf=26, audio_path=audio_path,
                     extra_params=["-preset", "veryfast"]) as writer:
        pairs = zip(iter_frames(frames_path, filters=filt), iter_frames(masks_path, filters=filt, gray=True))
        for i, (frame, mask) in enumerate(progress(pairs, total=len(landmarks), desc="preview", unit="frame")):
            if i >= len(landmarks):
                break
            labels = decode_mask(mask)
            blend = cv2.addWeighted(frame, 1 - TINT_ALPHA, tint[labels], TINT_ALPHA, 0.0)
            img = np.where((labels > 0)[..., None], blend, frame)
            if state[i] < 2:
                pts = np.round(landmarks[i] * s).astype(int)
                ok = (pts[:, 0] >= 0) & (pts[:, 0] < pw) & (pts[:, 1] >= 0) & (pts[:, 1] < ph)
                img[pts[ok, 1], pts[ok, 0]] = (255, 255, 0) if state[i] == 0 else (255, 128, 0)
                cam = axes @ rotation[i].T + translation[i]
                if np.all(cam[:, 2] > 1e-3):
                    uv = cam[:, :2] / cam[:, 2:3] * k[0, 0] + k[:2, 2]
                    o = tuple(int(v) for v in np.round(uv[0]))
                    for j in range(3):
                        cv2.line(img, o, tuple(int(v) for v in np.round(uv[j + 1])), colours[j], 2,
                                 cv2.LINE_AA)
            else:
                cv2.putText(img, "no face (excluded)", (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 80, 80), 1,
                            cv2.LINE_AA)
            cv2.putText(img, f"{i}", (6, ph - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
            writer.write(img)
