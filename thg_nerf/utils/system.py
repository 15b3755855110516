"""Process facts read from the operating system."""

from __future__ import annotations

from pathlib import Path


def resident_mb(pid: int | str = "self") -> float | None:
    """Resident memory of process ``pid`` in MB (Linux ``/proc``; None where it cannot be read)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None
