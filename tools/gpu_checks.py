#!/usr/bin/env python3
"""Every GPU check of thg-nerf in one run (<= 8 minutes on one H100/H200), one JSON of results.

Run through ``bash tools/run_gpu_checks.sh`` (which picks the Python). Steps, each in its own process with a
time limit; a failed step is recorded and the later ones still run; the exit status is 1 when any failed:

  env        versions, GPU, tools (nvcc, compute-sanitizer, nerfacc, mediapipe)
  build      JIT-compile the CUDA extension (the path users get; cached under ~/.cache/torch_extensions)
  selftest   ``thg-nerf info --self-test --json``: the first-use self-test, per op
  tests      pytest tests/test_cuda_ops.py tests/test_cuda_host.py tests/test_selftest.py
  sanitizer  compute-sanitizer memcheck over tools/gpu_smoke_ops.py
  kernels    benchmarks/bench_kernels.py: kernels vs nerfacc (when it imports) and vs the torch reference
  train      ``thg-nerf train DATA --preset default``, capped by --max-minutes (and by the time left)
  eval       ``thg-nerf eval``: val PSNR, SSIM, lip metrics (every key of the eval report but per_frame)
  render     benchmarks/bench_render.py frames/s at 512^2, default backend and THG_NERF_BACKEND=torch (ratio)

Inputs: a copy of the repository and one dataset directory preprocessed on a CPU machine (``--data``; see
tools/pack_gpu_check.sh); no internet, no mediapipe needed. ``--wheels DIR`` installs carried wheels (e.g.
imageio-ffmpeg) into a temporary folder first. Outputs in ``--out`` (default $OUT, else WORK/results):
``gpu_checks.json`` (rewritten after every step) and ``gpu_checks.log`` (every step's output); the run, the
benchmarks' files and the test report go to a work folder (``--work``, default a new temporary one, kept).

``--dry-run`` runs the same steps without CUDA, tiny (CI: about a minute on 2 cores): build and sanitizer reduce
to checks of their inputs, the CUDA tests skip, training is a few iterations of the tiny preset on a synthetic
dataset (unless --data), bench_kernels runs --cpu-smoke, bench_render 32^2 on the CPU.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from thg_nerf.errors import ThgError  # noqa: E402
from thg_nerf.utils.fs import write_json  # noqa: E402

CUDA_TESTS = ["tests/test_cuda_ops.py", "tests/test_cuda_host.py", "tests/test_selftest.py"]
#: Dry run: a tiny audio -> motion model (the default field condition trains one before the field).
DRY_MOTION = ["--set", "motion.iters=4", "--set", "motion.augment.copies=0"]
RENDER_SIZE = 512


@dataclass
class Step:
    """One check: what ran, how it ended (ok, failed, timeout, skipped), its figures."""

    name: str
    status: str = "pending"
    seconds: float = 0.0
    commands: list[str] = field(default_factory=list)
    error: str | None = None
    figures: dict[str, Any] = field(default_factory=dict)


@dataclass
class Plan:
    """Per step: the time limit (s) and the time to keep for it while earlier steps run (s)."""

    limit: dict[str, float]
    reserve: dict[str, float]


REAL = Plan(limit={"env": 60, "build": 360, "selftest": 90, "tests": 180, "sanitizer": 180, "kernels": 150,
                   "train": 0, "eval": 150, "render": 240},
            reserve={"env": 5, "build": 60, "selftest": 10, "tests": 30, "sanitizer": 30, "kernels": 30,
                     "train": 90, "eval": 40, "render": 60})
# the dry run's limits only catch hangs: CI machines may be loaded (about a minute unloaded on 2 cores)
DRY = Plan(limit={k: 600 for k in REAL.limit}, reserve={k: 5 for k in REAL.reserve})
STEPS = list(REAL.limit)


def _default_sigint() -> None:
    """In the child: SIGINT raises KeyboardInterrupt even if this script was started with SIGINT ignored."""
    signal.signal(signal.SIGINT, signal.default_int_handler)


class StepFailed(Exception):
    """A step's command or check failed (the message is recorded)."""


