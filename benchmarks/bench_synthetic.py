#!/usr/bin/env python
"""Synthetic ground-truth dataset: generation time and how exact its truth is.

Usage: python benchmarks/bench_synthetic.py [--frames 120] [--size 128]
Prints generation time, frames.mp4 PSNR against the in-memory render, mouth-centroid reprojection error and
the correlation of the rendered mouth area with the audio envelope.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from thg_nerf.dataset import load_dataset  # noqa: E402
from thg_nerf.log import setup_logging  # noqa: E402
from thg_nerf.testing import synthetic as S  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=120)
    p.add_argument("--size", type=int, default=128)
    args = p.parse_args()
    setup_logging(quiet=True)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        syn = S.make_synthetic_dataset(Path(tmp) / "d", n_frames=args.frames, size=args.size)
        gen_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        renders = [syn.render(i)[0] for i in range(syn.n_frames)]
        render_ms = 1000 * (time.perf_counter() - t0) / syn.n_frames
        data = load_dataset(syn.root)
        video = np.stack(list(data.iter_frames())).astype(np.float64) / 255.0
        boxes = data.tracking()["mouth_box"]
    psnr = np.array([10 * np.log10(1.0 / np.mean((v - r) ** 2)) for v, r in zip(video, renders)])
    mouth3d = syn.scene.mouth_point()
    errs = []
    for i in np.flatnonzero(syn.mouth_open > 0.6):
        lips = syn.landmarks[i, list(S.LIPS_OUTER)]
        got = S.dark_centroid(renders[i], np.concatenate([lips.min(0), lips.max(0)]), 0.3, 0.9)
        errs.append(np.linalg.norm(got - S.project(mouth3d, syn.rotation[i], syn.translation[i], syn.intrinsics)))
    (x0, y0), (x1, y1) = np.floor(boxes[:, :2].min(0)).astype(int), np.ceil(boxes[:, 2:].max(0)).astype(int)
    area = np.clip((0.9 - video[:, y0:y1, x0:x1].sum(-1)) / 0.6, 0, 1).sum((1, 2))
    print(f"synthetic dataset {args.frames} frames {args.size}x{args.size}: generated in {gen_s:.2f} s "
          f"(render {render_ms:.1f} ms/frame)")
    print(f"frames.mp4 vs render PSNR: min {psnr.min():.1f} dB, mean {psnr.mean():.1f} dB")
    print(f"mouth centroid vs projected mouth centre ({len(errs)} open frames): max {max(errs):.2f} px, "
          f"mean {np.mean(errs):.2f} px")
    print(f"corr(rendered mouth area in frames.mp4, audio RMS envelope): {np.corrcoef(area, syn.envelope)[0, 1]:.3f}")


if __name__ == "__main__":
    main()
