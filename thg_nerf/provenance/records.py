"""Consent statements recorded in a run, the run's fingerprint, and the payload its outputs carry.

``thg-nerf fit/train --consent TEXT_OR_FILE`` stores :func:`consent_record` under ``"consent"`` in the new
run's ``run.json`` (with the statement's SHA-256); without the flag the record says that no statement was
given, and so does the consent bit of every mark made from that run.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from pathlib import Path

from thg_nerf.errors import ThgError
from thg_nerf.log import get_logger
from thg_nerf.provenance.embed import Watermarker
from thg_nerf.provenance.payload import Payload

log = get_logger(__name__)

#: Key of the consent record in ``run.json``.
CONSENT_KEY = "consent"
#: A consent file's text is stored in the run when it is UTF-8 and at most this long (else only its hash).
MAX_STATEMENT_BYTES = 64 * 1024
NO_CONSENT_WARNING = ("no --consent statement given: the run records that no statement of the person's consent "
                      "was given, and every video rendered from it carries that in its provenance mark")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def consent_record(value: str | None, *, warn: bool = True) -> dict:
    """The record of ``--consent TEXT_OR_FILE`` (None: no statement, with one warning when ``warn``).

    An existing file is read (its SHA-256 over the bytes; its text kept when it is short UTF-8); anything
    else is the statement itself. ThgError for an empty statement or a missing file that looks like a path.
    """
    if value is None:
        if warn:
            log.warning(NO_CONSENT_WARNING)
        return {"given": False, "statement": None, "sha256": None, "source": None, "recorded": _now()}
    path = Path(value).expanduser()
    if path.is_file():
        try:
            data = path.read_bytes()
        except OSError as e:
            raise ThgError(f"cannot read the consent file {path}: {e.strerror or e}") from None
        if not data.strip():
            raise ThgError(f"the consent file {path} is empty")
        try:
            text = data.decode("utf-8") if len(data) <= MAX_STATEMENT_BYTES else None
        except UnicodeDecodeError:
            text = None
        return {"given": True, "statement": text, "sha256": hashlib.sha256(data).hexdigest(),
                "source": f"file:{path.name}", "bytes": len(data), "recorded": _now()}
    if path.is_dir():
        raise ThgError(f"--consent {value!r} is a directory; give the statement or a file holding it")
    text = str(value).strip()
    if not text:
        raise ThgError("--consent is empty: give the statement of the person's consent, or a file holding it")
    if " " not in text and path.suffix and len(path.suffix) <= 5:
        raise ThgError(f"consent file not found: {value} (to record it as the statement itself, write a sentence)")
    data = text.encode("utf-8")
    return {"given": True, "statement": text, "sha256": hashlib.sha256(data).hexdigest(), "source": "text",
            "bytes": len(data), "recorded": _now()}


def consent_from_flag(value: str | None, resume: bool = False) -> dict | None:
    """What ``train``/``fit`` pass to the trainer: a record for a new run, None when resuming (kept as is)."""
    if resume:
        if value is not None:
            log.info("--consent ignored when resuming: the run keeps the record made when it was created")
        return None
    return consent_record(value, warn=False)  # the trainer warns once the inputs are known to be usable


def run_fingerprint(info: dict) -> int:
    """16-bit fingerprint of a run: the first 16 bits of the SHA-256 of its ``run.json`` (canonical JSON)."""
    canonical = json.dumps(info, sort_keys=True, separators=(",", ":"), default=str).encode("utf-8")
    return int.from_bytes(hashlib.sha256(canonical).digest()[:2], "big")


def payload_for_run(run_file: str | Path | None, tool: str = "render") -> Payload:
    """The payload of frames made today from the run whose ``run.json`` is ``run_file``.

    Without a readable run file the fingerprint is 0 and the consent bit says no statement was given.
    """
    info = None
    if run_file is not None and Path(run_file).is_file():
        try:
            info = json.loads(Path(run_file).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            log.warning("cannot read %s: its outputs are marked without a run fingerprint", run_file)
    if not isinstance(info, dict):
        return Payload.create(0, False, tool)
    record = info.get(CONSENT_KEY)
    consent = isinstance(record, dict) and bool(record.get("given"))
    return Payload.create(run_fingerprint(info), consent, tool)


def watermarker_for_run(run_file: str | Path | None, tool: str = "render") -> Watermarker:
    """The :class:`Watermarker` for frames made from a run (see :func:`payload_for_run`)."""
    return Watermarker(payload_for_run(run_file, tool))