class Runner:
    """Runs the steps in order within a global deadline, logs their output and keeps the JSON up to date."""

    def __init__(self, args: argparse.Namespace, out: Path, work: Path, env: dict[str, str]) -> None:
        self.args = args
        self.out = out
        self.work = work
        self.env = env
        self.plan = DRY if args.dry_run else REAL
        self.t0 = time.monotonic()
        self.deadline = self.t0 + 60.0 * args.budget_minutes
        self.log = out / "gpu_checks.log"
        self.log.write_text("")
        self.steps: dict[str, Step] = {}
        self.meta = {"started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                     "dry_run": args.dry_run, "budget_minutes": args.budget_minutes,
                     "max_minutes": args.max_minutes, "data": str(args.data) if args.data else None,
                     "python": sys.executable}
        self.current: Step | None = None
        self.step_deadline = self.deadline
        self.interrupted = False

    # ------------------------------------------------------------------------------------------- bookkeeping

    def time_left(self, name: str) -> float:
        """Seconds step ``name`` may use: its limit, less what the later steps need kept for them."""
        later = STEPS[STEPS.index(name) + 1:]
        keep = sum(self.plan.reserve[s] for s in later if s not in self.args.skip)
        return min(self.deadline - time.monotonic() - keep, self.plan.limit[name] or float("inf"))

    def save(self) -> None:
        failed = [s.name for s in self.steps.values() if s.status in ("failed", "timeout")]
        doc = {**self.meta, "seconds": round(time.monotonic() - self.t0, 1), "failed": failed,
               "steps": {name: asdict(s) for name, s in self.steps.items()}}
        write_json(self.out / "gpu_checks.json", doc)

    def step(self, name: str, fn: Callable[[Runner, Step], None]) -> Step:
        st = Step(name)
        self.steps[name] = st
        left = self.time_left(name)
        if name in self.args.skip:
            st.status = "skipped"
            st.error = "--skip"
        elif left < 5:
            st.status = "failed"
            st.error = "no time left in the budget"
        else:
            print(f"== {name}", flush=True)
            self.current, self.step_deadline = st, time.monotonic() + left
            t = time.monotonic()
            try:
                fn(self, st)
                if st.status == "pending":
                    st.status = "ok"
            except subprocess.TimeoutExpired as e:
                st.status, st.error = "timeout", f"timed out after {e.timeout:.0f} s"
            except (StepFailed, ThgError) as e:
                st.status, st.error = "failed", str(e)
            except Exception as e:  # a bug in a step must not stop the others
                st.status, st.error = "failed", f"{type(e).__name__}: {e}"
            st.seconds = round(time.monotonic() - t, 1)
            print(f"   {st.status} in {st.seconds} s" + (f": {st.error}" if st.error else ""), flush=True)
        self.save()
        return st

    def run(self, cmd: list[str], env: dict[str, str] | None = None, check: bool = True,
            timeout: float | None = None, interrupt: bool = False) -> tuple[int, str]:
        """Run ``cmd`` within the current step's time, its output streamed to the log; returns ``(rc, output)``.

        Past the time it is killed (TimeoutExpired), or with ``interrupt`` sent SIGINT (as Ctrl-C: the trainer
        saves a checkpoint and exits 130) and given 60 s more; then it returns and ``self.interrupted`` is set.
        """
        self.interrupted = False
        assert self.current is not None
        self.current.commands.append(" ".join(cmd))
        limit = self.step_deadline - time.monotonic() if timeout is None else timeout
        with open(self.log, "a") as log:
            log.write(f"\n===== [{self.current.name}] $ {' '.join(cmd)}\n")
            log.flush()
            start = log.tell()
            proc = subprocess.Popen(cmd, cwd=ROOT, env={**self.env, **(env or {})}, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    preexec_fn=_default_sigint if interrupt else None)
            try:
                proc.wait(timeout=max(limit, 1.0))
            except subprocess.TimeoutExpired:
                if interrupt:
                    os.killpg(proc.pid, signal.SIGINT)
                    try:
                        proc.wait(timeout=60)
                        self.interrupted = True
                    except subprocess.TimeoutExpired:
                        pass
                if self.interrupted:
                    check = False
                else:
                    os.killpg(proc.pid, signal.SIGTERM)
                    try:
                        proc.wait(timeout=10)
                    except subprocess.TimeoutExpired:
                        os.killpg(proc.pid, signal.SIGKILL)
                        proc.wait()
                    raise subprocess.TimeoutExpired(cmd, limit) from None
        with open(self.log, errors="replace") as log:
            log.seek(start)
            output = log.read()
        if check and proc.returncode != 0:
            tail = " | ".join(line.strip() for line in output.strip().splitlines()[-3:])
            raise StepFailed(f"exit {proc.returncode}: {tail[-400:]}")
        return proc.returncode, output

    def python(self, *args: str) -> list[str]:
        return [sys.executable, *args]

    def cli(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "thg_nerf.cli.main", *args]


