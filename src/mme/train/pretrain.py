"""Masked pre-training: the masked autoencoder, its targets and its loss, trained by the engine (mme.train.engine).

    mme synth runs/synth && mme pretrain --config tiny_cpu_mme     # CPU smoke run
    mme pretrain --config mme_k400_released data.root=/k400 data.list_file=k400/train.txt
    torchrun --standalone --nproc_per_node=8 -m mme.cli pretrain --config mme_k400_released ...
    mme pretrain --config R train.out_dir=runs/x --resume auto   # continue exactly where it stopped

A micro-batch: the clips, their worker-made tracks (and the frames the shape features read) and their worker-made
masks (each from a generator seeded by (seed, epoch, sample index), :func:`sample_mask`) go to the device, every
target is made there, batched (mme.motion.targets.batch_targets), and the loss is the model's (masked tokens only,
one term per head).
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import json
import logging
import time
from collections.abc import Callable, Collection
from pathlib import Path

import torch

from mme import repository_doc
from mme.config import given_in, load_config
from mme.data.dataset import CacheLookup, PretrainDataset, collate, evenly_spread
from mme.data.transforms import normalize_clip
from mme.errors import CheckpointError, DataError
from mme.models.checkpoint import Checkpoint, load_state, run_model_config
from mme.models.config import DECODER_FIELDS, ENCODER_FIELDS, ModelConfig
from mme.models.convert import SeparateDecoders
from mme.models.mae import MaskedAutoencoder, gather_masked
from mme.models.masking import make_mask, masked_per_sample
from mme.models.vit import checkpoint_blocks, count_parameters
from mme.motion.cache import (
    REFUSALS,
    cache_backend,
    cache_meta_and_refusal,
    extract_flags,
    extract_flags_as_fine,
    same_frames,
)
from mme.motion.targets import TargetConfig, batch_targets, head_specs, make_target_fn, token_geometry
from mme.motion.tracks import tracks_changed
from mme.train import distributed as dist
from mme.train import engine, loop
from mme.train.config import PretrainConfig, check_masks_a_token, clips_for
from mme.train.engine import Run
from mme.train.loop import TrainResult
from mme.utils import MISSING, counted, hold_for_reading, plural, why_absent, why_absent_each

log = logging.getLogger(__name__)


def pretrain_dataset(cfg: PretrainConfig) -> PretrainDataset:
    """The run's training clips with their worker-made tracks and masks, as pre-training reads them."""
    target_fn = make_target_fn(cfg.target, cfg.model)
    return PretrainDataset(cfg.data, target_fn, target_fn.track_length, seed=cfg.train.seed,
                           track_reads=target_fn.track_reads,
                           mask_fn=functools.partial(sample_mask, cfg.model, cfg.train.seed),
                           flow_margin=target_fn.flow_margin)


def sample_mask(model: ModelConfig, seed: int, epoch: int, index: int) -> torch.Tensor:
    """The mask of sample ``index`` in ``epoch``, ``(N,)`` bool, from a generator seeded by (seed, epoch, index):
    the same on any rank, worker and resume point, drawn in the data worker (:class:`PretrainDataset`)."""
    generator = torch.Generator().manual_seed(dist.sample_seed(seed, epoch, index, "mask"))
    return make_mask(model.mask_type, 1, model.grid, model.mask_ratio, generator)[0]


def reads_cache(cfg: PretrainConfig, dataset: PretrainDataset) -> bool:
    """Whether a run of ``cfg`` reads the tracks of ``dataset`` from ``target.cache_dir``: one given, the list not
    empty, and a target of tracks (pixel, hog read none)."""
    return bool(cfg.target.cache_dir and len(dataset) and dataset.track_length)


