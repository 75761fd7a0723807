"""What a loader worker spends on one pre-training item, with and without what lets its decoder skip work.

Dataset items of ``mme bench pipeline``'s generated video (340x256 H.264, 300 frames, one keyframe, B-frames), 16 x
224² clips at stride 4, CPU time of one thread, the variants made in turns in one process so that they share the
machine's state. Two settings:

- ``repeat``: one file listed ``--items`` times, as a small dataset whose frame index a worker keeps: the decoder
  drops the proven frames a read does not return (``mme.data.pyav_reader.SKIP_NONREF_CODECS``) or not (emptied).
- ``first``: ``--items`` copies of the file, each read once, as on a Kinetics-size list where every read is a
  file's first in its worker: without an index folder, and with one filled by ``mme check --index-dir``.

    python benchmarks/worker_items.py repeat --items 90
    python benchmarks/worker_items.py first --items 40

Prints the median CPU ms per item of each variant, the paired median differences, and the CPU it ran on.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import torch

from mme.data import pyav_reader
from mme.data.bench import generated_video
from mme.data.lists import check_lists
from mme.motion.cache import cache_file
from mme.motion.extract import extract_cache
from mme.train.bench_pipeline import _config
from mme.train.pretrain import pretrain_dataset
from mme.utils import cpu_name, keep_freed_memory


def _datasets(list_file: Path, cache: Path, run: Path, **extra: str) -> dict:
    overrides = [f"data.{k}={v}" for k, v in extra.items()]
    return {target: pretrain_dataset(_config(list_file, 224, 16, 4, target, cache, run, *overrides))
            for target in ("pixel", "mme cached")}


def _time_items(variants: dict, items: int) -> dict[str, list[float]]:
    """``variants``: name -> (dataset, before) where ``before()`` sets the variant up; item k of each in turn."""
    ms = {name: [] for name in variants}
    for k in range(items):
        for name, (dataset, before) in variants.items():
            before()
            t0 = time.process_time()
            dataset[(0, k)]
            ms[name].append(1000 * (time.process_time() - t0))
    return ms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("setting", choices=("repeat", "first"))
    ap.add_argument("--items", type=int, default=40)
    args = ap.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    keep_freed_memory()  # as in a loader worker
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = generated_video(tmp)
        one = tmp / "one.txt"
        one.write_text(f"{src}\n")
        extract_cache(str(one), str(tmp / "cache"), length=6, short_side=224)
        drops = pyav_reader.SKIP_NONREF_CODECS
        variants = {}
        if args.setting == "repeat":
            listed = tmp / "list.txt"
            listed.write_text(f"{src}\n" * (args.items + 1))
            ds = _datasets(listed, tmp / "cache", tmp / "run")
            for d in ds.values():
                d[(0, args.items)]  # the first read of the file proves its frames up to its window
            for target, d in ds.items():
                for drop in (True, False):
                    variants[f"{target}, drop {'on' if drop else 'off'}"] = (
                        d, lambda drop=drop: setattr(pyav_reader, "SKIP_NONREF_CODECS", drops if drop else frozenset()))
        else:
            copies = [tmp / "copies" / f"{k:03d}.mp4" for k in range(args.items)]
            copies[0].parent.mkdir()
            for path in copies:
                shutil.copy(src, path)
                cached = cache_file(tmp / "cache", str(path))
                cached.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(cache_file(tmp / "cache", str(src)), cached)  # the same tracks: the same video
            listed = tmp / "list.txt"
            listed.write_text("".join(f"{p}\n" for p in copies))
            check_lists([listed], "", tmp / "check.json", index_dir=tmp / "index")
            plain = _datasets(listed, tmp / "cache", tmp / "run")
            kept = _datasets(listed, tmp / "cache", tmp / "run", index_dir=str(tmp / "index"))
            first_read = pyav_reader._pyav_index.cache_clear  # no variant starts from another's index in memory
            for target in plain:
                variants[f"{target}, index folder"] = (kept[target], first_read)
                variants[f"{target}, no folder"] = (plain[target], first_read)
        ms = _time_items(variants, args.items)
    print(f"worker_items {args.setting}: {args.items} items per variant, 16x224² at stride 4, one thread, "
          f"{cpu_name()}")
    for name, x in ms.items():
        print(f"  {name:28s} {statistics.median(x):6.1f} ms per item")
    names = list(ms)
    for a, b in zip(names[::2], names[1::2]):
        diff = statistics.median(x - y for x, y in zip(ms[a], ms[b]))
        print(f"  {a} - {b}: {diff:+.1f} ms (paired median), ratio of medians "
              f"{statistics.median(ms[a]) / statistics.median(ms[b]):.2f}")


if __name__ == "__main__":
    main()
