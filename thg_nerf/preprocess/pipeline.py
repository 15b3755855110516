"""``thg-nerf preprocess``: a talking-head video -> a dataset directory (docs/DATA_FORMAT.md), offline, on a CPU.

Steps (each cached in the work directory ``<DATA>.partial/`` beside the output, so a rerun after an
interruption skips the finished ones; ``force`` redoes everything):

1. ``audio``      16 kHz mono speech from the video (or ``--audio``) -> audio.wav
2. ``detect``     face detection on subsampled frames: the main speaker and one stable crop for the clip
3. ``scan``       one streaming decode: crop/resize -> frames.mp4, landmarks, person segmentation
4. ``track``      face gaps, 3D head tracking (bundle adjustment), blinks, face/mouth boxes
   ``avsync``     audio-video offset from the mouth opening and the speech (thg_nerf/preprocess/avsync.py)
   ``align``      the audio shifted by the applied offset (``--av-offset``) -> audio.wav of the dataset
5. ``masks``      background/head/neck/torso label maps -> masks.mkv
6. ``background`` background plate -> bg.png
7. ``features``   per-frame audio features -> audio_features.npy
8. ``preview``    preview.mp4

The dataset directory appears atomically (a temporary sibling renamed into place) only when complete; the
work directory is removed afterwards. A finished dataset made from the same input and settings is reused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

from thg_nerf import __version__
from thg_nerf.dataset import (
    FILES,
    LABELS,
    FrameRecord,
    Intrinsics,
    load_dataset,
    write_background,
    write_meta,
    write_tracking,
    write_transforms,
)
from thg_nerf.errors import ThgError
from thg_nerf.log import get_logger
from thg_nerf.preprocess.config import PreprocessConfig
from thg_nerf.utils.fs import atomic_dir, check_writable_parent, read_json, write_json
from thg_nerf.utils.video import VideoInfo, probe_video

log = get_logger(__name__)

SAMPLE_RATE = 16000
REPORT = "report.json"
PREVIEW = "preview.mp4"
#: Weights of frames in the tracker: detected, interpolated over a short gap.
INTERP_WEIGHT = 0.25
#: The head field's cube: this factor times the largest landmark coordinate, at least MIN_HEAD_BOUND (dm).
HEAD_BOUND_MARGIN = 1.25
MIN_HEAD_BOUND = 1.5
#: Bump a step's version when its output changes, so cached work directories are recomputed.
STEP_VERSIONS = {"audio": 1, "detect": 1, "scan": 1, "track": 1, "masks": 1, "background": 1, "features": 1,
                 "preview": 1, "avsync": 1, "align": 1}
#: Work-directory files of the offset estimate and of the shifted audio (the dataset's audio.wav).
AVSYNC = "avsync.json"
ALIGNED_AUDIO = "audio_aligned.wav"


def preprocess(video: str | os.PathLike, out_dir: str | os.PathLike, cfg: PreprocessConfig,
               audio: str | os.PathLike | None = None, force: bool = False) -> Path:
    """Turn ``video`` into the dataset directory ``out_dir``; returns its path.

    ``audio`` replaces the video's own audio track. One-line ThgError for bad input (missing or unreadable
    video, no audio, no face, unwritable output, bad settings); the output directory is then untouched.
    """
    video, out = Path(video), Path(out_dir)
    _check_config(cfg)
    info = probe_video(video)
    audio_path = Path(audio) if audio is not None else None
    if audio_path is not None and not audio_path.is_file():
        raise ThgError(f"audio file not found: {audio_path}")
    if audio_path is None and not info.has_audio:
        raise ThgError(f"{video} has no audio track; pass the speech with --audio WAV")
    request = _request_key(video, audio_path, cfg)
    if out.exists() and not force:
        if _complete_with_key(out) == request:
            log.info("%s is already preprocessed from this video with these settings; reusing it", out)
            return out
        raise ThgError(f"{out} already exists (use --force to overwrite it)")
    check_writable_parent(out)
    _check_backend(cfg.landmarks)
    work = _Work(out.with_name(out.name + ".partial"), reset=force)
    try:
        return _run(video, out, cfg, info, audio_path, request, work)
    except ThgError:
        work.remove()  # bad input: nothing worth resuming
        raise


def _request_key(video: Path, audio: Path | None, cfg: PreprocessConfig) -> str:
    """Fingerprint of a preprocessing request: the input files, the settings and the step versions."""
    return _fingerprint({"video": _file_id(video), "audio": _file_id(audio) if audio else None,
                         "config": dataclasses.asdict(cfg), "steps": STEP_VERSIONS})


def is_preprocessed(video: str | os.PathLike, out_dir: str | os.PathLike, cfg: PreprocessConfig,
                    audio: str | os.PathLike | None = None) -> bool:
    """Whether ``out_dir`` is a complete dataset of ``video`` (and ``audio``) with these settings and this
    version of every step, i.e. whether :func:`preprocess` would reuse it."""
    out = Path(out_dir)
    if not out.is_dir() or not Path(video).is_file() or (audio is not None and not Path(audio).is_file()):
        return False
    return _complete_with_key(out) == _request_key(Path(video), Path(audio) if audio else None, cfg)


@dataclasses.dataclass
class _Context:
    video: Path
    cfg: PreprocessConfig
    info: VideoInfo
    work: _Work
    fps: float
    size: tuple[int, int] = (0, 0)
    crop: tuple[int, int, int] | None = None
    principal: tuple[float, float] = (0.0, 0.0)
    n_frames: int = 0
    t_start: float = 0.0
    av_offset_s: float = 0.0
    """The audio-video offset applied to the dataset's audio (s, positive = audio was late)."""


