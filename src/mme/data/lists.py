"""List files in the VideoMAE format: one video per line, ``path label`` (space separated), or ``path`` alone
for unlabelled pre-training lists. Paths are relative to a root folder (or absolute) and may contain spaces:
the label is the last token. A file is labelled if any line ends in an integer; then every line must.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from mme.errors import DataError

log = logging.getLogger(__name__)


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


# ---- builders: official annotation files -> {split: entries}, class names ------------------------------------

VIDEO_EXTS = (".mp4", ".avi", ".webm", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg", ".ogv", ".flv")
KINETICS_FORMAT = "{split}/{label}/{youtube_id}_{time_start:06d}_{time_end:06d}.mp4"
SSV2_FORMAT = "{id}.webm"

Splits = dict[str, list[ListEntry]]


def _need_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise DataError(f"{what} not found: {path}")
    return path


def _read_lines(path: Path) -> list[tuple[int, str]]:
    return [(n, line.strip()) for n, line in enumerate(path.read_text().splitlines(), 1) if line.strip()]


def from_class_folders(root: str | Path) -> tuple[Splits, list[str]]:
    """A folder of class sub-folders of videos (UCF101/HMDB51 style): one list 'all', classes sorted by name."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"video folder not found: {root}")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    entries = [ListEntry(f.relative_to(root).as_posix(), label) for label, name in enumerate(classes)
               for f in sorted((root / name).rglob("*")) if f.suffix.lower() in VIDEO_EXTS and f.is_file()]
    if not entries:
        raise DataError(f"{root}: no videos ({'/'.join(VIDEO_EXTS)}) in class sub-folders")
    return {"all": entries}, classes


def from_ucf101(split_dir: str | Path, split: int = 1) -> tuple[Splits, list[str]]:
    """UCF101's official split files: ``classInd.txt`` ('1 ApplyEyeMakeup'), ``trainlist0N.txt`` ('Class/v.avi
    1', 1-based) and ``testlist0N.txt`` ('Class/v.avi'). Labels become 0-based; test labels come from the class
    folder (matched case-insensitively: the official files spell 'HandstandPushups' two ways)."""
    split_dir = Path(split_dir)
    ind = _need_file(split_dir / "classInd.txt", "UCF101 classInd.txt")
    classes = []
    for n, text in _read_lines(ind):
        parts = text.split()
        if len(parts) != 2 or not parts[0].isdigit() or int(parts[0]) != len(classes) + 1:
            raise DataError(f"{ind}:{n}: expected '<id> <class>' with ids 1, 2, ...: {text!r}")
        classes.append(parts[1])
    by_name = {c.lower(): i for i, c in enumerate(classes)}
    out: Splits = {}
    for name in ("train", "test"):
        path = _need_file(split_dir / f"{name}list{split:02d}.txt", f"UCF101 {name} split {split}")
        entries = []
        for n, text in _read_lines(path):
            video = text.split()[0]
            folder = video.split("/")[0].lower()
            if folder not in by_name:
                raise DataError(f"{path}:{n}: class folder {video.split('/')[0]!r} is not in {ind}")
            entries.append(ListEntry(video, by_name[folder]))
        out[name] = entries
    return out, classes


def from_hmdb51(split_dir: str | Path, split: int = 1) -> tuple[Splits, list[str]]:
    """HMDB51's official split files ``<class>_test_split<N>.txt`` with lines '<video>.avi <id>', id 1 = train,
    2 = test, 0 = unused; videos live in ``<class>/<video>``. Classes sorted by name."""
    split_dir = Path(split_dir)
    files = sorted(split_dir.glob(f"*_test_split{split}.txt"))
    if not files:
        raise DataError(f"{split_dir}: no HMDB51 split files '*_test_split{split}.txt'")
    classes = sorted(f.name[: -len(f"_test_split{split}.txt")] for f in files)
    out: Splits = {"train": [], "test": []}
    for f in files:
        name = f.name[: -len(f"_test_split{split}.txt")]
        for n, text in _read_lines(f):
            parts = text.split()
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise DataError(f"{f}:{n}: expected '<video> <0|1|2>': {text!r}")
            if parts[1] != "0":
                out["train" if parts[1] == "1" else "test"].append(ListEntry(f"{name}/{parts[0]}", classes.index(name)))
    return out, classes


