"""Training checkpoints and run records: one ``torch.save`` dict per save, written atomically, the last K kept;
the run folder's ``config.yaml`` and ``run.json``.

Layout (constant keys; ``mme.models.checkpoint.load_encoder`` reads ``model`` and ``config``)::

    model      MaskedAutoencoder state dict
    config     the resolved PretrainConfig as a plain dict (sections data/model/target/optim/train)
    optimizer  AdamW state dict          scaler   GradScaler state dict
    step       optimizer steps done      data     {"epoch", "batch"}: the next micro-batch to read
    rng        {"torch", "numpy", "python", "cuda"} generator states
    meta       {"mme" (its version), "git", "torch", "device", "device_name", "precision", "precision_reason",
                "world_size", "cwd" (the working folder, which the config's relative paths start from), "run_id",
                "started", "config_hash"} (the identity: mme.train.run_folder), and "config_changes":
               [{"from_step", "changes"}] when a resumption changed the config
    and the job's own: ``heads`` (pre-training: the prediction heads), ``classes`` (fine-tuning with
    ``task.classes``: the class names by id, which exports carry)

Everything is tensors and plain Python values, so it loads with ``weights_only=True``.
"""

from __future__ import annotations

import logging
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mme.config import dump_recipe
from mme.errors import CheckpointError, CheckpointUnreadable
from mme.models.checkpoint import CONFIG, checkpoint_config, safetensors_header, torch_load
from mme.utils import (
    atomic_path,
    atomic_write_texts,
    code_version,
    counted,
    cpu_name,
    json_text,
    mkl_mode,
    reading,
    removing,
    writing,
)

log = logging.getLogger(__name__)

_NAME = re.compile(r"^checkpoint-(\d+)\.pt$")
REQUIRED_KEYS = ("model", "config", "optimizer", "step", "data", "rng")


def checkpoint_path(out_dir: Path, step: int) -> Path:
    return Path(out_dir) / f"checkpoint-{step:08d}.pt"


def checkpoint_step(path: Path) -> int:
    """The step of a ``checkpoint-<step>.pt`` name, or of a kept ``checkpoint-epoch-<epoch>-<step>.pt``."""
    m = _NAME.match(path.name)
    return int(m.group(1)) if m else kept_epoch_step(path)[1]


_KEPT_NAME = re.compile(r"^checkpoint-epoch-(\d+)-(\d+)\.pt$")


def keep_of_epoch(path: Path, epoch: int, step: int) -> Path:
    """The checkpoint ``path`` of ``step``, written after ``epoch`` epochs, kept as
    ``checkpoint-epoch-<epoch>-<step>.pt`` (any earlier one of that epoch replaced), a name the rotation and
    ``--resume auto`` leave alone: a hard link where the filesystem has them (no second copy while both exist),
    else an atomic copy. A copy that cannot be written (a full disk) is a CheckpointError naming it; an earlier one
    that cannot be removed (an immutable or busy file) is a warning naming it, left beside the new one, as rotation's
    failed deletions are."""
    path = Path(path)
    kept = path.with_name(f"checkpoint-epoch-{epoch:04d}-{step:08d}.pt")
    for earlier in kept_checkpoints(path.parent):
        if kept_epoch_step(earlier)[0] == epoch:
            with removing(earlier, f"an earlier checkpoint kept of epoch {epoch}, left beside {kept.name}, which "
                                   f"is kept in its place", warn=True):
                earlier.unlink(missing_ok=True)
    with writing(kept, f"{path.name} is kept, and --resume auto keeps it as epoch {epoch}'s", CheckpointError):
        try:
            os.link(path, kept)
        except OSError:
            with atomic_path(kept, sync=True) as tmp:
                shutil.copyfile(path, tmp)
    log.info("kept the checkpoint of epoch %d as %s", epoch, kept)
    return kept


def kept_checkpoints(out_dir: Path) -> list[Path]:
    """The checkpoints ``train.keep_epochs`` kept in ``out_dir``, oldest first."""
    out_dir = Path(out_dir)
    with reading(out_dir, CheckpointUnreadable):
        if not out_dir.is_dir():
            return []
        return sorted((p for p in out_dir.iterdir() if _KEPT_NAME.match(p.name)), key=kept_epoch_step)