def _run(video: Path, out: Path, cfg: PreprocessConfig, info: VideoInfo, audio_path: Path | None,
         request: str, work: _Work) -> Path:
    from thg_nerf.preprocess import crop as crop_mod

    t_start = time.perf_counter()
    ctx = _Context(video=video, cfg=cfg, info=info, work=work, fps=float(cfg.fps or info.fps), t_start=t_start)
    vid_id = _file_id(video)

    # 1) audio
    key_audio = work.key("audio", vid_id, _file_id(audio_path) if audio_path else None)
    work.step("audio", key_audio, lambda: _step_audio(work.root, audio_path or video))

    # 2) main speaker + crop
    src_w, src_h = (info.height, info.width) if info.rotate % 180 == 90 else (info.width, info.height)
    key_detect = work.key("detect", vid_id)
    work.step("detect", key_detect, lambda: write_json(
        work.root / "detect.json", crop_mod.find_main_face(video, info, (src_w, src_h)).to_json()))
    track2d = crop_mod.FaceTrack.from_json(read_json(work.root / "detect.json"))
    if cfg.crop == "auto":
        ctx.crop = crop_mod.auto_crop(track2d, src_w, src_h)
        x0, y0, side = ctx.crop
        ctx.size = (cfg.size, cfg.size)
        sc = cfg.size / side
        flags = "area" if side >= cfg.size else "bicubic"
        filters = f"crop={side}:{side}:{x0}:{y0},scale={cfg.size}:{cfg.size}:flags={flags},setsar=1"
        ctx.principal = ((src_w / 2 - x0) * sc, (src_h / 2 - y0) * sc)
        box = track2d.boxes.mean(0)
        start = (((box[0] + box[2]) / 2 - x0) * sc, ((box[1] + box[3]) / 2 - y0) * sc)
    else:
        sc = cfg.size / max(src_w, src_h)
        ctx.size = (_even(src_w * sc), _even(src_h * sc))
        filters = f"scale={ctx.size[0]}:{ctx.size[1]}:flags={'area' if sc <= 1 else 'bicubic'},setsar=1"
        ctx.principal = (ctx.size[0] / 2, ctx.size[1] / 2)
        box = track2d.boxes.mean(0)
        start = ((box[0] + box[2]) / 2 * ctx.size[0] / src_w, (box[1] + box[3]) / 2 * ctx.size[1] / src_h)

    # 3) streaming pass
    key_scan = work.key("scan", key_detect, ctx.crop, ctx.size, ctx.fps, cfg.landmarks)
    n_est = max(1, int(round(info.duration * ctx.fps)))
    work.step("scan", key_scan, lambda: _step_scan(ctx, filters, track2d.max_faces, start, n_est))
    from thg_nerf.preprocess.scan import ScanResult

    scan = ScanResult.load(work.root)
    ctx.n_frames = scan.n_frames
    if ctx.n_frames < 2:
        raise ThgError(f"{video} is too short: {ctx.n_frames} frame(s) decoded")

    # 4) tracking
    key_track = work.key("track", key_scan, cfg.max_missing_fraction, cfg.max_interp_gap_s)
    work.step("track", key_track, lambda: _step_track(ctx, scan))
    trk = dict(np.load(work.root / "track.npz"))

    # audio-video offset: the estimate does not depend on --av-offset, the shifted audio does
    from thg_nerf.preprocess.avsync import applied_offset, shift_wav

    key_sync = work.key("avsync", key_track, key_audio)
    work.step("avsync", key_sync, lambda: _step_avsync(ctx, trk))
    sync = read_json(work.root / AVSYNC)
    ctx.av_offset_s = applied_offset(cfg.av_offset, sync["estimate_s"], sync["confidence"])
    log.info("audio-video offset: estimate %+.3f s (positive: audio late), confidence %.1f; %s", sync["estimate_s"],
             sync["confidence"], f"applying {ctx.av_offset_s:+.3f} s" if ctx.av_offset_s else "not applied")
    key_align = work.key("align", key_audio, int(round(ctx.av_offset_s * SAMPLE_RATE)))
    work.step("align", key_align, lambda: shift_wav(work.root / FILES["audio"], work.root / ALIGNED_AUDIO,
                                                    ctx.av_offset_s))

    # 5-8) masks, background, audio features, preview
    key_masks = work.key("masks", key_track)
    work.step("masks", key_masks, lambda: _step_masks(ctx, scan, trk))
    key_bg = work.key("background", key_scan)
    work.step("background", key_bg, lambda: _step_background(ctx, scan))
    key_feat = work.key("features", key_align, ctx.n_frames, ctx.fps, cfg.audio_features)
    work.step("features", key_feat, lambda: _step_features(ctx))
    key_prev = work.key("preview", key_masks, key_track, key_align)
    work.step("preview", key_prev, lambda: _step_preview(ctx, trk))

    _assemble(out, ctx, trk, request, audio_path)
    work.remove()
    log.info("wrote %s (%d frames) in %.1f s", out, ctx.n_frames, time.perf_counter() - t_start)
    return out


