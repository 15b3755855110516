"""``thg-nerf eval``: held-out metrics, baselines, a side-by-side video and plots for a run.

Renders every validation frame at the training resolution (mean appearance codes, the frame's pose and eye
signal) once per *drive*, composites it over the plate and writes ``RUN/eval/``. A motion-conditioned run
has two drives: ``tracked`` (the field driven by the frame's tracked motion: motion -> image) and ``audio``
(the audio -> motion model's prediction from the clip's audio: the whole chain); an audio-conditioned run
has the ``audio`` drive only. The first drive gives the headline figures.

- ``report.json``: ``psnr``, ``ssim``, ``lmd`` (null + ``lmd_reason`` without mediapipe or faces) of the
  first drive and ``drives`` (each drive's); ``lip``: ``render`` (per drive: correlation and amplitude ratio
  of the rendered frames' mouth opening against the real frames', both measured by mediapipe landmarks) and
  ``motion`` (no rendering: the audio -> motion prediction against the tracked motion, see
  :func:`motion_level`); ``sync`` (``offset_frames``, ``confidence``, the series used); ``baselines``:
  ``mean_frame`` (the mean training frame) and ``nearest_pose_frame`` (the training frame closest in head
  pose) scored on the same frames; ``cross`` (with ``--cross VIDEO``, see :func:`cross_speaker`);
- ``side_by_side.mp4``: ground truth | each drive's render | 4x absolute error of the first, with the audio;
- ``psnr_per_frame.png``, ``mouth_sync.png`` (mouth opening of ground truth and renders vs the audio
  envelope) and ``cross_<video>.png``.

See :mod:`thg_nerf.train.metrics` for the metric definitions (the sync score is a documented proxy).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from thg_nerf.dataset import Dataset, load_dataset
from thg_nerf.errors import MissingDependencyError, ThgError
from thg_nerf.log import get_logger, progress
from thg_nerf.motion.model import AudioMotionModel, amplitude_ratio, corr
from thg_nerf.preprocess.config import PreprocessConfig
from thg_nerf.preprocess.motion import dataset_motion
from thg_nerf.preprocess.signals import mouth_opening
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
    if run.model.conditioned_on_motion:
        dim = dataset_motion(ds).dim
        if (dim,) != run.model.cond_shape:
            raise ThgError(f"{ds.root} has {dim}-dimensional motion codes, the run was trained on "
                           f"{run.model.cond_shape[0]}")
    else:
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


@dataclass
class _Drive:
    """One way of driving the head field over the validation frames."""

    name: str
    label: str
    cond: np.ndarray
    """The per-frame condition source (motion codes [n, M] or audio features [n, T, C])."""
    by_image: bool
    """Rows of ``cond`` are indexed by ``img_id`` (tracked motion) rather than ``aud_id``."""
    psnr: list[float] = field(default_factory=list)
    ssim: list[float] = field(default_factory=list)
    lms: list = field(default_factory=list)
    mouth: list = field(default_factory=list)

    def row(self, rec) -> int:
        return int(rec.img_id if self.by_image else rec.aud_id)


def _drives(run: LoadedRun, ds: Dataset) -> list[_Drive]:
    """Tracked motion, then the audio -> motion chain, for a motion-conditioned run; its audio for an
    audio-conditioned one. The first drive is the run's headline (PSNR, SSIM, LMD)."""
    if not run.model.conditioned_on_motion:
        return [_Drive("audio", "audio (implicit audio field)", np.asarray(ds.audio_features()), False)]
    from thg_nerf.audio.io import load_audio

    wave = load_audio(ds.path("audio"), 16000)
    feats = run.motion_model.features(wave, 16000, ds.fps, ds.n_frames)
    return [_Drive("tracked", "tracked motion -> field", dataset_motion(ds).motion, True),
            _Drive("audio", "audio -> motion -> field", run.conditions(feats), False)]


def _series_stats(pred: list, real: list) -> dict:
    """Correlation and amplitude ratio of two mouth-opening series over the frames where both exist."""
    pairs = [(p, r) for p, r in zip(pred, real) if p is not None and r is not None]
    if len(pairs) < 3:
        return {"corr": None, "amplitude": None, "frames": len(pairs)}
    p, r = np.array(pairs, dtype=np.float64).T
    c, a = corr(p, r), amplitude_ratio(p, r)
    return {"corr": None if c is None else round(c, 4), "amplitude": None if a is None else round(a, 4),
            "frames": len(pairs)}


