"""User-facing errors: the CLI prints them as one line and exits non-zero, without a traceback."""

from __future__ import annotations


class ThgError(Exception):
    """An error caused by the user's input or environment (bad file, missing dependency, ...).

    The message must be one self-explanatory line; the CLI prints ``thg-nerf: error: <message>``.
    """

    exit_code = 2


class MissingDependencyError(ThgError):
    """An optional dependency (mediapipe, transformers, face-alignment, nerfacc, tinycudann) is missing."""

    def __init__(self, package: str, extra: str | None = None, purpose: str = "") -> None:
        hint = f"pip install 'thg-nerf[{extra}]'" if extra else f"pip install {package}"
        what = f" (needed for {purpose})" if purpose else ""
        super().__init__(f"optional dependency '{package}' is not installed{what}; install it with: {hint}")
        self.package = package


class IncompatibleVersionError(ThgError):
    """A dataset or run directory was written by an incompatible version of thg-nerf."""
