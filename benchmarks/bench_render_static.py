#!/usr/bin/env python
"""``thg-nerf render --pose static``: wall time with the static-camera fast path and without it
(``--no-fast-path``), and how far apart the two outputs are.

Usage: python benchmarks/bench_render_static.py --run RUN --audio WAV [--end 3] [--size 256] [--json OUT]

Both renders go through the CLI (model loading, features, rendering, mark, H.264 CRF 18, audio mux), one after
the other, so the ratio is from one run. The outputs are decoded and compared frame by frame (PSNR; both carry
the same provenance mark and go through the same encoder).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def render(run: Path, audio: Path, out: Path, end: float, size: int, fast: bool) -> float:
    """Wall seconds of one ``thg-nerf render`` call."""
    cmd = [sys.executable, "-m", "thg_nerf.cli.main", "render", str(run), "--audio", str(audio), "-o", str(out),
           "--pose", "static", "--end", f"{end:g}", "--size", str(size), "-q"]
    t = time.perf_counter()
    subprocess.run(cmd + ([] if fast else ["--no-fast-path"]), check=True)
    return time.perf_counter() - t


def main() -> int:
    from thg_nerf.utils.video import iter_frames

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, required=True)
    p.add_argument("--audio", type=Path, required=True)
    p.add_argument("--end", type=float, default=3.0, help="seconds of the audio to render")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="thg_bench_render_") as td:
        fast_mp4, full_mp4 = Path(td) / "fast.mp4", Path(td) / "full.mp4"
        t_fast = render(args.run, args.audio, fast_mp4, args.end, args.size, True)
        t_full = render(args.run, args.audio, full_mp4, args.end, args.size, False)
        psnrs = []
        for a, b in zip(iter_frames(fast_mp4), iter_frames(full_mp4), strict=True):
            mse = float(np.mean((a.astype(np.float64) - b) ** 2))
            psnrs.append(99.0 if mse == 0 else 10 * np.log10(255.0 ** 2 / mse))
    n = len(psnrs)
    res = {"run": str(args.run), "audio": str(args.audio), "seconds_of_audio": args.end, "size": args.size,
           "frames": n, "fast_s": round(t_fast, 1), "full_s": round(t_full, 1),
           "fast_s_per_frame": round(t_fast / n, 3), "full_s_per_frame": round(t_full / n, 3),
           "speedup": round(t_full / t_fast, 1), "psnr_fast_vs_full_min": round(min(psnrs), 2),
           "psnr_fast_vs_full_mean": round(float(np.mean(psnrs)), 2), "load_avg": os.getloadavg()}
    print(json.dumps(res, indent=1))
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