def motion_level(mm: AudioMotionModel, ds: Dataset, predicted: np.ndarray, val_rows: np.ndarray) -> dict:
    """Audio -> motion on the validation frames, without rendering: the ``predicted`` motion [n, M] of the
    clip's audio (the audio drive's condition source) vs the tracked motion, as mouth opening (through the
    model's linear readout) and first motion component."""
    tgt = dataset_motion(ds)
    pred = predicted[val_rows]
    true = tgt.motion[val_rows]
    m_pred, m_true = mm.mouth(pred), tgt.mouth[val_rows]
    out = {"mouth_corr": corr(m_pred, m_true), "mouth_amplitude": amplitude_ratio(m_pred, m_true),
           "readout_corr": corr(mm.mouth(true), m_true), "pc1_corr": corr(pred[:, 0], true[:, 0]),
           "pc1_amplitude": amplitude_ratio(pred[:, 0], true[:, 0])}
    return {k: None if v is None else round(v, 4) for k, v in out.items()}


def evaluate(run_dir: str | Path, data_dir: str | Path | None = None,
             device: str | torch.device | None = None, cross: list[str | Path] | tuple = ()) -> dict:
    """Evaluate a run on its validation split; writes ``RUN/eval/`` and returns the report dict.

    ``cross``: talking videos of other people for the cross-speaker lip check (see :func:`cross_speaker`).
    """
    from thg_nerf.audio.io import audio_envelope, load_audio
    from thg_nerf.utils.video import VideoWriter

    t_start = time.perf_counter()
    run_dir = Path(run_dir)
    info = read_run_info(run_dir)
    data_dir = Path(data_dir) if data_dir is not None else Path(info.get("data_dir", ""))
    if not data_dir.is_dir():
        raise ThgError(f"dataset of the run not found at {data_dir}; pass --data DATA")
    cross = [Path(v) for v in cross]
    for v in cross:
        if not v.is_file():
            raise ThgError(f"--cross video not found: {v}")
    ds = load_dataset(data_dir)
    run = load_run(run_dir, device)
    _check_compatible(run, ds)
    if cross and run.motion_model is None:
        raise ThgError("--cross needs a run with an audio -> motion model (model.condition: motion)")
    frames = ds.frames()
    drives = _drives(run, ds)
    bg = torch.from_numpy(np.array(run.background)).to(run.device).float() / 255.0
    train_ids = np.array([r.img_id for r in ds.train])
    train_c2w = np.stack([r.transform_matrix for r in ds.train]).astype(np.float64)
    bound = float(info.get("bound", 1.0))
    mean_img = torch.from_numpy(_mean_frame(frames, train_ids))
    lmk = _Landmarks()
    mean_lm = lmk(_to_u8(mean_img)) if lmk.det is not None else None

    baselines = {k: _Drive(k, k, np.zeros(0), True) for k in ("mean_frame", "nearest_pose_frame")}
    gt_lms: list = []
    gt_mouth: list = []
    mouth_dark_render, mouth_dark_gt = [], []
    trk = ds.tracking()
    w, h = ds.size
    fps = ds.fps
    val = ds.val
    n_panels = 1 + len(drives) + 1
    with atomic_dir(run_dir / "eval", overwrite=True) as out:
        seg = _audio_segment(ds, val[0].aud_id / fps, (val[-1].aud_id + 1) / fps, out / ".audio.wav")
        pad_w = (n_panels * w) % 2
        pad_h = h % 2
        writer = VideoWriter(out / "side_by_side.mp4", (n_panels * w + pad_w, h + pad_h), fps, audio_path=seg)
        with writer:
            for rec in progress(val, desc="evaluating", unit="frame"):
                gt_u8 = np.asarray(frames[rec.img_id])
                gt = torch.from_numpy(gt_u8.astype(np.float32) / 255.0)
                lm_gt = lmk(gt_u8) if lmk.det is not None else None
                gt_lms.append(lm_gt)
                gt_mouth.append(None if lm_gt is None else metrics.mouth_opening_landmarks(lm_gt))
                panels, first = [gt_u8], None
                for d in drives:
                    res = run.render_frame(rec.transform_matrix, d.cond, d.row(rec), rec.eye)
                    img = (res["fg"] + (1.0 - res["alpha"])[..., None] * bg).clamp(0, 1).cpu()
                    first = img if first is None else first
                    img_u8 = _to_u8(img)
                    panels.append(img_u8)
                    d.psnr.append(metrics.psnr(img, gt))
                    d.ssim.append(metrics.ssim(img, gt))
                    if lmk.det is not None:
                        lm = lmk(img_u8)
                        d.lms.append(lm)
                        d.mouth.append(None if lm is None else metrics.mouth_opening_landmarks(lm))
                near = int(np.argmin(_pose_distance(rec.transform_matrix.astype(np.float64), train_c2w, bound)))
                near_img = torch.from_numpy(np.asarray(frames[int(train_ids[near])]).astype(np.float32) / 255.0)
                for b, im in ((baselines["mean_frame"], mean_img), (baselines["nearest_pose_frame"], near_img)):
                    b.psnr.append(metrics.psnr(im, gt))
                    b.ssim.append(metrics.ssim(im, gt))
                    if lmk.det is not None:
                        b.lms.append(mean_lm if b.name == "mean_frame" else lmk(_to_u8(near_img)))
                box = trk["mouth_box"][rec.img_id]
                mouth_dark_render.append(metrics.mouth_opening_dark(panels[1], box))
                mouth_dark_gt.append(metrics.mouth_opening_dark(gt_u8, box))
                panels.append(_to_u8((ERROR_GAIN * (first - gt).abs()).clamp(0, 1)))
                frame = np.concatenate(panels, axis=1)
                if pad_w or pad_h:
                    frame = np.pad(frame, ((0, pad_h), (0, pad_w), (0, 0)))
                writer.write(frame)
        if seg is not None:
            seg.unlink(missing_ok=True)
        if lmk.det is not None:
            lmk.det.close()

        lips = lmk.det.lips if lmk.det is not None else []
        lmd = {d.name: (_lmd(gt_lms, d.lms, lips) if lmk.det is not None else None)
               for d in [*drives, *baselines.values()]}
        head = drives[0]
        lmd_reason = lmk.reason
        if lmk.det is not None and lmd[head.name] is None:
            lmd_reason = "no face found by mediapipe in the ground-truth and rendered frames"
        wave = load_audio(ds.path("audio"), 16000)
        envelope = audio_envelope(wave, 16000, fps, ds.n_frames)[[r.aud_id for r in val]]
        use_lm = bool(head.mouth) and all(v is not None for v in head.mouth + gt_mouth)
        m_r = np.array(head.mouth if use_lm else mouth_dark_render, dtype=np.float64)
        m_g = np.array(gt_mouth if use_lm else mouth_dark_gt, dtype=np.float64)
        method = "landmarks (inner-lip gap / mouth width)" if use_lm else "dark-pixel fraction in the mouth box"
        sync = {**metrics.sync_offset(m_r, envelope, SYNC_MAX_LAG), "method": method,
                "ground_truth": metrics.sync_offset(m_g, envelope, SYNC_MAX_LAG)}

        def mean(v: list[float]) -> float:
            return round(float(np.mean(v)), 4)

        lip: dict = {"render": {d.name: _series_stats(d.mouth, gt_mouth) for d in drives} if lmk.det else None}
        if run.motion_model is not None:
            lip["mouth_gain"] = round(float(run.model.motion_gain), 4)
            audio_drive = next(d for d in drives if d.name == "audio")
            lip["motion"] = motion_level(run.motion_model, ds, audio_drive.cond, np.array([r.aud_id for r in val]))
        report = {
            "psnr": mean(head.psnr), "ssim": mean(head.ssim), "lmd": lmd[head.name], "drive": head.label,
            **({"lmd_reason": lmd_reason} if lmd[head.name] is None else {}),
            "drives": {d.name: {"label": d.label, "psnr": mean(d.psnr), "ssim": mean(d.ssim), "lmd": lmd[d.name]}
                       for d in drives},
            "lip": lip,
            "sync": sync,
            "baselines": {k: {"psnr": mean(b.psnr), "ssim": mean(b.ssim), "lmd": lmd[k]}
                          for k, b in baselines.items()},
            "n_frames": len(val), "resolution": [w, h], "iteration": run.iteration,
            "data_dir": str(Path(data_dir).resolve()),
            "per_frame": {"img_id": [r.img_id for r in val], "psnr": [round(p, 3) for p in head.psnr],
                          "mouth_gt": _rounded(gt_mouth), **{f"mouth_{d.name}": _rounded(d.mouth) for d in drives}},
        }
        series = {"ground truth mouth": m_g, **{f"render mouth ({d.name})": np.array(
            [np.nan if v is None else v for v in d.mouth] if d.mouth else mouth_dark_render, dtype=np.float64)
            for d in drives}, "audio envelope": envelope}
        _plots(out, {d.name: d.psnr for d in [*drives, *baselines.values()]}, series, [r.img_id for r in val])
        if cross:
            report["cross"] = [cross_speaker(run, v, run_dir / CROSS_DIR, out) for v in cross]
        report["seconds"] = round(time.perf_counter() - t_start, 1)
        write_json(out / "report.json", report)
    _log_report(run_dir, report)
    return report