def from_kinetics(csv_files: list[str | Path], path_format: str = KINETICS_FORMAT) -> tuple[Splits, list[str]]:
    """Kinetics CSVs (``label,youtube_id,time_start,time_end,split``), one list per value of the split column.

    File names follow ``path_format`` with fields split, label, label_ (spaces as underscores), youtube_id,
    time_start, time_end (default ``{split}/{label}/{youtube_id}_{time_start:06d}_{time_end:06d}.mp4``; flat
    folders: ``{youtube_id}_{time_start:06d}_{time_end:06d}.mp4``). Classes: all labels seen, sorted; rows
    without a label (the test set) are unlabelled.
    """
    rows = []
    for csv_file in csv_files:
        path = _need_file(Path(csv_file), "Kinetics CSV")
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            missing = {"youtube_id", "time_start", "time_end"} - set(reader.fieldnames or [])
            if missing:
                raise DataError(f"{path}: not a Kinetics CSV, missing columns {sorted(missing)}")
            for n, row in enumerate(reader, 2):
                try:
                    start, end = int(float(row["time_start"])), int(float(row["time_end"]))
                except (TypeError, ValueError) as e:
                    raise DataError(f"{path}:{n}: bad time_start/time_end {row}") from e
                label = (row.get("label") or "").strip()
                split = (row.get("split") or "").strip() or path.stem
                rows.append((split, label, row["youtube_id"].strip(), start, end))
    classes = sorted({r[1] for r in rows if r[1]})
    out: Splits = {}
    for split, label, yid, start, end in rows:
        rel = path_format.format(split=split, label=label, label_=label.replace(" ", "_"), youtube_id=yid,
                                 time_start=start, time_end=end)
        out.setdefault(split, []).append(ListEntry(rel, classes.index(label) if label else None))
    return out, classes


def from_ssv2(annotation_dir: str | Path, path_format: str = SSV2_FORMAT) -> tuple[Splits, list[str]]:
    """Something-Something V2: ``labels.json`` ({template: id}) and ``something-something-v2-{train,validation,
    test}.json`` (lists of {id, template, ...}; the test file has ids only). The label is the template with its
    '[something]' brackets removed, looked up in labels.json. Files: ``path_format`` with field id."""
    adir = Path(annotation_dir)
    labels_file = _need_file(adir / "labels.json", "SSv2 labels.json")
    label_map = {k: int(v) for k, v in json.loads(labels_file.read_text()).items()}
    classes = [name for name, _ in sorted(label_map.items(), key=lambda kv: kv[1])]
    out: Splits = {}
    for split, stem in (("train", "train"), ("val", "validation"), ("test", "test")):
        path = adir / f"something-something-v2-{stem}.json"
        if not path.is_file():
            continue
        entries = []
        for item in json.loads(path.read_text()):
            label = None
            if "template" in item:
                name = item["template"].replace("[", "").replace("]", "")
                if name not in label_map:
                    raise DataError(f"{path}: video {item['id']}: template {name!r} is not in {labels_file}")
                label = label_map[name]
            entries.append(ListEntry(path_format.format(id=item["id"]), label))
        out[split] = entries
    if not out:
        raise DataError(f"{adir}: no something-something-v2-{{train,validation,test}}.json")
    return out, classes


def build_lists(kind: str, source: str | Path, out_dir: str | Path, split: int = 1, path_format: str | None = None,
                video_root: str | Path | None = None, skip_missing: bool = False) -> dict[str, Path]:
    """Write ``<split>.txt`` lists and ``classes.json`` into ``out_dir`` from one annotation source.

    ``kind``: 'folder' (source = the video folder), 'ucf101' / 'hmdb51' (source = the split-file folder),
    'kinetics' (source = a CSV or a folder of CSVs), 'ssv2' (source = the annotation folder). With
    ``skip_missing``, entries whose file is not under ``video_root`` are left out (and counted in the log).
    """
    source = Path(source)
    if kind == "folder":
        splits, classes = from_class_folders(source)
        video_root = video_root or source
    elif kind == "ucf101":
        splits, classes = from_ucf101(source, split)
    elif kind == "hmdb51":
        splits, classes = from_hmdb51(source, split)
    elif kind == "kinetics":
        csvs = sorted(source.glob("*.csv")) if source.is_dir() else [source]
        splits, classes = from_kinetics(csvs, path_format or KINETICS_FORMAT)
    elif kind == "ssv2":
        splits, classes = from_ssv2(source, path_format or SSV2_FORMAT)
    else:
        raise DataError(f"unknown list kind {kind!r}; choose folder, ucf101, hmdb51, kinetics or ssv2")
    out_dir = Path(out_dir)
    written = {}
    for name, entries in splits.items():
        if skip_missing:
            if video_root is None:
                raise DataError("skip_missing needs the video root folder")
            kept = [e for e in entries if os.path.isfile(resolve(e, video_root))]
            log.info("%s: %d of %d videos found under %s", name, len(kept), len(entries), video_root)
            entries = kept
        written[name] = out_dir / f"{name}.txt"
        write_list(written[name], entries)
        log.info("wrote %s (%d videos)", written[name], len(entries))
    write_classes(out_dir / "classes.json", classes)
    return written


def main(args) -> int:
    """``mme lists``: see :func:`build_lists`."""
    build_lists(args.kind, args.source, args.out, split=args.split, path_format=args.path_format,
                video_root=args.video_root, skip_missing=args.skip_missing)
    return 0
