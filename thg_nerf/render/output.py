"""Where rendered frames go: backgrounds, output kinds, atomic streaming writers, audio segments.

Output kinds (:func:`output_kind`):

- ``.mp4``: H.264 yuv420p (even sizes) + AAC audio, plays in browsers.
- ``.webm``: VP9 + Opus audio; with ``--bg alpha`` the video keeps the alpha channel (``yuva420p``).
- a directory / a path without a video suffix: a PNG sequence ``frame_000000.png ...`` (RGBA with
  ``--bg alpha``, else RGB) plus ``audio.wav``.

Everything is written to a temporary sibling first and renamed into place on success; on an error or
Ctrl-C no partial output is left behind.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import numpy as np

from thg_nerf.errors import ThgError
from thg_nerf.log import get_logger
from thg_nerf.provenance import MarkedWriter, Watermarker, payload_for_run
from thg_nerf.utils.fs import atomic_dir, atomic_file
from thg_nerf.utils.video import VideoWriter, ffmpeg_exe

BG_WORDS = ("plate", "black", "white", "alpha")
BG_HELP = "plate | black | white | #RRGGBB | IMAGE | alpha"
VIDEO_SUFFIXES = (".mp4", ".webm")
#: Shorter side (px) below which the provenance mark does not survive video compression (a carrier cell
#: would be under 2 px; docs/PROVENANCE.md).
MIN_MARK_SIZE = 128
#: Suffixes of video containers we do not write (a clear error instead of a PNG folder named 'x.mov').
_OTHER_VIDEO_SUFFIXES = (".mov", ".mkv", ".avi", ".gif", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts")
PNG_PATTERN = "frame_{:06d}.png"
PNG_AUDIO = "audio.wav"
_PNG_NAME = re.compile(r"^frame_\d{6}\.png$")
#: VP9 settings: constant quality, alpha-safe (no alt-ref frames), multithreaded.
VP9_PARAMS = ["-b:v", "0", "-crf", "32", "-row-mt", "1", "-deadline", "good", "-cpu-used", "4",
              "-auto-alt-ref", "0"]

log = get_logger(__name__)


class FrameWriter(Protocol):
    """Anything frames can be streamed into."""

    frames_written: int

    def write(self, frame: np.ndarray) -> None: ...


# ---------------------------------------------------------------- backgrounds


def check_background(spec: str) -> str:
    """Validate a background spec (BG_HELP) without loading anything; returns it normalised."""
    text = str(spec).strip()
    if text.lower() in BG_WORDS:
        return text.lower()
    if text.startswith("#"):
        parse_hex_colour(text)
        return text
    path = Path(text).expanduser()
    if not path.is_file():
        raise ThgError(f"--bg {spec!r}: not one of {BG_HELP}, and no such image file")
    return str(path)


def parse_hex_colour(text: str) -> tuple[int, int, int]:
    """``#RRGGBB`` -> (r, g, b)."""
    if not re.fullmatch(r"#[0-9a-fA-F]{6}", text.strip()):
        raise ThgError(f"--bg {text!r}: colours are written #RRGGBB, e.g. #00ff00")
    value = int(text.strip()[1:], 16)
    return (value >> 16) & 255, (value >> 8) & 255, value & 255


def make_background(spec: str, plate: np.ndarray, size: tuple[int, int]) -> np.ndarray | None:
    """Background [H, W, 3] uint8 at ``size`` = (w, h) for a spec (BG_HELP); None for ``alpha``.

    ``plate`` [h0, w0, 3] is the run's background plate (resized); an image is centre-cropped to the
    output's aspect ratio, then resized.
    """
    from PIL import Image

    w, h = size
    text = check_background(spec)
    if text == "alpha":
        return None
    if text in ("black", "white"):
        return np.full((h, w, 3), 0 if text == "black" else 255, np.uint8)
    if text.startswith("#"):
        return np.broadcast_to(np.array(parse_hex_colour(text), np.uint8), (h, w, 3)).copy()
    if text == "plate":
        img = Image.fromarray(np.ascontiguousarray(plate, dtype=np.uint8))
        return np.asarray(img.resize((w, h), Image.Resampling.LANCZOS) if img.size != (w, h) else img)
    try:
        with Image.open(text) as im:
            img = im.convert("RGB")
    except OSError as e:
        raise ThgError(f"cannot read background image {text}: {e}") from None
    iw, ih = img.size
    scale = max(w / iw, h / ih)
    cw, ch = min(iw, round(w / scale)), min(ih, round(h / scale))
    x0, y0 = (iw - cw) // 2, (ih - ch) // 2
    return np.asarray(img.crop((x0, y0, x0 + cw, y0 + ch)).resize((w, h), Image.Resampling.LANCZOS))


# ---------------------------------------------------------------- outputs