def check_cache(cfg: PretrainConfig, dataset: PretrainDataset) -> None:
    """Refuse a ``target.cache_dir`` that is not a folder, or lacks the cache files of more of the list's videos than
    ``data.max_failure_fraction`` lets the run skip, or of all of them
    (:attr:`~mme.data.dataset.PretrainDataset.cache_lookup`, one listing of the folder, then the videos it misses on
    disk: the run would stop at the first batch, or mid-run once it had tried them; fewer, say of an extraction
    stopped part-way, are the dataset's failures; those of videos ``mme extract`` cannot make (failed, missing),
    where they alone are too many, named as such: :func:`_check_unmakeable`), or one of whose probed files that this
    mme made and can read (:attr:`~mme.data.dataset.PretrainDataset.current_probes`, read once) was extracted with
    settings the run cannot read, or turned its video otherwise
    (:meth:`~mme.data.dataset.PretrainDataset.cache_file_refusal`, advising the cache made again at its
    ``--short-side``; videos outside the probes are judged at their read), or holds too many files each read fails
    before their settings count (unreadable, made by an earlier mme, or of another version of its video:
    :func:`_check_refused_files`, judged after the settings: their advice, a resumed extraction, would be refused for
    files of other settings), as each read would at the first batch, after the run's files, model and loader workers
    are made. Tracks read from a cache are the flow ``mme extract`` used, not ``target.flow``, of the frames its
    ``--backend`` read: say so where these differ from the run's (judged on each probed file, naming the first such
    one where the cache is mixed), so that the run's config is not read as its tracks' flow, and a decoder that reads
    other frames is seen; and where its tracks are coarser than the run's targets (:func:`_coarser_cache`); and where
    its files were made with settings each that change their tracks (a mixed cache:
    :meth:`~mme.data.dataset.PretrainDataset.mixed_cache`), whose targets differ from one video to another. A target
    of no tracks (pixel, hog), as a resumed run whose config holds a cache it does not read, checks nothing of it."""
    if not reads_cache(cfg, dataset):
        return
    cache = cfg.target.cache_dir
    if not Path(cache).is_dir():
        raise DataError(f"target.cache_dir {cache!r} is not a folder; {dataset.extract_advice()}")
    lookup = dataset.cache_lookup
    lacking = len(lookup.lacking)
    if lacking == len(dataset) or dataset.too_many_failures(lacking):
        _check_unmakeable(cfg, dataset)
        # (a whole listing that lacks the rest too: none of the list's videos has one)
        every = lacking + (lookup.unsought if lookup.whole else 0) == len(dataset)
        held = "holds no track cache file for any" if every else f"lacks the track cache files of {lacking}"
        unsought = f", and {_unsought(lookup, lookup.unsought)}" if lookup.unsought and not every else ""
        fraction = f", more than data.max_failure_fraction={cfg.data.max_failure_fraction} of them"
        beyond = "" if every else _with_bad_lines(dataset, lacking) + fraction
        raise DataError(f"target.cache_dir {cache!r} {held} of the {len(dataset)} videos of {cfg.data.list_file} (the "
                        f"first: {dataset.path(lookup.lacking[0])}){unsought}{beyond}; {dataset.extract_advice()}")
    if not dataset.current_probes:  # (an unreadable or stale cache file is reported per video by the dataset)
        _check_refused_files(cfg, dataset)
        return
    meta = dataset.current_probes[0][2]
    remake = extract_flags(cfg.target, cfg.data, min(meta["work_size"]), meta["seed_stride"])  # at the cache's
    command = dataset.extract_command(remake)
    for probe in dataset.current_probes:  # as each read: before any work (the orientation is each video's)
        if (refusal := dataset.cache_file_refusal(*probe, command)) is not None:
            raise refusal
    _check_refused_files(cfg, dataset)  # after: its advice resumes with settings of files the run reads
    mixed = dataset.mixed_cache(read=True)  # (not the settings that change nothing the run reads)
    if mixed is not None:  # (its advice: the cache made again with this run's settings)
        log.warning("the track cache %s: its tracks differ from one video to another: the cache is mixed: %s; %s",
                    cfg.target.cache_dir, mixed, dataset.remake_advice())

    def judged(wrong: Callable[[dict], object]) -> tuple[str, dict, object]:
        """What the first probed file that ``wrong`` says something of is called in a warning, its meta and what
        ``wrong`` says (falsy: no file): the cache, or where it is mixed that file of it."""
        for _, found, meta in dataset.current_probes:
            if said := wrong(meta):
                return (f"the track cache {cfg.target.cache_dir}" if mixed is None else
                        f"the track cache file {found} (of the mixed cache {cfg.target.cache_dir})"), meta, said
        return "", {}, None

    what, meta, _ = judged(lambda meta: meta["flow"] != cfg.target.flow)
    if what:
        log.warning("%s was extracted with flow %s; target.flow=%s is not used (the tracks are the cache's)", what,
                    meta["flow"], cfg.target.flow)
    backend = cfg.data.backend
    what, meta, _ = judged(lambda meta: not same_frames(cache_backend(meta), backend))
    if what:
        made_with = cache_backend(meta)
        log.warning("%s was extracted with --backend %s, this run decodes with data.backend=%s: the two can read "
                    "other frames of a file (OpenCV's differ from PyAV's on variable-frame-rate, MPEG-PS/TS and some "
                    "Matroska files, %s), and then its tracks are not of its clip's frames; extract again with %s, "
                    "or set data.backend=%s", what, made_with, backend, repository_doc("data.md"),
                    extract_flags(cfg.target, cfg.data, min(meta["work_size"]), meta["seed_stride"]), made_with)
    what, _, coarser = judged(lambda meta: _coarser_cache(meta, cfg))
    if what:
        log.warning("%s is coarser than this run's targets: %s", what, coarser)