# ---------------------------------------------------------------------------------------------- steps


def _step_audio(work: Path, source: Path) -> None:
    from thg_nerf.audio.io import load_audio, write_wav

    wave = load_audio(source, sr=SAMPLE_RATE)
    write_wav(work / FILES["audio"], wave, SAMPLE_RATE)


def _step_scan(ctx: _Context, filters: str, max_faces: int, start: tuple[float, float], n_est: int) -> None:
    from thg_nerf.preprocess.scan import scan_video

    scan_video(ctx.video, ctx.work.root, filters=filters, fps=ctx.fps, size=ctx.size, backend=ctx.cfg.landmarks,
               max_faces=min(max(max_faces, 1), 4), start_centre=start, n_est=n_est)


def _step_track(ctx: _Context, scan) -> None:
    from thg_nerf.preprocess import signals
    from thg_nerf.preprocess.topology import get_topology
    from thg_nerf.preprocess.tracker import TrackerSettings, track_head

    cfg = ctx.cfg
    detected = scan.valid
    if not detected.any():
        raise ThgError(f"no face found in {ctx.video}")
    missing = 1.0 - detected.mean()
    if missing > cfg.max_missing_fraction:
        raise ThgError(f"a face was found in only {100 * (1 - missing):.0f}% of the frames of {ctx.video} "
                       f"(at most {100 * cfg.max_missing_fraction:.0f}% may be missing)")
    gaps = signals.find_gaps(detected, max_gap=int(np.floor(cfg.max_interp_gap_s * ctx.fps + 1e-6)))
    lm = signals.fill_missing(scan.landmarks, detected)
    weights = np.where(detected, 1.0, np.where(gaps.interpolated, INTERP_WEIGHT, 0.0))
    if weights.sum() < 2:
        raise ThgError(f"too few frames with a face in {ctx.video}")
    topo = get_topology(cfg.landmarks)
    crop_side = ctx.crop[2] if ctx.crop else max(ctx.info.width, ctx.info.height)
    # prior focal: the tracker's usual field of view across the source frame's width, in output pixels
    src_w = ctx.info.height if ctx.info.rotate % 180 == 90 else ctx.info.width
    fov = np.deg2rad(TrackerSettings().prior_fov_deg)
    focal_prior = 0.5 * src_w / np.tan(fov / 2) * (max(ctx.size) / crop_side)
    res = track_head(lm[..., :2], lm[..., 2], weights, ctx.size, ctx.principal, topo, ctx.fps,
                     focal_prior=focal_prior)
    use = detected
    r = res.residuals[use]
    ear = signals.eye_aspect_ratio(lm, topo)
    np.savez(ctx.work.root / "track.npz",
             landmarks=lm[..., :2].astype(np.float32), valid=detected, interpolated=gaps.interpolated,
             excluded=gaps.excluded, rotation=res.rotation.astype(np.float32),
             translation=res.translation.astype(np.float32), eye=signals.blink_signal(ear, detected),
             eye_ratio=ear.astype(np.float32), face_box=signals.boxes(lm),
             mouth_box=signals.boxes(lm, topo.lips, margin=0.15), shape=res.shape.astype(np.float32),
             expression=res.expression.astype(np.float32), basis=res.basis.astype(np.float32),
             focal=np.float64(res.focal), reproj_mean=np.float64(np.nanmean(r)),
             reproj_p95=np.float64(np.nanpercentile(r, 95)), jitter_deg=np.float64(
                 signals.jitter_deg(res.rotation, ~gaps.excluded)),
             rigid_landmarks=np.int32(res.rigid.sum()))


