"""List files in the VideoMAE format: one video per line, ``path label`` (space separated), or ``path`` alone
for unlabelled pre-training lists. Paths are relative to a root folder (or absolute) and may contain spaces:
the label is the last token. A file is labelled if any line ends in an integer; then every line must.

Here too: the builders of lists from each dataset's official annotation files (``mme lists``), and the check of
every listed video before a long run (``mme check``, ``mme lists --check``).
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import errno
import json
import logging
import os
import re
import shlex
import stat
import string
import sys
import unicodedata
from collections import Counter
from collections.abc import Callable, Collection, Container, Iterator
from dataclasses import MISSING, dataclass, field, fields, replace
from operator import itemgetter
from pathlib import Path
from typing import NamedTuple

import av

from mme.data.pyav_reader import (
    forget_indices,
    index_unkept,
    keep_index_as,
    mark_checked,
    note_other_index_versions,
    open_container,
    video_stream,
)
from mme.data.video import check_video, video_check
from mme.errors import ConfigError, DataError, MMEError, first_line
from mme.utils import (
    NOT_THERE,
    REFUSED,
    absolute_path,
    atomic_write_text,
    atomic_write_texts,
    broken_link,
    cannot_read,
    check_apart,
    check_output,
    command_option,
    counted,
    error_reason,
    exclusive_lock,
    fs_name,
    identity_or_none,
    in_workers,
    lock_beside,
    plural,
    progress_bar,
    read_json_object,
    reading,
    removing,
    same_file_as,
    stat_identity,
    utf8_name,
    utf8_named,
    writing,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ListEntry:
    """One video of a list: its path as written in the list, its class id (None when unlabelled) and the line it
    was read from (0 when not read from a file; not compared). Slotted (no ``__dict__`` each): lists of 240k entries
    are read and checked before a run, which holds its own packed (:class:`~mme.data.packed.PackedEntries`)."""

    path: str
    label: int | None = None
    line_no: int = field(default=0, compare=False, repr=False)


def _set_entry_state(entry: ListEntry, state: list | tuple | dict) -> None:
    """The state ListEntry pickles (its fields' values, in order) or the one it pickled before it was slotted (its
    ``__dict__``), which the slotted dataclass's own ``__setstate__`` read as its keys: ``ListEntry(path='path', ...)``.
    Set after ``@dataclass``: on Python 3.10 its ``slots=True`` puts its own over a frozen class's."""
    if isinstance(state, dict):
        state = [state[f.name] if f.default is MISSING else state.get(f.name, f.default) for f in fields(entry)]
    for f, value in zip(fields(entry), state, strict=True):
        object.__setattr__(entry, f.name, value)


ListEntry.__setstate__ = _set_entry_state


@dataclass(frozen=True)
class BadLine:
    """A list line that could not be parsed: where it is and why."""

    list_file: str
    line_no: int
    text: str
    reason: str

    def __str__(self) -> str:
        return f"{self.list_file}:{self.line_no}: {self.reason}: {self.text!r}"


def left_out(bad: list[BadLine], what: str) -> str:
    """What a command that skips the ``bad`` lines of ``what`` (a list) says of them: their count and the first 5."""
    are = plural(len(bad), "is", "are")
    return (f"{counted(len(bad), 'line')} of {what} {are} not 'path [label]' and {are} left out: "
            + "; ".join(map(str, bad[:5])) + (" ..." if len(bad) > 5 else ""))


_LINE_END = re.compile(r"\r\n|\r|\n")
"""What ends a line of a text as a file read in text mode has it: \\n, \\r\\n or \\r only (``str.splitlines`` also
splits at U+2028, U+0085 and other characters file names may hold)."""


def text_lines(text: str) -> list[str]:
    """The lines of a text, split where :data:`_LINE_END` ends them."""
    lines = _LINE_END.split(text)
    return lines[:-1] if lines and lines[-1] == "" else lines


def _without_bom(line: str) -> str:
    """A line without the UTF-8 byte-order mark at its start that files saved with one (Notepad, Excel's 'CSV
    UTF-8') leave inside a file they are joined into (``cat a.txt b.txt``, rows appended with ``cat x.csv >>``)."""
    return line.removeprefix("\ufeff")


def _is_int(token: str) -> bool:
    """Whether ``token`` is an integer as a list writes one (ASCII digits: '²' is a digit to str.isdigit)."""
    return re.fullmatch(r"[+-]?[0-9]+", token) is not None


def read_list(list_file: str | Path, strict: bool = True, key: str | None = None
              ) -> tuple[list[ListEntry], list[BadLine]]:
    """Parse a list file. Returns the entries and the bad lines; with ``strict`` the first bad line raises
    DataError naming the file and line. Blank lines and lines starting with '#' are ignored. ``key``: what named
    the file, said where it cannot be read: a config setting (a recipe's default may be one the user did not set,
    so how to set it is said too) or words ("the train list")."""
    list_file = str(list_file)
    named = f"{key or 'list file'} {list_file}"
    to_set = ""
    if key and key.split(".")[0] in ("data", "task"):
        to_set = f"; set {key}=PATH" + (f", or {key}= for none" if key.startswith("task.") else "")
    try:
        data = Path(list_file).read_bytes()
        lines = text_lines(_utf8_text(data, named))
    except OSError as e:
        raise DataError(f"{key or 'list file'} {cannot_read(list_file, e)}{to_set}") from e
    except DataError as e:  # (not UTF-8)
        why = _not_a_list(list_file, data)
        raise DataError(f"{named}: {why}{to_set}" if why else f"{e}{to_set}") from e
    return parse_list(lines, list_file, strict)


def _utf8_text(data: bytes, named: str) -> str:
    """``data``, the bytes of a list, annotation or recipe file (``named``: its path, or what it is and its path), as
    UTF-8 text, a byte-order mark at its start dropped. Text saved as UTF-16 (:func:`_not_utf16`), or bytes that are
    not UTF-8, are a DataError naming the file and how it was saved, or the first bad byte's line and its offset in
    the file (the decoder's offset is in the text past the mark)."""
    _not_utf16(data, named)
    body = data.removeprefix(codecs.BOM_UTF8)
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as e:
        at = len(data) - len(body) + e.start
        line = len(_LINE_END.split(data[:at].decode("utf-8")))  # (the bytes before the first bad one are UTF-8)
        raise DataError(f"{named}: " + _not_utf8(f"line {line} holds the byte {data[at]:#04x}, at offset {at} of "
                                                 f"the file")) from e


def _not_utf8(why: str) -> str:
    """What a list or annotation file saved otherwise than as UTF-8 is told (``why``: what tells it, or how it likely
    was saved)."""
    return f"not UTF-8 text ({why}); save it as UTF-8"


def _saved_as_utf16(data: bytes) -> str | None:
    """How the start of ``data``, a text file's bytes, tells that it was saved as UTF-16: its byte-order mark
    (PowerShell 5's ``>``), or, without one, a NUL as every other byte of half its characters or more (the high byte
    of ASCII and Latin-1 characters) and at most an eighth as many between them (the low byte of U+3000, the
    ideographic space, of U+0100; a video's zeros fall on both alike); None where it tells neither."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "saved as UTF-16, its first bytes the byte-order mark"
    start = data[:4096]
    for high, low in ((start[1::2], start[::2]), (start[::2], start[1::2])):  # (little-endian, big-endian)
        if high and 2 * high.count(0) >= len(high) and 8 * low.count(0) <= high.count(0):
            return "saved as UTF-16 without a byte-order mark"
    return None


def _not_utf16(data: bytes, named: str) -> None:
    """A DataError naming ``named`` where ``data``, the bytes of a text file (or its start), was saved as UTF-16
    (:func:`_saved_as_utf16`): one of ASCII alone so saved is valid UTF-8, its NULs read as characters."""
    if utf16 := _saved_as_utf16(data):
        raise DataError(f"{named}: " + _not_utf8(utf16))


def _not_a_list(list_file: str, data: bytes) -> str | None:
    """Why ``data``, the bytes of ``list_file``, which are not UTF-8, are no list, where that is plain: a video given
    in a list's place (its suffix, or NUL bytes at its start, which no text holds); None where it is neither, or the
    list is UTF-16 text (:func:`_utf8_text` says so)."""
    if _saved_as_utf16(data):
        return None
    what = "a video" if _video_stem(os.path.basename(list_file)) is not None else \
        "a video or another binary file" if b"\0" in data[:4096] else None
    return what and f"{what}, not a list file (one 'path [label]' a line)"


def parse_list(lines: list[str], list_file: str, strict: bool = True) -> tuple[list[ListEntry], list[BadLine]]:
    """:func:`read_list` of a list's lines (:func:`text_lines`) already read; ``list_file`` names it in errors. A
    NUL byte is in no path a file system takes: the list is refused, not each line's video reported missing. Each
    path, UTF-8 text, is held as the file system's name for it (:func:`mme.utils.fs_name`), whatever the locale."""
    if (nul := next((n for n, line in enumerate(lines, 1) if "\0" in line), None)) is not None:
        raise DataError(f"list file {list_file}: line {nul} holds a NUL byte: "
                        + _not_utf8("saved as UTF-16 without a byte-order mark, or zeros a write cut short left"))
    lines = [_without_bom(line) for line in lines]
    if json_kind := _json_document(lines):  # (classes.json given for train.txt: each of its lines a missing video)
        raise DataError(f"list file {list_file}: a JSON {json_kind}, not a list of videos (one 'path [label]' a "
                        "line): a class map or annotation file given for a list such as train.txt?")
    rows = [(n, line.strip()) for n, line in enumerate(lines, 1) if line.strip() and not _is_comment(line)]
    labelled = any(len(t.split()) > 1 and _is_int(t.split()[-1]) for _, t in rows)
    decimal = next(((n, t) for n, t in rows if len(t.split()) > 1 and re.fullmatch(r"[+-]?[0-9]+\.[0-9]*",
                                                                                 t.split()[-1])), None)
    if not labelled and decimal:  # '1.0' would be read as part of the path, and every video as missing
        raise DataError(str(BadLine(list_file, *decimal, "a label that is not a whole number (class ids are 0, 1, "
                                                         "...)")))
    entries, bad = [], []
    for n, text in rows:
        if not labelled:
            entries.append(ListEntry(fs_name(text), line_no=n))
            continue
        parts = text.rsplit(maxsplit=1)
        reason = None
        if len(parts) < 2:
            reason = "no label (other lines of this list have one)"
        elif _ends_a_path(parts[1]):  # ('train/air drumming/x.mp4': the label left out, not 'drumming/x.mp4')
            reason = f"no label (its last word {parts[1]!r} is part of the path; other lines of this list have one)"
        elif not _is_int(parts[1]):
            reason = f"bad label {parts[1]!r} (expected a class id >= 0 at the end of the line)"
        elif int(parts[1]) < 0:
            reason = f"negative label {parts[1]}"
        if reason is None:
            entries.append(ListEntry(fs_name(parts[0]), int(parts[1]), n))
            continue
        bad.append(BadLine(list_file, n, text, reason))
        if strict:
            raise DataError(str(bad[-1]))
    if not entries and not bad:
        raise DataError(f"list file {list_file}: no videos listed")
    return entries, bad


def _ends_a_path(word: str) -> bool:
    """Whether ``word``, the last of a labelled list's line, is the end of a path holding a space, not a label: it
    holds a folder separator or ends in a video suffix ('drumming/x.mp4', '1.mp4'); a class name or a number
    mistyped ('cat', '1.5', '3a') is a bad label."""
    return "/" in word or "\\" in word or os.path.splitext(word)[1].lower() in VIDEO_EXTS


def _json_document(lines: list[str]) -> str | None:
    """What JSON document ``lines`` make up ('array', 'object'), where they start with '[' or '{' and parse as one;
    else None. A list's line is a path, which JSON's brackets and quotes do not spell."""
    first = next((line.lstrip() for line in lines if line.strip()), "")
    if first[:1] not in ("[", "{"):
        return None
    try:
        document = json.loads("\n".join(lines))
    except (ValueError, RecursionError):  # (json.JSONDecodeError; a number past the int limit; [[[... nested deep)
        return None
    return "array" if isinstance(document, list) else "object" if isinstance(document, dict) else None


def _is_comment(line: str) -> bool:
    """A line of '#' and a space (or '#' alone) is a comment; HMDB51's file names may start with '#'."""
    text = line.strip()
    return text == "#" or (text.startswith("#") and text[1].isspace())


def resolve(entry: ListEntry, root: str | Path) -> str:
    """The file of an entry: its path joined to ``root`` unless absolute."""
    return entry.path if os.path.isabs(entry.path) or not root else os.path.join(str(root), entry.path)


def check_root(root: str | Path | None, option: str) -> None:
    """Refuse a ``root`` (the folder list paths start from; '' or None the working folder) that is not a folder,
    a file or missing, in one line naming ``option``: every video under it would be missing; one inside a folder this
    user may not enter (whose look-up Python's ``is_dir`` raises of) cannot be read (:func:`~mme.utils.reading`)."""
    if not root:
        return
    with reading(root, DataError, option):
        if not Path(root).is_dir():
            raise DataError(f"{option} {os.fspath(root)!r} is not a folder")


def real_path(entry: ListEntry, root: str | Path) -> str:
    """The file of an entry by its real path, one however it is spelt ('./a.mp4', 'x/../a.mp4', a symlink to it)."""
    return os.path.realpath(resolve(entry, root))


def video_identity(entry: ListEntry, root: str | Path) -> tuple[int, int] | str:
    """What lists that must not share videos compare an entry by: its file's (device, inode) where it is there, one
    however it is reached (a symlink, a hard link, a bind mount of its folder); else its :func:`real_path`."""
    found = identity_or_none(resolve(entry, root))
    return real_path(entry, root) if found is None else found


def same_video(first: ListEntry, second: ListEntry, root: str | Path) -> str:
    """A video two entries list (:func:`video_identity`), named by its real path, and by both where they differ (a
    hard link, a bind mount)."""
    a, b = real_path(first, root), real_path(second, root)
    return a if a == b else f"{a} (as {b}: the same file)"


def listed_once(list_file: str | Path, entries: list[ListEntry], root: str | Path,
                what: str) -> dict[tuple[int, int] | str, ListEntry]:
    """The entries of a list that is scored (or carved into a split that is), by :func:`video_identity`; a video
    listed twice is a DataError naming the list, the video and both lines: it would count twice, or be fit on in
    one copy and scored in the other."""
    videos: dict[tuple[int, int] | str, ListEntry] = {}
    for e in entries:
        key = video_identity(e, root)
        if key in videos:
            raise DataError(f"{what} {list_file}: lines {videos[key].line_no} and {e.line_no} list the same video "
                            f"{same_video(videos[key], e, root)}; list each video once (twice, it is scored twice, "
                            f"or fit on and scored)")
        videos[key] = e
    return videos


def shared_video(scored: dict[tuple[int, int] | str, ListEntry], other: dict[tuple[int, int] | str, ListEntry],
                 root: str | Path) -> tuple[int, str]:
    """How many videos two lists share (by :func:`video_identity`, maps as :func:`listed_once` makes) and one of
    them named (:func:`same_video`; the first by the real path ``scored`` gives it), ``(0, '')`` for none."""
    shared = scored.keys() & other.keys()
    if not shared:
        return 0, ""
    first = min(shared, key=lambda key: real_path(scored[key], root))
    return len(shared), same_video(scored[first], other[first], root)


def write_list(path: str | Path, entries: list[ListEntry]) -> None:
    """Write entries in the VideoMAE format (atomically): :func:`list_text`."""
    atomic_write_text(path, list_text(path, entries))


def list_text(path: str | Path, entries: list[ListEntry]) -> str:
    """The text of list file ``path`` holding ``entries`` in the VideoMAE format, each path (the file system's name)
    as UTF-8 text (:func:`mme.utils.utf8_name`), whatever the locale. A path that the format cannot hold, one with a
    line break or space at either end (which :func:`read_list` strips), or whose name is not UTF-8 (no list reader
    could read the file), is a DataError naming it."""
    paths = []
    for e in entries:
        try:  # (nearly every row: ASCII)
            listed = e.path if e.path.isascii() else os.fsencode(e.path).decode("utf-8")
        except UnicodeDecodeError:
            raise DataError(f"{path}: cannot list {e.path!r}: its name is not UTF-8 (a list file is UTF-8 text); "
                            f"rename it (e.g. convmv -f latin1 -t utf8)") from None
        if listed != listed.strip() or len(text_lines(listed + "\n")) != 1:
            raise DataError(f"{path}: cannot list {e.path!r}: a list line cannot hold a path with a line break "
                            f"or spaces at its ends; rename the file or folder")
        paths.append(listed)
    paths = [f"./{p}" if _is_comment(p) else p for p in paths]  # '# misc/a.mp4' read as a comment
    lines = [p if e.label is None else f"{p} {e.label}" for p, e in zip(paths, entries)]
    return "".join(line + "\n" for line in lines)


def write_classes(path: str | Path, classes: list[str]) -> None:
    """The label map: a JSON list of class names, index = class id (:func:`classes_text`)."""
    atomic_write_text(path, classes_text(classes))


