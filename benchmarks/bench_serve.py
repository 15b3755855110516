"""Figures of ``thg-nerf serve`` (docs/BENCHMARKS.md, section Serve) on a trained run.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_serve.py --run data/macron_motion/run \\
        --wav ../shared/media/drive_radio_16k.wav --size 256 --out serve.json [--parts render,features,e2e,load]

Parts (``--parts``, default all):

- ``render``: the static-camera fast path at ``--size``: its region (pixels, samples), build time, seconds per
  frame against the full renderer (``LoadedRun.render_frame``, ``--full-frames`` frames) and the PSNR of the
  fast frames against the full ones, for motion codes predicted from ``--wav`` (uint8 frames over the plate).
- ``features``: streaming mel features (the server's, ``thg_nerf.audio.stream``) against the per-clip ones of
  the same audio after a 3 s warm-up: correlation, mean absolute difference, and the motion model's mouth
  opening from both; the cost of the audio path per second of audio.
- ``e2e``: a server subprocess (loopback) and one client streaming ``--seconds`` of ``--wav`` (repeated) in real
  time, in 20 ms chunks: latency (chunk sent -> frame received) p50/p95, frames/s received, frames
  rendered/dropped; with the fast path and without it (``--no-fast-path``, ``--slow-seconds``).
- ``load``: ``--clients`` clients stream ``--load-seconds`` at once through the same fast-path server: errors,
  frames per client, latency, the server's resident memory sampled every second.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SR = 16000


def _pct(a, q) -> float | None:
    a = np.asarray(a, float)
    return round(float(np.percentile(a, q)), 1) if a.size else None


def part_render(args, run, wave) -> dict:
    import torch

    from thg_nerf.render.stream import FrameInput, FrameRenderer
    from thg_nerf.train.metrics import psnr

    mm = run.motion_model
    n = int(len(wave) / SR * run.fps)
    motion = mm.predict(mm.features(wave, SR, run.fps, n))
    t0 = time.perf_counter()
    fast = FrameRenderer(run, args.size, "static")
    build = time.perf_counter() - t0
    full = FrameRenderer(run, args.size, "static", fast=False)
    picks = np.linspace(5, n - 5, args.full_frames).astype(int)
    fast_t, full_t, psnrs = [], [], []
    fast.render(FrameInput(0, motion[0], 0.1))  # warm-up
    for i in np.linspace(0, n - 1, args.fast_frames).astype(int):
        t = time.perf_counter()
        fast.render(FrameInput(int(i), motion[i], 0.1))
        fast_t.append(time.perf_counter() - t)
    for k, i in enumerate(picks):
        eye = (0.1, 0.6, 1.0)[k % 3]
        a = fast.render(FrameInput(int(i), motion[i], eye))
        t = time.perf_counter()
        b = full.render(FrameInput(int(i), motion[i], eye))
        full_t.append(time.perf_counter() - t)
        psnrs.append(psnr(torch.from_numpy(a) / 255.0, torch.from_numpy(b) / 255.0))
    info = fast.fast.info
    return {"size": list(fast.size), "region_pixels": info.region, "region_fraction": round(info.fraction, 3),
            "region_samples": info.samples, "build_s": round(build, 1),
            "fast_s_per_frame_median": round(float(np.median(fast_t)), 3),
            "fast_frames_per_s": round(1.0 / float(np.median(fast_t)), 2),
            "full_s_per_frame_median": round(float(np.median(full_t)), 2),
            "speedup": round(float(np.median(full_t) / np.median(fast_t)), 1),
            "psnr_fast_vs_full_db": [round(p, 1) for p in psnrs], "load_avg": os.getloadavg()[0]}


def part_features(args, run, wave) -> dict:
    from thg_nerf.audio.features import extract_features
    from thg_nerf.audio.stream import StreamingFeatures
    from thg_nerf.motion.model import corr
    from thg_nerf.render.stream import FrameStream

    fps = run.fps
    n = int(round(len(wave) / SR * fps))
    clip = extract_features(wave, SR, fps, n, "mel")
    feats = StreamingFeatures(fps)
    streamed = np.concatenate([feats.push(wave[a:a + 320]) for a in range(0, len(wave), 320)] + [feats.flush()])
    late = slice(int(3 * fps), None)
    mm = run.motion_model
    m_clip, m_stream = mm.mouth(mm.predict(clip)), mm.mouth(mm.predict(streamed))
    def audio_path() -> float:  # on a thread with one torch thread, as the server runs it
        stream = FrameStream(run)
        t = time.perf_counter()
        for a in range(0, len(wave), 320):
            stream.push(wave[a:a + 320])
        return (time.perf_counter() - t) / (len(wave) / SR)

    import torch

    with ThreadPoolExecutor(1, initializer=torch.set_num_threads, initargs=(1,)) as pool:
        cost = pool.submit(audio_path).result()
    return {"seconds": round(len(wave) / SR, 1), "feature_corr_after_3s": round(float(np.corrcoef(
        streamed[late].ravel(), clip[late].ravel())[0, 1]), 4),
            "feature_mean_abs_diff_after_3s": round(float(np.abs(streamed[late] - clip[late]).mean()), 4),
            "mouth_corr_stream_vs_clip_after_3s": round(corr(m_stream[late], m_clip[late]), 4),
            "mouth_amplitude_stream_over_clip": round(float(np.std(m_stream[late]) / np.std(m_clip[late])), 3),
            "audio_path_s_per_audio_s_20ms_chunks": round(cost, 4)}


class _Server:
    def __init__(self, run_dir: str, *extra: str) -> None:
        cmd = [sys.executable, "-m", "thg_nerf.cli.main", "-q", "serve", run_dir, "--port", "0", *extra]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
        self.url = None
        t0 = time.perf_counter()
        for line in self.proc.stdout:
            if "open http" in line:
                self.url = line.split("open ", 1)[1].strip()
                break
        self.start_s = time.perf_counter() - t0
        if self.url is None:
            raise RuntimeError("server did not start")

    def rss_mb(self) -> float:
        from thg_nerf.utils.system import resident_mb

        rss = resident_mb(self.proc.pid)
        if rss is None:
            raise RuntimeError(f"cannot read the server's memory (pid {self.proc.pid})")
        return rss

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)


def _summary(res, seconds: float) -> dict:
    lat = res.latencies_ms
    return {"frames_received": len(res.frames), "rendered": res.rendered, "dropped": res.dropped,
            "frames_per_s": round(len(res.frames) / seconds, 2), "latency_p50_ms": _pct(lat, 50),
            "latency_p95_ms": _pct(lat, 95), "error": res.error}


def _tiled(wave: np.ndarray, seconds: float, shift: int = 0) -> np.ndarray:
    """``seconds`` of ``wave`` repeated (rolled by ``shift`` samples)."""
    reps = int(np.ceil(seconds * SR / len(wave)))
    return np.roll(np.tile(wave, reps)[:int(seconds * SR)], shift)


def part_e2e_load(args, wave, parts: list[str]) -> dict:
    """One fast-path server for the single-client run and the load test; a full-render server after it."""
    from thg_nerf.serve.client import stream_audio

    out: dict = {}
    srv = _Server(args.run, "--size", str(args.size))
    try:
        out["server_start_s"] = round(srv.start_s, 1)
        if "e2e" in parts:
            res = asyncio.run(stream_audio(srv.url, _tiled(wave, args.seconds), keep_jpeg=False))
            out["fast_path"] = {**_summary(res, args.seconds), "seconds": args.seconds}
            print(json.dumps({"e2e_fast": out["fast_path"]}), flush=True)
        if "load" in parts:
            out["load"] = _load(srv, args, wave)
    finally:
        srv.stop()
    if "e2e" in parts:
        slow = _Server(args.run, "--size", str(args.size), "--no-fast-path")
        try:
            res = asyncio.run(stream_audio(slow.url, _tiled(wave, args.slow_seconds), linger_s=180.0,
                                           keep_jpeg=False))
            out["full_render"] = {**_summary(res, args.slow_seconds), "seconds": args.slow_seconds}
        finally:
            slow.stop()
    return out


def _load(srv: _Server, args, wave: np.ndarray) -> dict:
    from thg_nerf.serve.client import stream_audio

    rss: list[float] = []
    seconds = args.load_seconds

    async def main():
        async def sample():
            while True:
                rss.append(round(srv.rss_mb(), 1))
                await asyncio.sleep(1.0)

        sampler = asyncio.create_task(sample())
        res = await asyncio.gather(*(stream_audio(srv.url, _tiled(wave, seconds, k * 7919), keep_jpeg=False)
                                     for k in range(args.clients)))
        sampler.cancel()
        return res

    results = asyncio.run(main())
    return {"clients": args.clients, "seconds": seconds, "per_client": [_summary(r, seconds) for r in results],
            "rss_mb_first": rss[0] if rss else None, "rss_mb_min": min(rss, default=None),
            "rss_mb_max": max(rss, default=None), "rss_mb_last": rss[-1] if rss else None,
            "rss_mb_series": rss[::5]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True)
    p.add_argument("--wav", required=True)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--slow-seconds", type=float, default=5.0)
    p.add_argument("--load-seconds", type=float, default=60.0)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--fast-frames", type=int, default=20)
    p.add_argument("--full-frames", type=int, default=3)
    p.add_argument("--parts", default="render,features,e2e,load")
    p.add_argument("--out", default="serve.json")
    args = p.parse_args()
    from thg_nerf.audio.io import load_audio
    from thg_nerf.log import setup_logging
    from thg_nerf.train.checkpoint import load_run

    setup_logging(quiet=True)
    wave = load_audio(args.wav, SR)
    parts = args.parts.split(",")
    out: dict = {"run": args.run, "wav": args.wav, "size": args.size, "cpus": os.cpu_count(),
                 "load_avg_start": os.getloadavg()}
    run = load_run(args.run, device="cpu") if {"render", "features"} & set(parts) else None
    out["iteration"] = run.iteration if run is not None else None
    for name, fn in (("features", lambda: part_features(args, run, wave)),
                     ("render", lambda: part_render(args, run, wave)),
                     ("serve", lambda: part_e2e_load(args, wave, parts))):
        if name in parts or (name == "serve" and {"e2e", "load"} & set(parts)):
            t = time.perf_counter()
            out[name] = fn()
            out[name]["part_s"] = round(time.perf_counter() - t, 1)
            print(json.dumps({name: out[name]}), flush=True)
    out["load_avg_end"] = os.getloadavg()
    Path(args.out).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
