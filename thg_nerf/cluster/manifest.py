"""The manifest of ``thg-nerf fit-many``: one row per person, as CSV or YAML (docs/CLUSTER.md).

Columns (YAML: keys of each entry):

- ``name`` (required): the person's folder under the output root (letters, digits, ``.``, ``_``, ``-``);
- ``video``: their talking video; or ``data``: a dataset directory already written by ``thg-nerf preprocess``;
- ``audio``: speech to use instead of the video's own track (optional);
- ``consent``: the statement that they agreed to be modelled, or a file holding it (optional);
- ``preset``, ``iters``: per-person ``--preset`` and ``--iters``;
- ``set``: per-person ``--set`` overrides, ``;``-separated in CSV (a list or a mapping in YAML);
- any dotted column such as ``train.batch_rays``: one override of that config key.

Relative paths are relative to the manifest's folder. Every error is one line naming the row.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

from thg_nerf.errors import ThgError

COLUMNS = ("name", "video", "data", "audio", "consent", "preset", "iters", "set")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_KEY_RE = re.compile(r"^[a-z_]+(\.[a-z_0-9]+)+$")


@dataclass
class ManifestRow:
    """One person of a manifest (paths absolute, checked to exist)."""

    name: str
    where: str
    """Where the row is, for messages: ``people.csv row 3``."""
    video: Path | None = None
    data: Path | None = None
    """An already preprocessed dataset directory (instead of ``video``)."""
    audio: Path | None = None
    consent: str | None = None
    """The consent statement, or the absolute path of a file holding it."""
    preset: str | None = None
    iters: int | None = None
    overrides: list[str] = field(default_factory=list)
    """``section.key=value`` overrides, applied after the command line's ``--set``."""


def read_manifest(path: str | Path) -> list[ManifestRow]:
    """Parse and check a CSV or YAML manifest; one-line ThgError (naming the row) on any problem."""
    path = Path(path)
    if not path.is_file():
        raise ThgError(f"manifest not found: {path}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise ThgError(f"cannot read manifest {path}: {e}") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        entries = _yaml_entries(path, text)
    elif path.suffix.lower() == ".csv":
        entries = _csv_entries(path, text)
    else:
        raise ThgError(f"manifest {path} must be a .csv, .yaml or .yml file")
    if not entries:
        raise ThgError(f"manifest {path} lists nobody")
    rows: list[ManifestRow] = []
    seen: dict[str, str] = {}
    for where, entry in entries:
        row = _row(entry, where, path.resolve().parent)
        if row.name in seen:
            raise ThgError(f"{row.where}: duplicate name '{row.name}' (also {seen[row.name]})")
        seen[row.name] = where
        rows.append(row)
    return rows


def _csv_entries(path: Path, text: str) -> list[tuple[str, dict]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [h.strip() for h in reader.fieldnames or []]
    if not header:
        raise ThgError(f"manifest {path} is empty (expected a header line: name,video,...)")
    _check_columns(path.name, header)
    out = []
    for rec in reader:
        line = reader.line_num
        if None in rec:
            raise ThgError(f"{path.name} row {line}: more values than columns")
        values = {k.strip(): (v or "").strip() for k, v in rec.items()}
        if not any(values.values()):
            continue
        if values.get("set"):
            values["set"] = [s.strip() for s in values["set"].split(";") if s.strip()]
        out.append((f"{path.name} row {line}", {k: v for k, v in values.items() if v not in ("", [])}))
    return out


def _yaml_entries(path: Path, text: str) -> list[tuple[str, dict]]:
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ThgError(f"cannot parse manifest {path}: {str(e).splitlines()[0]}") from None
    if isinstance(data, dict) and set(data) == {"people"}:
        data = data["people"]
    if not isinstance(data, list):
        raise ThgError(f"manifest {path} must be a list of people (or a mapping with the key 'people')")
    out = []
    for i, entry in enumerate(data, 1):
        where = f"{path.name} entry {i}"
        if not isinstance(entry, dict):
            raise ThgError(f"{where}: expected a mapping such as {{name: alice, video: alice.mp4}}")
        entry = {str(k): v for k, v in entry.items() if v is not None}
        _check_columns(where, list(entry))
        sets = entry.get("set")
        if isinstance(sets, dict):
            entry["set"] = [f"{k}={_yaml_scalar(v)}" for k, v in sets.items()]
        elif isinstance(sets, str):
            entry["set"] = [sets]
        elif sets is not None and not isinstance(sets, list):
            raise ThgError(f"{where}: 'set' must be a list of KEY=VALUE or a mapping")
        out.append((where, entry))
    return out


def _yaml_scalar(value: object) -> str:
    import yaml

    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def _check_columns(where: str, columns: list[str]) -> None:
    if "name" not in columns:
        raise ThgError(f"{where}: missing column 'name'")
    if "video" not in columns and "data" not in columns:
        raise ThgError(f"{where}: missing column 'video' (or 'data' for an already preprocessed dataset)")
    for col in columns:
        if col not in COLUMNS and not _KEY_RE.match(col):
            raise ThgError(f"{where}: unknown column '{col}' (known: {', '.join(COLUMNS)}, or a config key "
                           "such as train.iters)")


def _row(entry: dict, where: str, base: Path) -> ManifestRow:
    name = str(entry.get("name", "")).strip()
    if not name:
        raise ThgError(f"{where}: empty name")
    where = f"{where} ({name})"
    if not _NAME_RE.match(name):
        raise ThgError(f"{where}: a name is a folder name: letters, digits, '.', '_' and '-' (at most 100)")
    if bool(entry.get("video")) == bool(entry.get("data")):
        raise ThgError(f"{where}: give either a video or a preprocessed dataset directory (data), not "
                       f"{'both' if entry.get('video') else 'neither'}")
    row = ManifestRow(name=name, where=where, preset=_opt_str(entry.get("preset")))
    if entry.get("video"):
        row.video = _existing(base, entry["video"], where, "video", directory=False)
    else:
        row.data = _existing(base, entry["data"], where, "dataset directory", directory=True)
    if entry.get("audio"):
        if row.data is not None:
            raise ThgError(f"{where}: 'audio' applies to a video; the dataset {row.data} already has its audio")
        row.audio = _existing(base, entry["audio"], where, "audio file", directory=False)
    if entry.get("consent") is not None:
        text = str(entry["consent"]).strip()
        file = (base / text).expanduser()
        row.consent = str(file.resolve()) if text and file.is_file() else text
    if entry.get("iters") is not None:
        try:
            row.iters = int(str(entry["iters"]))
        except ValueError:
            raise ThgError(f"{where}: iters must be a whole number, got {entry['iters']!r}") from None
        if row.iters <= 0:
            raise ThgError(f"{where}: iters must be positive, got {row.iters}")
    for item in entry.get("set") or []:
        if "=" not in str(item):
            raise ThgError(f"{where}: override '{item}' must look like section.key=value")
        row.overrides.append(str(item).strip())
    row.overrides += [f"{k}={_yaml_scalar(v) if not isinstance(v, str) else v}"
                      for k, v in entry.items() if k not in COLUMNS]
    return row


def _opt_str(value: object) -> str | None:
    return None if value is None or str(value).strip() == "" else str(value).strip()


def _existing(base: Path, value: object, where: str, what: str, directory: bool) -> Path:
    path = (base / str(value).strip()).expanduser().resolve()
    ok = path.is_dir() if directory else path.is_file()
    if not ok:
        raise ThgError(f"{where}: {what} not found: {path}")
    return path