def classes_text(classes: list[str]) -> str:
    """The text of :func:`write_classes`'s file."""
    return json.dumps(list(classes), indent=1) + "\n"


def read_classes(path: str | Path, what: str = "classes") -> list[str]:
    """Class names by class id from a JSON list (``write_classes``), or from a ``{name: id}`` map (a common
    Kinetics layout) whose ids are 0..n-1; anything else is a DataError naming ``what`` and the file."""
    try:
        names = json.loads(_utf8_text(Path(path).read_bytes(), f"{what} {path}"))
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{what} {path}: not a readable JSON list of class names ({e})") from e
    if isinstance(names, dict):  # (SSv2's ids: "0", "1", ...)
        names = by_class_id([(i, name) for name, i in names.items()], f"{what} {path}", "{name: id}")
    if not isinstance(names, list) or not names:
        raise DataError(f"{what} {path}: expected a JSON list of class names (index = class id), or a "
                        f"{{name: id}} map")
    return distinct_classes(named_classes(names, f"{what} {path}"), f"{what} {path}")


def by_class_id(pairs: list[tuple[object, object]], what: str, form: str) -> list:
    """The names of ``pairs`` ``(class id, name)``, of a map of the ``form`` ``{name: id}`` (:func:`read_classes`)
    or ``{id: name}`` (a Hugging Face ``id2label``), by class id; the ids, integers or their text (``"0"``), must be
    0..n-1, each once, else a DataError naming ``what``: not a bool (an int to Python: ``{"a": false, "b": true}``
    is no map of ids)."""
    ids = [int(i) if isinstance(i, str) and _is_int(i) else i for i, _ in pairs]
    if not all(type(i) is int for i in ids) or sorted(ids) != list(range(len(ids))):
        raise DataError(f"{what}: a {form} map needs the ids 0..{len(ids) - 1}, each once")
    return [name for _, (_, name) in sorted(zip(ids, pairs), key=lambda p: p[0])]


def named_classes(names: list, what: str) -> list:
    """``names`` (class names by class id), a DataError naming ``what`` and the class where one is no string:
    str() would make names of them ('None', 'True', "{'a': 1}")."""
    other = next((i for i, n in enumerate(names) if not isinstance(n, str)), None)
    if other is not None:
        raise DataError(f"{what}: class {other} is {json.dumps(names[other], default=repr)}, not a name (a JSON "
                        f"string); class names are strings, \"3\" for a class named 3")
    return names


def distinct_classes(names: list[str], what: str) -> list[str]:
    """``names`` (class names by class id), a DataError ``WHAT: names [...] more than one class`` where a name is
    given to two classes: their results would merge under that name (:func:`read_classes`' files, a report's
    ``class_names``, a Hugging Face ``id2label``)."""
    twice = sorted(name for name, n in Counter(names).items() if n > 1)
    if twice:
        raise DataError(f"{what}: names {twice} more than one class (a name must say which class it is)")
    return names


def agreeing_classes(given: list[str] | None, key: str, path: str, recorded: list[str] | None,
                     source: str, checkpoint: str | os.PathLike | None) -> list[str] | None:
    """The class names of the classifier in ``source`` (file ``checkpoint``; None: a module): those it records (the
    names it was trained with), else ``given`` (read from ``key`` ``path``); both, and not the same, is a ConfigError
    naming both (a head's class ids filed under other classes' names would pass unseen) and what to do: lists
    numbered by another map than the recorded one are rebuilt with it (``mme lists ... --classes``, the map written
    by a one-line Python command, no command writing it); ``key`` is left out only where its file's names are wrong
    and the lists right (leaving it out for lists numbered by its map scored 0 %, unsaid)."""
    if given is None or recorded is None or given == recorded:
        return recorded if given is None else given
    if len(given) != len(recorded):
        diff = f"{len(given)} classes against its {len(recorded)}"
    else:
        i = next(i for i, (a, b) in enumerate(zip(given, recorded)) if a != b)
        diff = f"class {i}: {given[i]!r} against its {recorded[i]!r}"
    shown = ", ".join(map(repr, recorded[:5])) + (", ..." if len(recorded) > 5 else "")
    raise ConfigError(f"{key} {path} names other classes than {source} was trained with ({diff}): the lists' labels "
                      f"must be numbered by the {len(recorded)} names it records ({shown}); rebuild lists numbered "
                      f"otherwise with `mme lists ... --classes FILE`, FILE a JSON list of those names, which "
                      f"`{_writes_class_map(checkpoint)}` writes, and leave {key} out only where its names are wrong "
                      f"and the lists numbered by the recorded ones")


def _writes_class_map(checkpoint: str | os.PathLike | None) -> str:
    """The command that writes the class names ``checkpoint`` records to FILE, a class map for ``mme lists ...
    --classes FILE`` (no command of mme writes it)."""
    return ("python -c 'import sys; from mme.data.lists import write_classes; from mme.models.checkpoint import "
            "read_checkpoint; write_classes(sys.argv[2], read_checkpoint(sys.argv[1]).class_names)' "
            f"{shlex.quote(os.fspath(checkpoint)) if checkpoint is not None else 'CHECKPOINT'} FILE")


def check_labels(list_file: str | Path, num_classes: int | None, what: str, whence: str = "") -> list[ListEntry]:
    """Read a test list strictly (each of its videos is predicted or reported, so a line the parser rejects is
    a DataError naming it) and refuse, naming the video, a missing label or one that a ``num_classes``-class
    model cannot predict (any label, when None); ``whence``: where that count came from, said with it. Returns its
    entries."""
    entries = read_list(list_file, strict=True, key=what)[0]
    for e in entries:
        if e.label is None:
            raise DataError(f"{what} {list_file}: {e.path} has no label; a list to fit or score a model on needs one "
                            f"on every line")
        if num_classes is not None and e.label >= num_classes:
            raise DataError(f"{what} {list_file}: {e.path} has label {e.label}, not a class of a {num_classes}-class "
                            f"model (labels must be 0..{num_classes - 1}{'; ' + whence if whence else ''})")
    return entries


def check_class_ids(list_file: str | Path, entries: list[ListEntry], what: str, num_classes: int | None,
                    to_set: str, scored: dict[str, tuple[str | Path, list[ListEntry]]] | None = None) -> None:
    """The labels of a training list (``entries`` of ``list_file``, named ``what``) before any work: a DataError
    where every video has one label (a head trained on one class learns nothing, its loss 0, and scores 100 %).
    Where the class count is 1 + its largest label (``num_classes`` None: no class map, no count given), ids that
    no video has are warned about, counted (a 13-class head for labels {0, 5, 9, 12}: 9 classes never trained),
    and a DataError where they are far more than the labels there are (1000 and ten times those), naming the
    largest label, its list and line: a stray label (100000) made a head of 100001 classes unsaid, then a confusion
    matrix of 80 GB after training. ``scored`` (``{what: (list_file, entries)}``: mme probe's val and test lists,
    whose labels count its classes too) are looked at for that stray label as well. ``to_set``: how to give the
    class count or map instead."""
    labels = Counter(e.label for e in entries if e.label is not None)
    if len(labels) == 1:
        raise DataError(f"{what} {list_file}: every video has label {next(iter(labels))}; a classifier needs videos "
                        f"of at least 2 classes")
    if num_classes is not None or not labels:
        return
    lists = {what: (list_file, entries), **(scored or {})}
    every = {e.label for _, listed in lists.values() for e in listed if e.label is not None}
    top = max(every)
    if top + 1 - len(every) > max(1000, 10 * len(every)):
        where, (path, line) = next((name, (path, e.line_no)) for name, (path, listed) in lists.items()
                                   for e in listed if e.label == top)
        raise DataError(f"{where} {path}:{line}: label {top} makes a {top + 1}-class head for the {len(every)} "
                        f"labels the list{'s' if scored else ''} ha{'ve' if scored else 's'} ({top + 1 - len(every)} "
                        f"class ids without a video): a stray label? Number the labels 0..{len(every) - 1}, or "
                        f"{to_set}")
    top = max(labels)
    unused = top + 1 - len(labels)
    if unused:
        skipped = [i for i in range(top + 1) if i not in labels]
        log.warning("%s %s: its labels skip %d of the class ids 0..%d, which no video has (%s%s): a %d-class head, "
                    "%d of its classes never trained; number the labels 0..%d, or %s", what, list_file, unused, top,
                    ", ".join(map(str, skipped[:5])), ", ..." if unused > 5 else "", top + 1, unused,
                    len(labels) - 1, to_set)


def untrained_classes(train_file: str | Path, train: list[ListEntry],
                      scored: dict[str, tuple[str | Path, list[ListEntry]]]) -> str | None:
    """The warning, or None, where a scored split (``{what: (list_file, entries)}``: a val or test list) has
    videos of a class the training list has none of, naming those classes and their video counts: no model fit on
    that list predicts them, so their scores cannot be right. Not refused: a small subset may lack a class. A
    training list labelled 1..N (no 0) beside scored lists labelled 0..N-1 at most is said to look 1-based
    (UCF101's trainlist0N.txt beside a 0-based test list; a 0-based subset lacking class 0 scores its top class).
    Returned, not logged: the caller logs it once (rank 0 alone under torchrun)."""
    trained = Counter(e.label for e in train if e.label is not None)
    found, scored_top = [], -1
    for what, (list_file, entries) in scored.items():
        labels = [e.label for e in entries if e.label is not None]
        scored_top = max([scored_top, *labels])
        untrained = Counter(label for label in labels if label not in trained)
        if trained and untrained:
            counts = ", ".join(f"{label} ({n} videos)" for label, n in sorted(untrained.items()))
            found.append(f"{what} {list_file} has videos of class(es) {counts}")
    if not found:
        return None
    top = max(trained)
    one_based = ("" if 0 in trained or len(trained) != top or scored_top >= top else
                 f"; its labels are 1..{top} with no 0: it looks 1-based (as UCF101's trainlist0N.txt: make the "
                 f"lists with `mme lists ucf101`)")
    return (f"{'; '.join(found)} that the training list {train_file} has none of: no model fit on it predicts "
            f"them, so the scores of those videos cannot be right{one_based}")


def misnamed_classes(names: list[str], named_by: str, lists: Collection[tuple[str | Path, list[ListEntry]]],
                     trained_with: str | os.PathLike | None = None) -> str | None:
    """The warning, or None, where the videos of ``lists`` (``(list_file, entries)``) lie in class folders and some
    are not in the folder of their label's name (of ``names``, the class names by id, of ``named_by``). A video's
    class folder is the outermost folder of its path that names a class as ``mme lists`` names one (``mme lists
    folder`` numbers a video by its top class folder): the name as written, with '_' for its spaces, or as
    torchvision names Kinetics' (:func:`_label_folders`), without regard to case or Unicode form (:func:`_class_key`);
    so lists of class folders (sub-folders in them too), UCF101, HMDB51 and Kinetics are judged; where some video
    lies in no class's folder (flat SSv2 and Kinetics CVDF layouts), none is. The path's folders are those it is
    opened by (``os.path``: on POSIX a path written with '\\' is one file name, a video not there, which the runs
    say). Labels that name no class of ``names`` are not judged (those of a list read unchecked). Counted, the first
    named. ``trained_with``: the classifier file that records the names. Its head's class ids are the numbering of
    the list it was trained on, which its names or these lists may disagree with: the names recorded in another
    order (the per-class names alone wrong) or these lists numbered otherwise (its scores wrong too); the warning
    says either may be and how to tell. Without it, the names, a new head's, would be wrong and are to be put in the
    lists' order. Not refused: an experiment with random or relabelled classes does this on purpose.
    Returned, not logged: the caller logs it once (rank 0 alone under torchrun)."""
    ids: dict[str, set[int]] = {}
    for i, name in enumerate(names):
        for folder in _label_folders(name).values():
            ids.setdefault(_class_key(folder), set()).add(i)
    labelled = [(list_file, e, os.path.dirname(e.path)) for list_file, entries in lists for e in entries
                if e.label is not None and e.label < len(names)]
    class_folders = {parent: next(((folder, ids[_class_key(folder)]) for folder in Path(parent).parts
                                   if _class_key(folder) in ids), None)
                     for parent in {parent for *_, parent in labelled}}  # a path's folder -> its class folder, classes
    if None in class_folders.values():  # (a video outside every class's folder: not a layout of class folders)
        return None
    wrong = [(list_file, e, parent) for list_file, e, parent in labelled if e.label not in class_folders[parent][1]]
    if not wrong:
        return None
    list_file, e, parent = wrong[0]
    first = (f"{named_by}: {len(wrong)} of the {len(labelled)} listed videos are not in the class folder of their "
             f"label's name (the first: {list_file}:{e.line_no}: label {e.label}, named {names[e.label]!r}, in folder "
             f"{class_folders[parent][0]!r})")
    if trained_with is not None:
        return (f"{first}: the names {os.fspath(trained_with)} records disagree with the lists' class folders. "
                f"Either they are in another order than the numbering of the list it was trained on (then only the "
                f"per-class names are wrong) or these lists are numbered otherwise than that list (then its scores are "
                f"wrong too); to tell, compare them (`{_writes_class_map(trained_with)}` writes them to FILE) with the "
                f"classes.json `mme lists` wrote beside that list: in another order, the names are wrong")
    return (f"{first}: names in another order than the lists' numbering? The per-class figures, the confusion matrix "
            f"and the class names recorded would carry the wrong names; the names must be in the order the lists "
            f"are numbered by (the classes.json `mme lists` wrote beside them)")


# ---- builders: official annotation files -> {split: entries}, class names ------------------------------------

VIDEO_EXTS = (".mp4", ".avi", ".webm", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg", ".ogv", ".flv", ".ts", ".m2ts", ".mts",
              ".3gp", ".wmv", ".vob", ".y4m", ".divx", ".dv", ".ogg", ".m2v", ".asf", ".qt", ".3g2", ".f4v", ".mxf",
              ".m2p", ".mod", ".tod", ".rm", ".rmvb")
"""Suffixes of the video files that `mme lists folder` lists (containers FFmpeg reads; any case). Other files in
class folders are left out, and said."""
LOOKED_UP_SPELLINGS = tuple(dict.fromkeys(spelled for ext in VIDEO_EXTS
                                         for spelled in (ext, ext.upper(), "." + ext[1:].capitalize())))
"""The spellings of each suffix of :data:`VIDEO_EXTS` (in its order) that ``--skip-missing`` looks a video up under
in a folder that can be entered but not listed (:func:`_name_looked_up`): lower case, capitals and a first capital
(.mp4, .MP4, .Mp4), those files have; every spelling of a suffix in any case would be a stat each (8 for .mp4, 16
for .mpeg) per video not found. A folder listed matches a suffix in any case."""
AUDIO_TOO_EXTS = (".ogg", ".mxf", ".rm", ".asf", ".mod", ".webm")
"""Video suffixes that as often name files without a video (Ogg Vorbis or Opus audio, an MXF file of one audio
track, RealAudio, WMA in ASF, a tracker module, a WebM audio download: yt-dlp's bestaudio ``clip.f251.webm`` beside
its video): such a file is listed only where FFmpeg finds a video stream in it (:meth:`_PassedOver.holds_video`;
opening a WebM VP9 video to look takes about 0.8 ms, its audio alone 0.15 ms)."""
LIST_EXTS = (".txt", ".csv", ".lst")  # names a list file goes by
FILE_EXTS = (".md", ".pdf", ".doc", ".docx", ".rtf", ".tex", ".pptx", ".html", ".htm", ".css", ".json", ".jsonl",
             ".xml", ".yaml", ".yml", ".toml", ".ini", ".cfg", ".log", ".tsv", ".xls", ".xlsx", ".jpg", ".jpeg",
             ".jfif", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff", ".svg", ".ico", ".heic", ".avif", ".wav",
             ".mp3", ".m4a", ".flac", ".aac", ".srt", ".vtt", ".m3u8", ".npy", ".npz", ".pkl", ".pickle", ".h5",
             ".hdf5", ".parquet", ".tfrecord", ".db", ".sqlite", ".mdb", ".pt", ".pth", ".ckpt", ".safetensors",
             ".onnx", ".py", ".sh", ".ipynb", ".exe", ".zip", ".tar", ".tgz", ".rar", ".7z", ".gz", ".bz2", ".xz",
             ".zst", ".lz4")
