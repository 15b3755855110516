"""``thg-nerf train``: fit the head field and torso layer to a dataset directory.

One joint stage: every iteration draws ``batch_rays`` rays from ``frames_per_batch`` random training frames
(biased to the mouth and face boxes), renders head-over-torso-over-plate and minimises the photometric
error plus small alpha losses against the label masks (head field <-> label 1, torso layer <-> labels 2-3).
Frames and masks are read from the dataset's uint8 memmaps, so host memory does not grow with the clip.

Reproducible: all randomness comes from one numpy and one torch generator seeded by ``cfg.seed`` and saved
in every checkpoint, the learning rate is a function of the iteration, so a run resumed from a checkpoint
continues exactly as the uninterrupted run would have.

Data-parallel (``--nproc N`` or torchrun, see :mod:`thg_nerf.train.distributed`): ``batch_rays`` is the global
batch. Every rank draws it from the same generators and renders its share; gradients are summed over the
ranks, so the ranks stay identical and the run matches a single-process one up to floating-point rounding.
Rank 0 writes the run directory, logs and validates.
"""

from __future__ import annotations

import math
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from thg_nerf import RUN_SCHEMA_VERSION, __version__
from thg_nerf.config import Config, save_config, to_dict
from thg_nerf.dataset import Dataset, Intrinsics, load_dataset
from thg_nerf.errors import ThgError
from thg_nerf.fields.model import TalkingHeadModel
from thg_nerf.log import get_logger, progress
from thg_nerf.motion.model import MODEL_FILE as MOTION_MODEL_FILE
from thg_nerf.motion.model import check_motion_config, train_audio_motion
from thg_nerf.preprocess.motion import dataset_motion
from thg_nerf.render.rays import pixel_rays, pixel_uv
from thg_nerf.render.volume import HeadConditions, composite_layers, render_head_train, render_image
from thg_nerf.train import checkpoint as ckpt
from thg_nerf.train import distributed as dist
from thg_nerf.train.calibrate import calibrate_run, calibrated_at
from thg_nerf.train.distributed import World
from thg_nerf.utils.fs import atomic_dir, write_json

log = get_logger(__name__)

#: Condition codes drawn per occupancy update (each cell is evaluated under one of them, at a random eye value).
OCC_CODES = 64
LOG_EVERY = 25


@dataclass
class TrainData:
    """What training needs from a dataset, as arrays (frames and masks stay memory-mapped)."""

    ds: Dataset
    intr: Intrinsics
    frames: np.ndarray       # [n, H, W, 3] uint8 memmap
    masks: np.ndarray        # [n, H, W] uint8 memmap
    audio: np.ndarray        # [n, T, C] memmap
    background: np.ndarray   # [H, W, 3] uint8
    face_box: np.ndarray     # [n, 4]
    mouth_box: np.ndarray    # [n, 4]
    train_img: np.ndarray    # [N] int64
    train_aud: np.ndarray    # [N]
    train_c2w: np.ndarray    # [N, 4, 4] float32
    train_eye: np.ndarray    # [N] float32
    val_img: np.ndarray
    val_aud: np.ndarray
    val_c2w: np.ndarray
    val_eye: np.ndarray
    cond: np.ndarray         # the head field's per-frame condition source: [n, M] motion or [n, T, C] audio
    train_cond: np.ndarray   # [N] rows of ``cond`` of the training frames (img ids for motion, aud ids for audio)
    val_cond: np.ndarray


def _split_arrays(records) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    img = np.array([r.img_id for r in records], dtype=np.int64)
    aud = np.array([r.aud_id for r in records], dtype=np.int64)
    c2w = np.stack([r.transform_matrix for r in records]).astype(np.float32) if records else np.zeros((0, 4, 4),
                                                                                                     np.float32)
    eye = np.array([r.eye for r in records], dtype=np.float32)
    return img, aud, c2w, eye


