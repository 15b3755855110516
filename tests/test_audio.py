"""Audio IO (ffmpeg decode, WAV write, envelope) and per-frame audio features."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from thg_nerf.audio import features as F
from thg_nerf.audio.io import audio_envelope, load_audio, write_wav
from thg_nerf.errors import MissingDependencyError, ThgError
from thg_nerf.testing.signals import beep, speech_like
from thg_nerf.utils.video import ffmpeg_exe

SR = 16000


def ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-v", "error", "-nostdin", "-y", *args], check=True)


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return speech_like(6.0, seed=1)


@pytest.fixture(scope="module")
def wav(tmp_path_factory, speech) -> Path:
    path = tmp_path_factory.mktemp("audio") / "speech.wav"
    write_wav(path, speech, SR)
    return path


# ---------------------------------------------------------------- io


def test_wav_roundtrip_and_atomic(tmp_path, speech):
    path = tmp_path / "out.wav"
    write_wav(path, np.concatenate([speech, [1.7, -3.0]]), SR)
    back = load_audio(path)
    assert back.dtype == np.float32 and back.shape == (speech.size + 2,)
    assert np.abs(back[:-2] - speech).max() < 1.5 / 32767
    assert back[-2] == pytest.approx(1.0, abs=1e-4) and back[-1] == pytest.approx(-1.0, abs=1e-4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.wav"]


@pytest.mark.parametrize("ext", ["flac", "mp3", "m4a"])
def test_compressed_formats_resampled_to_16k(tmp_path, wav, speech, ext):
    src = tmp_path / f"speech.{ext}"
    ffmpeg("-i", str(wav), "-ar", "44100", "-ac", "2", str(src))
    back = load_audio(src)
    assert abs(back.size - speech.size) < 0.03 * SR  # encoder padding only
    a, n = SR, 3 * SR  # encoders add a delay of up to ~1500 samples
    lag = int(np.argmax(np.correlate(back[a:a + n + 1500], speech[a:a + n], "valid")))
    assert np.corrcoef(back[a + lag:a + lag + n], speech[a:a + n])[0, 1] > 0.9


def test_video_audio_track_and_segment(tmp_path, wav, speech):
    video = tmp_path / "clip.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x64:rate=25", "-i", str(wav), "-t", "6", "-c:v", "libx264",
           "-pix_fmt", "yuv420p", "-c:a", "flac", "-strict", "-2", "-ar", "48000", str(video))
    full = load_audio(video)
    assert abs(full.size - speech.size) < 0.05 * SR
    seg = load_audio(wav, start=1.0, end=2.5)
    assert seg.size == int(1.5 * SR)
    assert np.abs(seg - speech[SR:SR + seg.size]).max() < 1e-3
    assert load_audio(wav, start=5.0).size == SR


@pytest.mark.parametrize("editlist", [True, False])
def test_video_frames_and_audio_keep_the_players_timing(tmp_path, editlist):
    """Flashes and clicks at 1, 2, 3 s, encoded as phones and editors do (H.264 with B-frames, so the first frame
    is presented after a composition delay; AAC, with its 1024 priming samples): the decoded frames and audio
    keep the timing a player shows, at the clip's rate and resampled. With an edit list (most files) that is the
    source's; without one (some muxers) the video is presented 2 frames late and the audio 21 ms (1024 samples) late,
    as ffprobe's timestamps say, and the decoders must follow them, not count from the first packet."""
    from thg_nerf.utils.video import iter_frames

    fps, sr, events = 30, 48000, (1.0, 2.0, 3.0)
    frames = np.zeros((4 * fps, 32, 32, 3), np.uint8)
    clicks = np.zeros(4 * sr, np.float32)
    for t in events:
        frames[round(t * fps)] = 255
        clicks[int(t * sr):int(t * sr) + 48] = 0.9
    (tmp_path / "v.raw").write_bytes(frames.tobytes())
    (tmp_path / "a.raw").write_bytes(clicks.tobytes())
    video = tmp_path / "clip.mp4"
    ffmpeg("-f", "rawvideo", "-pix_fmt", "rgb24", "-s", "32x32", "-r", str(fps), "-i", str(tmp_path / "v.raw"),
           "-f", "f32le", "-ar", str(sr), "-ac", "1", "-i", str(tmp_path / "a.raw"), "-c:v", "libx264", "-bf", "3",
           "-g", str(fps), "-pix_fmt", "yuv420p", "-c:a", "aac", *(() if editlist else ("-use_editlist", "0")),
           str(video))
    video_delay, audio_delay = (0.0, 0.0) if editlist else (2 / fps, 1024 / sr)
    for rate in (None, 25.0):
        level = np.array([f.mean() for f in iter_frames(video, fps=rate)])
        want = [round((t + video_delay) * (rate or fps)) for t in events]
        assert list(np.flatnonzero(level > 128)) == want, rate
    wave = load_audio(video, SR)
    got = [int(np.argmax(np.abs(wave[int((t - 0.3) * SR):int((t + 0.3) * SR)]))) + int((t - 0.3) * SR) for t in events]
    assert np.abs(np.array(got) / SR - [t + audio_delay for t in events]).max() < 0.002, got  # 1/20 frame


