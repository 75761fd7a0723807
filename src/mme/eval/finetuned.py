"""Testing fine-tuned classifiers, and ``mme finetune``: fine-tuning (mme.train.finetune), then multi-view testing.

    mme finetune --config finetune_tiny_cpu                    # train, then test on task.val_list / task.test_list
    mme finetune --config finetune_ucf101 task.eval_only=true train.init=FINETUNED.pt   # test a classifier only

While training, ``task.eval_every`` adds the single-view val top-1 to the logged metrics; at the end, the val and
test lists are tested with ``data.test_clips`` x ``data.test_crops`` views (softmax-averaged), sharded over ranks,
and each report is written to ``train.out_dir`` (``<split>.json`` and a confusion matrix PNG).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Collection
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from mme.config import given_in, load_config, with_paths_as
from mme.data.dataset import ClassificationDataset, DataConfig, list_identity
from mme.errors import ConfigError, DataError, Interrupted, OutOfMemory
from mme.eval.testing import (
    SPLITS,
    drop_report,
    merge_predictions,
    multiview_predict,
    multiview_report,
    read_report,
    report_files,
    save_report,
    short_videos,
    trivial_top5,
    warn_short,
)
from mme.models.checkpoint import Checkpoint
from mme.models.classifier import VideoClassifier
from mme.train import distributed as dist
from mme.train import engine, loop, run_folder
from mme.train.config import FinetuneConfig, clips_for, ignored_value, say_ignored, tubelet_ignored
from mme.train.engine import Run
from mme.train.finetune import (
    TrainingList,
    check_test_lists,
    class_names,
    describe,
    list_test_set,
    setup,
    warn_of_misnamed_classes,
)
from mme.train.precision import choose_precision
from mme.utils import code_version, counted, fs_name, keys_as_flags, said_as, utf8_abspath

log = logging.getLogger(__name__)


def _validation(cfg: FinetuneConfig):
    """``task.eval_every``: the single-view val top-1 every that many steps, added to the step's metrics."""
    if not (cfg.task.val_list and cfg.task.eval_every):
        return None
    val = list_test_set(cfg, cfg.task.val_list, 1, 1)

    def after_step(run: Run, metrics: dict) -> bool:
        if run.step % cfg.task.eval_every:
            return False
        try:
            metrics["val_top1_1view"] = evaluate(run.model, val, cfg, run.device, run.precision)["top1"]
        except DataError as e:  # (on every rank: the reports are joined) val storage gone: training goes on
            log.warning("periodic validation at step %d skipped: %s", run.step, e)
        return True  # logged at this step, whatever train.log_every says
    return after_step


def evaluate(model: nn.Module, dataset: ClassificationDataset, cfg: FinetuneConfig, device: torch.device,
             precision: str, names: list[str] | None = None, name: str | None = None) -> dict[str, Any]:
    """Multi-view test of ``model`` on ``dataset``, sharded over ranks (video i on rank i % world); ``name``: the
    split, whose progress rank 0 shows, and whose videos shorter than a clip spans it warns about (every rank's
    reads counted: :func:`~mme.eval.testing.warn_short`). The report's ``short_videos``: how many there are."""
    rank, world = dist.get_rank(), dist.get_world_size()
    # a rank's share that fails (a loader worker killed) stops every rank, saying why; its loader's batch is
    # task.eval_batch_size, which the advice of its workers out of memory names (not train.batch_size)
    with dist.agreed(), keys_as_flags({"train.batch_size": said_as("task.eval_batch_size")}):
        pred = multiview_predict(model, dataset, indices=range(rank, len(dataset), world),
                                 batch_size=cfg.task.eval_batch_size, num_workers=cfg.data.num_workers, device=device,
                                 precision=precision, progress=dist.is_main() and bool(name), desc=name or "val")
    parts = dist.all_gather_objects((pred, dataset.short_videos()))
    report = multiview_report(merge_predictions([p for p, _ in parts]), dataset, names)
    short = short_videos([s for _, s in parts])
    if name:
        warn_short(dataset, name, "predictions of frozen frames", short)
    return {**report, "short_videos": short[0]}


