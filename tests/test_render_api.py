"""TalkingHead API and ``thg-nerf render`` CLI on a stand-in run (the synthetic scene's exact renderer).

The stand-in renders the analytic synthetic head for any pose, eye value and mouth opening (taken from the
audio features), so pose paths, blinks, audio plumbing, compositing, output writing and every CLI error can be
checked quickly and exactly. tests/test_render_e2e.py repeats the key checks on a trained model.
"""

from __future__ import annotations

import numpy as np
import pytest

from thg_nerf.audio.io import audio_envelope, load_audio, write_wav
from thg_nerf.cli.main import main
from thg_nerf.render import talking_head as TH
from thg_nerf.render.poses import rot_y
from thg_nerf.testing import synthetic as S
from thg_nerf.testing.signals import speech_like
from thg_nerf.utils.video import ffmpeg_exe, probe_video

FPS = 25.0
SIZE = 64
SR = 16000


class StandInRun:
    """Duck-typed LoadedRun whose render_frame is the synthetic scene's exact renderer."""

    def __init__(self, run_dir, stop_at: int | None = None, audio_spec: str = "mel") -> None:
        import torch

        self.run_dir = run_dir
        self.scene = S.Scene()
        self.intrinsics = self.scene.intrinsics(SIZE)
        self.device = torch.device("cpu")
        self.fps = FPS
        self.audio_spec = audio_spec
        self.motion_model = None  # conditions are the features themselves: no fast path
        rot, trans = S.head_motion(100, FPS, 6.0, 0, self.scene)
        self.train_c2w = S.c2w_from_rt(rot, trans).astype(np.float32)
        self.train_eye = S.blink_signal(100, FPS, 0).astype(np.float32)
        self.background = np.round(S.background_plate(SIZE, SIZE) * 255).astype(np.uint8)
        self.calls: list[tuple[int, float]] = []
        self.stop_at = stop_at

    def conditions(self, features):
        return features

    def audio_features(self, wave, sr, fps, n_frames):
        from thg_nerf.train.checkpoint import LoadedRun

        return LoadedRun.audio_features(self, wave, sr, fps, n_frames)

    def render_frame(self, c2w, audio_feats, index, eye, size=None):
        import torch

        if self.stop_at is not None and index == self.stop_at:
            raise KeyboardInterrupt
        self.calls.append((index, eye))
        intr = self.intrinsics.scaled(*size) if size else self.intrinsics
        centre = audio_feats[index, audio_feats.shape[1] // 2]
        mouth = float(np.clip(float(centre.mean()) / 2.0, 0.0, 1.0))
        rgb, labels = S.render_synthetic_frame(c2w, intr, mouth, eye, self.scene, ss=1)
        alpha = (labels > 0).astype(np.float32)
        return {"fg": torch.from_numpy(rgb * alpha[..., None]), "alpha": torch.from_numpy(alpha)}


# ---------------------------------------------------------------- measurements (also used by the e2e tests)


def project_point(c2w: np.ndarray, point: np.ndarray, intr) -> np.ndarray:
    """Continuous pixel (x, y) of a head-space point seen by c2w (OpenGL)."""
    rot, trans = S.rt_from_c2w(np.asarray(c2w, dtype=np.float64))
    return S.project(np.asarray(point, dtype=np.float64), rot, trans, intr)


def mouth_box(c2w: np.ndarray, intr, scene: S.Scene) -> tuple[int, int, int, int]:
    """Pixel box (x0, y0, x1, y1) around the synthetic mouth at full opening."""
    cx, cy = scene.mouth_centre
    lw, lh0, lh1 = scene.lips_size
    pts = scene.surface_point(np.array([[cx - lw, cy], [cx + lw, cy], [cx, cy - lh0 - lh1], [cx, cy + lh0 + lh1]]))
    uv = project_point(c2w, pts, intr)
    (x0, y0), (x1, y1) = np.floor(uv.min(0)).astype(int), np.ceil(uv.max(0)).astype(int)
    return max(x0, 0), max(y0, 0), min(x1 + 1, intr.w), min(y1 + 1, intr.h)


def interior_box(c2w: np.ndarray, intr, scene: S.Scene) -> tuple[int, int, int, int]:
    """Pixel box (x0, y0, x1, y1) of the dark mouth interior at full opening."""
    cx, cy = scene.mouth_centre
    mw, mh = scene.mouth_size
    uv = project_point(c2w, scene.surface_point(np.array([[cx - mw, cy], [cx + mw, cy], [cx, cy - mh],
                                                          [cx, cy + mh]])), intr)
    (x0, y0), (x1, y1) = np.floor(uv.min(0)).astype(int), np.ceil(uv.max(0)).astype(int)
    return x0, y0, x1, y1


def darkness(frame: np.ndarray, box) -> float:
    """255 - mean luminance in a box: grows with the mouth opening, also for a blurry render."""
    x0, y0, x1, y1 = box
    return 255.0 - float((frame[y0:y1, x0:x1, :3].astype(np.float64) @ [0.299, 0.587, 0.114]).mean())


def dark_mask(frame: np.ndarray) -> np.ndarray:
    """Pixels of the dark mouth interior (red-brown, much darker than lips and skin)."""
    f = frame[..., :3].astype(np.int32)
    return (f.max(-1) < 110) & (f[..., 0] > f[..., 2] + 8)


def mouth_features(frame: np.ndarray) -> np.ndarray:
    """Lips (strongly red) and dark mouth-interior pixels."""
    f = frame[..., :3].astype(np.int32)
    return (f[..., 0] - f[..., 1] > 75) | dark_mask(frame)


def lip_centroid_x(frame: np.ndarray, y0: int, y1: int) -> float:
    """x of the redness-weighted centroid of rows y0:y1 (the lips; frame in [0, 1] or uint8)."""
    f = frame[y0:y1, :, :3].astype(np.float64)
    f = f * 255.0 if frame.dtype != np.uint8 and f.max() <= 1.0 else f
    w = np.clip(f[..., 0] - f[..., 1] - 50.0, 0.0, None).sum(0)
    return float((w * (np.arange(len(w)) + 0.5)).sum() / max(w.sum(), 1e-9))


def mouth_area(frame: np.ndarray, box) -> int:
    x0, y0, x1, y1 = box
    return int(dark_mask(frame[y0:y1, x0:x1]).sum())


def corr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.std() < 1e-9 or b.std() < 1e-9:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


# ---------------------------------------------------------------- fixtures


@pytest.fixture
def head(tmp_path):
    return TH.TalkingHead(StandInRun(tmp_path / "run"))


@pytest.fixture(scope="module")
def speech_wav(tmp_path_factory):
    path = tmp_path_factory.mktemp("audio") / "speech.wav"
    write_wav(path, speech_like(2.0, SR, seed=3), SR)
    return path


@pytest.fixture
def cli_run(tmp_path, monkeypatch):
    """A run directory whose loading is replaced by the stand-in; returns (run_dir, holder of the run)."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    holder = {"stop_at": None, "spec": "mel"}

    def fake_load(cls, path, device=None):
        holder["run"] = StandInRun(path, holder["stop_at"], holder["spec"])
        return cls(holder["run"])

    monkeypatch.setattr(TH.TalkingHead, "load", classmethod(fake_load))
    return run_dir, holder


def run_cli(capsys, *args: str) -> tuple[int, str]:
    rc = main(["render", *map(str, args), "-q"])
    return rc, capsys.readouterr().err.strip()


def assert_clean_failure(rc: int, err: str, match: str, out_path) -> None:
    assert rc == 2, err
    assert err.startswith("thg-nerf: error: ") and "\n" not in err, err
    assert match in err, err
    assert not out_path.exists()
    assert not [p.name for p in out_path.parent.iterdir() if p.name.startswith(f".{out_path.stem}.tmp")]


# ---------------------------------------------------------------- API


def test_frames_shapes_sizes_and_backgrounds(head):
    wave = speech_like(1.03, SR, seed=1)
    frames = list(head.frames(wave, SR, poses="static"))
    assert len(frames) == round(1.03 * FPS) and frames[0].shape == (SIZE, SIZE, 3) and frames[0].dtype == np.uint8
    run = head.run
    # outside the person the plate shows through unchanged
    corner = frames[0][:6, :6].astype(int)
    assert np.abs(corner - run.background[:6, :6]).max() <= 1
    small = next(iter(head.frames(wave, SR, size=32)))
    assert small.shape == (32, 32, 3)
    rgba = next(iter(head.frames(wave, SR, bg="alpha")))
    assert rgba.shape == (SIZE, SIZE, 4)
    assert rgba[:6, :6, 3].max() == 0 and rgba[SIZE // 4, SIZE // 2, 3] == 255  # background clear, head opaque
    white = next(iter(head.frames(wave, SR, bg="white")))
    assert (white[:6, :6] == 255).all()
    stereo_48k = np.stack([speech_like(0.7, 48000), speech_like(0.7, 48000)], 1)
    assert len(list(head.frames(stereo_48k, 48000, fps=30))) == round(0.7 * 30)


def test_orbit_turns_the_face_as_the_pose_says(head):
    run = head.run
    wave = speech_like(2.0, SR, seed=2)
    static = list(head.frames(wave, SR, poses="static", blink="none"))
    orbit_path = head.plan(wave, SR, poses="orbit", orbit_deg=25, orbit_period=2.0).poses
    orbit = list(head.frames(wave, SR, poses="orbit", blink="none", orbit_deg=25, orbit_period=2.0))
    mouth = run.scene.mouth_point()
    predicted = np.array([project_point(c, mouth, run.intrinsics)[0] for c in orbit_path.c2w])
    _, y0, _, y1 = mouth_box(orbit_path.c2w[0], run.intrinsics, run.scene)  # mouth rows (not the hair)
    measured = []
    for f in orbit + static:
        ys, xs = np.nonzero(mouth_features(f[y0:y1]))
        measured.append(xs.mean() + 0.5 if len(xs) else np.nan)
    measured = np.array(measured)
    n = len(orbit)
    assert np.nanstd(measured[n:]) < 0.3  # static: the face does not move
    yaw = 25 * np.sin(2 * np.pi * np.arange(n) / FPS / 2.0)
    assert corr(measured[:n], -yaw) > 0.95  # positive yaw: the face turns towards the image's left
    assert np.nanmax(np.abs(measured[:n] - predicted)) < 1.5
    static_pose = head.plan(wave, SR, poses="static").poses.c2w[0]
    np.testing.assert_allclose(orbit_path.c2w[12, :3, :3], rot_y(yaw[12]) @ static_pose[:3, :3], atol=1e-5)


def test_mouth_follows_audio_and_silence_keeps_it_closed(head):
    run = head.run
    speech = speech_like(4.0, SR, seed=5)
    silent = np.zeros_like(speech)
    env = audio_envelope(speech, SR, FPS, 100)
    box = mouth_box(head.plan(speech, SR, poses="static").poses.c2w[0], run.intrinsics, run.scene)
    inner = interior_box(head.plan(speech, SR, poses="static").poses.c2w[0], run.intrinsics, run.scene)
    talk = [f for f in head.frames(speech, SR, poses="static", blink="none")]
    quiet = [f for f in head.frames(silent, SR, poses="static", blink="none")]
    talk_area, quiet_area = [mouth_area(f, box) for f in talk], [mouth_area(f, box) for f in quiet]
    assert max(quiet_area) <= 1 and max(talk_area) > 10
    assert corr(talk_area, env) > 0.7
    talk_dark, quiet_dark = [darkness(f, inner) for f in talk], [darkness(f, inner) for f in quiet]
    assert corr(talk_dark, env) > 0.7 and np.ptp(quiet_dark) < 0.5 and max(quiet_dark) <= min(talk_dark) + 0.5


def test_blinks_reach_the_renderer(head):
    wave = speech_like(8.0, SR)
    for _ in head.frames(wave, SR, poses="static", blink="auto", seed=4):
        pass
    eyes = np.array([e for _, e in head.run.calls])
    assert [i for i, _ in head.run.calls] == list(range(200))
    from thg_nerf.render.blinks import blink_signal

    np.testing.assert_allclose(eyes, blink_signal("auto", 200, FPS, head.run.train_eye, FPS, seed=4))
    assert eyes.max() > 0.9 and np.median(eyes) < 0.1


def test_pose_array_and_offsets(head):
    wave = speech_like(0.4, SR)
    plan = head.plan(wave, SR, poses="static")
    arr = np.repeat(plan.poses.c2w[:1], plan.n_frames, 0)
    same = head.plan(wave, SR, poses=arr, yaw=10)
    np.testing.assert_allclose(same.poses.c2w[:, :3, :3], rot_y(10) @ arr[:, :3, :3], atol=1e-5)
    with pytest.raises(TH.ThgError, match="has 3 poses but the audio needs 10"):
        head.plan(wave, SR, poses=arr[:3])


def test_npy_feature_runs_need_features(tmp_path):
    head = TH.TalkingHead(StandInRun(tmp_path, audio_spec="npy:/data/feats.npy"))
    wave = speech_like(0.4, SR)
    with pytest.raises(TH.ThgError, match="precomputed audio features"):
        head.plan(wave, SR)
    feats = np.zeros((10, 16, 32), np.float32)
    assert len(list(head.frames(wave, SR, features=feats))) == 10


def test_render_to_file_mp4_trimmed(head, speech_wav, tmp_path):
    out = head.render_to_file(speech_wav, tmp_path / "o.mp4", poses="orbit", start=0.3, end=1.5, size=48)
    info = probe_video(out)
    assert info.has_audio and (info.width, info.height) == (48, 48)
    assert info.n_frames == round(1.2 * FPS)
    audio = load_audio(out)
    assert abs(audio.size / SR - 1.2) <= 1 / FPS and abs(info.duration - 1.2) <= 1 / FPS


# ---------------------------------------------------------------- CLI


def test_cli_formats_and_outputs(cli_run, capsys, tmp_path):
    run_dir, _ = cli_run
    wave = speech_like(0.8, 44100, seed=2)
    stereo = tmp_path / "stereo.wav"
    write_wav(stereo, wave, 44100)
    import subprocess

    for ext, codec in ((".mp3", "libmp3lame"), (".m4a", "aac"), (".flac", "flac")):
        subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-i", str(stereo), "-ac", "2", "-c:a", codec,
                        str(tmp_path / f"in{ext}")], check=True)
        out = tmp_path / f"out{ext}.mp4"
        rc, err = run_cli(capsys, run_dir, "--audio", tmp_path / f"in{ext}", "-o", out, "--pose", "static")
        assert rc == 0, err
        info = probe_video(out)
        assert info.has_audio and abs(info.n_frames - 0.8 * FPS) <= 1.5, (ext, info)
    rc, err = run_cli(capsys, run_dir, "--audio", stereo, "-o", tmp_path / "a.webm", "--bg", "alpha",
                      "--fps", "20", "--size", "40", "--yaw", "10", "--smooth", "0.2")
    assert rc == 0, err
    info = probe_video(tmp_path / "a.webm")
    assert (info.width, info.height) == (40, 40) and info.has_audio and info.n_frames == 16
    rc, err = run_cli(capsys, run_dir, "--audio", stereo, "-o", tmp_path / "pngs", "--bg", "#00ff00",
                      "--blink", "none")
    assert rc == 0, err
    assert len(list((tmp_path / "pngs").glob("frame_*.png"))) == 20 and (tmp_path / "pngs" / "audio.wav").is_file()


def test_cli_bad_inputs(cli_run, capsys, tmp_path, speech_wav):
    run_dir, holder = cli_run
    out = tmp_path / "out.mp4"
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk" * 10)
    empty = tmp_path / "empty.wav"
    write_wav(empty, np.zeros(0, np.float32), SR)
    bad_pose = tmp_path / "poses.npy"
    bad_pose.write_bytes(b"\x93NUMPY garbage")
    short_pose = tmp_path / "short.npy"
    np.save(short_pose, np.zeros((5, 3)))
    cases = [
        (["--audio", tmp_path / "missing.wav"], "audio file not found"),
        (["--audio", corrupt], "cannot read audio"),
        (["--audio", empty], "empty"),
        (["--audio", speech_wav, "--pose", f"file:{bad_pose}"], "cannot read pose file"),
        (["--audio", speech_wav, "--pose", f"file:{tmp_path / 'nope.json'}"], "pose file not found"),
        (["--audio", speech_wav, "--pose", f"file:{short_pose}"], "holds 5 poses but the audio needs 50 frames"),
        (["--audio", speech_wav, "--pose", "spin"], "unknown pose mode"),
        (["--audio", speech_wav, "--bg", "alpha"], "--bg alpha needs"),
        (["--audio", speech_wav, "--bg", "mauve"], "--bg 'mauve'"),
        (["--audio", speech_wav, "--orbit-period", "0"], "--orbit-period must be > 0"),
        (["--audio", speech_wav, "--smooth", "-1"], "--smooth must be >= 0"),
        (["--audio", speech_wav, "--size", "4"], "--size must be between"),
        (["--audio", speech_wav, "--fps", "0"], "--fps must be between"),
        (["--audio", speech_wav, "--start", "5"], "empty"),
    ]
    for extra, match in cases:
        rc, err = run_cli(capsys, run_dir, "-o", out, *extra)
        assert_clean_failure(rc, err, match, out)
    holder["spec"] = "npy:/x/feats.npy"
    rc, err = run_cli(capsys, run_dir, "-o", out, "--audio", speech_wav)
    assert_clean_failure(rc, err, "precomputed audio features", out)


def test_cli_ctrl_c_leaves_nothing(cli_run, capsys, tmp_path, speech_wav):
    run_dir, holder = cli_run
    holder["stop_at"] = 7
    for name in ("out.mp4", "frames"):
        out = tmp_path / name
        rc, err = run_cli(capsys, run_dir, "--audio", speech_wav, "-o", out)
        assert rc == 130 and "interrupted" in err
        assert not out.exists()
        assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_cli_incompatible_run(tmp_path, capsys, speech_wav):
    import json

    run_dir = tmp_path / "old_run"
    run_dir.mkdir()
    (run_dir / "run.json").write_text(json.dumps({"schema_version": 0, "thg_nerf_version": "0.0.1"}))
    out = tmp_path / "o.mp4"
    rc, err = run_cli(capsys, run_dir, "--audio", speech_wav, "-o", out)
    assert_clean_failure(rc, err, "run schema 0", out)
    rc, err = run_cli(capsys, tmp_path / "no_run", "--audio", speech_wav, "-o", out)
    assert_clean_failure(rc, err, "run directory not found", out)


# ---------------------------------------------------------------- end to end on a trained model


@pytest.fixture(scope="module")
def trained_head(trained_synthetic_run):
    return TH.TalkingHead.load(trained_synthetic_run.run_dir, device="cpu")


@pytest.mark.slow
def test_e2e_cli_mp4_streams_duration_size(trained_synthetic_run, capsys, tmp_path):
    wav = tmp_path / "novel.wav"
    duration = 0.6
    write_wav(wav, speech_like(duration, 44100, seed=11), 44100)
    out = tmp_path / "out.mp4"
    rc, err = run_cli(capsys, trained_synthetic_run.run_dir, "--audio", wav, "-o", out, "--pose", "orbit",
                      "--orbit-deg", "8", "--size", "32")
    assert rc == 0, err
    info = probe_video(out)
    assert info.has_audio and (info.width, info.height) == (32, 32)
    assert info.n_frames == round(duration * FPS)
    assert abs(info.duration - duration) <= 1 / FPS
    assert abs(load_audio(out).size / SR - duration) <= 1 / FPS
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.slow
def test_e2e_orbit_renders_the_view_the_pose_says(trained_head, trained_synthetic_run):
    """Orbit frames turn the face the way the pose says: the lips move sideways like their projection does,
    and the change from the static view matches the ground truth's change (not the opposite turn's)."""
    truth = trained_synthetic_run.info
    deg = 8.0  # the training clip's yaw range
    silence = np.zeros(int(0.2 * SR), np.float32)  # 5 frames; period 4 frames: yaw 0, +deg, 0, -deg, 0
    plan = trained_head.plan(silence, SR, poses="orbit", blink="none", orbit_deg=deg, orbit_period=4 / FPS)
    frames = [f.astype(np.float64) / 255.0 for f in trained_head.render_plan(plan)]
    static = trained_head.plan(silence, SR, poses="static", blink="none")
    np.testing.assert_allclose(plan.poses.c2w[[0, 2, 4]], static.poses.c2w[[0, 2, 4]], atol=1e-5)
    np.testing.assert_array_equal(frames[0], frames[2])
    gt = [S.render_synthetic_frame(c, truth.intrinsics, 0.0, 0.0, truth.scene) for c in plan.poses.c2w]
    _, y0, _, y1 = mouth_box(plan.poses.c2w[0], truth.intrinsics, truth.scene)
    mouth = truth.scene.mouth_point()
    head_px = (gt[0][1] == 1) | (gt[1][1] == 1) | (gt[3][1] == 1)
    for k, other in ((1, 3), (3, 1)):
        moved = lip_centroid_x(frames[k], y0 - 2, y1 + 2) - lip_centroid_x(frames[0], y0 - 2, y1 + 2)
        says = (project_point(plan.poses.c2w[k], mouth, truth.intrinsics)
                - project_point(plan.poses.c2w[0], mouth, truth.intrinsics))[0]
        assert np.sign(moved) == np.sign(says) and 0.25 * abs(says) <= abs(moved) <= 1.5 * abs(says), (k, moved, says)
        change = (frames[k] - frames[0])[head_px].ravel()
        right = corr(change, (gt[k][0] - gt[0][0])[head_px].ravel())
        wrong = corr(change, (gt[other][0] - gt[0][0])[head_px].ravel())
        assert right > wrong + 0.15, (k, right, wrong)


@pytest.mark.slow
def test_e2e_mouth_follows_audio(trained_head, trained_synthetic_run):
    """Speech opens the (dark) mouth in step with the audio envelope; silence keeps it still and closed."""
    truth = trained_synthetic_run.info
    speech = speech_like(1.2, SR, seed=21)  # three syllables and two pauses
    plan = trained_head.plan(speech, SR, poses="static", blink="none")
    inner = interior_box(plan.poses.c2w[0], truth.intrinsics, truth.scene)
    talk = np.array([darkness(f, inner) for f in trained_head.render_plan(plan)])
    quiet_plan = trained_head.plan(np.zeros(int(0.4 * SR), np.float32), SR, poses="static", blink="none")
    quiet = np.array([darkness(f, inner) for f in trained_head.render_plan(quiet_plan)])
    env = audio_envelope(speech, SR, FPS, plan.n_frames)
    assert np.ptp(talk) >= 8, talk  # the mouth visibly moves with speech
    assert np.ptp(quiet) <= 0.15 * np.ptp(talk), (quiet, talk)  # and stays still in silence
    assert quiet.mean() <= np.percentile(talk, 50), (quiet, talk)  # ... closed, not open
    assert corr(talk, env) > 0.5, (corr(talk, env), talk, env)


@pytest.mark.slow
def test_e2e_audio_motion_render_chain_follows_the_envelope(trained_head, trained_synthetic_run):
    """Novel audio -> predicted motion -> rendered mouth: the rendered mouth opening follows the scene's
    envelope (the synthetic scene opens its mouth by exactly the normalised envelope)."""
    truth = trained_synthetic_run.info
    assert trained_head.run.motion_model is not None
    speech = speech_like(2.0, SR, seed=33)
    plan = trained_head.plan(speech, SR, poses="static", blink="none")
    inner = interior_box(plan.poses.c2w[0], truth.intrinsics, truth.scene)
    talk = np.array([darkness(f, inner) for f in trained_head.render_plan(plan)])
    env = audio_envelope(speech, SR, FPS, plan.n_frames)
    mm = trained_head.run.motion_model
    predicted = mm.mouth(mm.predict(plan.features))
    assert corr(predicted, env) >= 0.9, corr(predicted, env)  # audio -> motion
    assert corr(talk, env) >= 0.9, (corr(talk, env), talk, env)  # ... -> image


@pytest.mark.slow
def test_e2e_static_renders_take_the_fast_path_and_equal_full_renders(trained_head):
    import torch

    from thg_nerf.train.metrics import psnr

    speech = speech_like(0.8, SR, seed=5)  # 20 frames
    plan = trained_head.plan(speech, SR, poses="static", blink="auto")
    assert plan.n_frames >= TH.FAST_MIN_FRAMES and trained_head._static_renderer(plan) is not None
    fast = list(trained_head.render_plan(plan))
    full = list(trained_head.render_plan(plan, fast=False))
    for a, b in zip(fast, full, strict=True):
        assert psnr(torch.from_numpy(a) / 255.0, torch.from_numpy(b) / 255.0) >= 40.0
    assert max(np.abs(a.astype(int) - b).max() for a, b in zip(fast, full)) <= 2
    assert np.ptp([f.astype(float).mean() for f in fast]) > 0  # the frames do change (the mouth moves)
    # a moving camera or a short plan renders every pixel
    assert trained_head._static_renderer(trained_head.plan(speech, SR, poses="orbit")) is None
    assert trained_head._static_renderer(trained_head.plan(speech[:SR // 5], SR, poses="static")) is None


@pytest.mark.slow
def test_e2e_cli_errors_on_a_trained_run(trained_synthetic_run, capsys, tmp_path, speech_wav):
    run_dir = trained_synthetic_run.run_dir
    out = tmp_path / "o.mp4"
    poses = tmp_path / "p.npy"
    np.save(poses, np.zeros((7, 3)))
    rc, err = run_cli(capsys, run_dir, "--audio", speech_wav, "-o", out, "--pose", f"file:{poses}")
    assert_clean_failure(rc, err, "holds 7 poses but the audio needs 50 frames", out)
    empty = tmp_path / "empty.wav"
    write_wav(empty, np.zeros(0, np.float32), SR)
    rc, err = run_cli(capsys, run_dir, "--audio", empty, "-o", out)
    assert_clean_failure(rc, err, "empty", out)


@pytest.mark.media
def test_real_clip_run_renders(media_file, tmp_path, capsys):
    """With a run trained on the shared macron clip (THG_NERF_TEST_RUN=RUN_DIR), render 2 s of new speech."""
    import os

    wav = media_file("drive_macron_speech_48k.wav")
    run_dir = os.environ.get("THG_NERF_TEST_RUN")
    if not run_dir:
        pytest.skip("set THG_NERF_TEST_RUN to a run trained on the shared clip to render it")
    out = tmp_path / "real.mp4"
    rc, err = run_cli(capsys, run_dir, "--audio", wav, "-o", out, "--end", "2", "--pose", "static")
    assert rc == 0, err
    info = probe_video(out)
    assert info.has_audio and abs(info.duration - 2.0) <= 1 / info.fps