"""Suffixes of files found beside class folders (documents, notes, web pages, configs, tables, logs, images, sound,
subtitles, playlists, arrays, weights, scripts, programs, archives, compressed files); with the suffixes of videos
and lists, in any case, they tell that a link that leads to nothing names a file, not a class folder
(:func:`_named_as_file`). A list, not Python's table of types: its suffixes end class names too (.c, .t, .a, .man,
.bin, .js: ``Vitamin.C``, ``Mr.T``, ``U.S.A``, ``Spider.Man``, ``Recycle.Bin``, ``Node.js``), and it differs from
one Python to the next."""
COMPRESSIONS = (".gz", ".bz2", ".xz", ".zst", ".lz4", ".z", ".br")
"""Suffixes of compressed files, matched in any case after one of a file (``notes.txt.Z``, ``clips.tar.BR``); alone,
only those of :data:`FILE_EXTS` name a file (``frames.gz``; ``Jay.Z`` and ``x.br`` may be class folders)."""
KINETICS_FORMAT = "{split}/{label}/{youtube_id}_{time_start:06d}_{time_end:06d}.mp4"
SSV2_FORMAT = "{id}.webm"
CLASSES_FILE = "classes.json"  # what mme lists writes into --out beside the lists: the class map
CHECK_FILE = "check.json"  # and with --check, the check's report
SOURCE_GROUPS = (
    re.compile(r"(v_.+_g\d+)_c\d+"),  # UCF101: v_<Class>_g<group>_c<clip>, the clips of a group cut from one video
    # HMDB51: <source>_<action>_<tags>_<n>; one source's clips have different tags (camera motion, view, quality:
    # Faith_Rewarded_swing_baseball_f_cm_np1_ba_bad_11, ..._u_nm_np1_le_bad_12), so the group is all before them
    re.compile(r"(.+)_[fhul]_[cn]m_np\d+_(?:fr|ba|le|ri)_(?:bad|med|goo)_\d+"),
    re.compile(r"([\w-]{11})_\d{6}_\d{6}"),  # Kinetics: <youtube_id>_<start>_<end>, segments of one YouTube video
)
"""The names (of a file without its extension) that say the source video a clip was cut from (the first group):
UCF101's, HMDB51's and Kinetics' (:data:`KINETICS_FORMAT`) clips of one source are one group (:func:`source_group`)."""


def group_pattern(group_by: str | None, option: str = "--group-by") -> re.Pattern | None:
    """``group_by`` compiled (None for None), a ConfigError naming ``option`` where it is not a regular expression, or
    is empty (an unset shell variable), which matches every name: every video one source."""
    if group_by is None:
        return None
    if not group_by:
        raise ConfigError(f"{option} is empty, which matches every file name: all videos one source; give a regular "
                          "expression, or leave it out for the sources the names say")
    try:
        return re.compile(group_by)
    except re.error as e:
        raise ConfigError(f"{option} {group_by!r} is not a regular expression: {e}") from None


def source_group(path: str, group_by: re.Pattern | None = None) -> str:
    """The source video a clip (a list's ``path``) was cut from, which must not be on both sides of a split: with
    ``group_by`` (:func:`group_pattern`), its first group (or its match where it has none) searched in the file's
    name; else the UCF101, HMDB51 or Kinetics source its name says (:data:`SOURCE_GROUPS`). A path that matches
    none is its own group (the path)."""
    name = os.path.basename(path)
    if group_by is not None:
        found = group_by.search(name)
        return path if found is None else found.group(1 if group_by.groups and found.group(1) is not None else 0)
    for pattern in SOURCE_GROUPS:
        found = pattern.fullmatch(os.path.splitext(name)[0])
        if found:
            return found.group(1)
    return path

Splits = dict[str, list[ListEntry]]


def _hidden(name: str) -> bool:
    """A name starting with '.': macOS's '._' companions (AppleDouble files, which a copy from a Mac onto another
    file system leaves beside each file) and .DS_Store are never an annotation file, a video or a class folder."""
    return name.startswith(".")


def _need_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise DataError(f"{what} not found: {path}")
    return path


def warn_of_shared_sources(where: str | Path, sources: dict[str, list[tuple[str, str | Path]]],
                           relative_to: str | Path | None = None) -> None:
    """Warn where one source video has clips in two splits (``sources``: per split, ``(source, path)`` of each of its
    videos, the source as :func:`source_group` gives it), naming the count and the first such source with a clip of
    it in each split: a model fit on one split meets the other's clips of the same video (same scene, same people).
    The two paths said are relative to ``relative_to`` where given (made so here: only they are said)."""
    seen: dict[str, tuple[str, str]] = {}
    shared: dict[str, tuple[tuple[str, str], tuple[str, str]]] = {}
    for split, videos in sources.items():
        for source, path in videos:
            first = seen.setdefault(source, (split, path))
            if first[0] != split and source not in shared:
                shared[source] = (first, (split, path))
    if shared:
        source, ((a, first), (b, other)) = next(iter(shared.items()))
        if relative_to is not None:
            first, other = os.path.relpath(first, relative_to), os.path.relpath(other, relative_to)
        log.warning("%s: %s %s clips in two splits, e.g. %s (%s in %s, %s in %s): scores of one split are of "
                    "videos the other fits on; move each source's clips to one split", where,
                    counted(len(shared), "source video"), plural(len(shared), "has", "have"), source, first, a,
                    other, b)


def warn_of_shared_sources_listed(where: str | Path, out: Splits, group_by: re.Pattern | None = None) -> None:
    """:func:`warn_of_shared_sources` of lists (per split, its entries), each video's source by its path
    (:func:`source_group`, by ``group_by`` where given)."""
    warn_of_shared_sources(where, {split: [(source_group(e.path, group_by), e.path) for e in entries]
                                   for split, entries in out.items()})


def _find_file(folder: Path, names: tuple[str, ...]) -> Path | None:
    """The first of ``names`` that is a file in ``folder`` (publishers have used several namings)."""
    return next((folder / n for n in names if (folder / n).is_file()), None)


def _read_text(path: Path) -> str:
    """An annotation file's text (:func:`_utf8_text`: a byte-order mark, of files saved on Windows, dropped)."""
    return _utf8_text(path.read_bytes(), str(path))


def _read_lines(path: Path) -> list[tuple[int, str]]:
    """A split file's lines, numbered, stripped (of a BOM starting one too: files saved with one, joined), blank
    ones left out."""
    return [(n, text) for n, line in enumerate(text_lines(_read_text(path)), 1)
            if (text := _without_bom(line).strip())]


SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                "validate": "val", "test": "test", "testing": "test"}
"""The names publishers give splits, and the split each names: a word of a file's name (:func:`split_name`), or a
folder's name, which makes it a split folder, not a class ('festival' or 'protest' are classes)."""


def split_name(name: str) -> str:
    """'train', 'val' or 'test' for the names publishers give splits ('validate', 'validation',
    'kinetics_400_val', ...), by a whole word of the name, words parted by what is not a letter (a digit,
    punctuation, a space) or a capital after a small letter ('k400train', 'train(1)', 'KineticsVal' name train, train
    and val; 'k400_latest' no test, nor 'retrain' train); any other name unchanged."""
    words = [word.lower() for word in re.split(r"[\W\d_]+|(?<=[a-z])(?=[A-Z])", name)]
    if "holdout" in words:  # Kinetics-600's unlabelled holdout_test, beside its labelled test
        return "holdout"
    named = {SPLIT_NAMES[word] for word in words if word in SPLIT_NAMES}
    return next((split for split in ("train", "val", "test") if split in named), name)


def _split_folder(folder: str | Path) -> tuple[str, Path]:
    """The split name of a folder of class folders given to ``mme lists folder`` and the folder its list's paths
    start from: its name and its parent where it is named as a split (``validation/a/1.mp4``), so that splits built
    one at a time give lists under one data.root, as a folder of split folders gives; else '' and the folder. By the
    name given (a link named train/ is a split folder), else by its real name (a link ``ucf_train`` to
    ``/data/ucf/train`` is the train split, its paths starting from ``/data/ucf``)."""
    for path in (Path(os.path.abspath(folder)), Path(os.path.realpath(folder))):
        if path.name.lower() in SPLIT_NAMES:
            return path.name, path.parent
    return "", Path(os.path.abspath(folder))


def from_class_folders(root: str | Path, classes: list[str] | None = None) -> tuple[Splits, list[str]]:
    """The lists and class names of :func:`folder_lists`, as the other builders give them."""
    splits, classes, _ = folder_lists(root, classes)
    return splits, classes


def _may_be_split_folder(folder: Path) -> bool:
    """Whether ``folder`` is named as a split (:data:`SPLIT_NAMES`) and holds a sub-folder (a class folder): so
    named, a folder of videos alone is a class's. False where it cannot be read."""
    if folder.name.lower() not in SPLIT_NAMES:
        return False
    try:
        return any(not _hidden(d.name) and d.is_dir() for d in folder.iterdir())
    except OSError:
        return False


def folder_lists(root: str | Path, classes: list[str] | None = None) -> tuple[Splits, list[str], Path]:
    """A folder of class sub-folders of videos (UCF101/HMDB51 style): one list 'all' (named after its split
    when the folder is a split folder, e.g. 'val' for ``validation/``, its paths then starting from the folder's
    parent: :func:`_split_folder`), classes sorted by name
    without regard to case, as UCF101's official classInd.txt is ('Hammering' before 'HammerThrow'). Sub-folders
    without videos (an unpacked split-file folder, the lists' own folder) are not classes (logged), and hidden
    files (macOS's '._' companions) are not videos.

    A root of split folders (train/, val/, ..., each of class sub-folders) gives one list per split, their paths
    relative to the root, with the classes of all splits, so a class has one id in every split; folder names that
    differ only in case or Unicode form are one class (:func:`_class_names`). ``classes`` (the class map of
    another list, e.g. the train split's built on its own) fixes the ids: a class folder not in it is a
    DataError. A split folder whose videos are all another split's files (beside it, where built on its own: its
    class folders are walked for that) is a DataError too, through links, hard links or a bind mount; where some of
    its videos are, a warning (:func:`_check_other_splits_videos`). Returns the lists, the class names and the
    folder the lists' paths start from (the default --root of their build)."""
    root = Path(root)
    with reading(root, DataError):  # (a folder on the way this user may not enter: EACCES; from_class_folders' too)
        if not root.is_dir():
            raise DataError(f"video folder not found: {root}")
    passed = _PassedOver()
    own_split, base = _split_folder(root)  # one split's folder, or '' (of '.' too)
    near = _split_folders_in(base) if own_split else {}  # (base listed once: the walk and the split check read it)
    keys = {f: "" if _may_be_split_folder(f) else _class_key(f.name) for f in _sub_folders(root, passed)}
    # (split folders are one class to this walk, which takes them for classes: a split of links to another's videos
    # or class folders holds those videos, so it is a split folder, checked against the other; as two classes, it
    # held none)
    walked, beside = _walk_classes(keys, passed, root, _class_folders_beside(root, near))
    videos = {folder.name: found for folder, found in walked.items()}
    holding = [name for name in videos if videos[name]]
    empty = [name for name in videos if not videos[name]]
    passed.of_classes(root, set(holding))
    split_dirs = [name for name in holding if name.lower() in SPLIT_NAMES and
                  any(f.parent != root / name for f in videos[name])]  # videos in class sub-folders
    if split_dirs and len(split_dirs) < len(holding):
        raise DataError(f"{root}: holds split folders {split_dirs} and class folders "
                        f"{[n for n in holding if n not in split_dirs]} side by side; give the folder of one split, "
                        f"or a folder of split folders only")
    if split_dirs:
        splits_named = Counter(split_name(name) for name in split_dirs)
        if max(splits_named.values()) > 1:
            raise DataError(f"{root}: split folders {split_dirs} name the same split twice "
                            f"({[s for s, n in splits_named.items() if n > 1]}); merge them or give each split its "
                            f"own name")
        split_folders = {name: root / name for name in split_dirs}
        folders = {name: _sub_folders(split_folders[name], passed) for name in split_dirs}
        passed = _PassedOver(streams=passed.streams)  # (of the walk that lists: the first took the split folders
        # for classes; what it found of each file's streams holds)
        walked = _walk_classes({f: _class_key(f.name) for split in folders.values() for f in split}, passed, root,
                               {})[0]
        per_split = {name: {f.name: walked[f] for f in folders[name]} for name in split_dirs}
        _check_other_splits_videos({name: (split_folders[name], [f for found in per_split[name].values()
                                                                 for f in found]) for name in split_dirs}, split_dirs,
                                   passed.identities)
        if empty:
            log.warning("%s: sub-folders without videos, no list written for them: %s", root, empty)
        base, prefix = Path(os.path.abspath(root)), ""  # (the split folders' names begin the paths)
    else:
        per_split, split_folders, prefix = {own_split: videos}, {own_split: root}, own_split
        if own_split:
            listed = [f for files in videos.values() for f in files]
            others = _splits_beside(root, near, own_split, listed, beside)
            _check_other_splits_videos({**others, own_split: (root, listed)}, [own_split], passed.identities)
            warn_of_shared_sources(root, {name: [(source_group(str(f)), f) for f in found]
                                          for name, (folder, found) in {own_split: (root, listed), **others}.items()
                                          if name == own_split or os.path.realpath(folder) != os.path.realpath(root)},
                                   relative_to=base)  # (only the two paths said are made relative)
            log.info("%s: a split folder: its list's paths start from %s (%s/...), as those of a folder of split "
                     "folders do (give it as data.root)", root, base, prefix)
        if empty:
            log.warning("%s: sub-folders without videos are not classes: %s", root, empty)
        if classes is None:  # (a class map given: a split may hold some of its classes only)
            _warn_of_other_layouts(root, videos, holding)
    passed.say(root)
    named = _class_names(root, per_split, split_folders)
    if classes is None:
        named = _numbered_with_splits_beside(root, named, per_split, split_folders, beside)
        classes = sorted(set(named.values()), key=lambda name: (name.lower(), name))
        if all(_is_int(name) for name in classes) and classes != sorted(classes, key=int):
            log.warning("%s: class folders are numbers, sorted as text as torchvision's ImageFolder sorts them "
                        "(%s): class id i is not folder i; classes.json gives each folder's id", root,
                        ", ".join(classes[:5]))
    ids = _class_ids(root, named, classes)
    out: Splits = {}
    for split, folders in per_split.items():
        entries = [ListEntry((Path(prefix) / f.relative_to(root)).as_posix(), ids[split, name])
                   for name in sorted((n for n in folders if (split, n) in ids), key=lambda n: ids[split, n])
                   for f in folders[name]]
        if entries:
            out[split_name(split) if split else "all"] = entries
    if not out:
        raise DataError(f"{root}: no videos ({'/'.join(VIDEO_EXTS)}) in class sub-folders")
    if split_dirs:
        log.info("%s: split folders %s, %d classes over them", root, split_dirs, len(classes))
        warn_of_shared_sources_listed(root, out)
    return out, classes, base


def _class_key(name: str) -> str:
    """What tells classes apart by name: neither case nor Unicode form does (UCF101 spells HandstandPushups also
    HandStandPushups; 'café' may be in NFC or NFD), as a file system that ignores them (macOS's, Windows') holds
    one folder for both spellings. Case is folded letter by letter (``str.lower``), as those file systems fold it:
    they hold 'Straße' and 'Strasse' apart, which full case folding (``str.casefold``) would make one."""
    return unicodedata.normalize("NFD", unicodedata.normalize("NFD", name).lower())


def _class_names(root: Path, per_split: dict[str, dict[str, list[Path]]], split_folders: dict[str, Path]
                 ) -> dict[tuple[str, str], str]:
    """Each class folder holding videos, as (split, folder name), -> its class's name (the folder's as UTF-8 reads it,
    whatever the locale: :func:`mme.utils.utf8_name`). Folder names that differ only in case or Unicode form
    (:func:`_class_key`) are one class: across split folders, named as the first split spells it (train, val, test,
    then the others by name: as a build of train, then of the others with its class map, names it), with a warning
    naming the spellings; in one split folder, a DataError naming both (one class in two folders, or two classes
    that a file system ignoring case cannot hold: the user's to say)."""
    order = ("train", "val", "test")
    splits = sorted(per_split, key=lambda s: (order.index(split_name(s)) if split_name(s) in order else 3, s))
    spellings: dict[str, dict[str, list[str]]] = {}  # class key -> folder name -> the splits spelling it so
    for split in splits:
        for name, files in per_split[split].items():
            if files:
                spellings.setdefault(_class_key(utf8_name(name)), {}).setdefault(name, []).append(split)
    named = {}
    for spelt in spellings.values():
        for split in splits:
            twins = [name for name, held in spelt.items() if split in held]
            if len(twins) > 1:
                raise DataError(f"{split_folders[split]}: class folders {' and '.join(map(ascii, twins))} differ "
                                f"only in case or Unicode form: merge them into one folder, or rename one (as two "
                                f"classes, one class's videos would be split between them)")
        name = utf8_name(next(iter(spelt)))  # the first split's spelling, as UTF-8 reads it whatever the locale
        if len(spelt) > 1:
            log.warning("%s: split folders spell one class %s: one class, named %s", root,
                        " and ".join(f"{ascii(n)} (in {', '.join(held)})" for n, held in spelt.items()), ascii(name))
        named.update({(split, folder): name for folder, held in spelt.items() for split in held})
    return named


