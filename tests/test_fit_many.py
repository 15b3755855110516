"""``thg-nerf fit-many``: manifest checks, a local Ray fitting tiny synthetic people, a worker killed mid-training
(resumed from its checkpoint), a bad video failing alone, Ctrl-C and reruns."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from thg_nerf.cli.main import main
from thg_nerf.errors import ThgError

REPO = Path(__file__).resolve().parents[1]
#: Tiny people: 40 frames of 32 px, 60 iterations with a checkpoint every 5, a small audio -> motion model.
PEOPLE = ("alice", "bob", "carol")
ITERS = 60
FIT_ARGS = ["--num-cpus", "2", "--iters", str(ITERS), "--set", "train.checkpoint_every=5", "--set",
            "train.batch_rays=256", "--set", "train.max_samples_per_ray=24", "--set", "motion.iters=20",
            "--set", "motion.hidden=16", "--set", "motion.seq_len=16", "--set", "motion.augment.copies=0",
            "--set", "render.max_steps=48", "--set", "train.calibrate_frames=0"]


@dataclass
class People:
    folder: Path
    manifest: Path
    """bad (a text file named .mp4), then alice, bob and carol (synthetic datasets)."""


@pytest.fixture(scope="module")
def people(tmp_path_factory) -> People:
    from thg_nerf.testing.synthetic import make_synthetic_dataset

    folder = tmp_path_factory.mktemp("people")
    for seed, name in enumerate(PEOPLE):
        make_synthetic_dataset(folder / f"{name}_data", n_frames=40, size=32, seed=seed)
    (folder / "bad.mp4").write_text("this is not a video\n" * 20)
    manifest = folder / "people.csv"
    manifest.write_text("name,video,data,consent\nbad,bad.mp4,,\n" + "".join(
        f"{n},,{n}_data,{n} agreed to be modelled\n" for n in PEOPLE))
    return People(folder, manifest)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _cli(*args: str) -> subprocess.Popen:
    """``thg-nerf fit-many ARGS`` in a subprocess that takes Ctrl-C even where this process ignores SIGINT (as a
    background job does)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "OMP_WAIT_POLICY": "PASSIVE"}
    return subprocess.Popen([sys.executable, "-m", "thg_nerf.cli.main", "fit-many", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint)


def _record(root: Path, name: str) -> dict:
    path = root / name / "fit_many.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _train_attempts(root: Path, name: str) -> list[dict]:
    return [a for a in _record(root, name).get("attempts", []) if a["task"] == "train"]


def _wait_for_checkpoint(proc: subprocess.Popen, root: Path, name: str, timeout: float = 150.0) -> dict:
    """The train attempt of ``name`` once its run has a first checkpoint."""
    from thg_nerf.train.checkpoint import list_checkpoints

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        assert proc.poll() is None, proc.communicate()
        attempts = _train_attempts(root, name)
        if attempts and list_checkpoints(root / name / "run"):
            return attempts[-1]
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"{name} never reached a checkpoint: {proc.communicate()}")


@pytest.fixture(scope="module")
def killed_run(people: People, tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path, int]:
    """fit-many of the four people, alice's training worker SIGKILLed after her first checkpoint."""
    pytest.importorskip("ray")
    root = tmp_path_factory.mktemp("fit_many") / "out"
    proc = _cli(str(people.manifest), "-o", str(root), *FIT_ARGS)
    pid = _wait_for_checkpoint(proc, root, "alice")["pid"]
    os.kill(pid, signal.SIGKILL)
    out, err = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), root, pid


@pytest.mark.slow
def test_killed_worker_resumes_and_bad_video_fails_alone(killed_run):
    done, root, killed_pid = killed_run
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("thg-nerf: error: 1 of 4 people failed (bad)")
    summary = {r["name"]: r for r in json.loads((root / "summary.json").read_text())["people"]}
    assert {n: r["status"] for n, r in summary.items()} == {**dict.fromkeys(PEOPLE, "done"), "bad": "failed"}
    err = summary["bad"]["error"]
    assert "cannot read video" in err and "\n" not in err and "Traceback" not in err
    assert f"bad: {err}" in done.stdout
    for name in PEOPLE:
        assert (root / name / "run" / "eval" / "report.json").is_file()
        assert summary[name]["psnr"] > 15 and summary[name]["iteration"] == ITERS
        run_info = json.loads((root / name / "run" / "run.json").read_text())
        assert run_info["consent"]["statement"] == f"{name} agreed to be modelled"
    attempts = _train_attempts(root, "alice")
    assert len(attempts) == 2 and attempts[0]["pid"] == killed_pid and attempts[1]["pid"] != killed_pid
    assert attempts[0]["start_iteration"] == 0 and attempts[1]["start_iteration"] > 0  # resumed, not restarted
    assert summary["alice"]["resumed_from"] == attempts[1]["start_iteration"]
    assert f"resumed from it {attempts[1]['start_iteration']}" in done.stdout
    for name in ("bob", "carol"):
        assert len(_train_attempts(root, name)) == 1 and summary[name]["resumed_from"] is None
    csv_lines = (root / "summary.csv").read_text().splitlines()
    assert csv_lines[0].startswith("name,status,minutes") and len(csv_lines) == 5