def kept_epoch_step(path: Path) -> tuple[int, int]:
    """(epoch, step) of a kept checkpoint's name."""
    m = _KEPT_NAME.match(Path(path).name)
    return int(m.group(1)), int(m.group(2))


def list_checkpoints(out_dir: Path, key: str = "") -> list[Path]:
    """Finished checkpoints in ``out_dir``, oldest first (temp files of an interrupted write are ignored); ``key``:
    the setting that gives ``out_dir``, said where it cannot be read (:func:`~mme.utils.reading`)."""
    out_dir = Path(out_dir)
    with reading(out_dir, CheckpointUnreadable, key):
        if not out_dir.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in out_dir.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def rotated_away(path: Path) -> str:
    """What to say of a run's checkpoint ``path`` that is not there (``checkpoint-<step>.pt``) where its folder holds
    others: of a step held under another name (``checkpoint-250.pt``), that name; of a step before the oldest held, a
    live run's rotation (which removes the oldest) may have removed it; of a later one than the newest, it is not
    written yet; of one between, none of that step was written; "" otherwise."""
    path = Path(path)
    saved = list_checkpoints(path.parent) if (m := _NAME.match(path.name)) else []
    if not saved:
        return ""
    step, held = int(m.group(1)), f"; its folder holds {counted(len(saved), 'other checkpoint')} of a run"
    if same := [p.name for p in saved if checkpoint_step(p) == step]:
        return f"{held}: that of step {step} is {same[0]}"
    if step < checkpoint_step(saved[0]):
        return (f"{held}, the newest {saved[-1].name}: a live run's rotation (train.keep_last) may have removed it; "
                "copy a checkpoint out of a live run before reading it")
    if step > checkpoint_step(saved[-1]):
        return f"{held}, the newest {saved[-1].name}, of an earlier step: this one is not written yet (or its step " \
            "is mistyped)"
    return (f"{held}, the oldest {saved[0].name}, the newest {saved[-1].name}: none of step {step} was written (its "
            "step or name may be mistyped)")


def run_checkpoints(out_dir: Path) -> list[Path]:
    """The checkpoints of a training run in ``out_dir``: the rotating ones, oldest first, then those
    ``train.keep_epochs`` kept; what makes a folder a run's."""
    return list_checkpoints(out_dir) + kept_checkpoints(out_dir)


def save_checkpoint(state: dict[str, Any], out_dir: Path, keep_last: int | None) -> Path:
    """Write ``state`` as ``checkpoint-<step>.pt`` atomically (temp file, fsync, rename), then delete all but
    the newest ``keep_last`` checkpoints; a failed deletion only warns. A write to the file that fails raises its
    own error, which torch's writer replaces by a RuntimeError of its own, without the reason ('unexpected pos A vs
    B'): an OSError (a full disk's errno), or a KeyboardInterrupt (a second Ctrl-C, SIGTERM's ``Terminated``), which
    stops the command as an interrupt. torch's own failures (no memory for a GPU tensor's copy) raise its
    RuntimeError. Nothing is written, nor removed, in an ``out_dir`` that was removed or replaced since this process
    locked it (:func:`mme.utils.check_path_held`)."""
    path = checkpoint_path(out_dir, int(state["step"]))
    with atomic_path(path, sync=True) as tmp, open(tmp, "wb") as f:
        try:
            torch.save(state, f)
        except RuntimeError as e:  # torch's writer, ending after the write to ``f`` that raised
            if isinstance(e.__context__, (OSError, KeyboardInterrupt)):
                raise e.__context__ from None
            raise
    rotate(out_dir, keep_last)
    return path