def _numbered_with_splits_beside(root: Path, named: dict[tuple[str, str], str],
                                 per_split: dict[str, dict[str, list[Path]]], split_folders: dict[str, Path],
                                 beside: dict[Path, list[Path]]) -> dict[tuple[str, str], str]:
    """``named`` (:func:`_class_names` of a split folder built on its own without a class map) with the class
    folders holding videos of each split folder beside it (``beside``, walked by :func:`_walk_classes`) that holds
    all of its classes, as a folder of split folders numbers them: numbered by its own folders alone, a split lacking
    a class (a test split without class 3) gave its later classes other ids than the list of the split beside it,
    and a model trained on one scored the other under the wrong names; said in a warning naming that split folder
    and the classes it has no video of. A split folder beside it lacking one of its classes holds other classes
    (a few-shot split's novel classes, unlabelled shards ``part_000/``), not taken: a warning names its classes
    this split lacks and --classes; nor is one that cannot be read as classes (its own fault, said in a warning)."""
    others: dict[Path, dict[str, list[Path]]] = {}
    for folder, found in beside.items():
        if found:
            others.setdefault(folder.parent, {})[folder.name] = found
    own = {_class_key(name) for name in named.values()}
    taken, folders = {}, dict(split_folders)
    for folder, held in sorted(others.items()):
        try:
            theirs = {_class_key(name): name for name in _class_names(folder, {folder.name: held},
                                                                      {folder.name: folder}).values()}
        except DataError as e:
            log.warning("%s: not numbered with the classes of %s beside it, which cannot be read as classes: %s",
                        root, folder, e)
            continue
        extra = sorted((theirs[key] for key in theirs.keys() - own), key=lambda name: (name.lower(), name))
        if own <= theirs.keys():
            taken[folder.name], folders[folder.name] = held, folder
        elif extra:
            log.warning("%s: numbered by its own class folders, not with those of %s beside it, which lacks some of "
                        "them and has %d it lacks (%s%s): the ids of its list and that split's may differ; give "
                        "--classes the class map of the split that has every class where they are one dataset's",
                        root, folder, len(extra), ", ".join(map(ascii, extra[:5])), ", ..." if len(extra) > 5 else "")
    if not taken:
        return named
    every = _class_names(root, {**per_split, **taken}, folders)
    extra = sorted(set(every.values()) - {every[place] for place in named}, key=lambda name: (name.lower(), name))
    if extra:
        log.warning("%s: numbered with the classes of %s beside it, which holds all of its classes, as a folder of "
                    "split folders numbers them: %d classes, %d with no video here (%s%s); --classes numbers by "
                    "another map", root, ", ".join(str(folders[name]) for name in sorted(taken)),
                    len(set(every.values())), len(extra), ", ".join(map(ascii, extra[:5])),
                    ", ..." if len(extra) > 5 else "")
    return every


def _class_ids(root: Path, named: dict[tuple[str, str], str], classes: list[str]) -> dict[tuple[str, str], int]:
    """Each class folder (see :func:`_class_names`) -> its id in ``classes``: that of its name, else of the one
    name there that differs from it only in case or Unicode form (a class map of a split built on its own,
    which spells it otherwise), with a warning. A folder of no class there is a DataError."""
    index = {name: i for i, name in enumerate(classes)}
    keys = Counter(_class_key(name) for name in classes)
    by_key = {_class_key(name): i for i, name in enumerate(classes) if keys[_class_key(name)] == 1}
    ids, respelt = {}, {}
    for place, name in named.items():
        i = index[name] if name in index else by_key.get(_class_key(name))
        if i is not None:
            ids[place] = i
            if classes[i] != name:
                respelt[name] = classes[i]
    unknown = sorted({folder for split, folder in named if (split, folder) not in ids})
    if unknown:
        raise DataError(f"{root}: class {plural(len(unknown), 'folder')} {unknown[:5]} not in the given class map "
                        f"of {counted(len(classes), 'class', 'classes')}; build the lists of every split "
                        f"together (a folder of split folders) or use the class map of the split that has them")
    if respelt:
        log.warning("%s: class %s spelled otherwise than the given class map, taken as its classes: %s", root,
                    plural(len(respelt), "folder"),
                    ", ".join(f"{ascii(a)} as {ascii(b)}" for a, b in sorted(respelt.items())))
    return ids


def _warn_of_other_layouts(root: Path, videos: dict[str, list[Path]], classes: list[str]) -> None:
    """Warn where the class folders found look like another layout: one class (the folder of class folders one
    level down, where its videos are all in sub-folders), or class folders that all hold the same
    sub-folders, more of them than there are class folders, and no video of their own (split folders under other
    names, e.g. fold1/ and fold2/ of many classes; a few shared sub-folders in many classes, such as cam1/ and
    cam2/, are a class's own layout)."""
    if len(classes) == 1:
        nested = all(f.parent != root / classes[0] for f in videos[classes[0]])
        log.warning("%s: one class folder, %s: a list of one class, which no classifier learns from%s", root,
                    classes[0], f"; is {root / classes[0]} the folder of class folders?" if nested else "")
        return
    subs = {name: {f.relative_to(root / name).parts[0] for f in videos[name] if f.parent != root / name}
            for name in classes}
    nested = [subs[name] for name in classes if all(f.parent != root / name for f in videos[name])]
    if nested and len(nested) == len(classes) and all(s == nested[0] for s in nested) and len(nested[0]) > len(classes):
        log.warning("%s: every class folder (%s) holds the same sub-folders (%s) and no video of its own: are they "
                    "split folders under other names? Folders named %s are taken as splits", root,
                    ", ".join(classes[:5]), ", ".join(sorted(nested[0])[:5]), "/".join(sorted(SPLIT_NAMES)))


@dataclass
class _PassedOver:
    """What a walk for videos leaves out, said by :meth:`say` once it is known to be the walk that lists them (a
    folder of split folders is walked again, class folder by class folder)."""

    links: list[tuple[str, str]] = field(default_factory=list)  # folder links not followed, and where they lead
    elsewhere: list[tuple[Path, str]] = field(default_factory=list)  # video links into another class's folder
    others: list[Path] = field(default_factory=list)  # files not hidden whose suffixes are not a video's
    videoless: list[Path] = field(default_factory=list)  # files of AUDIO_TOO_EXTS without a video stream
    dangling: list[Path] = field(default_factory=list)  # links that lead to nothing
    files: bool = True  # whether the files not listed (others, videoless) are kept, to be said: those of class
    # folders; a walk of other folders says its links alone
    streams: dict[str, bool] = field(default_factory=dict)  # an AUDIO_TOO_EXTS file's real path -> whether FFmpeg
    # finds a video stream in it (:meth:`holds_video`), so that the walks of one build open each file once
    identities: dict[Path, tuple[int, int]] = field(default_factory=dict)  # each video listed (or found in a split
    # folder beside) -> its file's (device, inode), by the walk's own stat (:func:`_video_file`): the split check
    # compares them
    lists: bool = True  # whether the walk lists the videos it finds; the walk of the split folders beside one built
    # on its own, for their videos' identities alone, does not: :meth:`holds_video` opens no file there (a file of
    # this split that is one of them is the same), and a file it cannot look at (its folder not searchable, a stale
    # mount) is passed over, as one in a folder it cannot read

    def holds_video(self, path: Path) -> bool:
        """Whether a file of a video suffix holds a video: for :data:`AUDIO_TOO_EXTS`, whether FFmpeg finds a video
        stream in it (:func:`_finds_video_stream`, each file opened once, by its real path); any other, and any
        of a walk that :attr:`lists` none, by its suffix."""
        if not self.lists or path.suffix.lower() not in AUDIO_TOO_EXTS:
            return True
        real = os.path.realpath(path)
        if real not in self.streams:
            self.streams[real] = _finds_video_stream(path)
        return self.streams[real]

    def of_classes(self, root: Path, classes: Collection[str]) -> None:
        """Keep, of the files not listed, those in the folders ``classes`` of ``root`` (the others are in no class)."""
        self.others = [f for f in self.others if f.relative_to(root).parts[0] in classes]
        self.videoless = [f for f in self.videoless if f.relative_to(root).parts[0] in classes]

    def say(self, where: str | Path) -> None:
        for link, real in self.links:
            log.warning("%s: a link to %s, a folder this walk reaches otherwise, one holding it or one in another "
                        "class's folder, is not followed", link, real)
        if self.elsewhere:
            log.warning("%s: %s to videos in other class folders %s not listed (each would be listed under two "
                        "classes), e.g. %s to %s", where, counted(len(self.elsewhere), "link"),
                        plural(len(self.elsewhere), "is", "are"), *self.elsewhere[0])
        why = []  # (a video among the others would be left out without a word)
        if self.others:
            n = len(self.others)
            why.append(f"{n} whose {plural(n, 'suffix', 'suffixes')} {plural(n, 'is', 'are')} not a video's "
                       f"({_by_suffix(self.others)}), e.g. "
                       f"{min(self.others).relative_to(where).as_posix()} (a video among them is listed under a "
                       f"suffix of {'/'.join(VIDEO_EXTS)})")
        if self.videoless:
            why.append(f"{len(self.videoless)} in which FFmpeg finds no video stream ({_by_suffix(self.videoless)}: "
                       f"audio alone, or no file it reads), e.g. {min(self.videoless).relative_to(where).as_posix()}")
        if why:
            files = len(self.others) + len(self.videoless)
            log.warning("%s: %s in class folders %s not listed: %s", where, counted(files, "file"),
                        plural(files, "is", "are"), "; ".join(why))
        if self.dangling:
            log.warning("%s: %s that %s nowhere (a volume not mounted, a file moved, a loop) %s not listed, e.g. "
                        "%s: %s",
                        where, counted(len(self.dangling), "link"), plural(len(self.dangling), "leads", "lead"),
                        plural(len(self.dangling), "is", "are"), self.dangling[0], broken_link(self.dangling[0]))


def _by_suffix(files: list[Path]) -> str:
    """How many of ``files`` have each suffix, the five commonest first, ties by name ('.txt: 2, .xyz: 1')."""
    suffixes = sorted(Counter(f.suffix.lower() or "(none)" for f in files).items(), key=lambda sn: (-sn[1], sn[0]))
    return ", ".join(f"{s}: {n}" for s, n in suffixes[:5]) + (", ..." if len(suffixes) > 5 else "")


def _sub_folders(root: Path, passed: _PassedOver) -> list[Path]:
    """The non-hidden sub-folders of ``root``, sorted; videos at its top, in no sub-folder, are logged. ``root`` or
    an entry of it that cannot be looked at is a DataError (:func:`~mme.utils.cannot_read`)."""
    with reading(root, DataError):
        entries = list(root.iterdir())
    loose = sorted(f.name for f in entries if _is_video(f) and passed.holds_video(f))
    if loose:
        log.warning("%s: %s outside class folders %s not listed, e.g. %s", root, counted(len(loose), "video"),
                    plural(len(loose), "is", "are"), loose[0])
    return sorted(d for d in entries if not _hidden(d.name) and _is_folder(d))


def _named_as_file(name: str) -> bool:
    """Whether ``name`` is a file's by its suffix, in any case: a video's, a list's or one of :data:`FILE_EXTS`,
    also followed by one of :data:`COMPRESSIONS` (``README.txt``, ``FRAMES.GZ``, ``notes.txt.z``); any other name
    may be a class folder's, which may have a dot in it (``St.Bernard``, ``Vitamin.C``, ``Jay.Z``, ``v1.0``)."""
    files = (*VIDEO_EXTS, *LIST_EXTS, *FILE_EXTS)
    suffix, before = Path(name).suffix.lower(), Path(Path(name).stem).suffix.lower()
    return suffix in files or (suffix in COMPRESSIONS and before in files)


def _is_folder(path: Path) -> bool:
    """Whether ``path`` is a folder; a link that leads to nothing is a DataError naming it and its target (a class
    folder left out would shift the id of every later class), but where it is named as a file
    (:func:`_named_as_file`: README.txt, a video), named in a warning. One that cannot be looked at is a DataError
    (:func:`~mme.utils.cannot_read`)."""
    with reading(path, DataError):
        dangling = path.is_symlink() and not path.exists()
        folder = path.is_dir()
    if dangling:
        if _named_as_file(path.name):
            log.warning("%s: %s, is left out (a file, by its name)", path, broken_link(path))
            return False
        why = (", where class or split folders are: left out, the classes in it would be missing and later classes "
               "take other ids; ")
        gone, loop = f" (a volume not mounted, a folder moved){why}mount it, or remove the link", f"{why}point it " \
            "at its folder, or remove it"
        raise DataError(f"{path}: {broken_link(path, nothing=gone, loop=loop)}")
    return folder


def _walk_classes(folders: dict[Path, str], passed: _PassedOver, root: Path, others: dict[Path, str]
                  ) -> tuple[dict[Path, list[Path]], dict[Path, list[Path]]]:
    """Each class folder (-> its key: its :func:`_class_key`, or one key that split folders share where
    :func:`folder_lists` takes them for classes) of ``root`` -> :func:`videos_under` it, entering no other class's
    folder through a link, nor listing a video there (its videos would be listed under this class too), nor one of
    ``others`` (class folders not listed, -> their keys: those of the split folders beside a split built on its
    own, :func:`_class_folders_beside`); a class folder that is such a link is refused first
    (:func:`_refuse_class_folders_in_others`). Then each of ``others`` but those passed over
    (:func:`_without_links_here`) -> the files of a video suffix under it, walked alike, nothing said nor opened
    but their identities kept in ``passed``: the videos their split would list, for
    :func:`_check_other_splits_videos`."""
    real = {folder: os.path.realpath(folder) for folder in [*folders, *others]}
    others = _without_links_here(others, folders, real, root)
    _refuse_class_folders_in_others(folders, others, real, root)
    real_of_class: dict[str, set[str]] = {}
    for folder, key in [*folders.items(), *others.items()]:
        real_of_class.setdefault(key, set()).add(real[folder])
    every = set().union(*real_of_class.values())
    beside = _PassedOver(files=False, identities=passed.identities, lists=False)
    return ({f: videos_under(f, _Others(every, real_of_class[key]), passed) for f, key in folders.items()},
            {f: videos_under(f, _Others(every, real_of_class[key]), beside) for f, key in others.items()})


def _without_links_here(others: dict[Path, str], folders: dict[Path, str], real: dict[Path, str], root: Path
                        ) -> dict[Path, str]:
    """``others`` (the class folders beside a split built on its own, -> their keys) but those that are links to a
    class folder of ``folders`` of another key, into one, to a folder holding one, or to one holding ``root``, each
    named in a warning: the neighbour split's link is at fault (a build of the splits together refuses it), and
    kept among ``others`` it would refuse this split's class folders, or keep their videos out."""
    index, kept = _ClassFolderIndex(folders, real, root), {}
    for other, key in others.items():
        path = real[other]
        here = other.is_symlink() and (index.holding(path, key) or index.into(path, key))
        if here:
            log.warning("%s: a class folder of a split beside %s, leads to %s, at, in or over %s: passed over (a "
                        "build of the splits together refuses it)", other, root, path, here)
        else:
            kept[other] = key
    return kept


def _refuse_class_folders_in_others(folders: dict[Path, str], others: dict[Path, str], real: dict[Path, str],
                                    root: Path) -> None:
    """A class folder (-> its key) that leads through a link (``real``: the real paths) to another class's folder
    (of ``folders`` or ``others``), into one, to a folder holding one, or to one holding ``root``, is a DataError
    naming it and where it leads (its videos would be listed under two classes, or the whole tree's under one; the
    walk of a class folder follows no link there, but this link is the class folder); one to a pool of videos
    elsewhere is fine. A folder reached by no link is in no other (they are siblings), so the links alone are
    looked at."""
    index, linked = _ClassFolderIndex({**folders, **others}, real, root), [f for f in folders if f.is_symlink()]
    for folder in linked:  # first those holding another's folder: the links to change (the other may be a link too)
        path = real[folder]
        held = index.holding(path, folders[folder])
        if held == root:
            raise _listed_twice(folder, path, f"which {'is' if path == index.top else 'holds'} {root}, the folder "
                                              f"listed")
        if held:
            raise _listed_twice(folder, path, f"which holds {held}")
    for folder in linked:
        path = real[folder]
        into = index.into(path, folders[folder])
        if into:
            raise _listed_twice(folder, path, f"as {into} does" if real[into] == path else f"inside {into}")


class _ClassFolderIndex:
    """Class folders (-> their keys) by real path (``real``), to tell what a folder a link leads to holds or lies in
    of another class than the link's (see :func:`_refuse_class_folders_in_others`)."""

    def __init__(self, folders: dict[Path, str], real: dict[Path, str], root: Path):
        self.root, self.top = root, os.path.realpath(root)
        self.at: dict[str, dict[str, Path]] = {}  # a class folder's real path -> {key: class folder} of those there
        self.under: dict[str, dict[str, Path]] = {}  # a folder above class folders -> {key: class folder}, two keys
        # at most (one of another key than a link's is all that is looked for)
        for folder, key in folders.items():
            self.at.setdefault(real[folder], {}).setdefault(key, folder)
            for above in _folders_above(real[folder]):
                if len(self.under.setdefault(above, {})) < 2:
                    self.under[above].setdefault(key, folder)

    def holding(self, path: str, key: str) -> Path | None:
        """What the folder at the real path ``path`` holds that is not of class ``key``: ``root`` (it is ``root``
        or holds it), else a class folder of another key, else None."""
        if _within(self.top, {path}):
            return self.root
        return next((f for k, f in self.under.get(path, {}).items() if k != key), None)

    def into(self, path: str, key: str) -> Path | None:
        """The class folder of another key than ``key`` that the real path ``path`` is, or lies in (the nearest),
        else None."""
        return next((f for p in (path, *_folders_above(path)) for k, f in self.at.get(p, {}).items() if k != key),
                    None)


