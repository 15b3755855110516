"""Audio-video offset (thg_nerf/preprocess/avsync.py): known shifts of exactly synced synthetic pairs, unrelated
audio, the setting and the CLI flag, and the pipeline on the katiehill clip (skipped without the shared media).
"""

from __future__ import annotations

import json
import wave as wavmod
from pathlib import Path

import numpy as np
import pytest

from thg_nerf.audio.io import audio_envelope, load_audio, write_wav
from thg_nerf.cli.main import main as cli_main
from thg_nerf.errors import ThgError
from thg_nerf.preprocess.avsync import (
    AUTO_MIN_S,
    BIAS_S,
    CONFIDENT,
    applied_offset,
    estimate_av_offset,
    parse_av_offset,
    shift_audio,
    shift_wav,
)
from thg_nerf.preprocess.signals import mouth_opening
from thg_nerf.testing.signals import varied_speech
from thg_nerf.testing.synthetic import FLIP, Scene, landmarks_3d, project

SR, FPS = 16000, 25.0
KATIE = "katiehill_8s_512px_25fps.mp4"
#: ``Topology.mouth`` of the mediapipe mesh, whose numbering the synthetic head's landmarks use.
MOUTH = (13, 14, 61, 291)


def _synthetic_mouth(wave: np.ndarray, seconds: float) -> np.ndarray:
    """Mouth opening measured on the synthetic head's landmarks (rest pose) whose lips follow the envelope."""
    scene = Scene()
    env = audio_envelope(wave, SR, FPS, int(seconds * FPS))
    intr = scene.intrinsics(256)
    lms = np.stack([project(landmarks_3d(m, 0.0, scene), FLIP, scene.rest_translation(), intr)
                    for m in env / env.max()])
    return mouth_opening(lms, MOUTH)


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray]:
    """(mouth [N] from landmarks, audio) in exact sync, 16 s at 25 fps."""
    wave = varied_speech(16.0, SR, seed=3)
    return _synthetic_mouth(wave, 16.0), wave


@pytest.mark.parametrize("shift", [-0.2, 0.0, 0.2])
def test_known_shift_is_recovered(pair, shift: float):
    mouth, wave = pair
    late = shift_audio(wave, SR, -shift)  # the audio made `shift` s late
    est = estimate_av_offset(mouth, np.ones(len(mouth), bool), late, SR, FPS)
    assert abs(est.raw_lag_s - shift) < 0.25 / FPS  # exact sync: no articulatory lead to calibrate away
    assert est.offset_s == pytest.approx(est.raw_lag_s - BIAS_S) and abs(est.offset_s - shift) < 1.0 / FPS
    assert est.confident and est.confidence >= CONFIDENT and est.peak_corr > 0.8
    assert applied_offset("auto", est.offset_s, est.confidence) == est.offset_s


def test_unrelated_signals_are_not_confident(pair):
    mouth, wave = pair
    valid = np.ones(len(mouth), bool)
    rng = np.random.default_rng(0)
    noise = np.convolve(rng.standard_normal(len(mouth)), np.ones(3) / 3, mode="same")
    other = varied_speech(16.0, SR, seed=11)
    for m, w in ((noise, wave), (mouth, other)):
        est = estimate_av_offset(m, valid, w, SR, FPS)
        assert est.confidence < CONFIDENT and not est.confident
        assert applied_offset("auto", est.offset_s, est.confidence) == 0.0
    short = estimate_av_offset(mouth[:30], valid[:30], wave[:30 * 640], SR, FPS)
    assert short.confidence == 0.0


def test_setting_and_shift():
    assert parse_av_offset("auto") is None and parse_av_offset(" AUTO ") is None
    assert parse_av_offset("0.2") == 0.2 and parse_av_offset(-0.12) == -0.12 and parse_av_offset("0") == 0.0
    for bad in ("abc", "nan", "inf", "6", True, None, ""):
        with pytest.raises(ThgError, match="av_offset"):
            parse_av_offset(bad)
    assert applied_offset("0", 0.3, 99.0) == 0.0 and applied_offset(0.1, 0.3, 0.0) == 0.1
    assert applied_offset("auto", 0.3, CONFIDENT - 0.01) == 0.0 and applied_offset("auto", -0.3, CONFIDENT) == -0.3
    assert applied_offset("auto", 0.9 * AUTO_MIN_S, 99.0) == 0.0
    x = np.arange(1, 11, dtype=np.float32)
    assert shift_audio(x, 10, 0.3).tolist() == [4, 5, 6, 7, 8, 9, 10, 0, 0, 0]  # audio late: advance it
    assert shift_audio(x, 10, -0.2).tolist() == [0, 0, 1, 2, 3, 4, 5, 6, 7, 8]
    assert shift_audio(x, 10, 2.0).tolist() == [0] * 10 and shift_audio(x, 10, -2.0).tolist() == [0] * 10


