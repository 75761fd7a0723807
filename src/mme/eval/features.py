"""Features of a frozen encoder: ``extract_features`` (in memory) and ``embed`` (``mme embed``: to a file,
resumable, sharded over torchrun ranks).

A video's feature is the mean of the encoder's output tokens (of a fine-tuned classifier's encoder, through the
classifier's ``fc_norm``: what its head sees; ``extract_features`` takes it as ``pooled_norm``), averaged over its
test views (N temporal clips × M spatial crops); optionally also the token grid ``(t, h, w, D)`` averaged over
the views. A video that cannot be decoded is never dropped: its row is NaN, ``valid`` is False and the failure
(index, path, reason) is listed in the ``<out>.json`` sidecar.

Resume: ``embed`` writes finished rows in chunks to ``<out>.partial/`` (one atomically written ``.npz`` per
chunk and rank, with the size and modification time each row's video had); a rerun with the same arguments
skips the rows already embedded there whose video is unchanged since (failed videos are tried again), and the
final file is assembled (atomically) only when every row is done, after which the partial folder is removed. A
finished file whose sidecar records the same job (checkpoint and list unchanged, same views) is reused as is:
that is the per-split feature cache of ``mme probe``; when videos changed since (replaced, or a failed one
restored), they are embedded again, with its failed videos.

    mme embed runs/pt/checkpoint-00001000.pt data/val.txt --out feats/val.safetensors --clips 2 --crops 3
    torchrun --standalone --nproc_per_node=4 -m mme.cli embed CKPT LIST --out feats/val.npy
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import shutil
import zipfile
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from mme.config import differences
from mme.data.pyav_reader import holds_indices, take_index_dir
from mme.data.transforms import normalize_clip
from mme.errors import CheckpointError, ConfigError, DataError, MMEError
from mme.eval.testing import (
    READING_VERSION,
    build_test_set,
    iter_test_batches,
    reading_as_now,
    short_videos,
    warn_short,
)
from mme.train import run_folder
from mme.utils import (
    atomic_path,
    atomic_write_json,
    cannot_read,
    check_apart,
    check_count,
    check_folder_held,
    check_output,
    code_version,
    counted,
    error_reason,
    file_path,
    flag,
    keys_as_flags,
    npy_header,
    read_text,
    remove_stale_temps,
    removing,
    torch_as_mme,
    unlock_folder,
    utf8_abspath,
    utf8_name,
    utf8_named,
    write_safetensors,
    writing,
)

if TYPE_CHECKING:
    from mme.data.lists import ListEntry
    from mme.models.checkpoint import Checkpoint

log = logging.getLogger(__name__)


@dataclass
class Features:
    """Per-video features in dataset order."""

    x: torch.Tensor
    """(N, D) float32 mean-pooled tokens averaged over views; NaN rows where ``valid`` is False."""
    labels: torch.Tensor
    """(N,) int64 labels from the dataset (-1 where the video failed or the dataset has none)."""
    valid: torch.Tensor
    """(N,) bool: the video was decoded and embedded."""
    failures: list[dict[str, Any]]
    """``{"index", "error"}`` for every failed video."""
    tokens: torch.Tensor | None = None
    """(N, t, h, w, D) token grid averaged over views, when requested."""
    precision: str = field(kw_only=True)
    """The precision the encoder ran in ('fp32', 'bf16', 'fp16'): what ``precision='auto'`` resolved to here."""


def _token_grid(encoder: torch.nn.Module, clip_shape: torch.Size) -> tuple[int, int, int]:
    cfg = encoder.cfg
    _, T, H, W = clip_shape
    return T // cfg.tubelet_size, H // cfg.patch_size, W // cfg.patch_size


@torch.no_grad()
def embed_batch(encoder: torch.nn.Module, video: torch.Tensor, tokens: bool = False,
                pooled_norm: torch.nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``video (B, V, 3, T, H, W)`` -> view-averaged mean-pooled features ``(B, D)`` (each view's through
    ``pooled_norm`` where given: a classifier's ``fc_norm``, ``Checkpoint.pooled_norm``) and, with ``tokens``, the
    view-averaged token grid ``(B, t, h, w, D)``."""
    B, V = video.shape[:2]
    out = encoder(video.flatten(0, 1)).float()  # (B*V, N, D)
    pooled = out.mean(1) if pooled_norm is None else pooled_norm(out.mean(1)).float()
    feats = pooled.reshape(B, V, -1).mean(1)  # (B, D)
    if not tokens:
        return feats, None
    grid = _token_grid(encoder, video.shape[2:])
    return feats, out.reshape(B, V, *grid, out.shape[-1]).mean(1)  # (B, t, h, w, D)


def _non_finite(encoder: torch.nn.Module, pooled_norm: torch.nn.Module | None, model: str, precision: str,
                videos: list[str], batch: int) -> CheckpointError:
    """The refusal of features that are not finite (NaN or inf) of ``videos`` (of a batch of ``batch``) that ``model``
    (the encoder, as its caller names it) gives at ``precision``: no failure of a video (the input norms hold an eps:
    a constant clip's features are finite) but of the weights or of the precision; which one is said."""
    named = [*encoder.named_parameters(), *(pooled_norm.named_parameters("fc_norm") if pooled_norm else ())]
    broken = [name for name, p in named if not torch.isfinite(p).all()]
    why = (f"its weights hold NaN or inf ({', '.join(broken[:3])}{', ...' if len(broken) > 3 else ''}): a damaged "
           "or diverged model" if broken else
           f"its activations overflow in {precision}: embed in fp32 precision (--precision fp32)"
           if precision != "fp32" else
           "its activations overflow even in fp32: a diverged model")
    return CheckpointError(f"{model} gives features that are not finite (NaN or inf) at precision {precision}, "
                           f"{len(videos)} of the {batch} videos of a batch, first {videos[0]}: {why}")