def _listed_twice(folder: Path, path: str, what: str) -> DataError:
    """The error of a class folder that leads to ``path``, ``what`` (see :func:`_refuse_class_folders_in_others`)."""
    return DataError(f"{folder}: leads to {path}, {what}: its videos would be listed twice, under two classes (or "
                     f"splits); link it to a folder of its own videos alone")


def _folders_above(path: str) -> Iterator[str]:
    """The folders holding the real path ``path``, nearest first."""
    while (parent := os.path.dirname(path)) != path:
        yield parent
        path = parent


def _class_folders_beside(root: Path, near: dict[str, Path]) -> dict[Path, str]:
    """The class folders (-> their keys) of the split folders ``near`` (:func:`_split_folders_in` the folder holding
    ``root``, a split folder built on its own) beside ``root``: a link in ``root`` into one of another class is not
    followed, as where the splits are built together. A folder that cannot be read has none to see."""
    splits = [d for d in near.values() if os.path.realpath(d) != os.path.realpath(root)]
    try:
        return {f: _class_key(f.name) for split in splits for f in sorted(split.iterdir())
                if not _hidden(f.name) and f.is_dir()}
    except OSError:
        return {}


def _splits_beside(root: Path, near: dict[str, Path], own_split: str, listed: list[Path],
                   beside: dict[Path, list[Path]]) -> dict[str, tuple[Path, list[Path]]]:
    """The split folders ``near`` (:func:`_split_folders_in` the folder holding ``root``) beside ``root``, split
    ``own_split`` built on its own, by name -> (the folder, its videos: those of its class folders in ``beside``,
    walked by :func:`_walk_classes`; ``listed``, root's, where it is ``root`` under another name, a link to it)."""
    splits = {name: (folder, listed if os.path.realpath(folder) == os.path.realpath(root) else [])
              for name, folder in near.items() if name != own_split}
    for folder, found in beside.items():
        splits[folder.parent.name][1].extend(found)
    return splits


def _split_folders_in(base: Path) -> dict[str, Path]:
    """The folders of ``base`` named as splits (:data:`SPLIT_NAMES`), by name; none where it cannot be read."""
    try:
        return {d.name: d for d in sorted(base.iterdir())
                if d.name.lower() in SPLIT_NAMES and not _hidden(d.name) and d.is_dir()}
    except OSError:
        return {}


def _check_other_splits_videos(splits: dict[str, tuple[Path, list[Path]]], judged: Collection[str],
                               identities: dict[Path, tuple[int, int]]) -> None:
    """Refuse a split folder of ``judged`` (names of ``splits``: split folder name -> (the folder, the videos listed
    in it)) each of whose videos is one of another split's, the same file by (device, inode) (``identities``, the
    walk's: :attr:`_PassedOver.identities`; a link to it, a folder linked or bind-mounted, a copy of hard links),
    so the lists of both splits would name the same videos. A DataError naming both splits and folders, also for
    val and test (a copy of val as test gives the val figures again, as test's: a run scores each list it is given,
    so val needs no test folder to be scored); the splits are judged test, val, then train, so that it names val
    or test the copy of train, and test that of val. Where some of its videos are, a warning counting them and
    naming the first, once for two splits."""
    identity = {name: {f: identities[f] for f in videos} for name, (_, videos) in splits.items()}
    first = {name: {key: f for f, key in reversed(held.items())} for name, held in identity.items()}  # (as listed)
    order = ("test", "val", "train")
    shared = {(name, other): sorted(f for f, key in identity[name].items() if key in first[other])
              for name in sorted(judged, key=lambda n: order.index(split_name(n)))
              for other in sorted(splits) if split_name(other) != split_name(name)}
    for (name, other), found in shared.items():
        if found and len(found) == len(identity[name]):
            split, other_split = split_name(name), split_name(other)
            why = _fit_on(split, other_split) or f"the {split} figures would be the {other_split} figures again"
            raise DataError(f"{splits[name][0]}: every video of split {split} ({len(found)}) is one of split "
                            f"{other_split}'s, the same file in {splits[other][0]} (through a link, a bind mount or "
                            f"hard links): {why}; give each split a folder of its own videos")
    said = set()
    for (name, other), found in shared.items():
        if found and frozenset((name, other)) not in said:
            said.add(frozenset((name, other)))
            split, other_split = split_name(name), split_name(other)
            log.warning("%s: %d of the %d videos of split %s are split %s's, the same files in %s (through links, a "
                        "bind mount or hard links), listed in both splits (%s), e.g. %s as %s", splits[name][0],
                        len(found), len(identity[name]), split, other_split, splits[other][0],
                        _fit_on(split, other_split) or f"the {split} and {other_split} figures would both count them",
                        found[0], first[other][identity[name][found[0]]])


def _fit_on(split: str, other_split: str) -> str:
    """What two splits sharing videos do where one is train (else '')."""
    return "a model would be scored on videos it was fit on" if "train" in (split, other_split) else ""


@dataclass(frozen=True)
class _Others:
    """The folders of ``every`` but ``own`` (real paths), to test paths against: those of the other classes, not
    built as a set for each class folder (a set difference each was quadratic: 16 000 class folders took 5 s)."""

    every: set[str]
    own: set[str]

    def __contains__(self, path: str) -> bool:
        return path in self.every and path not in self.own


def _within(path: str, folders: Container[str]) -> bool:
    """Whether the real path ``path`` is one of ``folders`` (real paths) or lies inside one."""
    while path not in folders:
        parent = os.path.dirname(path)
        if parent == path:
            return False
        path = parent
    return True


def videos_under(folder: str | Path, avoid: Container[str] = frozenset(), passed: _PassedOver | None = None
                 ) -> list[Path]:
    """The videos under ``folder`` at any depth, none hidden, sorted, named through the folder. A symlinked
    sub-folder is followed (``Path.rglob`` does not), unless it leads to a folder walked already (a loop), to
    ``folder`` itself or a folder above it, or into a folder of ``avoid`` (real paths); a link to a video in a
    folder of ``avoid`` is not listed, nor is a link that leads to nothing. What is left out goes to ``passed``,
    for its caller to say (the walks of class folders), with each video's (device, inode); without one, this walk
    says the links it leaves out and keeps no other file (the warning of files not listed is of class folders:
    :attr:`_PassedOver.files`). A folder that cannot be listed is a DataError where the walk lists its videos
    (:func:`~mme.utils.cannot_read`), else passed over."""
    said_here = passed is None
    if said_here:
        passed = _PassedOver(files=False)
    start = os.path.realpath(folder)
    seen, videos = set(), []

    def unlisted(e: OSError) -> None:
        if passed.lists:
            raise DataError(cannot_read(e.filename, e)) from e

    for top, dirs, files in os.walk(folder, onerror=unlisted, followlinks=True):
        real = os.path.realpath(top)
        if top != str(folder) and (real in seen or _within(real, avoid) or _within(start, {real})):
            passed.links.append((top, real))
            dirs.clear()
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if not _hidden(d))
        for name in files:
            path = Path(top, name)
            try:
                identity = _video_file(path)
            except DataError:
                if passed.lists:
                    raise
                continue
            if identity is None:
                if _hidden(name):
                    continue
                if os.path.islink(path) and not os.path.exists(path):  # (False where it cannot be looked at)
                    passed.dangling.append(path)
                elif passed.files:
                    passed.others.append(path)
                continue
            target = os.path.realpath(path) if path.is_symlink() else None
            if target is not None and _within(target, avoid):
                passed.elsewhere.append((path, target))
            elif passed.holds_video(path):
                videos.append(path)
                passed.identities[path] = identity
            elif passed.files:
                passed.videoless.append(path)
    if said_here:
        passed.say(folder)
    return sorted(videos)


def video_files_under(folder: str | Path) -> dict[Path, tuple[int, int]]:
    """:func:`videos_under` ``folder``, each video with its file's (device, inode), links followed: two paths of one
    file (a link, hard links) are one video."""
    passed = _PassedOver(files=False)
    videos = videos_under(folder, passed=passed)
    passed.say(folder)
    return {f: passed.identities[f] for f in videos}


def _is_video(path: Path) -> bool:
    """A file (links followed) of a video's name (:func:`_video_stem`)."""
    return _video_file(path) is not None


def _video_stem(name: str) -> str | None:
    """``name`` without its suffix where it is a video's name: a suffix of :data:`VIDEO_EXTS` in any case, and not
    hidden (macOS's '._' companions are not videos); else None."""
    stem, suffix = os.path.splitext(name)
    return stem if suffix.lower() in VIDEO_EXTS and not _hidden(name) else None


def _video_file(path: Path) -> tuple[int, int] | None:
    """The (device, inode) of ``path`` where it is a video (:func:`_is_video`), by one stat; else None (as for
    ``Path.is_file``, a stat finding nothing there, or a link loop, is no file). A stat that fails otherwise (its
    folder not searchable, a stale mount, an I/O error) is a DataError naming the file and the reason."""
    if _video_stem(path.name) is None:
        return None
    try:
        found = os.stat(path)
    except OSError as e:
        if e.errno in (*NOT_THERE, errno.EBADF):  # (as ``Path.is_file``, which takes macOS's EBADF for no file)
            return None
        raise DataError(cannot_read(path, e)) from e
    return stat_identity(found) if stat.S_ISREG(found.st_mode) else None


def _finds_video_stream(path: Path) -> bool:
    """Whether FFmpeg finds a video stream among the file's container's streams (a file it cannot open holds none
    it reads)."""
    try:
        with open_container(str(path)) as container:
            return video_stream(container) is not None
    except (av.error.FFmpegError, OSError, UnicodeDecodeError, ValueError):
        return False


def from_ucf101(split_dir: str | Path, split: int = 1) -> tuple[Splits, list[str]]:
    """UCF101's official split files: ``classInd.txt`` ('1 ApplyEyeMakeup'), ``trainlist0N.txt`` ('Class/v.avi
    1', 1-based) and ``testlist0N.txt`` ('Class/v.avi'). Labels become 0-based and come from the class folder
    (matched without regard to case: the official files spell 'HandstandPushups' two ways); a line's label (the
    trainlist's) must name that folder's class in classInd.txt."""
    split_dir = Path(split_dir)
    ind = _need_file(split_dir / "classInd.txt", "UCF101 classInd.txt")
    classes = []
    for n, text in _read_lines(ind):
        parts = text.split()
        if len(parts) != 2 or not _is_int(parts[0]) or int(parts[0]) != len(classes) + 1:
            raise DataError(f"{ind}:{n}: expected '<id> <class>' with ids 1, 2, ...: {text!r}")
        classes.append(parts[1])
    by_name = {_class_key(c): i for i, c in enumerate(classes)}
    out: Splits = {}
    once = _ListedOnce()
    for name in ("train", "test"):
        path = _need_file(split_dir / f"{name}list{split:02d}.txt", f"UCF101 {name} split {split}")
        entries = []
        for n, text in _read_lines(path):
            video, *label = text.split()
            folder = _class_key(video.split("/")[0])
            if folder not in by_name:
                raise DataError(f"{path}:{n}: class folder {video.split('/')[0]!r} is not in {ind}")
            if label:
                _check_ucf101_label(path, n, text, label[0], by_name[folder], classes, ind)
            if once.first(name, video, classes[by_name[folder]], f"{path}:{n}", path):
                entries.append(ListEntry(video, by_name[folder]))
        out[name] = entries
    _warn_of_repeats_and_shared_sources(split_dir, once, out)
    return out, classes


def _warn_of_repeats_and_shared_sources(split_dir: Path, once: _ListedOnce, out: Splits) -> None:
    """The warnings of a build from split files: rows repeated (:class:`_ListedOnce`), then source videos with
    clips in two splits, a video listed in both among them (:func:`warn_of_shared_sources_listed`)."""
    once.warn()
    warn_of_shared_sources_listed(split_dir, out)


def _check_ucf101_label(path: Path, line_no: int, text: str, label: str, class_id: int, classes: list[str],
                        ind: Path) -> None:
    """A split file line's label (1-based, the trainlist's) names the class of its video's folder in classInd.txt:
    a classInd.txt in another order than the trainlist's labels is a DataError naming the line, its label and both
    classes (the lists are labelled by folder, so another order would pass unseen)."""
    if not _is_int(label) or not 1 <= int(label) <= len(classes):
        raise DataError(f"{path}:{line_no}: label {label!r} is not a class id of {ind} (1..{len(classes)}): "
                        f"{text!r}")
    if int(label) - 1 != class_id:
        raise DataError(f"{path}:{line_no}: label {label} is {classes[int(label) - 1]!r} in {ind}, but the video's "
                        f"folder is class {class_id + 1} {classes[class_id]!r} there: {text!r}; use the classInd.txt "
                        f"of these split files")


def from_hmdb51(split_dir: str | Path, split: int = 1) -> tuple[Splits, list[str]]:
    """HMDB51's official split files ``<class>_test_split<N>.txt`` with lines '<video>.avi <id>', id 1 = train,
    2 = test, 0 = unused; videos live in ``<class>/<video>``. Classes sorted by name, from the files of every
    split, so a class has one id in every split; a class without a file for ``split`` is a DataError."""
    split_dir = Path(split_dir)
    # (listed, not globbed: a glob answers nothing of a folder this user may not enter or list)
    every = [f for f in (split_dir.iterdir() if split_dir.is_dir() else ())
             if not _hidden(f.name) and re.fullmatch(r".+_test_split[0-9]+\.txt", f.name)]
    classes = sorted({utf8_name(f.name[: f.name.rindex("_test_split")]) for f in every})  # (text, as the lines')
    files = sorted(f for f in every if f.name.endswith(f"_test_split{split}.txt"))
    if not files:
        raise DataError(f"{split_dir}: no HMDB51 split files '*_test_split{split}.txt'")
    lacking = sorted(set(classes) - {utf8_name(f.name[: -len(f"_test_split{split}.txt")]) for f in files})
    if lacking:
        raise DataError(f"{split_dir}: no split-{split} file for class(es) {lacking[:5]} (e.g. "
                        f"{lacking[0]}_test_split{split}.txt), which other splits have")
    out: Splits = {"train": [], "test": []}
    once = _ListedOnce()
    for f in files:
        name = utf8_name(f.name[: -len(f"_test_split{split}.txt")])
        for n, text in _read_lines(f):
            parts = text.split()
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise DataError(f"{f}:{n}: expected '<video> <0|1|2>': {text!r}")
            into, video = "train" if parts[1] == "1" else "test", f"{name}/{parts[0]}"
            if parts[1] != "0" and once.first(into, video, name, f"{f}:{n}", f):
                out[into].append(ListEntry(video, classes.index(name)))
    _warn_of_repeats_and_shared_sources(split_dir, once, out)
    return out, classes


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
"""The control characters no class or video name holds, which a Kinetics CSV field (within its ends, where a tab is
stripped) or an SSv2 id cannot hold."""


