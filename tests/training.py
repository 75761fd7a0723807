"""Tiny training runs for the tests: any recipe shrunk to seconds on a CPU (the data come from the ``synth``
fixture of conftest.py)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any, NamedTuple

from mme.config import layered, load_config
from mme.train.config import PretrainConfig
from mme.train.loop import TrainResult
from mme.train.pretrain import pretrain

# A tiny version of any recipe: 64² clips of 8 frames (4x4x4 = 64 tokens), a 2-block 64-d ViT, batch 4, at lr
# 1e-3 (above the tiny_cpu recipes' 3e-4) so that runs of 20-40 steps show their losses falling.
TINY = ["optim.base_lr=1e-3", "model.img_size=64", "data.img_size=64", "model.num_frames=8", "data.num_frames=8",
        "data.stride=2", "model.depth=2", "model.embed_dim=64", "model.num_heads=2", "model.decoder_dim=32",
        "model.decoder_heads=2", "model.head_hidden=64", "data.num_workers=0", "train.batch_size=4",
        "optim.warmup_steps=5", "train.ckpt_every=1000", "train.device=cpu"]  # CUDA cases set train.device=cuda
# Tests of an exact property (resume, accumulation, DDP equivalence) pin fp32 whatever 'auto' resolves to here.
FP32 = "train.precision=fp32"


@contextlib.contextmanager
def on_one_core() -> Iterator[None]:
    """This process on one of its cores for the block (``taskset -c 0`` within a test), its mask given back after."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(before)})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def tiny(*overrides: str) -> list[str]:
    """:data:`TINY` and ``overrides``, a key given again replacing the earlier one (mme refuses a key given twice
    in one list): each test's settings over the tiny ones."""
    return layered(*([o] for o in (*TINY, *overrides)))


def tiny_config(recipe: str, data: list[str], out, *extra: str) -> PretrainConfig:
    return load_config(PretrainConfig, recipe, tiny(*data, f"train.out_dir={out}", *extra))


def run(recipe: str, data: list[str], out, *extra: str) -> TrainResult:
    return pretrain(tiny_config(recipe, data, out, *extra))


def report_json(**fields) -> str:
    """The text of a file that reads as a test report of fine-tuning's (``mme.eval.testing.read_report``)."""
    from mme.eval.testing import REPORT_KEYS
    return json.dumps({**dict.fromkeys(REPORT_KEYS, 0), **fields})


def run_json(**fields) -> str:
    """The text of a file that reads as the run.json of a run of mme's (``mme.train.checkpoint.RUN_META_KEYS``)."""
    from mme.train.checkpoint import RUN_META_KEYS
    return json.dumps({**dict.fromkeys(RUN_META_KEYS, ""), **fields})


IN_ONE_PROCESS = """\
import json, sys
from mme import cli
def before(i): pass
def after(i): return None
{setup}
for i, argv in enumerate(json.loads(sys.argv[1])):
    before(i)
    code = cli.main(argv)
    print(f"\\n@@ exit {{code}} {{json.dumps(after(i))}} @@", file=sys.stderr, flush=True)
"""


class InOneProcess(NamedTuple):
    ran: list[tuple[int | None, str, Any]]
    """Each command's exit status (None: the process ended before it did), its stderr and what ``after`` gave."""
    returncode: int
    stdout: str
    stderr: str
    """The process's, each command's followed by a line ``@@ exit STATUS AFTER @@``."""


def in_one_process(commands: list[list[str]], setup: str = "", timeout: float = 300, **popen) -> InOneProcess:
    """``mme`` commands (``cli.main(argv)``) one after the other in one new Python process: torch's import is paid
    once. ``setup`` is Python run before the first, which may define ``before(i)``, run before the ``i``-th command
    (a resource limit of its own), and ``after(i)``, whose value (JSON) is returned with its status; ``popen``:
    :func:`subprocess.run`'s arguments (``env``). Its stdout is a pipe. A command that ends the
    process (a SystemExit, as the CLI's would end) has the status None and the process's last stderr, as have the
    commands after it."""
    proc = subprocess.run([sys.executable, "-c", IN_ONE_PROCESS.format(setup=setup), json.dumps(commands)],
                          capture_output=True, text=True, timeout=timeout, **popen)
    parts = re.split(r"\n@@ exit (-?\d+) (.*) @@\n", proc.stderr)  # [stderr, status, after, stderr, ..., the rest]
    ran = [(int(code), err, json.loads(after)) for err, code, after in zip(parts[:-1:3], parts[1::3], parts[2::3])]
    assert len(ran) <= len(commands), f"more exit lines than commands (one printed by a command?): {proc.stderr}"
    ended = f"its process ended first ({proc.returncode}): {parts[-1][-3000:]}"
    return InOneProcess(ran + [(None, ended, None)] * (len(commands) - len(ran)), proc.returncode, proc.stdout,
                        proc.stderr)
