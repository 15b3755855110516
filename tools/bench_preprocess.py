"""Benchmark ``thg-nerf preprocess``: wall time, peak memory and the tracking quality it reports.

Runs the real CLI in a subprocess (so imports, decoding and encoding are all counted) and reads the peak
resident memory of the largest process of the run (the CLI or one of its ffmpeg children) from
``resource.getrusage(RUSAGE_CHILDREN)``. Also prints the load average, since other jobs may share the CPU.

    .venv/bin/python tools/bench_preprocess.py                      # the 50 s macron clip at 512 px
    .venv/bin/python tools/bench_preprocess.py --loop 6             # the same clip looped to ~5 minutes
    .venv/bin/python tools/bench_preprocess.py --video other.mp4 --size 256
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
    args = ap.parse_args()
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


if __name__ == "__main__":
    sys.exit(main())