def _embedded(encoder, dataset, indices, *, batch_size, num_workers, device, precision, tokens, progress,
              pooled_norm=None, model="the encoder"):
    """Yield ``(batch, features, tokens)`` over ``indices`` of ``dataset`` (batches of ``iter_test_batches``
    without their clips, which a caller keeping batches until it writes them would hold: a loader worker's, in
    shared memory; features None when every video of the batch failed). Features that are not finite are a
    CheckpointError naming ``model`` and ``precision`` (:func:`_non_finite`), at the first batch that has them: no
    row of a features file is marked valid that is not. Its intra-op threads are a run's, less the loader workers
    (:func:`~mme.train.precision.run_threads`)."""
    from mme.train.precision import autocast, run_threads

    with run_threads(device, num_workers):
        for batch in iter_test_batches(dataset, indices, batch_size=batch_size, num_workers=num_workers, desc="embed",
                                       progress=progress):
            feats = toks = None
            video = batch.pop("video")
            if video is not None:
                with autocast(precision, device):
                    feats, toks = embed_batch(encoder, normalize_clip(video.to(device, non_blocking=True)), tokens,
                                              pooled_norm)
                del video
                feats = feats.cpu()
                toks = toks.cpu() if toks is not None else None
                bad = (~torch.isfinite(feats).all(1)).nonzero().flatten().tolist()
                if bad:
                    path = getattr(dataset, "path", lambda i: f"item {i}")
                    raise _non_finite(encoder, pooled_norm, model, precision,
                                      [path(int(batch["index"][i])) for i in bad], len(feats))
            yield batch, feats, toks


def _prepare(encoder: torch.nn.Module, device: str | torch.device,
             pooled_norm: torch.nn.Module | None) -> tuple[torch.device, torch.nn.Module | None]:
    """The encoder and the ``pooled_norm`` (a classifier's ``fc_norm``) in eval mode on ``device``: the device and
    the norm."""
    device = torch.device(device)
    encoder.eval().to(device)
    return device, None if pooled_norm is None else pooled_norm.eval().to(device)


def _device_and_precision(device: torch.device, precision: str, why: str) -> str:
    """How ``mme embed`` and ``extract_features`` log where and in which precision they embed."""
    return f"{device}, precision {precision} ({why})"


@torch_as_mme()
@keys_as_flags({"data.num_workers": "num_workers", "train.batch_size": "batch_size"}, overrides=False)  # (its own)
def extract_features(encoder: torch.nn.Module, dataset: Dataset, *, batch_size: int = 4, num_workers: int = 0,
                     device: str | torch.device = "cpu", precision: str = "auto", tokens: bool = False,
                     progress: bool = True, pooled_norm: torch.nn.Module | None = None) -> Features:
    """Features of every item of a test ``dataset`` (items ``{"video": (V, 3, T, H, W), "label", "index"}``)
    in dataset order, in memory (the encoder is put in eval mode on ``device``). Failed videos get NaN rows,
    ``valid=False`` and an entry in ``failures``. ``pooled_norm``: the LayerNorm each view's token mean goes
    through, for a fine-tuned classifier's features as ``mme embed`` gives them (its ``fc_norm``:
    ``Checkpoint.pooled_norm`` of ``read_checkpoint(path, encoder_only=True)``, whose encoder is ``build_model``'s;
    ``load_encoder`` gives the encoder alone, its features the raw token means)."""
    from mme.train.precision import choose_precision

    device, pooled_norm = _prepare(encoder, device, pooled_norm)
    precision, why = choose_precision(precision, device)
    n = len(dataset)
    log.info("extract_features: %d videos; %s", n, _device_and_precision(device, precision, why))
    x = labels = valid = grid = None
    failures: list[dict[str, Any]] = []
    for batch, feats, toks in _embedded(encoder, dataset, range(n), batch_size=batch_size, num_workers=num_workers,
                                       device=device, precision=precision, tokens=tokens, progress=progress,
                                       pooled_norm=pooled_norm):
        failures += batch["failed"]
        if feats is None:
            continue
        if x is None:
            x = torch.full((n, feats.shape[1]), float("nan"))
            labels = torch.full((n,), -1, dtype=torch.long)
            valid = torch.zeros(n, dtype=torch.bool)
            grid = torch.full((n, *toks.shape[1:]), float("nan")) if toks is not None else None
        x[batch["index"]] = feats
        labels[batch["index"]] = batch["label"]
        valid[batch["index"]] = True
        if grid is not None:
            grid[batch["index"]] = toks
    if x is None:
        raise DataError(f"extract_features: all {n} videos failed; first error: "
                        f"{failures[0]['error'] if failures else 'empty dataset'}")
    return Features(x, labels, valid, sorted(failures, key=lambda f: f["index"]), grid, precision=precision)


# ---- mme embed: to a file, resumable -------------------------------------------------------------------------


def _read_parts(partial: Path, keys: Collection[str] | None = None) -> list[dict[str, np.ndarray]]:
    return [_read_part(p, keys) for p in sorted(partial.glob("part-*.npz"))]


def _read_part(path: Path, keys: Collection[str] | None = None) -> dict[str, np.ndarray]:
    """The arrays of the part at ``path``, those named in ``keys`` alone where given (the others are not read: the
    rows of a part without its token grids)."""
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files if keys is None or k in keys}


def _part_shape(path: Path, key: str) -> tuple[int, ...] | None:
    """The shape of the array ``key`` of the part at ``path`` (None where it holds none), from its .npy header
    alone: its data is not read."""
    with zipfile.ZipFile(path) as z:
        if f"{key}.npy" not in z.namelist():
            return None
        with z.open(f"{key}.npy") as f:
            return npy_header(f)[0]


def _kept_in(partial: Path) -> str:
    """What a failed write of mme embed (a full disk) says is kept: the parts in ``partial``."""
    return f"the videos embedded before are kept in {partial}, and the same command resumes from them"


def _write_part(partial: Path, tag: str, arrays: dict[str, np.ndarray]) -> Path:
    """Write one part atomically as ``part-<first row>-<tag>.npz`` (``tag``: the writing rank, ``r0``, ...)."""
    first = min(np.concatenate([arrays["index"], arrays["failed"]]))
    path = partial / f"part-{first:09d}-{tag}.npz"
    with writing(path, _kept_in(partial), DataError), atomic_path(path) as tmp:
        np.savez(tmp, **arrays)
    return path


def _no_failures() -> dict[str, np.ndarray]:
    return {"failed": np.zeros(0, np.int64), "error": np.zeros(0, str)}


def _drop_stale(partial: Path, states: np.ndarray) -> None:
    """Drop from the parts in ``partial`` the failed videos and the rows whose video changed since they were
    embedded (``states``: every row's :func:`_file_state` now), so that this run embeds them again. A part left
    without rows is removed; the others are named after their first kept row, which no part of this run (named
    after a row it embeds or fails) can take. A part that cannot be removed is an MMEError naming it
    (:func:`mme.utils.removing`): its rows would be taken as done."""
    changed = earlier = 0
    for path in sorted(partial.glob("part-*.npz")):
        part = _read_part(path, ("index", "state", "failed"))  # (the features and grids: of a part rewritten alone)
        if "state" in part:
            same = part["state"] == states[part["index"]]
            changed += int((~same).sum())
        else:  # a part of an earlier mme, without the states, is embedded again
            same = np.zeros(len(part["index"]), bool)
            earlier += len(same)
        if same.all() and not len(part["failed"]):
            continue
        if same.any():
            rows = {k: v[same] for k, v in _read_part(path).items() if k not in ("failed", "error")}
            if _write_part(partial, path.stem.rsplit("-", 1)[1], {**rows, **_no_failures()}) == path:
                continue
        with removing(path, "it holds videos to embed again (failed, or changed since), which would be taken as done: "
                            f"make it removable, or delete {partial} to embed every video again"):
            path.unlink()
    if changed:
        log.info("embed: %s: %d videos embedded there changed since (size or modification time): embedding them "
                 "again", partial, changed)
    if earlier:
        log.info("embed: %s: %d videos embedded there were written by an earlier mme, without each video's state; "
                 "embedding them again", partial, earlier)