def _step_avsync(ctx: _Context, trk: dict) -> None:
    from thg_nerf.audio.io import load_audio
    from thg_nerf.preprocess.avsync import estimate_av_offset
    from thg_nerf.preprocess.signals import mouth_opening
    from thg_nerf.preprocess.topology import get_topology

    mouth = mouth_opening(trk["landmarks"], get_topology(ctx.cfg.landmarks).mouth)
    wave = load_audio(ctx.work.root / FILES["audio"], sr=SAMPLE_RATE)
    est = estimate_av_offset(mouth, trk["valid"], wave, SAMPLE_RATE, ctx.fps)
    write_json(ctx.work.root / AVSYNC, {"estimate_s": round(est.offset_s, 4), "confidence": round(est.confidence, 2),
                                        "peak_corr": round(est.peak_corr, 3)})


def _step_masks(ctx: _Context, scan, trk: dict) -> None:
    from thg_nerf.preprocess.masks import write_masks
    from thg_nerf.preprocess.topology import get_topology

    write_masks(ctx.work.root, scan.seg(ctx.work.root), trk["landmarks"], ~trk["excluded"],
                get_topology(ctx.cfg.landmarks), ctx.size, ctx.fps)


def _step_background(ctx: _Context, scan) -> None:
    from thg_nerf.preprocess.masks import background_plate

    seg = scan.seg(ctx.work.root)
    plate, holes = background_plate(scan.bg_frames(ctx.work.root), seg[scan.bg_ids])
    write_background(ctx.work.root, plate)
    write_json(ctx.work.root / "background.json", {"inpainted_fraction": round(holes, 4)})


