"""Host videos for the provenance watermark tests and benchmark: the synthetic head over a background plate.

``plate="textured"`` puts the head in front of a procedural room-like plate (noise at several scales, edges),
like a render of a real person in front of their recorded background; ``plate="flat"`` in front of one
colour, like ``render --bg white`` (the hard case: the mark only lives on the person).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from thg_nerf.testing import synthetic as S


def textured_plate(size: int, seed: int = 0) -> np.ndarray:
    """[size, size, 3] uint8: smooth colour gradients, mid-scale blobs, fine grain and a few hard edges."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = np.stack([0.45 + 0.2 * xx, 0.4 + 0.15 * yy, 0.35 + 0.1 * (1 - xx)], axis=-1)
    for sigma, amp in ((size / 20, 0.06), (size / 80, 0.025), (size / 256, 0.012)):
        noise = gaussian_filter(rng.standard_normal((size, size)), sigma)
        tint = 1.0 + 0.2 * rng.standard_normal(3)  # mostly luminance texture, a little colour
        img += amp * (noise / (noise.std() + 1e-9))[..., None] * tint
    for _ in range(6):  # shelves / frames: rectangles with hard edges
        x0, y0 = rng.integers(0, size * 3 // 4, 2)
        w, h = rng.integers(size // 10, size // 3, 2)
        img[y0:y0 + h, x0:x0 + w] += rng.uniform(-0.15, 0.15, 3)
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def talking_frames(n_frames: int, size: int = 512, fps: float = 25.0, plate: str = "textured",
                   seed: int = 0) -> Iterator[np.ndarray]:
    """Yield ``n_frames`` uint8 frames [size, size, 3]: the synthetic head (moving, talking, blinking) over
    a plate (``"textured"`` or ``"flat"``). The head is rendered at half size and upscaled (fast)."""
    from PIL import Image

    scene = S.Scene(seed=seed)
    half = max(16, size // 2)
    intr = scene.intrinsics(half)
    rot, trans = S.head_motion(n_frames, fps, 8.0, seed, scene)
    c2w = S.c2w_from_rt(rot, trans)
    mouth = 0.5 + 0.5 * np.sin(np.arange(n_frames) * 2 * np.pi * 3.0 / fps)
    eye = S.blink_signal(n_frames, fps, seed)
    bg = textured_plate(size, seed) if plate == "textured" else np.full((size, size, 3), (96, 128, 160), np.uint8)
    for i in range(n_frames):
        rgb, labels = S.render_synthetic_frame(c2w[i], intr, float(mouth[i]), float(eye[i]), scene, ss=1)
        fg = Image.fromarray((rgb * 255).round().astype(np.uint8)).resize((size, size), Image.Resampling.BILINEAR)
        mask = Image.fromarray(((labels > 0) * 255).astype(np.uint8)).resize((size, size), Image.Resampling.BILINEAR)
        a = np.asarray(mask, np.float32)[..., None] / 255.0
        yield (np.asarray(fg, np.float32) * a + bg * (1.0 - a)).round().astype(np.uint8)
