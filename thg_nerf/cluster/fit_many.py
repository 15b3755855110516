"""``thg-nerf fit-many``: fit many people on a Ray cluster (docs/CLUSTER.md).

Each person is two Ray tasks: preprocessing (CPU) and training + evaluation (a GPU where the cluster has
them, else CPU). Outputs go under ROOT, which every worker must see (a local folder or a shared filesystem)::

    ROOT/NAME/data/          the dataset (unless the manifest names an already preprocessed one)
    ROOT/NAME/run/           the run; run/eval/report.json marks the person finished
    ROOT/NAME/fit_many.json  the tasks' record: attempts (pid, host, start iteration), stage, progress, error
    ROOT/NAME/fit_many.log   the workers' log lines for this person
    ROOT/summary.json, ROOT/summary.csv

A worker that dies is retried (``retries``) and training resumes from the run's last checkpoint; a user
error (bad video, ...) fails that person alone with its one-line message and is not retried. A rerun skips
finished people and resumes the others. The driver polls the ``fit_many.json`` files for its live table.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import os
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from thg_nerf import __version__
from thg_nerf.config import Config
from thg_nerf.errors import MissingDependencyError, ThgError
from thg_nerf.log import get_logger, progress_listener, setup_logging
from thg_nerf.utils.fs import atomic_file, read_json, write_json

log = get_logger(__name__)

STATE_FILE = "fit_many.json"
LOG_FILE = "fit_many.log"
SUMMARY_FIELDS = ("name", "status", "minutes", "attempts", "resumed_from", "iteration", "psnr", "ssim", "lmd",
                  "lip_corr", "lip_amplitude", "motion_mouth_corr", "sync_offset_frames", "error", "run")
#: Seconds between two progress writes of a worker.
PROGRESS_EVERY_S = 0.5
#: Seconds the driver waits, after Ctrl-C, for interrupted training to write its checkpoint.
INTERRUPT_GRACE_S = 20.0
#: Ray's setting of the niceness its workers add to their own (Ray's default: 15).
WORKER_NICENESS_ENV = "RAY_worker_niceness"


class JobsFailedError(ThgError):
    """Some people failed (the others finished): exit code 1."""

    exit_code = 1


@dataclass
class Job:
    """One person to fit (paths absolute)."""

    name: str
    cfg: Config
    video: Path | None = None
    data: Path | None = None
    """An already preprocessed dataset directory (then ``video`` is None and preprocessing is skipped)."""
    audio: Path | None = None
    consent: dict | None = None
    """The consent record of a new run (``thg_nerf.provenance.consent_record``)."""


@dataclass
class ClusterOptions:
    """Where and how the jobs run."""

    address: str | None = None
    """An existing cluster (``auto``, ``HOST:PORT``, ``ray://HOST:PORT``); None starts a local Ray."""
    num_cpus: int | None = None
    """CPUs of the local Ray (default: all of this machine's)."""
    gpus_per_job: float = 1.0
    """GPUs of a training job where the cluster has GPUs (fractions share a GPU; 0 trains on CPUs)."""
    cpus_per_job: int = 1
    """CPUs of every job (torch threads of the worker)."""
    retries: int = 2
    """Retries of a job whose worker died."""
    device: str | None = None
    """Torch device of training and evaluation (default: cuda on GPU workers, else cpu)."""


def person_dir(root: Path, name: str) -> Path:
    return root / name


def data_dir(root: Path, job: Job) -> Path:
    return job.data if job.data is not None else person_dir(root, job.name) / "data"


def run_dir(root: Path, name: str) -> Path:
    return person_dir(root, name) / "run"


def report_path(root: Path, name: str) -> Path:
    """The evaluation report of a person's run: its presence marks them finished."""
    return run_dir(root, name) / "eval" / "report.json"


def import_ray() -> Any:
    """The ``ray`` module, or the one-line error telling how to install it."""
    try:
        import ray
    except ImportError:
        raise MissingDependencyError("ray", extra="cluster", purpose="fit-many") from None
    return ray


# ---------------------------------------------------------------------------------------------- workers


class _Record:
    """A task's entry in ``ROOT/NAME/fit_many.json`` (rewritten atomically at every change)."""

    def __init__(self, path: Path, session: str, task: str) -> None:
        self.path = path
        self.state = _read_state(path)
        self.attempt: dict[str, Any] = {"session": session, "task": task, "pid": os.getpid(),
                                        "host": socket.gethostname(), "started": time.time()}
        self.state.setdefault("attempts", []).append(self.attempt)
        self.state.update(session=session, error=None)
        self._last = 0.0

    def stage(self, stage: str, error: str | None = None) -> None:
        self.state.update(stage=stage, progress=None, error=error)
        self._write()

    def progress(self, desc: str, n: int, total: int | None) -> None:
        now = time.monotonic()
        if now - self._last < PROGRESS_EVERY_S and n != total:
            return
        self._last = now
        self.state["progress"] = {"desc": desc, "n": n, "total": total}
        self._write()

    def _write(self) -> None:
        self.state["updated"] = time.time()
        write_json(self.path, self.state)


def _read_state(path: Path) -> dict:
    try:
        state = read_json(path)
    except ThgError:
        return {}
    return state if isinstance(state, dict) else {}


@contextlib.contextmanager
def _task(root: str, name: str, session: str, task: str, cpus: int, version: str) -> Iterator[_Record]:
    """The worker side of a task: thread count, the person's log file, the record; user errors recorded."""
    import torch

    folder = person_dir(Path(root), name)
    folder.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, cpus))
    setup_logging(quiet=True)  # no progress bars in workers: the driver shows the table
    logger = get_logger()
    logger.setLevel(logging.INFO)
    handler = logging.FileHandler(folder / LOG_FILE)
    handler.setFormatter(logging.Formatter(f"%(asctime)s {task}[%(process)d] %(message)s"))
    logger.addHandler(handler)
    rec = _Record(folder / STATE_FILE, session, task)
    try:
        if version != __version__:
            raise ThgError(f"the worker on {socket.gethostname()} has thg-nerf {__version__}, the driver "
                           f"{version}: install the same version on every node")
        with progress_listener(rec.progress):
            yield rec
    except ThgError as e:
        rec.stage("failed", error=str(e))
        logger.error(f"{name}: {e}")
        raise
    finally:
        logger.removeHandler(handler)
        handler.close()