def _open_partial(partial: Path, fingerprint: dict[str, Any], finished: Path | None, states: np.ndarray,
                  part_rows: int) -> None:
    """Lock ``partial/`` for this job (a second one on the same --out would delete the parts the first assembles)
    and make it ready: resume the one there (its failed videos and changed ones to be embedded again), or start it
    with the fingerprint and the embedded rows of ``finished`` (this job's output) whose video is unchanged
    (``states``: every row's :func:`_file_state` now), with token grids in parts of ``part_rows`` rows at most, as
    this job writes them, read a part at a time (not the whole grid, and those rows again). A folder of a different
    job is refused, unless none of its videos was embedded (nothing to lose)."""
    run_folder.take(partial, option="--out (its partial results)")
    meta = partial / "job.json"
    if meta.is_file():
        found = _job(json.loads(read_text(meta)))
        if found == fingerprint:
            _drop_stale(partial, states)
            return
        diff = differences(found, fingerprint)
        otherwise = _read_otherwise(found)
        if not otherwise and any(len(p["index"]) for p in _read_parts(partial, ("index",))):
            raise DataError(f"{partial}: partial results of a different job (differs in {diff}); delete the folder "
                            "or choose another --out")
        why = otherwise or f"embedded no video (other {diff})"
        log.info("embed: %s: the stopped job there %s; started afresh", partial, why)
        for path in partial.glob("part-*.npz"):
            with removing(path, f"it is of the stopped job there, which {why}: make it removable, or delete "
                                f"{partial}"):
                path.unlink()
    if finished is not None:
        x, valid, _, info = read_features(finished)
        kept = np.flatnonzero(valid & (np.asarray(info["states"]) == states))
        per = part_rows if fingerprint["tokens"] else len(x)
        for start in range(0, len(x), per):
            stop = min(start + per, len(x))  # (safetensors' slices are not cut at the end)
            rows = kept[(kept >= start) & (kept < stop)]
            if len(rows):
                grids = _read_grids(finished, slice(start, stop))[rows - start] if fingerprint["tokens"] else None
                _write_part(partial, "r0", {"index": rows, **_no_failures(), "x": x[rows], "state": states[rows],
                                            **({"tokens": grids} if grids is not None else {})})
    atomic_write_json(meta, fingerprint)


def _job(recorded: Any) -> Any:
    """A job's fingerprint (or a sidecar) as recorded, read as this mme writes it: TSN segments take no stride
    (None; jobs of an earlier mme recorded one they never used, so their features and partial results are still
    theirs, and said as what they are), and its reading version (1 where none is recorded) as this one where no
    version since changed it for the job's backend (:func:`~mme.eval.testing.reading_as_now`: a change of another
    backend's reading alone leaves them theirs)."""
    if isinstance(recorded, dict) and recorded.get("segments"):
        recorded = {**recorded, "stride": None}
    if isinstance(recorded, dict):
        recorded = {**recorded, "reading": reading_as_now(recorded.get("reading", 1), recorded.get("backend"))}
    return recorded


def _read_otherwise(job: Any) -> str | None:
    """How a job, as :func:`_job` reads it, read its videos where that was by another rule than this mme's
    (:data:`READING_VERSION`), an earlier or a later mme's: its features are not these, nor can the job be
    resumed."""
    found = job["reading"] if isinstance(job, dict) else 1
    if found == READING_VERSION:
        return None
    which = ("an earlier" if found < READING_VERSION else "a later") if isinstance(found, int) else "another"
    return f"read its videos by {which} rule (reading version {found}, now {READING_VERSION}: other test views " \
           "or files refused)"


def _finished(out: Path, fingerprint: dict[str, Any]) -> dict[str, Any] | None:
    """The sidecar of ``out`` when it holds the features of exactly this job (checkpoint and list unchanged since)
    and the state of every row's video, and ``out`` (and its token file when tokens are asked for) a row for each
    video, else None (with a warning when the files are damaged)."""
    info = _embed_sidecar(out) if out.is_file() else None
    job = _job(info["job"]) if info is not None else None
    if info is None or info.get("unfinished") or job != fingerprint:
        if info is not None and (otherwise := _read_otherwise(job)):
            log.info("embed: %s %s; embedding it again", out, otherwise)
        return None
    if "states" not in info:
        log.info("embed: %s was made by an earlier mme, without the state of each video; embedding it again", out)
        return None
    shape = (fingerprint["num_videos"], info.get("dim"))
    try:
        x, grids = _shapes(out, fingerprint["tokens"])
        if x != shape or grids is not None and grids[:1] != shape[:1]:
            raise DataError(f"{out}: features {x}{f' and token grids {grids}' if grids else ''}, not {shape}")
    except DataError as e:
        log.warning("embed: %s; embedding it again", e)
        return None
    return info


def _file_id(files: list[Path]) -> str:
    """Each file's path (as UTF-8 text, :func:`~mme.utils.utf8_name`: the same files under another locale are the
    same job), size and modification time (a checkpoint folder's weights may change in place, cp or rsync --inplace,
    while the folder's own entry does not)."""
    return ";".join(f"{utf8_name(str(p.resolve()))}:{(st := os.stat(p)).st_size}:{st.st_mtime_ns}" for p in files)


def _file_state(path: str) -> str:
    """A video's size and modification time ('missing' without the file), recorded for every row: a later run
    embeds a row again only once this changes (the video replaced, restored or mounted), so a file with lasting
    failures stays a cache."""
    try:
        st = os.stat(path)
    except OSError:
        return "missing"
    return f"{st.st_size}:{st.st_mtime_ns}"


def _tokens_file(out: Path) -> Path:
    """Where a ``.npy`` features file keeps its token grids."""
    return out.with_name(out.stem + ".tokens.npy")


def _partial_folder(out: Path) -> Path:
    """Where a features file's job keeps its finished rows until it is assembled: ``<out>.partial/``."""
    return out.with_name(out.name + ".partial")


