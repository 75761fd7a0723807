"""A run's output folder, owned by one run at a time.

- **One job at a time**: rank 0 holds an ``fcntl`` lock on ``<out_dir>/.lock`` for the whole run
  (:func:`mme.utils.lock_folder`; ``unlock_folder`` releases it); a second job on the folder is refused, naming the
  holder's PID and host (on a file system without ``flock``, the folder is used unlocked, with a warning). The lock
  holds only while its file is there: before each write or removal by path the run checks that the folder's
  ``.lock`` is still the one it holds (:func:`mme.utils.check_path_held`, which
  ``atomic_path``, ``writing`` and ``removing`` call), and stops where the folder was removed
  and made again by another job.
- **One run per folder**: ``run.json`` records the run's identity (``run_id``, start time, seed, config hash) and
  every checkpoint carries the ``run_id``. A fresh run refuses a folder that holds another run's checkpoints: it
  offers ``train.resume=auto`` or another folder, and ``train.overwrite=true`` clears the other run's files first.
  So checkpoint rotation, which deletes the oldest checkpoints of the folder, only ever deletes the run's own. A
  folder without checkpoints is another run's where its logs or test reports show that run wrote some (removed
  since), and refused likewise; one holding files of the names a run writes that no run wrote (a user's recipe kept
  as ``config.yaml``) is refused, with ``train.overwrite`` too.
- **One branch**: a run resumed from an earlier checkpoint of its folder moves the later ones aside
  (``abandoned-<time>/``) when it writes its first checkpoint, so that neither ``train.resume=auto`` nor rotation
  mixes the two branches.
- **No stale temporaries**: the temporary files of writes killed mid-way (``.<name>.tmp<pid>...``) are removed
  when a run takes the folder, those of live writers kept (their lock tells one in another PID namespace).
"""

from __future__ import annotations

import collections
import contextlib
import csv
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Collection
from pathlib import Path
from typing import Any

import yaml

from mme.errors import CheckpointError, ConfigError, MMEError, VideoError
from mme.eval.testing import SPLITS, drop_report, read_report, report_files
from mme.models.checkpoint import recorded_cwd, torch_load, weight_files
from mme.motion.cache import source_identity
from mme.train import checkpoint as ckpt
from mme.train.metrics import iter_csv_records, iter_records
from mme.utils import (
    atomic_path,
    counted,
    folder_replaced,
    fs_name,
    lock_folder,
    plural,
    read_json_object,
    read_text,
    remove_stale_temps_in,
    removing,
    writing,
)

log = logging.getLogger(__name__)

RUN_FILES = (ckpt.CONFIG_FILE, "run.json", "metrics.jsonl", "metrics.csv", "loss.png", "tb")
"""What a run writes besides its checkpoints, rotating and kept of an epoch, and its fine-tuning's test reports
(``train.overwrite`` removes these, the reports where they read as reports, and nothing else)."""
LOGS = ("metrics.jsonl", "metrics.csv")
"""The logs a resumed run cuts back to its step (:func:`mme.train.metrics.build_logger`)."""


def _left_copy(out_dir: Path, name: str) -> Path:
    """A rewind's copy of the log ``name`` (:func:`keep_logs_of_rewind`)."""
    return out_dir / f".{name}.left"


def take(out_dir: str | Path, option: str = "train.out_dir") -> Path:
    """Create the folder, prove it writable now (not at the first checkpoint hours later) and lock it for this
    process (rank 0's, :func:`mme.train.distributed.on_main`); removes stale temporary files
    (:func:`mme.utils.remove_stale_temps_in`: not a live writer's, one it cannot remove warned about and left).
    ConfigError naming ``option`` (the setting that chose the folder) when it is not writable or locked. A folder it
    makes is removed at the job's end where the job wrote nothing there (refused by its data, its init, its model)."""
    path = Path(out_dir)
    if not lock_folder(path, option, unmade_if_unused=True):  # (a second run of this process in its folder: its lock)
        return path
    remove_stale_temps_in(path)
    return path


def identity(config: dict[str, Any], resumed: dict | None) -> dict[str, Any]:
    """The run's identity: the resumed checkpoint's (a resumed run is the same run, with the config changes of its
    earlier resumptions), else a new one. ``init_fingerprint``: that of the file or folder a run begins from
    (``train.init``; :func:`init_fingerprint`), by which a resume tells that file where the
    path the run recorded no longer finds it (:func:`mme.train.engine.resumed_init`)."""
    if resumed is not None and "run_id" in resumed.get("meta", {}):
        return {k: resumed["meta"][k] for k in ("run_id", "started", "config_hash", "config_changes",
                                                "init_fingerprint") if k in resumed["meta"]}
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:12]
    init = config.get("train", {}).get("init")
    fingerprint = init_fingerprint(init) if init else None
    return {"run_id": uuid.uuid4().hex[:12], "started": time.strftime("%Y-%m-%d %H:%M:%S"), "config_hash": digest,
            **({"init_fingerprint": fingerprint} if fingerprint else {})}


