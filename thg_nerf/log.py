"""One logger for the package and progress bars that respect ``--quiet``."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

LOGGER_NAME = "thg_nerf"
_state: dict[str, Any] = {"quiet": False, "listener": None}

#: ``listener(desc, n, total)``: told of every step of every progress bar (see :func:`progress_listener`).
ProgressListener = Callable[[str, int, "int | None"], None]


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


@contextlib.contextmanager
def progress_listener(listener: ProgressListener) -> Iterator[None]:
    """Within the block, progress bars also report each step to ``listener(desc, n, total)`` (e.g. so a
    worker of ``fit-many`` can record how far it is); they still show on stderr unless quiet."""
    old = _state["listener"]
    _state["listener"] = listener
    try:
        yield
    finally:
        _state["listener"] = old


class _Reporting:
    """A tqdm bar that also tells a listener of every step (tqdm counts nothing when disabled)."""

    def __init__(self, bar: Any, iterable: Iterable | None, listener: ProgressListener, desc: str,
                 total: int | None, initial: int) -> None:
        self._bar, self._listener = bar, listener
        self._desc, self._total, self.n = desc, total, initial
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            self._total = len(iterable)  # type: ignore[arg-type]
        listener(desc, initial, self._total)

    def __iter__(self) -> Iterator:
        for item in self._bar:
            yield item
            self.n += 1
            self._listener(self._desc, self.n, self._total)

    def update(self, n: int = 1) -> None:
        self._bar.update(n)
        self.n += n
        self._listener(self._desc, self.n, self._total)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._bar, name)


def progress(iterable: Iterable[T] | None = None, total: int | None = None, desc: str = "",
             unit: str = "it", **kwargs) -> Iterator[T]:
    """A tqdm progress bar on stderr, hidden with ``--quiet``. Works as an iterator or a manual bar."""
    from tqdm.auto import tqdm

    bar = tqdm(iterable, total=total, desc=desc, unit=unit, disable=_state["quiet"], dynamic_ncols=True,
               leave=False, file=sys.stderr, **kwargs)
    listener = _state["listener"]
    if listener is None:
        return bar
    return _Reporting(bar, iterable, listener, desc, total, int(kwargs.get("initial", 0)))  # type: ignore
