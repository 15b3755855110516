"""The WebSocket protocol of ``thg-nerf serve`` (docs/SERVE.md), shared by the server and the Python client.

Client -> server, binary: an audio chunk::

    u32 LE  sequence number
    f64 LE  the client's clock when it sent the chunk (ms; echoed back with the frames it completes)
    i16 LE  PCM samples, mono, 16 kHz (1 .. max_chunk_ms of audio)

Client -> server, text: ``{"type": "end"}`` (end of the audio: the last frames are rendered and sent, then
``{"type": "done"}``).

Server -> client, text: ``{"type": "hello", ...}`` once (fps, size, look-ahead, limits), ``{"type": "stats",
...}`` every second, ``{"type": "done"}`` after ``end``, ``{"type": "error", "message": ...}`` before the
server closes the connection for a protocol violation.

Server -> client, binary: a frame::

    u32 LE  length L of the JSON header
    L bytes JSON header: i (frame index), t (media time, s), seq and sent (of the audio chunk that made the
            frame ready), rendered and dropped (this client's counts so far), render_ms
    JPEG    the frame
"""

from __future__ import annotations

import json
import struct

import numpy as np

from thg_nerf.errors import ThgError

SAMPLE_RATE = 16000
AUDIO_HEADER = struct.Struct("<Id")
FRAME_HEADER = struct.Struct("<I")


class ProtocolError(ThgError):
    """A malformed or forbidden message (the server closes that client alone)."""


def pack_audio(seq: int, sent_ms: float, samples: np.ndarray) -> bytes:
    """An audio message from float samples in [-1, 1] (or int16) [n]."""
    a = np.asarray(samples)
    if a.dtype != np.int16:
        a = np.clip(np.rint(np.asarray(a, np.float64) * 32767.0), -32768, 32767).astype(np.int16)
    return AUDIO_HEADER.pack(int(seq) & 0xFFFFFFFF, float(sent_ms)) + a.astype("<i2").tobytes()


def unpack_audio(data: bytes, max_samples: int) -> tuple[int, float, np.ndarray]:
    """``(seq, sent_ms, int16 samples [n])`` of an audio message; ProtocolError when malformed."""
    n_bytes = len(data) - AUDIO_HEADER.size
    if n_bytes <= 0 or n_bytes % 2:
        raise ProtocolError(f"audio message of {len(data)} bytes: expected a 12-byte header and int16 samples")
    if n_bytes // 2 > max_samples:
        raise ProtocolError(f"audio chunk of {n_bytes // 2} samples exceeds the limit of {max_samples}")
    seq, sent = AUDIO_HEADER.unpack_from(data)
    if not np.isfinite(sent):
        raise ProtocolError("audio message with a non-finite timestamp")
    return seq, sent, np.frombuffer(data, "<i2", offset=AUDIO_HEADER.size).astype(np.int16)


def pack_frame(header: dict, jpeg: bytes) -> bytes:
    """A frame message: JSON header + JPEG bytes."""
    head = json.dumps(header, separators=(",", ":")).encode()
    return FRAME_HEADER.pack(len(head)) + head + jpeg


def unpack_frame(data: bytes) -> tuple[dict, bytes]:
    """``(header, jpeg)`` of a frame message."""
    (n,) = FRAME_HEADER.unpack_from(data)
    return json.loads(data[FRAME_HEADER.size:FRAME_HEADER.size + n]), data[FRAME_HEADER.size + n:]


def parse_control(text: str) -> dict:
    """A client's text message (only ``{"type": "end"}`` is defined); ProtocolError otherwise."""
    try:
        msg = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ProtocolError("text message is not JSON") from None
    if not isinstance(msg, dict) or msg.get("type") not in ("end",):
        raise ProtocolError("unknown control message (expected {\"type\": \"end\"})")
    return msg


def encode_jpeg(frame: np.ndarray, quality: int) -> bytes:
    """JPEG bytes of a uint8 [H, W, 3] frame."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=int(quality))
    return buf.getvalue()


def decode_jpeg(data: bytes) -> np.ndarray:
    """uint8 [H, W, 3] of JPEG bytes."""
    import io

    from PIL import Image

    return np.array(Image.open(io.BytesIO(data)).convert("RGB"))
