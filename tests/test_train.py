"""Training, checkpoints, resume, bad inputs and evaluation on synthetic scenes (CPU, a couple of minutes)."""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from thg_nerf import RUN_SCHEMA_VERSION
from thg_nerf.cli.main import main
from thg_nerf.config import load_config
from thg_nerf.errors import IncompatibleVersionError, ThgError
from thg_nerf.testing.synthetic import make_synthetic_dataset
from thg_nerf.train import checkpoint as ckpt
from thg_nerf.train import trainer as trainer_mod
from thg_nerf.train.evaluate import evaluate
from thg_nerf.train.trainer import train

#: A very small model and batch so a handful of iterations takes a second or two.
SMALL = {
    "model": {"num_levels": 4, "log2_hashmap_size": 10, "max_resolution": 48, "hidden_dim": 16, "audio_dim": 8,
              "audio_att_window": 4, "occupancy_resolution": 16, "march_steps": 48, "torso_levels": 4},
    "train": {"batch_rays": 128, "frames_per_batch": 2, "eval_every": 0, "checkpoint_every": 3,
              "occupancy_warmup": 2, "occupancy_every": 2, "max_samples_per_ray": 16, "calibrate_frames": 0},
    "motion": {"hidden": 16, "iters": 20, "eval_every": 10, "batch": 4, "augment": {"copies": 1}},
}


def small_cfg(iters: int = 6, **train_over):
    over = {"model": dict(SMALL["model"]), "train": {**SMALL["train"], "iters": iters, **train_over},
            "motion": SMALL["motion"]}
    return load_config("tiny", over)


@pytest.fixture(scope="module")
def small_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("small_syn")
    make_synthetic_dataset(root / "data", n_frames=24, size=32, seed=1)
    return root / "data"


def _params(run_dir: Path) -> dict[str, torch.Tensor]:
    tensors, _ = ckpt.load_checkpoint(ckpt.list_checkpoints(run_dir)[-1][1])
    return {k: v for k, v in tensors.items() if k.startswith(("model.", "optim."))}