def _pcm(path: Path) -> np.ndarray:
    with wavmod.open(str(path), "rb") as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")


def test_shift_wav_is_exact(tmp_path: Path):
    wave = varied_speech(1.0, SR, seed=1, gain=0.9)
    write_wav(tmp_path / "a.wav", wave, SR)
    shift_wav(tmp_path / "a.wav", tmp_path / "b.wav", 0.05)
    a, b = _pcm(tmp_path / "a.wav"), _pcm(tmp_path / "b.wav")
    assert len(a) == len(b) and np.array_equal(b, shift_audio(a, SR, 0.05))


@pytest.mark.parametrize("cmd", ["preprocess", "fit"])
def test_cli_flag_parses(cmd: str, tmp_path: Path):
    from thg_nerf.cli.cmd_preprocess import preprocess_overrides
    from thg_nerf.cli.common import resolve_config
    from thg_nerf.cli.main import build_parser

    base = [cmd, "v.mp4", "-o", str(tmp_path / "x"), "--preset", "tiny"]
    for value, expect in (("auto", "auto"), ("-0.2", "-0.2"), ("0", "0")):
        args = build_parser().parse_args(base + ["--av-offset", value])
        assert resolve_config(args, preprocess_overrides(args)).preprocess.av_offset == expect
    args = build_parser().parse_args(base + ["--set", "preprocess.av_offset=0.15"])
    assert resolve_config(args, preprocess_overrides(args)).preprocess.av_offset == 0.15
    assert resolve_config(build_parser().parse_args(base), {}).preprocess.av_offset == "auto"


def test_cli_bad_value_is_one_line(tmp_path: Path, capsys):
    """Checked before anything is read or written (``fit`` runs the same check, preprocessing first)."""
    out = tmp_path / "out"
    code = cli_main(["preprocess", str(tmp_path / "v.mp4"), "-o", str(out), "--preset", "tiny", "--av-offset", "soon"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "--av-offset" in err[0] and "'soon'" in err[0]
    assert not out.exists()


def test_pipeline_reports_and_applies_offset(media_file, tmp_path: Path, monkeypatch):
    """katiehill end to end: an auto run interrupted before the preview, resumed with a forced offset: only the
    shifted audio, the features and the preview are redone; the report, meta and audio.wav carry the offset."""
    pytest.importorskip("mediapipe")
    from thg_nerf.audio.features import extract_features
    from thg_nerf.config import load_config
    from thg_nerf.dataset import load_dataset
    from thg_nerf.preprocess import pipeline

    video, out = media_file(KATIE), tmp_path / "data"

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    cfg = load_config("tiny", {"preprocess": {"size": 128}}).preprocess
    monkeypatch.setattr(pipeline, "_step_preview", interrupted)
    with pytest.raises(KeyboardInterrupt):
        pipeline.preprocess(video, out, cfg)
    monkeypatch.undo()
    first = json.loads(Path(str(out) + ".partial", pipeline.AVSYNC).read_text())

    cfg.av_offset = "0.2"
    pipeline.preprocess(video, out, cfg)
    report = json.loads((out / "report.json").read_text())
    assert {"audio", "detect", "scan", "track", "avsync", "masks", "background"} <= set(report["reused_steps"])
    assert not {"align", "features", "preview"} & set(report["reused_steps"])
    assert report["av_offset_estimate_s"] == first["estimate_s"] and -0.5 <= first["estimate_s"] <= 0.5
    assert report["av_offset_confidence"] == first["confidence"] >= 0
    assert report["av_offset_s"] == 0.2 and report["av_offset_applied"] is True
    ds = load_dataset(out)
    assert ds.meta["audio"]["av_offset_s"] == 0.2 and ds.meta["preprocess"]["config"]["av_offset"] == "0.2"
    raw = load_audio(video, sr=SR)
    aligned = load_audio(out / "audio.wav", sr=SR)
    assert len(aligned) == len(raw)
    assert np.abs(aligned - shift_audio(raw, SR, 0.2)).max() < 1e-3 and aligned[-int(0.2 * SR):].max() == 0
    feats = extract_features(aligned, SR, ds.fps, ds.n_frames, ds.meta["audio"]["features"])
    assert np.abs(ds.audio_features().astype(np.float32) - feats).max() < 1e-2
