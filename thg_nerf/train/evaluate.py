"""``thg-nerf eval``: held-out metrics, baselines, a side-by-side video and plots for a run.

Renders every validation frame at the training resolution (mean appearance codes, the frame's pose, eye
signal and audio), composites it over the plate and writes ``RUN/eval/``:

- ``report.json``: ``psnr``, ``ssim``, ``lmd`` (null + ``lmd_reason`` without mediapipe or faces), ``sync``
  (``offset_frames``, ``confidence``, the series used) and ``baselines``: ``mean_frame`` (the mean training
  frame) and ``nearest_pose_frame`` (the training frame closest in head pose) scored on the same frames;
- ``side_by_side.mp4``: ground truth | render | 4x absolute error, with the clip's audio;
- ``psnr_per_frame.png`` and ``mouth_sync.png`` (mouth opening of ground truth and render vs the audio envelope).

See :mod:`thg_nerf.train.metrics` for the metric definitions (the sync score is a documented proxy).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from thg_nerf.dataset import Dataset, load_dataset
from thg_nerf.errors import MissingDependencyError, ThgError
from thg_nerf.log import get_logger, progress
from thg_nerf.train import metrics
from thg_nerf.train.checkpoint import LoadedRun, load_run, read_run_info
from thg_nerf.utils.fs import atomic_dir, write_json

log = get_logger(__name__)

#: Largest lag (frames) searched by the sync proxy.
SYNC_MAX_LAG = 10
ERROR_GAIN = 4.0


def _pose_distance(a: np.ndarray, b: np.ndarray, scale: float) -> np.ndarray:
    """Distances [N] between pose ``a`` [4, 4] and poses ``b`` [N, 4, 4]: rotation angle + translation / scale."""
    rel = np.einsum("ij,nik->njk", a[:3, :3], b[:, :3, :3])
    cos = np.clip((np.trace(rel, axis1=1, axis2=2) - 1.0) / 2.0, -1.0, 1.0)
    return np.arccos(cos) + np.linalg.norm(b[:, :3, 3] - a[:3, 3], axis=1) / max(scale, 1e-6)


def _mean_frame(frames: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Mean of frames ``ids`` as float32 [H, W, 3] in [0, 1] (streamed, float64 accumulator)."""
    acc = np.zeros(frames.shape[1:], dtype=np.float64)
    for i in ids:
        acc += frames[int(i)]
    return (acc / max(len(ids), 1) / 255.0).astype(np.float32)


def _to_u8(img: torch.Tensor | np.ndarray) -> np.ndarray:
    arr = img.detach().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
    return np.clip(np.round(arr * 255.0), 0, 255).astype(np.uint8)


def _check_compatible(run: LoadedRun, ds: Dataset) -> None:
    w, h = ds.size
    if (w, h) != (run.intrinsics.w, run.intrinsics.h):
        raise ThgError(f"{ds.root} has {w}x{h} frames but the run was trained at "
                       f"{run.intrinsics.w}x{run.intrinsics.h}")
    t, c = run.model.audio_shape
    shape = tuple(ds.audio_features().shape[1:])
    if shape != (t, c):
        raise ThgError(f"{ds.root} has audio features {shape}, the run was trained on ({t}, {c})")
    if not ds.val:
        raise ThgError(f"{ds.root} has no validation frames to evaluate")


class _Landmarks:
    """Optional lip landmarks; records why LMD is unavailable."""

    def __init__(self) -> None:
        self.reason: str | None = None
        try:
            self.det: metrics.LipLandmarker | None = metrics.LipLandmarker()
        except MissingDependencyError:
            self.det = None
            self.reason = "mediapipe is not installed"

    def __call__(self, img_u8: np.ndarray) -> np.ndarray | None:
        return None if self.det is None else self.det(img_u8)


def _lmd(gt_lms: list, other_lms: list, lips: list[int]) -> float | None:
    d = [metrics.lip_distance(a, b, lips) for a, b in zip(gt_lms, other_lms) if a is not None and b is not None]
    return round(float(np.mean(d)), 3) if d else None