def _check_unmakeable(cfg: PretrainConfig, dataset: PretrainDataset) -> None:
    """Refuse a track cache that lacks the files of videos ``mme extract`` cannot make, where they alone are more than
    ``data.max_failure_fraction`` lets the run skip: those it failed
    (:attr:`~mme.data.dataset.PretrainDataset.extract_failed`: unreadable, too elongated for a cache, the same file
    now), naming the first and why, and every report that names them (a sharded extraction's: one per share), and
    those missing now (a download that missed some, a wrong ``data.root``: :func:`_missing_videos`), a few named, and
    those this user cannot read (in a teammate's folder of mode 0700: not missing), the first named with why,
    with their advice (:meth:`~mme.data.dataset.PretrainDataset.missing_advice`) where they are most of them: the
    ``mme extract`` that makes the files the cache lacks fails them again (its advice would loop), so they are left
    out of the list, or the fraction raised (the files of the others the cache lacks, never extracted or failed
    otherwise, a missing file since back, it does make)."""
    failed = dataset.extract_failed
    lookup = dataset.cache_lookup
    missing, unreadable, unlooked = _missing_videos(dataset, failed)
    cannot = len(failed) + len(missing) + len(unreadable)
    if not cannot or not dataset.too_many_failures(cannot):
        return
    # the listing's misses past those looked up were not: lacking where it listed every folder, else maybe there
    judged = {*failed, *missing, *unreadable}
    unsought = lookup.unsought - len(judged - set(lookup.lacking))
    others = len(set(lookup.lacking) - judged) + (unsought if lookup.whole else 0)
    unsought = 0 if lookup.whole else unsought
    said = [f"it lacks the files of {others} more too" + (f" ({unlooked} of their videos not looked up)" if unlooked
                                                           else "")] if others else []
    said += [_unsought(lookup, unsought)] if unsought else []
    untried = f"; {', and '.join(said)}: {dataset.extract_advice()}" if said else ""
    least = "at least " if unlooked and (missing or unreadable) else ""
    leave = "leave them out of the list, or raise data.max_failure_fraction"
    kinds = []
    if missing:
        named = ", ".join(map(dataset.path, missing[:3])) + (" ..." if len(missing) > 3 else "")
        kinds.append(f"{least}{len(missing)} {plural(len(missing), 'is', 'are')} missing ({named})")
    if unreadable:  # (in a folder this user may not enter: not missing, and mme extract cannot read them either)
        i, why = next(iter(unreadable.items()))
        kinds.append(f"{least}{len(unreadable)} cannot be read (the first: {dataset.path(i)}: {why})")
    if failed:
        first = next(iter(failed.values()))[0]
        reports = ", ".join(dict.fromkeys(report for _, report in failed.values()))  # (a sharded extraction's: several)
        failed_again = f"failed, and fails again (the first: {first}; each in {reports})"
        kinds.append(f"{len(failed)} mme extract {failed_again}")
    which = (f"that mme extract {failed_again}" if not missing and not unreadable
             else f"that mme extract cannot make: {', '.join(kinds)}")
    unreached = f"; those this user cannot read: let it read them, or {leave}" if unreadable else ""
    if 2 * len(missing) > cannot:  # (as a run without a cache: their advice where they are most of them)
        held = _held_missing(dataset)
        advice = dataset.missing_advice(missing, held) + unreached
        advice += f"; those mme extract failed: {leave}" if failed else ""
        untried = "" if held else untried  # (an extraction of the list as it reads would find none)
    else:
        advice = f"let this user read those it cannot, or {leave}" if unreadable else leave
        untried = "" if 2 * len(unreadable) > cannot else untried  # (an extraction as this user would read none)
    raise DataError(f"target.cache_dir {cfg.target.cache_dir!r} lacks the track cache files of {least}{cannot} of "
                    f"the {len(dataset)} videos of {cfg.data.list_file} {which}{_with_bad_lines(dataset, cannot)}, "
                    f"more than data.max_failure_fraction={cfg.data.max_failure_fraction} of them: {advice}{untried}")


