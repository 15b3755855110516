"""``thg-nerf dub``: re-voice an existing video of the person; only the lower face is re-rendered.

>>> original = load_original(run, "talk.mp4", cache_dir="~/.cache/thg-nerf/dub")
>>> plan = plan_dub(run, original, wave, 16000)
>>> for frame in dub_frames(run, original, plan):   # DubFrame: full-resolution uint8 image + blend weights
...     ...

Per output frame: the original frame's tracked head pose, the motion the run's audio -> motion model predicts
from the new audio, and a region around mouth, jaw and chin from that frame's tracked landmarks (their convex
hull, grown by ``margin`` mouth widths, then a smooth ``feather``). Only the pixels of that region (plus a
``ring`` around it) are rendered, at the tracking resolution, and resampled into the full-resolution source
frame (the preprocessing crop undone). In the ring, where the footage is kept, the render is compared with the
footage: per-channel mean/std (colour) and high-pass energy (sharpness) are matched, with parameters smoothed
over time. Everything outside the feathered region is the original pixel, untouched.

ORIGINAL is tracked by ``thg_nerf.preprocess.pipeline.preprocess`` into a cache directory, unless it is the
run's own training clip (its dataset is reused) or a dataset made from it is given. A face whose proportions
(the mean image-space configuration of its rigid landmarks, :func:`face_signature`) are too unlike the run's
person is refused.

Length: new audio shorter than the video trims the video; longer runs the video back and forth
(``pingpong``, turning at the stillest frames near either end) or is cut to the video (``trim``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from thg_nerf.dataset import Dataset, Intrinsics, load_dataset
from thg_nerf.errors import ThgError
from thg_nerf.log import get_logger, progress
from thg_nerf.render.config import DubConfig
from thg_nerf.render.output import convert_audio, open_output, output_kind

if TYPE_CHECKING:
    from thg_nerf.preprocess.topology import Topology
    from thg_nerf.train.checkpoint import LoadedRun
    from thg_nerf.utils.video import VideoInfo

log = get_logger(__name__)

FEATURE_SR = 16000
REGIONS = ("mouth", "lower-face")
LOOPS = ("pingpong", "trim")
#: Ring pixels needed before colour / sharpness statistics are trusted (otherwise the previous ones are kept).
MIN_RING_PIXELS = 24
#: H.264 quality of dubbed videos: the footage is encoded a second time and carries the provenance mark (about
#: 42.5 dB on its own), so the untouched part stays >= 40 dB against the input only at CRF 8 or better
#: (every frame; CRF 12 dips to 39.8 dB: docs/BENCHMARKS.md, Dub).
DUB_CRF = 8


def default_cache_dir() -> Path:
    """Where tracked ORIGINAL videos are kept: ``$XDG_CACHE_HOME/thg-nerf/dub`` (``~/.cache/...``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "thg-nerf" / "dub"


# ---------------------------------------------------------------------------------------------- the original


@dataclass
class Original:
    """ORIGINAL with its tracking: a dataset directory plus where its frames sit in the source video."""

    video: Path
    dataset: Dataset
    size: tuple[int, int]
    """(W, H) of the decoded source frames (the output size)."""
    fps: float
    """Frame rate of the tracked (and output) frames."""
    offset: tuple[float, float]
    """Source pixel position of the dataset frame's corner (continuous coordinates)."""
    scale: tuple[float, float]
    """Source pixels per dataset pixel (x, y)."""
    reused: bool = False
    """The tracking is the run's own training dataset."""
    identity_distance: float | None = None
    """Identity-shape difference to the run's person (None: not compared)."""

    @property
    def n_frames(self) -> int:
        return self.dataset.n_frames

    @property
    def intrinsics(self) -> Intrinsics:
        return self.dataset.intrinsics

    def to_source(self, pts: np.ndarray) -> np.ndarray:
        """Dataset pixel coordinates [..., 2] -> source pixel coordinates (both continuous)."""
        return np.asarray(pts, np.float64) * np.asarray(self.scale) + np.asarray(self.offset)


def load_original(run: LoadedRun, video: str | Path, *, data: str | Path | None = None,
                  cache_dir: str | Path | None = None, audio: str | Path | None = None,
                  cfg: DubConfig | None = None) -> Original:
    """Track ``video`` (or reuse a dataset of it) and check that it shows the run's person.

    ``data``: a dataset directory preprocessed from ``video`` (skips tracking). Otherwise the run's own
    dataset when ``video`` is its training clip, else ``preprocess`` into ``cache_dir`` (default
    :func:`default_cache_dir`) with the run's preprocessing settings. ``audio`` stands in for the video's
    sound track when it has none (preprocessing needs one). One-line ThgError for unreadable videos, no face,
    a dataset that does not match the video, and someone else's face.
    """
    from thg_nerf.train.checkpoint import read_run_info
    from thg_nerf.utils.video import probe_video

    cfg = cfg or DubConfig()
    video = Path(video)
    info = probe_video(video)
    run_info = read_run_info(run.run_dir)
    train_ds = _run_dataset(run_info)
    reused = False
    if data is not None:
        ds = load_dataset(data)
        _check_matches(ds, video, info)
        reused = train_ds is not None and ds.root.resolve() == train_ds.root.resolve()
    elif train_ds is not None and _is_source_of(train_ds, video, info):
        ds, reused = train_ds, True
        log.info("%s is the run's training clip: reusing its tracking in %s", video, ds.root)
    else:
        ds = _track(video, info, run_info, Path(cache_dir) if cache_dir else default_cache_dir(), audio)
    distance = None
    if not reused:
        distance = _check_identity(ds, train_ds, run_info, cfg.identity_threshold, video)
    return Original(video=video, dataset=ds, size=_display_size(info), fps=ds.fps, offset=_offset(ds),
                    scale=_scale(ds, info), reused=reused, identity_distance=distance)


def _display_size(info: VideoInfo) -> tuple[int, int]:
    """(W, H) of the decoded frames (ffmpeg applies the rotation metadata)."""
    return (info.height, info.width) if info.rotate % 180 == 90 else (info.width, info.height)


def _offset(ds: Dataset) -> tuple[float, float]:
    crop = ds.meta.get("crop")
    return (float(crop["x0"]), float(crop["y0"])) if crop else (0.0, 0.0)


def _scale(ds: Dataset, info: VideoInfo) -> tuple[float, float]:
    crop = ds.meta.get("crop")
    w, h = ds.size
    if crop:
        return float(crop["size"]) / w, float(crop["size"]) / h
    sw, sh = _display_size(info)
    return sw / w, sh / h


def _run_dataset(run_info: dict) -> Dataset | None:
    """The run's training dataset, or None when it has moved or is unreadable."""
    path = run_info.get("data_dir")
    if not path:
        return None
    try:
        return load_dataset(path)
    except ThgError:
        log.warning("the run's dataset %s is not available: identity and training-clip checks use run.json only",
                    path)
        return None


def _source_matches(meta: dict, info: VideoInfo) -> bool:
    """The dataset's recorded source has the video's size and duration (within a frame)."""
    src = meta.get("source") or {}
    fps = float(meta.get("fps") or info.fps)
    return ((int(src.get("w", -1)), int(src.get("h", -1))) == (info.width, info.height)
            and abs(float(src.get("duration", -1.0)) - info.duration) <= 1.0 / fps + 1e-3)


def _is_source_of(ds: Dataset, video: Path, info: VideoInfo) -> bool:
    """``video`` is the clip ``ds`` was preprocessed from (same resolved path, size and duration)."""
    src = str((ds.meta.get("source") or {}).get("path", ""))
    return bool(src) and Path(src).resolve() == video.resolve() and _source_matches(ds.meta, info)


def _check_matches(ds: Dataset, video: Path, info: VideoInfo) -> None:
    if not _source_matches(ds.meta, info):
        src = ds.meta.get("source") or {}
        raise ThgError(f"dataset {ds.root} was not made from {video}: its source is {src.get('w')}x{src.get('h')}, "
                       f"{src.get('duration')} s; the video is {info.width}x{info.height}, {info.duration:.2f} s")


def _track(video: Path, info: VideoInfo, run_info: dict, cache: Path, audio: str | Path | None) -> Dataset:
    """Preprocess ``video`` into the cache with the run's preprocessing settings (reused when done before)."""
    from thg_nerf import __version__
    from thg_nerf.preprocess.config import PreprocessConfig
    from thg_nerf.preprocess.pipeline import STEP_VERSIONS, preprocess

    saved = ((run_info.get("data_meta") or {}).get("preprocess") or {}).get("config") or {}
    names = {f.name for f in dataclasses.fields(PreprocessConfig)}
    pcfg = PreprocessConfig(**{k: v for k, v in saved.items() if k in names})
    if not saved:
        pcfg.size = int(max(run_info["intrinsics"]["w"], run_info["intrinsics"]["h"]))
    pcfg.fps = None  # track at the video's own rate: the output keeps it
    stand_in = Path(audio) if audio is not None and not info.has_audio else None
    st = video.stat()
    key = hashlib.sha1(json.dumps([str(video.resolve()), st.st_size, st.st_mtime_ns,
                                   str(stand_in.resolve()) if stand_in else None, dataclasses.asdict(pcfg),
                                   STEP_VERSIONS, __version__], sort_keys=True).encode()).hexdigest()[:12]
    out = cache / f"{video.stem}-{key}"
    log.info("tracking %s (cached in %s)", video, out)
    return load_dataset(preprocess(video, out, pcfg, audio=stand_in))


def _check_identity(ds: Dataset, train_ds: Dataset | None, run_info: dict, threshold: float,
                    video: Path) -> float | None:
    """Face-shape difference of ``ds`` to the run's dataset (:func:`identity_distance`); ThgError above
    ``threshold``."""
    if train_ds is None:
        log.warning("cannot check that %s shows the run's person (the run's dataset %s is not available)", video,
                    run_info.get("data_dir"))
        return None
    mine, ref = ds.tracking(), train_ds.tracking()
    if "shape" not in ref or mine["landmarks"].shape[1:] != ref["landmarks"].shape[1:]:
        log.warning("cannot compare the face in %s with the run's person (other landmark layout)", video)
        return None
    index = identity_landmarks(_topology(train_ds), ref["shape"])
    d = identity_distance(face_signature(mine["landmarks"], mine.get("valid"), index),
                          face_signature(ref["landmarks"], ref.get("valid"), index))
    if d > threshold:
        raise ThgError(f"the face in {video} does not look like the person of run {run_info.get('data_dir')} "
                       f"(face-shape difference {d:.3f} > {threshold:.3f}); dub videos of the same person")
    log.info("face-shape difference to the run's person: %.3f (threshold %.3f)", d, threshold)
    return d


def identity_landmarks(topo: Topology, shape: np.ndarray) -> np.ndarray:
    """Landmarks [K] that describe who someone is rather than what their face does: all but the eyes, brows,
    irises, lips and the jaw line below the nose (``shape`` [L, 3]: identity, head space)."""
    from thg_nerf.preprocess.motion import lower_face_indices

    moving = topo.nonrigid() | set(lower_face_indices(topo, shape).tolist())
    return np.array([i for i in range(len(shape)) if i not in moving], dtype=np.int64)


def _align_2d(points: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Point sets [..., K, 2] moved onto ``target`` [K, 2] by their best 2D similarity transforms (least squares)."""
    a = points - points.mean(-2, keepdims=True)
    b = target - target.mean(0)
    u, s, vt = np.linalg.svd(np.einsum("kd,...ke->...de", b, a))
    d = np.stack([np.ones(s.shape[:-1]), np.sign(np.linalg.det(u @ vt))], axis=-1)
    rot = (u * d[..., None, :]) @ vt
    scale = (s * d).sum(-1) / np.maximum((a**2).sum((-2, -1)), 1e-12)
    return scale[..., None, None] * a @ np.swapaxes(rot, -1, -2) + target.mean(0)


def face_signature(landmarks: np.ndarray, valid: np.ndarray | None, index: np.ndarray,
                   max_frames: int = 300) -> np.ndarray:
    """The mean image-space configuration [K, 2] of landmarks ``index`` of a clip's tracked frames
    (``landmarks`` [N, L, 2], ``valid`` [N] or None): every frame moved onto the mean by a 2D similarity
    (generalised Procrustes, up to ``max_frames`` frames spread over the clip), centred, unit RMS radius."""
    lm = np.asarray(landmarks, np.float64)
    if valid is not None and np.asarray(valid).any():
        lm = lm[np.asarray(valid, bool)]
    lm = lm[np.linspace(0, len(lm) - 1, min(len(lm), max_frames)).round().astype(int)][:, index, :2]
    mean = lm[0] - lm[0].mean(0)
    for _ in range(4):
        mean = _align_2d(lm, mean).mean(0)
        mean = mean / np.sqrt((mean**2).sum(1).mean())
    return mean


def identity_distance(signature: np.ndarray, reference: np.ndarray) -> float:
    """Difference of two face signatures [K, 2] (:func:`face_signature`): the RMS residual after the best 2D
    similarity transform of ``signature`` onto ``reference``, relative to the RMS radius of ``reference``
    (dimensionless; 0 = the same proportions).

    Image-space landmarks rather than the tracked 3D identity shape: the shape's depth, and with it its frontal
    proportions, is poorly determined by a short clip (5-second clips of the same person differed from the
    50-second one more than another person did; docs/BENCHMARKS.md, section Dub).
    """
    ref = np.asarray(reference, np.float64) - np.asarray(reference, np.float64).mean(0)
    res = _align_2d(np.asarray(signature, np.float64), ref) - ref
    return float(np.sqrt((res**2).sum(1).mean() / max((ref**2).sum(1).mean(), 1e-12)))


# ---------------------------------------------------------------------------------------------- the plan


@dataclass
class DubPlan:
    """Everything decided before the first frame."""

    n_frames: int
    fps: float
    size: tuple[int, int]
    """(W, H) of the output frames (the source's)."""
    schedule: np.ndarray
    """[n_frames] int64: the original frame shown at each output frame."""
    cond: np.ndarray
    """[n_frames, ...] float32 condition source of the head field (predicted motion codes)."""
    region: np.ndarray
    """[K] int64 landmark indices whose hull is the re-rendered region."""

    @property
    def duration(self) -> float:
        return self.n_frames / self.fps


def plan_dub(run: LoadedRun, original: Original, wave: np.ndarray, sr: int, cfg: DubConfig | None = None,
             start: int = 0, end: int | None = None) -> DubPlan:
    """The output frames for new audio ``wave`` [n] at ``sr``: the original frame of each (ping-pong or trim)
    and the predicted motion. ``start``/``end`` restrict ORIGINAL to its frames ``[start, end)``."""
    cfg = cfg or DubConfig()
    _check_choice("--region", cfg.region, REGIONS)
    _check_choice("--loop", cfg.loop, LOOPS)
    n_src_all = original.n_frames
    end = n_src_all if end is None else min(int(end), n_src_all)
    if not 0 <= start < end:
        raise ThgError(f"the original segment [{start}, {end}) holds no frame (the video has {n_src_all})")
    fps = original.fps
    wave = np.asarray(wave, np.float32).reshape(-1)
    n = int(round(wave.size / sr * fps))
    if n <= 0:
        raise ThgError(f"the new audio is too short to dub a frame ({wave.size / sr * 1000:.1f} ms at {fps:g} fps)")
    trk = original.dataset.tracking()
    if "shape" not in trk:
        raise ThgError(f"{original.dataset.root}/tracking.npz has no identity 'shape': preprocess the video again")
    speed = motion_speed(trk["landmarks"][start:end])
    schedule = start + frame_schedule(n, end - start, speed, cfg.loop, int(round(cfg.turn_window_s * fps)))
    n = len(schedule)
    spec = str(run.audio_spec)
    if spec.startswith("npy:"):
        raise ThgError(f"run {run.run_dir} was trained on precomputed audio features ({spec}), which thg-nerf "
                       "cannot compute from new audio")
    if sr != FEATURE_SR:
        from thg_nerf.audio.features import resample

        wave = resample(wave, sr, FEATURE_SR)
    cond = np.require(run.conditions(run.audio_features(wave, FEATURE_SR, fps, n)), np.float32, ["C"])
    topo = _topology(original.dataset)
    return DubPlan(n_frames=n, fps=fps, size=original.size, schedule=schedule, cond=cond,
                   region=region_indices(topo, trk["shape"], cfg.region))


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ThgError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")


def _topology(ds: Dataset) -> Topology:
    from thg_nerf.preprocess.topology import get_topology

    return get_topology(str((ds.meta.get("landmarks") or {}).get("backend", "mediapipe")))


def region_indices(topo: Topology, shape: np.ndarray, region: str) -> np.ndarray:
    """Landmarks [K] whose convex hull is the re-rendered region (``shape`` [L, 3]: identity, head space).

    ``lower-face``: the lips and the face outline below the nose tip (jaw line, chin). ``mouth``: the lips and
    the outline below the mouth corners within 1.5 half mouth widths of its centre (the chin).
    """
    from thg_nerf.preprocess.motion import lower_face_indices

    lower = lower_face_indices(topo, shape)
    if region == "lower-face":
        return lower
    oval = np.intersect1d(lower, np.asarray(topo.face_oval))
    corners = shape[list(topo.mouth[2:])]
    centre, half = corners.mean(0), 0.5 * float(np.linalg.norm(corners[1] - corners[0]))
    chin = oval[(shape[oval, 1] < centre[1]) & (np.abs(shape[oval, 0] - centre[0]) <= 1.5 * half)]
    return np.unique(np.concatenate([np.asarray(topo.lips), chin, [topo.chin]])).astype(np.int64)


def motion_speed(landmarks: np.ndarray) -> np.ndarray:
    """Per-frame motion [N] of the tracked face: mean landmark displacement (pixels per frame), smoothed."""
    from thg_nerf.preprocess.motion import smooth_time

    lm = np.asarray(landmarks, np.float64)
    if len(lm) < 2:
        return np.zeros(len(lm))
    step = np.linalg.norm(np.diff(lm, axis=0), axis=-1).mean(-1)
    return smooth_time(np.concatenate([step[:1], 0.5 * (step[1:] + step[:-1]), step[-1:]]))


def frame_schedule(n_out: int, n_src: int, speed: np.ndarray, loop: str, window: int) -> np.ndarray:
    """The source frame [n_out] of each output frame.

    ``n_out <= n_src`` or ``loop='trim'``: the first frames in order (at most ``n_src``). Otherwise the clip
    runs forwards, turns at the stillest frame (least ``speed`` [n_src]) within ``window`` frames of its end
    (at most a third of the clip), runs backwards, turns near its start, and so on. A turning frame is shown
    once, so the motion reverses smoothly where the face is still.
    """
    if n_out <= n_src or loop == "trim":
        return np.arange(min(n_out, n_src), dtype=np.int64)
    if n_src == 1:
        return np.zeros(n_out, dtype=np.int64)
    win = max(0, min(int(window), (n_src - 1) // 3))
    speed = np.asarray(speed, np.float64)
    out: list[int] = []
    pos, forward = 0, True
    while len(out) < n_out:
        lo, hi = (n_src - 1 - win, n_src - 1) if forward else (0, win)
        cand = np.arange(lo, hi + 1)
        # the stillest frame; ties go to the frame farthest along, so the clip is used as fully as possible
        turn = int(cand[np.lexsort((-cand if forward else cand, speed[cand]))[0]])
        out.extend(range(pos, turn, 1 if forward else -1))
        pos, forward = turn, not forward
    return np.asarray(out[:n_out], dtype=np.int64)


# ---------------------------------------------------------------------------------------------- frames


@dataclass
class DubFrame:
    """One output frame."""

    image: np.ndarray
    """[H, W, 3] uint8 at the source resolution."""
    source: int
    """Index of the original frame it is made from."""
    box: tuple[int, int, int, int] | None
    """(x0, y0, x1, y1) source pixels holding every changed pixel (None: the original frame, unchanged)."""
    weight: np.ndarray | None
    """[y1 - y0, x1 - x0] float32 blend weight of the render in ``box`` (0 = original pixel)."""
    render_pixels: int = 0
    """Pixels rendered by the head field for this frame (at the tracking resolution)."""


@dataclass
class _Match:
    """Running colour (per-channel gain, offset) and sharpness (high-pass gain) matching parameters."""

    gain: np.ndarray | None = None
    offset: np.ndarray | None = None
    sharpen: float | None = None

    def update(self, gain: np.ndarray, offset: np.ndarray, sharpen: float, k: float) -> None:
        if self.gain is None or self.offset is None or self.sharpen is None:
            self.gain, self.offset, self.sharpen = gain, offset, sharpen
            return
        self.gain = (1 - k) * self.gain + k * gain
        self.offset = (1 - k) * self.offset + k * offset
        self.sharpen = (1 - k) * self.sharpen + k * sharpen


def dub_frames(run: LoadedRun, original: Original, plan: DubPlan, cfg: DubConfig | None = None
               ) -> Iterator[DubFrame]:
    """Yield the dubbed frames of a plan, streaming (see the module docstring)."""
    import torch

    from thg_nerf.preprocess.pipeline import c2w_from_pose

    cfg = cfg or DubConfig()
    trk = original.dataset.tracking()
    excluded = trk.get("excluded", np.zeros(original.n_frames, bool))
    topo = _topology(original.dataset)
    cond = torch.from_numpy(plan.cond).to(run.device)
    match = _Match()
    for i, (j, frame) in enumerate(zip(plan.schedule, _source_frames(original, plan.schedule))):
        if excluded[j]:  # no face tracked here: nothing to re-voice
            yield DubFrame(frame, int(j), None, None)
            continue
        c2w = c2w_from_pose(trk["rotation"][j].astype(np.float64), trk["translation"][j].astype(np.float64))
        geo = _region(original, trk["landmarks"][j], plan.region, topo, cfg, with_ring=i % max(1, cfg.match_every) == 0)
        if geo is None:
            yield DubFrame(frame, int(j), None, None)
            continue
        with torch.inference_mode():
            out = _render_pixels(run, original.intrinsics, c2w, cond, i, float(trk["eye"][j]), geo.pixels)
        image, weight = _blend(frame, out, geo, original, match, cfg)
        yield DubFrame(image, int(j), geo.box, weight, int(geo.pixels.size))


def _render_pixels(run: LoadedRun, intr: Intrinsics, c2w: np.ndarray, cond, index: int, eye: float,
                   pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Premultiplied colour [P, 3] and alpha [P] of dataset pixels ``pixels`` (row-major indices)."""
    import torch

    from thg_nerf.render.volume import render_image

    out = render_image(run.model, c2w.astype(np.float32), intr, cond, index, eye, run.cfg.render, run.device,
                       pixels=torch.from_numpy(pixels))
    return out["fg"].float().cpu().numpy(), out["alpha"].float().cpu().numpy()


def _source_frames(original: Original, schedule: np.ndarray) -> Iterator[np.ndarray]:
    """The source frames of ``schedule`` in order, decoded at the tracking's frame rate.

    A forward schedule streams; one that turns back keeps the frames it revisits in a temporary
    memory-mapped file (W x H x 3 bytes each) next to the system's temporary files.
    """
    from thg_nerf.utils.video import iter_frames

    w, h = original.size
    need = int(schedule.max()) + 1
    frames = iter_frames(original.video, fps=original.fps)
    forward = bool(np.all(np.diff(schedule) == 1)) if len(schedule) > 1 else True

    def frame_at(k: int, got: np.ndarray | None) -> np.ndarray:
        if got is None:
            raise ThgError(f"{original.video} ended after {k} frames; its tracking has {original.n_frames}")
        if got.shape != (h, w, 3):
            raise ThgError(f"{original.video} decodes to {got.shape[1]}x{got.shape[0]} frames, expected {w}x{h}")
        return got

    try:
        if forward:
            for k in range(need):
                frame = frame_at(k, next(frames, None))
                if k >= schedule[0]:
                    yield frame
            return
        used = np.zeros(need, bool)
        used[schedule] = True
        slot = np.cumsum(used) - 1
        with tempfile.TemporaryDirectory(prefix="thg_dub_") as td:
            store = np.lib.format.open_memmap(Path(td) / "frames.npy", mode="w+", dtype=np.uint8,
                                              shape=(int(used.sum()), h, w, 3))
            for k in progress(range(need), desc="decoding", unit="frame"):
                frame = frame_at(k, next(frames, None))
                if used[k]:
                    store[slot[k]] = frame
            for j in schedule:
                yield np.array(store[slot[j]])
            del store
    finally:
        frames.close()


@dataclass
class _Region:
    """Geometry of one frame's region."""

    box: tuple[int, int, int, int]
    """Source-pixel box (x0, y0, x1, y1) of everything computed."""
    distance: np.ndarray
    """[bh, bw] source-pixel distance outside the landmark hull (0 inside)."""
    face: np.ndarray
    """[bh, bw] bool: inside the face outline."""
    width: float
    """Mouth width in source pixels (the unit of the DubConfig distances)."""
    pixels: np.ndarray
    """[P] int64 row-major dataset pixels to render."""
    patch: tuple[int, int, int, int]
    """Dataset-pixel box (x0, y0, x1, y1) holding ``pixels``."""
    with_ring: bool
    """``pixels`` include the matching ring."""


def _region(original: Original, landmarks: np.ndarray, index: np.ndarray, topo: Topology, cfg: DubConfig,
            with_ring: bool = True) -> _Region | None:
    """The region of one frame from its landmarks [L, 2] (dataset pixels); None when it is off the frame.
    ``with_ring``: also render the matching ring around the feathered edge."""
    from scipy.ndimage import distance_transform_edt

    lm = np.asarray(landmarks, np.float64)
    src = original.to_source(lm)
    corners = src[list(topo.mouth[2:])]
    width = float(np.linalg.norm(corners[1] - corners[0]))
    if not np.isfinite(src).all() or width < 1.0:
        return None
    reach = (cfg.margin + cfg.feather + (cfg.ring if with_ring else 0.0)) * width
    hull = src[index]
    w, h = original.size
    x0, y0 = np.floor(hull.min(0) - reach - 2).astype(int)
    x1, y1 = np.ceil(hull.max(0) + reach + 2).astype(int)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    inside = _polygon_mask(hull, (x0, y0, x1, y1))
    if not inside.any():
        return None
    distance = distance_transform_edt(~inside).astype(np.float32)
    face = _polygon_mask(src[list(topo.face_oval)], (x0, y0, x1, y1))
    # dataset pixels whose bilinear footprint reaches the ring's outer edge
    dw, dh = original.dataset.size
    sx, sy = original.scale
    dhull = lm[index]
    margin = reach / min(sx, sy) + 2.0
    px0, py0 = np.floor(dhull.min(0) - margin).astype(int)
    px1, py1 = np.ceil(dhull.max(0) + margin).astype(int)
    px0, py0, px1, py1 = max(px0, 0), max(py0, 0), min(px1, dw), min(py1, dh)
    if px1 - px0 < 1 or py1 - py0 < 1:
        return None
    dinside = _polygon_mask(dhull, (px0, py0, px1, py1))
    sel = distance_transform_edt(~dinside) <= margin
    vv, uu = np.nonzero(sel)
    pixels = ((vv + py0) * dw + (uu + px0)).astype(np.int64)
    return _Region(box=(int(x0), int(y0), int(x1), int(y1)), distance=distance, face=face, width=width,
                   pixels=pixels, patch=(int(px0), int(py0), int(px1), int(py1)), with_ring=with_ring)


def _polygon_mask(points: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """[y1 - y0, x1 - x0] bool: pixel centres inside the convex hull of ``points`` [K, 2] (continuous coords)."""
    from PIL import Image, ImageDraw
    from scipy.spatial import ConvexHull, QhullError

    x0, y0, x1, y1 = box
    pts = np.asarray(points, np.float64)
    try:
        pts = pts[ConvexHull(pts).vertices]
    except (QhullError, ValueError):
        return np.zeros((y1 - y0, x1 - x0), bool)
    img = Image.new("L", (x1 - x0, y1 - y0), 0)
    ImageDraw.Draw(img).polygon([(float(x - x0 - 0.5), float(y - y0 - 0.5)) for x, y in pts], fill=1)
    return np.asarray(img, dtype=bool)


def _blend(frame: np.ndarray, rendered: tuple[np.ndarray, np.ndarray], geo: _Region, original: Original,
           match: _Match, cfg: DubConfig) -> tuple[np.ndarray, np.ndarray]:
    """Resample the rendered pixels into the source frame, match colour and sharpness, blend; returns the
    new frame and the weight map of ``geo.box``."""
    from scipy.ndimage import gaussian_filter, map_coordinates

    fg_p, alpha_p = rendered
    x0, y0, x1, y1 = geo.box
    px0, py0, px1, py1 = geo.patch
    dw = original.dataset.size[0]
    ph, pw = py1 - py0, px1 - px0
    layers = np.zeros((5, ph, pw), np.float32)  # fg r, g, b, alpha, rendered (1) / not (0)
    vv, uu = geo.pixels // dw - py0, geo.pixels % dw - px0
    layers[:3, vv, uu] = fg_p.T
    layers[3, vv, uu] = alpha_p
    layers[4, vv, uu] = 1.0
    # source pixel centres -> dataset patch index coordinates (pixel centre of index k at k + 0.5)
    sx, sy = original.scale
    ox, oy = original.offset
    xs = (np.arange(x0, x1) + 0.5 - ox) / sx - 0.5 - px0
    ys = (np.arange(y0, y1) + 0.5 - oy) / sy - 0.5 - py0
    gy, gx = np.meshgrid(ys, xs, indexing="ij")
    up = np.stack([map_coordinates(layer, [gy, gx], order=1, mode="constant") for layer in layers])
    fg, alpha, covered = np.moveaxis(up[:3], 0, -1), up[3][..., None], up[4] >= 0.999
    orig = frame[y0:y1, x0:x1].astype(np.float32) / 255.0
    width = geo.width
    inner = (cfg.margin + cfg.feather) * width
    t = np.clip((inner - geo.distance) / max(cfg.feather * width, 1e-6), 0.0, 1.0)
    weight = (t * t * (3.0 - 2.0 * t)) * covered
    ring = covered & geo.face & (geo.distance > inner) & (geo.distance <= inner + cfg.ring * width)
    comp = fg + (1.0 - alpha) * orig
    sigma = max(0.8, 0.6 * max(sx, sy))
    if cfg.match and geo.with_ring and ring.sum() >= MIN_RING_PIXELS:
        o, r = orig[ring], comp[ring]
        gain = np.clip(o.std(0) / np.maximum(r.std(0), 1e-4), 1.0 / cfg.max_gain, cfg.max_gain)
        offset = o.mean(0) - gain * r.mean(0)
        lum = np.array([0.299, 0.587, 0.114], np.float32)
        hp_o = orig @ lum - gaussian_filter(orig @ lum, sigma)
        hp_r = comp @ lum - gaussian_filter(comp @ lum, sigma)
        sharpen = float(np.clip(hp_o[ring].std() / max(float(hp_r[ring].std()), 1e-5) - 1.0, 0.0, cfg.max_sharpen))
        match.update(gain, offset, sharpen, cfg.smooth)
        log.debug("ring of %d pixels: gain %s, offset %s, sharpen %.2f -> running %s, %s, %.2f", int(ring.sum()),
                  np.round(gain, 3), np.round(offset, 3), sharpen, np.round(match.gain, 3),
                  np.round(match.offset, 3), match.sharpen)
    if match.gain is not None and match.offset is not None and match.sharpen is not None:
        comp = match.gain * fg + match.offset * alpha + (1.0 - alpha) * orig
        comp = comp + match.sharpen * (comp - gaussian_filter(comp, (sigma, sigma, 0)))
    out = frame.copy()
    blended = orig + weight[..., None] * (np.clip(comp, 0.0, 1.0) - orig)
    region = weight > 0
    out[y0:y1, x0:x1][region] = np.round(blended[region] * 255.0).astype(np.uint8)
    return out, weight.astype(np.float32)


# ---------------------------------------------------------------------------------------------- to a file


def dub_to_file(run_dir: str | Path, video: str | Path, audio: str | Path, out: str | Path, *,
                cfg: DubConfig | None = None, data: str | Path | None = None, cache_dir: str | Path | None = None,
                device: str | None = None, crf: int = DUB_CRF) -> Path:
    """Dub ``video`` with ``audio`` into ``out`` (``.mp4``, ``.webm`` or a PNG folder), written atomically.

    The output has the video's resolution and (tracked) frame rate and the new audio; its frames carry the
    run's provenance mark (``tool: dub``). See :func:`load_original` for ``data`` / ``cache_dir``. Returns ``out``.
    """
    from thg_nerf.audio.io import load_audio
    from thg_nerf.provenance import watermarker_for_run
    from thg_nerf.train.checkpoint import RUN_FILE, load_run
    from thg_nerf.utils.fs import check_writable_parent
    from thg_nerf.utils.video import probe_video

    cfg = cfg or DubConfig()
    out = Path(out)
    _check_choice("--region", cfg.region, REGIONS)
    _check_choice("--loop", cfg.loop, LOOPS)
    if not 0 <= int(crf) <= 51:
        raise ThgError(f"--crf must be between 0 and 51, got {crf}")
    kind = output_kind(out, alpha=False)
    for name, path in (("video", video), ("audio", audio)):
        if out.resolve() == Path(path).resolve():
            raise ThgError(f"the output {out} would overwrite the {name} input")
    check_writable_parent(out)
    info = probe_video(video)  # unreadable video: fail before loading anything
    size = _display_size(info)
    if kind != "png" and (size[0] % 2 or size[1] % 2):
        raise ThgError(f"{video} is {size[0]}x{size[1]}: {kind} video needs even sizes; write a PNG folder instead")
    wave = load_audio(audio, sr=FEATURE_SR)
    run = load_run(run_dir, device=device)
    original = load_original(run, video, data=data, cache_dir=cache_dir, audio=audio, cfg=cfg)
    plan = plan_dub(run, original, wave, FEATURE_SR, cfg)
    del wave
    log.info("dubbing %d frames (%.2f s at %g fps, %s region) at %dx%d -> %s", plan.n_frames, plan.duration,
             plan.fps, cfg.region, plan.size[0], plan.size[1], out)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="thg_dub_") as td:
        audio_seg = Path(td) / "audio.wav"
        convert_audio(audio, audio_seg, None, plan.duration)
        marker = watermarker_for_run(Path(run.run_dir) / RUN_FILE, "dub")
        with open_output(out, plan.size, plan.fps, audio_path=audio_seg, crf=crf, marker=marker) as writer:
            for frame in progress(dub_frames(run, original, plan, cfg), total=plan.n_frames, desc="dubbing",
                                  unit="frame"):
                writer.write(frame.image)
    dt = time.perf_counter() - t0
    log.info("wrote %s (%d frames in %.1f s, %.2f s/frame)", out, plan.n_frames, dt, dt / plan.n_frames)
    return out