def from_kinetics(csv_files: list[str | Path], path_format: str = KINETICS_FORMAT,
                  classes: list[str] | None = None) -> tuple[Splits, list[str]]:
    """Kinetics CSVs (``label,youtube_id,time_start,time_end,split``), one list per value of the split column.

    File names follow ``path_format`` with fields split (normalised: ``validate`` is ``val``), split_as_given (the
    split column's value, or the CSV's name, as written), label, label_ (spaces as underscores), label_tv (as
    torchvision's Kinetics download names class folders: spaces as underscores, no ', ( or )), youtube_id,
    time_start, time_end (default ``{split}/{label}/{youtube_id}_{time_start:06d}_{time_end:06d}.mp4``; flat
    folders: ``{youtube_id}_{time_start:06d}_{time_end:06d}.mp4``). Classes: all labels seen, sorted, or
    ``classes`` (the class map of another split built on its own: a label not in it is a DataError); rows
    without a label (the test set) are unlabelled, and the empty folder a label field gives them is dropped.
    """
    named = [c for c in ("time_start", "time_end") if c in _format_fields(path_format)]  # (formatted as integers)
    labels: dict[str, str] = {}  # each label seen, held once (not once a row), as splits are
    splits: dict[str, str] = {}
    sources: dict[str, list[tuple[str, str]]] = {}  # split -> (youtube_id, its row) of each video listed
    labelled: dict[str, list] = {}  # split -> [its first unlabelled row or None, whether a row of it is labelled]
    known = None if classes is None else set(classes)
    unknown = None  # the first row whose label is not in ``classes``
    once = _ListedOnce()
    for csv_file in csv_files:  # (each row read, checked and listed in turn: a CSV of 2.5M rows is not held)
        path = _need_file(Path(csv_file), "Kinetics CSV")
        table = _csv_rows(path)
        fields = next(table)
        missing = {"youtube_id", "time_start", "time_end"} - fields
        if missing:
            raise DataError(f"{path}: not a Kinetics CSV, missing columns {sorted(missing)}")
        labelled_here: dict[str, bool] = {}  # split -> whether a row of it in this CSV is labelled
        for n, row in table:
            broken = _CONTROL.search(" ".join(row.values())) and next(  # (one search a row; the field on a hit)
                ((c, m[0]) for c, v in row.items() if (m := _CONTROL.search(v.strip(" \t")))), None)
            if broken:  # (a quote not closed took the rest of the file, one closed lines later their rows; a label
                # typed with Alt+Enter in a spreadsheet would be a class of its own, shifting the ids after it; a NUL
                # is in no path a file system takes)
                column, char = broken
                value = row[column]
                shown = f"{column} {value[:40]!r}{'...' if len(value) > 40 else ''}"
                if char in "\r\n":
                    raise DataError(f"{path}:{n}: {shown} holds a line break: a quote not closed, or closed on a "
                                    f"later line, or a line break in the cell?")
                raise DataError(f"{path}:{n}: {shown} holds the control character {char!r}: no class or video "
                                f"name holds one")
            yid = (row.get("youtube_id") or "").strip()
            try:
                times = {c: float(row.get(c)) for c in ("time_start", "time_end")}
                start, end = int(times["time_start"]), int(times["time_end"])
            except (TypeError, ValueError, OverflowError) as e:  # (not a number, nan; inf, 1e400)
                raise DataError(f"{path}:{n}: bad time_start/time_end {row}") from e
            bad_time = next((c for c in named if times[c] < 0), None)
            if bad_time:  # (-5 named a clip x_-00005_...; a fraction, 3.5, names clip 3 as the Kinetics downloader
                # does, '%06d')
                raise DataError(f"{path}:{n}: {bad_time} {row[bad_time].strip()!r} is negative: no clip starts or "
                                f"ends before its video, as the video's file name says (--path-format "
                                f"{path_format!r})")
            if not yid:
                raise DataError(f"{path}:{n}: no youtube_id {row}")
            label = (row.get("label") or "").strip()
            if label[:1] == '"' or label[-1:] == '"':  # (its quotes kept: a class of its own, beside the unquoted)
                raise DataError(f"{path}:{n}: label {label!r} begins or ends with a quote: a quoted field after other "
                                f"text (a tab before its quote)?")
            label = labels.setdefault(label, label)
            given = (row.get("split") or "").strip() or path.stem
            split = splits.setdefault(given, split_name(given))
            where = f"{path}:{n}"
            if unknown is None and label and known is not None and label not in known:
                unknown = (where, label)
            labelled_here[split] = labelled_here.get(split, False) or bool(label)
            kinds = labelled.setdefault(split, [None, False])
            if label:
                kinds[1] = True
            elif kinds[0] is None:
                kinds[0] = where
            rel = _format_path(path_format, split=split, split_as_given=given, **_label_folders(label),
                               youtube_id=yid, time_start=start, time_end=end)
            if once.first(split, rel, label, where, path):
                sources.setdefault(split, []).append((yid, where))
        unlabelled = sorted(labelled_here.keys() - {"test", "holdout"})
        if "label" not in fields and unlabelled:
            log.warning("%s: no label column; its %s %s %s written without labels", path, unlabelled,
                        plural(len(unlabelled), "list"), plural(len(unlabelled), "is", "are"))
        elif blank := [split for split in unlabelled if not labelled_here[split]]:
            log.warning("%s: its label column is empty in every row of %s; the %s %s written without labels", path,
                        blank, plural(len(blank), "list"), plural(len(blank), "is", "are"))
    if unknown is not None:
        raise DataError(f"{unknown[0]}: label {unknown[1]!r} is not in the given class map of {len(classes)} "
                        f"classes; build the lists of every split together or use the class map of the split "
                        f"that has it")
    for split, (blank, has_labels) in labelled.items():
        if blank is not None and has_labels:
            raise DataError(f"{blank}: no label, where other rows of split {split!r} have one (a list is labelled "
                            f"in every line or in none)")
    once.warn()
    warn_of_shared_sources(", ".join(str(f) for f in csv_files), sources)  # (the YouTube video: its segments' source)
    if classes is None:
        classes = sorted(label for label in labels if label)
    index = {label: i for i, label in enumerate(classes)}
    lists: dict[str, list[ListEntry]] = {}
    for split, rel, label in once.kept():
        lists.setdefault(split, []).append(ListEntry(rel, index[label] if label else None))
    return lists, classes


class _ListedOnce:
    """The rows of annotation files that name a video its split lists already (a row repeated in its file; a subset
    file beside the full one, train_mini.csv): such a row is left out, so the video is listed once, not oversampled,
    and a warning per file (and file repeated) names its first such row and the one it repeats, counting the
    others; the video under another label there is a DataError naming both rows (a video has one class)."""

    def __init__(self) -> None:
        self._first: dict[tuple[str, str], tuple[str, str, Path]] = {}  # (split, path) -> (label, where, file)
        self._repeats: dict[tuple[Path, Path], list] = {}  # (file, first's file) -> [(where, first's, path), count]

    def first(self, split: str, path: str, label: str, where: str, source: Path) -> bool:
        """Whether the row at ``where`` (``file:line`` of ``source``) is the first to list ``path`` in ``split``."""
        first_label, first_where, first_source = self._first.setdefault((split, path), (label, where, source))
        if first_where == where:
            return True
        if first_label != label:
            raise DataError(f"{where}: the {split} video {path} is labelled {label!r} here and {first_label!r} at "
                            f"{first_where}; a video has one class")
        self._repeats.setdefault((source, first_source), [(where, first_where, path), 0])[1] += 1
        return False

    def kept(self) -> Iterator[tuple[str, str, str]]:
        """(split, path, label) of each video listed, in the order first listed."""
        for (split, path), (label, _, _) in self._first.items():
            yield split, path, label

    def warn(self) -> None:
        for (_, first_source), ((where, first_where, path), count) in self._repeats.items():
            more = f" (and {count - 1} more of its rows repeat rows of {first_source})" if count > 1 else ""
            log.warning("%s repeats %s: the video %s is listed once%s", where, first_where, path, more)


_NUL_STAND_IN = "\ud800" if sys.version_info < (3, 11) else None
"""What a NUL in a CSV reaches the csv module as on Python 3.10, which refuses a line holding one ('line contains
NUL'; 3.11 reads it): a lone surrogate, which no text decoded from UTF-8 holds, so each is a NUL again in its row."""


def _csv_rows(path: Path) -> Iterator:
    """A CSV's column names (lower case, stripped: 'Label', ' split'), then its rows, read one at a time (a CSV of
    millions of rows is not held), as {column: value}, each with the line it starts on: blank rows (an empty line, a
    line of spaces, a spreadsheet's ',,,,,') are skipped and a quoted field may span lines, so rows are not lines;
    spaces after a comma are skipped, so a field after them may be quoted (', "air drumming"'), and those after a
    closing quote are the field's (the caller strips them: '"air drumming" ,'). A row shorter than the header lacks its
    last columns. A field over the csv module's size limit (a quote not closed) is a DataError naming the line its row
    starts on. A UTF-8 byte-order mark starting a line inside (rows appended from a CSV saved with one) is dropped.
    A NUL is read as any other character (the caller refuses it), on Python 3.10 too (:data:`_NUL_STAND_IN`); a CSV
    saved as UTF-16 is a DataError saying so (:func:`_not_utf16`)."""
    with open(path, "rb") as raw:
        _not_utf16(raw.read(4096), str(path))
    with open(path, newline="", encoding="utf-8-sig") as fh:
        start = 1
        try:
            lines = map(_without_bom, fh)
            if _NUL_STAND_IN:
                lines = (line.replace("\0", _NUL_STAND_IN) for line in lines)
            reader = csv.reader(lines, skipinitialspace=True)  # (', "air drumming"': quotes read)
            rows = reader if not _NUL_STAND_IN else (
                [value.replace(_NUL_STAND_IN, "\0") for value in values] if _NUL_STAND_IN in "".join(values)
                else values for values in reader)  # (one search a row)
            fields = [f.strip().lower() for f in next(rows, [])]
            yield set(fields)
            start = reader.line_num + 1
            for values in rows:  # (a blank line is an empty row; a line of spaces, a spreadsheet's ',,,,,' blank)
                if any(value.strip() for value in values):
                    yield start, dict(zip(fields, values))
                start = reader.line_num + 1
        except UnicodeDecodeError:  # (its first byte that is not UTF-8 is in the bytes decoded so far: only those
            # are read again, for _utf8_text to name its line and offset)
            with open(path, "rb") as raw:
                _utf8_text(raw.read(fh.buffer.tell()), str(path))
            raise
        except csv.Error as e:  # (a quote not closed makes one field of the rest of the file)
            raise DataError(f"{path}:{start}: not a CSV row ({e}): a quote not closed?") from e


def _format_fields(path_format: str) -> set[str]:
    """The fields ``path_format`` (--path-format) names; none where it is malformed (:func:`_format_path` says so)."""
    try:
        return {f for _, f, _, _ in string.Formatter().parse(path_format) if f is not None}
    except ValueError:
        return set()


def _names_label(path_format: str) -> bool:
    """Whether ``path_format`` names folders or files by a video's class (a field label, label_ or label_tv)."""
    return bool(_format_fields(path_format) & _label_folders("").keys())


def _label_folders(label: str) -> dict[str, str]:
    """The --path-format fields that name a video's class ``label`` (label, label_, label_tv: :func:`from_kinetics`
    says each) and their values."""
    underscored = label.replace(" ", "_")
    return {"label": label, "label_": underscored,
            "label_tv": underscored.replace("'", "").replace("(", "").replace(")", "")}


def _format_path(path_format: str, **fields) -> str:
    """A video's path from ``path_format`` (--path-format) and its fields; empty folders (a label field of an
    unlabelled row) dropped. A format naming an unknown field, or malformed, is a DataError listing the fields; an
    empty one (``--path-format ''``, which named every video '') is one too."""
    if not path_format.strip():
        raise DataError(f"--path-format {path_format!r}: empty, it names no file; leave it out for the dataset's "
                        "default")
    try:
        unknown = [f for _, f, _, _ in string.Formatter().parse(path_format) if f is not None and f not in fields]
        if unknown:  # also '{label.upper}', which format() would fill with a method's name
            raise KeyError(unknown[0])
        path = path_format.format(**fields)
    except (KeyError, IndexError, ValueError) as e:
        raise DataError(f"--path-format {path_format!r}: {type(e).__name__} {e}; its fields are "
                        f"{', '.join('{' + k + '}' for k in fields)}") from None
    return ("/" if path_format.startswith("/") else "") + "/".join(part for part in path.split("/") if part)


SSV2_FILES = {  # both namings are in circulation: the release's long names and the short ones
    "labels": ("labels.json", "something-something-v2-labels.json"),
    "train": ("something-something-v2-train.json", "train.json"),
    "val": ("something-something-v2-validation.json", "validation.json"),
    "test": ("something-something-v2-test.json", "test.json"),
}


def _template_name(template: str) -> str:
    """An SSv2 template or label map key as the label map names its class: without the '[something]' brackets."""
    return template.replace("[", "").replace("]", "")


def from_ssv2(annotation_dir: str | Path, path_format: str = SSV2_FORMAT) -> tuple[Splits, list[str]]:
    """Something-Something V2: the label map ({template: id}) and the train / validation / test lists (lists of
    {id, template, ...}; the test file has ids only), each under either name of ``SSV2_FILES``. The label is the
    template with its '[something]' brackets removed, looked up in the label map (its keys without them too).
    Files: ``path_format`` with
    field id. Other JSON files in ``annotation_dir`` (a split file under another name, ``val.json``; not the other
    naming of a file read, nor mme lists' own ``CLASSES_FILE`` and ``CHECK_FILE``) are named in a warning."""
    adir = Path(annotation_dir)
    labels_file = _find_file(adir, SSV2_FILES["labels"])
    if labels_file is None:
        raise DataError(f"{adir}: no SSv2 label map (looked for {' and '.join(SSV2_FILES['labels'])})")
    classes = read_classes(labels_file, "SSv2 label map")
    label_map: dict[str, int] = {}  # (a map written from the templates keeps their brackets: looked up without)
    for i, name in enumerate(classes):
        if (other := label_map.setdefault(_template_name(name), i)) != i:
            raise DataError(f"{labels_file}: labels {classes[other]!r} and {name!r} are one template without its "
                            f"'[something]' brackets; a template names one class")
    out: Splits = {}
    for split in ("train", "val", "test"):
        path = _find_file(adir, SSV2_FILES[split])
        if path is None:
            continue
        entries = []
        items = _read_json(path)
        if not isinstance(items, list):
            raise DataError(f"{path}: expected a JSON list of videos ({{'id': ..., 'template': ...}}), got a "
                            f"{type(items).__name__}")
        for n, item in enumerate(items):
            if not isinstance(item, dict) or not isinstance(item.get("template", ""), str):
                raise DataError(f"{path}: item {n} is not a video as SSv2 lists them ({{'id': ..., 'template': "
                                f"'...'}}): {str(item)[:80]}")
            video_id = item.get("id")
            if isinstance(video_id, bool) or not isinstance(video_id, (str, int)) or \
                    (isinstance(video_id, str) and (not video_id.strip() or _CONTROL.search(video_id))):
                raise DataError(f"{path}: item {n} is not a video as SSv2 lists them: its id {video_id!r} is not a "
                                f"non-empty string (without control characters) or an integer")  # ('': '.webm')
            label = None
            if "template" in item:
                name = _template_name(item["template"])
                if name not in label_map:
                    raise DataError(f"{path}: video {item['id']}: template {name!r} is not in {labels_file}")
                label = label_map[name]
            entries.append(ListEntry(_format_path(path_format, id=item["id"]), label))
        labelled = [e.label is not None for e in entries]
        if len(set(labelled)) > 1:
            n = labelled.index(not labelled[0])
            raise DataError(f"{path}: item {n} (video {items[n]['id']}) has {'no' if labelled[0] else 'a'} template, "
                            f"unlike item 0 (a list is labelled in every line or in none)")
        if split != "test" and entries and not any(labelled):
            log.warning("%s: no video has a template; its %s list is written without labels", path, split)
        out[split] = entries
    looked = ", ".join(n for split in ("train", "val", "test") for n in SSV2_FILES[split])
    known = {*(n for names in SSV2_FILES.values() for n in names), CLASSES_FILE, CHECK_FILE}  # (both namings: links)
    try:
        unread = sorted(f.name for f in adir.iterdir() if f.suffix.lower() == ".json" and not _hidden(f.name)
                        and f.name not in known and f.is_file())
    except OSError:  # (a folder that can be entered, not listed: its files found by name)
        unread = []
    if unread:  # (a split file under another name, val.json: its list not written)
        log.warning("%s: %s not read: SSv2 split files are read under the names %s; rename a split file to one of "
                    "them", adir, ", ".join(unread), looked)
    if not out:
        raise DataError(f"{adir}: no SSv2 split files (looked for {looked})")
    return out, classes


def _read_json(path: Path):
    try:
        return json.loads(_read_text(path))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e})") from e