def open_dataset(data_dir: str | Path) -> Dataset:
    """Load and check a dataset for training (one-line ThgError on anything unusable)."""
    ds = load_dataset(data_dir)
    if not ds.train:
        raise ThgError(f"{data_dir}: the training split is empty")
    aud = ds.audio_features()
    if aud.ndim != 3 or aud.shape[0] != ds.n_frames:
        raise ThgError(f"{ds.path('audio_features')} has shape {aud.shape}, expected [{ds.n_frames}, T, C]")
    trk = ds.tracking()
    for key in ("face_box", "mouth_box"):
        if key not in trk or trk[key].shape != (ds.n_frames, 4):
            raise ThgError(f"{ds.path('tracking')}: '{key}' missing or not [{ds.n_frames}, 4]")
    return ds


def load_train_data(ds: Dataset, condition: str = "motion") -> TrainData:
    """Arrays for training; decodes frames/masks to the dataset's memmap cache on first use.

    ``condition`` (``model.condition``) selects the head field's condition source: the dataset's tracked
    motion codes, or its audio features.
    """
    trk = ds.tracking()
    t_img, t_aud, t_c2w, t_eye = _split_arrays(ds.train)
    v_img, v_aud, v_c2w, v_eye = _split_arrays(ds.val)
    bg = ds.background()
    w, h = ds.size
    if bg.shape != (h, w, 3):
        raise ThgError(f"{ds.path('background')} is {bg.shape[1]}x{bg.shape[0]}, frames are {w}x{h}")
    audio = ds.audio_features()
    if condition == "motion":
        cond, train_cond, val_cond = dataset_motion(ds).motion, t_img, v_img
    else:
        cond, train_cond, val_cond = audio, t_aud, v_aud
    return TrainData(ds=ds, intr=ds.intrinsics, frames=ds.frames(), masks=ds.masks(), audio=audio,
                     background=bg, face_box=np.asarray(trk["face_box"], np.float32),
                     mouth_box=np.asarray(trk["mouth_box"], np.float32), train_img=t_img, train_aud=t_aud,
                     train_c2w=t_c2w, train_eye=t_eye, val_img=v_img, val_aud=v_aud, val_c2w=v_c2w, val_eye=v_eye,
                     cond=cond, train_cond=train_cond, val_cond=val_cond)


