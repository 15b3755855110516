"""The 3D head tracker against the synthetic landmark oracle (known camera, poses, expressions, 1 px noise)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("mediapipe")

from thg_nerf.preprocess import signals  # noqa: E402
from thg_nerf.preprocess.topology import mediapipe_topology  # noqa: E402
from thg_nerf.preprocess.tracker import INTEROCULAR_DM, TrackerSettings, TrackResult, track_head  # noqa: E402
from thg_nerf.testing.landmarks import SyntheticLandmarks, synthetic_sequence  # noqa: E402


def _gauge_rotation(res: TrackResult, seq: SyntheticLandmarks, use: np.ndarray | None = None) -> np.ndarray:
    """The fixed rotation Q between the tracker's head frame and the oracle's: R_gt ~ R_est Q."""
    use = np.ones(len(seq.rotation), bool) if use is None else use
    m = np.einsum("nji,njk->ik", res.rotation[use], seq.rotation[use])
    u, _, vt = np.linalg.svd(m)
    return u @ np.diag([1.0, 1.0, np.linalg.det(u @ vt)]) @ vt


def _angle_deg(r: np.ndarray) -> np.ndarray:
    return np.degrees(np.arccos(np.clip((np.trace(r, axis1=-2, axis2=-1) - 1) / 2, -1, 1)))


@pytest.fixture(scope="module")
def tracked() -> tuple[SyntheticLandmarks, TrackResult]:
    seq = synthetic_sequence(n_frames=300, fps=25.0, noise_px=1.0, seed=0)
    res = track_head(seq.landmarks, seq.z_rel, np.ones(300), (seq.w, seq.h), (seq.cx, seq.cy),
                     mediapipe_topology(), seq.fps)
    return seq, res


def test_oracle_is_face_like():
    seq = synthetic_sequence(n_frames=50, seed=1)
    topo = seq.topology
    s = seq.shape
    assert s.shape == (478, 3) and seq.landmarks.shape == (50, 478, 2) and seq.z_rel.shape == (50, 478)
    iod = np.linalg.norm(s[list(topo.left_eye)].mean(0) - s[list(topo.right_eye)].mean(0))
    assert iod == pytest.approx(INTEROCULAR_DM, abs=1e-6)
    assert s[454, 0] > 0 > s[234, 0]  # subject's left cheek at +x
    assert s[10, 1] > s[1, 1] > s[152, 1]  # forehead above nose tip above chin
    assert s[1, 2] > s[234, 2]  # nose sticks out
    # blinks close the eyes: the eye aspect ratio drops when the blink coefficient peaks
    ear = signals.eye_aspect_ratio(seq.landmarks, topo)
    blink = seq.coefficients[:, 2]
    assert ear[blink > 0.8].mean() < 0.6 * ear[blink < 0.05].mean()


def test_tracker_recovers_camera_and_poses(tracked):
    seq, res = tracked
    q = _gauge_rotation(res, seq)
    rot_err = _angle_deg(np.einsum("nij,jk,nlk->nil", res.rotation, q, seq.rotation))
    assert rot_err.max() < 1.0, f"rotation error max {rot_err.max():.3f} deg"
    assert _angle_deg(q) < 5.0  # canonical head frame: same axes as the oracle's up to a few degrees
    # translation: camera-space centre of the rigid landmarks (gauge-free), relative to the head distance
    gt = seq.camera_points()[:, res.rigid].mean(1)
    x = res.shape[None] + np.einsum("nk,kld->nld", res.expression, res.basis)
    est = (np.einsum("nij,nlj->nli", res.rotation, x) + res.translation[:, None])[:, res.rigid].mean(1)
    t_err = np.linalg.norm(est - gt, axis=1) / np.linalg.norm(gt, axis=1)
    assert t_err.max() < 0.02, f"translation error max {100 * t_err.max():.2f}%"
    assert abs(res.focal / seq.focal - 1) < 0.05, f"focal {res.focal:.1f} vs {seq.focal}"
    assert np.nanmean(res.residuals) < 1.5  # ~1.25 px is the noise floor of 1 px Gaussian noise


def test_tracker_model_and_conventions(tracked):
    seq, res = tracked
    topo = seq.topology
    s = res.shape
    iod = np.linalg.norm(s[list(topo.left_eye)].mean(0) - s[list(topo.right_eye)].mean(0))
    assert iod == pytest.approx(INTEROCULAR_DM, rel=1e-6)
    assert s[1, 2] > 0 and s[454, 0] > 0 > s[234, 0] and s[10, 1] > 0 > s[152, 1]
    assert abs(s[:, 2].mean()) < 0.9  # origin behind the face, inside the head
    proj = res.project(seq.cx, seq.cy)
    assert np.allclose(np.linalg.norm(proj - seq.landmarks, axis=-1), res.residuals, atol=1e-3)
    # smooth poses: the jitter is close to that of the true motion
    assert signals.jitter_deg(res.rotation, np.ones(300, bool)) < signals.jitter_deg(seq.rotation,
                                                                                      np.ones(300, bool)) + 0.3


def test_tracker_frames_without_data():
    """Zero-weight frames (a long face gap) get smooth in-between poses and do not derail the rest."""
    n = 200
    seq = synthetic_sequence(n_frames=n, seed=2)
    weights = np.ones(n)
    weights[60:90] = 0.0
    weights[120:123] = 0.25
    lm = seq.landmarks.copy()
    lm[60:90] = 0.0  # garbage where the weight is zero
    res = track_head(lm, seq.z_rel, weights, (seq.w, seq.h), (seq.cx, seq.cy), mediapipe_topology(), seq.fps)
    assert np.isnan(res.residuals[60:90]).all() and np.isfinite(res.residuals[:60]).all()
    assert np.isfinite(res.rotation).all() and np.isfinite(res.translation).all()
    assert abs(res.focal / seq.focal - 1) < 0.05
    q = _gauge_rotation(res, seq, weights > 0)
    err = _angle_deg(np.einsum("nij,jk,nlk->nil", res.rotation, q, seq.rotation))
    assert err[weights > 0].max() < 1.0
    assert err[60:90].max() < 15.0  # interpolated through the gap, not thrown anywhere


def test_tracker_keyframes_then_all_frames():
    """Long clips fit the model on keyframes, then every frame by Gauss-Newton + smoothing."""
    seq = synthetic_sequence(n_frames=240, seed=4)
    st = TrackerSettings(max_keyframes=60)
    res = track_head(seq.landmarks, seq.z_rel, np.ones(240), (seq.w, seq.h), (seq.cx, seq.cy),
                     mediapipe_topology(), seq.fps, st)
    q = _gauge_rotation(res, seq)
    err = _angle_deg(np.einsum("nij,jk,nlk->nil", res.rotation, q, seq.rotation))
    assert err.max() < 1.0 and abs(res.focal / seq.focal - 1) < 0.05
    assert np.nanmean(res.residuals) < 1.5
