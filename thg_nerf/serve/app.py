"""The aiohttp server of ``thg-nerf serve``: one page, one WebSocket per client, one shared renderer.

Per client (:class:`Session`): the audio path (streaming features and the audio -> motion model, cheap, run on
a worker thread in arrival order) turns chunks into frame inputs, which wait in a bounded queue; the render
scheduler takes, round-robin over the clients, each one's newest waiting input (older ones are stale: dropped
and counted), renders it on the render thread (one at a time: the renderer uses every core), marks it
(provenance watermark), encodes it as JPEG and puts it in the client's bounded send queue (again dropping the
oldest when a slow connection lets it fill). A client that violates the protocol or disconnects is closed alone.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import itertools
import json
import os
import secrets
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import numpy as np

from thg_nerf import __version__
from thg_nerf.errors import MissingDependencyError, ThgError
from thg_nerf.log import get_logger
from thg_nerf.serve.config import ServeConfig
from thg_nerf.serve.protocol import (
    SAMPLE_RATE,
    ProtocolError,
    encode_jpeg,
    pack_frame,
    parse_control,
    unpack_audio,
)
from thg_nerf.utils.system import resident_mb

if TYPE_CHECKING:
    from aiohttp import web

    from thg_nerf.render.stream import FrameInput, FrameRenderer, FrameStream
    from thg_nerf.train.checkpoint import LoadedRun

log = get_logger(__name__)


def require_aiohttp():
    """The aiohttp module, or a one-line error naming the ``serve`` extra."""
    try:
        import aiohttp
        from aiohttp import web  # noqa: F401
    except ImportError:
        raise MissingDependencyError("aiohttp", "serve", "thg-nerf serve") from None
    return aiohttp


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def static_dir() -> Path:
    """The page's files (package data ``thg_nerf/serve/static``)."""
    return Path(str(resources.files("thg_nerf.serve") / "static"))


class _Bucket:
    """Token bucket: ``rate`` per second, at most ``capacity`` saved up."""

    def __init__(self, rate: float, capacity: float) -> None:
        self.rate, self.capacity, self.level, self.t = rate, capacity, capacity, time.monotonic()

    def take(self, amount: float) -> bool:
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self.t) * self.rate)
        self.t = now
        if amount > self.level:
            return False
        self.level -= amount
        return True


@dataclass
class _Job:
    inp: FrameInput
    seq: int
    sent: float


@dataclass
class Session:
    """One connected client."""

    id: int
    ws: web.WebSocketResponse
    stream: FrameStream
    cfg: ServeConfig
    pending: deque = field(default_factory=deque)
    out: asyncio.Queue = field(default_factory=asyncio.Queue)
    rendered: int = 0
    dropped: int = 0
    samples: int = 0
    closed: bool = False
    ended: bool = False
    audio: list = field(default_factory=list)
    """Audio chunks ``(seq, sent, pcm)`` received and not yet fed to the stream."""
    drain: asyncio.Task | None = None

    def __post_init__(self) -> None:
        self.out = asyncio.Queue(maxsize=self.cfg.queue_frames)
        self.audio_bucket = _Bucket(self.cfg.rate_factor * SAMPLE_RATE, self.cfg.burst_s * SAMPLE_RATE)
        self.message_bucket = _Bucket(self.cfg.max_messages_per_s, self.cfg.max_messages_per_s)

    def add_jobs(self, jobs: list[_Job]) -> None:
        """Queue frame inputs; beyond ``queue_frames`` the oldest are dropped (stale)."""
        for job in jobs:
            if len(self.pending) >= self.cfg.queue_frames:
                self.pending.popleft()
                self.dropped += 1
            self.pending.append(job)

    def take_job(self) -> _Job | None:
        """The newest waiting input; older ones are dropped (rendering them would only add latency)."""
        if not self.pending:
            return None
        job = self.pending.pop()
        self.dropped += len(self.pending)
        self.pending.clear()
        return job

    def deliver(self, data: bytes | str) -> None:
        """Queue an encoded frame (or a text message) for sending; when the queue is full the oldest goes."""
        if self.out.full():
            self.out.get_nowait()
            self.dropped += 1
        self.out.put_nowait(data)


