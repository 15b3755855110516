"""Mouth-gain calibration (thg_nerf.train.calibrate): the gain it picks, where it is stored, who applies it."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from thg_nerf.dataset import load_dataset
from thg_nerf.preprocess.motion import dataset_motion
from thg_nerf.train import metrics
from thg_nerf.train.calibrate import (
    CALIBRATION_FILE,
    calibrate_mouth_gain,
    calibrate_run,
    pick_frames,
    read_mouth_gain,
)
from thg_nerf.train.checkpoint import load_run
from thg_nerf.utils.fs import write_json


def test_pick_frames_spans_the_mouth_range():
    mouth = np.linspace(0.0, 1.0, 200)[np.random.default_rng(0).permutation(200)]
    ids = pick_frames(mouth, np.arange(0, 200, 2), 5)
    assert len(ids) == 5 and len(set(ids)) == 5 and all(i % 2 == 0 for i in ids)
    assert np.allclose(np.sort(mouth[ids]), np.sort(mouth[np.arange(0, 200, 2)])[[0, 25, 50, 74, 99]])
    assert len(pick_frames(mouth, np.arange(3), 16)) == 3


def test_read_mouth_gain(tmp_path):
    assert read_mouth_gain(tmp_path) == 1.0  # older runs: no calibration
    write_json(tmp_path / CALIBRATION_FILE, {"schema": 1, "mouth_gain": 1.3})
    assert read_mouth_gain(tmp_path) == 1.3
    write_json(tmp_path / CALIBRATION_FILE, {"schema": 99, "mouth_gain": 1.3})
    assert read_mouth_gain(tmp_path) == 1.0  # unknown schema: ignored with a warning


@pytest.mark.slow
def test_calibration_undoes_a_known_attenuation(trained_synthetic_run, tmp_path):
    """Trained synthetic run, dark-pixel mouth measure: its field renders the mouth at the real amplitude
    (gain 1). With its motion encoder's input weights scaled by 0.5 (a field that opens the mouth less: its
    response saturates, so not exactly 0.5x), the calibrated gain undoes it; the run then loads and renders
    with the stored gain."""
    run_dir = tmp_path / "run"
    shutil.copytree(trained_synthetic_run.run_dir, run_dir)
    run = load_run(run_dir, "cpu")
    assert run.model.motion_gain == 1.0  # the fixture trains with train.calibrate_frames = 0
    ds = load_dataset(trained_synthetic_run.data_dir)
    boxes = ds.tracking()["mouth_box"]

    def measure(image: np.ndarray, img_id: int) -> float:
        return metrics.mouth_opening_dark(image, boxes[img_id])

    def calibrate(max_gain: float = 2.0) -> dict:
        return calibrate_mouth_gain(run.model, ds, run.intrinsics, run.background, run.cfg.render, run.device,
                                    frames=10, max_gain=max_gain, measure=measure)

    plain = calibrate()
    assert plain is not None and plain["frames"] == 10 and plain["slope_gain_1"] > 0.85, plain
    with torch.no_grad():
        run.model.motion_encoder[0].weight.mul_(0.5)
    weak = calibrate()
    assert weak["slope_gain_1"] < plain["slope_gain_1"] - 0.1, (plain, weak)
    assert weak["mouth_gain"] > plain["mouth_gain"] + 0.3 and weak["mouth_gain"] > 1.4, (plain, weak)
    assert abs(weak["slope_gain_tried"] - plain["slope_gain_1"]) < abs(weak["slope_gain_1"] - plain["slope_gain_1"])
    assert calibrate(max_gain=1.2)["mouth_gain"] <= 1.2

    gain = calibrate_run(run_dir, run.model, ds, run.intrinsics, run.background, run.cfg.render, run.device,
                         10, 2.0, run.iteration, measure)
    assert read_mouth_gain(run_dir) == pytest.approx(gain, abs=1e-4) and gain > 1.4
    again = load_run(run_dir, "cpu")
    assert again.model.motion_gain == pytest.approx(gain, abs=1e-4)
    rec = max(ds.train, key=lambda r: measure(np.asarray(ds.frames()[r.img_id]), r.img_id))
    motion = dataset_motion(ds).motion
    with torch.no_grad():  # the stored gain reaches the field: an open-mouth frame renders differently
        wide = again.render_frame(rec.transform_matrix, motion, rec.img_id, rec.eye)["fg"]
        again.model.motion_gain = 1.0
        flat = again.render_frame(rec.transform_matrix, motion, rec.img_id, rec.eye)["fg"]
    assert float((wide - flat).abs().max()) > 0.05
