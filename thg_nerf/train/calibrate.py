"""Mouth gain: make a motion-conditioned head field open the mouth as much as the person does.

A field fitted with an L2 loss under-renders rare, extreme mouth shapes (regression to the mean): on macron
(tiny preset) the rendered mouth opening of *training* frames, driven by their own tracked motion, is only
~0.8x the real one. Motion codes are therefore scaled about the training mean by a per-run gain before they
reach the field (``TalkingHeadModel.motion_gain``), chosen after training so that rendered opening follows
the real opening with slope 1:

1. ``frames`` training frames spread over the range of the tracked mouth opening are rendered (mean
   appearance codes, as every output does) with gain 1; the rendered and real mouth openings are measured with
   the same landmark detector; ``slope`` = least-squares slope of rendered on real.
2. They are rendered again at ``g0 = 1 / slope`` (clipped to ``[1, max_gain]``), and the gain is refined by
   one secant step on the two slopes (the field's response is close to linear in the gain).

The result is ``RUN/calibration.json`` (schema ``SCHEMA``), read by :func:`thg_nerf.train.checkpoint.load_run`.
Without mediapipe, or for audio-conditioned runs, nothing is written and the gain stays 1.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from thg_nerf.dataset import Dataset, Intrinsics
from thg_nerf.errors import MissingDependencyError
from thg_nerf.fields.model import TalkingHeadModel
from thg_nerf.log import get_logger, progress
from thg_nerf.preprocess.motion import dataset_motion
from thg_nerf.render.config import RenderConfig
from thg_nerf.render.volume import frame_uint8, render_image
from thg_nerf.train import metrics
from thg_nerf.utils.fs import read_json, write_json

log = get_logger(__name__)

CALIBRATION_FILE = "calibration.json"
SCHEMA = 1


def _read_calibration(run_dir: str | Path, warn: bool = True) -> dict | None:
    """The run's calibration record (None when it has none, or one of another schema)."""
    path = Path(run_dir) / CALIBRATION_FILE
    if not path.is_file():
        return None
    data = read_json(path)
    if int(data.get("schema", 0)) != SCHEMA:
        if warn:
            log.warning("%s has schema %s (expected %d); ignoring it (mouth gain 1)", path, data.get("schema"),
                        SCHEMA)
        return None
    return data


def read_mouth_gain(run_dir: str | Path) -> float:
    """The run's calibrated mouth gain (1.0 when the run has none)."""
    data = _read_calibration(run_dir)
    return 1.0 if data is None else float(data["mouth_gain"])


def calibrated_at(run_dir: str | Path) -> int | None:
    """The training iteration the run's mouth gain was calibrated at (None: not calibrated)."""
    data = _read_calibration(run_dir, warn=False)
    return None if data is None or data.get("iteration") is None else int(data["iteration"])


def _slope(rendered: np.ndarray, real: np.ndarray) -> float | None:
    """Least-squares slope of ``rendered`` on ``real`` (None with fewer than 4 pairs or no spread)."""
    if len(real) < 4 or np.std(real) < 1e-9:
        return None
    r = real - real.mean()
    return float(np.dot(rendered - rendered.mean(), r) / np.dot(r, r))


def pick_frames(mouth: np.ndarray, candidates: np.ndarray, k: int) -> np.ndarray:
    """``k`` of the ``candidates`` image ids [N] spread evenly over the quantiles of ``mouth`` (per image)."""
    order = candidates[np.argsort(mouth[candidates], kind="stable")]
    return order[np.unique(np.linspace(0, len(order) - 1, min(k, len(order))).round().astype(int))]


#: Mouth opening of a uint8 [H, W, 3] image of training frame ``img_id`` (None: not measurable).
MouthMeasure = Callable[[np.ndarray, int], "float | None"]


class LandmarkMouth:
    """The default :data:`MouthMeasure`: inner-lip gap / mouth width from mediapipe lip landmarks."""

    def __init__(self) -> None:
        self.det = metrics.LipLandmarker()

    def __call__(self, image: np.ndarray, img_id: int) -> float | None:  # noqa: ARG002 (any frame)
        lm = self.det(image)
        return None if lm is None else metrics.mouth_opening_landmarks(lm)

    def close(self) -> None:
        self.det.close()


