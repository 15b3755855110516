"""Evaluation metrics and `thg-nerf eval` error handling (fast; the full eval runs in test_train.py)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from thg_nerf.cli.main import main
from thg_nerf.errors import ThgError
from thg_nerf.train import metrics
from thg_nerf.train.evaluate import evaluate


def test_psnr_and_ssim():
    rng = np.random.default_rng(0)
    img = torch.from_numpy(rng.random((40, 48, 3)).astype(np.float32))
    assert metrics.ssim(img, img) == pytest.approx(1.0, abs=1e-5)
    noisy = (img + 0.1 * torch.from_numpy(rng.standard_normal(img.shape).astype(np.float32))).clamp(0, 1)
    assert metrics.psnr(img, noisy) == pytest.approx(20.0, abs=1.0)
    assert 0.0 < metrics.ssim(img, noisy) < 0.95
    assert metrics.ssim(img, noisy) > metrics.ssim(img, torch.zeros_like(img))


def test_sync_offset_finds_a_known_lag():
    rng = np.random.default_rng(1)
    env = np.convolve(rng.random(80), np.ones(4) / 4, mode="same")
    mouth = np.roll(env, 3)  # the mouth follows the audio 3 frames late
    res = metrics.sync_offset(mouth[5:], env[5:], max_lag=8)
    assert res["offset_frames"] == 3 and res["confidence"] > 0.3
    flat = metrics.sync_offset(np.ones(20), env[:20], max_lag=5)
    assert flat["offset_frames"] is None


def _smooth_noise(rng: np.random.Generator, n: int, width: int = 6) -> np.ndarray:
    return np.convolve(rng.standard_normal(n + width), np.ones(width) / width, "valid")[:n]


def test_corr_reliability_bounds_a_known_correlation():
    """The bootstrap interval holds the series' correlation and narrows with length; the chance level is
    the brute-force one (|corr| over circular shifts of >= 1 s) and sits below a real correlation."""
    rng = np.random.default_rng(0)
    widths = []
    for n in (200, 2000):
        common, a_own, b_own = (_smooth_noise(rng, n) for _ in range(3))
        a, b = common + a_own, common + b_own  # true correlation 0.5
        res = metrics.corr_reliability(a, b, fps=25.0)
        c = np.corrcoef(a, b)[0, 1]
        lo, hi = res["interval_90"]
        assert lo < c < hi and lo < 0.5 < hi
        widths.append(hi - lo)
        null = [abs(np.corrcoef(np.roll(a, s), b)[0, 1]) for s in range(25, n - 25 + 1)]
        assert res["chance_95"] == pytest.approx(np.percentile(null, 95), abs=1e-3)
        assert res["chance_95"] < c
    assert widths[1] < 0.5 * widths[0]
    unrelated = metrics.corr_reliability(_smooth_noise(rng, 500), _smooth_noise(rng, 500), fps=25.0)
    assert unrelated["interval_90"][0] < 0.0 < unrelated["interval_90"][1]
    assert metrics.corr_reliability(np.arange(90.0), np.arange(90.0), fps=25.0)["interval_90"] is None


def test_corr_reliability_does_not_depend_on_its_chunking(monkeypatch):
    """Long clips are processed in row chunks (bounded memory); the figures are those of one big chunk."""
    rng = np.random.default_rng(1)
    common = _smooth_noise(rng, 300)
    a, b = common + _smooth_noise(rng, 300), common + _smooth_noise(rng, 300)
    whole = metrics.corr_reliability(a, b, fps=25.0)
    monkeypatch.setattr(metrics, "CORR_CHUNK_VALUES", 7 * 300)  # 7 rows per chunk, a ragged last one
    assert metrics.corr_reliability(a, b, fps=25.0) == whole


def test_series_av_offset_reads_a_known_lag_and_not_unrelated_audio():
    """A prediction 3 frames late (audio late) reads +3 frames with a confidence that ``auto`` applies;
    an unrelated one stays below it; a clip too short for the null has none."""
    from thg_nerf.preprocess.avsync import CONFIDENT

    rng = np.random.default_rng(2)
    real = _smooth_noise(rng, 300)
    pred = np.roll(real, 3) + 0.8 * _smooth_noise(rng, 300)  # pred[t] ~ real[t - 3]
    real[[10, 50, 51]] = np.nan  # frames without a tracked mouth
    res = metrics.series_av_offset(pred, real, fps=25.0)
    assert res["offset_frames"] == 3 and res["offset_s"] == pytest.approx(0.12)
    assert res["confidence"] >= CONFIDENT and res["peak_corr"] > 0.5
    assert metrics.series_av_offset(-np.roll(pred, -6), real, fps=25.0)["offset_frames"] != 3
    unrelated = [metrics.series_av_offset(_smooth_noise(rng, 300), real, fps=25.0)["confidence"] for _ in range(10)]
    assert max(unrelated) < CONFIDENT
    assert metrics.series_av_offset(pred[:40], real[:40], fps=25.0)["confidence"] == 0.0


def test_mouth_opening_dark_grows_with_a_dark_mouth():
    img = np.full((64, 64, 3), 200, dtype=np.uint8)
    box = np.array([16, 16, 48, 48], dtype=np.float32)
    closed = metrics.mouth_opening_dark(img, box)
    img[28:36, 20:44] = 20
    assert closed == 0.0 and metrics.mouth_opening_dark(img, box) == pytest.approx(8 * 24 / 32**2)


def test_eval_errors_are_one_line(trained_synthetic_run, tmp_path, capsys):
    with pytest.raises(ThgError, match="not found"):
        evaluate(tmp_path / "nope")
    run = tmp_path / "run"
    shutil.copytree(trained_synthetic_run.run_dir, run, ignore=shutil.ignore_patterns("eval"))
    info = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**info, "data_dir": str(tmp_path / "moved")}))
    with pytest.raises(ThgError, match="--data"):
        evaluate(run)
    for p in (run / "checkpoints").iterdir():
        p.unlink()
    capsys.readouterr()
    assert main(["eval", str(run), "--data", str(trained_synthetic_run.data_dir), "-q"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no checkpoint" in err[0]
    assert not (run / "eval").exists()


def test_cross_speaker_check_on_another_persons_clip(trained_synthetic_run, tmp_path, media_file):
    """``eval --cross``: another person's clip preprocessed once into the cache, their audio voice-normalised
    and driven through this run's motion model, correlated with their tracked mouth."""
    from thg_nerf.audio.io import load_audio
    from thg_nerf.audio.voice import VoiceModel
    from thg_nerf.train.checkpoint import load_run
    from thg_nerf.train.evaluate import cross_speaker

    video = media_file("katiehill_8s_512px_25fps.mp4")
    run = load_run(trained_synthetic_run.run_dir)
    assert run.motion_model.voice is None  # 4 s of synthetic audio: too little speech for a voice model
    assert cross_speaker(run, video, tmp_path / "cache", tmp_path)["voice_warp"] == 1.0
    # with a man's voice model (macron's), her voice is warped down towards his (docs/BENCHMARKS.md: 0.80)
    run.motion_model.voice = VoiceModel.fit(load_audio(media_file("macron_50s_512px_30fps.mp4"), 16000)[:45 * 16000])
    res = cross_speaker(run, video, tmp_path / "cache", tmp_path)
    assert res["frames"] >= 150 and -1.0 <= res["corr"] <= 1.0
    assert 0.8 - 1e-6 <= res["voice_warp"] <= 0.85
    assert abs(res["best_lag_frames"]) <= 10
    lo, hi = res["interval_90"]
    assert lo <= res["corr"] <= hi and 0.0 < res["chance_95"] < 1.0
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        pass
    else:
        assert (tmp_path / f"cross_{video.stem}.png").is_file()
    tracking = tmp_path / "cache" / video.stem / "tracking.npz"
    stamp = tracking.stat().st_mtime_ns
    assert cross_speaker(run, video, tmp_path / "cache", tmp_path) == res  # the cached clip is reused
    assert tracking.stat().st_mtime_ns == stamp
    assert set(res["av_check"]) == {"offset_frames", "offset_s", "peak_corr", "confidence", "applied"}
    assert res["av_check"]["applied"] is (res["av_check"]["confidence"] >= 4.0 and res["av_check"]["offset_s"] != 0)