def _missing_videos(dataset: PretrainDataset, failed: Collection[int]) -> tuple[list[int], dict[int, str], int]:
    """The videos of the list without a track cache file (:attr:`~mme.data.dataset.PretrainDataset.cache_lookup`,
    those not looked up too) and not ``failed`` by mme extract whose file is missing, and those this user cannot
    read (a folder on the way it may not enter: each with why), looked up on disk (:func:`why_absent`), and how many
    such videos were not looked up: as many as the run may skip and one more are, spread over them, as many as the
    lookup looks up at most (a cache that holds nothing of a 240k list costs no stat of each video)."""
    lacking = [i for i, found in enumerate(dataset.cache_lookup.files) if found is None and i not in failed]
    looked = bisect.bisect_left(range(len(lacking)), True, key=dataset.too_many_failures)
    picks = [lacking[k] for k in evenly_spread(len(lacking), looked)]
    return *why_absent_each({i: dataset.path(i) for i in picks}), len(lacking) - len(picks)


def _held_missing(dataset: PretrainDataset) -> str | None:
    """The first video of the list that has a track cache file where it is missing (so mme extract found it where the
    run does not: the list's paths lead elsewhere), None where it is there, or none has a file."""
    held = next((i for i, found in enumerate(dataset.cache_lookup.files) if found is not None), None)
    return None if held is None or why_absent(path := dataset.path(held)) != MISSING else path


def _with_bad_lines(dataset: PretrainDataset, videos: int) -> str:
    """What a cache's refusal of ``videos`` failed videos adds where the list has bad lines, which the failure
    fraction counts too (:meth:`~mme.data.dataset.PretrainDataset.failed_of`); nothing where it has none."""
    if not dataset.bad_lines:
        return ""
    failed, lines = dataset.failed_of(videos)
    return f", which with its {counted(len(dataset.bad_lines), 'bad line')} are {failed} of its {lines} lines"


def _unsought(lookup: CacheLookup, n: int) -> str:
    """What a cache's refusal says of ``n`` videos its listing misses, not looked up on disk (:class:`CacheLookup`'s
    ``unsought``): their files may be in folders it could not list."""
    unlisted = "" if lookup.whole else "; some of its folders could not be listed, and they may be there"
    return f"its listing lacks those of {n} more (not looked up one by one{unlisted})"