@torch.no_grad()
def calibrate_mouth_gain(model: TalkingHeadModel, ds: Dataset, intr: Intrinsics, background: np.ndarray,
                         rcfg: RenderConfig, device: torch.device, frames: int = 16, max_gain: float = 1.5,
                         measure: MouthMeasure | None = None) -> dict | None:
    """Choose the model's mouth gain (see the module docstring); returns the calibration record, or None when
    it cannot be measured (audio-conditioned model, no mediapipe, too few detected faces). Leaves
    ``model.motion_gain`` at the chosen value. ``measure``: how a mouth opening is read off an image
    (default :class:`LandmarkMouth`)."""
    if not model.conditioned_on_motion or frames < 4:
        return None
    own = measure is None
    if own:
        try:
            measure = LandmarkMouth()
        except MissingDependencyError:
            log.info("mouth gain not calibrated (needs mediapipe); it stays 1")
            return None
    t0 = time.perf_counter()
    tracked = dataset_motion(ds)
    recs = {r.img_id: r for r in ds.train}
    ids = pick_frames(tracked.mouth, np.array(sorted(recs)), frames)
    images = ds.frames()
    bg = torch.from_numpy(np.array(background)).to(device).float() / 255.0

    def read(image: np.ndarray, i: int) -> float:
        v = measure(image, i)
        return np.nan if v is None else float(v)

    real = [read(np.asarray(images[int(i)]), int(i)) for i in ids]

    def rendered(gain: float, bar) -> np.ndarray:
        model.motion_gain = gain
        out = []
        for i in ids:
            rec = recs[int(i)]
            res = render_image(model, rec.transform_matrix.astype(np.float32), intr, tracked.motion, int(i),
                               float(rec.eye), rcfg, device)
            out.append(read(frame_uint8(res["fg"], res["alpha"], bg), int(i)))
            bar.update(1)
        return np.array(out)

    was_training = model.training
    model.eval()
    try:
        with progress(total=2 * len(ids), desc="calibrating mouth gain", unit="frame") as bar:
            o1 = rendered(1.0, bar)
            real_a = np.array(real)
            ok = np.isfinite(real_a) & np.isfinite(o1)
            s1 = _slope(o1[ok], real_a[ok])
            if s1 is None or s1 <= 0:
                model.motion_gain = 1.0
                log.info("mouth gain not calibrated (too few faces found in the renders); it stays 1")
                return None
            g0 = float(np.clip(1.0 / s1, 1.0, max_gain))
            gain, s2 = g0, None
            if g0 > 1.0:
                o2 = rendered(g0, bar)
                ok2 = ok & np.isfinite(o2)
                s2 = _slope(o2[ok2], real_a[ok2])
                if s2 is not None and s2 > s1 + 1e-3:
                    gain = float(np.clip(1.0 + (1.0 - s1) * (g0 - 1.0) / (s2 - s1), 1.0, max_gain))
    finally:
        if own:
            measure.close()
        model.train(was_training)
    model.motion_gain = gain
    record = {"schema": SCHEMA, "mouth_gain": round(gain, 4), "slope_gain_1": round(s1, 4),
              "gain_tried": round(g0, 4), "slope_gain_tried": None if s2 is None else round(s2, 4),
              "frames": int(ok.sum()), "max_gain": max_gain, "seconds": round(time.perf_counter() - t0, 1)}
    log.info(f"mouth gain {gain:.2f} (rendered/real mouth-opening slope {s1:.2f} at gain 1"
             + (f", {s2:.2f} at {g0:.2f}" if s2 is not None else "") + f"; {record['frames']} training frames)")
    return record


def calibrate_run(run_dir: str | Path, model: TalkingHeadModel, ds: Dataset, intr: Intrinsics,
                  background: np.ndarray, rcfg: RenderConfig, device: torch.device, frames: int,
                  max_gain: float, iteration: int, measure: MouthMeasure | None = None) -> float:
    """:func:`calibrate_mouth_gain` and write ``RUN/calibration.json`` (or remove a stale one); the gain."""
    path = Path(run_dir) / CALIBRATION_FILE
    record = calibrate_mouth_gain(model, ds, intr, background, rcfg, device, frames, max_gain, measure)
    if record is None:
        path.unlink(missing_ok=True)
        return 1.0
    write_json(path, {**record, "iteration": int(iteration)})
    return float(record["mouth_gain"])
