"""Streaming video IO on the ffmpeg bundled with imageio-ffmpeg (no system ffmpeg needed).

Frames are HxWx3 uint8 RGB numpy arrays; readers and writers stream, so memory stays bounded.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from thg_nerf.errors import ThgError


def ffmpeg_exe() -> str:
    """Path of the bundled ffmpeg binary."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


@dataclass
class VideoInfo:
    """What ffmpeg reports about a video file."""

    width: int
    height: int
    fps: float
    duration: float
    n_frames: int
    has_audio: bool
    rotate: int = 0


def probe_video(path: str | Path, count: bool = True) -> VideoInfo:
    """Read size, fps, duration, frame count and whether an audio stream exists. ThgError if unreadable.

    ``count=False`` skips counting the frames by decoding (``n_frames`` is then duration * fps).
    """
    import imageio_ffmpeg

    path = Path(path)
    if not path.is_file():
        raise ThgError(f"video not found: {path}")
    try:
        gen = imageio_ffmpeg.read_frames(str(path))
        meta = next(gen)
        gen.close()
    except (OSError, RuntimeError, StopIteration) as e:
        msg = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise ThgError(f"cannot read video {path}: not a video ffmpeg understands ({msg[:160]})") from None
    fps = float(meta.get("fps") or 0.0)
    w, h = meta.get("size", (0, 0))
    if fps <= 0 or w <= 0 or h <= 0:
        raise ThgError(f"cannot read video {path}: no video stream")
    counted = None
    if count:
        try:
            counted = imageio_ffmpeg.count_frames_and_secs(str(path))
        except (OSError, RuntimeError):
            counted = None
    if counted is not None:
        n_frames, secs = counted
    else:
        secs = float(meta.get("duration") or 0.0)
        n_frames = int(round(secs * fps))
    if n_frames <= 0:
        raise ThgError(f"video {path} has no frames")
    return VideoInfo(width=int(w), height=int(h), fps=fps, duration=float(secs or meta.get("duration") or 0.0),
                     n_frames=int(n_frames), has_audio=bool(meta.get("audio_codec")),
                     rotate=int(meta.get("rotate") or 0))


def iter_frames(path: str | Path, fps: float | None = None, filters: str | None = None,
                gray: bool = False) -> Iterator[np.ndarray]:
    """Yield frames as uint8 arrays [H, W, 3] (or [H, W] with ``gray``), optionally resampled to ``fps``.

    ``filters`` is an extra ffmpeg ``-vf`` chain (e.g. ``crop=...,scale=...``) applied after resampling.
    """
    import imageio_ffmpeg

    vf = []
    if fps:
        vf.append(f"fps={fps:.6f}")
    if filters:
        vf.append(filters)
    out_params = ["-vf", ",".join(vf)] if vf else None
    pix = "gray" if gray else "rgb24"
    # imageio-ffmpeg warns that the size differs from the source: expected with our filters
    logging.getLogger("imageio_ffmpeg").setLevel(logging.ERROR)
    gen = imageio_ffmpeg.read_frames(str(path), pix_fmt=pix, bpp=1 if gray else 3, output_params=out_params)
    try:
        meta = next(gen)
    except (OSError, RuntimeError, StopIteration) as e:
        gen.close()
        raise ThgError(f"cannot decode video {path}: {str(e).strip()[:160]}") from None
    w, h = meta["size"]  # the size after the filter chain
    try:
        for buf in gen:
            arr = np.frombuffer(buf, dtype=np.uint8)
            yield arr.reshape(h, w) if gray else arr.reshape(h, w, 3)
    finally:
        gen.close()


class VideoWriter:
    """Stream RGB frames into a video file; optionally mux an audio file (AAC) at close.

    ``codec='libx264'`` writes H.264 yuv420p playable in browsers; ``lossless_gray=True`` writes an FFV1
    grayscale stream (used for label masks); ``alpha=True`` takes RGBA frames [H, W, 4] (e.g. VP9 ``yuva420p``).
    ``audio_codec`` encodes the muxed audio (``aac`` for mp4, ``libopus`` for webm). Use as a context manager;
    on an exception the file is removed.
    """

    def __init__(self, path: str | Path, size: tuple[int, int], fps: float, *, codec: str = "libx264",
                 pix_fmt_out: str = "yuv420p", crf: int | None = 18, audio_path: str | Path | None = None,
                 gray: bool = False, alpha: bool = False, audio_codec: str = "aac",
                 extra_params: list[str] | None = None) -> None:
        import imageio_ffmpeg

        self.path = Path(path)
        self.size = size
        w, h = size
        params: list[str] = []
        if codec in ("libx264", "libx264rgb"):
            params += ["-preset", "medium"] + (["-crf", str(crf)] if crf is not None else [])
        if codec == "libx264" and pix_fmt_out == "yuv420p" and (w % 2 or h % 2):
            raise ThgError(f"H.264 yuv420p needs even frame sizes, got {w}x{h}")
        if audio_path is not None:
            params += ["-shortest"]
        params += list(extra_params or [])
        self._gen = imageio_ffmpeg.write_frames(
            str(self.path), size, pix_fmt_in="gray" if gray else "rgba" if alpha else "rgb24",
            pix_fmt_out=pix_fmt_out, fps=fps, codec=codec, quality=None, macro_block_size=1,
            ffmpeg_log_level="error", output_params=params,
            audio_path=str(audio_path) if audio_path else None, audio_codec=audio_codec if audio_path else None)
        self._gen.send(None)
        self._gray = gray
        self._channels = 4 if alpha else 3
        self.frames_written = 0

    def write(self, frame: np.ndarray) -> None:
        """Append one frame ([H, W, 3] uint8, [H, W, 4] with alpha, or [H, W] for gray)."""
        w, h = self.size
        expect = (h, w) if self._gray else (h, w, self._channels)
        if frame.shape != expect:
            raise ValueError(f"frame shape {frame.shape} != {expect}")
        self._gen.send(np.ascontiguousarray(frame, dtype=np.uint8))
        self.frames_written += 1

    def close(self) -> None:
        self._gen.close()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self.close()
        finally:
            if exc_type is not None:
                self.path.unlink(missing_ok=True)