def _plots(out: Path, psnrs: dict[str, list[float]], series: dict[str, np.ndarray], frame_ids: list[int]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.info("matplotlib is not installed: no eval plots")
        return
    normalised = {}
    for name, vals in series.items():
        v = np.asarray(vals, dtype=np.float64)
        span = v.max() - v.min()
        normalised[name] = (v - v.min()) / span if span > 0 else v * 0
    _line_plot(plt, out / "psnr_per_frame.png", frame_ids, psnrs, "PSNR (dB)", "validation PSNR per frame",
               markers=True)
    _line_plot(plt, out / "mouth_sync.png", frame_ids, normalised, "normalised", "mouth opening vs audio envelope")


def _line_plot(plt, path: Path, x, series: dict, ylabel: str, title: str, markers: bool = False) -> None:
    """One PNG with a line per entry of ``series`` over the frame ids ``x``."""
    fig, ax = plt.subplots(figsize=(8, 3.2))
    for name, vals in series.items():
        ax.plot(x, vals, label=name, marker="." if markers and len(vals) < 60 else None)
    ax.set_xlabel("frame")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _audio_segment(ds: Dataset, start_s: float, end_s: float, path: Path) -> Path | None:
    """The dataset audio between two times, as a wav (None when it cannot be read)."""
    from thg_nerf.audio.io import load_audio, write_wav

    try:
        wave = load_audio(ds.path("audio"), 16000, start=start_s if start_s > 0 else None, end=end_s)
    except ThgError as e:
        log.warning(f"side_by_side.mp4 without audio ({e})")
        return None
    write_wav(path, wave, 16000)
    return path


def evaluate(run_dir: str | Path, data_dir: str | Path | None = None,
             device: str | torch.device | None = None) -> dict:
    """Evaluate a run on its validation split; writes ``RUN/eval/`` and returns the report dict."""
    from thg_nerf.audio.io import audio_envelope, load_audio
    from thg_nerf.utils.video import VideoWriter

    t_start = time.perf_counter()
    run_dir = Path(run_dir)
    info = read_run_info(run_dir)
    data_dir = Path(data_dir) if data_dir is not None else Path(info.get("data_dir", ""))
    if not data_dir.is_dir():
        raise ThgError(f"dataset of the run not found at {data_dir}; pass --data DATA")
    ds = load_dataset(data_dir)
    run = load_run(run_dir, device)
    _check_compatible(run, ds)
    frames = ds.frames()
    audio = ds.audio_features()
    trk = ds.tracking()
    bg = torch.from_numpy(np.array(run.background)).to(run.device).float() / 255.0
    train_ids = np.array([r.img_id for r in ds.train])
    train_c2w = np.stack([r.transform_matrix for r in ds.train]).astype(np.float64)
    bound = float(info.get("bound", 1.0))
    mean_img = torch.from_numpy(_mean_frame(frames, train_ids))
    lmk = _Landmarks()
    mean_lm = lmk(_to_u8(mean_img)) if lmk.det is not None else None

    names = ("render", "mean_frame", "nearest_pose_frame")
    psnrs: dict[str, list[float]] = {k: [] for k in names}
    ssims: dict[str, list[float]] = {k: [] for k in names}
    lms: dict[str, list] = {k: [] for k in ("gt", *names)}
    mouth_render, mouth_gt, mouth_dark_render, mouth_dark_gt = [], [], [], []
    w, h = ds.size
    fps = ds.fps
    val = ds.val
    with atomic_dir(run_dir / "eval", overwrite=True) as out:
        seg = _audio_segment(ds, val[0].aud_id / fps, (val[-1].aud_id + 1) / fps, out / ".audio.wav")
        pad_w = (3 * w) % 2
        pad_h = h % 2
        writer = VideoWriter(out / "side_by_side.mp4", (3 * w + pad_w, h + pad_h), fps, audio_path=seg)
        with writer:
            for rec in progress(val, desc="evaluating", unit="frame"):
                res = run.render_frame(rec.transform_matrix, audio, rec.aud_id, rec.eye)
                img = (res["fg"] + (1.0 - res["alpha"])[..., None] * bg).clamp(0, 1).cpu()
                gt_u8 = np.asarray(frames[rec.img_id])
                gt = torch.from_numpy(gt_u8.astype(np.float32) / 255.0)
                near = int(np.argmin(_pose_distance(rec.transform_matrix.astype(np.float64), train_c2w, bound)))
                near_img = torch.from_numpy(np.asarray(frames[int(train_ids[near])]).astype(np.float32) / 255.0)
                for name, im in (("render", img), ("mean_frame", mean_img), ("nearest_pose_frame", near_img)):
                    psnrs[name].append(metrics.psnr(im, gt))
                    ssims[name].append(metrics.ssim(im, gt))
                img_u8 = _to_u8(img)
                box = trk["mouth_box"][rec.img_id]
                mouth_dark_render.append(metrics.mouth_opening_dark(img_u8, box))
                mouth_dark_gt.append(metrics.mouth_opening_dark(gt_u8, box))
                if lmk.det is not None:
                    lm_gt, lm_r = lmk(gt_u8), lmk(img_u8)
                    lms["gt"].append(lm_gt)
                    lms["render"].append(lm_r)
                    lms["mean_frame"].append(mean_lm)
                    lms["nearest_pose_frame"].append(lmk(_to_u8(near_img)))
                    mouth_gt.append(None if lm_gt is None else metrics.mouth_opening_landmarks(lm_gt))
                    mouth_render.append(None if lm_r is None else metrics.mouth_opening_landmarks(lm_r))
                err = _to_u8((ERROR_GAIN * (img - gt).abs()).clamp(0, 1))
                frame = np.concatenate([gt_u8, img_u8, err], axis=1)
                if pad_w or pad_h:
                    frame = np.pad(frame, ((0, pad_h), (0, pad_w), (0, 0)))
                writer.write(frame)
        if seg is not None:
            seg.unlink(missing_ok=True)
        if lmk.det is not None:
            lmk.det.close()

        lips = lmk.det.lips if lmk.det is not None else []
        lmd = {k: (_lmd(lms["gt"], lms[k], lips) if lmk.det is not None else None) for k in names}
        lmd_reason = lmk.reason
        if lmk.det is not None and lmd["render"] is None:
            lmd_reason = "no face found by mediapipe in the ground-truth and rendered frames"
        wave = load_audio(ds.path("audio"), 16000)
        env_all = audio_envelope(wave, 16000, fps, ds.n_frames)
        envelope = env_all[[r.aud_id for r in val]]
        use_lm = bool(mouth_render) and all(v is not None for v in mouth_render + mouth_gt)
        m_r = np.array(mouth_render if use_lm else mouth_dark_render, dtype=np.float64)
        m_g = np.array(mouth_gt if use_lm else mouth_dark_gt, dtype=np.float64)
        method = "landmarks (inner-lip gap / mouth width)" if use_lm else "dark-pixel fraction in the mouth box"
        sync = {**metrics.sync_offset(m_r, envelope, SYNC_MAX_LAG), "method": method,
                "ground_truth": metrics.sync_offset(m_g, envelope, SYNC_MAX_LAG)}

        def mean(v: list[float]) -> float:
            return round(float(np.mean(v)), 4)

        report = {
            "psnr": mean(psnrs["render"]), "ssim": mean(ssims["render"]), "lmd": lmd["render"],
            **({"lmd_reason": lmd_reason} if lmd["render"] is None else {}),
            "sync": sync,
            "baselines": {k: {"psnr": mean(psnrs[k]), "ssim": mean(ssims[k]), "lmd": lmd[k]}
                          for k in ("mean_frame", "nearest_pose_frame")},
            "n_frames": len(val), "resolution": [w, h], "iteration": run.iteration,
            "data_dir": str(Path(data_dir).resolve()),
            "per_frame": {"img_id": [r.img_id for r in val], "psnr": [round(p, 3) for p in psnrs["render"]]},
            "seconds": round(time.perf_counter() - t_start, 1),
        }
        write_json(out / "report.json", report)
        _plots(out, psnrs, {"ground truth mouth": m_g, "render mouth": m_r, "audio envelope": envelope},
               [r.img_id for r in val])
    log.info(f"eval: PSNR {report['psnr']:.2f} dB (mean frame {report['baselines']['mean_frame']['psnr']:.2f}, "
             f"nearest pose {report['baselines']['nearest_pose_frame']['psnr']:.2f}), SSIM {report['ssim']:.3f}, "
             f"LMD {report['lmd']}, sync offset {sync['offset_frames']} (conf {sync['confidence']}); "
             f"written to {run_dir / 'eval'}")
    return report