def rotate(out_dir: Path, keep_last: int | None) -> None:
    """Delete all but the newest ``keep_last`` checkpoints (None: keep all); a failed deletion only warns."""
    if keep_last:
        for old in list_checkpoints(out_dir)[:-keep_last]:
            with removing(old, f"an old checkpoint, left beside the newest {keep_last} (train.keep_last)", warn=True):
                old.unlink()


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a training checkpoint safely (``weights_only=True``); CheckpointError names the file and reason
    (mme.models.checkpoint.torch_load)."""
    path = Path(path)
    with reading(path, CheckpointUnreadable):  # (a folder on the way this user may not enter: EACCES)
        if path.is_dir() and list_checkpoints(path):
            raise CheckpointError(f"checkpoint {path}: a run's folder; resume it with train.resume=auto and "
                                  f"train.out_dir={path}, or name one of its checkpoint-*.pt")
        weights = (f"checkpoint {path}: a model's weights (as mme export writes them), not a training run's state; "
                   "train.init starts a run from weights")
        if path.is_dir():
            if checkpoint_config(path) is None:
                raise CheckpointError(f"checkpoint {path}: a folder holding no checkpoint (no checkpoint-*.pt of a "
                                      f"run, no {CONFIG} of a model's weights)")
            raise CheckpointError(weights)
        if not path.is_file():
            raise CheckpointError(f"checkpoint {path}: no such file{rotated_away(path)}")
        if safetensors_header(path) is not None:
            raise CheckpointError(weights)
    state = torch_load(path)
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path}: expected a dict, got {type(state).__name__}")
    return state


def missing_keys(state: dict[str, Any]) -> list[str]:
    """The keys of a training checkpoint that ``state`` lacks (a weights file has only 'model', or none)."""
    return [k for k in REQUIRED_KEYS if k not in state]


def latest_valid(out_dir: Path, key: str = "") -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint in ``out_dir`` (given by the setting ``key``: :func:`list_checkpoints`) that loads and
    has the training keys; damaged ones (e.g. a file truncated by a crash) are skipped with a warning. None when
    there is none. A file that cannot be opened (CheckpointUnreadable) is raised: resuming before it would set it
    aside as an abandoned branch."""
    for path in reversed(list_checkpoints(out_dir, key)):
        try:
            state = load_checkpoint(path)
        except CheckpointUnreadable:
            raise
        except CheckpointError as e:
            log.warning("skipping %s", e)
            continue
        missing = missing_keys(state)
        if missing:
            log.warning("skipping checkpoint %s: not a training checkpoint (missing %s)", path, missing)
            continue
        return path, state
    return None


def rng_state() -> dict[str, Any]:
    """The global generators' states as tensors / plain values (weights_only-loadable)."""
    np_state = np.random.get_state()
    version, internal, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": [version, list(internal), gauss],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():  # as many GPUs as this node has (dropout reseeds every step)
        for i, s in enumerate(state["cuda"][:torch.cuda.device_count()]):
            torch.cuda.set_rng_state(s, i)
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def device_name(device: torch.device) -> str:
    """The GPU's or CPU's model name."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()


def run_meta(device: torch.device, precision: str, precision_reason: str, world_size: int) -> dict[str, Any]:
    """The facts needed to reproduce or question a run, stored in run.json and in every checkpoint. ``mkl_mode``
    (:func:`mme.utils.mkl_mode`) on a CPU alone, whose steps MKL computes; first the code (:func:`code_version`)."""
    return {**code_version(), "torch": str(torch.__version__), "device": str(device),
            "device_name": device_name(device), "mkl_mode": mkl_mode() if device.type == "cpu" else None,
            "precision": precision, "precision_reason": precision_reason,
            "world_size": world_size, "cwd": os.getcwd()}


RUN_META_KEYS = ("git", "torch", "device", "precision", "world_size")
"""Keys of :func:`run_meta` that the run.json of every mme's run holds, of one before run ids too."""


CONFIG_FILE = "config.yaml"
"""The run's config as a recipe, which :func:`write_run_files` writes into its folder."""


def write_run_files(out_dir: Path, config: dict[str, Any], meta: dict[str, Any]) -> None:
    """``config.yaml`` (the resolved config as a recipe: :func:`mme.train.engine.as_recipe`) and ``run.json``
    (meta), all or none (:func:`mme.utils.atomic_write_texts`): a failed write (a full disk) is an MMEError naming
    the file, both left as they were (a config.yaml without its run.json reads as a user's recipe,
    :func:`mme.train.run_folder.check_files_without_checkpoints`; a resumed run's run.json beside its old config)."""
    out_dir = Path(out_dir)
    atomic_write_texts({out_dir / "run.json": json_text(meta), out_dir / CONFIG_FILE: dump_recipe(config)})
