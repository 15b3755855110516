"""Rendering speed of ``thg-nerf render``: frames/s of TalkingHead at the trained size and at 512².

    python benchmarks/bench_render.py --run RUN [--device cpu|cuda] [--sizes native,512] [--frames 8]
    python benchmarks/bench_render.py --train-iters 300          # no run: trains a tiny synthetic one first
    python benchmarks/bench_render.py --run /tmp/syn --train-iters 300   # RUN missing: train it there, keep it
    python benchmarks/bench_render.py --memory-minutes 10        # pipeline memory on 10 min of audio (no model)

Frames/s counts the whole per-frame path (ray marching, torso, compositing, copy to host as uint8), after one
warm-up frame; ``--encode`` also times ``render_to_file`` (H.264 + AAC mp4) at the first size. Speed depends
on how much of the occupancy grid is occupied (printed): a briefly trained run is only indicative of a real one.
Prints a markdown table for docs/BENCHMARKS.md and, with ``--json``, writes the numbers.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from thg_nerf.ops import backend  # noqa: E402
from thg_nerf.render.talking_head import TalkingHead  # noqa: E402
from thg_nerf.testing.signals import speech_like  # noqa: E402

SR = 16000


def train_synthetic(root: Path, iters: int, size: int, device: str) -> Path:
    """A tiny synthetic run (tiny preset, ``iters`` iterations) under ``root``."""
    from thg_nerf.config import load_config
    from thg_nerf.testing.synthetic import make_synthetic_dataset
    from thg_nerf.train.trainer import train

    make_synthetic_dataset(root / "data", n_frames=100, size=size, overwrite=True)
    cfg = load_config("tiny", {"train": {"iters": iters, "checkpoint_every": iters, "eval_every": 0,
                                         "max_samples_per_ray": 48}})
    return train(root / "data", root / "run", cfg, device=device)


def bench_size(head: TalkingHead, size: int | None, n_frames: int) -> dict:
    """Frames/s of ``n_frames`` rendered frames at ``size`` (None = trained size), after a warm-up frame."""
    wave = speech_like((n_frames + 1) / head.fps, SR, seed=1)
    plan = head.plan(wave, SR, poses="orbit", blink="auto", size=size, orbit_deg=10, orbit_period=2.0)
    frames = head.render_plan(plan)
    next(frames)
    sync = torch.cuda.synchronize if head.run.device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    count = 0
    for _ in frames:
        count += 1
    sync()
    dt = time.perf_counter() - t0
    return {"size": f"{plan.size[0]}x{plan.size[1]}", "frames": count, "seconds": round(dt, 3),
            "fps": round(count / dt, 3)}


def bench_encode(head: TalkingHead, size: int | None, n_frames: int, tmp: Path) -> dict:
    """Frames/s of render_to_file (render + H.264/AAC encode + mux) at ``size``."""
    from thg_nerf.audio.io import write_wav

    wav = tmp / "bench.wav"
    write_wav(wav, speech_like(n_frames / head.fps, SR, seed=2), SR)
    t0 = time.perf_counter()
    head.render_to_file(wav, tmp / "bench.mp4", poses="static", size=size)
    dt = time.perf_counter() - t0
    return {"frames": n_frames, "seconds": round(dt, 3), "fps": round(n_frames / dt, 3)}


class ConstantRun:
    """A stand-in run whose render_frame returns one precomputed frame: isolates the pipeline's own memory."""

    def __init__(self, size: int) -> None:
        from thg_nerf.dataset import Intrinsics

        self.run_dir = Path("constant-stand-in")
        self.device = torch.device("cpu")
        self.intrinsics = Intrinsics(1.5 * size, size / 2, size / 2, size, size)
        self.fps = 25.0
        self.audio_spec = "mel"
        c2w = np.eye(4, dtype=np.float32)
        c2w[2, 3] = 5.5
        self.train_c2w = c2w[None]
        self.train_eye = np.zeros(1, np.float32)
        self.background = np.full((size, size, 3), 90, np.uint8)
        yy, xx = np.mgrid[:size, :size] / size
        alpha = ((xx - 0.5) ** 2 + (yy - 0.45) ** 2 < 0.1).astype(np.float32)
        self._out = {"fg": torch.from_numpy(alpha[..., None] * np.array([0.8, 0.6, 0.5], np.float32)),
                     "alpha": torch.from_numpy(alpha)}

    def conditions(self, features):
        return features

    def render_frame(self, c2w, audio_feats, index, eye, size=None) -> dict[str, torch.Tensor]:
        return self._out


