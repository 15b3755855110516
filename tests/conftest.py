"""Shared pytest fixtures."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from thg_nerf.testing.synthetic import SyntheticInfo

REPO = Path(__file__).resolve().parents[1]
MEDIA = REPO.parent / "shared" / "media"


@pytest.fixture(scope="session")
def media_dir() -> Path:
    """``../shared/media`` (skips the test when the sample media is absent)."""
    if not MEDIA.is_dir():
        pytest.skip(f"sample media not found at {MEDIA} (needs the shared/ folder beside the checkout)")
    return MEDIA


@pytest.fixture(scope="session")
def media_file(media_dir: Path):
    """A function returning a media file path, skipping when that file is absent."""

    def get(name: str) -> Path:
        path = media_dir / name
        if not path.is_file():
            pytest.skip(f"sample media file {path} not found")
        return path

    return get


@dataclass
class TrainedSyntheticRun:
    """A tiny model trained briefly on the synthetic scene (shared by the render, eval and training tests)."""

    run_dir: Path
    data_dir: Path
    info: SyntheticInfo
    """Ground truth of the dataset (poses, mouth opening, eye signal, audio, scene)."""


#: Dataset and training settings of ``trained_synthetic_run`` (kept tiny: the whole render test budget on
#: 2 CPU cores is a few minutes, training included).
SYNTHETIC_RUN_DATA = {"n_frames": 100, "size": 64, "fps": 25.0, "seed": 0, "motion_deg": 8.0}
SYNTHETIC_RUN_OVERRIDES = {"train": {"iters": 250, "checkpoint_every": 250, "eval_every": 0,
                                     "max_samples_per_ray": 48, "calibrate_frames": 0},
                           "motion": {"hidden": 32, "iters": 400, "seq_len": 32, "augment": {"copies": 2},
                                      "ensemble": 2}}


@pytest.fixture(scope="session")
def trained_synthetic_run(tmp_path_factory) -> TrainedSyntheticRun:
    """Train the ``tiny`` preset on a synthetic dataset once per test session (see SYNTHETIC_RUN_*)."""
    from thg_nerf.config import load_config
    from thg_nerf.testing.synthetic import make_synthetic_dataset
    from thg_nerf.train.trainer import train

    root = tmp_path_factory.mktemp("trained_synthetic")
    info = make_synthetic_dataset(root / "data", **SYNTHETIC_RUN_DATA)
    cfg = load_config("tiny", SYNTHETIC_RUN_OVERRIDES)
    train(root / "data", root / "run", cfg, device="cpu")
    return TrainedSyntheticRun(run_dir=root / "run", data_dir=root / "data", info=info)