def preprocess_task(job: Job, root: str, session: str, cpus: int, version: str) -> dict:
    """Ray task: the person's video -> ``ROOT/NAME/data`` (reused when already done)."""
    from thg_nerf.preprocess.pipeline import preprocess

    try:
        with _task(root, job.name, session, "preprocess", cpus, version) as rec:
            rec.stage("preprocess")
            preprocess(job.video, data_dir(Path(root), job), job.cfg.preprocess, audio=job.audio)
            rec.stage("preprocessed")
    except ThgError as e:
        return {"error": str(e)}
    return {}


def train_task(job: Job, root: str, session: str, cpus: int, version: str, device: str | None) -> dict:
    """Ray task: train (resuming from the run's last checkpoint, if any), then evaluate."""
    from thg_nerf.train.checkpoint import RUN_FILE, list_checkpoints
    from thg_nerf.train.evaluate import evaluate
    from thg_nerf.train.trainer import train

    run, data = run_dir(Path(root), job.name), data_dir(Path(root), job)
    try:
        with _task(root, job.name, session, "train", cpus, version) as rec:
            ckpts = list_checkpoints(run) if (run / RUN_FILE).is_file() else []
            rec.attempt["start_iteration"] = ckpts[-1][0] if ckpts else 0
            rec.stage("train")
            train(data, run, job.cfg, resume=bool(ckpts), device=device, consent=None if ckpts else job.consent)
            rec.stage("eval")
            evaluate(run, data, device=device)
            rec.stage("done")
    except ThgError as e:
        return {"error": str(e)}
    return {}


# ----------------------------------------------------------------------------------------------- driver