def test_stereo_is_downmixed(tmp_path, speech):
    src = tmp_path / "stereo.wav"
    write_wav(tmp_path / "mono.wav", speech, SR)
    ffmpeg("-i", str(tmp_path / "mono.wav"), "-af", "pan=stereo|c0=c0|c1=c0", str(src))
    back = load_audio(src)
    assert back.ndim == 1 and np.corrcoef(back, speech)[0, 1] > 0.999


def test_io_errors(tmp_path, wav):
    with pytest.raises(ThgError, match="not found"):
        load_audio(tmp_path / "nope.wav")
    bad = tmp_path / "bad.wav"
    bad.write_bytes(np.random.default_rng(0).bytes(3000))
    with pytest.raises(ThgError, match="corrupt or unsupported"):
        load_audio(bad)
    silent_video = tmp_path / "v.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x64:rate=10", "-t", "1", "-pix_fmt", "yuv420p", str(silent_video))
    with pytest.raises(ThgError, match="no audio stream"):
        load_audio(silent_video)
    empty = tmp_path / "empty.wav"
    write_wav(empty, np.zeros(0, np.float32), SR)
    with pytest.raises(ThgError, match="empty"):
        load_audio(empty)
    with pytest.raises(ThgError, match="empty"):
        load_audio(wav, start=100.0)
    with pytest.raises(ThgError, match="after start"):
        load_audio(wav, start=2.0, end=1.0)
    with pytest.raises(ThgError, match=">= 0"):
        load_audio(wav, start=-1.0)
    with pytest.raises(ThgError) as info:
        load_audio(bad)
    assert "\n" not in str(info.value)


def test_envelope():
    sine = (0.5 * np.sin(2 * np.pi * 440 * np.arange(2 * SR) / SR)).astype(np.float32)
    env = audio_envelope(sine, SR, 25, 50)
    assert env.shape == (50,) and env.dtype == np.float32
    assert np.allclose(env[1:-1], 0.5 / np.sqrt(2), rtol=0.02)
    assert env[0] == pytest.approx(0.25, rel=0.05)  # half the window lies before t=0: power halves
    assert np.all(audio_envelope(np.zeros(SR, np.float32), SR, 30, 40) == 0)
    assert int(np.argmax(audio_envelope(beep(3.0, 2.0), SR, 30, 90))) == 60


# ---------------------------------------------------------------- specs


def test_parse_spec_and_shapes(tmp_path):
    assert F.parse_spec("mel") == F.AudioSpec("mel")
    assert F.feature_shape("mel") == (16, 32)
    for bad in ["", "mfcc", "mel:x", "hubert", "hubert:", "npy: ", "wav2vec", "HUBERT:x"]:
        with pytest.raises(ThgError, match="invalid audio feature spec"):
            F.parse_spec(bad)
    with pytest.raises(ThgError, match="model directory not found"):
        F.parse_spec(f"hubert:{tmp_path / 'none'}")
    with pytest.raises(ThgError, match="feature file not found"):
        F.parse_spec(f"npy:{tmp_path / 'x.npy'}")
    assert F.parse_spec(f"npy:{tmp_path / 'x.npy'}", check_paths=False).path == tmp_path / "x.npy"
    assert str(F.parse_spec("wav2vec2:/m", check_paths=False)) == "wav2vec2:/m"


