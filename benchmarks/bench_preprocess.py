"""Benchmark ``thg-nerf preprocess``: wall time, peak memory and the tracking quality it reports.

Runs the real CLI in a subprocess (so imports, decoding and encoding are all counted) and reads the peak
resident memory of the largest process of the run (the CLI or one of its ffmpeg children) from
``resource.getrusage(RUSAGE_CHILDREN)``. Also prints the load average, since other jobs may share the CPU.

    .venv/bin/python benchmarks/bench_preprocess.py                      # the 50 s macron clip at 512 px
    .venv/bin/python benchmarks/bench_preprocess.py --loop 6             # the same clip looped to ~5 minutes
    .venv/bin/python benchmarks/bench_preprocess.py --video other.mp4 --size 256
    .venv/bin/python benchmarks/bench_preprocess.py --oracle          # tracker vs the synthetic oracle, 5 seeds
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_VIDEO = REPO.parent / "shared" / "media" / "macron_50s_512px_30fps.mp4"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--loop", type=int, default=1, help="concatenate the clip this many times (memory test)")
    ap.add_argument("--keep", type=Path, help="write the dataset here instead of a temporary directory")
    ap.add_argument("--oracle", action="store_true", help="only the tracker on the synthetic landmark oracle")
    args = ap.parse_args()
    if args.oracle:
        return oracle()
    if not args.video.is_file():
        print(f"video not found: {args.video}", file=sys.stderr)
        return 2
    sys.path.insert(0, str(REPO))
    from thg_nerf.utils.video import ffmpeg_exe

    with tempfile.TemporaryDirectory(prefix="bench_preprocess_") as tmp:
        video = args.video
        if args.loop > 1:
            video = Path(tmp) / f"looped_{args.loop}x.mp4"
            subprocess.run([ffmpeg_exe(), "-y", "-v", "error", "-stream_loop", str(args.loop - 1), "-i",
                            str(args.video), "-c", "copy", str(video)], check=True)
        out = args.keep or Path(tmp) / "data"
        cmd = [sys.executable, "-m", "thg_nerf.cli.main", "preprocess", "-q", str(video), "-o", str(out),
               "--size", str(args.size), "--force"]
        load0 = os.getloadavg()
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        load1 = os.getloadavg()
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            return proc.returncode
        report = json.loads((out / "report.json").read_text())
    result = {
        "video": str(args.video.name) + (f" x{args.loop}" if args.loop > 1 else ""),
        "size": args.size, "cpus": os.cpu_count(), "wall_s": round(wall, 1), "peak_rss_mb": round(peak_mb),
        "loadavg_before": [round(v, 2) for v in load0], "loadavg_after": [round(v, 2) for v in load1],
        "frames": report["frames"], "duration_s": report["duration_s"], "faces_missing": report["faces_missing"],
        "tracking": report["tracking"], "timings_s": report["timings_s"],
    }
    print(json.dumps(result, indent=2))
    return 0


def oracle(seeds: int = 5, n_frames: int = 300) -> int:
    """Tracker errors against the synthetic oracle (1 px noise, 25 fps, +-24 deg yaw), one line per seed."""
    sys.path.insert(0, str(REPO))
    import numpy as np

    from thg_nerf.log import setup_logging
    from thg_nerf.preprocess.topology import mediapipe_topology
    from thg_nerf.preprocess.tracker import track_head
    from thg_nerf.testing.landmarks import synthetic_sequence

    setup_logging(quiet=True)
    print("| seed | rotation error mean / max (deg) | translation error max (% of distance) | focal error (%) "
          "| reprojection mean (px) | time (s) |")
    print("|---|---|---|---|---|---|")
    for seed in range(seeds):
        seq = synthetic_sequence(n_frames=n_frames, noise_px=1.0, seed=seed)
        t0 = time.perf_counter()
        res = track_head(seq.landmarks, seq.z_rel, np.ones(n_frames), (seq.w, seq.h), (seq.cx, seq.cy),
                         mediapipe_topology(), seq.fps)
        secs = time.perf_counter() - t0
        m = np.einsum("nji,njk->ik", res.rotation, seq.rotation)
        u, _, vt = np.linalg.svd(m)
        q = u @ np.diag([1.0, 1.0, np.linalg.det(u @ vt)]) @ vt
        rel = np.einsum("nij,jk,nlk->nil", res.rotation, q, seq.rotation)
        rot = np.degrees(np.arccos(np.clip((np.trace(rel, axis1=1, axis2=2) - 1) / 2, -1, 1)))
        gt = seq.camera_points()[:, res.rigid].mean(1)
        x = res.shape[None] + np.einsum("nk,kld->nld", res.expression, res.basis)
        est = (np.einsum("nij,nlj->nli", res.rotation, x) + res.translation[:, None])[:, res.rigid].mean(1)
        trans = np.linalg.norm(est - gt, axis=1) / np.linalg.norm(gt, axis=1)
        print(f"| {seed} | {rot.mean():.3f} / {rot.max():.3f} | {100 * trans.max():.2f} | "
              f"{100 * (res.focal / seq.focal - 1):+.2f} | {np.nanmean(res.residuals):.3f} | {secs:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