def _final_tests(model: nn.Module, cfg: FinetuneConfig, device: torch.device, precision: str,
                 names: list[str] | None, checkpoint: str | Path | None,
                 trained: int | None = None) -> dict[str, dict]:
    """The multi-view reports of the val and test lists (those set), written to ``train.out_dir`` with what was
    tested: the ``checkpoint`` holding ``model``, the list, its clips and views, the precision, and ``trained``
    (the distinct labels of the training list, counted at set-up; None for ``task.eval_only``), by which top-5 is
    judged. A list that cannot
    be tested (none of its videos decodes) is warned about and the other one still tested; DataError naming it
    once every report is written. A report that cannot be written (a full disk) is an MMEError naming it, after its
    figures are logged, saying that the checkpoint is kept and how to test it again; one of an earlier test that
    cannot be removed likewise."""
    reports, untested = {}, {}
    dist.on_main(_drop_reports_of_others, Path(cfg.train.out_dir), checkpoint)
    for name, list_file in cfg.task.tested.items():
        try:
            dataset = list_test_set(cfg, list_file)
            # (the same copy on every rank, as at set-up: a node's copy replaced while the run trained would be
            # dealt from otherwise, and reported short)
            dist.check_same_inputs({f"task.{name}_list {list_file}": partial(list_identity, dataset)})
            report = evaluate(model, dataset, cfg, device, precision, names, name)
        except DataError as e:  # (on every rank: the predictions are joined first)
            untested[name] = f"task.{name}_list {list_file} could not be tested: {e}"
            log.warning("%s: %s", name, untested[name])
            then = [f"it is an earlier test's, and would read as this one's; task.{name}_list could not be tested "
                    "(above)", *_tests_again(checkpoint)]
            dist.on_main(drop_report, cfg.train.out_dir, name, "; ".join(then))
            continue
        d = dataset.cfg
        reports[name] = {**report, "trained_classes": trained,
                         "checkpoint": utf8_abspath(checkpoint) if checkpoint else None,
                         "list": utf8_abspath(list_file), "root": utf8_abspath(d.root or "."),
                         "num_frames": d.num_frames, "img_size": d.img_size, "tubelet": d.tubelet,
                         "sampling": d.sampling, "stride": d.stride if d.sampling == "stride" else None,
                         "clips": d.test_clips, "crops": d.test_crops, "orientation": d.orientation,
                         "backend": d.backend, "precision": precision, **code_version()}
        then = ["its figures are in the log above", *_tests_again(checkpoint),
                *(f"{n}.json written" for n in reports if n != name)]
        dist.on_main(save_report, reports[name], cfg.train.out_dir, name, "; ".join(then))
    if untested:  # (rank 0's writes done: torchrun stops the other ranks when one ends with an error)
        written = "".join(f"; {n}.json written" for n in reports)
        raise DataError("; ".join(untested.values()) + written)
    return reports


def _tests_again(checkpoint: str | Path | None) -> list[str]:
    """How to test ``checkpoint`` again, for a message of a test that failed to write or remove its reports."""
    return [f"{checkpoint} is kept: task.eval_only=true train.init={checkpoint} tests it again"] if checkpoint else []


def _drop_reports_of_others(out_dir: Path, checkpoint: str | Path | None) -> None:
    """Remove the val / test reports in ``out_dir`` of another checkpoint than ``checkpoint`` (an earlier test's,
    a resumed run's): beside this test's reports they would read as the same checkpoint's. One that cannot be
    removed is an MMEError naming it, before any test."""
    tested = utf8_abspath(checkpoint) if checkpoint else None  # (as the report records it, whatever the locale)
    for split in SPLITS:
        report = read_report(out_dir / report_files(split)[0])
        if report is None:
            continue
        other = report.get("checkpoint")
        if other != tested:
            then = [f"it is the {split} report of {other}, which beside this test's of {tested} would read as of the "
                    "same checkpoint: make it removable, or choose another train.out_dir", *_tests_again(checkpoint)]
            drop_report(out_dir, split, "; ".join(then))
            log.warning("removed the %s report from %s: of %s, not of %s, tested now", split, out_dir, other, tested)