def init_fingerprint(path: str) -> str | None:
    """The fingerprint of the ``train.init`` at ``path`` (:func:`mme.motion.cache.source_identity`'s, unchanged by
    a copy): a file's, a checkpoint folder's (an export, a Hugging Face folder) of the files its weights are read
    from (:func:`mme.models.checkpoint.weight_files`, joined by commas); None where there is none (no such path, a
    folder without such files, or one whose files cannot be read: a shard its index lists missing, a damaged index)."""
    with contextlib.suppress(OSError, CheckpointError, VideoError):  # (VideoError: a file that is no regular file)
        files = [path] if os.path.isfile(path) else weight_files(Path(path))[1] if os.path.isdir(path) else []
        return ",".join(source_identity(f)["fingerprint"] for f in files) or None
    return None


def check_recipe_of_run(recipe: Path | None, out_dir: str, resume: str | None, given: Collection[str]) -> None:
    """Refuse to resume (``resume``: ``train.resume``) with a run's own config.yaml (``recipe``, the ``--config``
    file, beside that run's checkpoints) whose ``train.out_dir``, not given on the command line (``given``: the
    keys the overrides set), is another folder: the run's folder was renamed or copied (or the run is resumed from
    another working folder than it began in, named), and the resume would look in the old folder (a fresh run from
    step 0 there, where it finds none) while the checkpoints lie beside the recipe.
    The recipe is the run's own where it bears the name the run writes (:data:`mme.train.checkpoint.CONFIG_FILE`) and
    the folder's newest checkpoint records its ``train.out_dir``. A run's config.yaml as a recipe of a fresh run, or
    with the folder given, is the user's choice, as is any other recipe kept beside a run's checkpoints."""
    if not resume or recipe is None or "train.out_dir" in given or Path(recipe).name != ckpt.CONFIG_FILE:
        return
    folder = Path(recipe).parent
    found = ckpt.run_checkpoints(folder)
    if not found or (os.path.isdir(out_dir) and os.path.samefile(folder, out_dir)):
        return
    newest = max(found, key=ckpt.checkpoint_step)
    recorded, cwd = _checkpoint_folders(newest)
    if recorded != os.path.normpath(out_dir):
        return
    run, held = _folder_run(folder), ckpt.list_checkpoints(out_dir)
    elsewhere = cwd and not os.path.isabs(out_dir) and os.path.realpath(cwd) != os.path.realpath(os.getcwd())
    raise ConfigError(f"--config {recipe} is the config of the run in {folder}" + (f" ({run})" if run else "")
                      + f", up to step {ckpt.checkpoint_step(newest)}, but its train.out_dir is {out_dir}"
                      f"{'' if held else ', which holds no checkpoint'} (the folder was renamed or copied"
                      f"{f', or the run began in another working folder, {cwd}' if elsewhere else ''}): give "
                      f"train.out_dir={folder} to continue that run, or train.out_dir={out_dir} to "
                      f"{'resume there' if held else 'start a new run there'}")


def check_owner(out_dir: Path, resumed: dict | None, overwrite: bool, init: str | None = None) -> list[Path]:
    """Refuse a folder that holds another run's checkpoints: for a fresh run any, for a resumed one (``resumed``:
    its checkpoint) those of a run other than the resumed one. With ``overwrite`` they are returned instead, for
    :func:`clear` once the new run has passed every check (a run refused for its data or its init kept them),
    unless the run starts from one of them (``init``: ``train.init``), which it would delete. A folder holding no
    checkpoints is judged by the files it holds (:func:`check_files_without_checkpoints`)."""
    rotating = ckpt.list_checkpoints(out_dir)
    found = ckpt.run_checkpoints(out_dir)
    if not found:
        check_files_without_checkpoints(out_dir, resumed, overwrite)
        return []
    other = _folder_run(out_dir)
    if resumed is not None and other in (None, run_of(resumed)):
        return []
    if overwrite:
        if init and Path(init).resolve() in {p.resolve() for p in found}:
            raise ConfigError(f"train.init {init} is one of the checkpoints in {out_dir} that train.overwrite "
                              "removes: move it out of the folder, or choose another train.out_dir")
        return found
    newest = max(found, key=ckpt.checkpoint_step)
    how = ("train.resume=auto (mme pretrain/finetune ... --resume auto)" if rotating else
           f"train.resume={newest} (kept of an epoch: --resume auto takes the rotating checkpoints only)")
    raise ConfigError(
        f"train.out_dir {str(out_dir)!r} holds {counted(len(found), 'checkpoint')} of another run"
        + (f" ({other})" if other else "") + f", up to step {ckpt.checkpoint_step(newest)}: continue that run "
        f"with {how}, choose another train.out_dir, or clear it with train.overwrite=true")


