"""Pose paths for rendering (thg_nerf.render.poses): rotations, modes, offsets, smoothing, pose files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from thg_nerf.errors import ThgError
from thg_nerf.render import poses as P

FPS = 25.0


def frontal(dist: float = 6.0) -> np.ndarray:
    """A camera at (0, 0, dist) looking down -z at the head centre."""
    c2w = np.eye(4)
    c2w[2, 3] = dist
    return c2w


def jittered_train_poses(n: int = 40, seed: int = 0) -> np.ndarray:
    """Training-like poses: a frontal camera with the head turning a few degrees."""
    rng = np.random.default_rng(seed)
    ang = rng.normal(0, 4, size=(n, 3))
    rot = P.offset_rotation(ang[:, 0], ang[:, 1], ang[:, 2])
    c2w = P.apply_rotation_about_origin(np.broadcast_to(frontal(), (n, 4, 4)), rot)
    c2w[:, :3, 3] += rng.normal(0, 0.05, size=(n, 3))
    return c2w


def yaw_of(c2w: np.ndarray) -> np.ndarray:
    """Camera azimuth about +y (degrees, 0 = on +z, positive towards +x)."""
    pos = c2w[..., :3, 3]
    return np.degrees(np.arctan2(pos[..., 0], pos[..., 2]))


def project(c2w: np.ndarray, point: np.ndarray, focal: float = 300.0, c: float = 128.0) -> np.ndarray:
    """Pixel (u, v) of a world point seen by an OpenGL camera c2w [4, 4]."""
    p = c2w[:3, :3].T @ (point - c2w[:3, 3])
    return np.array([c + focal * p[0] / -p[2], c - focal * p[1] / -p[2]])


# ---------------------------------------------------------------- rotations


def test_rotvec_roundtrip_matches_scipy():
    rng = np.random.default_rng(1)
    rv = rng.normal(size=(500, 3))
    rv *= (rng.uniform(0, np.pi, 500) / np.linalg.norm(rv, axis=1))[:, None]
    rv[:3] = [[0, 0, 0], [np.pi, 0, 0], [0, 1e-10, 0]]
    mats = P.rotvec_to_matrix(rv)
    np.testing.assert_allclose(mats, Rotation.from_rotvec(rv).as_matrix(), atol=1e-12)
    back = P.matrix_to_rotvec(mats)
    np.testing.assert_allclose(P.rotvec_to_matrix(back), mats, atol=1e-10)
    np.testing.assert_allclose(back[3:], rv[3:], atol=1e-9)


def test_offset_rotation_conventions():
    cam = frontal()
    yawed = P.apply_offsets(cam[None], yaw=30)[0]
    assert yawed[0, 3] > 2.9 and abs(yaw_of(yawed) - 30) < 1e-9  # towards the subject's left (+x)
    pitched = P.apply_offsets(cam[None], pitch=20)[0]
    assert pitched[1, 3] > 2.0  # camera raised
    assert pitched[:3, :3][1, 2] > 0  # ... and looking down (-z axis tilts to -y)
    rolled = P.apply_offsets(cam[None], roll=90)[0]
    np.testing.assert_allclose(rolled[:3, 3], cam[:3, 3], atol=1e-12)
    np.testing.assert_allclose(rolled[:3, 1], [-1, 0, 0], atol=1e-12)  # camera up now points to -x
    for c2w in (yawed, pitched, rolled):  # still looking at the head centre
        np.testing.assert_allclose(project(c2w, np.zeros(3)), [128, 128], atol=1e-9)
        assert abs(np.linalg.norm(c2w[:3, 3]) - 6.0) < 1e-12


def test_mean_rotation_of_symmetric_spread_is_the_centre():
    centre = Rotation.from_euler("xyz", [10, -25, 5], degrees=True).as_matrix()
    rv = np.array([[0.2, 0, 0], [-0.2, 0, 0], [0, 0.3, 0], [0, -0.3, 0], [0, 0, 0.1], [0, 0, -0.1]])
    rots = centre @ P.rotvec_to_matrix(rv)
    np.testing.assert_allclose(P.mean_rotation(rots), centre, atol=1e-12)


def test_static_pose_is_mean_and_orthonormal():
    train = jittered_train_poses()
    st = P.static_pose(train)
    np.testing.assert_allclose(st[:3, 3], train[:, :3, 3].mean(0), atol=1e-12)
    np.testing.assert_allclose(st[:3, :3].T @ st[:3, :3], np.eye(3), atol=1e-12)
    # the mean rotation is close to the quaternion mean (same answer for small spreads)
    qmean = Rotation.from_matrix(train[:, :3, :3]).mean().as_matrix()
    assert np.degrees(np.linalg.norm(P.matrix_to_rotvec(qmean.T @ st[:3, :3]))) < 0.05
    assert np.allclose(st[3], [0, 0, 0, 1])


# ---------------------------------------------------------------- modes


def test_track_pingpong_and_resampling():
    train = jittered_train_poses(5)
    path = P.build_pose_path("track", 12, FPS, train, FPS)
    order = [0, 1, 2, 3, 4, 3, 2, 1, 0, 1, 2, 3]
    np.testing.assert_allclose(path.c2w, train[order], atol=1e-5)
    fast = P.build_pose_path("track", 5, 2 * FPS, train, FPS)  # half-steps, interpolated
    np.testing.assert_allclose(fast.c2w[2], train[1], atol=1e-5)
    mid_t = 0.5 * (train[0, :3, 3] + train[1, :3, 3])
    np.testing.assert_allclose(fast.c2w[1, :3, 3], mid_t, atol=1e-5)
    rel = P.matrix_to_rotvec(train[0, :3, :3].T @ train[1, :3, :3])
    half = train[0, :3, :3] @ P.rotvec_to_matrix(0.5 * rel)
    np.testing.assert_allclose(fast.c2w[1, :3, :3], half, atol=1e-5)
    single = P.build_pose_path("track", 3, FPS, train[:1], FPS)
    np.testing.assert_allclose(single.c2w, np.repeat(train[:1], 3, 0), atol=1e-6)


def test_static_and_orbit_modes():
    train = jittered_train_poses()
    st = P.static_pose(train)
    static = P.build_pose_path("static", 50, FPS, train, FPS)
    np.testing.assert_allclose(static.c2w, np.repeat(st[None], 50, 0), atol=1e-6)
    n, deg, period = 150, 25.0, 2.0
    orbit = P.build_pose_path("orbit", n, FPS, train, FPS, orbit_deg=deg, orbit_period=period)
    t = np.arange(n) / FPS
    expect = deg * np.sin(2 * np.pi * t / period)
    np.testing.assert_allclose(orbit.c2w[0], st, atol=1e-6)
    # the camera turns about the head's vertical axis: each orbit pose is Ry(yaw) applied to the static pose
    for i in (7, 20, 33, 120):
        rel = orbit.c2w[i, :3, :3] @ st[:3, :3].T
        np.testing.assert_allclose(rel, P.rot_y(expect[i]), atol=1e-5)
    dist = np.linalg.norm(orbit.c2w[:, :3, 3], axis=1)
    np.testing.assert_allclose(dist, np.linalg.norm(st[:3, 3]), rtol=1e-6)
    assert abs(np.ptp(yaw_of(orbit.c2w)) - 2 * deg) < 0.5
    with pytest.raises(ThgError, match="orbit-period"):
        P.build_pose_path("orbit", n, FPS, train, FPS, orbit_period=0)


def test_offsets_apply_on_top_of_any_mode():
    train = jittered_train_poses()
    for mode in ("track", "static", "orbit"):
        base = P.build_pose_path(mode, 30, FPS, train, FPS)
        off = P.build_pose_path(mode, 30, FPS, train, FPS, yaw=15, pitch=-5, roll=3)
        rot = P.offset_rotation(15, -5, 3)
        np.testing.assert_allclose(off.c2w[:, :3, :3], rot @ base.c2w[:, :3, :3], atol=1e-5)
        np.testing.assert_allclose(off.c2w[:, :3, 3], base.c2w[:, :3, 3] @ rot.T, atol=1e-5)


def test_smoothing_gaussian_in_seconds():
    train = jittered_train_poses()
    n, deg, period, sigma_s = 400, 20.0, 2.0, 0.15
    raw = P.build_pose_path("orbit", n, FPS, train, FPS, orbit_deg=deg, orbit_period=period)
    sm = P.build_pose_path("orbit", n, FPS, train, FPS, orbit_deg=deg, orbit_period=period, smooth=sigma_s)
    # a Gaussian of std s attenuates a sinusoid of angular frequency w by exp(-(w s)^2 / 2)
    gain = np.exp(-0.5 * (2 * np.pi / period * sigma_s) ** 2)
    mid = slice(100, 300)
    ratio = np.ptp(yaw_of(sm.c2w[mid])) / np.ptp(yaw_of(raw.c2w[mid]))
    assert abs(ratio - gain) < 0.02, (ratio, gain)
    # rotating about the head centre keeps the camera distance after smoothing
    np.testing.assert_allclose(np.linalg.norm(sm.c2w[:, :3, 3], axis=1),
                               np.linalg.norm(raw.c2w[:, :3, 3], axis=1), rtol=1e-4)
    rots = sm.c2w[:, :3, :3].astype(np.float64)
    np.testing.assert_allclose(np.swapaxes(rots, 1, 2) @ rots, np.broadcast_to(np.eye(3), rots.shape), atol=1e-5)
    const = P.build_pose_path("static", 40, FPS, train, FPS, smooth=1.0)
    np.testing.assert_allclose(const.c2w, P.build_pose_path("static", 40, FPS, train, FPS).c2w, atol=1e-6)


def test_smoothing_reduces_jitter():
    rng = np.random.default_rng(3)
    n = 300
    ang = rng.normal(0, 3, size=(n, 3))
    c2w = P.apply_rotation_about_origin(np.broadcast_to(frontal(), (n, 4, 4)),
                                        P.offset_rotation(ang[:, 0], ang[:, 1], ang[:, 2]))
    sm = P.smooth_path(c2w, FPS, 0.2)
    step_raw = np.linalg.norm(P.matrix_to_rotvec(np.swapaxes(c2w[:-1, :3, :3], 1, 2) @ c2w[1:, :3, :3]), axis=1)
    step_sm = np.linalg.norm(P.matrix_to_rotvec(np.swapaxes(sm[:-1, :3, :3], 1, 2) @ sm[1:, :3, :3]), axis=1)
    assert step_sm.mean() < 0.1 * step_raw.mean()
    with pytest.raises(ThgError, match="smooth"):
        P.smooth_path(c2w, FPS, -1)


def test_parse_pose_mode():
    assert P.parse_pose_mode("orbit") == ("orbit", None)
    kind, path = P.parse_pose_mode("file:/tmp/p.json")
    assert kind == "file" and str(path) == "/tmp/p.json"
    for bad in ("spin", "file:", ""):
        with pytest.raises(ThgError, match="unknown pose mode"):
            P.parse_pose_mode(bad)


# ---------------------------------------------------------------- files


@pytest.fixture
def path_and_base():
    train = jittered_train_poses()
    n = 6
    ang = np.stack([np.linspace(-10, 10, n), np.linspace(0, 5, n), np.linspace(2, -2, n)], -1)
    trans = np.stack([np.linspace(0, 0.3, n), np.zeros(n), np.linspace(0, -0.5, n)], -1)
    return train, ang, trans


def expected_from_angles(base: np.ndarray, ang: np.ndarray, trans: np.ndarray) -> np.ndarray:
    out = P.apply_rotation_about_origin(np.broadcast_to(base, (len(ang), 4, 4)),
                                        P.offset_rotation(ang[:, 0], ang[:, 1], ang[:, 2]))
    out[:, :3, 3] += trans
    return out


def test_pose_file_matrix_formats(tmp_path, path_and_base):
    train, _, _ = path_and_base
    mats = P.build_pose_path("orbit", 6, FPS, train, FPS).c2w.astype(np.float64)
    files = {
        "m44.npy": lambda p: np.save(p, mats),
        "m34.npy": lambda p: np.save(p, mats[:, :3]),
        "m16.csv": lambda p: np.savetxt(p, mats.reshape(6, 16), delimiter=","),
        "m12.csv": lambda p: np.savetxt(p, mats[:, :3].reshape(6, 12), delimiter=","),
        "list.json": lambda p: p.write_text(json.dumps(mats.tolist())),
        "frames.json": lambda p: p.write_text(json.dumps(
            {"frames": [{"img_id": i, "transform_matrix": m.tolist()} for i, m in enumerate(mats)]})),
    }
    for name, write in files.items():
        path = tmp_path / name
        write(path)
        got = P.build_pose_path(f"file:{path}", 6, FPS, train, FPS)
        np.testing.assert_allclose(got.c2w, mats, atol=1e-5, err_msg=name)


def test_pose_file_angle_formats(tmp_path, path_and_base):
    train, ang, trans = path_and_base
    base = P.static_pose(train)
    exp_rot = expected_from_angles(base, ang, np.zeros_like(trans))
    exp_full = expected_from_angles(base, ang, trans)
    np.save(tmp_path / "a3.npy", ang)
    np.save(tmp_path / "a6.npy", np.concatenate([ang, trans], 1))
    np.savetxt(tmp_path / "a3.csv", ang, delimiter=",")
    rows = ["frame,time,yaw,pitch,roll,tx,ty,tz"] + [
        ",".join(map(str, [i, i / FPS, *a, *t])) for i, (a, t) in enumerate(zip(ang, trans))]
    (tmp_path / "hdr.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "ang.json").write_text(json.dumps(
        {"frames": [dict(zip(("yaw", "pitch", "roll", "tx", "ty", "tz"), map(float, [*a, *t])))
                    for a, t in zip(ang, trans)]}))
    (tmp_path / "yawonly.json").write_text(json.dumps([{"yaw": float(a)} for a in ang[:, 0]]))
    cases = {"a3.npy": exp_rot, "a6.npy": exp_full, "a3.csv": exp_rot, "hdr.csv": exp_full, "ang.json": exp_full,
             "yawonly.json": expected_from_angles(base, ang * [1, 0, 0], np.zeros_like(trans))}
    for name, expect in cases.items():
        got = P.build_pose_path(f"file:{tmp_path / name}", 6, FPS, train, FPS)
        np.testing.assert_allclose(got.c2w, expect, atol=1e-5, err_msg=name)
    # offsets still apply on top of a file
    off = P.build_pose_path(f"file:{tmp_path / 'a3.npy'}", 6, FPS, train, FPS, yaw=10)
    np.testing.assert_allclose(off.c2w[:, :3, :3], P.rot_y(10) @ exp_rot[:, :3, :3], atol=1e-5)


def test_pose_file_errors(tmp_path, path_and_base):
    train, ang, _ = path_and_base

    def build(path, n=6):
        return P.build_pose_path(f"file:{path}", n, FPS, train, FPS)

    with pytest.raises(ThgError, match="pose file not found"):
        build(tmp_path / "missing.npy")
    (tmp_path / "junk.npy").write_bytes(b"not a numpy file at all")
    with pytest.raises(ThgError, match="cannot read pose file"):
        build(tmp_path / "junk.npy")
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(ThgError, match="cannot read pose file"):
        build(tmp_path / "junk.json")
    (tmp_path / "p.txt").write_text("1,2,3")
    with pytest.raises(ThgError, match=".json, .csv or .npy"):
        build(tmp_path / "p.txt")
    np.save(tmp_path / "a3.npy", ang)
    with pytest.raises(ThgError, match="holds 6 poses but the audio needs 9 frames"):
        build(tmp_path / "a3.npy", n=9)
    np.save(tmp_path / "bad_shape.npy", np.zeros((6, 5)))
    with pytest.raises(ThgError, match="cannot interpret"):
        build(tmp_path / "bad_shape.npy")
    scaled = np.repeat(np.eye(4)[None] * 2.0, 6, 0)
    np.save(tmp_path / "scaled.npy", scaled)
    with pytest.raises(ThgError, match="not a rotation"):
        build(tmp_path / "scaled.npy")
    (tmp_path / "bad.csv").write_text("1,2,3\n4,five,6\n")
    with pytest.raises(ThgError, match="non-numeric"):
        build(tmp_path / "bad.csv")
    (tmp_path / "hdr.csv").write_text("a,b,c\n1,2,3\n")
    with pytest.raises(ThgError, match="header names none"):
        build(tmp_path / "hdr.csv")
    nan = np.full((6, 3), np.nan)
    np.save(tmp_path / "nan.npy", nan)
    with pytest.raises(ThgError, match="non-finite"):
        build(tmp_path / "nan.npy")
