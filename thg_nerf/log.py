"""One logger for the package and progress bars that respect ``--quiet``."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

LOGGER_NAME = "thg_nerf"
_state = {"quiet": False}


def get_logger(name: str | None = None) -> logging.Logger:
    """The package logger, or a child of it (``get_logger(__name__)``)."""
    if name is None or name == LOGGER_NAME:
        return logging.getLogger(LOGGER_NAME)
    if name.startswith(LOGGER_NAME + "."):
        return logging.getLogger(name)
    return logging.getLogger(f"{LOGGER_NAME}.{name}")


class _StderrHandler(logging.StreamHandler):
    """Writes each record to the ``sys.stderr`` of the moment, so later redirections (and test captures) of
    stderr are followed instead of writing to a stream that may since have been closed."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ assigns it
        pass


def setup_logging(quiet: bool = False, verbose: bool = False) -> None:
    """Configure the package logger once for a CLI run: INFO by default, WARNING with ``quiet``."""
    _state["quiet"] = quiet
    logger = get_logger()
    logger.setLevel(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)
    if not logger.handlers:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("[thg-nerf] %(message)s"))
        logger.addHandler(handler)
    logger.propagate = False


def is_quiet() -> bool:
    return _state["quiet"]


def progress(iterable: Iterable[T] | None = None, total: int | None = None, desc: str = "",
             unit: str = "it", **kwargs) -> Iterator[T]:
    """A tqdm progress bar on stderr, hidden with ``--quiet``. Works as an iterator or a manual bar."""
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=_state["quiet"], dynamic_ncols=True,
                leave=False, file=sys.stderr, **kwargs)
