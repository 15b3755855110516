"""Vocal tract length normalisation (thg_nerf.audio.voice) and the filterbank warp it applies."""

from __future__ import annotations

import numpy as np
import pytest

from thg_nerf.audio import features as F
from thg_nerf.audio.voice import VoiceModel, scored_bands, warp_grid
from thg_nerf.motion.augment import resample_ratio
from thg_nerf.testing.signals import vowel_speech


@pytest.fixture(scope="module")
def voice() -> VoiceModel:
    model = VoiceModel.fit(vowel_speech(20.0, seed=0, f0=110.0))
    assert model is not None
    return model


@pytest.mark.parametrize("f0,scale", [(110.0, 1.0), (160.0, 1.0), (210.0, 1.18), (95.0, 0.88), (120.0, 1.08)])
def test_warp_undoes_a_longer_or_shorter_vocal_tract_whatever_the_pitch(voice, f0, scale):
    # other utterances of voices whose formants are scaled by `scale` (pitch set independently)
    warp = voice.estimate_warp(vowel_speech(8.0, seed=3, f0=f0, formant_scale=scale))
    assert warp == pytest.approx(1.0 / scale, rel=0.025)


def test_warp_is_one_for_too_little_speech_and_stays_in_range(voice):
    assert voice.estimate_warp(np.zeros(16000 * 5, np.float32)) == 1.0
    assert voice.estimate_warp(vowel_speech(1.0, seed=4)) == 1.0  # < MIN_SPEECH_FRAMES of speech
    lo, hi = warp_grid()[[0, -1]]
    for scale in (0.6, 1.6):  # beyond the range searched: clamped to its edge
        w = voice.estimate_warp(vowel_speech(8.0, seed=5, formant_scale=scale))
        assert lo - 1e-9 <= w <= hi + 1e-9
        assert w == pytest.approx(hi if scale < 1 else lo, rel=0.05)


def test_fit_needs_speech_and_tensors_roundtrip(voice):
    assert VoiceModel.fit(np.zeros(16000 * 10, np.float32)) is None
    back = VoiceModel.from_tensors(voice.tensors())
    x = vowel_speech(6.0, seed=6, formant_scale=1.1)
    assert back.estimate_warp(x) == pytest.approx(voice.estimate_warp(x), abs=1e-3)
    np.testing.assert_allclose(back.band_sd, voice.band_sd, rtol=1e-6)
    bad = voice.tensors()
    bad["means"] = bad["means"][:, :5]
    with pytest.raises(ValueError):
        VoiceModel.from_tensors(bad)


def test_filterbank_warp_matches_a_resampled_wave():
    """Warping the filterbank by a equals computing the features of the wave with every frequency x a."""
    x = vowel_speech(6.0, seed=7)
    for a in (0.85, 1.15):
        resampled = resample_ratio(x, 1.0 / a)  # frequencies x a, duration / a
        n = len(x) // F.MEL_HOP
        direct = F.normalise_log_mel(*F.log_mel(resampled))
        # the resampled wave's frames at times t / a are the original's at t: compare on the original grid
        idx = np.clip(np.rint(np.arange(n) / a).astype(int), 0, len(direct) - 1)
        warped = F.normalise_log_mel(*F.log_mel(x, warp=a))[:n]
        bands = slice(2, scored_bands())
        c = np.corrcoef(direct[idx][:, bands].ravel(), warped[:, bands].ravel())[0, 1]
        assert c > 0.9, (a, c)
        # and better than not warping at all
        plain = F.normalise_log_mel(*F.log_mel(x))[:n]
        assert c > np.corrcoef(direct[idx][:, bands].ravel(), plain[:, bands].ravel())[0, 1] + 0.05


def test_warp_one_is_the_plain_filterbank():
    x = vowel_speech(2.0, seed=8)
    a, b = F.log_mel(x), F.log_mel(x, warp=1.0)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(F.extract_features(x, 16000, 25.0, 50), F.extract_features(x, 16000, 25.0, 50,
                                                                                               warp=1.0))


def _spread(feats_series: np.ndarray, level: np.ndarray) -> np.ndarray:
    """Per-band standard deviation (dB) over speech frames of normalised log-mel features [M, C]."""
    return (F.DB_SCALE * feats_series[F.speech_frames(level)]).std(0)


def test_band_spread_is_matched_to_the_voice_model_and_own_voice_is_untouched(voice):
    own = vowel_speech(20.0, seed=0, f0=110.0)  # the audio the voice model was fitted on
    assert voice.band_sd is not None and voice.band_sd.shape == (F.MEL_BINS,)
    np.testing.assert_allclose(F.normalise_log_mel(*F.log_mel(own), spread=voice.band_sd),
                               F.normalise_log_mel(*F.log_mel(own)), atol=1e-5)
    # another voice whose bands swing less (a compressed, quieter-dynamics recording): stretched to the target
    other = vowel_speech(10.0, seed=9, f0=150.0)
    db, level = F.log_mel(other)
    ref = F.mel_reference(db, level)
    flat = ref + 0.6 * (db - ref)
    plain = F.normalise_log_mel(flat, level)
    matched = F.normalise_log_mel(flat, level, spread=voice.band_sd)
    bands = slice(2, 28)  # bands the synthetic voice fills (no clipping at the floor)
    err_plain = np.abs(_spread(plain, level)[bands] / voice.band_sd[bands] - 1).mean()
    err_matched = np.abs(_spread(matched, level)[bands] / voice.band_sd[bands] - 1).mean()
    assert err_matched < 0.1 < err_plain, (err_matched, err_plain)
    # the speech frames' reference (mean) stays where it was; silence stays exactly 0
    np.testing.assert_allclose(matched[F.speech_frames(level)].mean(0)[bands],
                               plain[F.speech_frames(level)].mean(0)[bands], atol=0.15)
    silent = F.normalise_log_mel(*F.log_mel(np.zeros(16000, np.float32)), spread=voice.band_sd)
    assert not silent.any()


def test_spread_scale_is_limited_and_needs_speech(voice):
    target = np.full(F.MEL_BINS, 10.0, np.float32)
    own = np.concatenate([np.full(16, 1.0), np.full(16, 100.0)]).astype(np.float32)
    s = F.spread_scale(target, own)
    assert s[:16] == pytest.approx(F.SPREAD_LIMITS[1]) and s[16:] == pytest.approx(F.SPREAD_LIMITS[0])
    assert F.spread_scale(target, None) is None
    short = vowel_speech(1.0, seed=10)  # < SPREAD_MIN_FRAMES of speech: left alone
    np.testing.assert_array_equal(F.normalise_log_mel(*F.log_mel(short), spread=voice.band_sd),
                                  F.normalise_log_mel(*F.log_mel(short)))
    bad = voice.tensors()
    bad["band_sd"] = bad["band_sd"][:5]
    with pytest.raises(ValueError):
        VoiceModel.from_tensors(bad)
    old = {k: v for k, v in voice.tensors().items() if k != "band_sd"}  # a voice model saved before spreads
    assert VoiceModel.from_tensors(old).band_sd is None
