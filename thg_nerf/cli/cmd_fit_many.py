"""``thg-nerf fit-many``: ``fit`` for every person of a manifest, as Ray tasks (docs/CLUSTER.md)."""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from thg_nerf.cluster.fit_many import Job
    from thg_nerf.cluster.manifest import ManifestRow


def person_jobs(args: argparse.Namespace, rows: list[ManifestRow], root: Path, auto_preset: str) -> list[Job]:
    """One job per manifest row: the command line's options, then the row's; ``--preset auto`` becomes
    ``auto_preset`` (what the cluster's training workers call for). Errors name the row."""
    from thg_nerf.cli.cmd_preprocess import preprocess_overrides
    from thg_nerf.cli.cmd_train import train_config
    from thg_nerf.cluster.fit_many import Job, run_dir
    from thg_nerf.errors import ThgError
    from thg_nerf.provenance import consent_from_flag

    jobs = []
    for row in rows:
        ns = copy.copy(args)
        ns.preset = row.preset or args.preset
        if ns.preset == "auto":
            ns.preset = auto_preset
        ns.iters = row.iters if row.iters is not None else args.iters
        ns.overrides = [*args.overrides, *row.overrides]
        ns.resume = False
        try:
            cfg = train_config(ns, run_dir(root, row.name), preprocess_overrides(ns))
            consent = consent_from_flag(row.consent if row.consent is not None else args.consent)
        except ThgError as e:
            raise ThgError(f"{row.where}: {e}") from None
        jobs.append(Job(name=row.name, cfg=cfg, video=row.video, data=row.data, audio=row.audio, consent=consent))
    return jobs


def run(args: argparse.Namespace) -> int:
    from thg_nerf.cluster.fit_many import (
        ClusterOptions,
        JobsFailedError,
        connect,
        fit_many,
        format_summary,
        report_path,
    )
    from thg_nerf.cluster.manifest import read_manifest
    from thg_nerf.errors import ThgError
    from thg_nerf.log import get_logger

    root = Path(args.output).expanduser().resolve()
    if root.exists() and not root.is_dir():
        raise ThgError(f"{root} exists and is not a directory; choose another output root")
    if args.gpus_per_job < 0 or args.cpus_per_job < 1 or args.retries < 0:
        raise ThgError("--gpus-per-job must be >= 0, --cpus-per-job >= 1 and --retries >= 0")
    rows = read_manifest(args.manifest)
    jobs = person_jobs(args, rows, root, "tiny")  # every row checked before any cluster starts
    opts = ClusterOptions(address=args.address, num_cpus=args.num_cpus, gpus_per_job=args.gpus_per_job,
                          cpus_per_job=args.cpus_per_job, retries=args.retries, device=args.device)
    todo = [j for j in jobs if not report_path(root, j.name).is_file()]
    if not todo:
        rows_out = fit_many(jobs, root, None)
    else:
        with connect(opts) as cluster:
            get_logger().info(f"fit-many: {len(todo)} of {len(jobs)} people to fit on {cluster.describe()}; "
                              f"training on {'GPUs' if cluster.trains_on_gpus else 'CPUs'}; outputs in {root}")
            if cluster.trains_on_gpus:
                jobs = person_jobs(args, rows, root, "default")
            rows_out = fit_many(jobs, root, cluster)
    print(format_summary(rows_out), file=sys.stdout)
    if any(r["status"] in ("interrupted", "not started") for r in rows_out):
        raise KeyboardInterrupt
    failed = [r["name"] for r in rows_out if r["status"] == "failed"]
    if failed:
        raise JobsFailedError(f"{len(failed)} of {len(rows_out)} people failed ({', '.join(failed)}); "
                              f"see {root / 'summary.json'}")
    return 0


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    from thg_nerf.cli.cmd_preprocess import add_preprocess_args
    from thg_nerf.cli.cmd_train import add_train_args
    from thg_nerf.cli.common import add_config_args

    p = sub.add_parser("fit-many", parents=[common], help="fit every person of a manifest on a Ray cluster",
                       description="Preprocess, train and evaluate every person listed in MANIFEST (CSV or YAML: "
                       "name, video or data, optional audio, consent, preset, iters, set) as Ray tasks: "
                       "preprocessing on CPU workers, training on GPU workers where the cluster has them. The "
                       "options below are everyone's defaults; a rerun skips finished people and resumes the "
                       "others. See docs/CLUSTER.md.")
    p.add_argument("manifest", help="CSV or YAML list of people (relative paths: from the manifest's folder)")
    p.add_argument("-o", "--output", required=True, metavar="ROOT",
                   help="output root seen by every worker (a local folder or a shared filesystem): ROOT/NAME/data, "
                   "ROOT/NAME/run, ROOT/summary.json")
    p.add_argument("--address", metavar="auto|HOST:PORT|ray://HOST:PORT",
                   help="join this Ray cluster (default: start a local Ray on this machine)")
    p.add_argument("--num-cpus", type=int, metavar="N", help="CPUs of the local Ray (default: all)")
    p.add_argument("--gpus-per-job", type=float, default=1.0, metavar="N",
                   help="GPUs of each training job where the cluster has GPUs; a fraction shares a GPU, 0 trains "
                   "on CPUs (default 1)")
    p.add_argument("--cpus-per-job", type=int, default=1, metavar="N", help="CPUs of each job (default 1)")
    p.add_argument("--retries", type=int, default=2, metavar="N",
                   help="retries of a job whose worker dies; training resumes from its last checkpoint (default 2)")
    add_preprocess_args(p, audio=False)
    add_train_args(p)
    add_config_args(p)
    p.set_defaults(func=run)