def _check_refused_files(cfg: PretrainConfig, dataset: PretrainDataset) -> None:
    """Refuse a track cache whose files each read fails as its video's failure before their settings count
    (:func:`~mme.motion.cache.cache_meta_and_refusal`: unreadable, made by an earlier mme or a later one, or of
    another version of its video: re-encoded in place, or another file of its name) where they, with the
    files it lacks, are more than ``data.max_failure_fraction`` lets the run skip, before the run's flow warning and
    first step (the run would stop at its first batch). Counted per entry of the list, as the dataset counts its
    failures (a video listed twice fails twice), each file read once. Judged on the probed files
    (:attr:`~mme.data.dataset.PretrainDataset.cache_probes`: every one where the list has at most ``CACHE_PROBES``),
    and, where their share of the list's entries would pass the fraction, on every file's header (a few such files
    among the probed ones of a large cache may be fewer than the fraction)."""
    if not dataset.refused_probes:
        return
    files = [found for found in dataset.cache_lookup.files if found is not None]  # one for each entry that has one
    probes = dataset.cache_probes
    refused = {found: kind for _, found, kind, _ in dataset.refused_probes}
    lacking = len(dataset.cache_lookup.lacking)
    if len(probes) < len(files):
        if not dataset.too_many_failures(lacking + round(len(dataset.refused_probes) * len(files) / len(probes))):
            return
        probed = {found for _, found in probes}
        unread = {found: dataset.path(i) for i, found in enumerate(dataset.cache_lookup.files)
                  if found is not None and found not in probed}  # each file and its video
        log.info("target.cache_dir %s: reading the headers of its %d files to count those the run cannot read (and "
                 "hashing the ends of each video whose mtime changed since extraction)", cfg.target.cache_dir,
                 len(unread))
        for found, video in unread.items():
            _, kind, _ = cache_meta_and_refusal(found, video)
            if kind is not None:
                refused[found] = kind
    kinds = {kind: sum(refused.get(found) == kind for found in files) for kind in REFUSALS}
    count = sum(kinds.values())
    if not dataset.too_many_failures(lacking + count):
        return
    said = [(REFUSALS[kind], n) for kind, n in kinds.items() if n]
    are = " or ".join(f"{kind} ({n})" if len(said) > 1 else kind for kind, n in said)
    lacks = f", with the {lacking} it lacks" if lacking else ""
    beyond = (f", more than data.max_failure_fraction={cfg.data.max_failure_fraction} of the list"
              if count + lacking < len(dataset) else "")
    distinct = len(set(files))
    repeated = f" (entries of the list: {distinct} files, some listed more than once)" if distinct < len(files) else ""
    _, found, _, why = dataset.refused_probes[0]
    taken = [found for found in dict.fromkeys(files) if refused.get(found) == "elsewhere"]
    if kinds["later"]:  # (this mme's extract would refuse them)
        advice = "upgrade mme to read a later mme's files (this mme's extract replaces them only with --overwrite)"
    elif taken:  # (a resumed extraction refuses them as another dataset's, which they may be)
        named = " ".join(taken[:5]) + " ..." * (len(taken) > 5)
        advice = (f"a resumed mme extract refuses those files, made from other files of the same name, as another "
                  f"dataset's: where they are this dataset's, moved with its cache and its videos changed since, "
                  f"delete them ({named}), then {dataset.extract_advice()}; where they are another dataset's, give "
                  f"this one a target.cache_dir of its own")
    else:
        advice = f"a resumed mme extract makes them again: {dataset.extract_advice()}"
    raise DataError(f"target.cache_dir {cfg.target.cache_dir!r}: {count} of its {len(files)} track cache files of the "
                    f"videos of {cfg.data.list_file}{repeated} {are}{lacks}{beyond}, which each read fails as its "
                    f"video's failure (the first, {found}: {why}); {advice}")


def _coarser_cache(meta: dict, cfg: PretrainConfig) -> str | None:
    """How a cache file of ``meta`` is coarser than the run's targets, else None: its seeds lie farther apart in the
    run's pixels than ``target.seed_stride``, or its flow read smaller frames than the run's, even where a crop spans
    a frame's whole short side (a smaller crop, enlarged more, spreads them further). Its tracks are then read between
    its seeds (:func:`mme.motion.cache.resample`), less fine than online ones."""
    short, stride = min(meta["work_size"]), meta["seed_stride"]
    size, seed = cfg.data.img_size, token_geometry(cfg.target, cfg.model).seed_stride
    spacing = stride * size / short
    sparse, small = spacing > seed * 1.001, short < size
    if not (sparse or small):
        return None
    said = [f"its seeds lie {spacing:.3g} px apart in the run's {size} px clips (a crop of a frame's whole short "
            f"side; further apart in a smaller one), where target.seed_stride is {seed}"] if sparse else []
    said += [f"its flow read frames {short} px on their short side, the run's clips are {size} px"] if small else []
    return (f"extracted at --short-side {short} --seed-stride {stride}: {'; '.join(said)}; its targets are less fine "
            f"than online ones. Extract again with {extract_flags_as_fine(cfg.target, cfg.data, seed, short)}, "
            "or unset target.cache_dir")