def check_files_without_checkpoints(out_dir: Path, resumed: dict | None, overwrite: bool) -> None:
    """A folder holding no checkpoints is another's where it holds what a run writes there (:data:`RUN_FILES`, test
    reports) of a run that went past its first checkpoint (:func:`_checkpointed`: a finished run whose checkpoints
    were removed to save space, its logs and reports kept), other than the resumed run: refused unless
    ``overwrite``, which then replaces them. Files of those names where no run of mme wrote them, the folder holding
    no run.json of a run (a recipe kept as config.yaml and run from there, another tool's metrics.csv or tb/), are a
    user's: refused with ``overwrite`` too (it clears another run's files, not a user's). A run stopped before its
    first checkpoint leaves its run.json and no more, and is started again there."""
    held = [name for name in RUN_FILES if os.path.lexists(out_dir / name)]
    recorded = read_json_object(out_dir / "run.json", ckpt.RUN_META_KEYS)  # (without a run_id: an earlier mme's)
    if held and recorded is None:
        raise ConfigError(f"train.out_dir {str(out_dir)!r} holds {', '.join(held)}, which no run of mme wrote ("
                          + ("its run.json records no run" if "run.json" in held else "it holds no run.json of a run")
                          + f"), where this run writes its own: move {plural(len(held), 'it', 'them')}"
                          + (f" (a recipe kept as {ckpt.CONFIG_FILE}: then give --config its new path)"
                             if ckpt.CONFIG_FILE in held else "") + ", or choose another train.out_dir")
    if recorded is None:  # (nothing of a run: at most the reports of an eval_only test, which a fresh run drops)
        return
    other = recorded.get("run_id")
    if overwrite or (resumed is not None and other in (None, run_of(resumed))):
        return
    shown = _checkpointed(out_dir)
    if shown:
        raise ConfigError(f"train.out_dir {str(out_dir)!r} holds the files of another run"
                          + (f" ({other})" if other else "") + f", whose checkpoints were removed ({shown}): choose "
                          "another train.out_dir, or clear it with train.overwrite=true")