class Cluster:
    """A Ray connection: a local Ray started for this command, or an existing cluster."""

    def __init__(self, opts: ClusterOptions) -> None:
        ray = import_ray()
        self.ray, self.opts = ray, opts
        if opts.address is not None and opts.num_cpus is not None:
            raise ThgError("--num-cpus sets the size of a local Ray; it cannot be used with --address")
        try:
            if opts.address is None:
                # Ray lowers its workers' priority by 15 by default: on a shared machine they would starve
                # behind any other job, unlike `fit`; they run at this command's own priority instead.
                os.environ.setdefault(WORKER_NICENESS_ENV, "0")
                ray.init(num_cpus=opts.num_cpus, include_dashboard=False, log_to_driver=False,
                         logging_level=logging.ERROR, object_store_memory=256 * 1024**2,
                         _node_ip_address="127.0.0.1")  # a local Ray listens on loopback only
            else:
                ray.init(address=opts.address, log_to_driver=False, logging_level=logging.ERROR)
        except (ConnectionError, RuntimeError, ValueError) as e:
            where = f"at {opts.address}" if opts.address else "on this machine"
            raise ThgError(f"cannot start or reach Ray {where}: {_first_line(e)}") from None
        res = ray.cluster_resources()
        self.cpus = float(res.get("CPU", 0.0))
        self.gpus = float(res.get("GPU", 0.0))
        self.train_gpus = opts.gpus_per_job if self.gpus > 0 else 0.0
        if self.train_gpus > self.gpus:
            self.close()
            raise ThgError(f"--gpus-per-job {opts.gpus_per_job:g} but the cluster has {self.gpus:g} GPU(s)")

    @property
    def trains_on_gpus(self) -> bool:
        return self.train_gpus > 0

    def capacity(self) -> int:
        """People in flight at once: the CPU slots of the cluster (read again as it grows or shrinks)."""
        cpus = float(self.ray.cluster_resources().get("CPU", self.cpus))
        return max(1, int(cpus // max(1, self.opts.cpus_per_job)))

    def describe(self) -> str:
        where = f"Ray at {self.opts.address}" if self.opts.address else "a local Ray"
        return f"{where}: {self.cpus:g} CPUs, {self.gpus:g} GPUs"

    def close(self) -> None:
        self.ray.shutdown()


@contextlib.contextmanager
def connect(opts: ClusterOptions) -> Iterator[Cluster]:
    """Start or join Ray for the block."""
    cluster = Cluster(opts)
    try:
        yield cluster
    finally:
        cluster.close()


@dataclass
class Person:
    """The driver's view of one person."""

    job: Job
    status: str = "queued"
    """queued | running | done | failed | skipped (finished earlier) | interrupted | not started"""
    task: str = ""
    ref: Any = None
    started: float | None = None
    ended: float | None = None
    error: str | None = None
    state: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.job.name

    def minutes(self) -> float | None:
        if self.started is None:
            return None
        return ((self.ended or time.time()) - self.started) / 60.0


def fit_many(jobs: list[Job], root: Path, cluster: Cluster | None, live: bool | None = None,
             stream: TextIO | None = None) -> list[dict]:
    """Fit every job not finished yet; returns the summary rows (also written to ROOT/summary.json/.csv).

    Ctrl-C interrupts the running jobs (training writes a checkpoint) and returns: their status is then
    ``interrupted``, that of the people not started yet ``not started``.

    ``cluster`` may be None when every job is already finished. ``live``: redraw the progress table in place
    (default: when ``stream``, stderr by default, is a terminal); otherwise a line per stage change.
    """
    stream = stream or sys.stderr
    root.mkdir(parents=True, exist_ok=True)
    people = [Person(job) for job in jobs]
    for p in people:
        if report_path(root, p.name).is_file():
            p.status = "skipped"
    todo = [p for p in people if p.status == "queued"]
    if todo and cluster is None:
        raise ValueError("fit_many needs a cluster for unfinished jobs")
    table = _Table(people, stream, stream.isatty() if live is None else live)
    session = uuid.uuid4().hex[:12]
    try:
        if todo:
            _schedule(todo, root, cluster, session, table)
    except KeyboardInterrupt:
        _interrupt(people, cluster)
    finally:
        table.close()
        rows = summarise(people, root, session)
        write_summary(root, rows, cluster.describe() if cluster else None)
    return rows


def _schedule(todo: list[Person], root: Path, cluster: Cluster, session: str, table: _Table) -> None:
    ray, opts = cluster.ray, cluster.opts
    common = {"num_cpus": opts.cpus_per_job, "max_retries": opts.retries, "retry_exceptions": False}
    prep = ray.remote(preprocess_task).options(num_gpus=0, **common)
    fit = ray.remote(train_task).options(num_gpus=cluster.train_gpus, **common)
    device = opts.device or ("cuda" if cluster.trains_on_gpus else "cpu")
    queue = list(todo)
    running: dict[Any, Person] = {}

    def submit(p: Person, task: str) -> None:
        p.task, p.status = task, "running"
        person_dir(root, p.name).mkdir(parents=True, exist_ok=True)
        if task == "preprocess":
            p.ref = prep.remote(p.job, str(root), session, opts.cpus_per_job, __version__)
        else:
            p.ref = fit.remote(p.job, str(root), session, opts.cpus_per_job, __version__, device)
        running[p.ref] = p

    while queue or running:
        capacity = cluster.capacity()
        while queue and len(running) < capacity:
            p = queue.pop(0)
            submit(p, "preprocess" if p.job.data is None else "train")
        ready, _ = ray.wait(list(running), num_returns=1, timeout=1.0)
        for p in running.values():
            _observe(p, root, session)
        for ref in ready:
            p = running.pop(ref)
            error = _result_error(ray, ref, opts.retries)
            if error is not None:
                p.status, p.error, p.ended = "failed", error, time.time()
            elif p.task == "preprocess":
                submit(p, "train")
            else:
                p.status, p.ended = "done", time.time()
        table.update()


def _observe(p: Person, root: Path, session: str) -> None:
    """Read a person's record (this session's part) and note when their first task started."""
    state = _read_state(person_dir(root, p.name) / STATE_FILE)
    p.state = state if state.get("session") == session else {}
    if p.started is None and p.state:
        p.started = min(time.time(), min(float(a.get("started", time.time())) for a in p.state["attempts"]
                                         if a.get("session") == session))


def _result_error(ray: Any, ref: Any, retries: int) -> str | None:
    """None for a finished task, else the one-line reason it failed."""
    from ray import exceptions as rex

    try:
        result = ray.get(ref)
    except rex.RayTaskError as e:
        cause = e.cause if getattr(e, "cause", None) is not None else e
        if isinstance(cause, ThgError):
            return str(cause)
        return f"internal error: {type(cause).__name__}: {_first_line(cause)}"
    except (rex.WorkerCrashedError, rex.NodeDiedError, rex.OutOfMemoryError) as e:
        return f"the worker died {retries + 1} time(s): {_first_line(e)}"
    except rex.RayError as e:
        return f"{type(e).__name__}: {_first_line(e)}"
    return result.get("error")


def _interrupt(people: list[Person], cluster: Cluster | None) -> None:
    """Ctrl-C: interrupt the running tasks (training checkpoints first) and wait a little for them."""
    for p in people:
        if p.status == "queued":
            p.status = "not started"
    running = [p for p in people if p.status == "running"]
    if cluster is None or not running:
        return
    print("\nthg-nerf: stopping: interrupting the running jobs (Ctrl-C again to abandon them)", file=sys.stderr)
    for p in running:
        p.status, p.ended = "interrupted", time.time()
        with contextlib.suppress(Exception):
            cluster.ray.cancel(p.ref)
    with contextlib.suppress(Exception):
        cluster.ray.wait([p.ref for p in running], num_returns=len(running), timeout=INTERRUPT_GRACE_S)


def _first_line(e: BaseException | str) -> str:
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:300]


# ---------------------------------------------------------------------------------------------- reporting


def _stage(p: Person) -> tuple[str, str]:
    """``(stage, text)`` of a person in the table: the stage alone, and with its progress."""
    if p.status == "skipped":
        return "done", "done (earlier run)"
    if p.status != "running":
        return p.status, p.status
    st = p.state
    stage = st.get("stage")
    if not stage:
        return "queued", "queued"
    if stage == "preprocessed":
        return "queued", "queued for training"
    prog = st.get("progress") or {}
    text = stage
    if prog and prog.get("desc") == "training":
        text = f"{stage} it {prog.get('n')}/{prog.get('total')}"
    elif prog:
        text = f"{stage}: {prog.get('desc')} {prog.get('n')}/{prog.get('total') or '?'}"
    if stage == "train":
        start = max((a.get("start_iteration", 0) for a in st.get("attempts", [])
                     if a.get("session") == st.get("session") and a.get("task") == "train"), default=0)
        if start:
            stage = f"train (resumed from it {start})"
            text += f" (resumed from it {start})"
    return stage, text


class _Table:
    """The live progress table: redrawn in place on a terminal, else one line per stage change."""

    def __init__(self, people: list[Person], stream: TextIO, live: bool) -> None:
        self.people, self.stream, self.live = people, stream, live
        self.width = max([len(p.name) for p in people] + [6])
        self.drawn = 0
        self.last: dict[str, str] = {}
        self.last_draw = 0.0

    def _row(self, p: Person) -> str:
        m = p.minutes()
        return f"{p.name:<{self.width}}  {_stage(p)[1]:<44.44}  {'' if m is None else f'{m:6.1f}'}"

    def update(self) -> None:
        if self.live:
            lines = [f"{'person':<{self.width}}  {'stage':<44}  {'min':>6}"] + [self._row(p) for p in self.people]
            up = f"\x1b[{self.drawn}F" if self.drawn else ""
            self.stream.write(up + "".join(line + "\x1b[K\n" for line in lines) + "\x1b[J")
            self.stream.flush()
            self.drawn = len(lines)
            return
        for p in self.people:
            kind = _stage(p)[0]
            if self.last.get(p.name) != kind:
                self.last[p.name] = kind
                self.stream.write(f"[fit-many] {p.name}: {kind}\n")
                self.stream.flush()

    def close(self) -> None:
        self.update()


def _metrics(report: dict) -> dict:
    """The summary's figures from eval's ``report.json``: held-out PSNR/SSIM/LMD and the lip measures."""
    lip = report.get("lip") or {}
    first = next(iter(report.get("drives") or {}), None)
    render = ((lip.get("render") or {}).get(first) or {}) if first else {}
    motion = lip.get("motion") or {}
    sync = report.get("sync") or {}
    return {"iteration": report.get("iteration"), "psnr": report.get("psnr"), "ssim": report.get("ssim"),
            "lmd": report.get("lmd"), "lip_corr": render.get("corr"), "lip_amplitude": render.get("amplitude"),
            "motion_mouth_corr": motion.get("mouth_corr"), "sync_offset_frames": sync.get("offset_frames")}


def summarise(people: list[Person], root: Path, session: str) -> list[dict]:
    """One summary row per person (see SUMMARY_FIELDS)."""
    rows = []
    for p in people:
        state = _read_state(person_dir(root, p.name) / STATE_FILE)
        attempts = [a for a in state.get("attempts", []) if a.get("session") == session]
        starts = [a.get("start_iteration", 0) for a in attempts if a.get("task") == "train"]
        m = p.minutes()
        row: dict[str, Any] = {"name": p.name, "status": p.status, "minutes": None if m is None else round(m, 2),
                               "attempts": len(attempts), "resumed_from": max(starts) if any(starts) else None,
                               "error": p.error, "run": str(run_dir(root, p.name))}
        report = report_path(root, p.name)
        if p.status in ("done", "skipped") and report.is_file():
            with contextlib.suppress(ThgError):
                row.update(_metrics(read_json(report)))
        rows.append({k: row.get(k) for k in SUMMARY_FIELDS})
    return rows


def write_summary(root: Path, rows: list[dict], cluster: str | None) -> None:
    """ROOT/summary.json and ROOT/summary.csv (atomically)."""
    write_json(root / "summary.json", {"finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "cluster": cluster,
                                       "people": rows})
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(SUMMARY_FIELDS), lineterminator="\n")
    writer.writeheader()
    writer.writerows([{k: "" if v is None else v for k, v in r.items()} for r in rows])
    with atomic_file(root / "summary.csv") as tmp:
        tmp.write_text(buf.getvalue())


def format_summary(rows: list[dict]) -> str:
    """The final table: person, status, minutes, held-out PSNR, lip figures; then the errors."""
    def num(v: Any, width: int, fmt: str) -> str:
        return f"{'-' if v is None else format(v, fmt):>{width}}"

    width = max([len(r["name"]) for r in rows] + [6])
    lines = [f"{'person':<{width}}  {'status':<11}  {'min':>6}  {'PSNR':>6}  {'lip corr':>8}  {'motion corr':>11}  "
             "notes"]
    for r in rows:
        note = f"resumed from it {r['resumed_from']}" if r["resumed_from"] else ""
        lines.append(f"{r['name']:<{width}}  {r['status']:<11}  {num(r['minutes'], 6, '.1f')}  "
                     f"{num(r['psnr'], 6, '.2f')}  {num(r['lip_corr'], 8, '.3f')}  "
                     f"{num(r['motion_mouth_corr'], 11, '.3f')}  {note}".rstrip())
    lines += [f"{r['name']}: {r['error']}" for r in rows if r["error"]]
    return "\n".join(lines)
