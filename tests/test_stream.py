"""Live rendering: streaming features and motion, the static-camera fast path, ``TalkingHead.stream``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from thg_nerf.audio.features import extract_features
from thg_nerf.audio.stream import StreamingFeatures
from thg_nerf.errors import ThgError
from thg_nerf.testing.signals import speech_like, vowel_speech

SR = 16000
FPS = 25.0


def stream_features(wave: np.ndarray, chunk: int, fps: float = FPS, voice=None) -> np.ndarray:
    feats = StreamingFeatures(fps, voice=voice)
    out = [feats.push(wave[a:a + chunk]) for a in range(0, len(wave), chunk)]
    return np.concatenate(out + [feats.flush()])


# ---------------------------------------------------------------- audio / motion (no trained run)


def test_streaming_features_do_not_depend_on_chunking():
    wave = speech_like(3.0, SR, seed=4)
    a, b, c = stream_features(wave, 320), stream_features(wave, 517), stream_features(wave, len(wave))
    assert a.shape == (round(3.0 * FPS), 16, 32)
    np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(a, c, atol=1e-5)
    pcm = np.clip(np.rint(wave * 32767), -32768, 32767).astype(np.int16)
    np.testing.assert_allclose(stream_features(pcm, 640), a, atol=0.05)  # int16 quantisation only


def test_streaming_features_match_the_clip_after_warm_up_and_silence_is_zero():
    wave = speech_like(8.0, SR, seed=5)
    streamed, clip = stream_features(wave, 320), extract_features(wave, SR, FPS, round(8.0 * FPS), "mel")
    late = slice(int(3 * FPS), None)
    assert np.corrcoef(streamed[late].ravel(), clip[late].ravel())[0, 1] > 0.98
    assert np.abs(streamed[late] - clip[late]).mean() < 0.05
    silent = stream_features(np.zeros(2 * SR, np.float32), 320)
    assert silent.shape[0] == 2 * FPS and not silent.any()
    # a quiet stream is still normalised like a loud one (the reference follows the speech level)
    quiet = stream_features(0.05 * wave, 320)
    assert np.abs(quiet[late] - streamed[late]).mean() < 0.05


def test_streaming_voice_normalisation_converges_to_the_clip_warp():
    from thg_nerf.audio.voice import VoiceModel

    voice = VoiceModel.fit(vowel_speech(20.0, seed=0))
    other = vowel_speech(10.0, seed=1, f0=190.0, formant_scale=1.15)  # a shorter vocal tract
    offline = voice.estimate_warp(other)
    assert offline == pytest.approx(1 / 1.15, rel=0.03)
    feats = StreamingFeatures(FPS, voice=voice)
    for a in range(0, len(other), 320):
        feats.push(other[a:a + 320])
    assert feats.warp == pytest.approx(offline, rel=0.02)
    a, b = stream_features(other, 320, voice=voice), stream_features(other, 517, voice=voice)
    np.testing.assert_allclose(a, b, atol=1e-4)
    clip = extract_features(other, SR, FPS, len(a), "mel", warp=offline, spread=voice.band_sd)
    plain = extract_features(other, SR, FPS, len(a), "mel")
    late = slice(int(5 * FPS), None)
    assert np.abs(a[late] - clip[late]).mean() < 0.05 < np.abs(plain[late] - clip[late]).mean()


def test_streaming_features_look_ahead_is_bounded():
    feats = StreamingFeatures(FPS)
    wave = speech_like(2.0, SR, seed=6)
    for a in range(0, len(wave), 160):
        feats.push(wave[a:a + 160])
        t = feats.time_s
        # every frame whose look-ahead has arrived is out, none whose look-ahead has not
        assert feats.frames_out >= int(max(0.0, t - feats.lookahead_s) * FPS)
        assert all(feats.samples_needed(i) <= feats.samples_in for i in range(feats.frames_out))
    assert feats.lookahead_s <= 0.2
    feats.flush()
    with pytest.raises(ThgError, match="flushed"):
        feats.push(wave[:10])


def _toy_motion_model(ensemble: bool = False):
    from thg_nerf.motion.model import AudioMotionModel
    from thg_nerf.motion.net import AudioMotionNet, MotionEnsemble

    torch.manual_seed(0)
    net = AudioMotionNet(16, 32, 6, hidden=16, context_frames=12, dropout=0.0).eval()
    if ensemble:  # members that see different amounts of context: the stream keeps the longest
        net = MotionEnsemble([net, AudioMotionNet(16, 32, 6, hidden=8, context_frames=20, dropout=0.0)]).eval()
    return AudioMotionModel(net=net, spec="mel", fps=FPS, feat_mean=torch.zeros(32), feat_std=torch.ones(32),
                            motion_mean=torch.zeros(6), motion_scale=1.0, gain=1.0, readout=np.zeros(7),
                            meta={"feature_shape": [16, 32]})


@pytest.mark.parametrize("ensemble", [False, True])
def test_motion_stream_equals_whole_sequence_prediction(ensemble: bool):
    from thg_nerf.motion.stream import MotionStream

    model = _toy_motion_model(ensemble)
    feats = stream_features(speech_like(3.0, SR, seed=7), 320)
    whole = model.predict(feats)
    stream = MotionStream(model)
    parts, a = [], 0
    for k in (1, 0, 3, 1, 1, 2, 4, 2, 40, 1):  # the first pushes fill less than the context
        parts.append(stream.push(feats[a:a + k]))
        a += k
    parts.append(stream.push(feats[a:]))
    np.testing.assert_allclose(np.concatenate(parts), whole, atol=1e-5)
    with pytest.raises(ThgError, match="motion model needs"):
        stream.push(feats[:2, :, :8])


def test_cached_head_field_equals_the_field():
    from thg_nerf.fields.config import ModelConfig
    from thg_nerf.fields.head import HeadField

    torch.manual_seed(1)
    field = HeadField(ModelConfig(num_levels=4, log2_hashmap_size=10, max_resolution=64), 1.5).eval()
    x = (torch.rand(500, 3) - 0.5) * 2.5
    audio, eye, ind = torch.randn(1, field.audio_gate.out_features), torch.tensor([[0.7]]), torch.randn(1, 4)
    with torch.no_grad():
        ref = field(x, audio, eye, ind)
        got = field.forward_cached(field.point_cache(x), audio, eye, ind)
        empty = field.forward_cached(field.point_cache(x[:0]), audio, eye, ind)
    torch.testing.assert_close(got[0], ref[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got[1], ref[1], rtol=1e-4, atol=1e-5)
    assert empty[0].shape == (0,) and empty[1].shape == (0, 3)


# ---------------------------------------------------------------- trained run


@pytest.fixture(scope="module")
def head(trained_synthetic_run):
    from thg_nerf.render.talking_head import TalkingHead

    return TalkingHead.load(trained_synthetic_run.run_dir, device="cpu")


@pytest.mark.slow
def test_fast_path_equals_full_render(head, monkeypatch):
    from thg_nerf.render import fastpath
    from thg_nerf.render.blinks import eye_levels
    from thg_nerf.render.fastpath import StaticFrameRenderer
    from thg_nerf.render.poses import static_pose
    from thg_nerf.train.metrics import psnr

    run = head.run
    c2w = static_pose(run.train_c2w)
    fast = StaticFrameRenderer(run.model, c2w, run.intrinsics, run.cfg.render, run.device,
                               eye_levels=eye_levels(run.train_eye))
    assert 0 < fast.info.region < fast.info.pixels
    mm = run.motion_model
    wave = speech_like(1.0, SR, seed=8)
    motion = mm.predict(mm.features(wave, SR, FPS, 25))
    for i, eye in ((3, 0.0), (11, 0.5), (17, 1.0)):
        got = fast.render(motion[i], eye)
        full = run.render_frame(c2w, motion, i, eye)
        assert psnr(got["fg"], full["fg"]) >= 40.0 and psnr(got["alpha"], full["alpha"]) >= 40.0
    whole = fast.render_region(motion[11], 0.5)
    monkeypatch.setattr(fastpath, "SHADE_CHUNK", max(1, fast.info.samples // 5 + 3))  # shaded in 6 chunks
    for a, b in zip(fast.render_region(motion[11], 0.5), whole):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_stream_mouth_follows_audio_and_silence_blinks(head, trained_synthetic_run):
    from test_render_api import corr, darkness, interior_box

    from thg_nerf.audio.io import audio_envelope

    truth = trained_synthetic_run.info
    speech = speech_like(2.0, SR, seed=33)
    chunks = [speech[a:a + 480] for a in range(0, len(speech), 480)]
    frames = list(head.stream(chunks, blink="none"))
    assert len(frames) == round(2.0 * FPS) and frames[0].shape == (64, 64, 3) and frames[0].dtype == np.uint8
    box = interior_box(head.plan(speech, SR, poses="static").poses.c2w[0], truth.intrinsics, truth.scene)
    talk = np.array([darkness(f, box) for f in frames])
    env = audio_envelope(speech, SR, FPS, len(frames))
    assert np.ptp(talk) >= 8 and corr(talk, env) > 0.6, (corr(talk, env), talk)
    again = list(head.stream([speech[a:a + 333] for a in range(0, len(speech), 333)], blink="none"))
    assert max(np.abs(a.astype(int) - b).max() for a, b in zip(frames, again)) <= 1  # chunking does not matter
    quiet = list(head.stream([np.zeros(SR * 3, np.float32)], blink="auto", seed=1))  # first blink before 2.3 s
    dark = np.array([darkness(f, box) for f in quiet])
    assert np.ptp(dark) <= 0.2 * np.ptp(talk)  # silence: the mouth stays closed ...
    from thg_nerf.render.blinks import blink_signal, eye_levels

    eye = blink_signal("auto", len(quiet), FPS, head.run.train_eye, FPS, seed=1)
    open_level, closed_level = eye_levels(head.run.train_eye)
    change = np.array([np.abs(f.astype(int) - quiet[0]).max() for f in quiet])
    closing = eye > open_level + 0.5 * (closed_level - open_level)
    assert closing.any() and (change[closing] >= 2).all(), (change, eye)  # ... the eyes blink ...
    still = np.isclose(eye, open_level, atol=1e-6)
    assert still.sum() >= len(quiet) // 2 and (change[still] <= 1).all(), change  # ... and nothing else moves


@pytest.mark.slow
def test_stream_refuses_what_it_cannot_do(head, trained_synthetic_run):
    with pytest.raises(ThgError, match="live pose mode"):
        next(head.stream([np.zeros(SR, np.float32)], poses="orbit"))
    with pytest.raises(ThgError, match="JPEG"):
        next(head.stream([np.zeros(SR, np.float32)], bg="alpha"))
    with pytest.raises(ThgError, match="mono"):
        next(head.stream([np.zeros((SR, 2), np.float32)]))
