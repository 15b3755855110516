"""Server settings of ``thg-nerf serve`` (limits and queues; rendering settings live in ``render.config``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from thg_nerf.render.config import FastPathConfig


@dataclass
class ServeConfig:
    """Limits that keep one bad or slow client from hurting the server or the others."""

    max_clients: int = 8
    """Simultaneous WebSocket clients; further connections get HTTP 503."""
    max_chunk_ms: float = 100.0
    """Longest audio chunk in one message (the page sends 20 ms chunks)."""
    rate_factor: float = 1.5
    """Audio may arrive at most this many times faster than real time, on average ..."""
    burst_s: float = 1.0
    """... with bursts of up to this many seconds of audio (network jitter)."""
    max_messages_per_s: float = 200.0
    """Messages per second (any kind), averaged over one second."""
    queue_frames: int = 2
    """Frames waiting per client, before rendering and before sending; older ones are dropped (stale)."""
    idle_timeout_s: float = 60.0
    """A client that sends nothing for this long is closed."""
    heartbeat_s: float = 15.0
    """WebSocket ping interval (dead connections are noticed)."""
    jpeg_quality: int = 85
    """Quality of the JPEG frames sent to clients."""
    stats_every_s: float = 1.0
    """Interval of the ``stats`` messages to each client."""
    fast_path: FastPathConfig = field(default_factory=FastPathConfig)
    """Static-camera fast path (``--pose static``)."""