class LiveServer:
    """The application: a loaded run, one shared :class:`FrameRenderer`, the sessions and the scheduler."""

    def __init__(self, run: LoadedRun, renderer: FrameRenderer, cfg: ServeConfig | None = None,
                 token: str | None = None, blink: str = "auto") -> None:
        self.run, self.renderer, self.cfg, self.token, self.blink = run, renderer, cfg or ServeConfig(), token, blink
        self.sessions: dict[int, Session] = {}
        self._ids = itertools.count(1)
        self._work: asyncio.Event | None = None
        import torch

        # every core for rendering; one for the per-chunk audio work (the motion model on a few frames), where
        # thread hand-offs on a busy machine cost more than they save (docs/SERVE.md)
        self._render_pool = ThreadPoolExecutor(1, "thg-render", torch.set_num_threads, (os.cpu_count() or 1,))
        self._audio_pool = ThreadPoolExecutor(1, "thg-audio", torch.set_num_threads, (1,))
        self._rr = 0
        self.started = time.monotonic()
        self.totals = {"rendered": 0, "dropped": 0, "clients": 0, "closed_for_errors": 0}
        self.watermark = self._watermarker()
        self.lookahead_s = self._new_stream().lookahead_s

    def _watermarker(self):
        from thg_nerf.provenance.records import watermarker_for_run

        return watermarker_for_run(Path(self.run.run_dir) / "run.json", tool="serve")

    def _new_stream(self):
        from thg_nerf.render.stream import FrameStream

        return FrameStream(self.run, self.blink, seed=secrets.randbelow(1 << 30))

    # ------------------------------------------------------------ app

    def app(self) -> web.Application:
        require_aiohttp()
        from aiohttp import web

        app = web.Application(client_max_size=64 * 1024)
        app.router.add_get("/", self.index)
        app.router.add_get("/ws", self.websocket)
        app.router.add_get("/stats", self.stats)
        app.router.add_static("/static", static_dir(), show_index=False, follow_symlinks=False)
        app.on_startup.append(self._start)
        app.on_shutdown.append(self._shutdown)
        return app

    async def _start(self, app) -> None:
        self._work = asyncio.Event()
        app["scheduler"] = asyncio.create_task(self._schedule())

    async def _shutdown(self, app) -> None:
        from aiohttp import WSCloseCode

        app["scheduler"].cancel()
        for s in list(self.sessions.values()):
            await s.ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")
        self._render_pool.shutdown(wait=False, cancel_futures=True)
        self._audio_pool.shutdown(wait=False, cancel_futures=True)

    async def index(self, request):
        from aiohttp import web

        return web.FileResponse(static_dir() / "index.html", headers={"Cache-Control": "no-store"})

    def _authorised(self, request) -> str | None:
        """None when the request may proceed, else why not."""
        if self.token is not None:
            given = request.query.get("token", "")
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                return "missing or wrong access token"
        origin = request.headers.get("Origin")
        if origin and urlsplit(origin).netloc != request.host:
            return f"cross-origin connection from {origin} refused"
        return None

    async def stats(self, request):
        from aiohttp import web

        why = self._authorised(request)
        if why:
            raise web.HTTPForbidden(text=why)
        return web.json_response(self.snapshot())

    def snapshot(self) -> dict:
        """Server-wide counters (also ``GET /stats``)."""
        live_dropped = sum(s.dropped for s in self.sessions.values())
        return {**self.totals, "dropped": self.totals["dropped"] + live_dropped, "connected": len(self.sessions),
                "uptime_s": round(time.monotonic() - self.started, 1),
                "rss_mb": round(resident_mb() or 0.0, 1), "fps": self.renderer.fps,
                "size": list(self.renderer.size), "fast_path": self.renderer.fast is not None}

    # ------------------------------------------------------------ clients

    async def websocket(self, request):
        from aiohttp import WSMsgType, web

        why = self._authorised(request)
        if why:
            log.warning("refused %s: %s", request.remote, why)
            raise web.HTTPForbidden(text=why)
        if len(self.sessions) >= self.cfg.max_clients:
            raise web.HTTPServiceUnavailable(text=f"server full ({self.cfg.max_clients} clients)")
        max_samples = int(self.cfg.max_chunk_ms * SAMPLE_RATE / 1000)
        ws = web.WebSocketResponse(max_msg_size=12 + 2 * max_samples + 64, heartbeat=self.cfg.heartbeat_s)
        await ws.prepare(request)
        session = Session(next(self._ids), ws, self._new_stream(), self.cfg)
        self.sessions[session.id] = session
        self.totals["clients"] += 1
        log.info("client %d connected from %s", session.id, request.remote)
        await ws.send_json({"type": "hello", "version": __version__, "fps": self.renderer.fps,
                            "width": self.renderer.size[0], "height": self.renderer.size[1],
                            "sample_rate": SAMPLE_RATE, "lookahead_ms": round(1000 * self.lookahead_s, 1),
                            "max_chunk_ms": self.cfg.max_chunk_ms, "fast_path": self.renderer.fast is not None,
                            "pose": self.renderer.pose})
        sender = asyncio.create_task(self._send_loop(session))
        ticker = asyncio.create_task(self._stats_loop(session))
        loop = asyncio.get_running_loop()
        try:
            while True:
                try:
                    msg = await ws.receive(timeout=self.cfg.idle_timeout_s)
                except asyncio.TimeoutError:
                    await self._close(session, f"no message for {self.cfg.idle_timeout_s:g} s")
                    break
                if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                    break
                if msg.type == WSMsgType.ERROR:
                    log.info("client %d: connection error %s", session.id, ws.exception())
                    break
                try:
                    if not session.message_bucket.take(1):
                        raise ProtocolError(f"more than {self.cfg.max_messages_per_s:g} messages per second")
                    if msg.type == WSMsgType.BINARY:
                        await self._audio(session, msg.data, max_samples, loop)
                    elif msg.type == WSMsgType.TEXT:
                        parse_control(msg.data)
                        await self._end(session, loop)
                    else:
                        raise ProtocolError(f"unexpected message type {msg.type}")
                except ProtocolError as e:
                    self.totals["closed_for_errors"] += 1
                    await self._close(session, str(e))
                    break
        finally:
            session.closed = True
            self.sessions.pop(session.id, None)
            for task in (sender, ticker, session.drain):
                if task is not None:
                    task.cancel()
            if not ws.closed:
                await ws.close()
            self.totals["dropped"] += session.dropped
            log.info("client %d gone: %d frames rendered, %d dropped", session.id, session.rendered,
                     session.dropped)
        return ws

    async def _audio(self, session: Session, data: bytes, max_samples: int, loop) -> None:
        if session.ended:
            raise ProtocolError("audio after the end of the stream")
        seq, sent, pcm = unpack_audio(data, max_samples)
        if not session.audio_bucket.take(len(pcm)):
            raise ProtocolError(f"audio arrives faster than {self.cfg.rate_factor:g}x real time")
        session.samples += len(pcm)
        session.audio.append((seq, sent, pcm))
        if session.drain is None or session.drain.done():
            session.drain = asyncio.create_task(self._drain(session, loop))

    async def _drain(self, session: Session, loop) -> None:
        """Feed every chunk received so far to the session's stream in one call (a busy CPU cannot fall behind
        chunk by chunk); each frame is tagged with the chunk that made it ready."""
        while session.audio and not session.closed:
            chunks, session.audio = session.audio, []
            feats = session.stream.features
            start = feats.samples_in
            ends = start + np.cumsum([len(c[2]) for c in chunks])
            inputs = await loop.run_in_executor(self._audio_pool, session.stream.push,
                                                np.concatenate([c[2] for c in chunks]))
            jobs = []
            for inp in inputs:
                k = min(int(np.searchsorted(ends, feats.samples_needed(inp.index))), len(chunks) - 1)
                jobs.append(_Job(inp, chunks[k][0], chunks[k][1]))
            if jobs:
                session.add_jobs(jobs)
                self._work.set()

    async def _end(self, session: Session, loop) -> None:
        session.ended = True
        if session.drain is not None:
            await session.drain
        inputs = await loop.run_in_executor(self._audio_pool, session.stream.flush)
        session.pending.extend(_Job(inp, -1, float("nan")) for inp in inputs)  # the tail: all of it, in order
        session.pending.append(None)  # marker: send "done" once the frames before it are out
        self._work.set()

    async def _close(self, session: Session, why: str) -> None:
        from aiohttp import WSCloseCode

        log.warning("closing client %d: %s", session.id, why)
        if not session.ws.closed:
            try:
                await session.ws.send_json({"type": "error", "message": why})
            except (ConnectionError, RuntimeError):
                pass
            await session.ws.close(code=WSCloseCode.POLICY_VIOLATION, message=why[:120].encode())

    async def _send_loop(self, session: Session) -> None:
        try:
            while True:
                data = await session.out.get()
                if isinstance(data, str):
                    await session.ws.send_str(data)
                else:
                    await session.ws.send_bytes(data)
        except (ConnectionError, RuntimeError):
            pass

    async def _stats_loop(self, session: Session) -> None:
        try:
            while True:
                await asyncio.sleep(self.cfg.stats_every_s)
                await session.ws.send_json({"type": "stats", "rendered": session.rendered, "dropped": session.dropped,
                                            "received_s": round(session.samples / SAMPLE_RATE, 3),
                                            "clients": len(self.sessions)})
        except (ConnectionError, RuntimeError):
            pass

    # ------------------------------------------------------------ rendering

    def _next(self) -> tuple[Session, _Job | None] | None:
        """Round-robin: the next session with waiting work and its job (None job: the end marker)."""
        ids = sorted(self.sessions)
        for k in range(len(ids)):
            s = self.sessions[ids[(self._rr + k) % len(ids)]]
            if s.pending:
                self._rr = (self._rr + k + 1) % len(ids)
                if s.pending[-1] is None:  # end of stream: render everything left, in order
                    return s, s.pending.popleft()
                return s, s.take_job()
        return None

    async def _schedule(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._work.wait()
            picked = self._next()
            if picked is None:
                self._work.clear()
                continue
            session, job = picked
            if job is None:
                session.deliver(json.dumps({"type": "done"}))
                continue
            try:
                data = await loop.run_in_executor(self._render_pool, self._render, session, job)
            except Exception:  # a bug must not stop the other clients' frames
                log.exception("rendering a frame for client %d failed", session.id)
                await self._close(session, "internal error while rendering")
                continue
            if not session.closed:
                session.deliver(data)

    def _render(self, session: Session, job: _Job) -> bytes:
        t0 = time.perf_counter()
        frame = self.watermark.mark(self.renderer.render(job.inp))
        jpeg = encode_jpeg(frame, self.cfg.jpeg_quality)
        session.rendered += 1
        self.totals["rendered"] += 1
        header = {"i": job.inp.index, "t": round(job.inp.index / self.renderer.fps, 4), "seq": job.seq,
                  "sent": None if np.isnan(job.sent) else job.sent, "rendered": session.rendered,
                  "dropped": session.dropped, "render_ms": round(1000 * (time.perf_counter() - t0), 1)}
        return pack_frame(header, jpeg)


def serve(run: LoadedRun, renderer: FrameRenderer, host: str = "127.0.0.1", port: int = 8000,
          cfg: ServeConfig | None = None, blink: str = "auto", print_fn=print) -> None:
    """Run the server until interrupted (prints the URL to open; a token is required off loopback)."""
    require_aiohttp()
    from aiohttp import web

    token = None if is_loopback(host) else secrets.token_urlsafe(18)
    server = LiveServer(run, renderer, cfg, token, blink)
    app = server.app()

    async def main() -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port, shutdown_timeout=2.0)
        try:
            await site.start()
        except OSError as e:
            await runner.cleanup()
            raise ThgError(f"cannot listen on {host}:{port} ({e.strerror or e})") from None
        bound = runner.addresses[0][1] if runner.addresses else port
        shown = f"[{host}]" if ":" in host else host
        url = f"http://{shown}:{bound}/" + (f"?token={token}" if token else "")
        print_fn(f"serving {run.run_dir} at {renderer.size[0]}x{renderer.size[1]}, {renderer.fps:g} fps, pose "
                 f"{renderer.pose}{' (fast path)' if renderer.fast is not None else ''}: open {url}", flush=True)
        if token:
            print_fn("listening beyond this machine: the access token in the URL is required to connect",
                     flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
