"""List files in the VideoMAE format: one video per line, ``path label`` (space separated), or ``path`` alone
for unlabelled pre-training lists. Paths are relative to a root folder (or absolute) and may contain spaces:
the label is the last token. A file is labelled if any line ends in an integer; then every line must.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from mme.errors import DataError


@dataclass(frozen=True)
class ListEntry:
    """One video of a list: its path as written in the list and its class id (None when unlabelled)."""

    path: str
    label: int | None = None


@dataclass(frozen=True)
class BadLine:
    """A list line that could not be parsed: where it is and why."""

    list_file: str
    line_no: int
    text: str
    reason: str

    def __str__(self) -> str:
        return f"{self.list_file}:{self.line_no}: {self.reason}: {self.text!r}"


def _is_int(token: str) -> bool:
    return token.lstrip("+-").isdigit()


def read_list(list_file: str | Path, strict: bool = True) -> tuple[list[ListEntry], list[BadLine]]:
    """Parse a list file. Returns the entries and the bad lines; with ``strict`` the first bad line raises
    DataError naming the file and line. Blank lines and lines starting with '#' are ignored."""
    list_file = str(list_file)
    try:
        lines = Path(list_file).read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"list file {list_file}: cannot read it ({e})") from e
    rows = [(n, line.strip()) for n, line in enumerate(lines, 1) if line.strip() and not line.startswith("#")]
    labelled = any(len(t.split()) > 1 and _is_int(t.split()[-1]) for _, t in rows)
    entries, bad = [], []
    for n, text in rows:
        if not labelled:
            entries.append(ListEntry(text))
            continue
        parts = text.rsplit(maxsplit=1)
        reason = None
        if len(parts) < 2:
            reason = "no label (other lines of this list have one)"
        elif not _is_int(parts[1]):
            reason = f"bad label {parts[1]!r} (expected a class id >= 0)"
        elif int(parts[1]) < 0:
            reason = f"negative label {parts[1]}"
        if reason is None:
            entries.append(ListEntry(parts[0], int(parts[1])))
            continue
        bad.append(BadLine(list_file, n, text, reason))
        if strict:
            raise DataError(str(bad[-1]))
    if not entries and not bad:
        raise DataError(f"list file {list_file}: no videos listed")
    return entries, bad


def resolve(entry: ListEntry, root: str | Path) -> str:
    """The file of an entry: its path joined to ``root`` unless absolute."""
    return entry.path if os.path.isabs(entry.path) or not root else os.path.join(str(root), entry.path)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and ``os.replace`` (never a half-written file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_list(path: str | Path, entries: list[ListEntry]) -> None:
    """Write entries in the VideoMAE format (atomically)."""
    lines = [e.path if e.label is None else f"{e.path} {e.label}" for e in entries]
    atomic_write_text(path, "".join(line + "\n" for line in lines))


def write_classes(path: str | Path, classes: list[str]) -> None:
    """The label map: a JSON list of class names, index = class id."""
    atomic_write_text(path, json.dumps(list(classes), indent=1) + "\n")
