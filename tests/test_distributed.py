"""Data-parallel training on the CPU (gloo): 2 processes match 1 at the same global batch, resume, errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from thg_nerf.cli.main import main
from thg_nerf.config import load_config
from thg_nerf.testing.synthetic import make_synthetic_dataset
from thg_nerf.train import checkpoint as ckpt
from thg_nerf.train import distributed as dist
from thg_nerf.train import trainer as trainer_mod
from thg_nerf.train.trainer import train

REPO = Path(__file__).resolve().parents[1]
ITERS = 50
#: A very small model; the torso layer, occupancy updates and the audio -> motion model all take part.
SMALL = {
    "model": {"num_levels": 4, "log2_hashmap_size": 10, "max_resolution": 48, "hidden_dim": 16, "audio_dim": 8,
              "audio_att_window": 4, "occupancy_resolution": 16, "march_steps": 48, "torso_levels": 4},
    "train": {"iters": ITERS, "batch_rays": 128, "frames_per_batch": 2, "eval_every": 0, "checkpoint_every": 25,
              "occupancy_warmup": 2, "occupancy_every": 4, "max_samples_per_ray": 16, "calibrate_frames": 0},
    "motion": {"hidden": 16, "iters": 10, "eval_every": 10, "batch": 4, "augment": {"copies": 1}},
}


def small_cfg():
    return load_config("tiny", SMALL)


def small_sets() -> list[str]:
    """SMALL as ``--set`` flags."""
    flat = {f"{s}.{k}": v for s, vals in SMALL.items() for k, v in vals.items() if k != "augment"}
    flat["motion.augment.copies"] = 1
    return [x for k, v in flat.items() for x in ("--set", f"{k}={v}")]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ddp_syn")
    make_synthetic_dataset(root / "data", n_frames=24, size=32, seed=1)
    return root / "data"


def train_recording_losses(losses_file: Path, *args, **kwargs) -> None:
    """``train(*args, **kwargs)``, writing the per-iteration (global) losses to ``losses_file`` from rank 0."""
    real_step = trainer_mod.Trainer.step
    losses: list[float] = []

    def step(self, it):
        out = real_step(self, it)
        losses.append(out["loss"])
        return out

    trainer_mod.Trainer.step = step
    try:
        train(*args, **kwargs)
    finally:
        trainer_mod.Trainer.step = real_step
    if (dist.launched_world() or dist.World()).is_main:
        losses_file.write_text(json.dumps(losses))


def final_state(run_dir: Path) -> dict[str, torch.Tensor]:
    tensors, _ = ckpt.load_checkpoint(ckpt.list_checkpoints(run_dir)[-1][1])
    return tensors


def assert_states_close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], rtol: float) -> None:
    """Float tensors within ``rtol`` in relative norm (gloo sums in another order), the rest equal."""
    assert a.keys() == b.keys()
    for k in a:
        if a[k].is_floating_point():
            err = float((a[k] - b[k]).norm() / a[k].norm().clamp_min(1e-12))
            assert err < rtol, (k, err)
        else:
            assert torch.equal(a[k], b[k]), k


def test_two_processes_match_one_and_resume(data, tmp_path):
    cfg = small_cfg()
    train_recording_losses(tmp_path / "one.json", data, tmp_path / "one", cfg, device="cpu")
    dist.spawn(train_recording_losses, 2, (tmp_path / "two.json", data, tmp_path / "two", cfg),
               {"device": "cpu"})
    one, two = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("one", "two"))
    assert len(one) == len(two) == ITERS
    torch.testing.assert_close(torch.tensor(two), torch.tensor(one), rtol=1e-4, atol=0)
    assert one[-1] < 0.7 * one[0]  # it trained
    s1, s2 = final_state(tmp_path / "one"), final_state(tmp_path / "two")
    assert_states_close({k: v for k, v in s2.items() if k.startswith("model.")},
                        {k: v for k, v in s1.items() if k.startswith("model.")}, rtol=1e-4)
    assert (tmp_path / "two" / "motion_model.safetensors").is_file()  # trained on rank 0
    assert len(list((tmp_path / "two" / "tb").iterdir())) == 1  # one tensorboard writer: rank 0's

    # interrupted at 30 (the public API spawns the ranks), resumed to 50 by torchrun through the CLI
    split = tmp_path / "split"
    train(data, split, cfg, device="cpu", nproc=2, stop_at=30)
    assert [i for i, _ in ckpt.list_checkpoints(split)] == [25, 30]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "thg_nerf.cli.main", "train", str(data), "-o", str(split), "--resume", "--device", "cpu", "-q"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert ckpt.list_checkpoints(split)[-1][0] == ITERS
    s_split = final_state(split)
    assert_states_close({k: v for k, v in s_split.items() if k.startswith("model.")},
                        {k: v for k, v in s2.items() if k.startswith("model.")}, rtol=1e-5)


def test_bad_nproc_is_one_line(data, tmp_path, capsys):
    for n in ("0", "-1"):
        rc = main(["train", str(data), "-o", str(tmp_path / "run"), "--nproc", n, "--device", "cpu"])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and err == [f"thg-nerf: error: --nproc must be at least 1 (got {n})"]
    assert not (tmp_path / "run").exists()


def test_failing_rank_is_one_line(data, tmp_path, capsys):
    rc = main(["train", str(data), "-o", str(tmp_path / "missing"), "--nproc", "2", "--device", "cpu",
               "--resume", "--iters", "5"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "run directory not found" in err[0], err


def test_ctrl_c_stops_all_ranks_with_a_checkpoint(data, tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "thg_nerf.cli.main", "train", str(data), "-o", str(run), "--nproc", "2",
           "--device", "cpu", "-q", "--preset", "tiny", *small_sets(), "--iters", "100000",
           "--set", "train.checkpoint_every=100000"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # if pytest ignores it
    try:
        deadline = time.monotonic() + 120
        while not (run / "tb").is_dir() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err[-2000:]
    assert err.strip().splitlines()[-1] == "thg-nerf: interrupted"
    assert len(ckpt.list_checkpoints(run)) == 1