def build_lists(kind: str, source: str | Path, out_dir: str | Path, split: int | None = None,
                path_format: str | None = None, video_root: str | Path | None = None, skip_missing: bool = False,
                classes: str | Path | None = None, before_writing: Callable[[list, list], None] | None = None
                ) -> tuple[dict[str, Path], Path | None]:
    """Write ``<split>.txt`` lists and ``classes.json`` into ``out_dir`` from one annotation source. Returns the
    lists written (split -> file) and the folder their paths start from: ``video_root``, for folder lists the
    one :func:`folder_lists` gives, another ``video_root`` a DataError (None for the others).

    ``kind``: 'folder' (source = the video folder, or a folder of split folders), 'ucf101' / 'hmdb51' (source =
    the split-file folder), 'kinetics' (source = a CSV or a folder of CSVs), 'ssv2' (source = the annotation
    folder); ``classes``: for folder and kinetics, the class map to number the classes by. A ``classes.json`` of
    ``out_dir`` that numbers them otherwise, beside lists of other splits, is a DataError (see :func:`_keep_ids`);
    a build into an ``out_dir`` another build is writing waits for it, then looks at what it wrote (:data:`LISTS_LOCK`).
    With ``skip_missing``, entries whose file is
    not under ``video_root``, under any video suffix, are left out (counted in the log, a warning past
    :data:`MISSING_TO_WARN`), the others listed as the file found; a split with none found is not written,
    classes with none found in a split are named in a warning, and no video found at all is a DataError (a wrong
    ``video_root`` or ``path_format``). A split this source has but that is not written (no video found, or
    none listed) has its list of an earlier build in ``out_dir`` removed, so no later run reads it, before any
    write: one that cannot be removed is an MMEError naming it, nothing of this build written. A list there that
    differs from this build's is replaced with a warning naming it and what it held (:func:`_replacing`).
    ``before_writing``: called before any write with this build's list files and its (video, label, list file)
    entries (mme lists --check judges its report's place there, :func:`_check_replaced`). ``out_dir`` is made
    only after the annotations are read and checked: a refused build leaves no folder behind.
    """
    source = Path(source)
    out_dir = check_output(out_dir, "--out", folder=True, make=False)  # made once the build is known to write
    if path_format and kind not in ("kinetics", "ssv2"):
        log.warning("--path-format is for kinetics and ssv2 lists; %s lists name the videos as their files do", kind)
    if split is not None and kind not in ("ucf101", "hmdb51"):
        log.warning("--split is for ucf101 and hmdb51 lists (their official splits); %s lists have their own", kind)
    if classes is not None and kind not in ("folder", "kinetics"):
        raise DataError(f"--classes is for folder and kinetics lists; {kind} lists take their classes from the "
                        f"annotations")
    given = read_classes(classes) if classes is not None else None
    naming = None  # the --path-format that names the files, for the kinds it names them of
    if kind not in ("folder", "ucf101", "hmdb51", "kinetics", "ssv2"):
        raise DataError(f"unknown list kind {kind!r}; choose folder, ucf101, hmdb51, kinetics or ssv2")
    with reading(source, DataError):  # (the source's look-ups and reads: in a folder this user may not enter, EACCES)
        if kind == "folder":
            splits, classes, base = folder_lists(source, given)
            if video_root is not None and os.path.realpath(video_root) != os.path.realpath(base):
                raise DataError(f"--root {os.fspath(video_root)}: folder lists' paths start at {base}; give "
                                f"{command_option('--root', base)} or leave it out")
            video_root = base
        elif kind == "ucf101":
            splits, classes = from_ucf101(source, 1 if split is None else split)
        elif kind == "hmdb51":
            splits, classes = from_hmdb51(source, 1 if split is None else split)
        elif kind == "kinetics":
            csvs = sorted(f for f in source.iterdir() if f.suffix.lower() == ".csv" and not _hidden(f.name)) \
                if source.is_dir() else [source]
            if not csvs:
                raise DataError(f"{source}: no Kinetics CSV (*.csv) in this folder")
            naming = KINETICS_FORMAT if path_format is None else path_format
            splits, classes = from_kinetics(csvs, naming, given)
        else:
            naming = SSV2_FORMAT if path_format is None else path_format
            splits, classes = from_ssv2(source, naming)
    if kind != "folder":  # (paths of annotation files, UTF-8 text, held as the file system's names, as a list's are)
        splits = {name: [replace(e, path=fs_name(e.path)) for e in entries] for name, entries in splits.items()}
    for name in [name for name, entries in splits.items() if not entries]:
        log.warning("%s: split %s lists no videos; its list is not written", source, name)
    listed = {name: entries for name, entries in splits.items() if entries}
    if not listed:
        raise DataError(f"{source}: lists no videos")
    if out_dir.is_dir():  # before the videos are looked for (a build writing there waited for); again as it writes
        with _lists_lock(out_dir):
            _keep_ids(out_dir, classes, splits, kind)
    if skip_missing:
        if video_root is None:
            raise DataError("--skip-missing looks for the videos: give the folder they are in with --root")
        listed = _found(listed, classes, video_root, naming)
    check_output(out_dir, "--out", folder=True)
    # one build into --out at a time, each looking at what is there again once it holds it: two at once both passed
    # the look above before either wrote, and one's lists were left numbered by the other's classes.json
    with _lists_lock(out_dir):
        _keep_ids(out_dir, classes, splits, kind)
        written = {name: out_dir / f"{name}.txt" for name in listed}
        if before_writing is not None:
            before_writing(list(written.values()), [(resolve(e, video_root), e.label, str(written[name]))
                                                    for name, entries in listed.items() for e in entries])
        for name in sorted(splits.keys() - listed.keys()):  # before any write: one left would be read as this build's
            stale = out_dir / f"{name}.txt"
            if stale.is_file():
                with removing(stale, f"the {name} list of an earlier build, which this build has no videos for; "
                                     f"nothing of this build is written: make it removable, or choose another --out"):
                    stale.unlink()
                log.warning("removed %s, the %s list of an earlier build: this build has no videos for it", stale,
                            name)
        texts = {written[name]: list_text(written[name], entries) for name, entries in listed.items()}
        for path, text in texts.items():
            _replacing(path, text)
        if classes:  # (a build of unlabelled lists, a Kinetics test CSV, leaves the class map of the others alone)
            texts[out_dir / CLASSES_FILE] = classes_text(classes)
        atomic_write_texts(texts, "nothing of this build is written: the lists and class map there are as they were")
    for name, entries in listed.items():
        log.info("wrote %s (%d videos)", written[name], len(entries))
    return written, video_root


LISTS_LOCK = ".lists.lock"
"""The lock file a build holds in its ``--out`` while it looks at what is there (:func:`_keep_ids`) and from its last
look through its writes, removed at its end (:func:`mme.utils.exclusive_lock`): a second build into that folder
waits, then looks."""


def _lists_lock(out_dir: Path) -> contextlib.AbstractContextManager[bool]:
    """The lock on ``out_dir`` (:data:`LISTS_LOCK`) that a build's looks at what is there and its writes hold: a look
    made unlocked could find another build's lists half replaced (new lists beside the class map they replace)."""
    return exclusive_lock(out_dir / LISTS_LOCK, remove=True, unopened="choose another --out",
                          waiting=f"--out {out_dir}: another mme lists is writing there; waiting for it to end")


def _replacing(path: Path, text: str) -> None:
    """Warn where ``path`` holds a list of other data than ``text``, which is to replace it (a build of other data
    into one --out, two folders not named as splits both giving all.txt), naming what it held. The same data
    rebuilt, videos only added or only gone (each line of one list in the other: the class ids unchanged), is only
    logged."""
    if not path.is_file():
        return
    try:
        held = path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        log.warning("replacing %s, which could not be read (%s)", path, e)
        return
    if held == text:
        return
    lines = [line for line in text_lines(held) if line.strip()]
    old, new = set(lines), {line for line in text_lines(text) if line.strip()}
    if old <= new or new <= old:  # the same data rebuilt, videos added or gone, under the same class ids
        log.info("replacing %s: %d lines before, %d now", path, len(lines), len(new))
        return
    log.warning("replacing %s, which held another list: %d lines%s", path, len(lines),
                f", the first {lines[0]!r}" if lines else "")


def _keep_ids(out_dir: Path, classes: list[str], splits: Splits, kind: str) -> None:
    """Refuse to replace a ``classes.json`` of ``out_dir`` that is no class map (:func:`read_classes`: a file of
    the user's, as mme synth refuses one), or that numbers classes otherwise while lists of other splits than this
    build's remain there: they would keep its ids under the new map's names."""
    path = out_dir / CLASSES_FILE
    if not classes or not path.is_file():  # a build without labels writes none
        return
    try:
        if read_classes(path) == classes:
            return
    except DataError as e:  # unreadable as a class map: not one mme wrote, but an earlier mme's of a build unlabelled
        if path.read_text(encoding="utf-8", errors="replace").strip() == "[]":
            return
        raise DataError(f"--out {out_dir}: holds classes.json, which is not a readable class map (a JSON list of "
                        "class names, or a {name: id} map) and would be replaced; move it, or choose another "
                        "--out") from e
    left = sorted(f.name for f in out_dir.glob("*.txt") if f.stem not in splits and _labelled_list(f))
    if not left:
        return
    keep = f"give --classes {path} to keep its ids" if kind in ("folder", "kinetics") else "build them together"
    raise DataError(f"{path} numbers the classes otherwise than this build would, and the lists of other splits "
                    f"there ({', '.join(left)}) are numbered by it: {keep}, or choose another --out")


def _labelled_list(path: Path) -> bool:
    """Whether ``path`` is a list file with labels (not notes, nor an unlabelled pre-training list)."""
    try:
        return path.is_file() and any(e.label is not None for e in read_list(path, strict=False)[0])
    except (DataError, OSError):
        return False


MISSING_TO_WARN = 0.1
"""The share of a split's videos missing under --root past which ``--skip-missing`` warns (a Kinetics download misses
a few percent, YouTube videos since removed; more is a wrong --root or --path-format, or videos not yet copied)."""


def _found(splits: Splits, classes: list[str], video_root: str | Path, naming: str | None) -> Splits:
    """The entries of each split whose file is under ``video_root`` (a download always misses some), each listed as
    the file found (:func:`_video_found`); see :func:`build_lists`. ``naming``: the --path-format that named the
    files (None for the kinds it does not name): it is suggested where many are missing, and its label fields where
    no video of a class is found."""
    formatted = naming is not None
    by_label = formatted and _names_label(naming)
    folders: dict[str, _FolderVideos | None] = {}
    out: Splits = {}
    looked_up: list[_LookedUp] = []
    for name, entries in splits.items():
        looked = [(e, _video_found(e, video_root, folders, looked_up)) for e in entries]
        kept = [replace(e, path=found[0]) for e, found in looked if found]
        if several := [(e, found) for e, found in looked if len(found) > 1]:
            _say_several(name, several, formatted)
        missing = len(entries) - len(kept)
        example = next((e.path for e, found in looked if not found), None)  # (the first missing, said either way)
        if kept and missing > MISSING_TO_WARN * len(entries):
            log.warning("%s: %d of %d videos missing under %s (%d found), e.g. %s%s", name, missing, len(entries),
                        video_root, len(kept), example, " (is --path-format their naming?)" if formatted else "")
        else:
            log.info("%s: %d of %d videos found under %s%s", name, len(kept), len(entries), video_root,
                     f" ({missing} missing, e.g. {example})" if missing else "")
        if not kept:
            log.warning("%s: none of its %d videos is under %s (e.g. %s); its list is not written", name,
                        len(entries), video_root, entries[0].path if entries else "-")
            continue
        listed, found = Counter(e.label for e in entries), Counter(e.label for e in kept)
        gone = [classes[c] for c in listed if c is not None and not found[c]]
        if gone:
            log.warning("%s: no video of %d class(es) found under %s, e.g. %s%s", name, len(gone), video_root,
                        gone[:5], " (is --path-format the folders' naming? {label_tv} is torchvision's)"
                        if by_label else "")
        out[name] = kept
    if looked_up:
        _say_looked_up(looked_up, video_root)
    if not out:
        raise DataError(f"no listed video is under {video_root}: is it the folder the paths start from"
                        f"{', and --path-format their naming' if formatted else ''}?")
    return out


def _say_several(split: str, several: list[tuple[ListEntry, list[str]]], formatted: bool) -> None:
    """Warn of the rows of ``split`` whose video is there under several suffixes (each with its files, the one
    listed first): a conversion left half done, or yt-dlp's download beside a copy. The file the row names is
    listed where it is there (a conversion's output, which --path-format names), else the first by suffix; the
    hint to name a suffix in --path-format only where a file listed is not the one its row names."""
    entry, files = several[0]
    log.warning("%s: %s %s there under several suffixes, e.g. %s: listed as %s, not %s; a row's video is listed "
                "as the file it names where that is there, else under the first of its suffixes in the order of "
                "VIDEO_EXTS (%s, ...): remove the others%s", split, counted(len(several), "video"),
                plural(len(several), "is", "are"), entry.path, files[0],
                ", ".join(files[1:]), ", ".join(VIDEO_EXTS[:4]),
                ", or name the suffix to take in --path-format" if formatted and any(
                    listed[0] != row.path for row, listed in several) else "")


def _say_looked_up(looked_up: list[_LookedUp], video_root: str | Path) -> None:
    """Say how the rows ``looked_up``, in folders that can be entered but not listed, were looked for: under the
    suffix spellings of :data:`LOOKED_UP_SPELLINGS` alone, the first file found taken (:func:`_name_looked_up`). A
    warning where some were not found (a video spelled otherwise among them), else an INFO line."""
    folders = sorted({row.folder for row in looked_up})
    missing = [row.entry.path for row in looked_up if not row.found]
    their = plural(len(folders), "its", "their")
    videos = f"each of {their} {counted(len(looked_up), 'video')}" if len(looked_up) > 1 else f"{their} 1 video"
    log.log(logging.WARNING if missing else logging.INFO,
            "%s under %s can be entered but not listed (e.g. %s): %s was looked up by its name, then under each video "
            "suffix in lower case, capitals or a first capital (%s), the first file found taken (a video kept under "
            "several suffixes is not noticed there)%s", counted(len(folders), "folder"), video_root, folders[0], videos,
            ", ".join(LOOKED_UP_SPELLINGS[:3]),
            f"; {len(missing)} not found (e.g. {missing[0]}): one whose suffix is spelled otherwise (.mP4) is not "
            f"found there; let the folders be listed (chmod a+r) to find a suffix in any case" if missing else "")


class _LookedUp(NamedTuple):
    """A row looked up by its name (:func:`_video_found`): its folder, which cannot be listed, and the files found."""

    folder: str
    entry: ListEntry
    found: list[str]


class _FolderVideos(NamedTuple):
    """The names of a folder's files, and of its videos by their name without the video suffix."""

    files: set[str]
    videos: dict[str, list[str]]


def _video_found(entry: ListEntry, root: str | Path, folders: dict[str, _FolderVideos | None],
                 looked_up: list[_LookedUp]) -> list[str]:
    """The entry's paths as the files found under ``root``, the one to list first: the file it names, then the
    videos of the same name under other suffixes of :data:`VIDEO_EXTS` in its order (yt-dlp keeps the .mkv or .webm
    it downloaded where a CSV's format names .mp4), each file once; none where there is neither. ``folders`` holds
    each folder's names once listed: one listing a folder, not a stat per suffix per row (240k rows in K400); in a
    folder not listed (:func:`_folder_videos` None) each name is looked up, the first file found alone, and the row
    added to ``looked_up``."""
    folder, name = os.path.split(resolve(entry, root))
    if folder not in folders:
        folders[folder] = _folder_videos(folder)
    listed = folders[folder]
    stem = _video_stem(name) or (None if _hidden(name) else name)  # (not a video's name: its video under any suffix)
    if listed is not None and name in listed.files and listed.videos.get(stem, [name]) == [name]:
        return [entry.path]  # (nearly every row: its file, there under one suffix)
    found = _distinct_files(folder, _name_listed(name, stem, listed)) if listed is not None \
        else _name_looked_up(folder, name, stem)
    head = entry.path.rpartition("/")[0]
    paths = [entry.path if file == name else f"{head}/{file}" if head else file for file in found]
    if listed is None:
        looked_up.append(_LookedUp(folder, entry, paths))
    return paths


def _name_listed(name: str, stem: str | None, listed: _FolderVideos) -> list[str]:
    """The file of ``name`` in a folder's listing, then its videos under other suffixes (videos named ``stem`` and
    a suffix; None: none looked for), in :data:`VIDEO_EXTS` order."""
    others = listed.videos.get(stem, []) if stem is not None else []
    return [name, *(other for other in others if other != name)] if name in listed.files else others


def _distinct_files(folder: str, names: list[str]) -> list[str]:
    """``names`` (in ``folder``) less those naming the file an earlier one names (a link to it, a hard link)."""
    if len(names) < 2:  # (nearly every video: no stat)
        return names
    files: dict[tuple[int, int] | str, str] = {}
    for name in names:
        files.setdefault(identity_or_none(os.path.join(folder, name)) or name, name)
    return list(files.values())


def _name_looked_up(folder: str, name: str, stem: str | None) -> list[str]:
    """As :func:`_name_listed` in a folder that cannot be listed, by a look-up per name, the first file found alone
    (the others would be a stat per suffix spelling per video found): ``name``, else ``stem`` under each suffix of
    :data:`VIDEO_EXTS` as :data:`LOOKED_UP_SPELLINGS` spells it (said by :func:`_say_looked_up`)."""
    if os.path.isfile(os.path.join(folder, name)):
        return [name]
    if stem is None:
        return []
    return next(([found] for found in (stem + spelled for spelled in LOOKED_UP_SPELLINGS)
                 if os.path.isfile(os.path.join(folder, found))), [])


def _folder_videos(folder: str) -> _FolderVideos | None:
    """The names of the files in ``folder`` (links followed) and of its videos (not hidden) by name without their
    suffix, in :data:`VIDEO_EXTS` order; none where it is not there, or where it can be listed but not entered
    (mode 0644: its listing names files that cannot be opened). None for a folder whose files are looked up each: one
    that can be entered but not listed (mode 0311 on shared dataset mounts). A folder that cannot be listed otherwise
    is a DataError naming it and the reason."""
    files, videos = set(), {}
    try:
        with os.scandir(folder or ".") as found:
            for item in found:
                if not item.is_file():
                    continue
                files.add(item.name)
                stem = _video_stem(item.name)
                if stem is not None:
                    videos.setdefault(stem, []).append(item.name)
    except OSError as e:
        if e.errno in REFUSED and os.access(folder or ".", os.X_OK):  # (not one of mode 000)
            return None
        if e.errno not in NOT_THERE:
            raise DataError(cannot_read(folder or ".", e)) from e
    else:
        if not os.access(folder or ".", os.X_OK):  # (its entries' types are listed, but no file in it opens)
            return _FolderVideos(set(), {})
    for names in videos.values():
        if len(names) > 1:  # (one in nearly every case)
            names.sort(key=lambda n: (VIDEO_EXTS.index(os.path.splitext(n)[1].lower()), n))  # (ties by name)
    return _FolderVideos(files, videos)


# ---- the check before a long run -----------------------------------------------------------------------------