# ----------------------------------------------------------------------------------------------- steps


def _version(dist: str) -> str | None:
    import importlib.metadata

    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def step_env(r: Runner, st: Step) -> None:
    import torch

    cuda = torch.cuda.is_available()
    st.figures.update({
        "python": platform.python_version(), "torch": torch.__version__, "torch_cuda": torch.version.cuda,
        "gpu": torch.cuda.get_device_name(0) if cuda else None, "cpu_count": os.cpu_count(),
        "nvcc": shutil.which("nvcc"), "compute_sanitizer": sanitizer_path(),
        "packages": {d: _version(d) for d in ("nerfacc", "mediapipe", "imageio-ffmpeg", "tensorboard", "matplotlib",
                                              "numpy")},
    })
    if shutil.which("nvidia-smi"):
        _, smi = r.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                       check=False, timeout=30)
        st.figures["nvidia_smi"] = smi.strip()
    if (ROOT / ".git").exists() and shutil.which("git"):
        _, head = r.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], check=False, timeout=10)
        st.figures["commit"] = head.strip()


BUILD = """
import logging, sys, time
logging.basicConfig(level=logging.INFO)
from thg_nerf.ops import _build, backend
t = time.perf_counter()
module = backend.load_extension(jit=False) or _build.jit_load()  # the compiler's error, not a fallback warning
print("extension:", module.__name__, module.__file__)
print(f"load_s={time.perf_counter() - t:.1f}")
"""
BUILD_DRY = """
from thg_nerf.ops import _build
missing = [s for s in _build.SOURCES if not (_build.ROOT / s).is_file()]
assert not missing, missing
print(f"{len(_build.SOURCES)} sources, nvcc flags {_build.NVCC_FLAGS}")
"""


def step_build(r: Runner, st: Step) -> None:
    _, out = r.run(r.python("-c", BUILD_DRY if r.args.dry_run else BUILD))
    if r.args.dry_run:
        st.figures["note"] = "dry run: sources checked, nothing compiled"
        return
    m = re.search(r"load_s=([\d.]+)", out)
    st.figures["build_s"] = float(m.group(1)) if m else None
    st.figures["extension"] = next((ln.split(":", 1)[1].strip() for ln in out.splitlines()
                                    if ln.startswith("extension:")), None)


def step_selftest(r: Runner, st: Step) -> None:
    rc, out = r.run(r.cli("info", "--self-test", "--json"), check=False)
    info = json.loads(out[out.index("{"):])
    st.figures["summary"] = info["backends"]["self_test"]
    st.figures["ops"] = info["backends"]["ops"]
    if rc != 0:
        raise StepFailed(f"self-test: {st.figures['summary']}")


def step_tests(r: Runner, st: Step) -> None:
    junit = r.work / "junit.xml"
    tests = ["tests/test_cuda_ops.py"] if r.args.dry_run else CUDA_TESTS
    rc, _ = r.run(r.python("-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}", *tests),
                  check=False)
    suite = ET.parse(junit).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    failed = [f"{case.get('classname')}::{case.get('name')}" for case in suite.iter("testcase")
              if case.find("failure") is not None or case.find("error") is not None]
    st.figures.update({**counts, "passed": counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"],
                       "failed_tests": failed})
    if rc != 0:
        raise StepFailed(f"{counts['failures'] + counts['errors']} tests failed: {', '.join(failed[:5])}")


