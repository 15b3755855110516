"""Atomic output: write to a temporary sibling directory or file, then rename into place."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from thg_nerf.errors import ThgError


def check_writable_parent(path: Path) -> None:
    """Raise a ThgError if ``path``'s parent cannot be created or written."""
    parent = path.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ThgError(f"cannot create output directory {parent}: {e.strerror or e}") from None
    if not os.access(parent, os.W_OK):
        raise ThgError(f"output location {parent} is not writable")


def _umask() -> int:
    """The process umask (mkdtemp/mkstemp ignore it and create private 0700/0600 entries)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary directory next to ``final``; on success rename it to ``final``.

    On any exception the temporary directory is removed and ``final`` is left untouched. If ``final``
    exists it is replaced only when ``overwrite`` is true (otherwise a ThgError is raised up front).
    """
    final = Path(final)
    if final.exists() and not overwrite:
        raise ThgError(f"{final} already exists (use --force to overwrite)")
    check_writable_parent(final)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.resolve().parent))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(final)


@contextlib.contextmanager
def atomic_file(final: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``final`` (keeping ``suffix``) and rename it to ``final`` on success."""
    final = Path(final)
    check_writable_parent(final)
    fd, name = tempfile.mkstemp(prefix=f".{final.stem}.tmp-", suffix=suffix or final.suffix,
                                dir=final.resolve().parent)
    os.close(fd)
    os.chmod(name, 0o666 & ~_umask())
    tmp = Path(name)
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, final)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON atomically with stable formatting."""
    with atomic_file(path, suffix=".json") as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file, turning missing/corrupt files into one-line ThgErrors."""
    path = Path(path)
    if not path.is_file():
        raise ThgError(f"missing file: {path}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ThgError(f"corrupt JSON file {path}: {e}") from None
