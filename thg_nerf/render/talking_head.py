"""The Python rendering API: a trained run speaking new audio, as a frame generator or a finished video.

>>> head = TalkingHead.load("runs/alice")
>>> head.render_to_file("speech.wav", "out.mp4", poses="orbit", orbit_deg=15)
>>> for frame in head.frames(wave, 16000, poses="static", bg="alpha"):  # [H, W, 4] uint8
...     ...

Frames are rendered one at a time and streamed, so memory stays bounded for any audio length (the per-frame
audio features of a 10-minute clip are ~30 MB of float32).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from thg_nerf.errors import ThgError
from thg_nerf.log import get_logger, progress
from thg_nerf.provenance import Watermarker, watermarker_for_run
from thg_nerf.render.blinks import blink_signal, eye_levels
from thg_nerf.render.output import (
    check_background,
    convert_audio,
    even_size,
    make_background,
    open_output,
    output_kind,
)
from thg_nerf.render.poses import PosePath, build_pose_path, finish_path

if TYPE_CHECKING:
    from thg_nerf.render.fastpath import StaticFrameRenderer
    from thg_nerf.train.checkpoint import LoadedRun

log = get_logger(__name__)

#: Sample rate of the wave used for audio features.
FEATURE_SR = 16000
MAX_FPS = 240.0
MAX_SIZE = 4096
_PATH_ONLY = ("orbit_deg", "orbit_period")
#: Fewest frames of a fixed-camera plan rendered with the fast path: building it costs about as much as
#: 6-10 full frames (docs/BENCHMARKS.md, Serve).
FAST_MIN_FRAMES = 16


@dataclass
class RenderPlan:
    """Everything decided before the first frame: per-frame inputs and the output geometry."""

    n_frames: int
    fps: float
    size: tuple[int, int]
    """(w, h) of the frames."""
    features: np.ndarray
    """[n_frames, T, C] float32 audio feature windows (of the run's ``audio_spec``)."""
    poses: PosePath
    eyes: np.ndarray
    """[n_frames] float32 eye signal."""
    background: np.ndarray | None
    """[h, w, 3] uint8, or None for RGBA output."""

    @property
    def duration(self) -> float:
        return self.n_frames / self.fps


class TalkingHead:
    """A loaded run that renders frames for new audio (see the module docstring)."""

    def __init__(self, run: LoadedRun) -> None:
        self.run = run
        self._renderers: dict[tuple, object] = {}

    @classmethod
    def load(cls, run_dir: str | Path, device: str | None = None) -> TalkingHead:
        """Load a run directory written by ``thg-nerf train`` / ``fit`` (one-line ThgError if unusable)."""
        from thg_nerf.train.checkpoint import load_run

        return cls(load_run(run_dir, device=device))

    @property
    def fps(self) -> float:
        """The training frame rate (the default output rate)."""
        return float(self.run.fps)

    @property
    def size(self) -> tuple[int, int]:
        """(w, h) of the training frames (the default output size)."""
        return int(self.run.intrinsics.w), int(self.run.intrinsics.h)

    def output_size(self, size: int | tuple[int, int] | None = None) -> tuple[int, int]:
        """(w, h) for ``size``: None = training size, an int = the longer side (aspect kept), or (w, h)."""
        w0, h0 = self.size
        if size is None:
            return w0, h0
        if isinstance(size, (int, np.integer)):
            s = int(size)
            _check_range("--size", s, 16, MAX_SIZE)
            return (s, max(1, round(s * h0 / w0))) if w0 >= h0 else (max(1, round(s * w0 / h0)), s)
        w, h = (int(v) for v in size)
        _check_range("size width", w, 16, MAX_SIZE)
        _check_range("size height", h, 16, MAX_SIZE)
        return w, h

    def output_fps(self, fps: float | None = None) -> float:
        if fps is None:
            return self.fps
        _check_range("--fps", float(fps), 1.0, MAX_FPS)
        return float(fps)

    # ------------------------------------------------------------ planning

    def plan(self, audio: np.ndarray, sr: int, poses: PosePath | np.ndarray | str = "track", blink: str = "auto",
             bg: str = "plate", size: int | tuple[int, int] | None = None, fps: float | None = None, *,
             features: np.ndarray | None = None, seed: int = 0, **pose_options: float) -> RenderPlan:
        """Validate the inputs and compute every per-frame input (see :meth:`frames` for the arguments)."""
        fps = self.output_fps(fps)
        wave = _mono(audio)
        if sr <= 0:
            raise ThgError(f"audio sample rate must be > 0, got {sr}")
        n = int(round(wave.size / sr * fps))
        if n <= 0:
            raise ThgError(f"audio is too short to render a frame ({wave.size / sr * 1000:.1f} ms at {fps:g} fps)")
        out_size = self.output_size(size)
        path = self._poses(poses, n, fps, pose_options)
        eyes = blink_signal(blink, n, fps, self.run.train_eye, self.fps, seed=seed)
        background = make_background(bg, self.run.background, out_size)
        feats = self._features(wave, sr, fps, n, features)  # the costliest step last: bad inputs fail fast
        return RenderPlan(n, fps, out_size, feats, path, eyes, background)

    def _features(self, wave: np.ndarray, sr: int, fps: float, n: int, features: np.ndarray | None) -> np.ndarray:
        spec = str(self.run.audio_spec)
        if features is not None:
            feats = np.asarray(features, dtype=np.float32)
            if feats.ndim == 2:
                feats = feats[:, None, :]
            if feats.ndim != 3 or len(feats) != n:
                raise ThgError(f"features must be [{n}, T, C] (one window per output frame), got {list(feats.shape)}")
            return feats
        if spec.startswith("npy:"):
            raise ThgError(f"run {self.run.run_dir} was trained on precomputed audio features ({spec}), which "
                           "thg-nerf cannot compute from new audio; compute the same features for it and pass "
                           "them with TalkingHead.frames(..., features=[n_frames, T, C])")
        return self.run.audio_features(wave, sr, fps, n)

    def _poses(self, poses: PosePath | np.ndarray | str, n: int, fps: float, options: dict) -> PosePath:
        if isinstance(poses, str):
            return build_pose_path(poses, n, fps, self.run.train_c2w, self.fps, **options)
        c2w = poses.c2w if isinstance(poses, PosePath) else np.asarray(poses)
        if len(c2w) != n:
            raise ThgError(f"the pose path has {len(c2w)} poses but the audio needs {n} frames")
        return finish_path(c2w, fps, **{k: v for k, v in options.items() if k not in _PATH_ONLY})

    # ------------------------------------------------------------ rendering

    def frames(self, audio: np.ndarray, sr: int, poses: PosePath | np.ndarray | str = "track",
               blink: str = "auto", bg: str = "plate", size: int | tuple[int, int] | None = None,
               fps: float | None = None, *, features: np.ndarray | None = None, seed: int = 0,
               **pose_options: float) -> Iterator[np.ndarray]:
        """Render ``audio`` frame by frame: yields uint8 [H, W, 3] (or [H, W, 4] with ``bg="alpha"``).

        Args:
            audio: wave [n] or [n, channels] / [channels, n] (any sample rate; stereo is averaged).
            sr: its sample rate. The frame count is ``round(duration * fps)``.
            poses: ``"track" | "static" | "orbit" | "file:PATH"``, a PosePath or c2w [n_frames, 4, 4].
            blink: ``"auto" | "track" | "none"`` (see ``thg_nerf.render.blinks``).
            bg: ``plate | black | white | #RRGGBB | IMAGE | alpha``.
            size: None (training size), the longer side in pixels, or (w, h).
            fps: output frame rate (default: the run's).
            features: precomputed [n_frames, T, C] audio features (needed for runs trained on ``npy:``).
            seed: random seed of the synthetic blinks.
            pose_options: ``orbit_deg``, ``orbit_period`` (s), ``yaw``, ``pitch``, ``roll`` (degrees),
                ``smooth`` (s), see ``thg_nerf.render.poses``.

        Inputs are validated before this returns; frames are rendered lazily as the generator is consumed.
        """
        plan = self.plan(audio, sr, poses, blink, bg, size, fps, features=features, seed=seed, **pose_options)
        return self.render_plan(plan)

    def render_plan(self, plan: RenderPlan, fast: bool = True) -> Iterator[np.ndarray]:
        """Yield the frames of a plan (uint8 [H, W, 3], or [H, W, 4] when ``plan.background`` is None).

        ``fast``: a plan of a motion-conditioned run whose camera never moves (``poses="static"``) and that has
        at least :data:`FAST_MIN_FRAMES` frames is rendered with the static-camera fast path
        (``thg_nerf.render.fastpath``; the same frames within rounding, docs/BENCHMARKS.md, Serve).
        """
        import torch

        from thg_nerf.render.volume import frame_uint8

        device = self.run.device
        cond = np.require(self.run.conditions(plan.features), np.float32, ["C", "W"])
        feats = torch.from_numpy(cond).to(device)
        bg = None
        if plan.background is not None:
            bg = torch.from_numpy(np.require(plan.background, np.uint8, ["C", "W"])).to(device).float() / 255.0
        static = self._static_renderer(plan) if fast else None
        for i in range(plan.n_frames):
            with torch.inference_mode():
                if static is not None:
                    out = static.render(cond[i], float(plan.eyes[i]))
                else:
                    out = self.run.render_frame(plan.poses.c2w[i], feats, i, float(plan.eyes[i]), size=plan.size)
                frame = frame_uint8(out["fg"], out["alpha"], bg)
            yield frame

    def _static_renderer(self, plan: RenderPlan) -> StaticFrameRenderer | None:
        """The fast path for ``plan`` when its camera is fixed, the run motion-conditioned and the plan long
        enough to repay building it; else None."""
        c2w = np.asarray(plan.poses.c2w)
        if (plan.n_frames < FAST_MIN_FRAMES or self.run.motion_model is None
                or not np.allclose(c2w, c2w[:1], rtol=0.0, atol=1e-6)):
            return None
        from thg_nerf.render.fastpath import StaticFrameRenderer

        return StaticFrameRenderer(self.run.model, c2w[0], self.run.intrinsics_at(plan.size), self.run.cfg.render,
                                   self.run.device, eye_levels=eye_levels(self.run.train_eye))

    def provenance_marker(self, tool: str = "render") -> Watermarker:
        """The provenance mark of this run's outputs (``tool``: render, dub, serve); see docs/PROVENANCE.md."""
        from thg_nerf.train.checkpoint import RUN_FILE

        return watermarker_for_run(Path(self.run.run_dir) / RUN_FILE, tool)

    def stream(self, chunks: Iterable[np.ndarray], poses: str = "static", blink: str = "auto", bg: str = "plate",
               size: int | tuple[int, int] | None = None, *, fast: bool = True, seed: int = 0
               ) -> Iterator[np.ndarray]:
        """Render live audio: yields uint8 [H, W, 3] frames as the chunks arrive (see ``thg_nerf.render.stream``).

        Args:
            chunks: 16 kHz mono chunks (float in [-1, 1] or int16), any sizes; the frames of a chunk are
                yielded once ``lookahead`` (about 170 ms) of audio past them has arrived, the last ones when
                the iterable ends (``round(duration * fps)`` frames in all, at the run's fps).
            poses: ``static`` (static-camera fast path), ``idle`` (subtle sway) or ``track``.
            blink, bg, size, seed: as in :meth:`frames` (no alpha background).
            fast: use the static-camera fast path (same frames within rounding, much faster on a CPU).

        Features are normalised on the fly (``thg_nerf.audio.stream``), exactly as ``thg-nerf serve`` does, so a
        file streamed here and the same audio sent to the server give the same frames.
        """
        from thg_nerf.render.stream import FrameRenderer, FrameStream

        key = (size if size is None or isinstance(size, int) else tuple(size), poses, bg, fast)
        renderer = self._renderers.get(key)
        if renderer is None:  # building the fast path costs a few full renders: kept for the next stream
            renderer = self._renderers[key] = FrameRenderer(self.run, size, poses, bg, fast=fast)
        stream = FrameStream(self.run, blink, seed)
        for chunk in chunks:
            for inp in stream.push(chunk):
                yield renderer.render(inp)
        for inp in stream.flush():
            yield renderer.render(inp)

    def render_to_file(self, audio_path: str | Path, out: str | Path, *,
                       poses: PosePath | np.ndarray | str = "track", blink: str = "auto", bg: str = "plate",
                       size: int | tuple[int, int] | None = None, fps: float | None = None,
                       start: float | None = None, end: float | None = None, seed: int = 0, crf: int = 18,
                       fast: bool = True, **pose_options: float) -> Path:
        """Render ``audio_path`` (cut to ``[start, end)`` s) into ``out`` with the audio muxed in.

        ``out``: ``.mp4`` (H.264 + AAC), ``.webm`` (VP9 + Opus, alpha with ``bg="alpha"``) or a folder (PNG
        sequence + ``audio.wav``); written atomically. ``fast``: see :meth:`render_plan`. Other arguments as in
        :meth:`frames`. Returns ``out``.
        """
        from thg_nerf.audio.io import load_audio

        out = Path(out)
        bg = check_background(bg)
        kind = output_kind(out, alpha=bg == "alpha")
        out_size = self.output_size(size)
        if kind != "png" and out_size != even_size(out_size):
            log.warning("%s video needs even sizes: rendering %dx%d instead of %dx%d", kind,
                        *even_size(out_size), *out_size)
            out_size = even_size(out_size)
        wave = load_audio(audio_path, sr=FEATURE_SR, start=start, end=end)
        plan = self.plan(wave, FEATURE_SR, poses, blink, bg, out_size, fps, seed=seed, **pose_options)
        del wave  # the features are all the renderer needs; the muxed audio is re-read from the file
        log.info("rendering %d frames (%.2f s at %g fps) at %dx%d -> %s", plan.n_frames, plan.duration, plan.fps,
                 plan.size[0], plan.size[1], out)
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="thg_render_") as td:
            audio_seg = Path(td) / "audio.wav"
            convert_audio(audio_path, audio_seg, start, end)
            with open_output(out, plan.size, plan.fps, alpha=plan.background is None, audio_path=audio_seg,
                             crf=crf, marker=self.provenance_marker("render")) as writer:
                frames = self.render_plan(plan, fast)
                for frame in progress(frames, total=plan.n_frames, desc="rendering", unit="frame"):
                    writer.write(frame)
        dt = time.perf_counter() - t0
        log.info("wrote %s (%d frames in %.1f s, %.2f frames/s)", out, plan.n_frames, dt, plan.n_frames / dt)
        return out


def _mono(audio: np.ndarray) -> np.ndarray:
    """A wave [n], [n, ch] or [ch, n] (ch <= 8) -> mono float32 [n]."""
    a = np.asarray(audio, dtype=np.float32)
    if a.ndim == 2:
        a = a.mean(axis=1 if a.shape[1] <= 8 and a.shape[1] < a.shape[0] else 0)
    if a.ndim != 1:
        raise ThgError(f"audio must be a wave [n] or [n, channels], got shape {list(np.shape(audio))}")
    if not np.isfinite(a).all():
        raise ThgError("audio holds non-finite samples")
    return a


def _check_range(name: str, value: float, lo: float, hi: float) -> None:
    if not (lo <= value <= hi):
        raise ThgError(f"{name} must be between {lo:g} and {hi:g}, got {value:g}")