def sanitizer_path() -> str | None:
    found = shutil.which("compute-sanitizer")
    for home in (os.environ.get("CUDA_HOME"), "/usr/local/cuda"):
        if not found and home and (Path(home) / "bin" / "compute-sanitizer").is_file():
            found = str(Path(home) / "bin" / "compute-sanitizer")
    return found


def step_sanitizer(r: Runner, st: Step) -> None:
    smoke = r.python("tools/gpu_smoke_ops.py")
    tool = sanitizer_path()
    if r.args.dry_run or tool is None:
        _, out = r.run(smoke)
        st.figures["note"] = "dry run: smoke script without the sanitizer" if r.args.dry_run else \
            "compute-sanitizer not found: smoke script only"
        if not r.args.dry_run:
            st.status = "failed"
            st.error = st.figures["note"]
    else:
        rc, out = r.run([tool, "--tool", "memcheck", "--error-exitcode", "1", *smoke],
                        env={"PYTORCH_NO_CUDA_MEMORY_CACHING": "1"}, check=False)
        m = re.search(r"ERROR SUMMARY: (\d+) error", out)
        st.figures["sanitizer_errors"] = int(m.group(1)) if m else None
        st.figures["smoke_failures"] = [ln[5:] for ln in out.splitlines() if ln.startswith("FAIL ")]
        if rc != 0:
            raise StepFailed(f"memcheck: {st.figures['sanitizer_errors']} errors, smoke failures "
                             f"{st.figures['smoke_failures']}")
    st.figures["smoke"] = next((ln for ln in reversed(out.splitlines()) if ln.strip()), "")


def step_kernels(r: Runner, st: Step) -> None:
    path = r.work / "bench_kernels.json"
    r.run(r.python("benchmarks/bench_kernels.py", "--json", str(path), *(["--cpu-smoke"] if r.args.dry_run else [])))
    st.figures.update(json.loads(path.read_text()))


def make_dry_dataset(r: Runner) -> Path:
    data = r.work / "synthetic"
    r.run(r.python("tools/make_synthetic.py", str(data), "--frames", "16", "--size", "32", "--force", "-q"))
    return data


def checkpoint_state(run_dir: Path) -> dict:
    """``iteration`` and ``elapsed_s`` (training loop seconds) of the newest checkpoint."""
    from safetensors import safe_open

    from thg_nerf.train.checkpoint import list_checkpoints

    ckpts = list_checkpoints(run_dir)
    if not ckpts:
        raise StepFailed(f"no checkpoint in {run_dir}")
    with safe_open(str(ckpts[-1][1]), framework="pt", device="cpu") as f:
        state = json.loads((f.metadata() or {})["state"])
    return {"iteration": int(state["iteration"]), "elapsed_s": round(float(state.get("elapsed_s", 0.0)), 1)}


