#!/usr/bin/env python
"""How a clip's container times its video and audio, as the decoders see it (docs/BENCHMARKS.md, A/V offset).

    .venv/bin/python benchmarks/bench_av_timing.py ../shared/media/katiehill_8s_512px_25fps.mp4 \\
        ../shared/media/speaker2_20s_1080x1920_25fps.mp4 ../shared/media/macron_50s_512px_30fps.mp4

Per clip: the presentation time of the first video frame and of the first audio samples (ffmpeg's timestamps,
which a player follows), how many audio samples the container's edit list trims at the start (the decoded
length with the edit list minus without it: an AAC encoder's priming), the frames `iter_frames` decodes at the
clip's rate against the coded frames (when the first frame is presented late, the decoder repeats it from 0),
and whether those repeated first frames are identical.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def first_pts(path: Path, stream: str) -> float:
    """Presentation time (s) of the first frame (``stream`` v) or audio frame (a) ffmpeg reads."""
    from thg_nerf.utils.video import ffmpeg_exe

    filt = ["-vf", "showinfo", "-frames:v", "1"] if stream == "v" else ["-af", "ashowinfo", "-frames:a", "1"]
    out = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path), "-map", f"0:{stream}:0", *filt,
                          "-f", "null", "-"], capture_output=True, text=True, check=True).stderr
    return float(re.search(r"pts_time:\s*([-0-9.]+)", out).group(1))


def audio_samples(path: Path, editlist: bool) -> int:
    """Decoded audio samples (first stream, its own rate, mono) with or without the container's edit list."""
    from thg_nerf.utils.video import ffmpeg_exe

    flag = [] if editlist else ["-ignore_editlist", "1"]
    pcm = subprocess.run([ffmpeg_exe(), "-v", "error", "-nostdin", *flag, "-i", str(path), "-map", "0:a:0",
                          "-ac", "1", "-f", "f32le", "-"], capture_output=True, check=True).stdout
    return len(pcm) // 4


def coded_frames(path: Path) -> int:
    """Video packets in the file (ffmpeg's stream copy count)."""
    from thg_nerf.utils.video import ffmpeg_exe

    out = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path), "-map", "0:v:0", "-c", "copy",
                          "-f", "null", "-"], capture_output=True, text=True, check=True).stderr
    return int(re.findall(r"frame=\s*(\d+)", out)[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("clips", nargs="+", type=Path)
    args = p.parse_args()
    from thg_nerf.utils.video import iter_frames

    print("| clip | first video frame at (s) | first audio at (s) | audio samples the edit list trims | "
          "decoded / coded frames | identical leading frames |")
    print("|---|---|---|---|---|---|")
    for clip in args.clips:
        frames = iter(iter_frames(clip))
        first = next(frames)
        same, decoded = 1, 1
        for f in frames:
            if decoded == same and np.array_equal(f, first):
                same += 1
            decoded += 1
        trimmed = audio_samples(clip, False) - audio_samples(clip, True)
        print(f"| {clip.name} | {first_pts(clip, 'v'):.4f} | {first_pts(clip, 'a'):.4f} | {trimmed} | "
              f"{decoded} / {coded_frames(clip)} | {same} |")


if __name__ == "__main__":
    main()
