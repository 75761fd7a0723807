"""Writing model checkpoints: our format (``save_pretrained``; the layout is described in
:mod:`mme.models.checkpoint`), Hugging Face VideoMAE directories (``export_hf``), and ``mme export`` (``export``:
any checkpoint :func:`~mme.models.checkpoint.read_checkpoint` reads, to either). Files are written atomically, and
a folder's files replace its old ones together: a failed write replaces none.

    save_pretrained(model, "out/model")       # load_model("out/model") rebuilds it
    export_hf(model, "out/hf")                # transformers.VideoMAEModel.from_pretrained("out/hf")
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
from pathlib import Path

import torch
import torch.nn as nn

from mme.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from mme.errors import CheckpointError, CheckpointUnreadable, ConfigError
from mme.models import convert, convert_config
from mme.models.checkpoint import (
    CLIP,
    CONFIG,
    WEIGHTS,
    Checkpoint,
    build_model,
    check_fits,
    checkpoint_config,
    checkpoint_files,
    read_checkpoint,
    select_part,
)
from mme.models.classifier import VideoClassifier
from mme.models.mae import MaskedAutoencoder
from mme.models.vit import VisionTransformer
from mme.train.checkpoint import run_checkpoints
from mme.utils import (
    as_given,
    atomic_path,
    check_output,
    counted,
    exclusive_lock,
    file_identity,
    file_path,
    flag,
    given_path,
    json_text,
    lock_beside,
    reading,
    remove_stale_temps,
    removing_made_folders,
    write_safetensors,
    writing,
)

log = logging.getLogger(__name__)

HF_KINDS = {"model": "VideoMAEModel", "pretraining": "VideoMAEForPreTraining",
            "classification": "VideoMAEForVideoClassification"}
HF_PREPROCESSOR = "preprocessor_config.json"
FOLDER_FILES = (CONFIG, WEIGHTS, HF_PREPROCESSOR)
"""What an export folder holds, of any format (ours: the first two)."""


def _write_folder(folder: Path, state: dict[str, torch.Tensor], metadata: dict[str, str], jsons: dict[str, dict]) \
        -> None:
    """Write a checkpoint folder, made if need be: the weights (``model.safetensors``) and ``jsons`` (``config.json``
    first), each to a temporary file beside it, then all in place, ``config.json`` last. A write that fails (a full
    disk) leaves the folder as it was, the checkpoint it held whole, never new weights beside an old config (an
    OSError named as :func:`~mme.utils.writing` names it); the temporary files of a write killed there before, of
    either format, are removed (:func:`~mme.utils.remove_stale_temps`). The old ``config.json``, without which the
    folder reads as no checkpoint, goes before the others are replaced, and a failure while they are (an I/O error,
    Ctrl-C) removes the new files put in place: no folder is left that reads as a checkpoint of parts of two, and
    the old files not yet replaced stay (the weights of the export it held)."""
    names = [*jsons, WEIGHTS]  # replaced in the reverse order: config.json last
    with writing(folder, then="nothing in it is replaced"):
        remove_stale_temps([folder / name for name in FOLDER_FILES])
        with contextlib.ExitStack() as stack:
            temps = {name: stack.enter_context(atomic_path(folder / name)) for name in names}
            write_safetensors(temps[WEIGHTS], state, metadata)
            for name, obj in jsons.items():
                temps[name].write_text(json_text(obj, sort_keys=True), encoding="utf-8")
            old = {name: file_identity(folder / name) for name in names}
            (folder / CONFIG).unlink(missing_ok=True)
            placing = stack.pop_all()  # the temporary files, put in place as it closes
    try:
        placing.close()
    except BaseException as e:
        placed = [name for name in names if file_identity(folder / name) not in (None, old[name])]
        for name in placed:
            with contextlib.suppress(OSError):
                (folder / name).unlink()
        kept = [name for name in names if name != CONFIG and old[name] and file_identity(folder / name) == old[name]]
        if not isinstance(e, OSError):
            raise
        new = f" and the new files put in place ({', '.join(placed)})" if placed else ""
        with writing(folder, then=f"its {CONFIG}{new} {'are' if placed else 'is'} removed: it holds no checkpoint"
                     + (f"; kept of the one it held: {', '.join(kept)}" if kept else "")):
            raise


def _unwrap_module(model: nn.Module) -> nn.Module:
    """The model inside DDP's and torch.compile's wrappers."""
    while isinstance(inner := getattr(model, "module", None) or getattr(model, "_orig_mod", None), nn.Module):
        model = inner
    return model


def describe(model: nn.Module) -> Checkpoint:
    """A Checkpoint of a live module (ours: MaskedAutoencoder, VisionTransformer, VideoClassifier), with what the
    checkpoint it was loaded from records beside it (``mme_record``: :data:`~mme.models.checkpoint.RECORD`)."""
    model = _unwrap_module(model)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    record = dict(getattr(model, "mme_record", {}))
    # a classifier's classes are its head's outputs: a head replaced for transfer (``clf.head = nn.Linear(D, 10)``)
    # leaves ``num_classes`` as built (a head of another kind: its keys do not fit, which _checked says)
    num_classes = model.head.out_features if isinstance(model, VideoClassifier) and isinstance(model.head, nn.Linear) \
        else getattr(model, "num_classes", None)
    names = record.get("class_names")
    if names is not None and len(names) != num_classes:
        record["class_names"] = None  # of the head the module was loaded with, since replaced
    if isinstance(model, MaskedAutoencoder):
        return Checkpoint("mae", model.cfg, state, "model", list(model.head_specs), **record)
    if isinstance(model, VideoClassifier):
        args = dict(num_classes=num_classes, pool=model.pool, fc_norm_eps=model.fc_norm.eps,
                    fc_drop=model.fc_dropout.p)
        return Checkpoint("classifier", model.cfg, state, "model", classifier=args, **record)
    if isinstance(model, VisionTransformer):
        return Checkpoint("encoder", model.cfg, state, "model", **record)
    raise CheckpointError(f"cannot save a {type(model).__name__}: expected MaskedAutoencoder, VisionTransformer "
                          "or VideoClassifier")


def _write_ours(ck: Checkpoint, path: Path) -> Path:
    meta = ck.meta()
    metadata = {"format": "pt", "mme": json.dumps(meta)}
    state = ck.file_state
    if path.suffix != ".safetensors":
        _write_folder(path, state, metadata, {CONFIG: meta})
        return path
    with writing(path, then="nothing is replaced"):  # one self-describing file, put in place when whole
        remove_stale_temps([path])
        with atomic_path(path) as tmp:
            write_safetensors(tmp, state, metadata)
    return path


def save_pretrained(model: nn.Module, path: str | os.PathLike) -> Path:
    """Save in our format: a directory (``model.safetensors`` + ``config.json``), or one ``.safetensors`` file
    when ``path`` ends so. Files are written atomically (a folder's together)."""
    return _write_ours(_checked(_as_checkpoint(model), live=True), Path(path))


def _as_checkpoint(model_or_path, encoder_only: bool = False, **hints) -> Checkpoint:
    """The checkpoint an export writes. A clip given (``img_size`` / ``num_frames``) for a file that records the clip
    its model was trained on is a ConfigError: the export would record the hint as that clip, and readers (``mme
    viz``, ``task.eval_only``) would take it for the trained one. A live module loaded with such hints
    (``load_model(F, num_frames=16)``, whose ``mme_record`` keeps them: ``Checkpoint.replaced``), which may have been
    trained at that clip since (fine-tuning in Python), is written with the clip it has, taken on trust (in the
    file's ``assumed``: its readers say so), said in a warning naming how to record it."""
    live = isinstance(model_or_path, nn.Module)
    ck = describe(model_or_path) if live else read_checkpoint(model_or_path, encoder_only=encoder_only, **hints)
    if ck.replaced:
        given = ", ".join(as_given(ck.given_as.get(k, k), getattr(ck.cfg, k)) for k in ck.replaced)
        recorded = ", ".join(f"{k}={v}" for k, v in ck.replaced.items())
        them = "it" if len(ck.replaced) == 1 else "them"
        if live:
            flags = " ".join(f"{flag(k)} {getattr(ck.cfg, k)}" for k in ck.replaced)
            log.warning("%s: the module was loaded with %s from a file that records the clip its model was trained on "
                        "(%s), so its file takes %s on trust (its assumed, which its readers say); if the model was "
                        "trained at that clip since, give %s when loading the file, or write one that records %s: mme "
                        "export FILE OUT %s; to save the model as trained (%s), load it without %s", given, them,
                        recorded, given, given, them, flags, recorded, them)
            return dataclasses.replace(ck, assumed=(*ck.assumed, *(k for k in ck.replaced if k not in ck.assumed)),
                                       replaced={})
        raise ConfigError(f"{given}: {model_or_path} records the clip its model was trained on ({recorded}), which "
                          f"its export records; leave {them} out (readers build the model for other clips: mme "
                          "embed's --num-frames / --img-size)")
    return ck


def _checked(ck: Checkpoint, live: bool = False) -> Checkpoint:
    """``ck`` once its weights are known to fill the model its config describes (every tensor, every shape): an
    export never writes a checkpoint that fails only when it is loaded, or loads with tensors left at random. Also a
    ``live`` module's (:func:`describe`), whose attributes may no longer describe it (its ``cfg`` or ``head_specs``
    changed, a head of another kind put in place after it was built), whose keys and shapes are checked against
    its model built on the meta device (no weights made; the fields it took on trust are said as it was loaded, not
    again)."""
    if not live:
        build_model(ck, strict=True)
        return ck
    try:
        check_fits(ck)
    except CheckpointError as e:
        raise CheckpointError("cannot save this module: its weights do not fit the model its attributes describe "
                              "(cfg, head_specs, a head put in place after it was built), which its file would "
                              f"record ({e})") from e
    return ck


def export_hf(model_or_path, out_dir: str | os.PathLike, kind: str = "model", norm_pix: bool | None = None,
              classes: str | os.PathLike | None = None, **hints) -> Path:
    """Write a Hugging Face directory (``config.json`` + ``model.safetensors``, and the clips' preprocessing in
    ``preprocessor_config.json``: :func:`hf_preprocessor`) that ``transformers``
    ``VideoMAEModel`` (kind 'model'), ``VideoMAEForPreTraining`` ('pretraining': one linear pixel head) or
    ``VideoMAEForVideoClassification`` ('classification': mean pooling) loads with ``from_pretrained``.

    HF models take clips as ``(B, T, C, H, W)`` (ours: ``(B, C, T, H, W)``). HF's decoder final norm and fc_norm
    use eps 1e-5 where ours default to 1e-6: the pixel loss differs by ~1e-6 relative and classifier logits by
    ~3e-6 (measured, tests/test_checkpoint.py); encoder outputs are identical. ``norm_pix`` (VideoMAE's
    ``norm_pix_loss``): unset, what the source records (a run's ``target.norm_pix``, an export's, a Hugging Face
    config's), else True. Fields the source took on trust go into ``mme_assumed`` (see ``Checkpoint.assumed``),
    the record of its run into ``mme_run`` (``Checkpoint.run_record``), where its weights were trained into
    ``mme_origin`` (``Checkpoint.origin``). ``classes``: a classifier's class-name
    file (``task.classes``'s format), for one whose file records no names (other names than it records are
    refused); unset, the names it records, else ``LABEL_<id>``."""
    if kind not in HF_KINDS:
        raise CheckpointError(f"unknown Hugging Face export kind {kind!r}; available: {sorted(HF_KINDS)}")
    ck = _checked(select_part(_as_checkpoint(model_or_path, encoder_only=kind == "model", **hints), kind),
                  live=isinstance(model_or_path, nn.Module))
    if ck.pooled_norm is not None:
        log.warning("%s: a classifier's encoder: Hugging Face's VideoMAEModel has no place for the classifier's "
                    "fc_norm (the LayerNorm of its pooled tokens, which mme embed applies), so it is dropped and the "
                    "export's features differ from mme embed's of this file; the classifier itself exported as "
                    "kind 'classification' (--kind classification) keeps it, with its head", ck.source)
    if norm_pix is None:
        norm_pix = True if ck.norm_pix is None else ck.norm_pix
    cfg, state, labels = ck.cfg, dict(ck.state), None
    if ck.kind == "mae":
        pixel_dim = cfg.tubelet_size * cfg.patch_size ** 2 * cfg.in_chans
        h = ck.heads
        if len(h) != 1 or h[0].hidden or h[0].activation != "none" or h[0].dim != pixel_dim:
            raise CheckpointError(f"{ck.source}: VideoMAEForPreTraining needs exactly one linear pixel head of dim "
                                  f"{pixel_dim}; this model has {[(s.name, s.dim, s.hidden) for s in h]}")
        prefix = f"heads.{h[0].name}."
        state = {("heads.pixel." + k[len(prefix):]) if k.startswith(prefix) else k: v for k, v in state.items()}
    if ck.kind == "classifier":
        if ck.classifier.get("pool") != "mean":
            raise CheckpointError(f"{ck.source}: HF VideoMAEForVideoClassification mean-pools without the encoder's "
                                  f"final norm; this classifier uses pool={ck.classifier.get('pool')!r}")
        labels = _class_names(ck, classes, None if isinstance(model_or_path, nn.Module) else model_or_path)
    try:
        hf_state = convert.to_hf(state, ck.kind)
        hf_cfg = convert_config.config_to_hf(cfg, HF_KINDS[kind], use_mean_pooling=not ck.final_norm,
                                             norm_pix=norm_pix, labels=labels, assumed=ck.assumed,
                                             run=ck.run_record, origin=ck.origin, decoder=ck.kind == "mae",
                                             dtype=next(v.dtype for v in hf_state.values() if v.is_floating_point()))
    except CheckpointError as e:
        raise CheckpointError(f"{ck.source}: {e}") from e
    out = Path(out_dir)
    _write_folder(out, hf_state, {"format": "pt"}, {CONFIG: hf_cfg, HF_PREPROCESSOR: hf_preprocessor(cfg.img_size)})
    return out


def hf_preprocessor(img_size: int) -> dict:
    """The ``VideoMAEImageProcessor`` settings of the clips our models read (``AutoImageProcessor.from_pretrained``
    of the export): the short side resized to the input size, the centre crop, [0, 1] and ImageNet's mean and
    std. Without it, transformers' defaults normalise with mean and std 0.5: other inputs than the model learned."""
    return {"image_processor_type": "VideoMAEImageProcessor", "do_resize": True, "size": {"shortest_edge": img_size},
            "resample": 2, "do_center_crop": True, "crop_size": {"height": img_size, "width": img_size},
            "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": list(IMAGENET_MEAN),
            "image_std": list(IMAGENET_STD)}


def _class_names(ck: Checkpoint, classes: str | os.PathLike | None, src: str | os.PathLike | None) -> list[str]:
    """A classifier's class names by id: those its file (``src``; None: a module) records (a fine-tuning run's
    ``task.classes``), else from ``classes`` (other names than the recorded ones are a ConfigError), else
    ``LABEL_<id>`` (said)."""
    from mme.data.lists import agreeing_classes, read_classes

    n = ck.classifier["num_classes"]
    names = agreeing_classes(read_classes(classes, "classes") if classes is not None else None, "--classes", classes,
                             ck.class_names, ck.source, src)
    if names is None:
        named = (ck.run_config.get("task") or {}).get("classes")
        log.warning("%s: no class names recorded%s; exported as LABEL_0 .. LABEL_%d (give --classes FILE)",
                    ck.source, f" (its run read them from {named}, before checkpoints kept them)" if named else "",
                    n - 1)
        return [f"LABEL_{i}" for i in range(n)]
    if len(names) != n:
        raise ConfigError(f"classes {classes or ck.source}: {len(names)} names for a classifier of {n} classes")
    return names


def _check_replaced(src: str | os.PathLike, out: Path, folder: bool, overwrite: bool) -> None:
    """Refuse to write over ``src``'s own files, or a ``config.json`` of another program that ``out`` holds, and,
    unless ``overwrite``, over a checkpoint ``out`` holds."""
    written = [out / CONFIG, out / WEIGHTS] if folder else [out]
    # SRC's files (a sharded one's shards too), and for a folder those it would be read from: a model.safetensors
    # written into a Hugging Face folder of pytorch_model.bin is read in place of its weights (by transformers too)
    src = Path(src)
    with reading(src, CheckpointUnreadable):  # (a folder on the way this user may not enter: EACCES)
        read = [*checkpoint_files(src), src / WEIGHTS] if src.is_dir() else [src]
    if {p.resolve() for p in written} & {p.resolve() for p in read}:
        raise ConfigError(f"out {out}: would replace the files of SRC {src}, the checkpoint being exported, or be "
                          "read in their place; write the export elsewhere")
    if folder and (saved := run_checkpoints(out)):
        raise ConfigError(f"out {out}: a training run's folder (it holds {counted(len(saved), 'checkpoint')}), whose "
                          "checkpoints an export there would be read in place of; write the export elsewhere")
    if folder and (out / CONFIG).is_file() and checkpoint_config(out) is None:
        raise ConfigError(f"out {out}: its {CONFIG} is not a checkpoint's (neither an mme nor a Hugging Face VideoMAE "
                          "config): another program's file, which the export would replace; write the export "
                          "elsewhere")
    if folder:
        held = [p.name for p in checkpoint_files(out)] if out.is_dir() else []
    else:
        held = [out.name] if out.is_file() else []
    if held and not overwrite:
        raise ConfigError(f"out {out}: already holds a checkpoint ({', '.join(held)}); give --overwrite to replace "
                          "it, or another OUT")


def export(src: str | os.PathLike, out: str | os.PathLike, format: str = "mme", kind: str | None = None,
           norm_pix: bool | None = None, classes: str | os.PathLike | None = None, overwrite: bool = False,
           **hints) -> Path:
    """``mme export``: convert any supported checkpoint to ``format`` 'hf' (a Hugging Face directory), 'mme'
    (our directory) or 'safetensors' (our single file). ``kind``: 'model' (encoder only), 'pretraining',
    'classification'; default: 'model' for hf, what the source holds otherwise. ``norm_pix``: hf pre-training
    only; ``classes``: hf classification only (:func:`export_hf`). A checkpoint already at ``out`` is replaced
    only with ``overwrite``, ``src``'s own files never; when it fails, its files are removed, and the folders
    made for ``out`` that hold nothing else (another job may have written there meanwhile). The clip hints
    (``img_size`` / ``num_frames``) give the clip of a file that records none: another than a file records is
    refused (:func:`_as_checkpoint`)."""
    if kind is not None and kind not in HF_KINDS:
        raise CheckpointError(f"unknown export kind {kind!r}; available: {sorted(HF_KINDS)}")
    if norm_pix is not None and (format != "hf" or kind != "pretraining"):
        raise ConfigError("--norm-pix / --no-norm-pix set the loss of a Hugging Face pre-training export "
                          "(--format hf --kind pretraining) only")
    if classes is not None and (format != "hf" or kind != "classification"):
        raise ConfigError("--classes names the classes of a Hugging Face classification export "
                          "(--format hf --kind classification) only")
    if format not in ("hf", "mme", "safetensors"):
        raise CheckpointError(f"unknown export format {format!r}; available: hf, mme, safetensors")
    # (a file: x.safetensors/ refused; either: an empty OUT, which Path takes for the working folder)
    out = file_path(out, "out") if format == "safetensors" else given_path(out, "out")
    if format == "safetensors" and out.suffix != ".safetensors":
        out = out.with_name(out.name + ".safetensors")
    if format in ("mme", "hf") and out.suffix == ".safetensors":
        raise CheckpointError(f"{out}: --format {format} writes a directory; use --format safetensors for one file "
                              "(ours), or a name without .safetensors")
    folder = format != "safetensors"
    _check_replaced(src, out, folder, overwrite)
    with removing_made_folders() as made:  # nothing exported: none of its files left, nor the folders made for them
        check_output(out, "out", folder=folder)
        # one export into OUT at a time, each looking at what it holds again once it has it: two at once into a new
        # OUT both passed the look above, and the second replaced the first's without a word. A refusal here removes
        # nothing (the files are the other export's), whatever folders this one made
        with exclusive_lock(export_lock(out, folder), remove=True, unopened="choose another OUT"):
            _check_replaced(src, out, folder, overwrite)
            path = _export(src, out, format, kind, norm_pix, classes, made, **hints)
    log.info("exported %s -> %s (%s)", src, path, format)
    return path


def export_lock(out: Path, folder: bool) -> Path:
    """The lock :func:`export` holds while it looks at and writes ``out``: in the folder, or beside the file (where
    its temporary files are written: :func:`~mme.utils.lock_beside`)."""
    return out / ".export.lock" if folder else lock_beside(out)


def _export(src: str | os.PathLike, out: Path, format: str, kind: str | None, norm_pix: bool | None,
            classes: str | os.PathLike | None, made: list, **hints) -> Path:
    """:func:`export`'s writing, ``out`` locked and checked; its files are removed where it fails and ``made`` (the
    folders made for ``out``) is not empty."""
    given_as = {k: flag(k) for k in (*convert_config.HEAD_WIDTHS, *CLIP)}  # (read_checkpoint's hints, as flags)
    try:
        if format == "hf":
            return export_hf(src, out, kind or "model", norm_pix, classes, given_as=given_as, **hints)
        ck = _as_checkpoint(src, encoder_only=kind == "model", given_as=given_as, **hints)
        return _write_ours(_checked(select_part(ck, kind) if kind else ck), out)
    except BaseException:  # its files, where folders were made for them; those folders, by removing_made_folders
        if made:
            for file in [out] if format == "safetensors" else [out / name for name in FOLDER_FILES]:
                with contextlib.suppress(OSError):
                    file.unlink(missing_ok=True)
        raise