def _step_features(ctx: _Context) -> None:
    from thg_nerf.audio.features import extract_features
    from thg_nerf.audio.io import load_audio

    wave = load_audio(ctx.work.root / ALIGNED_AUDIO, sr=SAMPLE_RATE)
    gap = len(wave) / SAMPLE_RATE - ctx.n_frames / ctx.fps
    if abs(gap) > 0.5:
        log.warning("the audio is %.1f s %s than the video; features past its end are silence", abs(gap),
                    "longer" if gap > 0 else "shorter")
    feats = extract_features(wave, SAMPLE_RATE, ctx.fps, ctx.n_frames, ctx.cfg.audio_features)
    tmp = ctx.work.root / "audio_features.tmp.npy"
    np.save(tmp, feats.astype(np.float16))
    os.replace(tmp, ctx.work.root / FILES["audio_features"])


def _step_preview(ctx: _Context, trk: dict) -> None:
    from thg_nerf.preprocess.preview import write_preview

    state = np.where(trk["excluded"], 2, np.where(trk["valid"], 0, 1))
    write_preview(ctx.work.root / PREVIEW, ctx.work.root / FILES["frames"], ctx.work.root / FILES["masks"],
                  ctx.work.root / ALIGNED_AUDIO, ctx.fps, _intrinsics(ctx, trk), trk["landmarks"], state,
                  trk["rotation"], trk["translation"])


# ------------------------------------------------------------------------------------------- assemble


def _intrinsics(ctx: _Context, trk: dict) -> Intrinsics:
    return Intrinsics(float(trk["focal"]), float(ctx.principal[0]), float(ctx.principal[1]), *ctx.size)


