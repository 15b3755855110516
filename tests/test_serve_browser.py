"""``thg-nerf serve`` in a real headless Chromium (Debian's ``chromium``, driven by Playwright's Python API).

Chromium's fake microphone reads a WAV of synthetic speech; the page connects, streams it for 10 s, and the
test watches the page's WebSocket: it receives >= 80 % of the frames the server says it rendered, and the mouth
opening of the received frames follows the audio the page sent.
"""

from __future__ import annotations

import struct
import time
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = Path("/usr/bin/chromium")
SR = 16000
STREAM_S = 10.0

pytest.importorskip("aiohttp", reason="thg-nerf serve needs the 'serve' extra (aiohttp)")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
if not CHROMIUM.is_file():
    pytest.skip(f"{CHROMIUM} not found (apt-get install chromium; .ci/run installs it)", allow_module_level=True)

from test_render_api import corr, darkness, interior_box  # noqa: E402
from test_serve import Server  # noqa: E402

from thg_nerf.serve.protocol import decode_jpeg, unpack_frame  # noqa: E402
from thg_nerf.testing.signals import speech_like  # noqa: E402


def launch_args(wav: Path) -> list[str]:
    """Chromium flags; the fresh ``--user-data-dir`` is given to Playwright's persistent context (it refuses
    the flag itself)."""
    return ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={wav}", "--autoplay-policy=no-user-gesture-required"]


@pytest.mark.slow
def test_browser_microphone_streams_and_the_mouth_follows(trained_synthetic_run, tmp_path):
    from thg_nerf.audio.io import audio_envelope, write_wav
    from thg_nerf.render.poses import static_pose
    from thg_nerf.train.checkpoint import _read_poses

    wav = tmp_path / "speech.wav"
    write_wav(wav, speech_like(30.0, SR, seed=12), SR)  # longer than the stream: the fake mic loops it
    server = Server(trained_synthetic_run.run_dir, "--blink", "none")
    sent, frames = [], []

    def on_socket(ws) -> None:
        ws.on("framesent", lambda payload: sent.append(bytes(payload)) if isinstance(payload, bytes) else None)
        ws.on("framereceived", lambda payload: frames.append(unpack_frame(bytes(payload)))
              if isinstance(payload, bytes) else None)

    try:
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch_persistent_context(
                str(tmp_path / "profile"), executable_path=str(CHROMIUM), headless=True, args=launch_args(wav),
                permissions=["microphone"])
            try:
                page = browser.new_page()
                page.on("websocket", on_socket)
                page.goto(server.url)
                page.click("#mic")
                page.wait_for_function("window.thg.state === 'streaming'", timeout=30_000)
                time.sleep(STREAM_S)
                state = page.evaluate("({...window.thg, latencies: window.thg.latencies.length})")
                shown = page.inner_text("#s-latency")
                page.click("#stop")
            finally:
                browser.close()
    finally:
        server.stop()

    assert not state["errors"], state["errors"]
    pcm = np.concatenate([np.frombuffer(m[12:], "<i2") for m in sent]).astype(np.float32) / 32768.0
    assert len(pcm) >= 0.8 * STREAM_S * SR, len(pcm) / SR  # the page streamed ~10 s of microphone audio
    rendered = max(h["rendered"] for h, _ in frames)
    assert len(frames) >= 0.8 * rendered and len(frames) >= 10, (len(frames), rendered)
    assert 0.8 * len(frames) <= state["received"] <= len(frames) and "ms" in shown  # the page counted them

    info = trained_synthetic_run.info
    c2w = static_pose(_read_poses(trained_synthetic_run.run_dir)["train_c2w"])
    box = interior_box(c2w, info.intrinsics, info.scene)
    env = audio_envelope(pcm, SR, info.fps, int(len(pcm) / SR * info.fps))
    idx = np.array([h["i"] for h, _ in frames])
    keep = idx < len(env)
    mouth = np.array([darkness(decode_jpeg(j), box) for _, j in frames])[keep]
    assert np.ptp(mouth) >= 8 and corr(mouth, env[idx[keep]]) > 0.5, (corr(mouth, env[idx[keep]]), mouth)


def test_chromium_launch_flags(tmp_path):
    args = launch_args(tmp_path / "a.wav")
    assert f"--use-file-for-fake-audio-capture={tmp_path / 'a.wav'}" in args and "--disable-quic" in args
    assert struct.calcsize("<Id") == 12  # the page packs the same 12-byte audio header