def step_train(r: Runner, st: Step) -> None:
    data = r.args.data if r.args.data else make_dry_dataset(r)
    r.meta["dataset"] = str(data)
    run_dir = r.work / "run"
    # --max-minutes bounds the training loop only; leave the setup (dataset decoding, the audio -> motion model)
    # and the checkpoint time inside the step's share. Should the setup take longer, the step's deadline sends
    # SIGINT: the trainer checkpoints and stops.
    left_min = (r.step_deadline - time.monotonic() - 60.0) / 60.0
    minutes = max(0.25, min(r.args.max_minutes, left_min))
    if r.args.dry_run:
        cmd = r.cli("-q", "train", str(data), "-o", str(run_dir), "--preset", "tiny", "--iters", "6", "--device", "cpu",
                    "--max-minutes", f"{minutes:.2f}", "--set", "train.checkpoint_every=6",
                    "--set", "train.eval_every=0", "--set", "train.calibrate_frames=4", *DRY_MOTION)
    else:
        cmd = r.cli("-q", "train", str(data), "-o", str(run_dir), "--preset", "default", "--device", "cuda",
                    "--max-minutes", f"{minutes:.2f}")
    t = time.monotonic()
    _, out = r.run(cmd, interrupt=True)
    st.figures.update({"preset": "tiny" if r.args.dry_run else "default", "max_minutes": round(minutes, 2),
                       "wall_s": round(time.monotonic() - t, 1), **checkpoint_state(run_dir)})
    st.figures["setup_s"] = round(st.figures["wall_s"] - st.figures["elapsed_s"], 1)
    if r.interrupted:
        st.figures["note"] = "stopped by SIGINT at the step's deadline (the setup took longer than planned)"
    st.figures["iters_per_s"] = round(st.figures["iteration"] / max(st.figures["elapsed_s"], 1e-9), 2)
    st.figures["kernel_warnings"] = [ln.strip() for ln in out.splitlines() if "self-test failed" in ln
                                     or "could not be built" in ln]
    r.meta["run_dir"] = str(run_dir)


def step_eval(r: Runner, st: Step) -> None:
    run_dir = r.work / "run"
    data = r.meta.get("dataset")
    if "run_dir" not in r.meta or data is None:
        raise StepFailed("no trained run (the train step failed)")
    r.run(r.cli("-q", "eval", str(run_dir), "--data", str(data), "--device", "cpu" if r.args.dry_run else "cuda"))
    report = json.loads((run_dir / "eval" / "report.json").read_text())
    st.figures.update({k: v for k, v in report.items() if k != "per_frame"})


def step_render(r: Runner, st: Step) -> None:
    if "run_dir" not in r.meta:
        raise StepFailed("no trained run (the train step failed)")
    size, frames = (32, ["1", "1"]) if r.args.dry_run else (RENDER_SIZE, ["30", "8"])
    device = "cpu" if r.args.dry_run else "cuda"
    for (name, env), n in zip((("default", {}), ("torch", {"THG_NERF_BACKEND": "torch"})), frames):
        path = r.work / f"bench_render_{name}.json"
        r.run(r.python("benchmarks/bench_render.py", "--run", r.meta["run_dir"], "--device", device,
                       "--sizes", str(size), "--frames", n, "--json", str(path)), env=env)
        res = json.loads(path.read_text())
        st.figures[name] = {"fps": res["sizes"][0]["fps"], "size": res["sizes"][0]["size"],
                            "frames": res["sizes"][0]["frames"], "occupied_fraction": res["occupied_fraction"],
                            "ops": {op: s["backend"] for op, s in res["kernels"]["ops"].items()}}
    st.figures["speedup_vs_torch"] = round(st.figures["default"]["fps"] / max(st.figures["torch"]["fps"], 1e-9), 2)


STEP_FUNCS: dict[str, Callable[[Runner, Step], None]] = {
    "env": step_env, "build": step_build, "selftest": step_selftest, "tests": step_tests,
    "sanitizer": step_sanitizer, "kernels": step_kernels, "train": step_train, "eval": step_eval,
    "render": step_render,
}
assert list(STEP_FUNCS) == STEPS


# ----------------------------------------------------------------------------------------------- main


def install_wheels(wheels: Path, env: dict[str, str]) -> str:
    """Install the carried wheels into a temporary folder put first on PYTHONPATH (here and for the steps)."""
    files = sorted(str(p) for p in wheels.glob("*.whl"))
    if not files:
        raise ThgError(f"--wheels {wheels}: no .whl files there")
    site = Path(tempfile.mkdtemp(prefix="thg_wheels_"))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                    "--target", str(site), *files], check=True)
    sys.path.insert(0, str(site))
    env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return ", ".join(Path(f).name for f in files)


def flatten(prefix: str, value: Any) -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        return [kv for k, v in value.items() for kv in flatten(f"{prefix}.{k}" if prefix else str(k), v)]
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return [kv for i, v in enumerate(value) for kv in flatten(f"{prefix}[{i}]", v)]
    return [(prefix, value)]


