"""Shared pytest fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MEDIA = REPO.parent / "shared" / "media"


@pytest.fixture(scope="session")
def media_dir() -> Path:
    """``../shared/media`` (skips the test when the sample media is absent)."""
    if not MEDIA.is_dir():
        pytest.skip(f"sample media not found at {MEDIA} (needs the shared/ folder beside the checkout)")
    return MEDIA


@pytest.fixture(scope="session")
def media_file(media_dir: Path):
    """A function returning a media file path, skipping when that file is absent."""

    def get(name: str) -> Path:
        path = media_dir / name
        if not path.is_file():
            pytest.skip(f"sample media file {path} not found")
        return path

    return get