def _rss_mb() -> float:
    """Current resident memory of this process (MB; Linux /proc, else the peak so far)."""
    import resource

    from thg_nerf.utils.system import resident_mb

    rss = resident_mb()
    return rss if rss is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_memory(minutes: float, size: int, tmp: Path) -> dict:
    """Resident memory during render_to_file on ``minutes`` of audio with a constant stand-in renderer."""
    import threading

    from thg_nerf.audio.io import write_wav
    from thg_nerf.utils.video import probe_video

    sr = 16000
    t = np.arange(int(minutes * 60 * sr), dtype=np.float32) / sr
    wav = tmp / "long.wav"
    write_wav(wav, 0.3 * np.sin(2 * np.pi * 140 * t) * np.clip(np.sin(2 * np.pi * 3 * t), 0, None), sr)
    del t
    head = TalkingHead(ConstantRun(size))
    samples: list[float] = []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            samples.append(_rss_mb())

    before = _rss_mb()
    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    t0 = time.perf_counter()
    try:
        out = head.render_to_file(wav, tmp / "long.mp4", poses="track", blink="auto")
    finally:
        done.set()
        thread.join()
    dt = time.perf_counter() - t0
    info = probe_video(out)
    return {"minutes": minutes, "size": size, "frames": info.n_frames, "has_audio": info.has_audio,
            "seconds": round(dt, 1), "rss_before_mb": round(before), "rss_peak_during_mb": round(max(samples)),
            "rss_median_during_mb": round(float(np.median(samples))),
            "all_frames_would_be_mb": round(info.n_frames * size * size * 3 / 2**20)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, help="run directory; when it does not exist a tiny synthetic run is "
                    "trained into RUN/run (default: a temporary one)")
    ap.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    ap.add_argument("--sizes", default="native,512", help="comma list of 'native' and/or pixel sizes")
    ap.add_argument("--frames", type=int, default=8, help="timed frames per size (after one warm-up frame)")
    ap.add_argument("--train-iters", type=int, default=300, help="iterations of the synthetic run (no --run)")
    ap.add_argument("--train-size", type=int, default=128, help="frame size of the synthetic run (no --run)")
    ap.add_argument("--encode", action="store_true", help="also time render_to_file (mp4) at the first size")
    ap.add_argument("--memory-minutes", type=float, help="instead: peak memory of render_to_file on this many "
                    "minutes of audio with a constant stand-in renderer (pipeline memory, no model)")
    ap.add_argument("--memory-size", type=int, default=512, help="frame size of the --memory-minutes check")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args(argv)
    torch.set_grad_enabled(False)
    if args.memory_minutes:
        with tempfile.TemporaryDirectory(prefix="bench_render_") as td:
            mem = bench_memory(args.memory_minutes, args.memory_size, Path(td))
        print(json.dumps(mem))
        if args.json:
            args.json.write_text(json.dumps(mem, indent=2) + "\n")
        return 0
    with tempfile.TemporaryDirectory(prefix="bench_render_") as td:
        tmp = Path(td)
        t0 = time.perf_counter()
        if args.run and (args.run / "run.json").is_file():
            run_dir, what = args.run, f"run {args.run}"
        elif args.run and (args.run / "run" / "run.json").is_file():
            run_dir, what = args.run / "run", f"run {args.run / 'run'}"
        else:
            run_dir = train_synthetic(args.run or tmp, args.train_iters, args.train_size, args.device or "cpu")
            what = f"synthetic run, tiny preset, {args.train_iters} iterations at {args.train_size}² (briefly trained)"
        train_s = time.perf_counter() - t0
        head = TalkingHead.load(run_dir, device=args.device)
        sizes = [None if s.strip() == "native" else int(s) for s in args.sizes.split(",") if s.strip()]
        results = {"run": what, "device": str(head.run.device), "torch": torch.__version__,
                   "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                   "occupied_fraction": round(float(head.run.model.occupancy.occupied_fraction), 3),
                   "setup_s": round(train_s, 1), "sizes": [bench_size(head, s, args.frames) for s in sizes]}
        results["kernels"] = {"THG_NERF_BACKEND": backend.env_override() or "auto", "ops": backend.op_status()}
        if args.encode:
            results["encode"] = bench_encode(head, sizes[0], args.frames, tmp)
    print(f"{what}; device {results['device']}, torch {results['torch']}, {results['threads']} threads, "
          f"occupied grid fraction {results['occupied_fraction']}")
    print("| size | frames | seconds | frames/s |\n|---|---|---|---|")
    for r in results["sizes"]:
        print(f"| {r['size']} | {r['frames']} | {r['seconds']} | {r['fps']} |")
    if "encode" in results:
        e = results["encode"]
        print(f"render_to_file (mp4, incl. encode): {e['frames']} frames in {e['seconds']} s = {e['fps']} frames/s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
