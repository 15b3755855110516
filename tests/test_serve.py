"""``thg-nerf serve``: protocol, safety rules, loopback load test, a client killed mid-stream, offline = live.

The server runs as a subprocess on the trained synthetic run, bound to 127.0.0.1 on a free port, and is
stopped by its pid at the end of the module.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

aiohttp = pytest.importorskip("aiohttp", reason="thg-nerf serve needs the 'serve' extra (aiohttp)")

from thg_nerf.serve.app import LiveServer, is_loopback  # noqa: E402
from thg_nerf.serve.client import stream_audio, ws_url  # noqa: E402
from thg_nerf.serve.protocol import pack_audio, unpack_audio  # noqa: E402
from thg_nerf.testing.signals import speech_like  # noqa: E402
from thg_nerf.utils.system import resident_mb  # noqa: E402

SR = 16000
START_TIMEOUT_S = 600  # loading the run and building the fast path on a busy 2-core machine


class Server:
    """A ``thg-nerf serve`` subprocess; ``url`` once it listens; ``rss_mb()`` of its process."""

    def __init__(self, run_dir: Path, *args: str) -> None:
        cmd = [sys.executable, "-m", "thg_nerf.cli.main", "-q", "serve", str(run_dir), "--port", "0", *args]
        env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.lines: list[str] = []
        self.url = None
        found = threading.Event()

        def read() -> None:
            for line in self.proc.stdout:
                self.lines.append(line)
                if "open http" in line and self.url is None:
                    self.url = line.split("open ", 1)[1].strip()
                    found.set()
            found.set()

        threading.Thread(target=read, daemon=True).start()
        if not found.wait(START_TIMEOUT_S) or self.url is None:
            self.stop()
            raise AssertionError("server did not start:\n" + "".join(self.lines[-20:]))

    def rss_mb(self) -> float:
        rss = resident_mb(self.proc.pid)
        assert rss is not None, f"cannot read the server's memory (pid {self.proc.pid})"
        return rss

    def stats(self) -> dict:
        import urllib.request

        with urllib.request.urlopen(self.url + "stats", timeout=10) as r:
            return json.loads(r.read())

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


@pytest.fixture(scope="module")
def server(trained_synthetic_run):
    srv = Server(trained_synthetic_run.run_dir, "--blink", "none", "--max-clients", "6")
    yield srv
    srv.stop()
    assert srv.proc.returncode is not None


# ---------------------------------------------------------------- unit


def test_protocol_round_trip_and_limits():
    wave = speech_like(0.02, SR)
    seq, sent, pcm = unpack_audio(pack_audio(7, 1234.5, wave), max_samples=320)
    assert (seq, sent, len(pcm)) == (7, 1234.5, 320)
    from thg_nerf.serve.protocol import ProtocolError

    for bad in (b"", b"\x00" * 13, pack_audio(1, 0.0, np.zeros(400, np.float32))):
        with pytest.raises(ProtocolError):
            unpack_audio(bad, max_samples=320)


def test_token_and_origin_rules():
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")

    def request(token: str | None, origin: str | None = None):
        return SimpleNamespace(query={"token": token} if token else {}, host="10.0.0.2:8000",
                               headers={"Origin": origin} if origin else {})

    locked = SimpleNamespace(token="s3cret")
    assert LiveServer._authorised(locked, request("s3cret")) is None
    assert "token" in LiveServer._authorised(locked, request(None))
    assert "token" in LiveServer._authorised(locked, request("guess"))
    assert "cross-origin" in LiveServer._authorised(locked, request("s3cret", "http://evil.example"))
    assert LiveServer._authorised(locked, request("s3cret", "http://10.0.0.2:8000")) is None


# ---------------------------------------------------------------- against a running server


async def _expect_closed(url: str, send) -> tuple[int | None, str | None]:
    """Connect, run ``send(ws)``, return (close code, error message) once the server closes."""
    error = None
    async with aiohttp.ClientSession() as s, s.ws_connect(ws_url(url)) as ws:
        await send(ws)
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT and json.loads(msg.data).get("type") == "error":
                error = json.loads(msg.data)["message"]
        return ws.close_code, error


@pytest.mark.slow
def test_bad_clients_are_closed_alone(server):
    wave = speech_like(4.0, SR, seed=3)

    async def garbage(ws):
        await ws.send_bytes(b"\x01\x02\x03")

    async def text(ws):
        await ws.send_str("hello?")

    async def too_big(ws):
        await ws.send_bytes(pack_audio(0, 0.0, np.zeros(SR, np.float32)))  # 1 s in one message

    async def too_fast(ws):
        for k in range(40):  # 4 s of audio at once: more than 1.5x real time with a 1 s burst
            await ws.send_bytes(pack_audio(k, 0.0, wave[k * 1600:(k + 1) * 1600]))

    async def main():
        good = asyncio.create_task(stream_audio(server.url, wave))
        await asyncio.sleep(0.5)
        closed = [await _expect_closed(server.url, f) for f in (garbage, text, too_big, too_fast)]
        return closed, await good

    closed, good = asyncio.run(main())
    for code, _ in closed:
        assert code in (1008, 1009), closed
    assert "int16" in closed[0][1] and "real time" in closed[3][1], closed
    assert good.error is None and good.done and len(good.frames) >= 5, (good.error, len(good.frames))
    assert good.close_code in (None, 1000)

    async def forbidden():
        async with aiohttp.ClientSession() as s:
            async with s.get(server.url + "ws", headers={"Origin": "http://evil.example"}) as r:
                return r.status

    assert asyncio.run(forbidden()) == 403


@pytest.mark.slow
def test_page_and_static_files(server):
    import urllib.error
    import urllib.request

    html = urllib.request.urlopen(server.url, timeout=10).read().decode()
    assert "static/app.js" in html and 'src="http' not in html and 'href="http' not in html  # no CDN
    assert b"WebSocket" in urllib.request.urlopen(server.url + "static/app.js", timeout=10).read()
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(server.url + "static/../app.py", timeout=10)


@pytest.mark.slow
def test_load_four_clients_and_one_killed_mid_stream(server, tmp_path):
    """4 clients stream 10 s at once while a 5th (a separate process) is killed mid-stream: no errors, every
    client served, memory flat; the benchmark runs the same for 60 s (benchmarks/bench_serve.py)."""
    from thg_nerf.audio.io import write_wav

    seconds = 10.0
    waves = [speech_like(seconds, SR, seed=10 + k) for k in range(4)]
    victim_wav = tmp_path / "victim.wav"
    write_wav(victim_wav, speech_like(seconds, SR, seed=20), SR)
    rss: list[float] = []

    async def sample_rss():
        while True:
            rss.append(server.rss_mb())
            await asyncio.sleep(1.0)

    async def main():
        sampler = asyncio.create_task(sample_rss())
        victim = subprocess.Popen([sys.executable, "-m", "thg_nerf.serve.client", server.url, str(victim_wav)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        clients = asyncio.gather(*(stream_audio(server.url, w, keep_jpeg=False) for w in waves))
        await asyncio.sleep(4.0)
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(10)
        results = await clients
        sampler.cancel()
        return results

    before = server.stats()
    results = asyncio.run(main())
    for r in results:
        assert r.error is None and r.done, r.error
        assert r.sent_chunks == int(np.ceil(seconds * SR / 320))
        assert len(r.frames) >= 5 and len(r.frames) >= 0.8 * r.rendered, (len(r.frames), r.rendered)
    stats = server.stats()
    assert stats["closed_for_errors"] == before["closed_for_errors"] and server.proc.poll() is None
    assert stats["connected"] == 0 and stats["clients"] == before["clients"] + 5
    steady = rss[len(rss) // 3:]
    assert max(steady) - min(steady) < 60.0, rss  # no growth with the stream's length


@pytest.mark.slow
def test_live_frames_equal_offline_stream(server, head_for_compare):
    """The same audio streamed offline (TalkingHead.stream) and to the server gives the same frames."""
    from thg_nerf.provenance.records import watermarker_for_run
    from thg_nerf.serve.protocol import decode_jpeg, encode_jpeg
    from thg_nerf.train.metrics import psnr

    wave = speech_like(2.0, SR, seed=44)
    live = asyncio.run(stream_audio(server.url, wave))
    assert live.done and live.frames
    chunk = 320  # the client's 20 ms chunks: the on-the-fly feature normalisation then sees the same audio
    offline = list(head_for_compare.stream([wave[a:a + chunk] for a in range(0, len(wave), chunk)], blink="none"))
    assert len(offline) == round(2.0 * head_for_compare.fps)
    mark = watermarker_for_run(head_for_compare.run.run_dir / "run.json", tool="serve")
    import torch

    for f in live.frames:
        ref = decode_jpeg(encode_jpeg(mark.mark(offline[f.header["i"]]), 85))
        assert psnr(torch.from_numpy(f.image) / 255.0, torch.from_numpy(ref) / 255.0) >= 40.0, f.header


@pytest.fixture(scope="module")
def head_for_compare(trained_synthetic_run):
    from thg_nerf.render.talking_head import TalkingHead

    return TalkingHead.load(trained_synthetic_run.run_dir, device="cpu")


def test_missing_extra_is_one_line(monkeypatch, capsys):
    import builtins

    from thg_nerf.cli.main import main

    real = builtins.__import__

    def no_aiohttp(name, *a, **k):
        if name == "aiohttp" or name.startswith("aiohttp."):
            raise ImportError(name)
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_aiohttp)
    assert main(["serve", "does/not/matter"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "thg-nerf[serve]" in err[0], err
