"""Foundation: config system, CLI, atomic output, dataset contract."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from thg_nerf import DATA_SCHEMA_VERSION
from thg_nerf.cli.main import main
from thg_nerf.config import Config, available_presets, load_config, parse_overrides, save_config, to_dict
from thg_nerf.dataset import (
    FrameRecord,
    Intrinsics,
    decode_mask,
    encode_mask,
    frames_writer,
    load_dataset,
    masks_writer,
    write_background,
    write_meta,
    write_tracking,
    write_transforms,
)
from thg_nerf.errors import ThgError
from thg_nerf.utils.fs import atomic_dir


def test_presets_load_and_differ():
    assert {"tiny", "default"} <= set(available_presets())
    tiny, default = load_config("tiny"), load_config("default")
    assert isinstance(tiny, Config) and tiny.preset == "tiny"
    assert tiny.train.iters < default.train.iters
    assert tiny.model.log2_hashmap_size <= default.model.log2_hashmap_size


def test_overrides_are_typed_and_checked():
    cfg = load_config("tiny", ["train.iters=7", "model.use_torso=false", "preprocess.fps=12.5"])
    assert cfg.train.iters == 7 and cfg.model.use_torso is False and cfg.preprocess.fps == 12.5
    with pytest.raises(ThgError, match="unknown key 'train.nope'"):
        load_config("tiny", ["train.nope=1"])
    with pytest.raises(ThgError, match="must be int"):
        load_config("tiny", ["train.iters=abc"])
    with pytest.raises(ThgError, match="unknown preset"):
        load_config("no-such-preset")
    assert parse_overrides(["a.b.c=1"]) == {"a": {"b": {"c": 1}}}
    assert load_config("tiny", ["train.lr=5e-3"]).train.lr == pytest.approx(5e-3)
    with pytest.raises(ThgError, match="must be float"):
        load_config("tiny", ["train.lr=fast"])


def test_saved_config_round_trips(tmp_path: Path):
    cfg = load_config("tiny", ["seed=5"])
    save_config(cfg, tmp_path / "config.yaml")
    again = load_config(str(tmp_path / "config.yaml"))
    assert to_dict(again) == to_dict(cfg)


def test_atomic_dir_leaves_nothing_on_failure(tmp_path: Path):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError), atomic_dir(out) as tmp:
        (tmp / "half.txt").write_text("x")
        raise RuntimeError("boom")
    assert not out.exists() and list(tmp_path.iterdir()) == []
    with atomic_dir(out) as tmp:
        (tmp / "done.txt").write_text("ok")
    assert (out / "done.txt").read_text() == "ok"
    with pytest.raises(ThgError, match="already exists"), atomic_dir(out):
        pass


def test_cli_help_and_info(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    for cmd in ("preprocess", "train", "fit", "render", "eval", "info"):
        with pytest.raises(SystemExit) as e:
            main([cmd, "--help"])
        assert e.value.code == 0
    capsys.readouterr()
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["backends"]["default_backend"] in ("torch", "cuda", "cuda (JIT on first use)")
    assert "mediapipe" in info["optional"]


def test_cli_user_error_is_one_line(tmp_path: Path):
    proc = subprocess.run([sys.executable, "-m", "thg_nerf.cli.main", "train", str(tmp_path / "missing"),
                           "-o", str(tmp_path / "run")], capture_output=True, text=True)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "error" in proc.stderr
    assert not (tmp_path / "run").exists()


def test_import_is_light():
    code = ("import sys, thg_nerf, thg_nerf.config, thg_nerf.ops; "
            "bad = [m for m in ('mediapipe', 'torch.utils.cpp_extension', 'cv2') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _tiny_dataset(root: Path, n: int = 6, size: int = 32) -> None:
    fps = 10.0
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, size=(n, size, size, 3), dtype=np.uint8)
    labels = rng.integers(0, 4, size=(n, size, size), dtype=np.uint8)
    with frames_writer(root, (size, size), fps) as w:
        for f in frames:
            w.write(f)
    with masks_writer(root, (size, size), fps) as w:
        for m in labels:
            w.write(encode_mask(m))
    write_background(root, frames[0])
    (root / "audio.wav").write_bytes(b"")
    np.save(root / "audio_features.npy", np.zeros((n, 4, 8), np.float16))
    write_tracking(root, landmarks=np.zeros((n, 478, 2), np.float32), valid=np.ones(n, bool),
                   rotation=np.tile(np.eye(3, dtype=np.float32), (n, 1, 1)), translation=np.zeros((n, 3)),
                   eye=np.zeros(n), face_box=np.zeros((n, 4)), mouth_box=np.zeros((n, 4)))
    intr = Intrinsics(40.0, 16.0, 16.0, size, size)
    recs = [FrameRecord(i, i, np.eye(4), 0.1 * i) for i in range(n)]
    write_transforms(root, "train", intr, recs[:-2])
    write_transforms(root, "val", intr, recs[-2:])
    write_meta(root, {"fps": fps, "n_frames": n, "w": size, "h": size, "units": "dm", "head_bound": 1.5})
    return frames, labels


def test_dataset_round_trip(tmp_path: Path):
    frames, labels = _tiny_dataset(tmp_path)
    ds = load_dataset(tmp_path)
    assert ds.n_frames == 6 and ds.size == (32, 32) and len(ds.train) == 4 and len(ds.val) == 2
    assert ds.val[1].eye == pytest.approx(0.5)
    assert np.array_equal(ds.masks(), labels), "label masks must round-trip losslessly"
    dec = ds.frames().astype(np.float32)
    assert dec.shape == frames.shape
    assert np.abs(dec - frames).mean() < 20  # lossy, but the same pictures (random noise is the worst case)
    assert np.array_equal(decode_mask(encode_mask(labels)), labels)


def test_dataset_errors(tmp_path: Path):
    with pytest.raises(ThgError, match="not found"):
        load_dataset(tmp_path / "nope")
    _tiny_dataset(tmp_path)
    meta = json.loads((tmp_path / "meta.json").read_text())
    meta["schema_version"] = DATA_SCHEMA_VERSION + 99
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ThgError, match="schema"):
        load_dataset(tmp_path)
    (tmp_path / "bg.png").unlink()
    with pytest.raises(ThgError, match="missing: bg.png"):
        load_dataset(tmp_path)


def test_global_quiet_flag_reaches_subcommand():
    from thg_nerf.cli.main import build_parser

    args = build_parser().parse_args(["-q", "info"])
    assert args.quiet is True
    args = build_parser().parse_args(["info", "-q"])
    assert args.quiet is True
    assert build_parser().parse_args(["info"]).quiet is False


def test_atomic_outputs_respect_umask(tmp_path: Path):
    import os

    from thg_nerf.utils.fs import write_json

    write_json(tmp_path / "a.json", {"x": 1})
    with atomic_dir(tmp_path / "d"):
        pass
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o666 & ~mask
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o777 & ~mask