def _snapshot(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_run_directory_layout_and_checkpoint_round_trip(small_data, tmp_path):
    run = train(small_data, tmp_path / "run", small_cfg(6), device="cpu")
    info = json.loads((run / "run.json").read_text())
    assert info["schema_version"] == RUN_SCHEMA_VERSION
    assert Path(info["data_dir"]) == small_data.resolve() and info["data_meta"]["fps"] == 25.0
    assert info["audio_spec"] == "mel" and info["audio_shape"] == [16, 32]
    assert (run / "config.yaml").is_file() and (run / "bg.png").is_file() and (run / "poses.safetensors").is_file()
    assert [i for i, _ in ckpt.list_checkpoints(run)] == [3, 6]  # every 3 iterations, 2 kept
    assert not list(run.rglob("*.pkl")) and not list(run.rglob("*.pt"))

    loaded = ckpt.load_run(run, device="cpu")
    assert loaded.iteration == 6 and not loaded.model.training
    assert loaded.train_c2w.shape == (len(info["train_ids"]), 4, 4) and loaded.background.shape == (32, 32, 3)
    tensors, state = ckpt.load_checkpoint(ckpt.list_checkpoints(run)[-1][1])
    for k, v in loaded.model.state_dict().items():
        assert torch.equal(v, tensors[f"model.{k}"]), k
    assert state["iteration"] == 6 and "np_rng" in state and "rng.torch" in tensors

    assert info["condition"] == "motion" and loaded.motion_model is not None
    feats = np.load(small_data / "audio_features.npy")
    motion = loaded.conditions(feats)
    assert motion.shape == (len(feats), info["motion_dim"])
    out = loaded.render_frame(loaded.train_c2w[0], motion, 5, 0.0)
    assert out["fg"].shape == (32, 32, 3) and out["alpha"].shape == (32, 32)
    half = loaded.render_frame(loaded.train_c2w[0], torch.from_numpy(motion), 5, 0.0, size=(16, 16))
    assert half["fg"].shape == (16, 16, 3)
    with pytest.raises(ThgError, match="motion codes"):
        loaded.render_frame(loaded.train_c2w[0], feats, 5, 0.0)


def test_resume_equals_uninterrupted(small_data, tmp_path):
    cfg = small_cfg(8)
    train(small_data, tmp_path / "full", cfg, device="cpu")
    train(small_data, tmp_path / "split", cfg, device="cpu", stop_at=5)
    assert ckpt.list_checkpoints(tmp_path / "split")[-1][0] == 5
    train(small_data, tmp_path / "split", cfg, resume=True, device="cpu")
    full, split = _params(tmp_path / "full"), _params(tmp_path / "split")
    assert full.keys() == split.keys()
    for k in full:
        torch.testing.assert_close(split[k], full[k], rtol=0, atol=0, msg=k)


def test_ctrl_c_checkpoints_then_resume_continues(small_data, tmp_path, monkeypatch):
    real_step = trainer_mod.Trainer.step

    def step(self, it):
        out = real_step(self, it)
        if it == 3:  # Ctrl-C during iteration 4
            signal.raise_signal(signal.SIGINT)
        return out

    monkeypatch.setattr(trainer_mod.Trainer, "step", step)
    before = signal.getsignal(signal.SIGINT)  # default_int_handler, or SIG_IGN in a background job
    with pytest.raises(KeyboardInterrupt):
        train(small_data, tmp_path / "run", small_cfg(20, checkpoint_every=100), device="cpu")
    assert [i for i, _ in ckpt.list_checkpoints(tmp_path / "run")] == [4]
    monkeypatch.setattr(trainer_mod.Trainer, "step", real_step)
    train(small_data, tmp_path / "run", small_cfg(6), resume=True, device="cpu")
    assert ckpt.list_checkpoints(tmp_path / "run")[-1][0] == 6
    assert signal.getsignal(signal.SIGINT) is before  # the trainer's handler is gone again


def test_max_minutes_stops_with_a_checkpoint(small_data, tmp_path):
    train(small_data, tmp_path / "run", small_cfg(50, max_minutes=1e-6, checkpoint_every=100), device="cpu")
    assert [i for i, _ in ckpt.list_checkpoints(tmp_path / "run")] == [1]


def test_bad_inputs_fail_cleanly_and_overwrite_nothing(small_data, tmp_path, capsys):
    # missing files
    broken = tmp_path / "broken"
    shutil.copytree(small_data, broken, ignore=shutil.ignore_patterns("cache"))
    (broken / "audio.wav").unlink()
    with pytest.raises(ThgError, match="missing: audio.wav"):
        train(broken, tmp_path / "r_missing", small_cfg(2), device="cpu")
    assert not (tmp_path / "r_missing").exists()
    # incompatible dataset schema
    old = tmp_path / "old_schema"
    shutil.copytree(small_data, old, ignore=shutil.ignore_patterns("cache"))
    meta = json.loads((old / "meta.json").read_text())
    (old / "meta.json").write_text(json.dumps({**meta, "schema_version": 999}))
    with pytest.raises(IncompatibleVersionError):
        train(old, tmp_path / "r_schema", small_cfg(2), device="cpu")
    assert not (tmp_path / "r_schema").exists()
    # motion settings that cannot train: refused before anything is written (library and CLI)
    bad_motion = small_cfg(2)
    bad_motion.motion.ensemble = 0
    with pytest.raises(ThgError, match="motion.ensemble must be at least 1"):
        train(small_data, tmp_path / "r_motion", bad_motion, device="cpu")
    assert not (tmp_path / "r_motion").exists()
    capsys.readouterr()
    rc = main(["train", str(small_data), "-o", str(tmp_path / "r_spec"), "--preset", "tiny", "-q",
               "--set", "motion.features=nope"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and len(err) == 1 and "invalid audio feature spec" in err[0]
    assert not (tmp_path / "r_spec").exists()
    # --resume without a run / without a checkpoint
    with pytest.raises(ThgError, match="not found|not a thg-nerf run"):
        train(small_data, tmp_path / "nothing", small_cfg(2), resume=True, device="cpu")
    run = train(small_data, tmp_path / "run", small_cfg(3), device="cpu")
    for _, p in ckpt.list_checkpoints(run):
        p.unlink()
    with pytest.raises(ThgError, match="nothing to resume"):
        train(small_data, run, small_cfg(4), resume=True, device="cpu")
    # an existing trained run without --resume is refused, untouched
    run = train(small_data, tmp_path / "run2", small_cfg(3), device="cpu")
    before = _snapshot(run)
    capsys.readouterr()
    rc = main(["train", str(small_data), "-o", str(run), "--preset", "tiny", "--iters", "2", "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and len(err) == 1 and "--resume" in err[0]
    assert _snapshot(run) == before
    # corrupt checkpoint: clear error from load_run and from --resume, nothing rewritten
    last = ckpt.list_checkpoints(run)[-1][1]
    last.write_bytes(last.read_bytes()[:100])
    before = _snapshot(run)
    with pytest.raises(ThgError, match="corrupt checkpoint"):
        ckpt.load_run(run, device="cpu")
    with pytest.raises(ThgError, match="corrupt checkpoint"):
        train(small_data, run, small_cfg(5), resume=True, device="cpu")
    assert _snapshot(run) == before
    # incompatible run schema
    info = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**info, "schema_version": RUN_SCHEMA_VERSION + 1}))
    with pytest.raises(IncompatibleVersionError, match="run schema"):
        ckpt.load_run(run)


def test_cli_train_and_resume(small_data, tmp_path):
    run = tmp_path / "cli_run"
    args = ["train", str(small_data), "-o", str(run), "--preset", "tiny", "-q", "--device", "cpu"]
    sets = [x for k, v in SMALL["model"].items() for x in ("--set", f"model.{k}={v}")]
    sets += [x for k, v in SMALL["train"].items() for x in ("--set", f"train.{k}={v}")]
    sets += [x for k, v in SMALL["motion"].items() if k != "augment" for x in ("--set", f"motion.{k}={v}")]
    sets += ["--set", "motion.augment.copies=1"]
    assert main(args + ["--iters", "3"] + sets) == 0
    assert ckpt.list_checkpoints(run)[-1][0] == 3
    assert main(args + ["--resume", "--iters", "5"]) == 0  # saved config reused, only iters changed
    assert ckpt.list_checkpoints(run)[-1][0] == 5
    assert ckpt.read_run_config(run).train.iters == 3  # the run's config.yaml is not rewritten


def test_training_beats_baselines_and_eval_report(trained_synthetic_run):
    report = evaluate(trained_synthetic_run.run_dir, trained_synthetic_run.data_dir, device="cpu")
    out = trained_synthetic_run.run_dir / "eval"
    assert json.loads((out / "report.json").read_text())["psnr"] == report["psnr"]
    for key in ("psnr", "ssim", "lmd", "sync", "baselines"):
        assert key in report
    assert set(report["baselines"]) == {"mean_frame", "nearest_pose_frame"}
    for base in report["baselines"].values():
        assert base["psnr"] > 10 and 0 < base["ssim"] <= 1
    assert report["psnr"] > report["baselines"]["mean_frame"]["psnr"] + 3.0
    assert report["ssim"] > report["baselines"]["mean_frame"]["ssim"]
    assert set(report["sync"]) >= {"offset_frames", "confidence", "method"}
    assert report["lmd"] is not None or report["lmd_reason"]
    assert (out / "side_by_side.mp4").stat().st_size > 0
    assert (out / "psnr_per_frame.png").is_file() and (out / "mouth_sync.png").is_file()


def test_mouth_gain_is_calibrated_when_training_completes(small_data, tmp_path, monkeypatch):
    """The trainer calibrates the mouth gain once the last iteration is reached (not at an early stop, not
    again for a run already calibrated at that iteration); the measurement itself: tests/test_calibrate.py."""
    from thg_nerf.train import trainer
    from thg_nerf.train.calibrate import CALIBRATION_FILE, SCHEMA
    from thg_nerf.utils.fs import write_json

    calls = []

    def fake(run_dir, model, ds, intr, background, rcfg, device, frames, max_gain, iteration, measure=None):
        calls.append((frames, iteration))
        write_json(run_dir / CALIBRATION_FILE, {"schema": SCHEMA, "mouth_gain": 1.25, "iteration": iteration})
        return 1.25

    monkeypatch.setattr(trainer, "calibrate_run", fake)
    cfg = small_cfg(6, calibrate_frames=5)
    run = train(small_data, tmp_path / "run", cfg, device="cpu", stop_at=3)
    assert calls == []
    train(small_data, run, cfg, resume=True, device="cpu")
    assert calls == [(5, 6)]
    train(small_data, run, cfg, resume=True, device="cpu")  # nothing to do, already calibrated
    assert calls == [(5, 6)]
    assert ckpt.load_run(run, device="cpu").model.motion_gain == 1.25