USABLE = ("ok", "suspicious", "damaged", "rotated", "short", "several videos", "hdr", "anamorphic")
"""Statuses of videos a run reads; the others it cannot read (what each list's role does with them:
:data:`UNREAD_BY_ROLE`)."""
SHOWN = 5
"""Videos a run cannot read that ``mme check`` names on the console (its report has them all)."""
UNREAD_BY_ROLE = (
    "pre-training and fine-tuning skip those of their training list (a bad line left out, a video replaced by another "
    "drawn in its place, counted against data.max_failure_fraction); the tests of a val or test list (fine-tuning's, "
    "task.eval_only's) and mme probe refuse a bad line before any work and report a video as failed, left out of "
    "their figures")
"""What ``mme check`` says a run does with the videos it cannot read, by the role of their list (it knows none)."""


def check_lists(list_files: list[str | Path], root: str | Path, report_path: str | Path, min_frames: int = 16,
                workers: int = 1, index_dir: str | Path | None = None, decode_threads: int = 1,
                overwrite: bool = False) -> dict:
    """Open and decode every video the lists name (:func:`mme.data.video.check_video`) and write a JSON report:
    per-status counts and every video that is not 'ok' (unreadable, short, suspicious, ...; bad list lines too).
    With ``index_dir``, each video's index, proven by the whole decode, is kept there (``data.index_dir``);
    ``decode_threads``: the decoder's, as the run's ``data.decode_threads``. The report replaces a file at
    ``report_path`` that is a check report, another only with ``overwrite``, a list or video it checks never
    (:func:`_check_replaced`). Where an index could not be kept in ``index_dir`` (under one of the names the lists
    give its video), the folder is left unmarked (:func:`~mme.data.pyav_reader.mark_checked`) and, once the report
    is written, an MMEError says how many and why (logged before the report's own error where it is not); a mark that
    cannot be made or removed is warned of."""
    check_root(root, "--root")
    check_output(report_path, "--out")
    if index_dir is not None:
        check_apart(report_path, "--out", index_dir, "--index-dir")
        check_output(index_dir, "--index-dir", folder=True)
        note_other_index_versions(index_dir)
    with _report_held(report_path):
        read = _read_lists(list_files, root)
        _check_replaced(Path(report_path), overwrite, list_files, read.listed)
        return _check_read(list_files, root, report_path, read, min_frames, workers, index_dir, decode_threads)


def _report_held(report_path: str | Path, named: str | None = None) -> contextlib.AbstractContextManager[bool]:
    """A check's hold on its report for the check's life: a lock file beside it (:func:`mme.utils.lock_beside`,
    ``.<report's name>.lock``), not waited for, removed at the end (:func:`mme.utils.exclusive_lock`'s ``refused``),
    so that a second check into the same report (the tasks of a job array given one --out) is refused at its start
    naming the holder, where the last to end replaced the other's report without a word. ``named``: how the refusal
    names the report (``--out OUT: its check.json`` for mme lists --check)."""
    report = Path(report_path)

    def refused(holder: str) -> str:
        return (f"{named or f'--out {str(report)!r}'} is being written by another check ({holder}); wait for it to "
                f"end or choose another --out")

    return exclusive_lock(lock_beside(report), remove=True, wait_s=0, unopened="choose another --out",
                          refused=refused)


class _ReadLists(NamedTuple):
    """The lines of the lists a check reads (:func:`_read_lists`)."""

    entries_of: dict[str | Path, list[ListEntry]]
    bad_lines: list[dict]
    """The report's line of each bad one."""
    listed: list[tuple[str, int | None, str]]
    """Each entry as (video under the root, label, list file)."""


def _read_lists(list_files: list[str | Path], root: str | Path) -> _ReadLists:
    """The lines of the lists a check reads, their relative paths from ``root``."""
    bad_lines, listed, entries_of = [], [], {}
    for list_file in list_files:
        entries, bad = read_list(list_file, strict=False)
        entries_of[list_file] = entries
        bad_lines += [{"path": f"{b.list_file}:{b.line_no}", "status": "bad list line", "reason": b.reason}
                      for b in bad]
        listed += [(resolve(e, root), e.label, str(list_file)) for e in entries]
    return _ReadLists(entries_of, bad_lines, listed)


def _check_read(list_files: list[str | Path], root: str | Path, report_path: str | Path, read: _ReadLists,
                min_frames: int, workers: int, index_dir: str | Path | None, decode_threads: int) -> dict:
    """:func:`check_lists` of the lists :func:`_read_lists` ``read``, its report's place judged."""
    entries_of, bad_lines, listed = read
    named = ", ".join(map(str, list_files))
    log.info("checking the %d entries of %s: finding the file each names", len(listed), named)  # (a minute at 240k)
    reals = [os.path.realpath(path) for path, _, _ in listed]
    first = {}  # each file (by its real path, so './a.mp4' and 'x/../a.mp4' are 'a.mp4') -> its first spelling
    others: dict[str, dict[str, None]] = {}  # a file listed under other names too -> those (a symlink and its target)
    for real, (path, _, _) in zip(reals, listed):
        if first.setdefault(real, path) != path:
            others.setdefault(real, {})[path] = None
    repeats = _repeats([(first[real], label, f) for real, (_, label, f) in zip(reals, listed)])
    jobs = [(path, min_frames, index_dir, decode_threads) for path in first.values()]
    log.info("checking %s of %s with %s", counted(len(jobs), "video"), named, counted(workers, "worker"))
    if index_dir is not None:  # (what an earlier check in this process found, or failed to save, is not taken)
        forget_indices()
    by_path, problems_so_far = {}, 0
    try:
        with progress_bar(in_workers(_check_job, jobs, workers, _died_checking, itemgetter(0)), len(jobs), "check",
                          "video") as bar:
            for r, unkept in bar:  # (as they finish)
                by_path[r["path"]] = r, unkept
                if r["status"] != "ok":
                    problems_so_far += 1
                    bar.set_postfix(problems=problems_so_far, refresh=False)
    except BaseException as e:  # (Ctrl-C, SIGTERM, out of memory: the videos checked so far are reported; none
        # checked, as where the check was refused before its first, leaves an earlier report as it was)
        if by_path:
            _write_partial(report_path, e, _report(list_files, root, min_frames, decode_threads, len(jobs),
                                                   [r for r, _ in by_path.values()], bad_lines, repeats),
                           [str(path) for path, *_ in jobs if str(path) not in by_path])
        raise
    checked = [by_path[str(path)] for path, *_ in jobs]
    results = [r for r, _ in checked]
    # each video a run reads whose index is not kept in index_dir under one of its names -> (that name, why)
    unkept = {r["path"]: (r["path"], why) for r, why in checked if why}
    for real, names in others.items() if index_dir is not None else ():  # (a run reading any finds the index)
        with contextlib.suppress(OSError):  # (gone since: reported by its check)
            lost = keep_index_as(index_dir, first[real], names)
            if lost and by_path[first[real]][0]["status"] in USABLE:  # (as _check_job: only the videos a run reads)
                unkept.setdefault(first[real], lost)
    if index_dir is not None and (unmarked := mark_checked(index_dir, filled=not unkept)):
        log.warning("--index-dir %s: %s", index_dir, unmarked)
    found = {real: r["status"] != "missing" for real, r in zip(first, results)}
    for list_file, entries in entries_of.items():
        _hint_root(list_file, [e for e in entries if not os.path.isabs(e.path)], root, found)
    report = _report(list_files, root, min_frames, decode_threads, len(jobs), results, bad_lines, repeats)
    counts, problems = Counter(report["counts"]), report["problems"]
    try:
        with writing(report_path, "the check's results are above; another --out keeps its report"):
            atomic_write_text(report_path, json.dumps(report, indent=1) + "\n")
    except MMEError as e:  # (raised once the results are said: a report the disk refuses loses none of them)
        unwritten = e
    else:
        unwritten = None
    log.info("%s: %s", report_path if unwritten is None else "the check",
             ", ".join(f"{n} {status}" for status, n in sorted(counts.items())))
    unread = [p for p in problems if p["status"] not in USABLE]
    _name_some(unread, "a run cannot read ", "a run cannot read" + (f", each in {report_path}" if unwritten is None
                                                                      else ""))
    if unread:
        log.warning("%s", UNREAD_BY_ROLE)
    if unkept:
        path, why = next(iter(unkept.values()))
        readable = sum(r["status"] in USABLE for r in results)
        not_filled = (f"--index-dir {index_dir}: not filled: the frame indices of {len(unkept)} of the {readable} "
                      f"videos a run reads could not be kept there ({why}), e.g. {path}'s, so a run indexes them "
                      "again in every process")
        again = "the same check run again once they can be written there keeps them"
    if unwritten is not None:  # the videos a run reads that the report would have named too, by status
        for status in dict.fromkeys(p["status"] for p in problems if p["status"] in USABLE):
            _name_some([p for p in problems if p["status"] == status], "", status)
        if unkept:  # (said before the report's error, which ends the check)
            log.error("%s; %s", not_filled, again)
        raise unwritten
    if unkept:
        raise MMEError(f"{not_filled}; the report {report_path} is written, and {again}")
    return report


def _report(list_files: list[str | Path], root: str | Path, min_frames: int, decode_threads: int, videos: int,
            results: list[dict], bad_lines: list[dict], repeats: dict[str, list]) -> dict:
    """The report of a check of ``videos`` videos whose ``results`` are in (all of them, or those a stop left)."""
    counts = Counter(r["status"] for r in results) + Counter(b["status"] for b in bad_lines)
    return {"lists": [str(f) for f in list_files], "root": str(root), "min_frames": min_frames,
            "decode_threads": decode_threads, "videos": videos, "counts": dict(counts),
            "failing": sum(n for status, n in counts.items() if status not in USABLE),
            "problems": [utf8_named(p, "reason") for p in bad_lines + [r for r in results if r["status"] != "ok"]],
            "repeats": repeats}


def _write_partial(report_path: str | Path, stop: BaseException, report: dict, unchecked: list[str]) -> None:
    """Write the ``report`` of a check that ``stop`` ended after its first video and before its last (Ctrl-C, SIGTERM,
    an error): marked ``partial`` with why, its ``unchecked`` videos listed, so that the videos checked are kept;
    logged either way."""
    why = "interrupted" if isinstance(stop, KeyboardInterrupt) else first_line(stop)
    report = {**report, "partial": why, "unchecked": [utf8_name(path) for path in unchecked]}
    checked = report["videos"] - len(unchecked)
    try:
        atomic_write_text(report_path, json.dumps(report, indent=1) + "\n")
    except (OSError, MMEError) as e:
        log.warning("the check of %d of %s is lost: its partial report could not be written to %s (%s)",
                    checked, counted(report["videos"], "video"), report_path,
                    error_reason(e) if isinstance(e, OSError) else e)
        return
    log.warning("%s: a partial report, of the %d of %s checked before the check stopped (%s); the %s unchecked %s "
                "listed under 'unchecked'", report_path, checked, counted(report["videos"], "video"), why,
                counted(len(unchecked), "video"), plural(len(unchecked), "is", "are"))


def _name_some(problems: list[dict], lead: str, more: str) -> None:
    """Log the first :data:`SHOWN` of ``problems`` of a check, each after ``lead``, and how many ``more`` there are."""
    for p in problems[:SHOWN]:  # a VideoError's reason names the file and status already
        log.warning("%s%s", lead, p["reason"] if p["reason"].startswith(p["path"] + ": ") else
                    f"{p['path']}: {p['status']} ({p['reason']})")
    if len(problems) > SHOWN:
        log.warning("... and %d more %s", len(problems) - SHOWN, more)


REPORT_KEYS = ("lists", "counts", "problems")
"""Keys every report of mme check holds: what tells one from another file at ``--out``."""


def is_check_report(path: str | Path) -> bool:
    """Whether ``path`` holds a report of mme check (a JSON object with :data:`REPORT_KEYS`:
    :func:`mme.utils.read_json_object`)."""
    return read_json_object(path, REPORT_KEYS) is not None


def _check_replaced(out: Path, overwrite: bool, list_files: list[str | Path],
                    listed: list[tuple[str, int | None, str]], named: str | None = None) -> None:
    """Refuse a report that would replace a list the check reads or a video it lists (the same file however reached:
    a link, another spelling), or, unless ``overwrite``, a file that is not a check report (a user's notes).
    ``named``: how messages name the report (``--out OUT: its check.json`` for mme lists --check)."""
    is_out = same_file_as(out)
    if is_out is None:
        return
    named = named or f"--out {out}:"
    for list_file in list_files:
        if is_out(list_file):
            raise ConfigError(f"{named} is the list {list_file}, which this check reads; write the report elsewhere")
    for video, _, list_file in listed:
        if is_out(video):
            raise ConfigError(f"{named} is {video}, a video the list {list_file} names; write the report elsewhere")
    if not (overwrite or is_check_report(out)):
        raise ConfigError(f"{named} already holds a file mme check did not write (not a check report); give "
                          "--overwrite to replace it, or another --out")


def _check_job(job: tuple) -> tuple[dict, str | None]:
    """:func:`check_video` of a job, and, with an index folder, why the index of a video a run reads is not kept
    there (None: kept, or no folder)."""
    result = check_video(*job)
    path, _, index_dir, _ = job
    kept = index_dir is None or result["status"] not in USABLE
    return result, None if kept else index_unkept(index_dir, path)


def _died_checking(job: tuple, how: str) -> tuple[dict, None]:
    """A video whose check killed its worker (a crashing decoder, or the OOM killer) is reported, not waited for."""
    return video_check(job[0], "unreadable", f"a worker process died checking it ({how})"), None


def _hint_root(list_file: str | Path, relative: list[ListEntry], root: str | Path, found: dict[str, bool]) -> None:
    """Log where the videos of a list are when none of its ``relative`` entries is under ``root`` and the list's
    own folder holds them (every video reported missing says nothing of where relative paths start)."""
    if not relative or any(found[real_path(e, root)] for e in relative):
        return
    beside = os.path.dirname(absolute_path(list_file))
    if any(os.path.isfile(os.path.join(beside, e.path)) for e in relative):
        log.warning("%s: none of its %d videos is under %s, where its relative paths start (--root); the list's "
                    "own folder holds them: give %s", list_file, len(relative),
                    root or f"the working folder {os.getcwd()}", command_option("--root", beside))


def _repeats(listed: list[tuple[str, int | None, str]]) -> dict[str, list]:
    """Videos listed more than once (checked once): in one list, with different labels, or in several lists (a
    video in both train and test lists). Each kind is logged as a warning with its count."""
    seen: dict[str, list[tuple[int | None, str]]] = {}
    for path, label, list_file in listed:
        seen.setdefault(path, []).append((label, list_file))
    out = {"listed_twice": [p for p, v in seen.items() if len(v) > len({f for _, f in v})],
           "labels_differ": [p for p, v in seen.items() if len({lab for lab, _ in v if lab is not None}) > 1],
           "in_several_lists": [p for p, v in seen.items() if len({f for _, f in v}) > 1]}
    out = {kind: [utf8_name(p) for p in paths] for kind, paths in out.items()}  # (named as the lists name them)
    said = {"listed_twice": "listed twice", "labels_differ": "whose labels differ",
            "in_several_lists": "in several lists"}
    for kind, paths in out.items():
        if paths:
            log.warning("%s %s, e.g. %s", counted(len(paths), "video"), said[kind], paths[0])
    return out


def make_lists(kind: str, source: str | Path, out_dir: str | Path, split: int | None = None,
               path_format: str | None = None, video_root: str | Path | None = None, skip_missing: bool = False,
               check: bool = False, min_frames: int = 16, workers: int = 1, classes: str | Path | None = None,
               decode_threads: int = 1, overwrite: bool = False) -> dict:
    """``mme lists``: :func:`build_lists`, then with ``check``, :func:`check_lists` of the lists written into
    ``out_dir/check.json`` (videos under ``video_root``; for 'folder', where the lists' paths start: another is
    refused), which replaces a file there that is not a check report only with ``overwrite``, as ``mme check --out``
    does. Returns ``{"lists": split -> path, "check": the check's report or None}``."""
    check_root(video_root, "--root")
    if check and video_root is None and kind != "folder":  # before any list is written
        raise DataError("--check opens the videos: give the folder they are in with --root")
    if overwrite and not check:
        log.warning("--overwrite is for --check (a check.json in --out that is not a check report); the lists are "
                    "replaced without it")
    report_path = Path(out_dir) / CHECK_FILE
    if check and report_path.exists():  # before any list is written
        check_output(report_path, "--out")  # a regular file, not a pipe is_check_report would wait on
    named = f"--out {out_dir}: its check.json"
    with contextlib.ExitStack() as held:
        def before_writing(files: list, listed: list) -> None:  # the report held before any list is written
            held.enter_context(_report_held(report_path, named))
            _check_replaced(report_path, overwrite, files, listed, named=named)

        written, root = build_lists(kind, source, out_dir, split=split, path_format=path_format,
                                    video_root=video_root, skip_missing=skip_missing, classes=classes,
                                    before_writing=before_writing if check else None)
        if not check:
            return {"lists": written, "check": None}
        lists = list(written.values())  # the report's place judged before any list was written
        report = _check_read(lists, root, report_path, _read_lists(lists, root), min_frames, workers, None,
                             decode_threads)
    return {"lists": written, "check": report}