def _sidecar_file(out: Path) -> Path:
    """Where a features file keeps its sidecar: ``<out>.json``."""
    return out.with_name(out.name + ".json")


def _embed_sidecar(out: Path) -> dict[str, Any] | None:
    """The sidecar ``<out>.json`` where it is mme embed's (recording its job), finished or not
    (:func:`write_features`), else None (none there, or a file of the user's by that name)."""
    return _embed_info(_read_sidecar(out).text)


def _embed_info(sidecar: bytes | None) -> dict[str, Any] | None:
    """:func:`_embed_sidecar` of a sidecar's bytes (None: not read)."""
    try:
        info = json.loads(sidecar) if sidecar is not None else None
    except ValueError:
        return None
    return info if isinstance(info, dict) and isinstance(info.get("job"), dict) else None


class _Sidecar(NamedTuple):
    """The sidecar of a features file as read once (:func:`_read_sidecar`): its bytes, None where they could not be
    read; ``gone``: there is none."""

    text: bytes | None
    gone: bool


def _read_sidecar(out: Path) -> _Sidecar:
    try:
        return _Sidecar(_sidecar_file(out).read_bytes(), False)
    except FileNotFoundError:
        return _Sidecar(None, True)
    except OSError:  # (unreadable: a folder of that name, another user's file kept to themselves)
        return _Sidecar(None, False)


SIDECAR_STARTS = (b'{\n  "checkpoint": "', b'{\n  "job": {\n    "checkpoint": "')
"""How the sidecars :func:`write_features` writes begin: the finished one with its job's first key, the unfinished
one with the job (indented JSON, :func:`mme.utils.json_text`). A sidecar cut short is mme embed's only where it
begins so."""

SAFETENSORS_STARTS = b'{"__metadata__":{"info":"{\\"checkpoint\\": \\"'
"""How the header of a ``.safetensors`` file :func:`write_features` writes begins, after its 8-byte length: its
metadata's ``info``, the job's first key first. A file cut inside its header is mme embed's only where it begins so."""


def _sidecar_damage(out: Path, sidecar: _Sidecar) -> str | None:
    """What is wrong with the ``sidecar`` of ``out`` where it does not parse (cut short: a full disk, a copy stopped
    half-way) or is gone, while the files are mme embed's by what they hold (:func:`_written_by_embed`): such files
    are mme embed's, damaged, not the user's. None otherwise."""
    side = _sidecar_file(out)
    if sidecar.gone:
        damage = f"{side} is missing"
    elif sidecar.text is None:
        return None
    else:
        try:
            json.loads(sidecar.text)
            return None
        except ValueError as e:
            damage = f"{side}: damaged ({error_reason(e)})"
    return damage if _written_by_embed(out, sidecar.text) else None


def _written_by_embed(out: Path, sidecar: bytes | None) -> bool:
    """Whether ``out`` and its damaged or missing sidecar (its bytes, None where gone) are mme embed's, on the
    evidence of either file: a sidecar that begins as mme embed's do (:data:`SIDECAR_STARTS`), or a ``.safetensors``
    whose header records mme embed's job or, cut short, begins as its headers do (:data:`SAFETENSORS_STARTS`). Both
    may be cut (a copy stopped half-way, a full disk), ``out`` may be gone; a file that reads and is not mme embed's
    (a ``.safetensors`` recording no job, a ``.npy`` not of float32 rows (N, D)) is the user's whatever its sidecar.
    A ``.npy`` records no job: without that sidecar it may be any array of the user's."""
    from safetensors import SafetensorError, safe_open

    sidecar_ours = sidecar is not None and sidecar.startswith(SIDECAR_STARTS)
    if not out.is_file():
        return sidecar_ours
    if out.suffix == ".npy":
        try:
            x = np.load(out, mmap_mode="r")
        except (OSError, ValueError, EOFError):
            return sidecar_ours
        return sidecar_ours and isinstance(x, np.ndarray) and x.ndim == 2 and x.dtype == np.float32
    try:
        with safe_open(str(out), framework="numpy") as f:
            metadata = f.metadata() or {}
    except SafetensorError:  # cut short, or not a safetensors file
        with open(out, "rb") as f:
            return sidecar_ours or f.read(8 + len(SAFETENSORS_STARTS))[8:] == SAFETENSORS_STARTS
    except OSError:
        return sidecar_ours
    try:
        info = json.loads(metadata.get("info", "null"))
    except ValueError:
        return False
    return isinstance(info, dict) and isinstance(info.get("job"), dict)


def _unowned_files(out: Path, tokens: bool, sidecar: bytes | None) -> list[Path]:
    """The files at ``out`` (the features file, its ``sidecar``, as read, and, a ``.npy`` with ``tokens``, its token
    grids) that mme embed did not write, its sidecar whole or not there beside features of the user's
    (:func:`refuse_unowned` takes damaged ones first). They are an earlier mme embed's where the sidecar is one (the
    grids where it records them), or where a job's partial folder is (a job begun there, which a rerun resumes); any
    other file of those names is the user's."""
    side = _sidecar_file(out)
    present = [p for p in (out, side, *([_tokens_file(out)] if tokens and out.suffix == ".npy" else [])) if p.exists()]
    if not present or (_partial_folder(out) / "job.json").is_file():
        return []
    earlier = _embed_info(sidecar)
    ours = set() if earlier is None else {out, side, *([_tokens_file(out)] if earlier.get("tokens") else [])}
    return [p for p in present if p not in ours]


def refuse_unowned(out: Path, tokens: bool = False, overwrite: bool = False, probe_out: Path | None = None) -> None:
    """Unless ``overwrite``, a ConfigError naming the files at ``out`` that mme embed did not write
    (:func:`_unowned_files`), before any embedding; mme embed's own with a damaged or missing sidecar
    (:func:`_sidecar_damage`) are warned about and made again. ``probe_out``: the --out of mme probe, in whose
    features/ folder ``out`` is (mme probe has no --overwrite: the way on is to move them)."""
    sidecar = _read_sidecar(out)  # (once: the checks below all go by it)
    if damage := _sidecar_damage(out, sidecar):
        log.warning("embed: %s, beside the features mme embed wrote in %s; making them again", damage, out.name)
        return
    theirs = _unowned_files(out, tokens, sidecar.text)
    if not theirs or overwrite:
        return
    names = ", ".join(p.name for p in theirs)
    if probe_out is not None:
        raise ConfigError(f"--out {probe_out}: {out.parent} holds files mme probe did not write ({names}); move them "
                          f"away, or give another --out")
    if (cut := _sidecar_cut_too_short(sidecar.text)) is not None:
        raise ConfigError(f"--out {out}: its sidecar {_sidecar_file(out).name} is {cut}, too little to tell whether "
                          f"mme embed wrote it (a full disk, a copy stopped half-way); give --overwrite to replace "
                          f"{names}, or another --out")
    raise ConfigError(f"--out {out}: already holds files mme embed did not write ({names}); give --overwrite to "
                      f"replace them, or another --out")