def _rounded(values: list) -> list:
    return [None if v is None else round(float(v), 4) for v in values]


def _log_report(run_dir: Path, report: dict) -> None:
    lip = report["lip"]
    parts = [f"eval: PSNR {report['psnr']:.2f} dB ({report['drive']}; mean frame "
             f"{report['baselines']['mean_frame']['psnr']:.2f}, nearest pose "
             f"{report['baselines']['nearest_pose_frame']['psnr']:.2f}), SSIM {report['ssim']:.3f}, "
             f"LMD {report['lmd']}"]
    for name, st in (lip.get("render") or {}).items():
        parts.append(f"mouth {name}: corr {st['corr']} amplitude {st['amplitude']}")
    if "motion" in lip:
        parts.append(f"motion-level mouth corr {lip['motion']['mouth_corr']}, mouth gain {lip['mouth_gain']:.2f}")
    for c in report.get("cross", []):
        trust = _trust(c)
        parts.append(f"cross {c['video']}: corr {c['corr']} ({c['frames']} frames{', ' + trust if trust else ''}; "
                     f"voice warp {c['voice_warp']}; {_av_text(c)})")
    log.info("; ".join(parts) + f"; written to {run_dir / 'eval'}")


CROSS_DIR = "cross_data"


def cross_dataset(video: Path, cache: Path, pcfg: PreprocessConfig) -> Dataset:
    """``video`` preprocessed once into ``cache/<name>`` (reused afterwards: preprocessing is resumable)."""
    from thg_nerf.preprocess.pipeline import is_preprocessed, preprocess

    data = cache / video.stem
    pcfg = dataclasses.replace(pcfg, audio_features="mel")
    # a stale cache (another video of that name, other settings or step versions) is rebuilt
    preprocess(video, data, pcfg, force=data.exists() and not is_preprocessed(video, data, pcfg))
    return load_dataset(data)


