"""Render outputs (thg_nerf.render.output): backgrounds, mp4/webm/PNG writers, atomicity, audio segments."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from thg_nerf.audio.io import load_audio, write_wav
from thg_nerf.errors import ThgError
from thg_nerf.render import output as O
from thg_nerf.utils.video import ffmpeg_exe, probe_video

FPS = 25.0
SIZE = (48, 32)


def frame_at(i: int, alpha: bool = False) -> np.ndarray:
    """A moving square on a grey ramp; with alpha: the square is opaque, the rest half transparent."""
    w, h = SIZE
    img = np.zeros((h, w, 4 if alpha else 3), np.uint8)
    img[..., :3] = np.linspace(40, 200, w, dtype=np.uint8)[None, :, None]
    x = (2 * i) % (w - 10)
    img[8:18, x:x + 10, :3] = (255, 40, 40)
    if alpha:
        img[..., 3] = 128
        img[8:18, x:x + 10, 3] = 255
    return img


@pytest.fixture(scope="module")
def tone_wav(tmp_path_factory):
    """2.0 s stereo 44.1 kHz wav (a 440 Hz tone)."""
    import wave

    path = tmp_path_factory.mktemp("audio") / "tone.wav"
    sr = 44100
    t = np.arange(int(2.0 * sr)) / sr
    pcm = (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(np.repeat(pcm[:, None], 2, 1).tobytes())
    return path


def no_temp_left(folder) -> None:
    leftovers = [p.name for p in folder.iterdir() if p.name.startswith(".")]
    assert not leftovers, leftovers


# ---------------------------------------------------------------- backgrounds


def test_backgrounds(tmp_path):
    plate = np.zeros((16, 16, 3), np.uint8)
    plate[:, 8:] = 200
    got = O.make_background("plate", plate, (32, 32))
    assert got.shape == (32, 32, 3) and got[:, :14].max() < 20 and got[:, 18:].min() > 180
    assert (O.make_background("white", plate, (8, 6)) == 255).all()
    assert (O.make_background("black", plate, (8, 6)) == 0).all()
    np.testing.assert_array_equal(O.make_background("#10ff80", plate, (4, 4))[0, 0], [16, 255, 128])
    assert O.make_background("alpha", plate, (4, 4)) is None
    img = np.zeros((40, 80, 3), np.uint8)
    img[:, 20:60] = (0, 0, 255)  # centre square of a wide image: a cover-crop keeps only blue
    Image.fromarray(img).save(tmp_path / "bg.png")
    got = O.make_background(str(tmp_path / "bg.png"), plate, (20, 20))
    assert got.shape == (20, 20, 3) and (got[..., 2] > 200).all() and got[..., 0].max() < 30
    for bad, msg in (("#12345", "#RRGGBB"), ("purple", "no such image"), (str(tmp_path / "no.png"), "no such")):
        with pytest.raises(ThgError, match=msg):
            O.check_background(bad)
    (tmp_path / "broken.png").write_bytes(b"garbage")
    with pytest.raises(ThgError, match="cannot read background image"):
        O.make_background(str(tmp_path / "broken.png"), plate, (8, 8))


def test_output_kinds(tmp_path):
    assert O.output_kind(tmp_path / "a.mp4", False) == "mp4"
    assert O.output_kind(tmp_path / "a.WEBM", True) == "webm"
    assert O.output_kind(tmp_path / "frames", True) == "png"
    assert O.output_kind(tmp_path, False) == "png"
    with pytest.raises(ThgError, match="--bg alpha needs"):
        O.output_kind(tmp_path / "a.mp4", True)
    with pytest.raises(ThgError, match=".mp4 \\(H.264\\) or .webm"):
        O.output_kind(tmp_path / "a.mov", False)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ThgError, match="not a directory"):
        O.output_kind(tmp_path / "file", False)
    (tmp_path / "d.mp4").mkdir()
    with pytest.raises(ThgError, match="is a directory"):
        O.output_kind(tmp_path / "d.mp4", False)
    assert O.even_size((33, 20)) == (34, 20)


# ---------------------------------------------------------------- writers


def test_mp4_with_audio(tmp_path, tone_wav):
    out = tmp_path / "out.mp4"
    with O.open_output(out, SIZE, FPS, audio_path=tone_wav) as w:
        for i in range(50):
            w.write(frame_at(i))
    info = probe_video(out)
    assert (info.width, info.height) == SIZE and info.n_frames == 50 and info.has_audio
    assert abs(info.fps - FPS) < 1e-6
    audio = load_audio(out, sr=16000)
    assert abs(audio.size / 16000 - 2.0) < 1 / FPS
    no_temp_left(tmp_path)
    with pytest.raises(ThgError, match="even"):
        with O.open_output(tmp_path / "odd.mp4", (33, 32), FPS):
            pass
    assert not (tmp_path / "odd.mp4").exists()


def test_webm_keeps_alpha(tmp_path, tone_wav):
    import imageio_ffmpeg

    out = tmp_path / "out.webm"
    with O.open_output(out, SIZE, FPS, alpha=True, audio_path=tone_wav) as w:
        for i in range(20):
            w.write(frame_at(i, alpha=True))
    info = probe_video(out)
    assert info.has_audio and (info.width, info.height) == SIZE
    gen = imageio_ffmpeg.read_frames(str(out), pix_fmt="rgba", bpp=4, input_params=["-c:v", "libvpx-vp9"])
    next(gen)
    first = np.frombuffer(next(gen), np.uint8).reshape(SIZE[1], SIZE[0], 4)
    gen.close()
    ref = frame_at(0, alpha=True)
    assert np.abs(first[..., 3].astype(int) - ref[..., 3]).mean() < 8  # the alpha plane survived
    assert np.abs(first[..., :3].astype(int) - ref[..., :3]).mean() < 12


def test_png_sequence(tmp_path, tone_wav):
    out = tmp_path / "frames"
    with O.open_output(out, SIZE, FPS, alpha=True, audio_path=tone_wav) as w:
        for i in range(3):
            w.write(frame_at(i, alpha=True))
    names = sorted(p.name for p in out.iterdir())
    assert names == ["audio.wav", "frame_000000.png", "frame_000001.png", "frame_000002.png"]
    written, ref = np.asarray(Image.open(out / "frame_000001.png")).astype(int), frame_at(1, alpha=True)
    np.testing.assert_array_equal(written[..., 3], ref[..., 3])  # colour carries the provenance mark, alpha not
    assert np.abs(written[..., :3] - ref[..., :3]).max() <= 6
    # a previous render is replaced, a folder with other files is refused
    with O.open_output(out, SIZE, FPS) as w:
        w.write(frame_at(0))
    assert sorted(p.name for p in out.iterdir()) == ["frame_000000.png"]
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(ThgError, match="holds other files"):
        with O.open_output(other, SIZE, FPS):
            pass
    assert (other / "notes.txt").read_text() == "keep me"
    no_temp_left(tmp_path)


@pytest.mark.parametrize("name", ["out.mp4", "out.webm", "frames"])
@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_no_partial_output_on_error(tmp_path, tone_wav, name, exc):
    out = tmp_path / name
    with pytest.raises(exc):
        with O.open_output(out, SIZE, FPS, audio_path=tone_wav) as w:
            for i in range(5):
                w.write(frame_at(i))
            raise exc("stop")
    assert not out.exists()
    no_temp_left(tmp_path)


def test_convert_audio_cuts_and_keeps_channels(tmp_path, tone_wav):
    dst = tmp_path / "seg.wav"
    O.convert_audio(tone_wav, dst, start=0.5, end=1.25)
    import wave

    with wave.open(str(dst)) as w:
        assert w.getnchannels() == 2 and w.getframerate() == 44100
        assert abs(w.getnframes() / 44100 - 0.75) < 0.002
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF....garbage")
    with pytest.raises(ThgError, match="cannot copy the audio"):
        O.convert_audio(bad, tmp_path / "x.wav")
    write_wav(tmp_path / "mono.wav", np.zeros(1600, np.float32), 16000)
    O.convert_audio(tmp_path / "mono.wav", tmp_path / "copy.wav")
    assert (tmp_path / "copy.wav").stat().st_size > 3000
    assert ffmpeg_exe()
