"""``thg-nerf dub`` on the synthetic scene (the trained fixture run) and, when given, on a run of the shared clip.

ORIGINAL here is a short clip of the run's synthetic person with other head motion and other speech, shown 2x
upscaled inside a larger frame (176x144), so the dub has to undo a crop; its tracking is the generator's
ground truth, passed with ``--data``.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from thg_nerf.audio.io import audio_envelope, load_audio, write_wav
from thg_nerf.cli.main import main
from thg_nerf.render import dub as D
from thg_nerf.render.config import DubConfig
from thg_nerf.testing import synthetic as S
from thg_nerf.testing.signals import speech_like
from thg_nerf.utils.fs import read_json, write_json
from thg_nerf.utils.video import VideoWriter, iter_frames, probe_video

FPS = 25.0
SR = 16000
N_ORIG = 16
CANVAS = (176, 144)
CROP = (32, 8, 128)  # x0, y0, side: the 64x64 tracked frames are the source's [8:136, 32:160], 2x upscaled


@dataclass
class OriginalClip:
    video: Path
    data: Path
    info: S.SyntheticInfo
    frames: np.ndarray
    """[N_ORIG, 144, 176, 3] the decoded source frames."""


def canvas_pattern() -> np.ndarray:
    """A smooth backdrop for the parts of the source frame outside the crop."""
    y, x = np.mgrid[0:CANVAS[1], 0:CANVAS[0]] / 100.0
    return np.round(255 * np.stack([0.4 + 0.2 * np.sin(x + 1), 0.5 + 0.2 * np.cos(y * 1.3), 0.6 + 0.1 * x / 2],
                                   -1)).astype(np.uint8)


@pytest.fixture(scope="module")
def original(tmp_path_factory) -> OriginalClip:
    from PIL import Image

    root = tmp_path_factory.mktemp("dub_original")
    info = S.make_synthetic_dataset(root / "data", n_frames=N_ORIG, size=64, fps=FPS, seed=5, motion_deg=6.0,
                                    scene=S.Scene())
    x0, y0, side = CROP
    video = root / "original.mp4"
    with VideoWriter(video, CANVAS, FPS, crf=4) as writer:
        for f in iter_frames(info.path("frames")):
            frame = canvas_pattern()
            frame[y0:y0 + side, x0:x0 + side] = np.asarray(Image.fromarray(f).resize((side, side), Image.BICUBIC))
            writer.write(frame)
    meta = read_json(info.path("meta"))
    meta["crop"] = {"x0": x0, "y0": y0, "size": side}
    meta["source"] = {"path": str(video), "w": CANVAS[0], "h": CANVAS[1], "fps": FPS, "duration": N_ORIG / FPS}
    write_json(info.path("meta"), meta)
    frames = np.stack(list(iter_frames(video, fps=FPS)))
    assert frames.shape == (N_ORIG, CANVAS[1], CANVAS[0], 3)
    return OriginalClip(video, root / "data", info, frames)


@pytest.fixture(scope="module")
def run(trained_synthetic_run):
    from thg_nerf.train.checkpoint import load_run

    return load_run(trained_synthetic_run.run_dir, device="cpu")


def to_source(pts: np.ndarray) -> np.ndarray:
    return np.asarray(pts, np.float64) * (CROP[2] / 64) + np.array(CROP[:2], np.float64)


def interior_darkness(frame: np.ndarray, info: S.SyntheticInfo, j: int) -> float:
    """255 - mean luminance over the synthetic mouth interior (at full opening) of source frame ``j``."""
    sc = info.scene
    cx, cy = sc.mouth_centre
    mw, mh = sc.mouth_size
    rot, trans = S.rt_from_c2w(info.c2w[j])
    uv = to_source(S.project(sc.surface_point(np.array([[cx - mw, cy], [cx + mw, cy], [cx, cy - mh], [cx, cy + mh]])),
                             rot, trans, info.intrinsics))
    (x0, y0), (x1, y1) = np.floor(uv.min(0)).astype(int), np.ceil(uv.max(0)).astype(int)
    return 255.0 - float((frame[y0:y1, x0:x1].astype(np.float64) @ [0.299, 0.587, 0.114]).mean())


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean(((a.astype(np.float64) - b.astype(np.float64)) / 255.0) ** 2))
    return 10 * np.log10(1.0 / max(mse, 1e-12))


def corr(a, b) -> float:
    return float(np.corrcoef(np.asarray(a, float), np.asarray(b, float))[0, 1])


def run_cli(capsys, *args) -> tuple[int, str]:
    rc = main(["dub", *map(str, args), "-q"])
    return rc, capsys.readouterr().err.strip()


def assert_clean_failure(rc: int, err: str, match: str, out: Path) -> None:
    assert rc == 2, err
    assert err.startswith("thg-nerf: error: ") and "\n" not in err, err
    assert match in err, err
    assert not out.exists()
    assert not [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.stem}.tmp")]


# ---------------------------------------------------------------- pieces


def test_schedule_trims_and_pingpongs_turning_at_still_frames():
    speed = np.ones(20)
    speed[[3, 15]] = 0.0  # the still frames near either end
    assert D.frame_schedule(7, 20, speed, "pingpong", 6).tolist() == list(range(7))
    assert D.frame_schedule(50, 20, speed, "trim", 6).tolist() == list(range(20))
    sched = D.frame_schedule(50, 20, speed, "pingpong", 6)
    expect = list(range(15)) + list(range(15, 3, -1)) + list(range(3, 15)) + list(range(15, 3, -1))
    assert sched.tolist() == expect[:50]
    # without a still frame it turns at the ends; a 1-frame clip holds its frame
    assert D.frame_schedule(8, 4, np.ones(4), "pingpong", 6).tolist() == [0, 1, 2, 3, 2, 1, 0, 1]
    assert D.frame_schedule(3, 1, np.ones(1), "pingpong", 6).tolist() == [0, 0, 0]


def test_face_signature_ignores_framing_and_sees_proportions():
    from thg_nerf.preprocess.topology import get_topology

    scene = S.Scene()
    shape = S.landmarks_3d(0.0, 0.0, scene)
    index = D.identity_landmarks(get_topology("mediapipe"), shape)
    assert 100 < len(index) < 478 and not set(index.tolist()) & set(S.LIPS_OUTER + S.LEFT_EYE)
    rot, trans = S.head_motion(12, FPS, 8.0, 0, scene)
    intr = scene.intrinsics(64)
    frames = np.stack([S.project(shape, r, t, intr) for r, t in zip(rot, trans)])
    ref = D.face_signature(frames, None, index)
    # the same face filmed elsewhere in the frame, larger, rolled
    c, s_ = np.cos(0.3), np.sin(0.3)
    moved = 2.5 * frames @ np.array([[c, -s_], [s_, c]]).T + np.array([40.0, -7.0])
    assert D.identity_distance(D.face_signature(moved, np.ones(12, bool), index), ref) < 1e-6
    other = S.landmarks_3d(0.0, 0.0, S.Scene(radii=(0.9, 1.0, 0.6), eye_centre=(0.4, 0.2), mouth_centre=(0.0, -0.4)))
    other_frames = np.stack([S.project(other, r, t, intr) for r, t in zip(rot, trans)])
    assert D.identity_distance(D.face_signature(other_frames, None, index), ref) > 1.5 * DubConfig().identity_threshold


def test_regions_cover_lips_and_chin():
    from thg_nerf.preprocess.topology import get_topology

    topo = get_topology("mediapipe")
    shape = S.landmarks_3d(0.0, 0.0, S.Scene())
    mouth = set(D.region_indices(topo, shape, "mouth").tolist())
    lower = set(D.region_indices(topo, shape, "lower-face").tolist())
    assert set(topo.lips) <= mouth <= lower and topo.chin in mouth
    assert len(lower - mouth) >= 4  # the jaw line up to the nose


def test_render_image_pixel_subset_equals_full_frame(run):
    import torch

    from thg_nerf.render.volume import render_image

    feats = np.zeros((1, *run.model.cond_shape), np.float32)  # one frame's condition source (any values)
    c2w = run.train_c2w[3]
    intr = run.intrinsics.scaled(32, 32)
    pixels = torch.tensor([0, 5, 32 * 10 + 15, 32 * 20 + 15, 32 * 32 - 1, 32 * 17 + 2])
    full = render_image(run.model, c2w, intr, feats, 0, 0.0, run.cfg.render, run.device)
    part = render_image(run.model, c2w, intr, feats, 0, 0.0, run.cfg.render, run.device, pixels=pixels)
    assert part["fg"].shape == (6, 3) and part["alpha"].shape == (6,)
    v, u = pixels // 32, pixels % 32
    torch.testing.assert_close(part["fg"], full["fg"][v, u], atol=1e-5, rtol=0)
    torch.testing.assert_close(part["alpha"], full["alpha"][v, u], atol=1e-5, rtol=0)


# ---------------------------------------------------------------- dubbing


def test_plan_lengths_trim_and_pingpong(run, original):
    orig = D.load_original(run, original.video, data=original.data)
    assert orig.size == CANVAS and orig.offset == CROP[:2] and orig.scale == (2.0, 2.0) and not orig.reused
    # the same (synthetic) person; a 0.64 s clip sees other head poses than the training clip, hence not 0
    assert orig.identity_distance is not None and orig.identity_distance < DubConfig().identity_threshold
    short = D.plan_dub(run, orig, speech_like(0.4, SR, seed=2), SR)
    assert short.schedule.tolist() == list(range(10)) and short.cond.shape[0] == 10
    long = speech_like(1.0, SR, seed=2)
    assert D.plan_dub(run, orig, long, SR, DubConfig(loop="trim")).schedule.tolist() == list(range(N_ORIG))
    ping = D.plan_dub(run, orig, long, SR)
    assert ping.n_frames == 25 and ping.size == CANVAS and ping.fps == FPS
    assert np.all(np.abs(np.diff(ping.schedule)) == 1) and ping.schedule.max() < N_ORIG


def test_dub_frames_change_only_the_mouth_region_which_speaks_the_new_audio(run, original, tmp_path):
    from thg_nerf.render.output import open_output

    orig = D.load_original(run, original.video, data=original.data)
    # 20 frames (ping-pongs the 16-frame original); slower syllables than the original's speech, so the two
    # mouth-opening series are nearly uncorrelated (0.12)
    speech = speech_like(0.8, SR, seed=41, syllable_hz=2.5)
    plan = D.plan_dub(run, orig, speech, SR)
    frames = list(D.dub_frames(run, orig, plan))
    assert [f.source for f in frames] == plan.schedule.tolist()
    # ping-pong turns where the face is still
    speed = D.motion_speed(original.info.landmarks)
    turns = [s for a, s, b in zip(plan.schedule, plan.schedule[1:], plan.schedule[2:]) if a == b]
    assert turns and all(speed[t] <= np.median(speed) for t in turns), (turns, speed)
    out = tmp_path / "dub.mp4"
    with open_output(out, plan.size, plan.fps, crf=D.DUB_CRF) as writer:  # as dub_to_file writes
        for f in frames:
            writer.write(f.image)
    decoded = list(iter_frames(out))
    darkness = []
    for f, dec in zip(frames, decoded):
        src = original.frames[f.source]
        assert f.box is not None and f.weight is not None and f.weight.max() == 1.0
        changed = np.zeros(src.shape[:2], bool)
        x0, y0, x1, y1 = f.box
        changed[y0:y1, x0:x1] = f.weight > 0
        np.testing.assert_array_equal(f.image[~changed], src[~changed])  # untouched, bit for bit
        assert psnr(dec[~changed], src[~changed]) >= 40.0  # ... and up to codec noise in the file
        assert changed.mean() < 0.1
        mouth = to_source(original.info.landmarks[f.source][list(S.LIPS_INNER)].mean(0))
        assert x0 <= mouth[0] < x1 and y0 <= mouth[1] < y1  # the region sits on the mouth in the source frame
        assert f.weight[int(mouth[1]) - y0, int(mouth[0]) - x0] == 1.0
        darkness.append(interior_darkness(f.image, original.info, f.source))
    env = audio_envelope(speech, SR, FPS, plan.n_frames)
    real = original.info.mouth_open[plan.schedule]
    assert np.ptp(darkness) >= 8, darkness
    c_new, c_old = corr(darkness, env), corr(darkness, real)
    assert c_new >= 0.7 and c_new >= c_old + 0.3, (c_new, c_old)


def test_dub_cli_writes_source_size_fps_and_new_audio(trained_synthetic_run, original, tmp_path, capsys):
    duration = 0.72  # 18 frames: longer than the 16-frame original, so it ping-pongs
    wav = tmp_path / "new.wav"
    write_wav(wav, speech_like(duration, 44100, seed=7), 44100)
    out = tmp_path / "dubbed.mp4"
    rc, err = run_cli(capsys, trained_synthetic_run.run_dir, "--video", original.video, "--audio", wav, "-o", out,
                      "--data", original.data)
    assert rc == 0, err
    info = probe_video(out)
    assert (info.width, info.height) == CANVAS and info.fps == FPS and info.has_audio
    assert info.n_frames == round(duration * FPS) and abs(info.duration - duration) <= 1 / FPS
    assert abs(load_audio(out).size / SR - duration) <= 1 / FPS
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    # which original frame each output frame shows, from the pixels above the mouth
    top = int(to_source(original.info.landmarks[:, list(S.LIPS_OUTER)].reshape(-1, 2)).min(0)[1]) - 8
    shown = [int(np.argmax([psnr(f[:top], o[:top]) for o in original.frames])) for f in iter_frames(out)]
    assert shown[0] == 0 and np.all(np.abs(np.diff(shown)) == 1) and max(shown) < N_ORIG, shown
    assert any(a == b for a, b in zip(shown, shown[2:])), shown  # it turned


def test_dub_reuses_the_run_dataset_for_the_training_clip(trained_synthetic_run, tmp_path):
    from thg_nerf.train.checkpoint import load_run

    run_dir, data = tmp_path / "run", tmp_path / "data"
    shutil.copytree(trained_synthetic_run.data_dir, data, ignore=shutil.ignore_patterns("cache"))
    shutil.copytree(trained_synthetic_run.run_dir, run_dir, ignore=shutil.ignore_patterns("tb"))
    video = data / "frames.mp4"  # crop none: the training frames are the source
    meta = read_json(data / "meta.json")
    meta["source"]["path"] = str(video)
    write_json(data / "meta.json", meta)
    info = json.loads((run_dir / "run.json").read_text())
    info["data_dir"] = str(data)
    (run_dir / "run.json").write_text(json.dumps(info))
    run = load_run(run_dir, device="cpu")
    orig = D.load_original(run, video)
    assert orig.reused and orig.dataset.root == data and orig.scale == (1.0, 1.0) and orig.identity_distance is None


def test_dub_bad_inputs_are_one_line_errors_without_output(trained_synthetic_run, original, tmp_path, capsys):
    run_dir = trained_synthetic_run.run_dir
    wav = tmp_path / "new.wav"
    write_wav(wav, speech_like(0.4, SR, seed=3), SR)
    out = tmp_path / "out.mp4"
    # someone else: another synthetic face (other proportions) with its own tracking
    other = S.make_synthetic_dataset(tmp_path / "other", n_frames=4, size=64, fps=FPS,
                                     scene=S.Scene(radii=(0.9, 1.0, 0.6), eye_centre=(0.4, 0.2),
                                                   mouth_centre=(0.0, -0.4)))
    capsys.readouterr()
    rc, err = run_cli(capsys, run_dir, "--video", other.path("frames"), "--audio", wav, "-o", out,
                      "--data", other.root)
    assert_clean_failure(rc, err, "does not look like the person", out)
    # a dataset of another video
    rc, err = run_cli(capsys, run_dir, "--video", other.path("frames"), "--audio", wav, "-o", out,
                      "--data", original.data)
    assert_clean_failure(rc, err, "was not made from", out)
    # unreadable files, unusable outputs
    junk = tmp_path / "junk.mp4"
    junk.write_text("not a video")
    rc, err = run_cli(capsys, run_dir, "--video", junk, "--audio", wav, "-o", out)
    assert_clean_failure(rc, err, "cannot read video", out)
    rc, err = run_cli(capsys, run_dir, "--video", original.video, "--audio", junk, "-o", out, "--data", original.data)
    assert_clean_failure(rc, err, "cannot read audio", out)
    rc, err = run_cli(capsys, run_dir, "--video", original.video, "--audio", wav, "-o", tmp_path / "x.mov")
    assert_clean_failure(rc, err, ".mp4 (H.264) or .webm", tmp_path / "x.mov")
    rc, err = run_cli(capsys, run_dir, "--video", original.video, "--audio", wav, "-o", original.video)
    assert rc == 2 and "would overwrite the video input" in err and original.video.is_file()
    rc, err = run_cli(capsys, tmp_path / "nope", "--video", original.video, "--audio", wav, "-o", out)
    assert_clean_failure(rc, err, "run directory not found", out)


def test_dub_video_without_a_face_is_refused(trained_synthetic_run, tmp_path, capsys):
    pytest.importorskip("mediapipe")
    blank = tmp_path / "blank.mp4"
    with VideoWriter(blank, (96, 96), FPS) as writer:
        for _ in range(12):
            writer.write(np.full((96, 96, 3), 128, np.uint8))
    wav = tmp_path / "new.wav"
    write_wav(wav, speech_like(0.4, SR, seed=3), SR)
    out = tmp_path / "out.mp4"
    rc, err = run_cli(capsys, trained_synthetic_run.run_dir, "--video", blank, "--audio", wav, "-o", out,
                      "--cache", tmp_path / "cache")
    assert_clean_failure(rc, err, "no face found", out)


@pytest.mark.media
def test_real_clip_dub(media_file, tmp_path, capsys):
    """With a run trained on the shared macron clip (THG_NERF_TEST_RUN=RUN_DIR), dub 1 s of another speaker
    onto its training clip: the source's size and frame rate, the audio's duration."""
    import os

    clip = media_file("macron_50s_512px_30fps.mp4")
    radio = media_file("drive_radio_16k.wav")
    run_dir = os.environ.get("THG_NERF_TEST_RUN")
    if not run_dir:
        pytest.skip("set THG_NERF_TEST_RUN to a run trained on the shared clip to dub it")
    wav = tmp_path / "radio_1s.wav"
    write_wav(wav, load_audio(radio, SR, end=1.0), SR)
    out = tmp_path / "dub.mp4"
    rc, err = run_cli(capsys, run_dir, "--video", clip, "--audio", wav, "-o", out, "--cache", tmp_path / "cache")
    assert rc == 0, err
    src, got = probe_video(clip), probe_video(out)
    assert (got.width, got.height) == (src.width, src.height) and got.fps == src.fps and got.has_audio
    assert abs(got.duration - 1.0) <= 1 / src.fps
