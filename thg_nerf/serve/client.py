"""A Python client of ``thg-nerf serve`` (for programs, the load test and ``benchmarks/bench_serve.py``).

>>> result = asyncio.run(stream_audio("http://127.0.0.1:8000/", wave))   # 16 kHz mono float wave
>>> result.latencies_ms, result.frames[0].image

``python -m thg_nerf.serve.client URL WAV [--seconds S]`` streams a file in real time and prints a summary.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from thg_nerf.serve.protocol import SAMPLE_RATE, decode_jpeg, pack_audio, unpack_frame


@dataclass
class ReceivedFrame:
    header: dict
    received_ms: float
    jpeg: bytes

    @property
    def image(self) -> np.ndarray:
        return decode_jpeg(self.jpeg)


@dataclass
class StreamResult:
    """What one client saw."""

    hello: dict | None = None
    frames: list[ReceivedFrame] = field(default_factory=list)
    stats: list[dict] = field(default_factory=list)
    done: bool = False
    error: str | None = None
    close_code: int | None = None
    sent_chunks: int = 0

    @property
    def latencies_ms(self) -> np.ndarray:
        """Chunk sent -> frame received, per frame (ms)."""
        return np.array([f.received_ms - f.header["sent"] for f in self.frames if f.header.get("sent") is not None])

    @property
    def rendered(self) -> int:
        """Frames the server rendered for this client (its last report)."""
        counts = [f.header["rendered"] for f in self.frames] + [s["rendered"] for s in self.stats]
        return max(counts, default=0)

    @property
    def dropped(self) -> int:
        counts = [f.header["dropped"] for f in self.frames] + [s["dropped"] for s in self.stats]
        return max(counts, default=0)


def ws_url(url: str, token: str | None = None) -> str:
    """The WebSocket URL of a server URL as printed by ``thg-nerf serve`` (its token kept)."""
    from urllib.parse import parse_qs, urlsplit

    parts = urlsplit(url)
    token = token or parse_qs(parts.query).get("token", [None])[0]
    scheme = "wss" if parts.scheme == "https" else "ws"
    return f"{scheme}://{parts.netloc}/ws" + (f"?token={token}" if token else "")


def _now_ms() -> float:
    return time.perf_counter() * 1000.0


async def stream_audio(url: str, wave: np.ndarray, chunk_ms: float = 20.0, realtime: bool = True,
                       end: bool = True, linger_s: float = 5.0, keep_jpeg: bool = True) -> StreamResult:
    """Send a 16 kHz mono wave in chunks (paced in real time), collect the frames until ``done``.

    ``end``: send ``{"type": "end"}`` after the audio and wait (at most ``linger_s``) for the last frames.
    """
    import aiohttp

    result = StreamResult()
    n = max(1, int(round(chunk_ms * SAMPLE_RATE / 1000)))
    async with aiohttp.ClientSession() as session, session.ws_connect(ws_url(url), max_msg_size=0) as ws:

        async def receive() -> None:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.BINARY:
                    header, jpeg = unpack_frame(msg.data)
                    result.frames.append(ReceivedFrame(header, _now_ms(), jpeg if keep_jpeg else b""))
                elif msg.type == aiohttp.WSMsgType.TEXT:
                    data = json.loads(msg.data)
                    kind = data.get("type")
                    if kind == "hello":
                        result.hello = data
                    elif kind == "stats":
                        result.stats.append(data)
                    elif kind == "error":
                        result.error = data.get("message")
                    elif kind == "done":
                        result.done = True
                        return
                else:
                    return

        reader = asyncio.create_task(receive())
        start = time.perf_counter()
        for k, a in enumerate(range(0, len(wave), n)):
            if realtime:
                delay = start + a / SAMPLE_RATE - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            if ws.closed:
                break
            await ws.send_bytes(pack_audio(k, _now_ms(), wave[a:a + n]))
            result.sent_chunks += 1
        if end and not ws.closed:
            await ws.send_str(json.dumps({"type": "end"}))
        try:
            await asyncio.wait_for(reader, timeout=linger_s if end else 0.5)
        except asyncio.TimeoutError:
            reader.cancel()
        result.close_code = ws.close_code
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m thg_nerf.serve.client", description=__doc__.splitlines()[0])
    p.add_argument("url", help="the URL printed by thg-nerf serve")
    p.add_argument("wav", help="audio file to stream")
    p.add_argument("--seconds", type=float, help="stream only the first SECONDS")
    args = p.parse_args(argv)
    from thg_nerf.audio.io import load_audio

    wave = load_audio(args.wav, SAMPLE_RATE, end=args.seconds)
    res = asyncio.run(stream_audio(args.url, wave, keep_jpeg=False))
    lat = res.latencies_ms
    print(json.dumps({"frames": len(res.frames), "rendered": res.rendered, "dropped": res.dropped,
                      "latency_p50_ms": float(np.percentile(lat, 50)) if len(lat) else None,
                      "error": res.error}), flush=True)
    return 0 if res.error is None else 1


if __name__ == "__main__":
    sys.exit(main())