def output_kind(out: str | Path, alpha: bool) -> str:
    """``"mp4"``, ``"webm"`` or ``"png"`` for an output path (see the module docstring); ThgError if unusable."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        kind = suffix[1:]
    elif suffix in _OTHER_VIDEO_SUFFIXES:
        raise ThgError(f"cannot write {out}: output videos are .mp4 (H.264) or .webm (VP9); "
                       "a path without a video suffix becomes a PNG folder")
    else:
        kind = "png"
    if alpha and kind == "mp4":
        raise ThgError(f"--bg alpha needs an output that keeps transparency: a .webm file or a folder "
                       f"(PNG sequence), not {out.name}")
    if kind != "png" and out.is_dir():
        raise ThgError(f"output {out} is a directory")
    if kind == "png" and out.exists() and not out.is_dir():
        raise ThgError(f"output {out} exists and is not a directory (a PNG sequence needs a folder)")
    return kind


def even_size(size: tuple[int, int]) -> tuple[int, int]:
    """Round (w, h) up to even numbers (H.264 / VP9 4:2:0 need them)."""
    return size[0] + size[0] % 2, size[1] + size[1] % 2


class PngSequenceWriter:
    """Write frames as ``frame_000000.png ...`` (RGB or RGBA, with an optional ``Comment`` text) into a directory."""

    def __init__(self, folder: Path, size: tuple[int, int], channels: int, comment: str | None = None) -> None:
        self.folder = Path(folder)
        self.size = size
        self.channels = channels
        self.comment = comment  # text of each PNG's Comment chunk (the provenance tag)
        self.frames_written = 0

    def write(self, frame: np.ndarray) -> None:
        from PIL import Image, PngImagePlugin

        w, h = self.size
        if frame.shape != (h, w, self.channels):
            raise ValueError(f"frame shape {frame.shape} != {(h, w, self.channels)}")
        info = None
        if self.comment:
            info = PngImagePlugin.PngInfo()
            info.add_text("Comment", self.comment)
        Image.fromarray(np.ascontiguousarray(frame, dtype=np.uint8)).save(
            self.folder / PNG_PATTERN.format(self.frames_written), compress_level=1, pnginfo=info)
        self.frames_written += 1


def _check_png_folder(out: Path) -> None:
    """An existing folder is replaced only when it is empty or holds nothing but a previous PNG render."""
    if not out.is_dir():
        return
    foreign = [p.name for p in out.iterdir() if not (_PNG_NAME.match(p.name) or p.name == PNG_AUDIO)]
    if foreign:
        raise ThgError(f"output folder {out} exists and holds other files (e.g. {sorted(foreign)[0]}); "
                       "choose a new or empty folder")


@contextlib.contextmanager
def open_output(out: str | Path, size: tuple[int, int], fps: float, *, alpha: bool = False,
                audio_path: str | Path | None = None, crf: int = 18,
                marker: Watermarker | None = None) -> Iterator[FrameWriter]:
    """Stream frames ([H, W, 3] uint8, or [H, W, 4] with ``alpha``) into ``out``, atomically.

    ``audio_path`` (any audio file; already cut to the rendered segment) is muxed into videos (AAC in mp4,
    Opus in webm) or copied as ``audio.wav`` beside a PNG sequence. Nothing is left at ``out`` unless the
    block completes. Every frame gets the provenance mark of ``marker`` right before it is written (default:
    a mark without a run fingerprint) and the container (or each PNG) its text tag; there is no way around it.
    """
    out = Path(out)
    kind = output_kind(out, alpha)
    marker = marker or Watermarker(payload_for_run(None, "api"))
    if kind == "png":
        _check_png_folder(out)
        with atomic_dir(out, overwrite=True) as tmp:
            writer = PngSequenceWriter(tmp, size, 4 if alpha else 3, comment=marker.tag)
            yield MarkedWriter(writer, marker)
            if audio_path is not None:
                convert_audio(audio_path, tmp / PNG_AUDIO)
        return
    if kind == "mp4":
        options = dict(codec="libx264", pix_fmt_out="yuv420p", crf=crf, audio_codec="aac",
                       extra_params=["-movflags", "+faststart"])
    else:
        options = dict(codec="libvpx-vp9", pix_fmt_out="yuva420p" if alpha else "yuv420p", crf=None,
                       audio_codec="libopus", extra_params=list(VP9_PARAMS))
    if size[0] % 2 or size[1] % 2:
        raise ThgError(f"{kind} video needs even frame sizes, got {size[0]}x{size[1]}")
    if min(size) < MIN_MARK_SIZE:
        log.warning("%dx%d frames are too small for the invisible provenance mark to survive video compression "
                    "(%d px or more needed); the container tag still records it, and PNG output keeps it",
                    size[0], size[1], MIN_MARK_SIZE)
    options["extra_params"] += ["-metadata", f"comment={marker.tag}"]
    with atomic_file(out) as tmp, VideoWriter(tmp, size, fps, audio_path=audio_path, alpha=alpha,
                                              **options) as writer:
        yield MarkedWriter(writer, marker)


# ---------------------------------------------------------------- audio


def convert_audio(src: str | Path, dst: str | Path, start: float | None = None, end: float | None = None) -> None:
    """Copy the first audio stream of ``src`` (cut to ``[start, end)`` s) to a 16-bit PCM WAV ``dst``.

    Keeps the source's channels and sample rate (better than the 16 kHz mono wave used for features).
    """
    cmd = [ffmpeg_exe(), "-v", "error", "-nostdin", "-y"]
    if start:
        cmd += ["-ss", f"{start:.6f}"]
    cmd += ["-i", str(src), "-map", "0:a:0", "-vn"]
    if end is not None:
        cmd += ["-t", f"{end - (start or 0.0):.6f}"]
    cmd += ["-c:a", "pcm_s16le", str(dst)]
    proc = subprocess.run(cmd, capture_output=True, check=False)
    if proc.returncode != 0:
        reason = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise ThgError(f"cannot copy the audio of {src}: {(reason[-1] if reason else 'ffmpeg failed')[:160]}")