@torch.no_grad()
def mean_prediction_loss(model: MaskedAutoencoder, cfg: PretrainConfig, items: list[dict],
                         chunk: int = 64) -> dict[str, float]:
    """Each loss term, and their weighted total ``loss``, of always predicting the mean target of ``items``
    (dataset items; valid tokens only; every target made as the training step makes it): the
    level below which a target's loss shows that it learned something from the clips."""
    def chunks():
        for k in range(0, len(items), chunk):
            batch = collate(items[k:k + chunk])
            targets, valid = batch_targets(normalize_clip(batch["video"]), batch["motion"], cfg.target, cfg.model)
            yield len(batch["video"]), targets, valid

    sums: dict[str, torch.Tensor] = {}
    weights: dict[str, torch.Tensor] = {}
    for _, targets, valid in chunks():
        for n, t in targets.items():
            w = valid[n].float()[..., None] if n in valid else torch.ones_like(t[..., :1])
            sums[n] = sums.get(n, 0) + (t * w).sum((0, 1))
            weights[n] = weights.get(n, 0) + w.sum()
    terms: dict[str, float] = {}
    for size, targets, valid in chunks():
        preds = {n: (sums[n] / weights[n]).expand_as(t) for n, t in targets.items()}
        mask = torch.ones(next(iter(targets.values())).shape[:2], dtype=torch.bool)
        total, parts = model.forward_loss(preds, targets, mask, valid)
        for n, v in {"loss": total, **parts}.items():
            terms[n] = terms.get(n, 0.0) + float(v) * size / len(items)
    return terms


def batch_on_device(batch: dict, device: torch.device) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """A collated batch's clip moved to ``device`` and normalised there, and its motion (tracks, frames) moved."""
    video = normalize_clip(batch["video"].to(device, non_blocking=True))
    return video, {n: v.to(device, non_blocking=True) for n, v in batch["motion"].items()}


def make_step_targets(batch: dict, target_cfg: TargetConfig, model_cfg: ModelConfig,
                      device: torch.device) -> tuple[torch.Tensor, dict, dict]:
    """A collated batch's clip on ``device`` (:func:`batch_on_device`), and every target of the config with its
    validity (:func:`mme.motion.targets.batch_targets`), as the training step makes them (and the benches time)."""
    video, motion = batch_on_device(batch, device)
    return video, *batch_targets(video, motion, target_cfg, model_cfg)


def _inputs(run: Run, batch: dict, epoch: int, k: int) -> tuple:
    """Clip, masks, targets and their validity on the device, where the targets are made."""
    cfg = run.cfg
    video, targets, valid = make_step_targets(batch, cfg.target, cfg.model, run.device)
    mask = batch["mask"].to(run.device, non_blocking=True)
    if cfg.target.shuffled:  # the control: each clip gets the previous clip's targets
        targets, valid = ({n: v.roll(1, 0) for n, v in d.items()} for d in (targets, valid))
    return video, mask, targets, valid


def _forward(run: Run, inputs: tuple) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    video, mask, targets, valid = inputs
    loss, _, terms = run.step_model(video, mask, targets, valid)
    return loss, {**{f"loss_{n}": v for n, v in terms.items()},
                  **{f"valid_{n}": gather_masked(v, mask).float().mean() for n, v in valid.items()}}


def _timing_loss(model: MaskedAutoencoder, cfg: PretrainConfig):
    """:attr:`~mme.train.engine.Job.timing_loss`: a loss of the model on ``clips`` zero clips of the run's shape."""
    def make(device: torch.device, clips: int):
        m = cfg.model
        video = torch.zeros(clips, 3, m.num_frames, m.img_size, m.img_size, device=device)
        mask = model.make_mask(clips, torch.Generator()).to(device)  # a private generator: the run's RNG is untouched
        targets = {h.name: torch.zeros(clips, m.num_tokens, h.dim, device=device) for h in model.head_specs}
        return lambda: model(video, mask, targets, {})[0]
    return make


