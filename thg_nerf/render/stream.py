"""Live rendering: audio chunks in, frames out, with bounded look-ahead (``TalkingHead.stream``, ``thg-nerf serve``).

Two halves, so a server can share the expensive one between clients and skip stale frames:

- :class:`FrameStream` (one per audio stream, cheap): streaming ``mel`` features
  (:mod:`thg_nerf.audio.stream`) -> the audio -> motion model fed incrementally
  (:mod:`thg_nerf.motion.stream`) -> one :class:`FrameInput` per video frame (motion code, eye value, time).
  A frame is ready once ``lookahead_s`` of audio past its time has arrived.
- :class:`FrameRenderer` (one per output setting, expensive): renders a FrameInput to a uint8 frame. With the
  ``static`` pose it uses the static-camera fast path (:mod:`thg_nerf.render.fastpath`); ``idle`` (the static
  pose with a slow, subtle sway) and ``track`` (the training poses, ping-pong) render every pixel.

Silence gives the motion model's silent code (a closed mouth) and the eyes keep blinking (``blink="auto"``),
so a silent stream never shows a frozen face.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from thg_nerf.audio.stream import StreamingFeatures, check_stream_spec
from thg_nerf.errors import ThgError
from thg_nerf.render.blinks import blink_signal, eye_levels
from thg_nerf.render.config import FastPathConfig
from thg_nerf.render.output import make_background
from thg_nerf.render.poses import apply_rotation_about_origin, offset_rotation, static_pose, track_poses

if TYPE_CHECKING:
    from thg_nerf.train.checkpoint import LoadedRun

STREAM_POSES = ("static", "idle", "track")
#: The ``idle`` sway: (amplitude in degrees, period in seconds, phase) per yaw, pitch and roll component.
IDLE_SWAY = {"yaw": ((1.2, 7.3, 0.0), (0.5, 3.1, 1.0)), "pitch": ((0.8, 5.7, 2.0), (0.3, 2.3, 0.5)),
             "roll": ((0.5, 9.1, 4.0),)}
#: Eye-signal horizon computed at a time (doubled when a stream runs past it).
EYE_HORIZON_S = 60.0
EYE_MARGIN_S = 1.0


@dataclass
class FrameInput:
    """Everything that varies per frame of a stream (the renderer adds the pose)."""

    index: int
    """Frame number in the stream (frame ``i`` shows the audio at ``i / fps``)."""
    motion: np.ndarray
    """[M] motion code."""
    eye: float

    def time_s(self, fps: float) -> float:
        return self.index / fps


def check_streamable(run: LoadedRun) -> None:
    """One-line ThgError unless ``run`` can be driven live (motion-conditioned, ``mel`` features)."""
    if run.motion_model is None:
        raise ThgError(f"{run.run_dir} is audio-conditioned (model.condition: audio); live streaming needs a "
                       "motion-conditioned run (the default since the lip-sync bottleneck): train it again")
    check_stream_spec(run.motion_model.spec)


class _EyeStream:
    """Eye value of frame ``i`` of an endless stream (``blink`` mode of :func:`blink_signal`)."""

    def __init__(self, run: LoadedRun, blink: str, fps: float, seed: int) -> None:
        self.run, self.blink, self.fps, self.seed = run, blink, fps, seed
        self._signal = np.zeros(0, np.float32)
        self._extend(int(EYE_HORIZON_S * fps))

    def _extend(self, n: int) -> None:
        # every mode's signal is prefix-consistent: a longer horizon repeats the shorter one's frames
        margin = int(EYE_MARGIN_S * self.fps) + 1
        full = blink_signal(self.blink, n + margin, self.fps, self.run.train_eye, self.run.fps, seed=self.seed)
        self._signal = full[:n]

    def __call__(self, i: int) -> float:
        if i >= len(self._signal):
            self._extend(max(2 * len(self._signal), i + 1))
        return float(self._signal[i])


class FrameStream:
    """Per-frame inputs of a live audio stream (see the module docstring).

    >>> stream = FrameStream(run)
    >>> inputs = stream.push(chunk)   # 16 kHz mono chunk -> [FrameInput] of the frames now ready
    >>> inputs += stream.flush()      # end of stream
    """

    def __init__(self, run: LoadedRun, blink: str = "auto", seed: int = 0) -> None:
        from thg_nerf.motion.stream import MotionStream

        check_streamable(run)
        self.run = run
        self.fps = float(run.fps)
        mm = run.motion_model
        self.features = StreamingFeatures(self.fps, voice=mm.voice if mm.normalises_voice else None)
        self.motion = MotionStream(run.motion_model)
        self._eye = _EyeStream(run, blink, self.fps, seed)

    @property
    def lookahead_s(self) -> float:
        return self.features.lookahead_s

    def push(self, samples: np.ndarray) -> list[FrameInput]:
        """Add 16 kHz mono samples (float or int16); returns the inputs of the frames that became ready."""
        return self._inputs(self.features.push(samples))

    def flush(self) -> list[FrameInput]:
        """End of the stream: the remaining frames (``round(duration * fps)`` in all)."""
        return self._inputs(self.features.flush())

    def _inputs(self, windows: np.ndarray) -> list[FrameInput]:
        first = self.features.frames_out - len(windows)
        motion = self.motion.push(windows)
        return [FrameInput(first + k, motion[k], self._eye(first + k)) for k in range(len(windows))]


class FrameRenderer:
    """Renders :class:`FrameInput` s of a run at one size, pose mode and background (uint8 [H, W, 3]).

    Args:
        run: a loaded, motion-conditioned run.
        size: None (training size), the longer side, or (w, h).
        pose: ``static`` (fast path), ``idle`` or ``track`` (full renders).
        bg: ``plate | black | white | #RRGGBB | IMAGE`` (no alpha: frames are sent as JPEG).
        fast: use the static-camera fast path (``static`` pose only).
        fast_cfg: its settings.
    """

    def __init__(self, run: LoadedRun, size: int | tuple[int, int] | None = None, pose: str = "static",
                 bg: str = "plate", fast: bool = True, fast_cfg: FastPathConfig | None = None) -> None:
        import torch

        from thg_nerf.render.talking_head import TalkingHead

        check_streamable(run)
        if pose not in STREAM_POSES:
            raise ThgError(f"unknown live pose mode {pose!r}: expected {', '.join(STREAM_POSES)}")
        if bg == "alpha":
            raise ThgError("live frames are JPEG: pick a background (plate, black, white, #RRGGBB or an image)")
        self.run, self.pose = run, pose
        self.size = TalkingHead(run).output_size(size)
        self.fps = float(run.fps)
        self._base = static_pose(run.train_c2w)
        self._track = track_poses(run.train_c2w, max(1, 2 * (len(run.train_c2w) - 1)), self.fps, self.fps) \
            if pose == "track" else None
        bg_img = np.require(make_background(bg, run.background, self.size), np.uint8, ["C", "W"])
        self._bg = torch.from_numpy(bg_img).to(run.device).float() / 255.0
        self.fast = None
        if fast and pose == "static":
            from thg_nerf.render.fastpath import StaticFrameRenderer

            self.fast = StaticFrameRenderer(run.model, self._base, run.intrinsics_at(self.size), run.cfg.render,
                                            run.device, fast_cfg, eye_levels=eye_levels(run.train_eye))
            self._pixels = self.fast.pixels.cpu().numpy()
            self._bg_region = self._bg.reshape(-1, 3)[self.fast.pixels]
            self._base_frame = self._composite(self.fast.base_fg, self.fast.base_alpha, self._bg)

    def pose_at(self, index: int) -> np.ndarray:
        """Camera [4, 4] of frame ``index``."""
        if self.pose == "static":
            return self._base
        if self.pose == "track":
            return self._track[index % len(self._track)]
        t = index / self.fps
        angles = [sum(a * np.sin(2 * np.pi * t / p + ph) for a, p, ph in IDLE_SWAY[k]) for k in ("yaw", "pitch",
                                                                                                  "roll")]
        return apply_rotation_about_origin(self._base[None], offset_rotation(*angles))[0]

    def render(self, inp: FrameInput) -> np.ndarray:
        """The frame of one input: uint8 [H, W, 3]."""
        import torch

        with torch.inference_mode():
            if self.fast is not None:
                fg, alpha = self.fast.render_region(inp.motion, inp.eye)
                frame = self._base_frame.copy()
                frame.reshape(-1, 3)[self._pixels] = self._composite(fg, alpha, self._bg_region)
                return frame
            out = self.run.render_frame(self.pose_at(inp.index), inp.motion[None], 0, inp.eye, size=self.size)
            return self._composite(out["fg"], out["alpha"], self._bg)

    @staticmethod
    def _composite(fg, alpha, bg) -> np.ndarray:
        from thg_nerf.render.volume import frame_uint8

        return frame_uint8(fg, alpha, bg)
