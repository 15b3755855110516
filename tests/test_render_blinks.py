"""Eye-blink signals for rendering (thg_nerf.render.blinks)."""

from __future__ import annotations

import numpy as np
import pytest

from thg_nerf.errors import ThgError
from thg_nerf.render import blinks as B

FPS = 25.0


def training_eye(n: int = 500) -> np.ndarray:
    """Open at ~0.2 with noise, a 5-frame blink to 0.9 and a 1-frame tracking spike to 1.0."""
    rng = np.random.default_rng(0)
    eye = 0.2 + rng.normal(0, 0.01, n)
    eye[100:105] = [0.5, 0.8, 0.9, 0.8, 0.5]
    eye[300] = 1.0
    return eye.astype(np.float32)


def segments(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) of runs of True."""
    d = np.diff(np.concatenate([[0], mask.astype(int), [0]]))
    return list(zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1)))


def test_eye_levels_are_robust():
    open_level, closed = B.eye_levels(training_eye())
    assert abs(open_level - 0.2) < 0.01
    assert 0.9 <= closed < 0.96  # near the blink's peak; a single outlier frame barely counts
    assert B.eye_levels(np.r_[np.full(5000, 0.2), np.full(20, 0.8), [1.0]])[1] == pytest.approx(0.8)
    assert B.eye_levels(np.full(10, 0.3, np.float32)) == pytest.approx((0.3, 0.3))


def test_blink_profile_is_smooth_with_peak_one():
    u = np.linspace(-0.1, 1.1, 1201)
    f = B.blink_profile(u)
    assert f.max() == pytest.approx(1.0) and f.min() == 0.0
    assert abs(u[np.argmax(f)] - B.CLOSE_FRACTION) < 1e-3
    assert np.abs(np.diff(f)).max() < 0.02  # continuous, no jumps


def test_auto_blinks_statistics():
    eye = training_eye()
    open_level, closed = B.eye_levels(eye)
    n = int(120 * FPS)
    sig = B.blink_signal("auto", n, FPS, eye, FPS, seed=7)
    assert sig.dtype == np.float32 and sig.shape == (n,)
    assert sig.min() >= open_level - 1e-6 and sig.max() <= closed + 1e-6
    blinks = segments(sig > open_level + 1e-6)
    peaks = np.array([a + np.argmax(sig[a:b]) for a, b in blinks])
    assert 120 / 6 - 2 <= len(blinks) <= 120 / 2 + 1
    gaps = np.diff(peaks) / FPS
    assert gaps.min() >= 2.0 - 0.5 / FPS - 1e-9 and gaps.max() <= 6.0 + 0.5 / FPS + 1e-9
    assert gaps.std() > 0.5  # random, not periodic
    lengths = np.array([(b - a) / FPS for a, b in blinks])
    assert lengths.min() >= 0.15 - 2 / FPS and lengths.max() <= 0.25 + 1e-9
    np.testing.assert_allclose(sig[peaks], closed, atol=1e-6)  # every blink fully closes on one frame
    # the same seed gives the same blinks, another seed others
    np.testing.assert_array_equal(sig, B.blink_signal("auto", n, FPS, eye, FPS, seed=7))
    assert not np.array_equal(sig, B.blink_signal("auto", n, FPS, eye, FPS, seed=8))


def test_blink_times_in_other_frame_rates():
    for fps in (24.0, 30.0, 60.0):
        for peak, length in B.blink_times(60.0, fps, seed=1):
            assert abs(peak * fps - round(peak * fps)) < 1e-9
            assert 0.15 <= length <= 0.25


def test_track_and_none():
    eye = np.array([0.1, 0.2, 0.4, 0.9, 0.3, 0.2], np.float32)
    tr = B.blink_signal("track", 14, FPS, eye, FPS)
    np.testing.assert_allclose(tr, eye[[0, 1, 2, 3, 4, 5, 4, 3, 2, 1, 0, 1, 2, 3]], atol=1e-7)
    slow = B.blink_signal("track", 3, 2 * FPS, eye, FPS)
    np.testing.assert_allclose(slow[1], 0.5 * (eye[0] + eye[1]), atol=1e-7)
    none = B.blink_signal("none", 50, FPS, training_eye(), FPS)
    np.testing.assert_allclose(none, B.eye_levels(training_eye())[0])
    with pytest.raises(ThgError, match="unknown blink mode"):
        B.blink_signal("wink", 5, FPS, eye, FPS)