def _sidecar_cut_too_short(text: bytes | None) -> str | None:
    """How a sidecar (its bytes, None: not read) is damaged where it is cut before the bytes that tell mme embed's
    (:data:`SIDECAR_STARTS`), which it begins as: 'empty' or 'cut short (N B)'; None otherwise."""
    if text is None:
        return None
    if not any(len(text) < len(start) and start.startswith(text) for start in SIDECAR_STARTS):
        return None
    return f"cut short ({len(text)} B)" if text else "empty"


def write_features(out: Path, x: np.ndarray, valid: np.ndarray, labels: np.ndarray,
                   tokens: np.ndarray | _PartGrids | None, info: dict[str, Any], then: str = "") -> None:
    """Write features atomically: ``.npy`` (features, NaN rows for failures; tokens to ``<stem>.tokens.npy``)
    or ``.safetensors`` (``features``, ``valid``, ``labels``, ``tokens``; token grids of parts, :class:`_PartGrids`,
    written straight into the file a part at a time, the same bytes); both get the ``<out>.json`` sidecar
    (``info``: provenance, view counts, failures, labels); a ``.npy``'s token file is removed without tokens where
    the sidecar there recorded some (else it is not mme's). The sidecar, which marks the files finished
    (:func:`_finished`), is first replaced by one that marks them unfinished, yet mme embed's (a rerun replaces
    them without --overwrite), and written whole last: a write killed half-way leaves no file taken as finished,
    and its temporary files are removed by the next write (:func:`mme.utils.remove_stale_temps`). A write that
    fails (a full disk) is a DataError naming the file it failed on, the reason and ``then`` (what is kept)."""
    side, grids = _sidecar_file(out), _tokens_file(out)
    remove_stale_temps([out, grids, side])
    earlier = _embed_sidecar(out)
    if out.suffix == ".npy" and tokens is None and earlier is not None and earlier.get("tokens"):
        with removing(grids, then, error=DataError):
            grids.unlink(missing_ok=True)  # an earlier job's grids, of another encoder or list
    with writing(side, then, DataError):
        atomic_write_json(side, {"job": info.get("job"), "tokens": tokens is not None, "unfinished": True})
    if out.suffix == ".npy":
        if isinstance(tokens, _PartGrids):
            with writing(grids, then, DataError), atomic_path(grids) as tmp, open(tmp, "wb") as f:
                np.lib.format.write_array_header_1_0(f, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)),
                                                          "fortran_order": False, "shape": tokens.shape})
                tokens.write(f, f.tell())
        elif tokens is not None:
            with writing(grids, then, DataError), atomic_path(grids) as tmp:
                np.save(tmp, tokens)
        with writing(out, then, DataError), atomic_path(out) as tmp:
            np.save(tmp, x)
    else:
        arrays = {"features": x, "valid": valid.astype(np.uint8), "labels": labels}
        if tokens is not None:
            arrays["tokens"] = (torch.empty(tokens.shape, dtype=torch.float32, device="meta")  # (its place alone)
                                if isinstance(tokens, _PartGrids) else tokens)
        with writing(out, then, DataError), atomic_path(out) as tmp:
            start = write_safetensors(tmp, arrays, metadata={"info": json.dumps({k: v for k, v in info.items()
                                                                                      if k not in ("failures", "states",
                                                                                                   "labels")})})
            if isinstance(tokens, _PartGrids):
                with open(tmp, "r+b") as f:
                    tokens.write(f, start["tokens"])
    with writing(side, then, DataError):
        atomic_write_json(side, {**info, "labels": labels.tolist()})


@contextmanager
def _reading(path: Path) -> Iterator[None]:
    """A features, token or sidecar file that cannot be read (cut short, overwritten) as a DataError naming it."""
    from safetensors import SafetensorError

    try:
        yield
    except (OSError, ValueError, KeyError, SafetensorError) as e:
        if isinstance(e, (PermissionError, FileNotFoundError, IsADirectoryError)):
            raise DataError(cannot_read(path, e)) from e
        raise DataError(f"{path}: damaged ({f'no {e} array' if isinstance(e, KeyError) else error_reason(e)})") from e


def _sidecar(path: Path) -> dict[str, Any]:
    side = _sidecar_file(path)
    if not path.is_file() or not side.is_file():
        raise DataError(f"{path}: no features file (with its {side.name} sidecar)")
    with _reading(side):
        info = json.loads(read_text(side))
    if isinstance(info, dict) and info.get("unfinished"):
        raise DataError(f"{path}: written part-way (mme embed stopped while it wrote the file); rerun it to finish")
    return info


def _shapes(path: Path, tokens: bool) -> tuple[tuple[int, ...], tuple[int, ...] | None]:
    """The shapes of the features of ``path`` and, with ``tokens``, of its token grids, from the headers alone (a
    file cut short fails there)."""
    from safetensors import safe_open

    if path.suffix == ".npy":
        with _reading(path):
            x = np.load(path, mmap_mode="r").shape
        if not tokens:
            return x, None
        with _reading(_tokens_file(path)):
            return x, np.load(_tokens_file(path), mmap_mode="r").shape
    with _reading(path), safe_open(str(path), framework="numpy") as f:
        return (tuple(f.get_slice("features").get_shape()),
                tuple(f.get_slice("tokens").get_shape()) if tokens else None)