def evaluate_checkpoint(cfg: FinetuneConfig) -> dict[str, dict]:
    """``task.eval_only``: multi-view test of the fine-tuned classifier in ``train.init`` (ours, or an original
    VideoMAE/MME / Hugging Face fine-tuned checkpoint) on the val and test lists, without training. Its clips are
    those it was trained on: frames, size and tubelet from its config, sampling and stride from its run's (where
    the file records that run's config) unless the command line gives either (:func:`~mme.config.given_in`):
    then both are the config's (a stride given for a run of TSN segments would not count otherwise); its frames'
    orientation likewise, unless ``data.orientation`` is given. Of a file that records no run, those taken from the
    config unless given are said in one warning (:meth:`~mme.models.checkpoint.Checkpoint.warn_no_run`)."""
    from mme.models.checkpoint import build_model

    given = given_in(cfg)
    if not cfg.train.init:
        raise ConfigError("task.eval_only needs train.init: the fine-tuned checkpoint to test")
    if not (cfg.task.val_list or cfg.task.test_list):
        raise ConfigError("task.eval_only needs task.val_list or task.test_list: the videos to test on")
    device = engine.join(cfg.train.device)[1]
    engine.check_same_config(cfg, device)
    threads = engine.set_threads(cfg, device)  # given back by engine.finish, as a run's
    precision, why = choose_precision(cfg.train.precision, device, ranks=True)
    log.info("task.eval_only: on %s, precision %s (%s), %s (%s)", device, precision, why,
             counted(threads[0], "thread"), threads[1])
    with dist.agreed():  # each rank reads the checkpoint, classes and lists (a node, its own copies)
        ck = engine.read_init(cfg.train.init, cfg.model, at_config_clip=False)  # (tested at the file's clip)
        model = build_model(ck)
        if not isinstance(model, VideoClassifier):
            raise ConfigError(f"train.init {cfg.train.init}: holds a {type(model).__name__}, not a fine-tuned "
                              "classifier; task.eval_only tests classifiers")
        names = class_names(cfg, ck.class_names, f"train.init {cfg.train.init}", given, cfg.train.init)
        if names is not None and len(names) != model.num_classes:
            raise ConfigError(f"task.classes names {len(names)} classes, {cfg.train.init} predicts "
                              f"{model.num_classes}")
        tested = check_test_lists(cfg, model.num_classes, _training_list(cfg, ck, given))[1]
        # (the lists tested alone: the training list, its labels unchecked, is only compared with them)
        warn_of_misnamed_classes(cfg, names, tested.values(), cfg.train.init if ck.class_names is not None else None)
    m = model.cfg  # the clips the classifier was trained on, not the recipe's
    ran = ck.run_config.get("data") if isinstance(ck.run_config.get("data"), dict) else {}
    # the run's sampling and stride, unless the command line gives either: they go together (a stride given for a
    # run of TSN segments would have no effect, the stride of such a run is one it never used)
    chosen = [f"data.{k}" for k in ("sampling", "stride") if f"data.{k}" in given]
    taken = {} if chosen else {k: ran[k] for k in ("sampling", "stride") if k in ran}
    turned = {} if "data.orientation" in given or "orientation" not in ran else {"orientation": ran["orientation"]}
    clip = ("num_frames", "img_size")
    arch = ("patch_size", "tubelet_size", "in_chans")
    its_clip = dataclasses.replace(cfg.model, checks_clip=False, **{k: getattr(m, k) for k in (*clip, *arch)})
    source = f"task.eval_only's train.init {cfg.train.init}"
    # its patch, tubelet (the data section's too) and channels are its weights' (no command changes them), its frames
    # and size the clips it was trained on (mme embed takes others)
    say_ignored(source, "a classifier's architecture is the file's", [
        ignored_value(f"model.{k}", getattr(cfg.model, k), getattr(m, k)) for k in arch
        if f"model.{k}" in given and getattr(cfg.model, k) != getattr(m, k)]
        + tubelet_ignored(cfg.data.tubelet, m.tubelet_size, given, "the file's"))
    # in one replace with the classifier's clip: the recipe's tubelet need not divide the clip the run was given
    tested = clips_for(cfg, its_clip, source, given, why="a classifier is tested on the clips it was trained on",
                       unsaid=clip, advice="mme embed --img-size / --num-frames runs its encoder on other clips",
                       **taken, **turned)
    # the lists' identities with the classifier's clip: the recipe's data section (its tubelet) need not fit it
    engine.check_same_inputs(tested, None, ck, names, list_test_set)
    data = tested.data
    if data.orientation != cfg.data.orientation:
        log.info("task.eval_only: frames read %s, as the run that made %s read them (data.orientation), not the "
                 "recipe's %s", data.orientation, cfg.train.init, cfg.data.orientation)
    if taken:
        whence = f"{' and '.join(f'data.{k}' for k in taken)} of the run that made {cfg.train.init}"
    elif chosen:
        whence = f"the config's, {' and '.join(chosen)} given on the command line"
    else:
        whence = f"the config's: {cfg.train.init} records no run config to take them from"
    unlike = "" if _sampling(data) == _sampling(cfg.data) else f", not the recipe's {_sampling(cfg.data)}"
    log.info("task.eval_only: clips sampled %s (%s)%s", _sampling(data), whence, unlike)
    ck.warn_no_run("task.eval_only", [(setting, option) for setting, option, unset in (
        (f"clips sampled {_sampling(data)}", "data.stride or data.sampling", not chosen),
        (f"orientation {data.orientation}", "data.orientation", "data.orientation" not in given)) if unset])
    cfg = tested
    dist.on_main(run_folder.check_tested, Path(cfg.train.out_dir), cfg.train.init)
    dist.on_main(run_folder.take, cfg.train.out_dir)
    dist.on_main(run_folder.check_report_names, Path(cfg.train.out_dir), list(cfg.task.tested))
    return _final_tests(model, cfg, device, precision, names, cfg.train.init)


