"""Phone soft one-hots from pocketsphinx (``thg_nerf/audio/phones.py``) and the phones / mel+phones specs."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest

from thg_nerf.audio import features as F
from thg_nerf.audio import phones as P
from thg_nerf.audio.io import load_audio
from thg_nerf.errors import MissingDependencyError

SR = 16000
HOP_S = F.MEL_HOP / SR
needs_pocketsphinx = pytest.mark.skipif(importlib.util.find_spec("pocketsphinx") is None,
                                        reason="pocketsphinx not installed (pip install 'thg-nerf[phones]')")


@pytest.fixture(scope="module")
def radio(media_file) -> np.ndarray:
    """drive_radio_16k.wav (8 s of English speech, speech until the last frame), mono 16 kHz."""
    return load_audio(media_file("drive_radio_16k.wav"))


@pytest.fixture(scope="module")
def radio_posteriors(radio) -> np.ndarray:
    return P.phone_posteriors(radio)


def energy_span(wave: np.ndarray, below_peak_db: float = 30.0) -> tuple[float, float]:
    """Times (s) of the first and last 20 ms frame within ``below_peak_db`` of the loudest frame."""
    db = F.log_mel(wave)[1]
    loud = np.nonzero(db > db.max() - below_peak_db)[0]
    return loud[0] * HOP_S, loud[-1] * HOP_S


def test_phone_set():
    assert len(P.PHONES) == len(set(P.PHONES)) == P.N_PHONES == 40
    assert P.PHONES[P.SIL] == "SIL" and set(P.BILABIALS) <= set(P.PHONES)
    assert str(F.parse_spec("mel+phones", check_paths=False)) == "mel+phones"


@needs_pocketsphinx
def test_feature_shapes():
    assert F.feature_shape("phones") == (16, 40) and F.feature_shape("mel+phones") == (16, 72)


@needs_pocketsphinx
@pytest.mark.parametrize("n", [0, 100, 16000, 48000])
def test_silent_and_empty_waves_are_silence(n):
    post = P.phone_posteriors(np.zeros(n, np.float32))
    assert post.shape == (n // F.MEL_HOP + 1, P.N_PHONES) and post.dtype == np.float32
    assert np.array_equal(post, np.tile(P.onehot_silence(), (len(post), 1)))


@needs_pocketsphinx
def test_speech_gets_phones(radio, radio_posteriors):
    post = radio_posteriors
    assert post.shape == (len(radio) // F.MEL_HOP + 1, P.N_PHONES) and post.dtype == np.float32
    np.testing.assert_allclose(post.sum(axis=1), 1.0, atol=1e-5)
    assert post.min() >= 0.0
    labels = post.argmax(axis=1)
    speech = F.speech_frames(F.log_mel(radio)[1])
    assert speech.mean() > 0.5
    assert (labels[speech] != P.SIL).mean() > 0.95
    assert len(np.unique(labels[speech])) >= 20  # many different phones, not one label everywhere
    soft = (post.max(axis=1) < 0.99).mean()
    assert 0.05 < soft < 0.8  # boundaries ramp, phone centres are one-hot


@needs_pocketsphinx
def test_decoded_phones_are_in_the_phone_set(radio):
    pcm = (radio * 32767).round().astype("<i2")
    names = {name for name, _, _ in P._decode(pcm)}
    assert names - {"+NSN+", "+SPN+"} <= set(P.PHONES) and len(names) >= 20


@needs_pocketsphinx
def test_silence_speech_boundaries_are_aligned(radio):
    """1 s of low noise (above the energy gate, so pocketsphinx itself must call it silence) around speech."""
    rng = np.random.default_rng(0)
    pad = rng.normal(0.0, 3e-3, SR).astype(np.float32)
    wave = np.concatenate([pad, radio, pad])
    n_pad = int(0.9 / HOP_S)
    active = F.active_frames(F.log_mel(wave)[1])
    assert active[:n_pad].mean() > 0.9 and active[-n_pad:].mean() > 0.9  # the gate leaves the noise to the decoder
    labels = P.phone_posteriors(wave).argmax(axis=1)
    speech = np.nonzero(labels != P.SIL)[0]
    onset, offset = energy_span(wave)
    assert abs(speech[0] * HOP_S - onset) <= 2 * HOP_S
    assert abs(speech[-1] * HOP_S - offset) <= 2 * HOP_S
    assert np.all(labels[:n_pad] == P.SIL) and np.all(labels[-n_pad:] == P.SIL)


@needs_pocketsphinx
def test_deterministic_and_chunked(radio, radio_posteriors, monkeypatch):
    assert np.array_equal(P.phone_posteriors(radio), radio_posteriors)
    whole = P.phone_labels(radio)
    monkeypatch.setattr(P, "CHUNK_S", 2.0)
    chunked = P.phone_labels(radio)
    assert chunked.shape == whole.shape
    assert (chunked == whole).mean() > 0.8  # chunks decode with 1 s of context; a misplaced chunk scores ~0.1


@needs_pocketsphinx
def test_feature_specs(radio, radio_posteriors):
    fps, n = 25.0, 220  # 8.8 s of frames for 8 s of audio: the last 20 rows reach past the clip
    mel = F.extract_features(radio, SR, fps, n, "mel")
    ph = F.extract_features(radio, SR, fps, n, "phones")
    both = F.extract_features(radio, SR, fps, n, "mel+phones")
    assert ph.shape == (n, 16, 40) and both.shape == (n, 16, 72) and ph.dtype == both.dtype == np.float32
    assert np.array_equal(both, np.concatenate([mel, ph], axis=-1))
    np.testing.assert_allclose(ph.sum(axis=-1), 1.0, atol=1e-5)
    rows = np.arange(0, 200)  # frame i at i / 25 s is posterior row 2 i (20 ms grid)
    np.testing.assert_allclose(ph[rows, 8], radio_posteriors[2 * rows], atol=1e-6)
    np.testing.assert_allclose(ph[rows, 9], radio_posteriors[2 * rows + 1], atol=1e-6)
    assert np.array_equal(ph[-5:].reshape(-1, 40), np.tile(P.onehot_silence(), (80, 1)))  # padding is SIL
    at48k = F.extract_features(np.repeat(radio, 3), 48000, fps, 50, "phones")
    assert (at48k[:, 8].argmax(-1) == ph[:50, 8].argmax(-1)).mean() > 0.8


def test_missing_pocketsphinx_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "pocketsphinx", None)
    for spec in ("phones", "mel+phones"):
        with pytest.raises(MissingDependencyError) as e:
            F.extract_features(np.zeros(1600, np.float32), SR, 25.0, 4, spec)
        assert "\n" not in str(e.value) and "thg-nerf[phones]" in str(e.value)
        assert "pocketsphinx" in str(e.value)
    with pytest.raises(MissingDependencyError):
        P.phone_posteriors(np.zeros(1600, np.float32))
    assert F.extract_features(np.zeros(1600, np.float32), SR, 25.0, 4, "mel").shape == (4, 16, 32)