def print_summary(r: Runner) -> None:
    print("\n================ GPU checks: results" + (" (DRY RUN, CPU)" if r.args.dry_run else ""))
    for st in r.steps.values():
        print(f"[{st.status.upper():>7}] {st.name:<10} {st.seconds:6.1f} s" + (f"  {st.error}" if st.error else ""))
        for key, val in flatten("", st.figures):
            print(f"            {key} = {val}")
    failed = [s.name for s in r.steps.values() if s.status in ("failed", "timeout")]
    print(f"total {time.monotonic() - r.t0:.0f} s; " + (f"FAILED: {', '.join(failed)}" if failed else "all ok"))
    print(f"results: {r.out / 'gpu_checks.json'}, log: {r.log}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="run_gpu_checks.sh", description=__doc__.split("\n\n")[0],
                                 epilog="Steps: " + ", ".join(STEPS))
    ap.add_argument("--data", type=Path, help="a dataset directory written by 'thg-nerf preprocess' (required "
                    "unless --dry-run, which makes a tiny synthetic one)")
    ap.add_argument("--out", type=Path, default=Path(os.environ["OUT"]) if os.environ.get("OUT") else None,
                    help="folder for gpu_checks.json and gpu_checks.log (default: $OUT, else WORK/results)")
    ap.add_argument("--work", type=Path, help="folder for the build of the run, benchmarks' files (default: a "
                    "temporary folder, kept)")
    ap.add_argument("--max-minutes", type=float, default=2.0, help="training time cap (default 2; the budget "
                    "may cut it shorter)")
    ap.add_argument("--budget-minutes", type=float, help="wall-clock budget of the whole run (default 8; 30 "
                    "with --dry-run): each step's limit leaves the later steps their minimum time")
    ap.add_argument("--wheels", type=Path, help="install these carried wheels first (e.g. imageio-ffmpeg)")
    ap.add_argument("--skip", action="append", default=[], choices=STEPS, help="skip a step (repeatable)")
    ap.add_argument("--dry-run", action="store_true", help="no CUDA: every step in its tiny CPU form (CI)")
    args = ap.parse_args(argv)
    if args.data is None and not args.dry_run:
        ap.error("--data DIR is required (a preprocessed dataset directory; see tools/pack_gpu_check.sh)")
    if args.data is not None and not (args.data / "meta.json").is_file():
        ap.error(f"--data {args.data}: not a dataset directory (no meta.json)")
    if args.budget_minutes is None:
        args.budget_minutes = 30.0 if args.dry_run else 8.0
    if args.max_minutes <= 0 or args.budget_minutes <= 0:
        ap.error("--max-minutes and --budget-minutes must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = (args.work or Path(tempfile.mkdtemp(prefix="thg_gpu_checks_"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    out = (args.out or work / "results").resolve()
    out.mkdir(parents=True, exist_ok=True)
    if args.data is not None:
        args.data = args.data.resolve()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": os.pathsep.join(
        [str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    env.pop("THG_NERF_BACKEND", None)
    env.setdefault("MAX_JOBS", str(os.cpu_count() or 4))
    wheels = install_wheels(args.wheels, env) if args.wheels else None
    try:
        import torch
    except ImportError:
        print(f"run_gpu_checks: error: {sys.executable} has no torch; set PYTHON to an interpreter with torch",
              file=sys.stderr)
        return 2
    if not args.dry_run and not torch.cuda.is_available():
        print(f"run_gpu_checks: error: torch.cuda.is_available() is False for {sys.executable}: run this on a GPU "
              "machine with a CUDA build of torch (or use --dry-run)", file=sys.stderr)
        return 2
    r = Runner(args, out, work, env)
    r.meta.update({"work": str(work), "wheels": wheels})
    for name, fn in STEP_FUNCS.items():
        r.step(name, fn)
    r.save()
    print_summary(r)
    return 1 if any(s.status in ("failed", "timeout") for s in r.steps.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
