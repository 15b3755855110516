"""``thg-nerf preprocess``: end to end on the sample clips, bad inputs through the CLI, resuming, crops, and
the pieces (gaps, masks, background plate, conventions) on synthetic data.

Budget: about 2-3 minutes on 2 CPU cores (the 8 s katiehill clip at 256 px, short generated clips).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mediapipe")

from thg_nerf.config import load_config  # noqa: E402
from thg_nerf.dataset import LABELS, load_dataset  # noqa: E402
from thg_nerf.errors import MissingDependencyError, ThgError  # noqa: E402
from thg_nerf.preprocess import pipeline, signals  # noqa: E402
from thg_nerf.preprocess.masks import background_plate, label_map  # noqa: E402
from thg_nerf.preprocess.pipeline import c2w_from_pose, is_preprocessed, preprocess, split_ids  # noqa: E402
from thg_nerf.testing.landmarks import synthetic_sequence  # noqa: E402
from thg_nerf.utils.video import ffmpeg_exe, iter_frames, probe_video  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
KATIE = "katiehill_8s_512px_25fps.mp4"


def _cfg(**over):
    cfg = load_config("default").preprocess
    cfg.size = 256
    for k, v in over.items():
        setattr(cfg, k, v)
    return cfg


def _ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-y", "-v", "error", *args], check=True)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "thg_nerf.cli.main", "preprocess", "-q", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def _no_face_clip(path: Path, seconds: float = 2.0, size: int = 256) -> Path:
    """A moving colour gradient with a tone: a valid video without any face."""
    _ffmpeg("-f", "lavfi", "-i", f"gradients=s={size}x{size}:d={seconds}:r=25:speed=0.05",
            "-f", "lavfi", "-i", f"sine=frequency=300:duration={seconds}:sample_rate=16000",
            "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(path))
    return path


@pytest.fixture(scope="module")
def katie_data(media_file, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("katie") / "data"
    return preprocess(media_file(KATIE), out, _cfg())


def test_end_to_end_dataset(katie_data: Path, media_file):
    ds = load_dataset(katie_data)
    report = json.loads((katie_data / "report.json").read_text())
    assert ds.n_frames == 200 and ds.fps == 25.0 and ds.size == (256, 256)
    assert report["faces_missing"] == 0 and report["excluded_ranges_s"] == []
    tr = report["tracking"]
    assert tr["reprojection_px_mean"] < 1.0 and tr["reprojection_px_p95"] < 2.0  # 256 px frames
    assert 100 < tr["focal_px"] < 2000 and 0 <= tr["jitter_deg"] < 2.0
    assert set(report["timings_s"]) >= {"audio", "detect", "scan", "track", "masks", "background", "features",
                                        "preview", "total"}
    # contiguous split, last 1/11 for validation
    assert [r.img_id for r in ds.train] == list(range(182)) and [r.img_id for r in ds.val] == list(range(182, 200))
    assert all(r.aud_id == r.img_id for r in ds.train + ds.val)
    assert ds.audio_features().shape[:1] == (200,) and ds.audio_features().dtype == np.float16
    assert ds.background().shape == (256, 256, 3)
    assert (katie_data / "preview.mp4").stat().st_size > 10_000
    assert not Path(str(katie_data) + ".partial").exists()
    trk = ds.tracking()
    assert trk["landmarks"].shape == (200, 478, 2) and trk["valid"].all()
    assert 0.0 <= trk["eye"].min() and trk["eye"].max() <= 1.0
    assert ds.meta["head_bound"] >= 1.5 and ds.meta["landmarks"] == {"backend": "mediapipe", "count": 478}
    # the masks hold every label; below the chin: head, then neck (the torso is below the frame there)
    masks = ds.masks(cache_dir=katie_data.parent / "cache")
    m = masks[100]
    assert set(np.unique(m)) == set(LABELS.values())
    chin = trk["landmarks"][100, 152]
    column = m[:, int(chin[0])]
    below = column[int(chin[1]) - 6:]
    assert below[0] == LABELS["head"] and LABELS["neck"] in below
    neck = int(np.argmax(below == LABELS["neck"]))
    assert LABELS["head"] not in below[neck:]


def test_geometry_conventions(katie_data: Path):
    """c2w (OpenGL) and R, t (OpenCV) agree with DATA_FORMAT.md: rays through the landmarks hit the model."""
    ds = load_dataset(katie_data)
    trk = ds.tracking()
    intr = ds.intrinsics
    shape = trk["shape"].astype(np.float64)
    for rec in ds.train[::40]:
        i = rec.img_id
        c2w = rec.transform_matrix.astype(np.float64)
        assert np.allclose(c2w, c2w_from_pose(trk["rotation"][i], trk["translation"][i]), atol=1e-4)
        # the camera is in front of the face (+z of head space) and looks at the head
        assert c2w[2, 3] > 2.0 and c2w[:3, 2] @ c2w[:3, 3] > 0
        # project the tracked shape with c2w and the documented ray convention: lands near the landmarks
        w2c = np.linalg.inv(c2w)
        cam = shape @ w2c[:3, :3].T + w2c[:3, 3]  # OpenGL camera: looks down -z, y up
        u = intr.focal * cam[:, 0] / -cam[:, 2] + intr.cx - 0.5
        v = -intr.focal * cam[:, 1] / -cam[:, 2] + intr.cy - 0.5
        err = np.hypot(u + 0.5 - trk["landmarks"][i, :, 0], v + 0.5 - trk["landmarks"][i, :, 1])
        assert np.median(err) < 4.0
        # the origin (head centre) projects inside the face box
        o = w2c[:3, 3]
        ou, ov = intr.focal * o[0] / -o[2] + intr.cx, -intr.focal * o[1] / -o[2] + intr.cy
        x0, y0, x1, y1 = trk["face_box"][i]
        assert x0 < ou < x1 and y0 < ov < y1


@pytest.mark.parametrize("case", ["missing", "not_a_video", "no_audio", "no_face", "unwritable"])
def test_bad_inputs_fail_cleanly(case: str, tmp_path: Path, media_file):
    out = tmp_path / "data"
    if case == "missing":
        video, expect = tmp_path / "nope.mp4", "video not found"
    elif case == "not_a_video":
        video, expect = tmp_path / "notes.mp4", "cannot read video"
        video.write_text("this is not a video\n" * 50)
    elif case == "no_audio":
        video, expect = tmp_path / "silent.mp4", "no audio track"
        _ffmpeg("-i", str(media_file(KATIE)), "-t", "1", "-an", "-c:v", "libx264", "-preset", "ultrafast", str(video))
    elif case == "no_face":
        video, expect = _no_face_clip(tmp_path / "gradient.mp4"), "no face found"
    else:
        video, expect = media_file(KATIE), "cannot create output directory"
        (tmp_path / "afile").write_text("x")
        out = tmp_path / "afile" / "data"
    proc = _cli(str(video), "-o", str(out))
    assert proc.returncode != 0
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("thg-nerf: error:") and expect in err[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists() and not Path(str(out) + ".partial").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith((".data", "data"))] == []


def test_cutaway_is_excluded(media_file, tmp_path: Path):
    """1.5 s without a face spliced into the middle: excluded from training and reported."""
    clip = tmp_path / "cutaway.mp4"
    katie = str(media_file(KATIE))
    graph = ("[0:v]trim=0:4,setpts=PTS-STARTPTS,setsar=1,format=yuv420p[v0];"
             "[0:v]trim=4:8,setpts=PTS-STARTPTS,setsar=1,format=yuv420p[v2];[1:v]setsar=1,format=yuv420p[v1];"
             "[0:a]atrim=0:4,asetpts=PTS-STARTPTS,aresample=16000,aformat=channel_layouts=mono[a0];"
             "[0:a]atrim=4:8,asetpts=PTS-STARTPTS,aresample=16000,aformat=channel_layouts=mono[a2];"
             "[2:a]aformat=channel_layouts=mono[a1];[v0][a0][v1][a1][v2][a2]concat=n=3:v=1:a=1[v][a]")
    _ffmpeg("-i", katie, "-f", "lavfi", "-i", "gradients=s=512x512:d=1.5:r=25:speed=0.05",
            "-f", "lavfi", "-i", "sine=frequency=300:duration=1.5:sample_rate=16000", "-filter_complex", graph,
            "-map", "[v]", "-map", "[a]", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", str(clip))
    out = preprocess(clip, tmp_path / "data", _cfg())
    report = json.loads((out / "report.json").read_text())
    assert len(report["excluded_ranges_s"]) == 1
    start, end = report["excluded_ranges_s"][0]
    assert abs(start - 4.0) < 0.2 and abs(end - 5.5) < 0.2
    ds = load_dataset(out)
    used = {r.img_id for r in ds.train + ds.val}
    excluded = ds.tracking()["excluded"]
    assert not any(excluded[i] for i in used) and excluded.sum() == report["frames_excluded"] >= 30
    assert report["tracking"]["reprojection_px_mean"] < 1.0


def test_landscape_crop_resume_and_force(media_file, tmp_path: Path, monkeypatch):
    """1920x1080 input: an auto crop around the face; an interrupted run resumes; reruns reuse or redo."""
    clip = tmp_path / "landscape.mp4"
    _ffmpeg("-i", str(media_file(KATIE)), "-t", "2", "-vf", "pad=1920:1080:(ow-iw)/2:(oh-ih)/2",
            "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", str(clip))
    out = tmp_path / "data"

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "_step_masks", interrupted)
    with pytest.raises(KeyboardInterrupt):
        preprocess(clip, out, _cfg())
    assert not out.exists() and Path(str(out) + ".partial", "state.json").is_file()
    monkeypatch.undo()

    preprocess(clip, out, _cfg())
    report = json.loads((out / "report.json").read_text())
    assert {"audio", "detect", "scan", "track"} <= set(report["reused_steps"])
    assert "masks" not in report["reused_steps"]
    x0, y0, side = report["crop"]
    assert 256 <= side <= 1080 and 0 <= x0 <= 1920 - side and 0 <= y0 <= 1080 - side
    assert abs(x0 + side / 2 - 960) < 150  # the face is in the middle of the padded frame
    assert load_dataset(out).meta["crop"] == {"x0": x0, "y0": y0, "size": side}

    stamp = (out / "meta.json").stat().st_mtime_ns
    assert is_preprocessed(clip, out, _cfg()) and not is_preprocessed(clip, out, _cfg(val_fraction=0.2))
    preprocess(clip, out, _cfg())  # same input and settings: reused as is
    assert (out / "meta.json").stat().st_mtime_ns == stamp
    with pytest.raises(ThgError, match="already exists"):
        preprocess(clip, out, _cfg(val_fraction=0.2))
    preprocess(clip, out, _cfg(), force=True)
    assert json.loads((out / "report.json").read_text())["reused_steps"] == []


def test_vertical_video_and_crop_none(media_file, tmp_path: Path):
    clip = tmp_path / "vertical.mp4"
    _ffmpeg("-i", str(media_file(KATIE)), "-t", "1.2", "-vf", "pad=1080:1920:(ow-iw)/2:(oh-ih)/2",
            "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", str(clip))
    out = preprocess(clip, tmp_path / "auto", _cfg())
    x0, y0, side = json.loads((out / "report.json").read_text())["crop"]
    assert side <= 1080 and abs(y0 + side / 2 - 960) < 300 and load_dataset(out).size == (256, 256)
    speech = media_file("drive_radio_16k.wav")
    out = preprocess(clip, tmp_path / "none", _cfg(crop="none"), audio=speech)
    ds = load_dataset(out)
    assert ds.size == (144, 256) and ds.meta["crop"] is None  # long side = size, aspect kept
    assert ds.meta["source"]["audio"] == str(speech.resolve())
    assert ds.intrinsics.cx == pytest.approx(72) and ds.intrinsics.cy == pytest.approx(128)


def test_missing_landmark_backend(media_file, tmp_path: Path):
    if importlib.util.find_spec("face_alignment") is not None:
        pytest.skip("face-alignment is installed")
    with pytest.raises(MissingDependencyError, match="face-alignment"):
        preprocess(media_file(KATIE), tmp_path / "data", _cfg(landmarks="face-alignment"))
    assert list(tmp_path.iterdir()) == []


def test_bad_settings():
    with pytest.raises(ThgError, match="even"):
        preprocess("x.mp4", "out", _cfg(size=255))
    with pytest.raises(ThgError, match="audio feature"):
        preprocess("x.mp4", "out", _cfg(audio_features="deepspeech"))


# ----------------------------------------------------------------------------------------------- pieces


def test_gaps_and_signals():
    det = np.ones(40, bool)
    det[[3, 4]] = False
    det[10:20] = False
    det[38:] = False
    gaps = signals.find_gaps(det, max_gap=3)
    assert np.flatnonzero(gaps.interpolated).tolist() == [3, 4, 38, 39]
    assert np.flatnonzero(gaps.excluded).tolist() == list(range(10, 20))
    assert gaps.ranges_s(10.0) == [[1.0, 2.0]]
    vals = np.arange(40, dtype=np.float64)[:, None] * 2.0
    vals[~det] = -1
    filled = signals.fill_missing(vals, det)
    assert filled[3, 0] == 6.0 and filled[15, 0] == 30.0 and filled[39, 0] == 74.0
    ear = np.full(100, 0.3)
    ear[50:53] = [0.15, 0.05, 0.15]
    eye = signals.blink_signal(ear, np.ones(100, bool))
    assert eye[51] == pytest.approx(1.0) and eye[0] == pytest.approx(0.0) and 0.3 < eye[50] < 0.7
    # no blinks in the clip: noise is not stretched to full range
    flat = signals.blink_signal(0.3 + 0.005 * np.sin(np.arange(100.0)), np.ones(100, bool))
    assert flat.max() < 0.2
    assert split_ids(22, 1 / 11, np.zeros(22, bool)) == (list(range(20)), [20, 21])


def test_c2w_convention():
    rot = np.diag([1.0, -1.0, -1.0])  # frontal: head +z towards the camera
    c2w = c2w_from_pose(rot, np.array([0.0, 0.0, 5.0]))
    assert np.allclose(c2w[:3, 3], [0, 0, 5])  # camera 5 dm in front of the face
    assert np.allclose(c2w[:3, :3], np.eye(3))  # OpenGL camera looks down -z, i.e. at the head


def test_label_map_on_synthetic_face():
    seq = synthetic_sequence(n_frames=1, size=(256, 256), focal=350.0, noise_px=0.0)
    lm = seq.landmarks[0]
    person = np.zeros((256, 256), bool)
    person[20:, 60:196] = True  # a crude person silhouette around the face and below it
    labels = label_map(person, lm, seq.topology)
    assert set(np.unique(labels)) == {0, 1, 2, 3}
    column = labels[:, int(round(lm[152, 0]))]  # top to bottom below the chin: head, neck, torso
    head, neck = int(np.argmax(column == LABELS["head"])), int(np.argmax(column == LABELS["neck"]))
    torso_below = neck + int(np.argmax(column[neck:] == LABELS["torso"]))
    assert head < lm[10, 1] < lm[152, 1] < neck + 3 < torso_below
    assert column[int(lm[152, 1]) + 5] == LABELS["neck"]
    cx, cy = lm[list(seq.topology.face_oval)].mean(0)
    assert labels[int(cy), int(cx)] == LABELS["head"]
    assert (labels[~person] == LABELS["background"]).all()
    assert (label_map(person, None, seq.topology)[person] == LABELS["torso"]).all()


def test_background_plate_recovers_static_background():
    rng = np.random.default_rng(0)
    bg = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    frames, seg = [], []
    for k in range(12):
        f = bg.copy()
        p = np.zeros((64, 64), np.uint8)
        x = 5 + 4 * k
        f[20:, x:x + 12] = 255
        p[20:, x:x + 12] = 255
        frames.append(f)
        seg.append(p)
    plate, holes = background_plate(np.stack(frames), np.stack(seg))
    assert holes == 0.0
    assert np.abs(plate.astype(int) - bg).max() == 0
    frames = np.stack(frames)
    seg = np.stack(seg)
    seg[:, :, :8] = 255  # a strip never seen: inpainted
    plate, holes = background_plate(frames, seg)
    assert 0 < holes < 0.3 and plate.shape == (64, 64, 3)


def test_probe_and_frames_agree(katie_data: Path):
    assert probe_video(katie_data / "frames.mp4").n_frames == 200
    assert sum(1 for _ in iter_frames(katie_data / "masks.mkv", gray=True)) == 200
