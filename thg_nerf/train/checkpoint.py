"""Run directories: layout, checkpoints (safetensors + JSON, never pickle) and loading a trained run.

Layout of ``RUN/`` (written by :func:`thg_nerf.train.trainer.train`)::

    run.json                 schema_version, package version, dataset path + meta, intrinsics, fps, audio spec,
                             audio feature shape, head bound, train/val frame ids
    config.yaml              the fully resolved Config
    poses.safetensors        train_c2w [N, 4, 4], train_eye [N], val_c2w [M, 4, 4], val_eye [M]
    bg.png                   copy of the dataset's background plate
    motion_model.safetensors the audio -> motion model (``model.condition: motion``, see thg_nerf.motion.model)
    checkpoints/iter_XXXXXXX.safetensors
                             model.* weights and buffers (occupancy grid included), optim.* Adam moments,
                             rng.torch generator state; JSON metadata "state": iteration, optimizer steps and
                             hyper-parameters, numpy generator state, elapsed time
    tb/                      tensorboard logs (when tensorboard is installed)
    eval/                    written by ``thg-nerf eval``

The render side uses :func:`load_run` only.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from thg_nerf import RUN_SCHEMA_VERSION, __version__
from thg_nerf.config import Config, config_from_dict
from thg_nerf.dataset import Intrinsics
from thg_nerf.errors import IncompatibleVersionError, ThgError
from thg_nerf.fields.model import TalkingHeadModel
from thg_nerf.log import get_logger
from thg_nerf.motion.model import AudioMotionModel
from thg_nerf.utils.fs import atomic_file, read_json

log = get_logger(__name__)

RUN_FILE = "run.json"
CONFIG_FILE = "config.yaml"
POSES_FILE = "poses.safetensors"
BG_FILE = "bg.png"
CKPT_DIR = "checkpoints"
_CKPT_RE = re.compile(r"^iter_(\d{7})\.safetensors$")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` -> cuda when available, else cpu; a bad or unavailable device is a one-line ThgError."""
    if device is None or device == "":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ThgError(f"invalid torch device '{device}' ({e})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ThgError(f"device '{device}' requested but CUDA is not available on this machine")
    return dev


def read_run_info(run_dir: str | Path) -> dict:
    """``run.json`` of a run directory, checked for presence and schema version."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ThgError(f"run directory not found: {run_dir}")
    path = run_dir / RUN_FILE
    if not path.is_file():
        raise ThgError(f"{run_dir} is not a thg-nerf run directory (no {RUN_FILE})")
    info = read_json(path)
    version = info.get("schema_version") if isinstance(info, dict) else None
    if version != RUN_SCHEMA_VERSION:
        raise IncompatibleVersionError(
            f"{run_dir} was written with run schema {version!r} (thg-nerf "
            f"{info.get('thg_nerf_version', '?') if isinstance(info, dict) else '?'}); this thg-nerf reads "
            f"schema {RUN_SCHEMA_VERSION}: retrain it")
    for key in ("intrinsics", "fps", "audio_shape", "bound", "n_train"):
        if key not in info:
            raise ThgError(f"{path} is malformed (missing '{key}')")
    return info


def read_run_config(run_dir: str | Path) -> Config:
    """The resolved Config saved in a run directory."""
    import yaml

    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise ThgError(f"{run_dir} is incomplete (no {CONFIG_FILE})")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ThgError(f"corrupt config {path}: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ThgError(f"corrupt config {path}: not a mapping")
    if isinstance(data.get("model"), dict):  # runs from before motion conditioning were audio-conditioned
        data["model"].setdefault("condition", "audio")
    return config_from_dict(data)


def intrinsics_from_info(info: dict) -> Intrinsics:
    i = info["intrinsics"]
    return Intrinsics(float(i["focal"]), float(i["cx"]), float(i["cy"]), int(i["w"]), int(i["h"]))


def build_model(cfg: Config, info: dict) -> TalkingHeadModel:
    """An untrained model with the architecture recorded in ``cfg`` / ``info``."""
    t, c = info["audio_shape"]
    return TalkingHeadModel(cfg.model, float(info["bound"]), (int(t), int(c)), int(info["n_train"]),
                            int(info.get("motion_dim", 0)))


def list_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """``(iteration, path)`` of the checkpoints of a run, oldest first."""
    d = Path(run_dir) / CKPT_DIR
    if not d.is_dir():
        return []
    out = [(int(m.group(1)), p) for p in d.iterdir() if (m := _CKPT_RE.match(p.name))]
    return sorted(out)


def checkpoint_path(run_dir: str | Path, iteration: int) -> Path:
    return Path(run_dir) / CKPT_DIR / f"iter_{iteration:07d}.safetensors"


def save_checkpoint(run_dir: str | Path, iteration: int, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer | None, tensors: dict[str, torch.Tensor], state: dict,
                    keep: int = 2) -> Path:
    """Write ``checkpoints/iter_<iteration>.safetensors`` atomically; keep the ``keep`` newest ones.

    ``tensors`` are extra tensors (e.g. ``rng.torch``), ``state`` a JSON-serialisable dict stored in the
    metadata (``iteration`` and ``schema_version`` are added).
    """
    from safetensors.torch import save_file

    out: dict[str, torch.Tensor] = {f"model.{k}": v.detach().cpu().contiguous() for k, v in
                                    model.state_dict().items()}
    meta_state = dict(state)
    if optimizer is not None:
        sd = optimizer.state_dict()
        steps = {}
        for idx, st in sd["state"].items():
            for key, val in st.items():
                if key == "step":
                    steps[str(idx)] = float(val)
                elif isinstance(val, torch.Tensor):
                    out[f"optim.{idx}.{key}"] = val.detach().cpu().contiguous()
        meta_state["optim_steps"] = steps
        meta_state["optim_groups"] = [{k: v for k, v in g.items() if k != "params"} for g in sd["param_groups"]]
    out.update({k: v.detach().cpu().contiguous() for k, v in tensors.items()})
    meta_state.update({"iteration": int(iteration), "schema_version": RUN_SCHEMA_VERSION,
                       "thg_nerf_version": __version__})
    path = checkpoint_path(run_dir, iteration)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path, suffix=".safetensors") as tmp:
        save_file(out, str(tmp), metadata={"state": json.dumps(meta_state)})
    for _, old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """``(tensors, state)`` of a checkpoint file; one-line ThgError when it is corrupt or incompatible."""
    from safetensors import safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        state = json.loads(meta["state"])
    except FileNotFoundError:
        raise ThgError(f"checkpoint not found: {path}") from None
    except Exception as e:  # safetensors raises several types for truncated/garbled files
        raise ThgError(f"corrupt checkpoint {path} ({type(e).__name__}: {str(e).splitlines()[0][:120]}); "
                       "delete it to fall back to an earlier one") from None
    if state.get("schema_version") != RUN_SCHEMA_VERSION:
        raise IncompatibleVersionError(f"checkpoint {path} has run schema {state.get('schema_version')!r}, "
                                       f"this thg-nerf reads {RUN_SCHEMA_VERSION}")
    return tensors, state


def load_model_state(model: torch.nn.Module, tensors: dict[str, torch.Tensor], path: Path) -> None:
    """Load the ``model.*`` tensors into ``model`` (strict); mismatches are a one-line ThgError."""
    sd = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    expected = model.state_dict()
    missing = sorted(set(expected) - set(sd))
    extra = sorted(set(sd) - set(expected))
    bad = [k for k in expected if k in sd and tuple(sd[k].shape) != tuple(expected[k].shape)]
    if missing or extra or bad:
        what = (f"missing {missing[:3]}" if missing else f"unexpected {extra[:3]}" if extra
                else f"shape mismatch in {bad[:3]}")
        raise ThgError(f"checkpoint {path} does not match the run's model config ({what})")
    model.load_state_dict(sd)


def load_optimizer_state(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], state: dict) -> None:
    """Restore Adam moments and steps saved by :func:`save_checkpoint`."""
    sd = optimizer.state_dict()
    new_state: dict = {}
    for idx_s, step in state.get("optim_steps", {}).items():
        idx = int(idx_s)
        entry: dict = {"step": torch.tensor(step, dtype=torch.float32)}
        for key in ("exp_avg", "exp_avg_sq"):
            name = f"optim.{idx}.{key}"
            if name in tensors:
                entry[key] = tensors[name]
        new_state[idx] = entry
    groups = state.get("optim_groups", [])
    if len(groups) != len(sd["param_groups"]):
        raise ThgError("checkpoint optimizer state does not match the model (different config?)")
    for g, saved in zip(sd["param_groups"], groups):
        g.update({k: tuple(v) if k == "betas" else v for k, v in saved.items()})
    optimizer.load_state_dict({"state": new_state, "param_groups": sd["param_groups"]})


def _read_poses(run_dir: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    path = run_dir / POSES_FILE
    if not path.is_file():
        raise ThgError(f"{run_dir} is incomplete (no {POSES_FILE})")
    try:
        return load_file(str(path))
    except Exception as e:
        raise ThgError(f"corrupt file {path} ({type(e).__name__})") from None


@dataclass
class LoadedRun:
    """A trained run ready to render (model in eval mode on ``device``)."""

    run_dir: Path
    cfg: Config
    model: TalkingHeadModel
    device: torch.device
    intrinsics: Intrinsics
    fps: float
    audio_spec: str
    train_c2w: np.ndarray
    train_eye: np.ndarray
    background: np.ndarray
    iteration: int = 0
    motion_model: AudioMotionModel | None = None
    """The audio -> motion model (runs conditioned on motion)."""

    def audio_features(self, wave: np.ndarray, sr: int, fps: float, n_frames: int) -> np.ndarray:
        """Feature windows [n_frames, T, C] of new audio as this run reads them (through the audio -> motion
        model, which normalises another voice towards the person's, when the run has one)."""
        if self.motion_model is not None:
            return self.motion_model.features(wave, sr, fps, n_frames)
        from thg_nerf.audio.features import extract_features

        return extract_features(wave, sr, fps, n_frames, self.audio_spec)

    def conditions(self, features: np.ndarray) -> np.ndarray:
        """The head field's per-frame condition source for audio feature windows ``features`` [n, T, C]
        (computed with ``audio_spec``): predicted motion codes [n, M] for a motion-conditioned run, the
        features themselves for an audio-conditioned one."""
        if self.motion_model is None:
            return features
        return self.motion_model.predict(features)

    def render_frame(self, c2w: np.ndarray, cond: np.ndarray | torch.Tensor, index: int, eye: float,
                     size: tuple[int, int] | None = None) -> dict[str, torch.Tensor]:
        """Render one frame.

        Args:
            c2w: [4, 4] camera-to-world pose in head space (as in transforms_*.json).
            cond: the per-frame condition source of the whole sequence: motion codes [n, M] for a
                motion-conditioned run (see :meth:`conditions`), audio features [n, T, C] for an
                audio-conditioned one (the attention window around ``index`` is taken inside).
            index: frame index into ``cond``.
            eye: eye-blink signal in [0, 1].
            size: ``(w, h)`` output size (default: the training size).
        Returns:
            ``{"fg": [H, W, 3] premultiplied head-over-torso colour in [0, 1], "alpha": [H, W]}`` on the
            device; composite with ``fg + (1 - alpha) * bg``.
        """
        from thg_nerf.render.volume import render_image

        need = self.model.cond_shape
        if cond.ndim != 1 + len(need) or tuple(cond.shape[1:]) != need:
            what = "motion codes" if self.model.conditioned_on_motion else f"audio features ({self.audio_spec})"
            raise ThgError(f"{what} have shape {tuple(cond.shape)}, the run needs [n, {', '.join(map(str, need))}]")
        if not 0 <= index < len(cond):
            raise ThgError(f"frame index {index} outside the conditions (n = {len(cond)})")
        return render_image(self.model, np.asarray(c2w, dtype=np.float32), self.intrinsics_at(size), cond, index,
                            float(eye), self.cfg.render, self.device)

    def intrinsics_at(self, size: tuple[int, int] | None) -> Intrinsics:
        """The camera intrinsics for ``(w, h)`` output frames (None: the training size)."""
        w, h = size if size is not None else (self.intrinsics.w, self.intrinsics.h)
        return self.intrinsics if (w, h) == (self.intrinsics.w, self.intrinsics.h) else self.intrinsics.scaled(w, h)


def load_run(run_dir: str | Path, device: str | torch.device | None = None) -> LoadedRun:
    """Load the newest checkpoint of a run; one-line ThgError for missing, corrupt or incompatible runs."""
    from PIL import Image

    run_dir = Path(run_dir)
    info = read_run_info(run_dir)
    cfg = read_run_config(run_dir)
    ckpts = list_checkpoints(run_dir)
    if not ckpts:
        raise ThgError(f"{run_dir} has no checkpoint yet (training did not reach its first checkpoint)")
    dev = resolve_device(device)
    iteration, path = ckpts[-1]
    tensors, _ = load_checkpoint(path)
    model = build_model(cfg, info)
    load_model_state(model, tensors, path)
    model.to(dev).eval()
    if model.conditioned_on_motion:
        from thg_nerf.train.calibrate import read_mouth_gain

        model.motion_gain = read_mouth_gain(run_dir)
    poses = _read_poses(run_dir)
    bg_path = run_dir / BG_FILE
    try:
        background = np.asarray(Image.open(bg_path).convert("RGB"))
    except (OSError, ValueError) as e:
        raise ThgError(f"cannot read background plate {bg_path} ({type(e).__name__})") from None
    motion = AudioMotionModel.load(run_dir) if model.conditioned_on_motion else None
    spec = motion.spec if motion is not None else str(info.get("audio_spec", "mel"))
    return LoadedRun(run_dir=run_dir, cfg=cfg, model=model, device=dev, intrinsics=intrinsics_from_info(info),
                     fps=float(info["fps"]), audio_spec=spec, train_c2w=poses["train_c2w"],
                     train_eye=poses["train_eye"], background=background, iteration=iteration, motion_model=motion)