def setup(cfg: PretrainConfig) -> Run:
    """Build and check everything (out dir, data, model, checkpoint) before the first step; the keys that
    ``load_config``'s overrides set (:func:`~mme.config.given_in`) are those given on the command line, those of a
    resumed run's architecture named as ignored (:func:`~mme.train.engine.warn_ignored_on_resume`)."""
    given = given_in(cfg)  # (recorded on this config, not on the copies made of it below)
    start = engine.begin(cfg)
    cfg = start.cfg  # (its train.init the resumed run's)
    t = cfg.train
    if start.resume is not None:  # warned of a setting its target does not use (a fresh run's refused: begin)
        cfg.target.check_settings_used(resumed=True)
    with dist.agreed():  # each rank reads its data and its init (a node, its own copies)
        init = read_init(cfg) if t.init and start.resume is None else None
        cfg = _with_architecture(cfg, start.resume, init, given)
        dataset = pretrain_dataset(cfg)
        # held while the run lives (engine.finish lets go): an mme extract --overwrite would change its tracks
        # mid-way, unsaid
        if reads := reads_cache(cfg, dataset):
            hold_for_reading(cfg.target.cache_dir, "target.cache_dir")
            check_cache(cfg, dataset)
        torch.manual_seed(t.seed)  # the initial weights
        model = MaskedAutoencoder(cfg.model, head_specs(cfg.target, cfg.model))
        if init is not None:
            load_init(model, init, t.init)
    cache = dataset.cache_identity() if reads else None  # (what the ranks compare, and the run records)
    engine.check_same_inputs(cfg, dataset, init, cache=cache)
    if t.activation_checkpointing:
        checkpoint_blocks(model.encoder)
    job = engine.Job(_inputs, _forward, _timing_loss(model, cfg),
                     rules={"tracker": tracker_change(cfg.target.flow)} if cfg.target.tracked and not reads else {},
                     checkpoint_extra={"heads": [dataclasses.asdict(h) for h in model.head_specs]},
                     input_identities={} if cache is None else {"track cache": cache})
    return engine.setup(cfg, job, model, dataset, start)


def tracker_change(flow: str) -> Callable[[int], str | None]:
    """What a run computing its tracks with ``flow`` gets otherwise now than by the tracker revision it recorded
    (:func:`~mme.motion.tracks.tracks_changed`), None where nothing: the rule of :attr:`engine.Job.rules`."""
    def changed(revision: int) -> str | None:
        said = tracks_changed(revision, flow)
        return None if said is None else f"{said} (other targets for its remaining steps: mme.motion.tracks.TRACKER)"
    return changed


def read_init(cfg: PretrainConfig) -> Checkpoint:
    """``train.init`` read (any checkpoint mme reads: ours, the original VideoMAE/MME release, Hugging Face): the
    whole masked autoencoder where the file has one, else the encoder only (decoder and heads start fresh)."""
    try:
        return engine.read_init(cfg.train.init, cfg.model)
    except SeparateDecoders:
        log.warning("train.init %s has separate decoders (--decoder_num 2), which mme's joint decoder cannot take: "
                    "starting from its encoder, the decoder and heads fresh", cfg.train.init)
        return engine.read_init(cfg.train.init, cfg.model, encoder_only=True)


def _with_architecture(cfg: PretrainConfig, resume: tuple[str, dict] | None, init: Checkpoint | None,
                       given: Collection[str] = ()) -> PretrainConfig:
    """``cfg`` with the architecture of its model, as fine-tuning takes it (``ENCODER_FIELDS``; of a masked
    autoencoder's decoder too, ``DECODER_FIELDS``): a resumed run's own, its preset too (values ``given`` otherwise
    warned about as ignored, :func:`~mme.train.engine.warn_ignored_on_resume`), else the one ``init`` records (the
    same weights compute something else in another: other heads, another input norm), else the config's; its clips
    fit to that model (:func:`~mme.train.config.clips_for`), and its mask checked against that model's token grid
    (:func:`~mme.train.config.check_masks_a_token`: a config of a ``train.init`` or a resume leaves it to here,
    :func:`~mme.train.config.taken_from_checkpoint`)."""
    fields = ENCODER_FIELDS + DECODER_FIELDS
    if resume is not None:
        runs = run_model_config(ModelConfig, resume[1]["config"]["model"], resume[0], meta=resume[1].get("meta"))
        engine.warn_ignored_on_resume(cfg.model, runs, cfg.RESUMED_MODEL, given, resume[0], bool(cfg.train.init),
                                      cfg.data.tubelet)
        model = dataclasses.replace(cfg.model, checks_clip=False, **{k: getattr(runs, k) for k in cfg.RESUMED_MODEL})
        cfg = clips_for(cfg, model, resume[0], given, resumed=True)
    elif init is not None:
        model = engine.architecture_from(cfg.model, init.cfg, fields if init.kind == "mae" else ENCODER_FIELDS,
                                         cfg.train.init, given, cfg.data.tubelet)
        cfg = clips_for(cfg, model, f"train.init {cfg.train.init}", given)
    else:
        return cfg  # (the config's model, its mask checked as it was read)
    check_masks_a_token(cfg.model)
    return cfg


