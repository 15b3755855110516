"""The synthetic ground-truth dataset: its files follow docs/DATA_FORMAT.md and its truth is exact."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from thg_nerf.dataset import LABELS, load_dataset
from thg_nerf.errors import ThgError
from thg_nerf.testing import synthetic as S

N, SIZE, FPS = 120, 128, 25.0


@pytest.fixture(scope="module")
def syn(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic") / "data"
    return S.make_synthetic_dataset(root, n_frames=N, size=SIZE, fps=FPS, seed=3)


@pytest.fixture(scope="module")
def data(syn):
    return load_dataset(syn.root)


@pytest.fixture(scope="module")
def video_frames(data):
    return np.stack(list(data.iter_frames())).astype(np.float64) / 255.0


# ---------------------------------------------------------------- independent geometry (docs/DATA_FORMAT.md)


def doc_c2w(rot: np.ndarray, trans: np.ndarray) -> np.ndarray:
    """c2w = inv([R t; 0 1]) @ diag(1, -1, -1, 1), literally."""
    m = np.eye(4)
    m[:3, :3], m[:3, 3] = rot, trans
    return np.linalg.inv(m) @ np.diag([1.0, -1.0, -1.0, 1.0])


def doc_hits(c2w: np.ndarray, focal: float, cx: float, cy: float, u: np.ndarray, v: np.ndarray, radii):
    """Rays of pixels (u, v) by the documented formula, hit against the ellipsoid: (hit mask, points)."""
    d = np.stack([(u + 0.5 - cx) / focal, -(v + 0.5 - cy) / focal, -np.ones_like(u, dtype=float)], -1)
    d = d @ c2w[:3, :3].T
    o = np.broadcast_to(c2w[:3, 3], d.shape)
    r = np.asarray(radii)
    a, b, c = ((d / r) ** 2).sum(-1), 2 * ((o / r) * (d / r)).sum(-1), ((o / r) ** 2).sum(-1) - 1
    disc = b * b - 4 * a * c
    t = (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a)
    return disc > 0, o + t[..., None] * d


def feature_box(centre: np.ndarray, half: float) -> np.ndarray:
    return np.concatenate([centre - half, centre + half])


# ---------------------------------------------------------------- files and conventions


def test_dataset_layout(syn, data):
    assert data.n_frames == N and data.size == (SIZE, SIZE) and data.fps == FPS
    meta = data.meta
    assert meta["units"] == "dm" and meta["head_bound"] >= max(syn.scene.radii)
    assert meta["audio"] == {"sample_rate": 16000, "features": "mel", "feature_shape": [16, 32]}
    assert [r.img_id for r in data.train + data.val] == list(range(N))
    assert len(data.val) == round(N / 11) and all(r.aud_id == r.img_id for r in data.train + data.val)
    for r in data.train + data.val:
        assert np.allclose(r.transform_matrix, syn.c2w[r.img_id], atol=1e-6)
        assert r.eye == pytest.approx(syn.eye[r.img_id], abs=1e-5)
    assert data.intrinsics.focal == syn.intrinsics.focal and data.intrinsics.cx == SIZE / 2
    trk = data.tracking()
    assert trk["landmarks"].shape == (N, 478, 2) and trk["valid"].all()
    for i in (0, 57, N - 1):  # tracking R, t give the transforms' c2w through the documented formula
        assert np.allclose(doc_c2w(trk["rotation"][i], trk["translation"][i]), syn.c2w[i], atol=1e-5)
        assert np.allclose(np.linalg.det(trk["rotation"][i]), 1.0, atol=1e-5)
    feats = data.audio_features()
    assert feats.shape == (N, 16, 32) and feats.dtype == np.float16
    assert (syn.root / "report.json").is_file()


def test_tracking_truth(syn, data):
    trk = data.tracking()
    for i in (5, 60, 110):
        pts = S.landmarks_3d(syn.mouth_open[i], syn.eye[i], syn.scene)
        assert np.allclose(trk["landmarks"][i], S.project(pts, syn.rotation[i], syn.translation[i],
                                                          syn.intrinsics), atol=1e-3)
    lm = trk["landmarks"]
    assert np.all(lm[:, 468, 0] < lm[:, 473, 0])  # subject's right iris appears on the image left
    lids = np.linalg.norm(lm[:, 159] - lm[:, 145], axis=1)  # right eye upper / lower lid
    assert np.corrcoef(lids, 1 - syn.eye)[0, 1] > 0.95 and lids[syn.eye > 0.999].max(initial=0) < 0.01
    lips = np.linalg.norm(lm[:, 13] - lm[:, 14], axis=1)
    assert np.corrcoef(lips, syn.mouth_open)[0, 1] > 0.99
    boxes = trk["face_box"]
    assert np.all(boxes[:, :2] <= lm.min(1) + 1e-4) and np.all(boxes[:, 2:] >= lm.max(1) - 1e-4)
    assert np.all(trk["mouth_box"][:, :2] > boxes[:, :2]) and np.all(trk["mouth_box"][:, 2:] < boxes[:, 2:])


def test_mediapipe_index_loops():
    fmc = pytest.importorskip("mediapipe.python.solutions.face_mesh_connections",
                              reason="mediapipe is not installed")

    def check(loop, edges):
        assert set(loop) == {i for e in edges for i in e}
        undirected = {frozenset(e) for e in edges}
        assert all(frozenset((a, b)) in undirected for a, b in zip(loop, loop[1:] + loop[:1]))

    check(S.FACE_OVAL, fmc.FACEMESH_FACE_OVAL)
    check(S.RIGHT_EYE, fmc.FACEMESH_RIGHT_EYE)
    check(S.LEFT_EYE, fmc.FACEMESH_LEFT_EYE)
    lips = {frozenset(e) for e in fmc.FACEMESH_LIPS}
    for loop in (S.LIPS_OUTER, S.LIPS_INNER):
        assert all(frozenset((a, b)) in lips for a, b in zip(loop, loop[1:] + loop[:1]))
    assert set(S.LIPS_OUTER + S.LIPS_INNER) == {i for e in fmc.FACEMESH_LIPS for i in e}
    assert set(S.RIGHT_IRIS[1:]) == {i for e in fmc.FACEMESH_RIGHT_IRIS for i in e}
    assert set(S.LEFT_IRIS[1:]) == {i for e in fmc.FACEMESH_LEFT_IRIS for i in e}


# ---------------------------------------------------------------- geometry against the pixels


def lips_box(landmarks: np.ndarray) -> np.ndarray:
    lips = landmarks[list(S.LIPS_OUTER)]
    return np.concatenate([lips.min(0), lips.max(0)])


def test_projection_matches_rendered_features(syn):
    mouth3d = syn.scene.mouth_point()
    opened = np.flatnonzero(syn.mouth_open > 0.6)[:4]
    assert len(opened) == 4
    for i in opened:
        rgb, _ = syn.render(i)
        uv = S.project(mouth3d, syn.rotation[i], syn.translation[i], syn.intrinsics)
        got = S.dark_centroid(rgb, lips_box(syn.landmarks[i]), 0.3, 0.9)
        assert np.linalg.norm(got - uv) < 0.45, (i, got, uv)  # 0.1-0.2 px; a half-pixel slip gives ~0.7


def test_novel_pose_irises_and_mouth():
    scene = S.Scene()
    intr = scene.intrinsics(256)
    rot = S.FLIP @ S.rotation_xyz(np.deg2rad(25.0), np.deg2rad(-10.0), np.deg2rad(6.0))
    trans = scene.rest_translation() + np.array([0.2, 0.1, 0.3])
    rgb, labels = S.render_synthetic_frame(S.c2w_from_rt(rot, trans), intr, mouth_open=1.0, eye=0.0,
                                           scene=scene)
    assert rgb.shape == (256, 256, 3) and labels.shape == (256, 256)
    lm = S.project(S.landmarks_3d(1.0, 0.0, scene), rot, trans, intr)
    for idx in (468, 473):
        got = S.dark_centroid(rgb, feature_box(lm[idx], 4.0), 0.3, 1.0)
        assert np.linalg.norm(got - lm[idx]) < 0.35, (idx, got, lm[idx])  # 0.05-0.12 px measured
    got = S.dark_centroid(rgb, lips_box(lm), 0.3, 0.9)  # turned 25 deg: the curved mouth's centroid is ~0.6 px off
    assert np.linalg.norm(got - S.project(scene.mouth_point(), rot, trans, intr)) < 1.0
    closed, _ = S.render_synthetic_frame(S.c2w_from_rt(rot, trans), intr, mouth_open=0.0, eye=1.0, scene=scene)
    for idx in (468, 473):  # closed eyes: no iris left
        x0, y0 = np.floor(lm[idx] - 4).astype(int)
        assert closed[y0:y0 + 8, x0:x0 + 8].sum(-1).min() > 1.0


def test_doc_ray_through_mouth_pixel_hits_mouth(syn, data):
    rec = data.train[7]
    i = rec.img_id
    intr = data.intrinsics
    mouth3d = syn.scene.mouth_point()
    x, y = S.project(mouth3d, syn.rotation[i], syn.translation[i], syn.intrinsics)
    # through the exact continuous projection: the documented ray hits the 3D mouth centre
    hit, pts = doc_hits(rec.transform_matrix.astype(np.float64), intr.focal, intr.cx, intr.cy,
                        np.array(x - 0.5), np.array(y - 0.5), syn.scene.radii)
    assert hit and np.linalg.norm(pts - mouth3d) < 1e-4
    # through the centre of the pixel containing it: within the pixel footprint (~0.03 dm)
    hit, pts = doc_hits(rec.transform_matrix.astype(np.float64), intr.focal, intr.cx, intr.cy,
                        np.floor(np.array(x)), np.floor(np.array(y)), syn.scene.radii)
    assert hit and np.linalg.norm(pts - mouth3d) < 0.05


def test_masks_match_analytic_silhouettes(syn, data):
    masks = np.stack(list(data.iter_masks()))
    assert masks.shape == (N, SIZE, SIZE) and set(np.unique(masks)) == set(LABELS.values())
    v, u = np.mgrid[0:SIZE, 0:SIZE]
    intr = data.intrinsics
    for rec in (data.train[0], data.train[50], data.val[-1]):
        head, _ = doc_hits(rec.transform_matrix.astype(np.float64), intr.focal, intr.cx, intr.cy, u, v,
                           syn.scene.radii)
        got = masks[rec.img_id] == LABELS["head"]
        iou = (head & got).sum() / (head | got).sum()
        assert iou > 0.97
        wrong = head ^ got
        border = head ^ np.roll(head, 1, 0) | head ^ np.roll(head, -1, 0) | head ^ np.roll(head, 1, 1) \
            | head ^ np.roll(head, -1, 1)
        assert not (wrong & ~border).any()  # disagreements only on the silhouette's edge
    m = masks[0]
    assert m[0, 0] == m[0, -1] == LABELS["background"] and m[-1, SIZE // 2] == LABELS["torso"]
    assert LABELS["neck"] in m[int(0.8 * SIZE)]


def test_background_plate(syn, data):
    plate = data.background().astype(np.float64) / 255
    assert np.abs(plate - S.background_plate(SIZE, SIZE, syn.scene.seed)).max() <= 0.5 / 255 + 1e-9
    rgb, labels = syn.render(20)
    bg = labels == 0
    inner = bg & np.roll(bg, 1, 0) & np.roll(bg, -1, 0) & np.roll(bg, 1, 1) & np.roll(bg, -1, 1)
    assert np.abs(rgb[inner] - plate[inner]).max() < 1.0 / 255


# ---------------------------------------------------------------- video and audio


def test_video_matches_render(syn, video_frames):
    assert video_frames.shape == (N, SIZE, SIZE, 3)
    worst = min(10 * np.log10(1.0 / np.mean((video_frames[i] - syn.render(i)[0]) ** 2)) for i in range(0, N, 7))
    assert worst > 35.0


def test_mouth_follows_audio(syn, data, video_frames):
    from thg_nerf.audio.io import audio_envelope, load_audio

    boxes = data.tracking()["mouth_box"]
    x0, y0 = np.floor(boxes[:, :2].min(0)).astype(int) - 1
    x1, y1 = np.ceil(boxes[:, 2:].max(0)).astype(int) + 1
    darkness = np.clip((0.9 - video_frames[:, y0:y1, x0:x1].sum(-1)) / 0.6, 0, 1).sum((1, 2))
    env = audio_envelope(load_audio(data.path("audio")), 16000, FPS, N)
    assert np.abs(env - syn.envelope).max() < 1e-3
    assert np.corrcoef(darkness, env)[0, 1] > 0.9
    assert darkness[env == 0].max(initial=0) < 0.5  # silent frames: mouth closed
    feats = np.asarray(data.audio_features(), dtype=np.float32)[:, 8].mean(1)
    assert np.all(feats[env == 0] == 0) and np.corrcoef(feats, syn.mouth_open)[0, 1] > 0.7


# ---------------------------------------------------------------- API and CLI


def test_overwrite_and_args(syn, tmp_path):
    with pytest.raises(ThgError, match="already exists"):
        S.make_synthetic_dataset(syn.root, n_frames=4, size=32)
    with pytest.raises(ValueError):
        S.make_synthetic_dataset(tmp_path / "odd", n_frames=4, size=33)
    assert not (tmp_path / "odd").exists()


def test_cli(tmp_path):
    out = tmp_path / "cli"
    script = Path(__file__).resolve().parents[1] / "tools" / "make_synthetic.py"
    res = subprocess.run([sys.executable, str(script), str(out), "--frames", "12", "--size", "48", "-q"],
                         capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    ds = load_dataset(out)
    assert ds.n_frames == 12 and ds.size == (48, 48) and len(ds.val) == 1
    res = subprocess.run([sys.executable, str(script), str(out), "--frames", "12"], capture_output=True, text=True,
                         check=False)
    assert res.returncode == 2 and "already exists" in res.stderr