def cross_mouth(mm: AudioMotionModel, ds: Dataset, wave: np.ndarray | None = None
                ) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray]:
    """Predicted (from ``ds``'s audio with ``mm``) vs tracked mouth opening of another person's clip.

    ``wave``: 16 kHz audio to predict from instead of the clip's own (e.g. the clip's audio shifted or
    filtered). Returns ``({frames, corr, best_lag_frames, best_lag_corr, voice_warp}, predicted [N], real [N],
    valid [N])`` (``voice_warp``: the filterbank warp voice normalisation applied, 1 = none).
    """
    from thg_nerf.audio.io import load_audio
    from thg_nerf.preprocess.topology import get_topology

    trk = ds.tracking()
    topo = get_topology(str((ds.meta.get("landmarks") or {}).get("backend", "mediapipe")))
    real = mouth_opening(trk["landmarks"], topo.mouth)
    ok = np.asarray(trk["valid"], bool)
    if wave is None:
        wave = load_audio(ds.path("audio"), 16000)
    warp = mm.voice_warp(wave, 16000)
    pred = mm.mouth(mm.predict(mm.features(wave, 16000, ds.fps, ds.n_frames, warp=warp)))
    c = corr(pred[ok], real[ok])
    lag = metrics.sync_offset(pred[ok], real[ok], SYNC_MAX_LAG)
    res = {"frames": int(ok.sum()), "corr": None if c is None else round(c, 4),
           "best_lag_frames": lag["offset_frames"], "best_lag_corr": lag["peak_corr"],
           "voice_warp": round(warp, 3)}
    return res, pred, real, ok