def c2w_from_pose(rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    """Camera-to-world 4x4 (OpenGL camera) from head-to-camera R [3, 3], t [3] (OpenCV camera)."""
    w2c = np.eye(4)
    w2c[:3, :3], w2c[:3, 3] = rotation, translation
    return np.linalg.inv(w2c) @ np.diag([1.0, -1.0, -1.0, 1.0])


def head_bound(shape: np.ndarray) -> float:
    """Half-size of the head cube (dm): HEAD_BOUND_MARGIN x the largest landmark coordinate, rounded up."""
    return max(MIN_HEAD_BOUND, float(np.ceil(HEAD_BOUND_MARGIN * np.abs(shape).max() * 10) / 10))


def split_ids(n: int, val_fraction: float, excluded: np.ndarray) -> tuple[list[int], list[int]]:
    """Contiguous split: the last ``val_fraction`` of the clip is validation; excluded frames are dropped."""
    n_val = int(round(n * val_fraction))
    if val_fraction > 0:
        n_val = min(max(n_val, 1), n - 1)
    ids = [i for i in range(n) if not excluded[i]]
    return [i for i in ids if i < n - n_val], [i for i in ids if i >= n - n_val]


def _assemble(out: Path, ctx: _Context, trk: dict, request: str, audio_path: Path | None) -> None:
    from thg_nerf.audio.features import feature_shape
    from thg_nerf.preprocess.motion import MOTION_FILE, compute_motion_targets
    from thg_nerf.preprocess.topology import get_topology

    work, n, cfg = ctx.work.root, ctx.n_frames, ctx.cfg
    intr = _intrinsics(ctx, trk)
    train_ids, val_ids = split_ids(n, cfg.val_fraction, trk["excluded"])
    if len(train_ids) < 2:
        raise ThgError(f"too few usable frames in {ctx.video} for training ({len(train_ids)})")
    c2w = [c2w_from_pose(r, t) for r, t in zip(trk["rotation"].astype(np.float64),
                                                 trk["translation"].astype(np.float64))]
    fps, info = ctx.fps, ctx.info
    bound = head_bound(trk["shape"])
    with atomic_dir(out, overwrite=True) as tmp:
        for key in ("frames", "masks", "background", "audio_features"):
            _link_or_copy(work / FILES[key], tmp / FILES[key])
        _link_or_copy(work / ALIGNED_AUDIO, tmp / FILES["audio"])
        _link_or_copy(work / PREVIEW, tmp / PREVIEW)
        for split, ids in (("train", train_ids), ("val", val_ids)):
            write_transforms(tmp, split, intr, [FrameRecord(i, i, c2w[i], float(trk["eye"][i])) for i in ids])
        write_tracking(tmp, **{k: trk[k] for k in ("landmarks", "valid", "rotation", "translation", "eye",
                                                   "face_box", "mouth_box", "shape", "expression",
                                                   "interpolated", "excluded")})
        compute_motion_targets(trk, intr.focal, intr.cx, intr.cy, get_topology(cfg.landmarks),
                               np.asarray(train_ids)).save(tmp / MOTION_FILE)
        crop = None if ctx.crop is None else dict(zip(("x0", "y0", "size"), ctx.crop))
        write_meta(tmp, {
            "fps": fps, "n_frames": n, "w": ctx.size[0], "h": ctx.size[1], "units": "dm", "head_bound": bound,
            "source": {"path": str(ctx.video.resolve()), "w": info.width, "h": info.height, "fps": info.fps,
                       "duration": info.duration, "audio": str(audio_path.resolve()) if audio_path else None},
            "crop": crop, "labels": LABELS,
            "landmarks": {"backend": cfg.landmarks, "count": int(trk["landmarks"].shape[1])},
            "audio": {"sample_rate": SAMPLE_RATE, "features": cfg.audio_features,
                      "feature_shape": list(feature_shape(cfg.audio_features)),
                      "av_offset_s": round(ctx.av_offset_s, 4)},
            "preprocess": {"key": request, "config": dataclasses.asdict(cfg)},
        })
        write_json(tmp / REPORT, _report(ctx, trk, train_ids, val_ids, bound))
    load_dataset(out)  # the contract's own validation


def _report(ctx: _Context, trk: dict, train_ids: list[int], val_ids: list[int], bound: float) -> dict:
    from thg_nerf.preprocess.signals import runs

    n, fps = ctx.n_frames, ctx.fps
    excluded = trk["excluded"]
    bg = read_json(ctx.work.root / "background.json")
    sync = read_json(ctx.work.root / AVSYNC)
    ranges = [[round(a / fps, 3), round(b / fps, 3)] for a, b in runs(excluded)]
    timings = {k: round(v, 2) for k, v in ctx.work.timings.items()}
    timings["total"] = round(time.perf_counter() - ctx.t_start, 2)
    return {
        "frames": n, "fps": fps, "duration_s": round(n / fps, 3),
        "size": list(ctx.size), "crop": None if ctx.crop is None else list(ctx.crop),
        "faces_missing": int((~trk["valid"]).sum()), "frames_interpolated": int(trk["interpolated"].sum()),
        "frames_excluded": int(excluded.sum()), "excluded_ranges_s": ranges,
        "train_frames": len(train_ids), "val_frames": len(val_ids),
        "tracking": {"reprojection_px_mean": round(float(trk["reproj_mean"]), 3),
                     "reprojection_px_p95": round(float(trk["reproj_p95"]), 3),
                     "focal_px": round(float(trk["focal"]), 2), "jitter_deg": round(float(trk["jitter_deg"]), 4),
                     "rigid_landmarks": int(trk["rigid_landmarks"]), "head_bound": bound},
        "background_inpainted_fraction": bg["inpainted_fraction"],
        "av_offset_s": round(ctx.av_offset_s, 4), "av_offset_estimate_s": sync["estimate_s"],
        "av_offset_confidence": sync["confidence"], "av_offset_applied": bool(ctx.av_offset_s != 0.0),
        "timings_s": timings, "reused_steps": sorted(ctx.work.reused),
        "thg_nerf_version": __version__,
    }


# ------------------------------------------------------------------------------------------- helpers


class _Work:
    """The resumable work directory: step outputs plus ``state.json`` (step -> key, seconds)."""

    def __init__(self, root: Path, reset: bool) -> None:
        self.root = root
        if reset and root.exists():
            shutil.rmtree(root)
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ThgError(f"cannot create the work directory {root}: {e.strerror or e}") from None
        self._state_path = root / "state.json"
        self.state: dict = {}
        if self._state_path.is_file():
            try:
                self.state = json.loads(self._state_path.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError):
                self.state = {}
        self.timings: dict[str, float] = {}
        self.reused: set[str] = set()

    @staticmethod
    def key(step: str, *parts) -> str:
        return _fingerprint([step, STEP_VERSIONS[step], __version__, parts])

    def step(self, name: str, key: str, fn) -> None:
        """Run ``fn`` unless the step finished before with the same key."""
        done = self.state.get(name)
        if done and done.get("key") == key:
            self.timings[name] = float(done.get("seconds", 0.0))
            self.reused.add(name)
            log.info("%s: reusing the result in %s", name, self.root)
            return
        log.info("%s ...", name)
        t0 = time.perf_counter()
        fn()
        seconds = time.perf_counter() - t0
        self.timings[name] = seconds
        self.state[name] = {"key": key, "seconds": round(seconds, 3)}
        write_json(self._state_path, self.state)

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def _file_id(path: Path | None) -> list | None:
    if path is None:
        return None
    st = Path(path).stat()
    return [str(Path(path).resolve()), st.st_size, st.st_mtime_ns]


def _fingerprint(obj) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _complete_with_key(out: Path) -> str | None:
    """The preprocess key of a complete dataset directory, or None."""
    try:
        ds = load_dataset(out)
    except ThgError:
        return None
    return (ds.meta.get("preprocess") or {}).get("key")


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _even(x: float) -> int:
    return max(2, int(round(x / 2)) * 2)


def _check_backend(name: str) -> None:
    """MissingDependencyError up front when the landmark backend is not installed."""
    from thg_nerf.errors import MissingDependencyError

    if name == "face-alignment":
        import importlib.util

        if importlib.util.find_spec("face_alignment") is None:
            raise MissingDependencyError("face-alignment", extra="face-alignment", purpose="--landmarks face-alignment")
    from thg_nerf.preprocess.models import _mediapipe

    _mediapipe()  # segmentation and face detection always use mediapipe


def _check_config(cfg: PreprocessConfig) -> None:
    from thg_nerf.audio.features import parse_spec
    from thg_nerf.preprocess.avsync import parse_av_offset

    if not (64 <= cfg.size <= 4096) or cfg.size % 2:
        raise ThgError(f"preprocess.size must be an even number of pixels in [64, 4096], got {cfg.size}")
    if cfg.crop not in ("auto", "none"):
        raise ThgError(f"preprocess.crop must be 'auto' or 'none', got {cfg.crop!r}")
    if cfg.fps is not None and not (0 < cfg.fps <= 240):
        raise ThgError(f"preprocess.fps must be in (0, 240], got {cfg.fps}")
    if not (0.0 <= cfg.val_fraction < 0.9):
        raise ThgError(f"preprocess.val_fraction must be in [0, 0.9), got {cfg.val_fraction}")
    if cfg.landmarks not in ("mediapipe", "face-alignment"):
        raise ThgError(f"preprocess.landmarks must be 'mediapipe' or 'face-alignment', got {cfg.landmarks!r}")
    if not (0.0 <= cfg.max_missing_fraction <= 1.0):
        raise ThgError(f"preprocess.max_missing_fraction must be in [0, 1], got {cfg.max_missing_fraction}")
    if cfg.max_interp_gap_s < 0:
        raise ThgError(f"preprocess.max_interp_gap_s must be >= 0, got {cfg.max_interp_gap_s}")
    parse_spec(cfg.audio_features)
    parse_av_offset(cfg.av_offset)
