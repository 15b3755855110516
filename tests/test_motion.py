"""Motion targets, speaker augmentation and the audio -> motion model (synthetic ground truth, CPU)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from thg_nerf.dataset import load_dataset
from thg_nerf.errors import ThgError
from thg_nerf.motion.augment import Perturbation, perturb, wsola
from thg_nerf.motion.config import AugmentConfig, MotionConfig
from thg_nerf.motion.model import AudioMotionModel, _Sequence, _voices_amplitude, corr, train_audio_motion
from thg_nerf.motion.net import AudioMotionNet, MotionEnsemble
from thg_nerf.preprocess.motion import MOTION_FILE, canonical_offsets, dataset_motion
from thg_nerf.testing.synthetic import make_synthetic_dataset, rotation_xyz

SR = 16000


@pytest.fixture(scope="module")
def syn(tmp_path_factory):
    root = tmp_path_factory.mktemp("motion_syn")
    info = make_synthetic_dataset(root / "data", n_frames=150, size=48, seed=3)
    return root / "data", info


def test_canonical_offsets_remove_head_pose():
    """A landmark displaced by a known head-space offset is recovered whatever the head pose."""
    rng = np.random.default_rng(0)
    shape = rng.uniform(-0.5, 0.5, (10, 3))
    shape[:, 2] += 0.3
    n = 6
    rot = rotation_xyz(rng.uniform(-0.4, 0.4, n), rng.uniform(-0.2, 0.2, n), rng.uniform(-0.1, 0.1, n))
    trans = np.c_[rng.uniform(-0.3, 0.3, (n, 2)), rng.uniform(6, 8, n)]
    moved = shape.copy()
    moved[3, :2] += [0.05, -0.08]  # lip point moves in the face plane
    cam = np.einsum("nij,kj->nki", rot, moved) + trans[:, None]
    focal, cx, cy = 900.0, 256.0, 240.0
    uv = np.stack([cam[..., 0] / cam[..., 2] * focal + cx, cam[..., 1] / cam[..., 2] * focal + cy], -1)
    off = canonical_offsets(uv, rot, trans, shape, focal, cx, cy, np.arange(10))
    assert off.shape == (n, 10, 2)
    # depth comes from the undisplaced model point: under +-23 degrees of yaw that costs < 10 % of the offset
    np.testing.assert_allclose(off[:, 3], np.tile([0.05, -0.08], (n, 1)), atol=8e-3)
    np.testing.assert_allclose(np.delete(off, 3, axis=1), 0.0, atol=1e-9)


def test_dataset_motion_follows_the_mouth_and_migrates(syn, tmp_path, monkeypatch):
    data, info = syn
    ds = load_dataset(data)
    assert not (data / MOTION_FILE).exists()  # datasets written without motion targets are migrated
    m = dataset_motion(ds)
    assert (data / MOTION_FILE).is_file()
    assert m.motion.shape == (150, 16) and m.mouth.shape == (150,)
    assert abs(corr(m.motion[:, 0], info.mouth_open)) > 0.95
    assert corr(m.mouth, info.mouth_open) > 0.98
    train = [r.img_id for r in ds.train]
    np.testing.assert_allclose(m.motion[train].mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(m.motion[train].std(0, ddof=1)[:8], m.scale[:8], rtol=1e-3)
    again = dataset_motion(load_dataset(data))
    np.testing.assert_array_equal(again.motion, m.motion)
    # an unwritable dataset still works (computed in memory), and one without the identity shape is a clear error
    ro = tmp_path / "ro"
    shutil.copytree(data, ro, ignore=shutil.ignore_patterns("cache", MOTION_FILE))

    def refuse(*args, **kwargs):
        raise PermissionError("read-only file system")

    monkeypatch.setattr("thg_nerf.utils.fs.atomic_file", refuse)
    np.testing.assert_allclose(dataset_motion(load_dataset(ro)).motion, m.motion, atol=1e-6)
    assert not (ro / MOTION_FILE).exists()
    trk = dict(np.load(ro / "tracking.npz"))
    del trk["shape"]
    np.savez(ro / "tracking.npz", **trk)
    with pytest.raises(ThgError, match="identity 'shape'"):
        dataset_motion(load_dataset(ro), write=False)


def _pitch(x: np.ndarray) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spec) * SR / len(x))


def test_augmentations_change_what_they_say():
    t = np.arange(2 * SR) / SR
    tone = (0.3 * np.sin(2 * np.pi * 200.0 * t)).astype(np.float32)
    fast = wsola(tone, 1.25, SR)
    assert abs(len(fast) - len(tone) / 1.25) <= 2
    assert abs(_pitch(fast) - 200.0) < 3.0  # tempo keeps the pitch
    rng = np.random.default_rng(0)
    warped, scale = perturb(tone, SR, Perturbation(warp=1.15), rng)
    assert abs(scale - 1.0) < 0.01 and abs(_pitch(warped) - 230.0) < 4.0  # warp scales frequencies, keeps time
    slow, scale = perturb(tone, SR, Perturbation(tempo=0.8), rng)
    assert abs(scale - 1.25) < 0.01 and abs(_pitch(slow) - 200.0) < 3.0
    loud, _ = perturb(tone, SR, Perturbation(gain_db=6.0), rng)
    assert abs(np.abs(loud).max() / np.abs(tone).max() - 10 ** 0.3) < 0.01
    noisy, _ = perturb(tone, SR, Perturbation(snr_db=10.0), rng)
    snr = 10 * np.log10(np.mean(tone**2) / np.mean((noisy - tone) ** 2))
    assert abs(snr - 10.0) < 0.5
    wet, _ = perturb(tone, SR, Perturbation(rt60_s=0.4), rng)
    assert not np.allclose(wet, tone) and len(wet) == len(tone)
    draws = [Perturbation.draw(AugmentConfig(), np.random.default_rng(s)) for s in range(50)]
    assert all(0.82 <= d.warp <= 1.2 and 0.85 <= d.tempo <= 1.15 for d in draws)
    assert 10 < sum(d.snr_db is not None for d in draws) < 40


def test_network_is_causal_beyond_its_audio_window():
    torch.manual_seed(0)
    net = AudioMotionNet(16, 32, 5, hidden=16, context_frames=8).eval()
    x = torch.randn(1, 30, 16, 32)
    y = net(x)
    x2 = x.clone()
    x2[:, 20:] += 1.0
    y2 = net(x2)
    torch.testing.assert_close(y[:, :20], y2[:, :20])
    assert not torch.allclose(y[:, 20:], y2[:, 20:])
    x3 = x.clone()
    x3[:, : 20 - net.receptive_frames] += 1.0
    torch.testing.assert_close(net(x3)[:, 20:], y[:, 20:], atol=1e-5, rtol=0)


def test_network_ignores_the_lowest_bands_when_asked():
    torch.manual_seed(0)
    net = AudioMotionNet(16, 32, 5, hidden=16, lifter=(32, 12), ignore_low=2).eval()
    x = torch.randn(1, 6, 16, 32)
    y = net(x)
    low, third = x.clone(), x.clone()
    low[..., :2] += torch.randn(1, 6, 16, 2)
    third[..., 2] += 1.0
    torch.testing.assert_close(net(low), y)
    assert not torch.allclose(net(third), y)


@pytest.mark.slow
def test_audio_to_motion_learns_the_mouth_and_round_trips(syn, tmp_path):
    data, info = syn
    ds = load_dataset(data)
    cfg = MotionConfig(hidden=32, iters=400, seq_len=32, gain_voices=True, augment=AugmentConfig(copies=2))
    model = train_audio_motion(ds, cfg, tmp_path)
    metrics = model.meta["metrics"]
    assert metrics["val_mouth_corr"] > 0.85, metrics
    amp, amp_voices = metrics["val_mouth_amplitude_raw"], metrics["val_mouth_amplitude_voices_raw"]
    assert amp_voices is not None and 0.2 < amp_voices < 2.0, metrics
    assert model.gain == pytest.approx(np.clip(1.0 / np.sqrt(amp * amp_voices), 1.0, cfg.max_gain), rel=1e-3)
    wave = info.wave
    feats = model.features(wave, SR, ds.fps, ds.n_frames)
    pred = model.mouth(model.predict(feats))
    assert corr(pred, info.mouth_open) > 0.85
    loaded = AudioMotionModel.load(tmp_path)
    np.testing.assert_allclose(loaded.predict(feats), model.predict(feats), atol=1e-5)
    # the person's voice model travels with the network; their own voice is left (about) unwarped
    assert model.voice is not None and loaded.normalises_voice
    np.testing.assert_allclose(loaded.voice.means, model.voice.means, rtol=1e-5)
    np.testing.assert_allclose(loaded.voice_spread, model.voice.band_sd, rtol=1e-5)
    assert loaded.voice_warp(wave, SR) == pytest.approx(1.0, abs=0.04)
    assert loaded.spec == "mel" and loaded.meta["lookahead_s"] <= 0.2
    silent = model.mouth(model.predict(model.features(np.zeros(SR, np.float32), SR, ds.fps, 25)))
    assert silent.mean() < np.percentile(pred, 30)  # silence: a closed mouth
    with pytest.raises(ThgError, match="motion model needs"):
        model.predict(feats[:, :, :8])
    with pytest.raises(ThgError, match="no audio -> motion model"):
        AudioMotionModel.load(tmp_path / "nowhere")
    (tmp_path / "motion_model.safetensors").write_bytes(b"junk")
    with pytest.raises(ThgError, match="corrupt motion model"):
        AudioMotionModel.load(tmp_path)


class _ScaledCopies:
    """Stands in for a motion model: the 'prediction' is the first feature channel of the last step."""

    def predict(self, feats: np.ndarray, calibrated: bool = True) -> np.ndarray:
        assert not calibrated
        return feats[:, -1, :1]

    def mouth(self, motion: np.ndarray) -> np.ndarray:
        return motion[:, 0]


def test_other_voice_amplitude_pools_validation_frames_of_each_copy():
    rng = np.random.default_rng(0)
    n = 200
    mouth = rng.normal(0.1, 0.05, n)
    val_ids = np.arange(150, n)
    seqs = []
    for amp, tempo in ((0.5, 1.0), (0.25, 1.25)):
        m = int(round(n / tempo))
        source = np.arange(m) * tempo
        pred = 0.3 + amp * (np.interp(source, np.arange(n), mouth) - 0.1)
        pred[source < 149.5] = rng.normal(0, 5.0, int((source < 149.5).sum()))  # train frames: ignored
        feats = np.repeat(pred[:, None, None], 3, axis=1).astype(np.float64)
        seqs.append(_Sequence(feats, np.zeros((m, 1)), np.ones(m, bool), np.zeros(0, int), source))
    got = _voices_amplitude(_ScaledCopies(), seqs, val_ids, mouth)
    assert got == pytest.approx(np.sqrt(0.5 * 0.25), rel=1e-6)
    assert _voices_amplitude(_ScaledCopies(), [], val_ids, mouth) is None


def test_ensemble_is_the_mean_of_its_members():
    torch.manual_seed(0)
    members = [AudioMotionNet(16, 32, 5, hidden=16, context_frames=c).eval() for c in (4, 12)]
    net = MotionEnsemble(members).eval()
    x = torch.randn(2, 20, 16, 32)
    torch.testing.assert_close(net(x), (members[0](x) + members[1](x)) / 2)
    assert net.receptive_frames == max(m.receptive_frames for m in members) > members[0].receptive_frames


def test_ensemble_trains_saves_and_loads(syn, tmp_path):
    """Two networks from seeds 5 and 6 (so neither is the seed-5 network alone), averaged, through a save and a
    load; a schema-1 file (one network, no member count) still loads; weights that do not fit are one line."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    ds = load_dataset(syn[0])
    cfg = MotionConfig(hidden=16, iters=60, eval_every=20, seq_len=32, seed=5, augment=AugmentConfig(copies=1))
    cfg.ensemble = 2
    model = train_audio_motion(ds, cfg, tmp_path / "two")
    assert isinstance(model.net, MotionEnsemble) and len(model.net.members) == 2
    m = model.meta["metrics"]
    assert [r["seed"] for r in m["members"]] == [5, 6]
    assert m["iterations"] == sum(r["iterations"] for r in m["members"])
    feats = model.features(syn[1].wave, SR, ds.fps, ds.n_frames)
    loaded = AudioMotionModel.load(tmp_path / "two")
    assert loaded.meta["members"] == 2 and len(loaded.net.members) == 2
    np.testing.assert_allclose(loaded.predict(feats), model.predict(feats), atol=1e-5)
    first = model.net.members[0]
    assert not torch.allclose(first(torch.zeros(1, 3, *model.feature_shape)),
                              model.net.members[1](torch.zeros(1, 3, *model.feature_shape)))

    path = tmp_path / "one" / "motion_model.safetensors"  # the same model as schema 1 would have stored it
    path.parent.mkdir()
    with safe_open(str(tmp_path / "two" / "motion_model.safetensors"), framework="pt") as f:
        meta = json.loads(f.metadata()["meta"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    one = {k.replace("net.members.0.", "net."): v for k, v in tensors.items() if not k.startswith("net.members.1.")}
    del meta["members"]
    save_file(one, str(path), metadata={"meta": json.dumps({**meta, "schema_version": 1})})
    old = AudioMotionModel.load(path.parent)
    assert isinstance(old.net, AudioMotionNet)
    with torch.no_grad():
        want = first(torch.from_numpy((feats - model.feat_mean.numpy()) / model.feat_std.numpy())[None])[0].numpy()
    np.testing.assert_allclose(old.predict(feats), model.motion_mean.numpy() + model.gain * model.motion_scale * want,
                               atol=1e-5)
    save_file(one, str(path), metadata={"meta": json.dumps({**meta, "members": 2})})
    with pytest.raises(ThgError, match="do not fit its metadata"):
        AudioMotionModel.load(path.parent)
    cfg.ensemble = 0
    with pytest.raises(ThgError, match="ensemble must be at least 1"):
        train_audio_motion(ds, cfg)


def test_short_clip_is_a_clear_error(tmp_path):
    make_synthetic_dataset(tmp_path / "d", n_frames=6, size=32, seed=0)
    with pytest.raises(ThgError, match="consecutive frames"):
        train_audio_motion(load_dataset(tmp_path / "d"), MotionConfig(iters=2))


def test_motion_config_from_presets_and_overrides():
    from thg_nerf.config import load_config

    cfg = load_config("tiny", ["motion.augment.copies=0", "motion.features=mel+phones"])
    assert cfg.motion.augment.copies == 0 and cfg.motion.features == "mel+phones"
    assert cfg.model.condition == "motion"
    with pytest.raises(ThgError, match="unknown key"):
        load_config("tiny", ["motion.nope=1"])
