"""Audio IO through the bundled ffmpeg: decode any audio/video file to mono float32, write 16-bit WAV.

Waves are 1-D float32 numpy arrays in [-1, 1].
"""

from __future__ import annotations

import subprocess
import wave as wavmod
from pathlib import Path

import numpy as np

from thg_nerf.errors import ThgError
from thg_nerf.utils.fs import atomic_file
from thg_nerf.utils.video import ffmpeg_exe


def _ffmpeg_reason(stderr: bytes) -> str:
    """A one-line user-facing reason from ffmpeg's stderr."""
    text = stderr.decode("utf-8", "replace")
    if "matches no streams" in text:
        return "it has no audio stream"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if any("Invalid data found" in ln for ln in lines):
        return "not an audio or video file ffmpeg understands (corrupt or unsupported)"
    return (lines[-1] if lines else "ffmpeg failed")[:160]


def load_audio(path: str | Path, sr: int = 16000, start: float | None = None,
               end: float | None = None) -> np.ndarray:
    """Decode the first audio stream of ``path`` (wav/mp3/m4a/flac or a video) to mono float32 at ``sr``.

    ``start``/``end`` (seconds) cut a segment. Returns [n_samples] float32 in [-1, 1]. One-line ThgError
    for a missing or unreadable file, a file without an audio stream, and an empty result.
    """
    path = Path(path)
    if not path.is_file():
        raise ThgError(f"audio file not found: {path}")
    if start is not None and start < 0:
        raise ThgError(f"audio start must be >= 0 s, got {start}")
    if end is not None and end <= (start or 0.0):
        raise ThgError(f"audio end ({end} s) must be after start ({start or 0.0} s)")
    cmd = [ffmpeg_exe(), "-v", "error", "-nostdin"]
    if start:
        cmd += ["-ss", f"{start:.6f}"]
    cmd += ["-i", str(path), "-map", "0:a:0", "-vn"]
    if end is not None:
        cmd += ["-t", f"{end - (start or 0.0):.6f}"]
    cmd += ["-ac", "1", "-ar", str(int(sr)), "-f", "f32le", "-"]
    proc = subprocess.run(cmd, capture_output=True, check=False)
    if proc.returncode != 0:
        raise ThgError(f"cannot read audio from {path}: {_ffmpeg_reason(proc.stderr)}")
    wave = np.frombuffer(proc.stdout, dtype="<f4").astype(np.float32)
    if wave.size == 0:
        what = f" between {start or 0.0:.2f} s and {end:.2f} s" if end is not None else ""
        what = what or (f" after {start:.2f} s" if start else "")
        raise ThgError(f"audio in {path} is empty{what}")
    return np.clip(wave, -1.0, 1.0)


def write_wav(path: str | Path, wave: np.ndarray, sr: int) -> None:
    """Write a mono wave [n_samples] (float in [-1, 1]) as 16-bit PCM WAV, atomically."""
    pcm = (np.clip(np.asarray(wave, dtype=np.float64), -1.0, 1.0) * 32767.0).round().astype("<i2")
    with atomic_file(path, suffix=".wav") as tmp, wavmod.open(str(tmp), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(int(sr))
        w.writeframes(pcm.tobytes())


def audio_envelope(wave: np.ndarray, sr: int, fps: float, n_frames: int) -> np.ndarray:
    """RMS of the wave in a window of one frame duration centred on each video frame time i/fps.

    Returns [n_frames] float32 (0 outside the wave).
    """
    wave = np.asarray(wave, dtype=np.float64)
    csum = np.concatenate([[0.0], np.cumsum(wave * wave)])
    half = 0.5 * sr / fps
    centres = np.arange(n_frames) * (sr / fps)
    lo = np.clip(np.round(centres - half).astype(np.int64), 0, wave.size)
    hi = np.clip(np.round(centres + half).astype(np.int64), 0, wave.size)
    width = max(int(round(2 * half)), 1)
    return np.sqrt(np.maximum(csum[hi] - csum[lo], 0.0) / width).astype(np.float32)