class RaySampler:
    """Draws a batch of pixels from a few training frames, biased to the mouth and face boxes."""

    def __init__(self, data: TrainData, cfg: Config, rng: np.random.Generator) -> None:
        self.d = data
        self.rng = rng
        self.n_rays = int(cfg.train.batch_rays)
        self.n_frames = max(1, min(int(cfg.train.frames_per_batch), len(data.train_img), self.n_rays))
        self.mouth_ratio = float(cfg.train.mouth_ratio)
        self.face_ratio = float(cfg.train.face_ratio)

    def _in_box(self, box: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        w, h = self.d.intr.w, self.d.intr.h
        x0, y0, x1, y1 = (float(b) for b in box)
        x0, x1 = np.clip([x0, x1], 0, w)
        y0, y1 = np.clip([y0, y1], 0, h)
        if not (x1 - x0 >= 1 and y1 - y0 >= 1 and np.isfinite([x0, y0, x1, y1]).all()):
            x0, y0, x1, y1 = 0.0, 0.0, float(w), float(h)
        u = np.floor(x0 + self.rng.random(k) * (x1 - x0)).astype(np.int64)
        v = np.floor(y0 + self.rng.random(k) * (y1 - y0)).astype(np.int64)
        return np.clip(u, 0, w - 1), np.clip(v, 0, h - 1)

    def sample(self) -> dict[str, np.ndarray]:
        """``frames`` [F] train positions; per ray ``slot`` [R] (index into frames), ``u``, ``v``,
        ``rgb`` [R, 3] uint8 and ``label`` [R] uint8."""
        d = self.d
        frames = self.rng.choice(len(d.train_img), size=self.n_frames, replace=False)
        per = np.full(self.n_frames, self.n_rays // self.n_frames)
        per[: self.n_rays - per.sum()] += 1
        slots, us, vs, rgbs, labels = [], [], [], [], []
        for s, (pos, n) in enumerate(zip(frames, per)):
            img = int(d.train_img[pos])
            n_m = int(round(n * self.mouth_ratio))
            n_f = min(n - n_m, int(round(n * self.face_ratio)))
            parts = [self._in_box(d.mouth_box[img], n_m), self._in_box(d.face_box[img], n_f),
                     self._in_box(np.array([0, 0, d.intr.w, d.intr.h]), n - n_m - n_f)]
            u = np.concatenate([p[0] for p in parts])
            v = np.concatenate([p[1] for p in parts])
            rgbs.append(np.asarray(d.frames[img][v, u]))
            labels.append(np.asarray(d.masks[img][v, u]))
            slots.append(np.full(n, s, dtype=np.int64))
            us.append(u)
            vs.append(v)
        return {"frames": frames.astype(np.int64), "slot": np.concatenate(slots), "u": np.concatenate(us),
                "v": np.concatenate(vs), "rgb": np.concatenate(rgbs), "label": np.concatenate(labels)}


def _head_bound(ds: Dataset, cfg: Config) -> float:
    if cfg.model.bound is not None:
        return float(cfg.model.bound)
    bound = ds.meta.get("head_bound")
    if bound is None:
        raise ThgError(f"{ds.root}/meta.json has no 'head_bound'; set model.bound")
    return float(bound)


def _run_info(ds: Dataset, cfg: Config) -> dict:
    intr = ds.intrinsics
    audio_meta = ds.meta.get("audio") or {}
    return {
        "schema_version": RUN_SCHEMA_VERSION,
        "thg_nerf_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "data_dir": str(ds.root.resolve()),
        "data_meta": ds.meta,
        "intrinsics": {"focal": intr.focal, "cx": intr.cx, "cy": intr.cy, "w": intr.w, "h": intr.h},
        "fps": ds.fps,
        "audio_spec": str(audio_meta.get("features", "mel")),
        "audio_sample_rate": int(audio_meta.get("sample_rate", 16000)),
        "audio_shape": [int(s) for s in ds.audio_features().shape[1:]],
        "condition": cfg.model.condition,
        "motion_dim": dataset_motion(ds).dim if cfg.model.condition == "motion" else 0,
        "bound": _head_bound(ds, cfg),
        "n_train": len(ds.train),
        "train_ids": [[r.img_id, r.aud_id] for r in ds.train],
        "val_ids": [[r.img_id, r.aud_id] for r in ds.val],
    }


def _check_new_run_dir(run_dir: Path) -> None:
    """Refuse to start a new run over a checkpointed run or a foreign directory (nothing is touched).

    An empty directory, or a run that never reached its first checkpoint, may be (re)used.
    """
    if not run_dir.exists():
        return
    if not run_dir.is_dir():
        raise ThgError(f"{run_dir} exists and is not a directory; choose another output directory")
    if (run_dir / ckpt.RUN_FILE).is_file():
        if ckpt.list_checkpoints(run_dir):
            raise ThgError(f"{run_dir} already holds a trained run; continue it with --resume, or choose "
                           "another output directory (or delete it)")
    elif any(run_dir.iterdir()):
        raise ThgError(f"{run_dir} exists and is not a thg-nerf run directory; choose another output directory")


def _write_new_run(run_dir: Path, ds: Dataset, cfg: Config, info: dict) -> None:
    """Create the run directory atomically with everything but checkpoints."""
    from safetensors.numpy import save_file

    _check_new_run_dir(run_dir)
    existing = run_dir.exists()
    _, _, t_c2w, t_eye = _split_arrays(ds.train)
    _, _, v_c2w, v_eye = _split_arrays(ds.val)
    with atomic_dir(run_dir, overwrite=existing) as tmp:
        write_json(tmp / ckpt.RUN_FILE, info)
        save_config(cfg, tmp / ckpt.CONFIG_FILE)
        save_file({"train_c2w": t_c2w, "train_eye": t_eye, "val_c2w": v_c2w, "val_eye": v_eye},
                  str(tmp / ckpt.POSES_FILE))
        shutil.copyfile(ds.path("background"), tmp / ckpt.BG_FILE)
        (tmp / ckpt.CKPT_DIR).mkdir()


def resume_iters(run_dir: str | Path) -> int:
    """``train.iters`` saved in a run (what ``--resume`` without ``--iters`` trains to)."""
    ckpt.read_run_info(run_dir)
    return int(ckpt.read_run_config(run_dir).train.iters)


def _resume_config(run_dir: Path, cfg: Config) -> Config:
    """The run's saved config, with this session's ``train.iters`` and ``train.max_minutes``."""
    saved = ckpt.read_run_config(run_dir)
    if to_dict(saved.model) != to_dict(cfg.model) or saved.preset != cfg.preset:
        log.info(f"resuming with the run's saved config (preset '{saved.preset}'); other model settings ignored")
    saved.train.iters = cfg.train.iters
    saved.train.max_minutes = cfg.train.max_minutes
    return saved


class _StopFlag:
    """Set by SIGINT (first Ctrl-C: finish the iteration and checkpoint; second: abort at once)."""

    def __init__(self) -> None:
        self.requested = False

    def handler(self, signum, frame) -> None:  # noqa: ARG002 (signal handler signature)
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True


@contextmanager
def _sigint_to(flag: _StopFlag) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, flag.handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def _tensorboard(run_dir: Path, start: int):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.info("tensorboard is not installed: no training curves (pip install 'thg-nerf[tensorboard]')")
        return None
    return SummaryWriter(str(run_dir / "tb"), purge_step=start if start > 0 else None)


def _make_optimizer(model: TalkingHeadModel, cfg: Config) -> torch.optim.Adam:
    groups = [{"params": model.grid_parameters(), "lr": cfg.train.lr, "eps": 1e-15},
              {"params": model.net_parameters(), "lr": cfg.train.lr_net, "weight_decay": 1e-6},
              {"params": model.code_parameters(), "lr": cfg.train.lr_net}]
    return torch.optim.Adam(groups, betas=(0.9, 0.99))


def _set_lr(opt: torch.optim.Adam, cfg: Config, it: int) -> float:
    factor = cfg.train.lr_final_ratio ** (it / max(1, cfg.train.iters))
    base = (cfg.train.lr, cfg.train.lr_net, cfg.train.lr_net)
    for g, lr in zip(opt.param_groups, base):
        g["lr"] = lr * factor
    return cfg.train.lr * factor


@torch.no_grad()
def update_occupancy(model: TalkingHeadModel, cond: np.ndarray, train_cond: np.ndarray,
                     gen: torch.Generator) -> None:
    """One occupancy update under the condition codes of random training frames and random eye values."""
    dev = model.pose_mean.device
    pick = torch.randint(len(train_cond), (OCC_CODES,), generator=gen, device=dev).cpu()
    codes = model.cond_codes(cond, torch.from_numpy(train_cond)[pick])

    def density(pts: torch.Tensor) -> torch.Tensor:
        k = torch.randint(OCC_CODES, (pts.shape[0],), generator=gen, device=dev)
        eye = torch.rand(pts.shape[0], 1, generator=gen, device=dev) if model.cfg.use_eye else None
        return model.head.density(pts, codes[k], eye)[0]

    model.occupancy.update(density, model.step_size, generator=gen)


class Trainer:
    """State of one training session (built by :func:`train`)."""

    def __init__(self, data: TrainData, cfg: Config, model: TalkingHeadModel, dev: torch.device,
                 world: World | None = None) -> None:
        self.data, self.cfg, self.model, self.dev = data, cfg, model, dev
        self.world = world or World()
        self.opt = _make_optimizer(model, cfg)
        self.params = [p for g in self.opt.param_groups for p in g["params"]]
        self.rng = np.random.default_rng(cfg.seed)
        self.gen = torch.Generator(device=dev)
        self.gen.manual_seed(cfg.seed)
        self.sampler = RaySampler(data, cfg, self.rng)
        self.bg = torch.from_numpy(np.array(data.background)).to(dev).float() / 255.0
        self.c2w = torch.from_numpy(data.train_c2w).to(dev)
        self.eye = torch.from_numpy(data.train_eye).to(dev)
        self.amp = bool(cfg.train.amp and dev.type == "cuda")

    def state(self, it: int, elapsed: float) -> tuple[dict[str, torch.Tensor], dict]:
        return {"rng.torch": self.gen.get_state()}, {"np_rng": self.rng.bit_generator.state, "elapsed_s": elapsed}

    def restore(self, tensors: dict[str, torch.Tensor], state: dict) -> None:
        ckpt.load_optimizer_state(self.opt, tensors, state)
        self.gen.set_state(tensors["rng.torch"])
        self.rng.bit_generator.state = state["np_rng"]

    def step(self, it: int) -> dict[str, float]:
        """One optimisation step; returns scalars for logging."""
        cfg, model, d, dev = self.cfg, self.model, self.data, self.dev
        lr = _set_lr(self.opt, cfg, it)
        if it >= cfg.train.occupancy_warmup and it % max(1, cfg.train.occupancy_every) == 0:
            update_occupancy(model, d.cond, d.train_cond, self.gen)
            self.world.broadcast_([model.occupancy.density, model.occupancy.occ])
        b = self.sampler.sample()
        n_rays = len(b["u"])
        n_visible = max(1.0, float(np.count_nonzero(b["label"] != 1)))
        jitter = torch.rand(n_rays, generator=self.gen, device=dev)
        mine = self.world.shard(n_rays)
        b = {k: (val if k == "frames" else val[mine]) for k, val in b.items()}  # every rank keeps all frames
        jitter = jitter[mine]
        frames = torch.from_numpy(b["frames"]).to(dev)
        slot = torch.from_numpy(b["slot"]).to(dev)
        u, v = torch.from_numpy(b["u"]).to(dev), torch.from_numpy(b["v"]).to(dev)
        target = torch.from_numpy(b["rgb"]).to(dev).float() / 255.0
        label = torch.from_numpy(b["label"]).to(dev)
        c2w = self.c2w[frames]
        rays_o, rays_d = pixel_rays(c2w[slot], u, v, d.intr)
        bg = self.bg[v, u]
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=self.amp):
            audio = model.cond_codes(d.cond, torch.from_numpy(d.train_cond[b["frames"]]))
            eye = self.eye[frames][:, None] if model.cfg.use_eye else None
            cond = HeadConditions(audio, eye, model.ind_head[frames])
            head = render_head_train(model.head, model.occupancy, rays_o, rays_d, slot, cond, model.step_size,
                                     cfg.train.max_samples_per_ray, jitter, cfg.train.early_stop)
            t_rgb = t_alpha = None
            if model.torso is not None:
                pose = model.pose_codes(c2w)[slot]
                t_rgb, t_alpha = model.torso(pixel_uv(u, v, d.intr.w, d.intr.h), pose, model.ind_torso[frames][slot])
            fg, alpha = composite_layers(head["rgb"], head["acc"], t_rgb, t_alpha)
        pred = fg.float() + (1.0 - alpha.float())[:, None] * bg
        if model.torso is None:  # without a torso layer the torso pixels show the plate
            target = torch.where((label >= 2)[:, None], bg, target)
        # means over the global batch (this rank's sums over the global counts; the ranks' gradients add up)
        loss_rgb = torch.sum((pred - target) ** 2) / (3 * n_rays)
        loss_mask = torch.sum((head["acc"].float() - (label == 1).float()) ** 2) / n_rays
        if t_alpha is not None:
            visible = (label != 1).float()
            loss_mask = loss_mask + torch.sum(visible * (t_alpha.float() - (label >= 2).float()) ** 2) / n_visible
        loss = loss_rgb + cfg.train.mask_weight * loss_mask
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        sums = torch.stack([loss.detach().float(), loss_rgb.detach().float()])
        counts = torch.tensor([float(head["n_samples"]), float(head["n_kept"])], device=dev)
        totals = self.world.all_reduce_grads(self.params, torch.cat([sums, counts])).tolist()
        self.opt.step()
        return {"loss": totals[0], "psnr": -10.0 * math.log10(max(totals[1], 1e-10)), "lr": lr,
                "samples_per_ray": totals[2] / n_rays, "kept_per_ray": totals[3] / n_rays,
                "occupied": model.occupancy.occupied_fraction}

    @torch.no_grad()
    def validate(self, k: int) -> tuple[float, np.ndarray] | None:
        """PSNR and ``[H, W, 3]`` uint8 render of validation frame ``k mod n_val`` (None without a val split)."""
        d = self.data
        if len(d.val_img) == 0:
            return None
        i = k % len(d.val_img)
        self.model.eval()
        try:
            out = render_image(self.model, d.val_c2w[i], d.intr, d.cond, int(d.val_cond[i]), float(d.val_eye[i]),
                               self.cfg.render, self.dev)
        finally:
            self.model.train()
        img = out["fg"] + (1.0 - out["alpha"])[..., None] * self.bg
        gt = torch.from_numpy(np.array(d.frames[int(d.val_img[i])])).to(self.dev).float() / 255.0
        mse = float(torch.mean((img - gt) ** 2))
        return -10.0 * math.log10(max(mse, 1e-10)), (img.clamp(0, 1) * 255).round().byte().cpu().numpy()


def train(data_dir: str | Path, run_dir: str | Path, cfg: Config, resume: bool = False,
          device: str | torch.device | None = None, *, stop_at: int | None = None,
          consent: dict | None = None, nproc: int | None = None) -> Path:
    """Train a run on a dataset directory; returns ``run_dir``.

    ``consent``: the record of ``--consent`` (``thg_nerf.provenance.consent_record``) stored in a new run's
    ``run.json``; None records that no statement was given.

    Without ``resume`` a new run is created (refused when ``run_dir`` already holds a checkpointed run).
    With ``resume`` training continues from the newest checkpoint using the run's saved config, except
    ``train.iters`` and ``train.max_minutes`` which come from ``cfg``. ``stop_at`` stops (checkpointed)
    after that iteration, as Ctrl-C or ``max_minutes`` do.

    ``nproc`` > 1 trains data-parallel in that many new local processes (one per GPU on CUDA); launched by
    torchrun, this process joins torchrun's group instead (``nproc`` may then be None or its world size).
    """
    dev = ckpt.resolve_device(device)
    world = dist.launched_world()
    if world is not None and nproc not in (None, world.size):
        raise ThgError(f"--nproc {nproc} conflicts with torchrun's WORLD_SIZE={world.size}; leave it out under "
                       "torchrun")
    if world is None and nproc is not None:
        dist.check_nproc(nproc, dev)
        if nproc > 1:
            dist.spawn(train, nproc, (data_dir, run_dir, cfg, resume, device),
                       {"stop_at": stop_at, "consent": consent})
            return Path(run_dir)
    world = world or World()
    dev = dist.rank_device(dev, world)
    with dist.process_group(world, dev):
        _train(Path(run_dir), data_dir, cfg, resume, dev, world, stop_at, consent)
    return Path(run_dir)


def _train(run_dir: Path, data_dir: str | Path, cfg: Config, resume: bool, dev: torch.device, world: World,
           stop_at: int | None, consent: dict | None) -> None:
    """:func:`train` in one process (one rank of ``world``)."""
    ds = open_dataset(data_dir)
    if resume:
        info = ckpt.read_run_info(run_dir)
        ckpts = ckpt.list_checkpoints(run_dir)
        if not ckpts:
            raise ThgError(f"nothing to resume: {run_dir} has no checkpoint")
        cfg = _resume_config(run_dir, cfg)
        if info["n_train"] != len(ds.train) or [list(x) for x in info["train_ids"]] != [[r.img_id, r.aud_id]
                                                                                      for r in ds.train]:
            raise ThgError(f"{data_dir} is not the dataset {run_dir} was trained on (different training frames)")
        tensors, state = ckpt.load_checkpoint(ckpts[-1][1])
    else:
        if cfg.model.condition == "motion":
            check_motion_config(cfg.motion)
        if world.is_main:
            _check_new_run_dir(run_dir)
        info = _run_info(ds, cfg)
        from thg_nerf.provenance.records import CONSENT_KEY, NO_CONSENT_WARNING, consent_record
        info[CONSENT_KEY] = consent if consent is not None else consent_record(None, warn=False)
        if not info[CONSENT_KEY]["given"] and world.is_main:
            log.warning(NO_CONSENT_WARNING)
        tensors, state = {}, {}
    with world.main_first():  # rank 0 decodes the frames into the dataset's cache, the others then map it
        data = load_train_data(ds, cfg.model.condition)
    torch.manual_seed(cfg.seed)
    model = ckpt.build_model(cfg, info)
    model.set_normalization(data.cond[data.train_cond], data.train_c2w)
    model.to(dev).train()
    trainer = Trainer(data, cfg, model, dev, world)
    start = 0
    if resume:
        ckpt.load_model_state(model, tensors, ckpts[-1][1])
        trainer.restore(tensors, state)
        start = int(state["iteration"])
        log.info(f"resuming {run_dir} at iteration {start}/{cfg.train.iters}")
    else:
        model.occupancy.mark_visible(trainer.c2w, data.intr)
        if world.is_main:
            _write_new_run(run_dir, ds, cfg, info)
        procs = f", {world.size} processes" if world.distributed else ""
        log.info(f"training {run_dir} ({cfg.preset} preset, {cfg.train.iters} iterations, device {dev}{procs}, "
                 f"{len(data.train_img)} train / {len(data.val_img)} val frames)")
    if cfg.model.condition == "motion" and world.is_main and not (run_dir / MOTION_MODEL_FILE).is_file():
        train_audio_motion(ds, cfg.motion, run_dir)
    world.barrier()
    elapsed_before = float(state.get("elapsed_s", 0.0))
    reached = _loop(trainer, run_dir, start, elapsed_before, stop_at)
    if world.is_main and reached >= cfg.train.iters and model.conditioned_on_motion:
        if calibrated_at(run_dir) != reached:
            calibrate_run(run_dir, model, ds, data.intr, data.background, cfg.render, dev,
                          cfg.train.calibrate_frames, cfg.train.max_mouth_gain, reached)


def _loop(tr: Trainer, run_dir: Path, start: int, elapsed_before: float, stop_at: int | None) -> int:
    """The training loop from iteration ``start``; returns the iteration reached."""
    cfg, world = tr.cfg, tr.world
    iters = int(cfg.train.iters)
    if start >= iters:
        log.info(f"{run_dir} is already trained to iteration {start} (train.iters = {iters}); nothing to do")
        return start
    flag = _StopFlag()
    writer = _tensorboard(run_dir, start) if world.is_main else None
    t0 = time.monotonic()
    deadline = t0 + 60.0 * cfg.train.max_minutes if cfg.train.max_minutes else None
    bar = progress(total=iters, initial=start, desc="training", unit="it")
    it = start
    reason = None
    try:
        with _sigint_to(flag):
            while it < iters:
                stats = tr.step(it)
                it += 1
                bar.update(1)
                if it % LOG_EVERY == 0 or it == iters:
                    bar.set_postfix(loss=f"{stats['loss']:.4f}", psnr=f"{stats['psnr']:.1f}",
                                    spr=f"{stats['samples_per_ray']:.0f}", occ=f"{stats['occupied']:.2f}")
                    if writer is not None:
                        for k, val in stats.items():
                            writer.add_scalar(f"train/{k}", val, it)
                if cfg.train.eval_every and it % cfg.train.eval_every == 0 and it < iters and world.is_main:
                    val = tr.validate(it // cfg.train.eval_every)
                    if val is not None:
                        log.debug(f"iteration {it}: validation PSNR {val[0]:.2f} dB")
                        if writer is not None:
                            writer.add_scalar("val/psnr", val[0], it)
                            writer.add_image("val/render", val[1], it, dataformats="HWC")
                # the ranks stop together: at the first iteration where any of them saw Ctrl-C or the deadline
                stop = world.agree(2 if flag.requested else 1 if deadline is not None and time.monotonic() > deadline
                                   else 0)
                if stop == 2:
                    reason = "interrupted"
                elif stop_at is not None and it >= stop_at:
                    reason = f"stopped at iteration {it} as requested"
                elif stop == 1:
                    reason = f"stopped after --max-minutes {cfg.train.max_minutes:g}"
                if (reason or it % max(1, cfg.train.checkpoint_every) == 0 or it == iters) and world.is_main:
                    tensors, state = tr.state(it, elapsed_before + time.monotonic() - t0)
                    ckpt.save_checkpoint(run_dir, it, tr.model, tr.opt, tensors, state)
                if reason:
                    world.barrier()  # no rank exits (which ends a torchrun job) before the checkpoint is written
                    break
    finally:
        bar.close()
        if writer is not None:
            writer.close()
    minutes = (time.monotonic() - t0) / 60.0
    if reason == "interrupted":
        log.warning(f"interrupted at iteration {it}/{iters}; checkpoint saved, continue with --resume")
        raise KeyboardInterrupt
    if reason:
        log.info(f"{reason} ({it}/{iters} iterations, {minutes:.1f} min); continue with --resume")
    else:
        log.info(f"trained {iters} iterations ({minutes:.1f} min this session); run saved in {run_dir}")
    return it