@pytest.mark.slow
def test_rerun_skips_finished_people(killed_run, people: People, capsys):
    _, root, _ = killed_run
    manifest = people.folder / "good.csv"
    manifest.write_text("\n".join(line for line in people.manifest.read_text().splitlines()
                                   if not line.startswith("bad,")) + "\n")
    t0 = time.monotonic()
    assert main(["fit-many", str(manifest), "-o", str(root), *FIT_ARGS]) == 0
    assert time.monotonic() - t0 < 10
    out = capsys.readouterr().out
    assert all(f"{n:<6}  skipped" in out for n in PEOPLE), out
    summary = json.loads((root / "summary.json").read_text())["people"]
    assert [r["status"] for r in summary] == ["skipped"] * 3 and all(r["psnr"] for r in summary)
    assert len(_train_attempts(root, "alice")) == 2  # nothing ran again


@pytest.mark.slow
def test_ctrl_c_stops_cleanly(people: People, tmp_path: Path):
    """Ctrl-C: training checkpoints where it stands, the summary says interrupted, exit code 130 (a rerun resumes
    from that checkpoint like the retry above)."""
    from thg_nerf.train.checkpoint import list_checkpoints

    pytest.importorskip("ray")
    manifest = people.folder / "one.csv"
    manifest.write_text("name,data\nalice,alice_data\n")
    root = tmp_path / "out"
    proc = _cli(str(manifest), "-o", str(root), *FIT_ARGS, "--iters", "5000")
    _wait_for_checkpoint(proc, root, "alice")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 130, err
    assert "interrupted" in out and err.strip().splitlines()[-1] == "thg-nerf: interrupted"
    assert json.loads((root / "summary.json").read_text())["people"][0]["status"] == "interrupted"
    stopped_at = list_checkpoints(root / "alice" / "run")[-1][0]
    assert f"interrupted at iteration {stopped_at}/5000" in (root / "alice" / "fit_many.log").read_text()
    assert not (root / "alice" / "run" / "eval").exists()