# ---------------------------------------------------------------- mel


def centre(feats: np.ndarray) -> np.ndarray:
    """The centre step of each row: [n_frames, C]."""
    return feats[:, feats.shape[1] // 2]


def test_mel_shape_and_range(speech):
    feats = F.extract_features(speech, SR, 25, 150)
    assert feats.shape == (150, 16, 32) and feats.dtype == np.float32
    assert feats.min() >= 0 and feats.max() <= 3.0 + 1e-6
    # step k of row i is row i + (k - 8) / 2 at 25 fps (20 ms hop): windows overlap consistently
    assert np.allclose(feats[20:, 0], feats[16:-4, 8], atol=1e-6)


@pytest.mark.parametrize("fps", [25.0, 30.0, 29.97])
def test_mel_alignment_beep(fps):
    n = int(3 * fps)
    feats = F.extract_features(beep(3.0, 2.0), SR, fps, n)
    level = centre(feats).max(axis=1)
    assert int(np.argmax(level)) == round(2 * fps)
    assert level[round(2 * fps)] > 1.5 and level[: round(1.8 * fps)].max() == 0
    # within the row of frame round(fps) (t = 1 s), the beep is 1 s later: outside the 320 ms window
    assert feats[round(fps)].max() == 0


def test_mel_loudness_invariance(speech):
    ref = F.extract_features(speech, SR, 25, 150)
    for gain in (0.03, 3.0):
        other = F.extract_features(np.clip(speech * gain, -1, 1), SR, 25, 150)
        assert np.abs(other - ref).mean() < 1e-3 and np.abs(other - ref).max() < 0.05


def test_mel_silence_is_distinct(speech):
    assert np.all(F.extract_features(np.zeros(3 * SR, np.float32), SR, 25, 75) == 0)
    hiss = (1e-5 * np.random.default_rng(0).standard_normal(3 * SR)).astype(np.float32)  # ~ -100 dBFS
    assert np.all(F.extract_features(hiss, SR, 25, 75) == 0)
    feats = centre(F.extract_features(speech, SR, 25, 150))
    env = audio_envelope(speech, SR, 25, 150)
    assert np.all(feats[env == 0] == 0)  # the digitally silent pauses
    loud = env > 0.5 * env.max()
    assert feats[loud].mean() > 1.5 and feats[loud].mean(axis=1).min() > 0.8
    # a clip continuing past the audio: padding rows look silent
    assert np.all(F.extract_features(speech, SR, 25, 200)[160:] == 0)


def test_mel_comparable_across_speakers(speech):
    other = speech_like(6.0, seed=5, f0=210.0, tilt=2.0, gain=0.05)
    means = []
    for wave in (speech, other):
        feats = centre(F.extract_features(wave, SR, 25, 150))
        env = audio_envelope(wave, SR, 25, 150)
        means.append(feats[env > 0.5 * env.max()].mean(axis=0))
    assert np.abs(means[0] - means[1]).mean() < 0.3


def test_mel_input_rate_is_resampled(speech):
    from scipy.signal import resample_poly

    at48 = resample_poly(speech, 3, 1).astype(np.float32)
    a = F.extract_features(speech, SR, 25, 150)
    b = F.extract_features(at48, 48000, 25, 150)
    assert np.abs(a - b).mean() < 0.02


# ---------------------------------------------------------------- npy import


def test_npy_import(tmp_path):
    n_src = 50
    deep = np.broadcast_to(np.arange(n_src, dtype=np.float32)[:, None, None], (n_src, 16, 29)).copy()
    np.save(tmp_path / "ds.npy", deep)
    spec = f"npy:{tmp_path / 'ds.npy'}"
    assert F.feature_shape(spec) == (16, 29)
    same = F.extract_features(np.zeros(10), SR, 25, n_src, spec)
    assert np.array_equal(same, deep)
    up = F.extract_features(np.zeros(10), SR, 30, 60, spec)  # 25 fps -> 30 fps, same duration
    assert up.shape == (60, 16, 29)
    assert np.allclose(up[:, 0, 0], np.minimum(np.arange(60) * n_src / 60, n_src - 1), atol=1e-5)
    np.save(tmp_path / "hu.npy", np.random.default_rng(0).standard_normal((40, 1024)).astype(np.float16))
    assert F.feature_shape(f"npy:{tmp_path / 'hu.npy'}") == (1, 1024)
    assert F.extract_features(np.zeros(10), SR, 25, 20, f"npy:{tmp_path / 'hu.npy'}").shape == (20, 1, 1024)


def test_npy_errors(tmp_path):
    np.save(tmp_path / "flat.npy", np.zeros(10))
    with pytest.raises(ThgError, match=r"must be a numeric \[N, T, C\]"):
        F.extract_features(np.zeros(10), SR, 25, 5, f"npy:{tmp_path / 'flat.npy'}")
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    with pytest.raises(ThgError, match="cannot read audio features"):
        F.feature_shape(f"npy:{tmp_path / 'junk.npy'}")
    with pytest.raises(ValueError):
        F.extract_features(np.zeros(10), SR, 0, 5)


# ---------------------------------------------------------------- transformers models


def tiny_model_dir(tmp_path: Path, kind: str) -> Path:
    transformers = pytest.importorskip("transformers", reason="transformers is not installed (pip install "
                                       "'thg-nerf[hubert]')")
    cfg_cls, model_cls = {"hubert": (transformers.HubertConfig, transformers.HubertModel),
                          "wav2vec2": (transformers.Wav2Vec2Config, transformers.Wav2Vec2Model)}[kind]
    cfg = cfg_cls(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                  conv_dim=(8,) * 7, num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2,
                  feat_extract_norm="layer", do_stable_layer_norm=True)  # as in the -large models
    out = tmp_path / kind
    model_cls(cfg).save_pretrained(out)
    return out


@pytest.mark.parametrize("kind", ["hubert", "wav2vec2"])
def test_model_features(tmp_path, speech, kind):
    import torch

    d = tiny_model_dir(tmp_path, kind)
    spec = f"{kind}:{d}"
    assert F.feature_shape(spec) == (2, 16)
    feats = F.extract_features(speech[: 3 * SR], SR, 25, 75, spec)
    assert feats.shape == (75, 2, 16) and feats.dtype == np.float32 and np.isfinite(feats).all()
    # the series is the model's output on the normalised clip, 50 Hz, first state centred at 12.5 ms
    series, hop, t0 = F._model_series(speech[: 3 * SR], F.parse_spec(spec))
    from transformers import AutoModel

    model = AutoModel.from_pretrained(d).eval()
    x = speech[: 3 * SR]
    x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
    with torch.inference_mode():
        direct = model(torch.from_numpy(x)[None]).last_hidden_state[0].numpy()
    assert (hop, t0) == (0.02, 0.0125) and series.shape == direct.shape == (149, 16)
    assert np.allclose(series, direct, atol=1e-4)
    # frame 10 at 0.4 s: step 1 sits at state (0.4 - 0.0125) / 0.02 = 19.375
    assert np.allclose(feats[10, 1], 0.625 * direct[19] + 0.375 * direct[20], atol=1e-4)


def test_model_chunking(tmp_path, speech, monkeypatch):
    d = tiny_model_dir(tmp_path, "hubert")
    whole = F.extract_features(speech, SR, 25, 150, f"hubert:{d}")
    monkeypatch.setattr(F, "MODEL_CHUNK_S", 1.0)
    monkeypatch.setattr(F, "MODEL_CONTEXT_S", 0.5)
    chunked = F.extract_features(speech, SR, 25, 150, f"hubert:{d}")
    assert chunked.shape == whole.shape and np.isfinite(chunked).all()
    assert np.corrcoef(chunked.ravel(), whole.ravel())[0, 1] > 0.99  # one row off scores ~0.77


def test_model_errors(tmp_path, monkeypatch, speech):
    empty = tmp_path / "broken"
    empty.mkdir()
    (empty / "config.json").write_text('{"model_type": "hubert", "hidden_size": 16}')
    pytest.importorskip("transformers", reason="transformers is not installed")
    with pytest.raises(ThgError, match="cannot load hubert model"):
        F.extract_features(speech, SR, 25, 10, f"hubert:{empty}")
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(MissingDependencyError, match="transformers"):
        F.extract_features(speech, SR, 25, 10, f"hubert:{empty}")