def _checkpointed(out_dir: Path) -> str | None:
    """What shows that the run whose files ``out_dir`` holds wrote checkpoints: a test report of mme's (written at a
    run's end, after its last checkpoint), or logs past the first checkpoint step after their first step, a multiple
    of the ``train.ckpt_every`` of its config.yaml (a run whose checkpoint is not written stops there; a run resumed
    from another folder logs from its checkpoint's step on). None where nothing does: a run stopped before its first
    checkpoint, or one whose one checkpoint was its last."""
    reports = [name for split in SPLITS if read_report(out_dir / (name := report_files(split)[0])) is not None]
    if reports:
        return f"its test {plural(len(reports), 'report')} {', '.join(reports)}"
    every = _ckpt_every(out_dir)
    if every is None or not (steps := _logged_steps(out_dir)):
        return None
    first, last = min(steps), max(steps)
    if last > (saved := -(-first // every) * every):
        return f"its logs reach step {last}, past its checkpoint of step {saved}"
    return None


def _ckpt_every(out_dir: Path) -> int | None:
    """The ``train.ckpt_every`` of the run whose config.yaml ``out_dir`` holds (None where it cannot be read)."""
    with contextlib.suppress(OSError, ValueError, yaml.YAMLError, AttributeError, TypeError):
        every = yaml.safe_load(read_text(out_dir / ckpt.CONFIG_FILE)).get("train").get("ckpt_every")
        return every if isinstance(every, int) and every > 0 else None
    return None


def _logged_steps(out_dir: Path) -> list[int]:
    """The first and last steps of each of the logs in ``out_dir`` (:data:`LOGS`; none: []), each read a record at a
    time, a long run's log being hundreds of MB."""
    steps = []
    for name, read in zip(LOGS, (iter_records, iter_csv_records)):
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError, csv.Error):
            records = read(out_dir / name)
            steps += [int(r["step"]) for r in (next(records, None), *collections.deque(records, 1)) if r is not None]
    return steps


def clear(out_dir: Path, checkpoints: list[Path], fresh: bool) -> None:
    """``train.overwrite``: remove another run's ``checkpoints`` (:func:`check_owner`) and its logs; and for a
    ``fresh`` run, the test reports an earlier run left without checkpoints (they would read as this run's, and
    name its checkpoint's path) and a rewind's copy of its logs (:func:`keep_logs_of_rewind`). A file that cannot
    be removed (a read-only folder, an immutable or busy file) is an MMEError naming it and the reason
    (:func:`mme.utils.removing`), before this run writes its files."""
    whose = "a file of another run" if checkpoints else "a test report of an earlier run"
    then = (f"it is {whose} in train.out_dir {str(out_dir)!r}, where this run wrote none of its files: make it "
            "removable, or choose another train.out_dir")
    if fresh:  # a rewind's copy of the logs of another run, which a resume of this one would put back
        for name in LOGS:
            with removing(_left_copy(out_dir, name), then):
                _left_copy(out_dir, name).unlink(missing_ok=True)
    if fresh and not checkpoints:
        stale = [split for split in SPLITS if drop_report(out_dir, split, then)]
        if stale:
            log.warning("removed the %s %s of an earlier run from %s", " and ".join(stale),
                        plural(len(stale), "report"), out_dir)
    if not checkpoints:
        return
    other = _folder_run(out_dir)
    with removing(out_dir, then):
        for p in checkpoints + [out_dir / name for name in RUN_FILES]:
            shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    for split in SPLITS:
        drop_report(out_dir, split, then)
    log.warning("train.overwrite: removed the %d checkpoints and the logs of run %s from %s", len(checkpoints),
                other or "(unknown)", out_dir)


def check_report_names(out_dir: Path, splits: list[str]) -> None:
    """A run that will write the reports of ``splits`` into ``out_dir``: a file there of a report's name that is no
    report (a user's own ``test.json``) is a ConfigError naming it, before any work (the report would replace it)."""
    for split in splits:
        path = out_dir / report_files(split)[0]
        if path.exists() and read_report(path) is None:
            raise ConfigError(f"train.out_dir {str(out_dir)!r} holds {path.name}, which is no test report of mme's, "
                              f"where this run writes its {split} report: move it, or choose another train.out_dir")


def check_tested(out_dir: Path, checkpoint: str | Path) -> None:
    """``task.eval_only`` writes its reports into ``out_dir``: refuse a folder that holds the checkpoints of a run
    other than the one ``checkpoint`` is of, whose reports this test would replace. The run is the checkpoint's
    recorded one where both record theirs; else (an export, an original file) the checkpoint must lie in the folder."""
    found = ckpt.run_checkpoints(out_dir)
    if not found:
        return
    other, its = _folder_run(out_dir), _checkpoint_run(Path(checkpoint))
    known = bool(other and its)
    if not (other == its if known else Path(checkpoint).resolve().is_relative_to(out_dir.resolve())):
        whose = f"another run ({other})" if known else "a run this checkpoint cannot be matched to"
        raise ConfigError(f"task.eval_only: train.out_dir {str(out_dir)!r} holds "
                          f"{counted(len(found), 'checkpoint')} of {whose}, whose val.json / test.json this test of "
                          f"{checkpoint} would replace: choose another train.out_dir")


def _later(out_dir: Path, resumed: int) -> list[Path]:
    """The checkpoints of ``out_dir``, rotating and kept, after step ``resumed``."""
    return [p for p in ckpt.run_checkpoints(out_dir)
            if ckpt.checkpoint_step(p) > resumed]


def keep_logs_of_rewind(out_dir: Path, resumed: int) -> None:
    """Before a run resumed at step ``resumed`` cuts its logs back to that step. A copy left by an earlier rewind
    (killed before its first checkpoint, which would have set it aside) holds the logs of the folder's checkpoints,
    its logs only the steps that rewind made: it is put back first. Then, where the folder holds later checkpoints
    (a rewind, :func:`set_aside_after`), a copy of the logs as they are, for the branch it leaves (set aside with its
    checkpoints), or to put back where the rewind ends before it has written a checkpoint
    (:func:`restore_logs_of_rewind`). A copy that cannot be written (a full disk) is an MMEError naming it, before
    the logs are cut."""
    restore_logs_of_rewind(out_dir)
    if not _later(out_dir, resumed):
        return
    for name in LOGS:
        if (out_dir / name).is_file():
            left = _left_copy(out_dir, name)
            with writing(left, f"the copy of {name} kept for the branch this rewind leaves; nothing is changed"):
                with atomic_path(left) as tmp:
                    shutil.copyfile(out_dir / name, tmp)


def restore_logs_of_rewind(out_dir: Path) -> None:
    """The logs as :func:`keep_logs_of_rewind` found them, where a rewind ends before its first checkpoint (an error,
    a checkpoint it could not write or set aside, Ctrl-C, the end of its steps): the folder's logs are then again
    those of its checkpoints; nothing where the folder was replaced since (:func:`mme.utils.folder_replaced`)."""
    if folder_replaced(out_dir):
        return
    for name in LOGS:
        left = _left_copy(out_dir, name)
        if left.is_file():
            os.replace(left, out_dir / name)


def set_aside_after(out_dir: Path, resumed: int) -> None:
    """Before a run resumed at step ``resumed`` writes its first checkpoint: the checkpoints of the folder after
    that step, rotating and kept ones, are those of a branch it left, resumed from an earlier checkpoint (a
    rewind); they go to ``abandoned-<time>/``, with a warning. Kept, they were what
    ``train.resume=auto`` took next, and rotation deleted the new branch's checkpoints before them. Done at the new
    branch's first checkpoint, not at its start: a rewind that fails before it leaves the folder as it was. A
    checkpoint that cannot be moved (a read-only folder, an immutable or busy file) is an MMEError naming it and the
    reason, those moved before it put back: else ``train.resume=auto`` took the newest of the branch left."""
    later = _later(out_dir, resumed)
    if not later:
        return
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside = next(p for n in range(1000) if not (p := out_dir / f"abandoned-{stamp}{f'-{n}' if n else ''}").exists())
    n = len(later)
    them = plural(n, "it", "them")
    then = (f"the {counted(n, 'checkpoint')} after step {resumed} in {out_dir} {plural(n, 'is', 'are')} of "
            f"a branch this run left (it resumed from step {resumed}), and {plural(n, 'stays', 'stay')} there; this "
            f"run wrote no checkpoint: make {them} movable, or move {them} out of the folder, then run this command "
            f"again")
    with removing(aside, then, done="made"):
        aside.mkdir()
    moved: list[Path] = []
    try:
        for p in later:
            with removing(p, then, done=f"moved to {aside}"):
                p.rename(aside / p.name)
            moved.append(p)
    except MMEError:
        for p in moved:
            (aside / p.name).rename(p)
        aside.rmdir()
        raise
    for name in LOGS:  # the branch's logs up to its last step (keep_logs_of_rewind's copies)
        with contextlib.suppress(FileNotFoundError):
            os.replace(_left_copy(out_dir, name), aside / name)
    log.warning("this run resumed at step %d: the %s of this folder after it (up to step %d) %s to a branch it "
                "left (it resumed from an earlier checkpoint); moved to %s", resumed, counted(n, "checkpoint"),
                max(map(ckpt.checkpoint_step, later)), plural(n, "belongs", "belong"), aside)


def _checkpoint_run(path: Path) -> str | None:
    """The run_id a training checkpoint of mme records (None for a folder, another file, or one it cannot read),
    read from a memory map: not the GBs of its weights and optimizer state."""
    if not path.is_file():
        return None
    try:
        state = torch_load(path, mmap=True)
    except CheckpointError:  # not one of ours: judged by where it lies
        return None
    return run_of(state)


def _checkpoint_folders(path: Path) -> tuple[str | None, str | None]:
    """The ``train.out_dir`` a training checkpoint of mme records, normalised, and the run's working folder (``cwd``
    of its meta), each None for one it cannot read, or that records none, read from a memory map as
    :func:`_checkpoint_run` reads."""
    try:
        state = torch_load(path, mmap=True)
    except CheckpointError:
        return None, None
    config = state.get("config") if isinstance(state, dict) else None
    out_dir = config.get("train", {}).get("out_dir") if isinstance(config, dict) else None
    return os.path.normpath(fs_name(out_dir)) if isinstance(out_dir, str) else None, recorded_cwd(state)


def run_of(state: Any) -> str | None:
    """The run_id a training checkpoint's ``state`` records (None where it records none: an earlier mme's, or not
    one of ours)."""
    meta = state.get("meta") if isinstance(state, dict) else None
    return meta.get("run_id") if isinstance(meta, dict) else None


def _folder_run(out_dir: Path) -> str | None:
    """The run_id recorded in the folder's ``run.json`` (None when there is none or it is unreadable)."""
    try:
        return json.loads(read_text(out_dir / "run.json")).get("run_id")
    except (OSError, ValueError, AttributeError):
        return None