def test_cross_speaker_applies_a_confident_av_offset(trained_synthetic_run, tmp_path, media_file, monkeypatch):
    """A confident offset read by the run's model advances the clip's audio before the figures (as
    preprocessing does with its own estimate); a forced ``preprocess.av_offset`` leaves it to preprocessing."""
    from thg_nerf.audio.io import load_audio
    from thg_nerf.preprocess.avsync import shift_audio
    from thg_nerf.train import evaluate as ev
    from thg_nerf.train.checkpoint import load_run

    video = media_file("katiehill_8s_512px_25fps.mp4")
    run = load_run(trained_synthetic_run.run_dir)
    plain = ev.cross_speaker(run, video, tmp_path / "cache", tmp_path)
    monkeypatch.setattr(ev.metrics, "series_av_offset", lambda pred, real, fps: {
        "offset_frames": 3, "offset_s": 0.12, "peak_corr": 0.5, "confidence": 9.0})
    res = ev.cross_speaker(run, video, tmp_path / "cache", tmp_path)
    ds = ev.cross_dataset(video, tmp_path / "cache", run.cfg.preprocess)
    shifted, *_ = ev.cross_mouth(run.motion_model, ds, shift_audio(load_audio(ds.path("audio"), 16000), 16000, 0.12))
    assert res["av_check"]["applied"] and res["av_offset_s"] == pytest.approx(0.12)
    assert res["corr"] == shifted["corr"] and res["corr_unshifted"] == plain["corr"]
    run.cfg.preprocess.av_offset = "0"
    forced = ev.cross_speaker(run, video, tmp_path / "cache", tmp_path)
    assert not forced["av_check"]["applied"] and "corr_unshifted" not in forced