@pytest.mark.parametrize("case", ["missing_column", "duplicate", "missing_file", "both", "bad_override"])
def test_manifest_errors_are_one_line(case: str, people: People, tmp_path: Path, capsys):
    text = {"missing_column": "person,video\nalice,bad.mp4\n",
            "duplicate": "name,data\nalice,alice_data\nbob,bob_data\nalice,carol_data\n",
            "missing_file": "name,video\nalice,bad.mp4\nbob,nope.mp4\n",
            "both": "name,video,data\nalice,bad.mp4,alice_data\n",
            "bad_override": "name,data,train.nope\nalice,alice_data,3\n"}[case]
    expect = {"missing_column": "m.csv: missing column 'name'",
              "duplicate": "m.csv row 4 (alice): duplicate name 'alice' (also m.csv row 2)",
              "missing_file": f"m.csv row 3 (bob): video not found: {people.folder / 'nope.mp4'}",
              "both": "m.csv row 2 (alice): give either a video or a preprocessed dataset directory (data), not both",
              "bad_override": "m.csv row 2 (alice): config: unknown key 'train.nope'"}[case]
    manifest = people.folder / "m.csv"
    manifest.write_text(text)
    assert main(["fit-many", str(manifest), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"thg-nerf: error: {expect}"]
    assert not (tmp_path / "out").exists()


def test_ray_missing_is_one_line(people: People, tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    assert main(["fit-many", str(people.manifest), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needed for fit-many" in err[0] and "pip install 'thg-nerf[cluster]'" in err[0], err


def test_yaml_manifest_and_per_person_overrides(people: People, tmp_path: Path):
    import argparse

    from thg_nerf.cli.cmd_fit_many import person_jobs
    from thg_nerf.cli.main import build_parser
    from thg_nerf.cluster.manifest import read_manifest

    (people.folder / "consent.txt").write_text("Carol agreed in writing.\n")
    manifest = people.folder / "people.yaml"
    manifest.write_text("people:\n"
                        "  - {name: alice, data: alice_data}\n"
                        "  - name: bob\n    video: bad.mp4\n    iters: 7\n    preset: default\n"
                        "    set: {train.batch_rays: 512}\n"
                        "  - {name: carol, data: carol_data, consent: consent.txt, set: [seed=3]}\n")
    rows = read_manifest(manifest)
    assert [r.name for r in rows] == ["alice", "bob", "carol"]
    assert rows[1].video == people.folder / "bad.mp4" and rows[0].data == people.folder / "alice_data"
    args: argparse.Namespace = build_parser().parse_args(
        ["fit-many", str(manifest), "-o", str(tmp_path), "--iters", "50", "--set", "train.batch_rays=128",
         "--preset", "tiny", "--consent", "Everyone agreed."])
    alice, bob, carol = person_jobs(args, rows, tmp_path, "tiny")
    assert (alice.cfg.train.iters, alice.cfg.train.batch_rays, alice.cfg.preset) == (50, 128, "tiny")
    assert (bob.cfg.train.iters, bob.cfg.train.batch_rays, bob.cfg.preset) == (7, 512, "default")
    assert carol.cfg.seed == 3 and carol.consent["source"] == "file:consent.txt"
    assert alice.consent["statement"] == "Everyone agreed."
    (people.folder / "bad.yaml").write_text("- {name: x, video: bad.mp4, colour: red}\n")
    with pytest.raises(ThgError, match=r"bad.yaml entry 1: unknown column 'colour'"):
        read_manifest(people.folder / "bad.yaml")


def test_progress_listener_sees_every_step():
    from thg_nerf.log import progress, progress_listener

    seen: list[tuple[str, int, int | None]] = []
    with progress_listener(lambda desc, n, total: seen.append((desc, n, total))):
        bar = progress(total=5, initial=2, desc="training")
        bar.update(1)
        bar.update(2)
        bar.close()
        assert list(progress(range(2), desc="frames")) == [0, 1]
    assert list(progress(range(2))) == [0, 1]  # no listener outside the block
    assert seen == [("training", 2, 5), ("training", 3, 5), ("training", 5, 5), ("frames", 0, 2),
                    ("frames", 1, 2), ("frames", 2, 2)]


def test_example_manifest(media_dir: Path):
    from thg_nerf.cluster.manifest import read_manifest

    rows = read_manifest(REPO / "examples" / "fit_many.yaml")
    assert [r.name for r in rows] == ["katie", "macron", "speaker2"] and all(r.video.is_file() for r in rows)
    assert rows[1].overrides == ["preprocess.fps=25"] and rows[2].iters == 3000


def test_progress_table_stages():
    import io

    from thg_nerf.cluster.fit_many import Job, Person, _Table
    from thg_nerf.config import load_config

    cfg = load_config("tiny")
    attempts = [{"session": "s", "task": "train", "start_iteration": 0},
                {"session": "s", "task": "train", "start_iteration": 40}]
    states = {"queued": {}, "prep": {"session": "s", "stage": "preprocess", "attempts": [],
                                     "progress": {"desc": "tracking face", "n": 3, "total": 9}},
              "trainee": {"session": "s", "stage": "train", "attempts": attempts,
                          "progress": {"desc": "training", "n": 57, "total": 100}},
              "evals": {"session": "s", "stage": "eval", "attempts": attempts[:1]}}
    people = [Person(Job(name, cfg), status="running", state=state) for name, state in states.items()]
    people += [Person(Job("fine", cfg), status="done"), Person(Job("older", cfg), status="skipped")]
    out = io.StringIO()
    table = _Table(people, out, live=True)
    table.update()
    table.update()
    text = out.getvalue()
    assert text.count("\x1b[7F") == 1  # the second drawing moves up over the first (header + 6 rows)
    last = text.split("\x1b[7F")[1]
    for line in ("queued", "preprocess: tracking face 3/9", "train it 57/100 (resumed from it 40)", "eval",
                 "done", "done (earlier run)"):
        assert line in last, last
    out = io.StringIO()
    _Table(people, out, live=False).update()
    assert "[fit-many] trainee: train (resumed from it 40)\n" in out.getvalue()