def cross_speaker(run: LoadedRun, video: Path, cache: Path, out: Path) -> dict:
    """Cross-speaker lip check: predict motion from another person's talking ``video``'s audio with this
    run's model and correlate the predicted mouth opening (readout) with that person's tracked one
    (``corr``; ``best_lag_*``: the best correlation within +-SYNC_MAX_LAG frames, for reference;
    ``interval_90`` / ``chance_95``: how far ``corr`` can be trusted on a clip this long, see
    :func:`thg_nerf.train.metrics.corr_reliability`).

    ``av_check``: the clip's audio-video offset read with this run's model
    (:func:`thg_nerf.train.metrics.series_av_offset`). Under ``preprocess.av_offset: auto`` it is applied as
    preprocessing applies its own estimate (confidence >= ``avsync.CONFIDENT``, at least ``AUTO_MIN_S``): the
    clip's audio is advanced by it before the figures above, ``corr_unshifted`` keeps the one before and
    ``av_offset_s`` is the total shift (preprocessing's and this one)."""
    from thg_nerf.audio.io import load_audio
    from thg_nerf.preprocess.avsync import applied_offset, parse_av_offset, shift_audio

    ds = cross_dataset(video, cache, run.cfg.preprocess)
    wave = load_audio(ds.path("audio"), 16000)
    res, pred, real, ok = cross_mouth(run.motion_model, ds, wave)
    check = metrics.series_av_offset(pred, np.where(ok, real, np.nan), ds.fps)
    # under `auto`, a confident offset is applied as preprocessing applies its own (which 8 s rarely reach)
    auto = parse_av_offset(run.cfg.preprocess.av_offset) is None
    shift = applied_offset("auto", check["offset_s"], check["confidence"]) if auto else 0.0
    extra = {}
    if shift:
        extra = {"corr_unshifted": res["corr"]}
        res, pred, real, ok = cross_mouth(run.motion_model, ds, shift_audio(wave, 16000, shift))
    before = (ds.meta.get("audio") or {}).get("av_offset_s") or 0.0
    res = {"video": str(video), **res, **extra, **metrics.corr_reliability(pred[ok], real[ok], ds.fps),
           "av_offset_s": round(before + shift, 4), "av_check": {**check, "applied": bool(shift)}}
    _cross_plot(out / f"cross_{video.stem}.png", pred, real, ok, video.name, res)
    return res


def _trust(res: dict) -> str:
    """The cross-speaker figure's interval and chance level as text ('' when the clip is too short for them)."""
    lo_hi = res.get("interval_90")
    return f"90 % interval {lo_hi[0]}..{lo_hi[1]}, chance level {res['chance_95']}" if lo_hi else ""


def _av_text(res: dict) -> str:
    """The cross clip's A/V offset check as text."""
    chk = res.get("av_check") or {}
    if not chk.get("confidence"):
        return "A/V offset not measurable"
    state = f"applied, {res['corr_unshifted']} before" if chk["applied"] else "not applied"
    return f"A/V offset by this run's model {chk['offset_s']:+.3f} s (confidence {chk['confidence']}, {state})"


def _cross_plot(path: Path, pred: np.ndarray, real: np.ndarray, ok: np.ndarray, name: str, res: dict) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    trust = _trust(res)
    z = {}
    for k, v in (("real mouth (tracked)", real), ("predicted from audio", pred)):
        v = np.where(ok, v, np.nan)
        z[k] = (v - np.nanmean(v)) / (np.nanstd(v) + 1e-12)
    _line_plot(plt, path, np.arange(len(pred)), z, "z-score",
               f"cross-speaker mouth opening: {name}\ncorr {res['corr']}{f' ({trust})' if trust else ''}, voice warp "
               f"{res['voice_warp']}\n{_av_text(res)}")
