#!/usr/bin/env python
"""Provenance watermark: detection rate per transformation, false positives, PSNR, embed and verify speed.

Usage: python benchmarks/bench_provenance.py [--trials 20] [--null-trials 40] [--json OUT] [--run RUN --drive WAV]

Marked hosts are written the way ``render`` writes its output (``open_output``, H.264 CRF 18): the real
talking-head clips of ../shared/media (when present; first 20 s of the macron clip, all of katiehill) and
10 s synthetic renders over a textured and over a flat plate (``thg_nerf.testing.provenance``), and with
``--run`` 10 s of that run rendered at 512² over a flat white background (``render --bg white``). Each trial
cuts a random 3-second excerpt of a host (round robin), applies one transformation, re-encodes it with x264
(CRF 23; CRF 35 for the re-encoding row) and runs ``verify``; a trial counts as detected when the mark is
found with the exact payload. False positives: random 3 s excerpts and whole files of the unmarked clips and
unmarked synthetic renders.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from thg_nerf.log import setup_logging  # noqa: E402
from thg_nerf.provenance import Payload, Watermarker, verify_video  # noqa: E402
from thg_nerf.render.output import open_output  # noqa: E402
from thg_nerf.testing.provenance import talking_frames  # noqa: E402
from thg_nerf.utils.video import VideoWriter, ffmpeg_exe, iter_frames, probe_video  # noqa: E402

MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"
PAYLOAD = Payload.create(0x5EED, consent=True, tool="render")
X264 = ["-c:v", "libx264", "-crf", "23"]
EXCERPT_S = 3.0


def transformation(name: str, rng: np.random.Generator, fps: float) -> tuple[list[str], str]:
    """ffmpeg output options of one random instance of a transformation, and its description."""
    if name == "excerpt only":
        return X264, "x264 CRF 23"
    if name == "re-encode CRF 35":
        return ["-c:v", "libx264", "-crf", "35"], "x264 CRF 35"
    if name == "half size":
        return ["-vf", "scale=trunc(iw/4)*2:trunc(ih/4)*2", *X264], "0.5x"
    if name == "brightness +-10%":
        f = float(rng.choice([0.9, 1.1]))
        return ["-vf", f"lutyuv=y=val*{f}", *X264], f"luma x{f}"
    if name == "contrast +-10%":
        f = float(rng.choice([0.9, 1.1]))
        return ["-vf", f"eq=contrast={f}", *X264], f"contrast {f}"
    if name == "fps 25<->30":
        to = 30 if round(fps) == 25 else 25
        return ["-vf", f"fps={to}", *X264], f"{fps:g}->{to} fps"
    if name == "crop <=5% per side":
        left, right, top, bottom = rng.uniform(0.0, 0.05, 4)
        vf = (f"crop=trunc(iw*{1 - left - right:.4f}/2)*2:trunc(ih*{1 - top - bottom:.4f}/2)*2:"
              f"iw*{left:.4f}:ih*{top:.4f}")
        return ["-vf", vf, *X264], f"crop l{left:.3f} r{right:.3f} t{top:.3f} b{bottom:.3f}"
    if name == "all at once (not required)":
        vf = "crop=trunc(iw*0.92/2)*2:trunc(ih*0.92/2)*2:iw*0.04:ih*0.04,scale=trunc(iw/4)*2:-2,eq=contrast=0.9"
        return ["-vf", f"{vf},fps={30 if round(fps) == 25 else 25}", "-c:v", "libx264", "-crf", "35"], "all"
    raise ValueError(name)


TRANSFORMS = ("excerpt only", "re-encode CRF 35", "half size", "brightness +-10%", "contrast +-10%",
              "fps 25<->30", "crop <=5% per side", "all at once (not required)")


def cut(src: Path, dst: Path, start: float, options: list[str], duration: float = EXCERPT_S) -> None:
    subprocess.run([ffmpeg_exe(), "-v", "error", "-nostdin", "-y", "-ss", f"{start:.3f}", "-i", str(src),
                    "-t", f"{duration:.3f}", "-an", *options, str(dst)], check=True)


def render_host(run: Path, drive: Path, seconds: float = 10.0, size: int = 512) -> tuple[list[np.ndarray], float]:
    """Unmarked frames of a real run saying ``drive`` over a flat white background (static camera)."""
    from thg_nerf.audio.io import load_audio
    from thg_nerf.render.talking_head import TalkingHead

    head = TalkingHead.load(run)
    wave = load_audio(drive, 16000, end=seconds)
    return list(head.frames(wave, 16000, poses="static", bg="white", size=size)), head.fps


def write_hosts(tmp: Path, run: Path | None = None, drive: Path | None = None
                ) -> tuple[dict[str, tuple[Path, float, float]], dict[str, tuple[Path, float, float]], dict]:
    """Marked and unmarked host videos {name: (path, fps, duration)} and embedding statistics."""
    marker = Watermarker(PAYLOAD)
    sources: dict[str, tuple[list[np.ndarray], float]] = {}
    if run is not None and drive is not None:
        sources["render-white"] = render_host(run, drive)
    if MEDIA.is_dir():
        for name, seconds in (("macron_50s_512px_30fps.mp4", 20.0), ("katiehill_8s_512px_25fps.mp4", 8.0)):
            if (MEDIA / name).is_file():
                fps = probe_video(MEDIA / name, count=False).fps
                frames = [f.copy() for _, f in zip(range(int(seconds * fps)), iter_frames(MEDIA / name))]
                sources[name.split("_")[0]] = (frames, fps)
    for plate in ("textured", "flat"):
        sources[f"synthetic-{plate}"] = (list(talking_frames(250, 512, 25.0, plate=plate, seed=7)), 25.0)
    marked, unmarked, psnrs, flat_changed = {}, {}, [], []
    for name, (frames, fps) in sources.items():
        path = tmp / f"{name}_marked.mp4"
        with open_output(path, frames[0].shape[1::-1], fps, marker=marker) as w:
            for f in frames:
                w.write(f)
        marked[name] = (path, fps, len(frames) / fps)
        for f in frames[::10]:
            m = marker.mark(f)
            mse = np.mean((m.astype(np.float64) - f) ** 2)
            psnrs.append(10 * np.log10(255 ** 2 / mse) if mse > 0 else np.inf)
            if name == "synthetic-flat":  # the flat plate (corners, away from the head)
                flat_changed.append(float((m[:64, :64] != f[:64, :64]).mean()))
        if name.startswith(("synthetic", "render")):
            path = tmp / f"{name}_unmarked.mp4"
            with VideoWriter(path, frames[0].shape[1::-1], fps, crf=18) as w:
                for f in frames:
                    w.write(f)
            unmarked[name] = (path, fps, len(frames) / fps)
    for name in ("macron_50s_512px_30fps.mp4", "katiehill_8s_512px_25fps.mp4", "speaker2_20s_1080x1920_25fps.mp4"):
        if (MEDIA / name).is_file():
            info = probe_video(MEDIA / name, count=False)
            unmarked[name.split("_")[0]] = (MEDIA / name, info.fps, info.duration)
    stats = {"psnr_min_db": float(np.min(psnrs)), "psnr_mean_db": float(np.mean(psnrs)),
             "flat_plate_pixels_changed": float(np.mean(flat_changed)), "frames_checked": len(psnrs)}
    return marked, unmarked, stats


def embed_speed(n: int = 200) -> dict:
    frame = next(iter(talking_frames(1, 512, seed=1)))
    marker = Watermarker(PAYLOAD)
    for _ in range(5):
        marker.mark(frame)
    wall, cpu = [], []
    for _ in range(n):
        t, c = time.perf_counter(), time.process_time()
        marker.mark(frame)
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return {"embed_ms_wall_median": 1000 * float(np.median(wall)), "embed_ms_cpu_mean": 1000 * float(np.mean(cpu))}


def verify_speed(tmp: Path, marked: dict) -> dict:
    path, fps, _ = marked["synthetic-textured"]
    clip = tmp / "ten_seconds.mp4"
    cut(path, clip, 0.0, X264, duration=10.0)
    times = []
    for _ in range(3):
        t = time.perf_counter()
        det = verify_video(clip)
        times.append(time.perf_counter() - t)
    return {"verify_10s_clip_s_min": min(times), "verify_10s_clip_s_max": max(times),
            "verify_10s_found": bool(det.found)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=20, help="excerpts per transformation")
    p.add_argument("--null-trials", type=int, default=40, help="random unmarked excerpts")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--run", type=Path, help="also a host rendered by this run over a white background (10 s, "
                   "512², static camera), saying --drive")
    p.add_argument("--drive", type=Path, help="the audio of the --run host")
    args = p.parse_args()
    setup_logging(quiet=True)
    rng = np.random.default_rng(args.seed)
    results: dict = {"payload": PAYLOAD.to_dict()}
    with tempfile.TemporaryDirectory(prefix="bench_prov_") as td:
        tmp = Path(td)
        marked, unmarked, stats = write_hosts(tmp, args.run, args.drive)
        results["hosts_marked"] = sorted(marked)
        results["hosts_unmarked"] = sorted(unmarked)
        results.update(stats)
        results.update(embed_speed())
        results.update(verify_speed(tmp, marked))
        rows = {}
        names = sorted(marked)
        for t_name in TRANSFORMS:
            hits, zs, per_host = 0, [], {h: [0, 0] for h in names}
            for i in range(args.trials):
                host = names[i % len(names)]
                path, fps, duration = marked[host]
                start = float(rng.uniform(0.0, max(0.0, duration - EXCERPT_S - 0.1)))
                options, _ = transformation(t_name, rng, fps)
                out = tmp / "trial.mp4"
                cut(path, out, start, options)
                det = verify_video(out)
                ok = det.found and det.payload == PAYLOAD
                hits += ok
                zs.append(det.sync_z)
                per_host[host][0] += ok
                per_host[host][1] += 1
            rows[t_name] = {"detected": hits, "trials": args.trials, "rate": hits / args.trials,
                            "sync_z_median": float(np.median(zs)), "per_host": per_host}
            print(f"{t_name:28s} {hits:3d}/{args.trials}  median z {np.median(zs):5.1f}  "
                  + " ".join(f"{h}:{a}/{b}" for h, (a, b) in per_host.items()), flush=True)
        results["transforms"] = rows
        null, null_names = [], sorted(unmarked)
        for i in range(args.null_trials):
            host = null_names[i % len(null_names)]
            path, fps, duration = unmarked[host]
            start = float(rng.uniform(0.0, max(0.0, duration - EXCERPT_S - 0.1)))
            out = tmp / "null.mp4"
            cut(path, out, start, X264)
            det = verify_video(out)
            null.append({"host": host, "start": start, "found": det.found, "sync_z": det.sync_z,
                         "sync_p": det.extra["sync_p"]})
        for host in null_names:  # whole files too
            det = verify_video(unmarked[host][0])
            null.append({"host": host, "start": None, "found": det.found, "sync_z": det.sync_z,
                         "sync_p": det.extra["sync_p"]})
        results["null"] = {"videos": len(null), "found": sum(r["found"] for r in null),
                           "sync_z_max": max(r["sync_z"] for r in null),
                           "sync_z_median": float(np.median([r["sync_z"] for r in null])),
                           "sync_p_min": min(r["sync_p"] for r in null),
                           "sync_z_max_per_host": {h: max(r["sync_z"] for r in null if r["host"] == h)
                                                   for h in null_names}}
    print(json.dumps({k: v for k, v in results.items() if k != "transforms"}, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