def load_init(model: MaskedAutoencoder, ck: Checkpoint, path: str) -> None:
    """The weights of ``train.init`` ``path`` (``ck``: :func:`read_init`'s) into the run's ``model``: the whole masked
    autoencoder, or its encoder. An encoder without its final LayerNorm (Hugging Face's ``use_mean_pooling``, the
    default of its pre-training too; a classifier's) gets the run's fresh one, with a warning."""
    whole = ck.kind == "mae"
    state = ck.state if whole else ck.encoder_state
    if not ck.final_norm:
        log.warning("train.init %s has no final encoder LayerNorm (Hugging Face's use_mean_pooling, or a classifier "
                    "fine-tuned with mean pooling): this run's encoder.norm starts fresh (weight 1, bias 0)%s", path,
                    ", which its decoder did not see in its training" if whole else "")
        fresh = model.encoder.norm.state_dict()
        state = {**state, **{("encoder.norm." if whole else "norm.") + k: v for k, v in fresh.items()}}
    if whole:
        try:
            load_state(model, state, f"train.init {ck.source}")
        except CheckpointError as e:  # e.g. a pixel MAE for an MME run: other target heads
            raise CheckpointError(f"{e}. To start from its encoder alone: mme export {path} encoder.safetensors "
                                  f"--format safetensors --kind model, then train.init=encoder.safetensors") from e
    else:
        load_state(model.encoder, state, f"train.init {ck.source}")
    log.info("initial weights from %s (%s)", ck.source, "whole model" if ck.kind == "mae" else "encoder only")


def describe(run: Run) -> list[str]:
    """Pre-training's lines of the run summary: tokens, masking, heads."""
    c, t = run.cfg, run.cfg.train
    clips = t.batch_size * dist.get_world_size() * t.accum_steps
    n = c.model.num_tokens
    n_masked = masked_per_sample(c.model.mask_type, c.model.grid, c.model.mask_ratio)
    enc = count_parameters(run.model.encoder)
    heads = ", ".join(f"{h.name}:{h.dim}" for h in run.model.head_specs)
    return [f"  tokens per clip {n} (grid {c.model.grid}): {n - n_masked} visible, {n_masked} masked"
            f" ({c.model.mask_type}, ratio {c.model.mask_ratio}); per step {clips * (n - n_masked)} through the"
            f" encoder",
            f"  encoder {enc / 1e6:.2f}M parameters; heads {heads}" + (" (control: targets shuffled between clips)"
                                                                      if c.target.shuffled else "")]


def pretrain(cfg: PretrainConfig, printed: bool = True) -> TrainResult:
    """Set up (failing fast on bad input), print the run summary, train, print a one-line JSON summary (rank 0):
    ``finished`` false where the run stopped at ``train.stop_after``, short of its ``total_steps``; ``minutes`` is
    this command's, as fine-tuning's; ``nonfinite_skipped`` the whole run's. The keys that
    ``load_config``'s overrides set are those given on the command line (:func:`setup`). ``printed``
    False: neither summary (a caller's own run in a folder of its own, gone when it returns: the pipeline bench)."""
    t0 = time.perf_counter()
    with engine.JobScope() as job:
        run = job.run = setup(cfg)
        if printed:
            engine.print_summary(run, describe(run))
        result = job.result = loop.train(run)
        if printed and dist.is_main():
            print(json.dumps({"out_dir": str(result.out_dir), "step": result.step,
                              "total_steps": result.total_steps, "finished": result.finished,
                              "checkpoint": str(result.checkpoint) if result.checkpoint else None,
                              "nonfinite_skipped": result.nonfinite_skipped,
                              "minutes": round((time.perf_counter() - t0) / 60, 2)}), flush=True)
    return result


def main(recipe: str, overrides: list[str]) -> int:
    """``mme pretrain --config RECIPE key=value ...``."""
    pretrain(load_config(PretrainConfig, recipe, overrides))
    return 0
