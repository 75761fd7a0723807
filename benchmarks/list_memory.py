"""What a forked loader worker comes to hold of a run's list, held as a Python list of entries or packed.

A Kinetics-like list file (400 class folders, names with spaces, YouTube ids) of ``--lines`` lines is read; each
variant holds its entries, and a track cache's file names with them, as the run's process would: ``list`` (a
:class:`~mme.data.lists.ListEntry` and a str per line, the reference) and ``packed``
(:class:`~mme.data.packed.PackedEntries`, :class:`~mme.data.packed.PackedStrings`). Then, as the loader starts its
workers, this process's objects are frozen and it forks; the child reads every item's path, label and cache file
name once, as a dataset's reads do, and reports how its private memory (``Private_Clean`` + ``Private_Dirty`` of
``/proc/self/smaps_rollup``) grew. No video is needed: the reads are of the list.

    python benchmarks/list_memory.py --lines 240000 2400000

Prints, per list length, each variant's size in this process (its objects' ``sys.getsizeof``) and a worker's
growth, without and with the cache's names, and their ratios to the reference's; and the CPU it ran on.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import traceback
from pathlib import Path

from mme.data.lists import read_list, resolve
from mme.data.packed import PackedEntries, PackedStrings
from mme.motion.cache import cache_file
from mme.utils import cpu_name

ROOT = "/data/k400"
CACHE = "/cache/k400"


def _write_list(path: Path, lines: int) -> None:
    classes = [f"class {k} of {'kinetics ' * (k % 3)}actions".strip() for k in range(400)]
    with path.open("w") as f:
        for n in range(lines):
            label = n % 400
            start = (n * 37) % 290
            f.write(f"train/{classes[label]}/yt{n:09d}-_{start:06d}_{start + 10:06d}.mp4 {label}\n")


def _held(variant: str, list_file: Path) -> tuple[object, object]:
    """The entries and the cache's file names of ``variant``, as the run's process holds them."""
    entries = read_list(list_file)[0]
    files = [str(cache_file(CACHE, e.path)) for e in entries]
    return (entries, files) if variant == "list" else (PackedEntries(entries), PackedStrings(files))


def _size_mib(held: object) -> float:
    """The bytes of ``held`` and of every object it refers to, each counted once, classes left out."""
    seen, todo, size = set(), [held], 0
    while todo:
        obj = todo.pop()
        if id(obj) in seen or isinstance(obj, type):
            continue
        seen.add(id(obj))
        size += sys.getsizeof(obj)
        todo.extend(gc.get_referents(obj))
    return size / 2**20


def _private_kb() -> int:
    with open("/proc/self/smaps_rollup") as f:
        return sum(int(line.split()[1]) for line in f if line.startswith(("Private_Clean:", "Private_Dirty:")))


def _worker_growth_mib(entries, files, with_files: bool) -> float:
    """A forked child's private memory growth on reading every item once (this process's objects frozen first)."""
    gc.collect()
    gc.freeze()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:  # (the child never returns into the benchmark, whatever its reads raise)
            before = _private_kb()
            for i in range(len(entries)):
                entry = entries[i]
                resolve(entry, ROOT), entry.label
                if with_files:
                    files[i]
            os.write(write, str(_private_kb() - before).encode())
        except BaseException:  # (said here: os._exit below would end the child before Python printed it)
            traceback.print_exc()
        finally:
            os._exit(0)
    os.close(write)
    said = os.read(read, 64)
    os.close(read)
    os.waitpid(pid, 0)
    gc.unfreeze()
    if not said:
        raise SystemExit("list_memory: the forked reader failed before it measured (its error is above)")
    return int(said) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lines", type=int, nargs="+", default=[240_000])
    args = ap.parse_args()
    print(f"CPU: {cpu_name()}")
    with tempfile.TemporaryDirectory() as tmp:
        for lines in args.lines:
            list_file = Path(tmp, f"train_{lines}.txt")
            _write_list(list_file, lines)
            measured = {}
            for variant in ("list", "packed"):
                entries, files = _held(variant, list_file)
                measured[variant] = (_size_mib((entries, files)), _worker_growth_mib(entries, files, False),
                                     _worker_growth_mib(entries, files, True))
                del entries, files
            print(f"{lines} lines: held in the run's process (list and cache names) MiB; a worker's growth reading "
                  "every entry, then every entry and its cache file name, MiB")
            for variant, values in measured.items():
                ratios = " ".join(f"{v / ref:.3f}x" for v, ref in zip(values, measured["list"]))
                print(f"  {variant:7s} " + " ".join(f"{v:8.1f}" for v in values) + f"   ({ratios} of list)")


if __name__ == "__main__":
    main()