def read_features(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """(features (N, D), valid (N,) bool, labels (N,), info) from a file written by :func:`embed`."""
    path = Path(path)
    info = _job(_sidecar(path))
    if "job" in info:
        info["job"] = _job(info["job"])
    with _reading(path):
        if path.suffix == ".npy":
            x = np.load(path, allow_pickle=False)
            valid = np.isfinite(x).all(1)
        else:  # (the features and the mask alone: not a token grid the file holds)
            from safetensors import safe_open

            with safe_open(str(path), framework="numpy") as f:
                if missing := next((k for k in ("features", "valid") if k not in f.keys()), None):
                    raise KeyError(missing)
                x, valid = f.get_tensor("features"), f.get_tensor("valid").astype(bool)
    return x, valid, np.asarray(info.pop("labels"), dtype=np.int64), info


def read_tokens(path: str | Path) -> np.ndarray:
    """The token grids ``(N, t, h, w, D)`` of a file written by :func:`embed` with ``tokens``."""
    path = Path(path)
    if not _sidecar(path).get("tokens"):
        raise DataError(f"{path}: no token grids: embedded without --tokens, says its {path.name}.json")
    return _read_grids(path)


def _read_grids(path: Path, rows: slice | None = None) -> np.ndarray:
    """The token grids of the features file ``path`` (:func:`read_tokens`, its sidecar read), ``rows`` of them alone
    where given: only those are read."""
    if path.suffix == ".npy":
        with _reading(_tokens_file(path)):
            if rows is None:
                return np.load(_tokens_file(path), allow_pickle=False)
            return np.array(np.load(_tokens_file(path), mmap_mode="r")[rows])
    from safetensors import safe_open

    with _reading(path), safe_open(str(path), framework="numpy") as f:
        return f.get_tensor("tokens") if rows is None else f.get_slice("tokens")[rows]


EMBED_COUNTS = {"batch_size": ("--batch-size", 1), "chunk_batches": ("--chunk-batches", 1), "clips": ("--clips", 1),
                "crops": ("--crops", 1), "num_workers": ("--workers", 0)}
"""The counts among :func:`embed`'s options: each one's flag and least value."""
EMBED_KEYS = {"data.num_workers": EMBED_COUNTS["num_workers"][0], "train.batch_size": EMBED_COUNTS["batch_size"][0]}
"""The config keys whose settings :func:`embed`'s flags give, named in its loaders' warnings and advice."""


def say_unindexed(index_dir: str | os.PathLike, listed: str | None) -> None:
    """Warn that ``index_dir`` holds no frame index yet, naming the `mme check` of ``listed`` (lists and root as a
    command's arguments: :meth:`~mme.data.dataset._VideoDataset.as_arguments`) that fills it; no command where there
    is no list (one video). Said by the first rank of each node alone, which judges the node's own folder."""
    from mme.data.dataset import fill_index_command
    from mme.train.distributed import rank_on_node

    if rank_on_node() != 0:
        return
    log.warning("--index-dir %s holds no frame index yet%s", index_dir,
                f": {fill_index_command(listed, index_dir)} fills it" if listed else "")


def check_embed_options(outs: list[Path], backend: str | None = None, device: str = "auto",
                        index_dir: str | None = None, **counts: Any) -> tuple[torch.device, dict[str, int]]:
    """:func:`embed`'s options that need no input read, checked before any is (mme probe's before it reads its
    checkpoint, once for all its splits): the features files ``outs``, the counts given (:data:`EMBED_COUNTS`), the
    video backend given and device usable here (the run's backend, taken where none is given, is checked once the
    checkpoint is read: :func:`read_encoder`), and the index folder (made where missing, once the backend is known
    to keep one: by :func:`read_encoder` where none is given); else one line naming the flag. Returns the device,
    this rank's (under torchrun), and the counts as plain ints."""
    from mme.data.video import check_index_dir, decode_on, require_backend
    from mme.train.distributed import rank_on_node
    from mme.train.precision import choose_device

    for out in outs:
        if out.suffix not in (".npy", ".safetensors"):
            raise DataError(f"--out {out}: the features file must end in .npy or .safetensors")
    counts = {name: check_count(value, EMBED_COUNTS[name][1], EMBED_COUNTS[name][0]) for name, value in counts.items()}
    on = choose_device(device, rank_on_node(), "--device")
    decode_on(on)  # (before the backend's check: --backend pyav-cuda decodes on it)
    if backend is not None:
        require_backend(backend, "--backend")
        check_index_dir(backend, index_dir, "--backend", "--index-dir")
    for out in outs:
        # (its folder is made once the checkpoint and the list are read; its token grids' name is shorter than its
        # partial results')
        check_output(out, "--out", make=False, beside=(_sidecar_file(out), _partial_folder(out)))
    if index_dir is not None:
        for out in outs:
            check_apart(out, "--out", index_dir, "--index-dir")
        take_index_dir(index_dir, "--index-dir", make=backend is not None)
    return on, counts


NODE_COPIES = ("checkpoint", "source", "root")
"""The entries of :func:`embed`'s fingerprint that say a node's own copies (the checkpoint's and the list's paths,
sizes and times, the root's path): the ranks compare what these hold (:func:`mme.train.distributed.check_same_inputs`)
and the other entries as they are."""


class EncoderRead(NamedTuple):
    """A checkpoint read for embedding (:func:`read_encoder`): the file read, its encoder, the views of its clips
    (stride, segments, orientation, backend: as given, else as its run read them), and its files' identity
    (:func:`_file_id`) taken before they were read, which the features embedded with it record."""
    checkpoint: Checkpoint
    encoder: torch.nn.Module
    stride: int | None
    segments: bool
    orientation: str
    backend: str
    file_id: str | None


def read_encoder(checkpoint: str | Path, *, img_size: int | None = None, num_frames: int | None = None,
                 stride: int | None = None, segments: bool = False, orientation: str | None = None,
                 backend: str | None = None, index_dir: str | None = None) -> EncoderRead:
    """The checkpoint :func:`embed` embeds with, read and its encoder built, with the options of the same names
    (what it takes on trust said once; the run's backend, taken where none is given, checked beside
    ``index_dir``); mme probe reads it once for all its splits. Its identity is taken before
    the read: a file replaced since (during the read, or while mme probe embeds an earlier split) makes features
    recorded as of the file read, which a later job of the new file embeds again, never the new file's identity
    over the old file's features."""
    from mme.data.video import check_index_dir
    from mme.models.checkpoint import CLIP, build_model, checkpoint_files, read_checkpoint

    try:
        file_id = _file_id(checkpoint_files(checkpoint))
    except OSError:  # no file (read_checkpoint says so); None matches no features file's identity
        file_id = None
    ck = read_checkpoint(checkpoint, encoder_only=True, img_size=img_size, num_frames=num_frames,
                         given_as={k: flag(k) for k in CLIP})
    encoder = build_model(ck)
    views = ck.run_views(stride, segments, orientation, "embed", backend=backend)
    if backend is None and index_dir is not None:  # (one given was checked, the folder made: check_embed_options)
        check_index_dir(views[-1], index_dir, "its run's data.backend", "--index-dir")
        take_index_dir(index_dir, "--index-dir")
    return EncoderRead(ck, encoder, *views, file_id)


@torch_as_mme()
def embed(checkpoint: str | Path, source: str | Path, out: str | Path, *, clips: int = 1, crops: int = 1,
          stride: int | None = None, segments: bool = False, root: str = "", batch_size: int = 4, num_workers: int = 2,
          device: str = "auto", precision: str = "auto", tokens: bool = False, backend: str | None = None,
          orientation: str | None = None, index_dir: str | None = None, img_size: int | None = None,
          num_frames: int | None = None, chunk_batches: int = 50, overwrite: bool = False, progress: bool = True,
          checked_on: torch.device | None = None, read: EncoderRead | None = None,
          entries: list[ListEntry] | None = None, unindexed_said: bool = False) -> Path:
    """``mme embed``: features of the encoder in ``checkpoint`` for every video of ``source`` (a list file or
    one video file) into ``out`` (``.npy`` or ``.safetensors``), rows in list order; see the module docstring.

    ``clips`` × ``crops`` test views per video (TSN ``segments``, or strided clips at ``stride``; neither given: as
    the run that made the checkpoint sampled, its ``data.sampling`` and ``data.stride``, for our training
    checkpoints and their exports, else at stride 4), the clip length and crop size of the encoder's config; frames read
    as ``orientation`` (default: the run's ``data.orientation`` where the file records it, else as coded) with
    ``backend`` (default: the run's ``data.backend`` likewise, else pyav: Checkpoint.run_backend); ``index_dir``: frame
    indices ``mme check --index-dir`` proved, so that a long video's views seek from its first read; ``img_size`` /
    ``num_frames``: the clip the encoder is built for (read_checkpoint's hints: an original ``.pth`` records none).
    Resumable and sharded over torchrun ranks. Files at ``out`` that mme embed did not write are replaced only with
    ``overwrite`` (:func:`refuse_unowned`);
    ``checked_on``: the device :func:`check_embed_options` chose on these options and ``out``, whose caller checked
    ``root`` (:func:`~mme.data.lists.check_root`) and judged ``out``'s files (:func:`refuse_unowned`) already (mme
    probe's, once for all its splits before it reads its checkpoint);
    ``read``: the checkpoint already read by :func:`read_encoder` with these options (mme probe's, for every split);
    ``entries``: the list ``source``'s, already read (mme probe's: a list through a pipe is read once);
    ``unindexed_said``: the caller said that ``index_dir`` holds no index yet (mme probe, naming every split's list:
    the first split's reads fill it)."""
    from mme.data.dataset import list_identity
    from mme.data.lists import check_root
    from mme.models.config import DEFAULT_NORM_EPS
    from mme.train import distributed as dist
    from mme.train.precision import choose_precision

    out = file_path(out, "--out")
    on = checked_on
    if on is None:
        check_root(root, "--root")
        on, counts = check_embed_options([out], backend, device, index_dir, batch_size=batch_size,
                                         chunk_batches=chunk_batches, clips=clips, crops=crops,
                                         num_workers=num_workers)
        batch_size, chunk_batches, clips, crops, num_workers = counts.values()
        refuse_unowned(out, tokens, overwrite)
    info = dist.init_distributed(on)
    # one for every rank (a collective: before the block each rank runs on its own)
    precision, why = choose_precision(precision, torch.device(on), ranks=True)
    with dist.agreed():  # each rank reads the checkpoint and the list (a node, its own copies)
        ck, encoder, stride, segments, orientation, backend, checkpoint_id = read or read_encoder(
            checkpoint, img_size=img_size, num_frames=num_frames, stride=stride, segments=segments,
            orientation=orientation, backend=backend, index_dir=index_dir)
        unindexed = index_dir is not None and not holds_indices(index_dir)  # (a backend that keeps one: above)
        dev, pooled_norm = _prepare(encoder, on, ck.pooled_norm)  # (a classifier's fc_norm)
        dataset = build_test_set(source, encoder.cfg, clips=clips, crops=crops, stride=stride, segments=segments,
                               root=root, backend=backend, orientation=orientation, index_dir=index_dir,
                               entries=entries)
        if unindexed and not unindexed_said:  # the check of the list and root as given (before: `mme check LIST`)
            say_unindexed(index_dir, dataset.checked_as)
        elif not unindexed_said:  # (a folder filled by the train split's reads holds none of the next split's)
            dataset.say_index_missed("--index-dir")
        n = len(dataset)
        check_output(out, "--out")
        fingerprint = {"checkpoint": checkpoint_id, "source": _file_id([Path(source)]),
                       "clips": clips, "crops": crops, "stride": stride, "segments": segments, "tokens": tokens,
                       "reading": READING_VERSION,
                       "num_videos": n, "root": utf8_abspath(root or "."), "precision": precision,
                       "backend": backend, "orientation": orientation,
                       # (a clip given only: the files embedded without one stay this job's)
                       **{k: v for k, v in (("img_size", img_size), ("num_frames", num_frames)) if v is not None},
                       **({"fc_norm": True} if pooled_norm is not None else {}),
                       # (files embedded before a checkpoint's LayerNorm eps was read stay this job's at the default)
                       **({"norm_eps": encoder.cfg.norm_eps} if encoder.cfg.norm_eps != DEFAULT_NORM_EPS else {})}
        states = np.array([_file_state(dataset.path(i)) for i in range(n)])
        finished = _finished(out, fingerprint)
    dist.check_same_inputs({f"the checkpoint {checkpoint}": lambda: ck.identity,
                            f"the list {source}": lambda: list_identity(dataset)})
    dist.check_same_settings({k: v for k, v in fingerprint.items() if k not in NODE_COPIES},
                             "the options of mme embed", "every rank must be given the same options")
    changed, failed = set(), set()
    if finished is not None:
        changed = set(np.flatnonzero(np.asarray(finished["states"]) != states).tolist())
        failed = {f["index"] for f in finished["failures"]}
    # decided by every rank together (a rank that returned alone left the others at their next meeting: nodes that do
    # not share --out, which check_folder_shared then refuses, or see other states of the videos)
    verdicts = dist.all_gather_objects((finished is not None and not changed,
                                        finished is not None and not changed - failed))
    up_to_date, kept_if_refused = (all(v) for v in zip(*verdicts))
    if up_to_date:
        log.info("embed: %s is up to date (same checkpoint, list, root, views, precision and reading, every "
                 "video unchanged since%s), not recomputed", out,
                 f"; its {len(failed)} failed videos not tried again" if failed else "")
        return out
    partial = _partial_folder(out)
    try:
        try:
            dist.on_main(_open_partial, partial, fingerprint, out if finished is not None else None, states,
                         batch_size * chunk_batches)
        except MMEError as e:
            if not kept_if_refused:  # rows of replaced videos are not kept
                raise
            log.warning("embed: %s kept as it is, its %d failed videos not tried again: %s", out, len(failed), e)
            return out
        dist.check_folder_shared(partial, "--out")
        if changed:
            log.info("embed: %s is up to date but for %d videos that changed since (size or modification time, or "
                     "have appeared)%s: embedding them again", out, len(changed),
                     f" and its {len(failed - changed)} other failed videos" if failed - changed else "")
        done = {int(i) for p in _read_parts(partial, ("index",)) for i in p["index"]}  # failed rows: tried again
        todo = [i for i in range(n) if i not in done and i % info.world_size == info.rank]
        log.info("embed: %s, %s each (%s x %s), %d done before, %d for this rank; %s", counted(n, "video"),
                 counted(clips * crops, "view"), counted(clips, "clip"), counted(crops, "crop"), len(done), len(todo),
                 _device_and_precision(dev, precision, why))

        def flush(rows: list) -> None:
            if not rows:
                return
            batches = [r for r in rows if r[1] is not None]
            arrays = {
                "index": np.concatenate([b["index"].numpy() for b, f, _ in batches]) if batches else np.zeros(0, int),
                "failed": np.array([f["index"] for b, _, _ in rows for f in b["failed"]], dtype=np.int64),
                "error": np.array([f["error"] for b, _, _ in rows for f in b["failed"]], dtype=str),
            }
            if batches:
                arrays["x"] = torch.cat([f for _, f, _ in batches]).numpy()
                if tokens:
                    arrays["tokens"] = torch.cat([t for _, _, t in batches]).numpy()
            _write_part(partial, f"r{info.rank}", {**arrays, "state": states[arrays["index"]]})
            rows.clear()

        rows: list = []
        # every rank's parts written (a write that fails on one rank stops them all); the workers' warnings and advice
        # name its flags (mme.utils.said_as)
        with dist.agreed(), keys_as_flags(EMBED_KEYS, overrides=False):
            for item in _embedded(encoder, dataset, todo, batch_size=batch_size, num_workers=num_workers, device=dev,
                                 precision=precision, tokens=tokens, progress=progress and dist.is_main(),
                                 pooled_norm=pooled_norm, model=f"checkpoint {checkpoint}"):
                rows.append(item)
                if len(rows) >= chunk_batches:
                    flush(rows)
            flush(rows)
        warn_short(dataset, "embed", "features of frozen frames",  # (every rank's reads: each its share)
                   short_videos(dist.all_gather_objects(dataset.short_videos())))
        dist.on_main(_assemble, partial, out, source, dataset, fingerprint, states)
    finally:
        unlock_folder(partial)  # held by rank 0 alone, also when the job fails
    return out


def _assemble(partial: Path, out: Path, source: str | Path, dataset: Dataset, fingerprint: dict[str, Any],
              states: np.ndarray) -> None:
    """Gather every part into the final file; rows in list order, NaN and ``valid=False`` for failures, the state
    of every row's video (``states``, taken before any was decoded) in the sidecar. When every video failed,
    DataError, and the partial folder (failures only) is removed: a corrected command (another --root) is not
    taken for a different job's."""
    check_folder_held(partial)  # (another job's parts, where another job made the folder anew)
    n = len(dataset)
    paths = sorted(partial.glob("part-*.npz"))
    parts = [_read_part(path, ("index", "x", "failed", "error")) for path in paths]  # (grids: _PartGrids)
    with_rows = [p for p in parts if "x" in p]
    if not with_rows:
        first = next((str(p["error"][0]) for p in parts if len(p["error"])), "none listed")
        shutil.rmtree(partial, ignore_errors=True)
        raise DataError(f"all {counted(n, 'video')} of {source} failed; first error: {first}")
    dim = with_rows[0]["x"].shape[1]
    x = np.full((n, dim), np.nan, np.float32)
    labelled = getattr(dataset, "labelled", True)
    labels = (dataset.entries.labels.astype(np.int64) if labelled  # list order (the packed list's: no entry made)
              else np.full(len(dataset.entries), -1, np.int64))
    valid = np.zeros(n, bool)
    failures = []
    for p in parts:
        if "x" in p:
            x[p["index"]], valid[p["index"]] = p["x"], True
        failures += [utf8_named({"index": int(i), "path": dataset.path(int(i)), "error": str(e)}, "error")
                     for i, e in zip(p["failed"], p["error"])]
    missing = n - int(valid.sum()) - len(failures)
    if missing:
        raise DataError(f"{partial}: {missing} rows neither embedded nor failed; rerun the same command to finish")
    failures.sort(key=lambda f: f["index"])
    info = {**fingerprint, "dim": dim, "views": fingerprint["clips"] * fingerprint["crops"],
            "num_valid": int(valid.sum()), "failures": failures, "states": states.tolist(), "job": fingerprint,
            **code_version()}  # (beside the job, which a rerun compares: another commit embeds the same)
    write_features(out, x, valid, labels, _PartGrids(paths, valid) if fingerprint["tokens"] else None, info,
                   _kept_in(partial))
    shutil.rmtree(partial, ignore_errors=True)
    log.log(logging.WARNING if failures else logging.INFO, "embed: wrote %s (%d x %d), %d failed%s", out, n, dim,
            len(failures), f" (listed in {_sidecar_file(out)}, their rows NaN and not valid)" if failures else "")


class _PartGrids:
    """The token grids of the parts ``paths`` in list order, NaN in the rows not ``valid`` (failed videos), which
    :func:`write_features` writes straight into the final file, row by row, one part read at a time: assembling
    holds one part's grids, not every part's and the whole grid besides (twice the token file: 96 GB for ViT-B's
    grids of 10k videos at 16 x 224², after all the embedding), and the disk the parts and the final file alone.
    ``shape``: the whole grid's (float32, as the parts')."""

    def __init__(self, paths: list[Path], valid: np.ndarray):
        self.paths, self.valid = paths, valid
        grids = next(shape for shape in (_part_shape(path, "tokens") for path in paths) if shape is not None)
        self.shape = (len(valid), *grids[1:])  # (read from a header: write() reads each part's grids once)

    def write(self, f: BinaryIO, start: int) -> None:
        """Write the grids into the open file ``f``, the first row's at ``start``."""

        def put(index: np.ndarray, grids: Iterable[np.ndarray]) -> None:  # (a part's grids let go on return)
            for i, grid in zip(index, grids):
                f.seek(start + int(i) * grid.nbytes)
                f.write(np.ascontiguousarray(grid, np.float32))

        for path in self.paths:
            part = _read_part(path, ("index", "tokens"))
            if "tokens" in part:  # (not a part of failures alone)
                put(part["index"], part.pop("tokens"))
        put(np.flatnonzero(~self.valid), itertools.repeat(np.full(self.shape[1:], np.nan, np.float32)))
