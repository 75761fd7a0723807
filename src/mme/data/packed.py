"""A run's list held in a few objects, whatever its length, so that loader workers read it without copying it.

A Python object per line (a :class:`~mme.data.lists.ListEntry`, a track cache file's name) is copied into each
forked loader worker page by page as the worker's reads update its reference count: +46 MiB a worker for a 240k-line
list, +78 MiB with a track cache's names (docs/scaling.md). Here the strings are one ``bytes`` and the numbers numpy
arrays, made once in the run's process; each item is made as it is read, and let go.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from mme.data.lists import ListEntry

NO_LABEL = -1
"""The label a :class:`PackedEntries` holds for an entry without one (a list's class ids are >= 0:
:func:`~mme.data.lists.parse_list` refuses a negative one)."""


def _position(i: int, n: int) -> int:
    """Item ``i`` of ``n`` as a list takes it (negative from the end), or the list's IndexError."""
    i = operator.index(i)
    if not -n <= i < n:
        raise IndexError(f"index {i} is out of range for {n} items")
    return i % n


class _Packed(Sequence):
    """Equal to any sequence of the same items, as the list it stands for is equal to a list of them."""

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str | bytes):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} items)"


class PackedStrings(_Packed):
    """Strings (or None) held as their UTF-8 bytes, one after another, and where each ends. Any str comes back as it
    went in: a file name's undecodable bytes (``os.fsdecode``'s lone surrogates) pass as such."""

    def __init__(self, strings: Iterable[str | None]):
        strings = list(strings)
        encoded = [b"" if s is None else s.encode("utf-8", "surrogatepass") for s in strings]
        self._bytes = b"".join(encoded)
        self._offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum(np.fromiter(map(len, encoded), np.int64, len(encoded)), out=self._offsets[1:])
        self._none = np.fromiter((s is None for s in strings), bool, len(strings))

    def __len__(self) -> int:
        return len(self._none)

    def __getitem__(self, i: int) -> str | None:
        i = _position(i, len(self))
        if self._none[i]:
            return None
        start, end = self._offsets[i:i + 2].tolist()
        return self._bytes[start:end].decode("utf-8", "surrogatepass")

    def __iter__(self) -> Iterator[str | None]:
        offsets = self._offsets.tolist()
        for start, end, none in zip(offsets, offsets[1:], self._none.tolist()):
            yield None if none else self._bytes[start:end].decode("utf-8", "surrogatepass")


class PackedEntries(_Packed):
    """A list's entries (:class:`~mme.data.lists.ListEntry`) as their paths (:class:`PackedStrings`), labels
    (:data:`NO_LABEL` for none) and line numbers. A list takes labels of any size, which a pre-training run never
    reads: where one is past int64 the labels are held as Python ints (an object array), as the list gave them."""

    def __init__(self, entries: Iterable[ListEntry]):
        entries = list(entries)
        self.paths = PackedStrings(e.path for e in entries)
        labels = [NO_LABEL if e.label is None else e.label for e in entries]
        fits = max(labels, default=NO_LABEL) <= np.iinfo(np.int64).max  # (labels are >= 0)
        self.labels = np.array(labels, np.int64 if fits else object)
        self.line_nos = np.fromiter((e.line_no for e in entries), np.int32, len(entries))

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> ListEntry:
        i = _position(i, len(self))
        return _entry(self.paths[i], int(self.labels[i]), int(self.line_nos[i]))

    def __iter__(self) -> Iterator[ListEntry]:
        for path, label, line_no in zip(self.paths, self.labels.tolist(), self.line_nos.tolist()):
            yield _entry(path, label, line_no)


def _entry(path: str, label: int, line_no: int) -> ListEntry:
    return ListEntry(path, None if label == NO_LABEL else label, line_no)