def _training_list(cfg: FinetuneConfig, ck: Checkpoint, given: Collection[str]) -> TrainingList | None:
    """The training list of ``task.eval_only``'s classifier ``ck``: the config's where the command line gives
    ``data.list_file`` (the recipe's names another run's), else the list and root its run recorded, from that run's
    working folder, with what the run recorded of its content (None where ``ck`` records no list)."""
    if "data.list_file" in given:
        return TrainingList(cfg.data.list_file, cfg.data.root)
    ran = with_paths_as(fs_name, FinetuneConfig, ck.run_config).get("data")  # (recorded as UTF-8 text)
    if not isinstance(ran, dict) or not isinstance(ran.get("list_file"), str):
        return None
    folder = ck.run_folder or os.getcwd()
    return TrainingList(os.path.join(folder, ran["list_file"]), os.path.join(folder, ran.get("root") or ""),
                        ck.run_list)


def _sampling(data: DataConfig) -> str:
    return f"at stride {data.stride}" if data.sampling == "stride" else "by TSN segments"


@dataclass
class FinetuneResult:
    """What ``mme finetune`` did."""

    out_dir: Path
    step: int
    history: list[dict]
    reports: dict[str, dict]
    """Final multi-view reports by split name ('val', 'test')."""
    seconds: float
    rank: int
    """This process's rank (a process group the run started is gone when the result is returned)."""
    nonfinite_skipped: int = 0
    """Steps skipped for a non-finite loss or gradient over the whole run, resumed parts included (as
    pre-training's :attr:`~mme.train.loop.TrainResult.nonfinite_skipped`); 0 for ``task.eval_only``."""
    total_steps: int = 0
    """The run's length, more than :attr:`step` where it stopped at ``train.stop_after`` (its tests not run); 0 for
    ``task.eval_only``."""

    @property
    def finished(self) -> bool:
        """Whether the run did all its steps, and so ran its tests (``task.eval_only``: always)."""
        return self.step >= self.total_steps


def finetune(cfg: FinetuneConfig) -> FinetuneResult:
    """Set up (failing fast on bad input), print the run summary, train, then multi-view test. The keys that
    ``load_config``'s overrides set are those given on the command line (:func:`evaluate_checkpoint`,
    :func:`mme.train.finetune.setup`)."""
    t0 = time.perf_counter()
    with engine.JobScope() as job:
        if cfg.task.eval_only:
            reports = evaluate_checkpoint(cfg)
            result = FinetuneResult(Path(cfg.train.out_dir), 0, [], reports, time.perf_counter() - t0,
                                    dist.get_rank())
        else:
            run = job.run = setup(cfg, _validation)
            trained_on = len(np.unique(run.data.copies[0].entries.labels))  # (the training list as set-up read it:
            # its top-5 judged by them; read again after training, a list gone by then failed the tests)
            engine.print_summary(run, describe(run))
            try:
                trained = loop.train(run)
            except Interrupted as e:  # stopped on the last step: the tests are left, as the user asked
                if e.finished is None or not cfg.task.tested:
                    raise
                raise Interrupted(f"{e}; its tests are not run: the same command with --resume auto "
                                  "(train.resume=auto) runs them", e.exit_code, finished=e.finished) from e
            try:
                reports = _final_tests(run.model, run.cfg, run.device, run.precision,
                                       run.job.checkpoint_extra.get("classes"), trained.checkpoint,
                                       trained_on) if trained.finished else {}
            except OutOfMemory as e:  # a data stop as in training: its line names the run's last checkpoint, from
                # which --resume auto runs the tests
                loop.raise_keeping_steps(run, e)
            if not trained.finished and cfg.task.tested and dist.is_main():
                log.info("tests not run: the run stopped at train.stop_after=%d, step %d of %d; --resume auto "
                         "(train.resume=auto) with train.stop_after raised or unset continues", cfg.train.stop_after,
                         run.step, run.total_steps)
            result = FinetuneResult(run.out_dir, run.step, trained.history, reports, time.perf_counter() - t0,
                                    dist.get_rank(), trained.nonfinite_skipped, trained.total_steps)
        job.result = result
    return result


def main(recipe: str, overrides: list[str]) -> int:
    """``mme finetune --config RECIPE key=value ...``."""
    result = finetune(load_config(FinetuneConfig, recipe, overrides))
    if result.rank == 0:
        summary = {name: {"top1": r["top1"], "top5": None if trivial_top5(r) else r["top5"],
                          "mean_class_accuracy": r["mean_class_accuracy"], "views_per_video": r["views_per_video"],
                          "num_samples": r["num_samples"], "failed": len(r["failures"])}
                   for name, r in result.reports.items()}  # (top-5 null where it says nothing, as the log's --)
        print(json.dumps({"out_dir": str(result.out_dir), "step": result.step, "total_steps": result.total_steps,
                          "finished": result.finished, "nonfinite_skipped": result.nonfinite_skipped, **summary,
                          "minutes": round(result.seconds / 60, 2)}), flush=True)
    return 0
