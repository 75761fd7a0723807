"""Reading model checkpoints and rebuilding modules from them: ours, the original VideoMAE/MME ``.pth`` files,
Hugging Face VideoMAE. Writing them (our format, Hugging Face export) is in :mod:`mme.models.export`.

Our format: a directory with ``model.safetensors`` + ``config.json`` (``{"format": "mme", "version", "kind": "mae" |
"encoder" | "classifier", "model": ModelConfig fields, "heads": [HeadSpec fields], "run": the record of the run that
made it, "origin": where its weights were trained (``Checkpoint.origin``), "pooled_norm": {"eps"} of a classifier's
encoder, whose ``fc_norm.*`` the weights keep, ...}``), or one ``.safetensors`` file carrying the same JSON in its
metadata. Readers accept, besides: our training checkpoints (a torch file with ``model`` = our state dict and ``config``
= the run config with a ``model`` section), the original VideoMAE/MME ``.pth`` files (state dict under ``model`` or
``module``, or bare) and Hugging Face VideoMAE directories (``config.json`` + ``model.safetensors`` or
``pytorch_model.bin``, or the shards of either and their ``.index.json``). Torch files are read with
``weights_only=True``: no pickled code runs. Every failure is one CheckpointError naming the file and the reason.

    model = load_model("run/ckpt")            # MaskedAutoencoder / VisionTransformer / VideoClassifier
    enc = load_encoder("checkpoint.pth")      # VisionTransformer in eval mode: (B, 3, T, H, W) -> (B, N, D)
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import functools
import hashlib
import json
import logging
import math
import os
import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import torch
import torch.nn as nn
from safetensors import safe_open

from mme import __version__
from mme.config import from_dict
from mme.errors import (
    CheckpointError,
    CheckpointUnreadable,
    ClipNotDivisible,
    ConfigError,
    DataError,
    UnknownConfigKeys,
)
from mme.models import convert, convert_config
from mme.models.classifier import FC_NORM_EPS, VideoClassifier
from mme.models.config import LAYER_SCALES, UNSHAPED_ENCODER_FIELDS, ModelConfig, mlp_width
from mme.models.mae import HeadSpec, MaskedAutoencoder
from mme.models.vit import VisionTransformer, sincos_table
from mme.utils import (
    SAFETENSORS_HEADER_MAX,
    as_given,
    caller_generator_kept,
    cannot_read,
    check_count,
    counted,
    error_reason,
    flag,
    is_positive_number,
    reading,
    torch_as_mme,
)

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
WEIGHTS, CONFIG = "model.safetensors", "config.json"
HF_BIN = "pytorch_model.bin"  # a Hugging Face directory's weights when it has no WEIGHTS
INDEX_SUFFIX = ".index.json"  # a Hugging Face directory's index of the shards of its WEIGHTS or HF_BIN
KINDS = ("mae", "encoder", "classifier")
POOLED_NORM = "fc_norm"
"""The classifier's LayerNorm of its pooled tokens (``Checkpoint.pooled_norm``): its tensors' prefix in our files."""


@dataclass
class Checkpoint:
    """A checkpoint read into our layout: enough to rebuild the module."""

    kind: str
    """'mae', 'encoder' or 'classifier'."""
    cfg: ModelConfig
    state: dict[str, torch.Tensor]
    """Our state dict for ``kind``."""
    source: str
    """The file and the layout it was read as, for messages."""
    heads: list[HeadSpec] = field(default_factory=list)
    """mae only: the prediction heads."""
    classifier: dict = field(default_factory=dict)
    """classifier only: VideoClassifier keyword arguments (num_classes, pool, fc_norm_eps, fc_drop)."""
    pooled_norm: nn.LayerNorm | None = None
    """encoder only, read from a classifier (``encoder_only``), or from our export of its encoder, which keeps it: the
    classifier's ``fc_norm``, the LayerNorm of its pooled tokens, which its head sees; that classifier's features go
    through it (``mme embed``), as VideoMAE's ``forward_features`` of a mean-pooled classifier."""
    run_config: dict = field(default_factory=dict)
    """The config sections of the run that made it: all of them (``model``, ``target``, ``data``, ...) from our
    training checkpoints; from our exports and mme's Hugging Face ones, the parts readers use (``run_record``)."""
    run_folder: str | None = None
    """Our training checkpoints: the working folder of the run that made it (its meta's ``cwd``), which the relative
    paths of its ``run_config`` (``data.list_file``, ``data.root``) start from."""
    run_list: tuple[int, tuple[str, ...]] | None = None
    """Our training checkpoints: what the run that made it read from its training list, its item count and content
    digests (its meta's ``items`` and ``list_files_digest``: :func:`mme.data.dataset.content_digest`); None for
    one that records none (an earlier mme's)."""
    assumed: tuple[str, ...] = ()
    """ModelConfig fields taken on trust because no file on the way recorded them (the clip geometry and head
    counts of original ``.pth`` files): said when a module is built, carried by every export (so a converted file
    does not pass a guess off as a record), and replaced by hints and by read_checkpoint's ``fallback``'s head
    counts (its clip, taken where the file records none, stays here)."""
    from_fallback: tuple[str, ...] = ()
    """The head counts the file records none of that were taken from read_checkpoint's ``fallback`` (its width
    being the file's), in place of a guess from the width."""
    norm_pix: bool | None = None
    """Whether the pixel loss of the run that made it normalises each patch (VideoMAE's ``norm_pix_loss``), where
    a file records it: our exports' ``norm_pix`` and Hugging Face configs' ``norm_pix_loss`` (what ``mme export
    --norm-pix`` / ``--no-norm-pix`` set), else the run's ``target.norm_pix``, which our training checkpoints and
    exports carry, whatever part of the model is read."""
    class_names: list[str] | None = None
    """classifier only: its classes' names by id, where a file records them (a fine-tuning run's ``task.classes``,
    our exports)."""
    replaced: dict[str, int] = field(default_factory=dict)
    """The clip fields the file records that hints replaced, with the recorded values: the model runs on other clips
    (``mme embed``), but is no longer the one trained (``mme viz`` refuses them)."""
    given_as: dict[str, str] = field(default_factory=dict)
    """How the command that read it gives the ModelConfig fields a file may not record: its flags or config keys
    (``{"img_size": "--img-size"}``, read_checkpoint's ``given_as``), for messages; empty where it was read in
    Python, whose keyword arguments the messages name."""
    origin: dict = field(default_factory=dict)
    """Where its weights were trained, carried by every export of the file (``origin`` of ours, ``mme_origin`` of a
    Hugging Face config): our training checkpoint's file name, its step, and its run's id, mme version, commit and
    precision (:data:`ORIGIN_META`); not by a module's (``save_pretrained``), which may have trained since."""

    @functools.cached_property
    def identity(self) -> str:
        """What says which weights it holds, beside another rank's copy of its file (a file's size and time do not:
        :func:`mme.train.distributed.check_same_inputs`): a digest of its tensors (names, dtypes, shapes and bytes;
        the pooled norm's too: :attr:`file_state`), ``weights <16 hex digits>``: 0.45-0.95 s for ViT-B's encoder
        (86M) on one core of a 2-core Xeon (AVX-512)."""
        state = self.file_state
        digest = hashlib.sha1(usedforsecurity=False)
        for name in sorted(state):
            t = state[name].detach().cpu().contiguous().reshape(-1)
            digest.update(f"{name}:{t.dtype}:{tuple(state[name].shape)};".encode())
            digest.update(t.view(torch.uint8).numpy().data)
        return f"weights {digest.hexdigest()[:16]}"

    @property
    def encoder_state(self) -> dict[str, torch.Tensor]:
        return convert.encoder_part(self.state, self.kind)

    @property
    def clip_stride(self) -> int | None:
        """The raw frames between a clip's frames in the run that made it (our training checkpoints of runs that
        sampled strided clips), else None."""
        from mme.data.dataset import DataConfig  # (not at import: it brings the readers)

        data = self.run_config.get("data")
        if isinstance(data, dict) and data.get("sampling", DataConfig.sampling) == "stride":
            return int(data.get("stride", DataConfig.stride))
        return None

    @property
    def run_segments(self) -> bool:
        """Whether the run that made it sampled TSN segments (``data.sampling=segments``)."""
        data = self.run_config.get("data")
        return isinstance(data, dict) and data.get("sampling") == "segments"

    @property
    def clip_orientation(self) -> str | None:
        """How the run that made it read its frames (``data.orientation``: 'coded', or 'display' as a phone video's
        display matrix turns them), where a file records it, else None."""
        data = self.run_config.get("data")
        return data.get("orientation") if isinstance(data, dict) else None

    @property
    def clip_backend(self) -> str | None:
        """The video decoder the run that made it read its frames with (``data.backend``), where a file records it,
        else None."""
        data = self.run_config.get("data")
        return data.get("backend") if isinstance(data, dict) else None

    def run_setting(self, given, setting: str, command: str):
        """``given`` where the command line set it, else the ``data.<setting>`` of the run that made it (``stride``:
        :attr:`clip_stride`, ``orientation``: :attr:`clip_orientation`, ``backend``: :attr:`clip_backend`), else
        DataConfig's default; the taken one is said in the log as ``command``'s (where the file records no run, by
        :meth:`warn_no_run`)."""
        if given is not None:
            return given
        from mme.data.dataset import DataConfig

        recorded = {"stride": self.clip_stride, "orientation": self.clip_orientation,
                    "backend": self.clip_backend}[setting]
        value = recorded if recorded is not None else getattr(DataConfig, setting)
        why = (f"its run's data.{setting}" if recorded is not None else
               "default; its run sampled TSN segments, which take none" if setting == "stride" and self.run_segments
               else "default")
        if self.run_config:
            log.info("%s: %s %s (%s)", command, setting, value, why)
        return value

    def run_backend(self, given: str | None, command: str, option: str = "--backend") -> str:
        """The video decoder of ``command``'s clips: ``given`` (``option``), with a warning where it is not the run's
        (the backends give other frames of one file: opencv converts colours itself, HDR ones too, where pyav returns
        the signal; pyav and pyav-cuda, FFmpeg's frames on the CPU or the GPU, count as one), else the run's
        ``data.backend`` (:meth:`run_setting`), refused where this process cannot use it (ConfigError naming
        ``option`` pyav, which reads the videos anyway), but pyav-cuda where it cannot decode on CUDA: pyav, said."""
        from mme.data.video import require_backend
        from mme.motion.cache import same_frames

        recorded = self.clip_backend
        if given is not None:
            if not same_frames(recorded, given):
                log.warning("%s: %s %s decodes other frames than its run's data.backend %s (colours, of HDR and "
                            "10-bit files above all), so its clips are not those the model was trained on; leave %s "
                            "out to read them as its run did", command, option, given, recorded, option)
            return given
        try:  # (before run_setting logs it taken: one line says the backend read with)
            if recorded is not None:  # (none: DataConfig's pyav, usable everywhere)
                require_backend(recorded, "its run's data.backend")
        except ConfigError as e:
            if recorded != "pyav-cuda":
                raise ConfigError(f"{e}; {as_given(option.rstrip('='), 'pyav')} reads its videos anyway, other "
                                  "frames than its run's (warned)") from e
            log.info("%s: backend pyav, its run's pyav-cuda decoder on the CPU (%s)", command, e)
            return "pyav"
        return self.run_setting(None, "backend", command)

    def warn_no_run(self, command: str, taken: list[tuple[str, str | None]]) -> None:
        """Where the file records no run (an export made before exports recorded their run, an original or Hugging
        Face file): one warning of ``command`` naming what it takes on trust of that run, ``taken`` (each setting
        as taken, and the option that gives it, None where none does), which the run may have had otherwise."""
        if self.run_config or not taken:
            return
        options = [option for _, option in taken if option]
        log.warning("%s: %s records no run (an export made before exports recorded their run's clips, or a file made "
                    "otherwise than by an mme run), so its run may have had other settings than these, taken on "
                    "trust: %s%s", command, self.source, "; ".join(setting for setting, _ in taken),
                    f"; give them with {', '.join(options)}" if options else "")

    def run_sampling(self, stride: int | None, segments: bool, command: str) -> tuple[int | None, bool]:
        """``(stride, segments)`` of ``command``'s clips: TSN ``segments`` or strided clips at ``stride`` where the
        command line gives either, else TSN segments where the run that made it sampled them (``data.sampling``,
        said in the log as ``command``'s), else strided at :meth:`run_setting`'s stride; the stride None for
        segments."""
        if segments and stride is not None:
            raise ConfigError(f"--segments and --stride {stride}: TSN segments take no stride; give one")
        if stride is None and not segments and self.run_segments:
            log.info("%s: clips by TSN segments (its run's data.sampling)", command)
            return None, True
        return (None, True) if segments else (self.run_setting(stride, "stride", command), False)

    def run_views(self, stride: int | None, segments: bool, orientation: str | None, command: str,
                  options: tuple[str, str, str] = ("--stride or --segments", "--orientation", "--backend"),
                  backend: str | None = None) -> tuple[int | None, bool, str, str]:
        """``(stride, segments, orientation, backend)`` of ``command``'s test clips, each as given, else as the run
        that made it read its clips (:meth:`run_sampling`, :meth:`run_setting`, :meth:`run_backend`); what was taken
        on trust of a file that records no run is said in one warning naming ``options`` (those of stride or
        segments, of orientation, of the backend)."""
        unset = {"stride": stride is None and not segments, "orientation": orientation is None,
                 "backend": backend is None}
        stride, segments = self.run_sampling(stride, segments, command)
        orientation = self.run_setting(orientation, "orientation", command)
        backend = self.run_backend(backend, command, options[2])
        self.warn_no_run(command, [(f"{name} {value}", option) for name, value, option in (
            ("stride", stride, options[0]), ("orientation", orientation, options[1]), ("backend", backend, options[2]))
            if unset[name]])
        return stride, segments, orientation, backend

    @property
    def run_record(self) -> dict:
        """What readers take from the run that made it, carried by every export (``run`` of ours, ``mme_run`` of a
        Hugging Face config): its clips (``data.sampling`` / ``data.stride``, for :meth:`run_sampling`;
        ``data.orientation``; ``data.backend``, for :meth:`run_backend`) and its ``target`` section (``mme viz``)."""
        out = {}
        data = self.run_config.get("data")
        if isinstance(data, dict):
            out["data"] = {k: data[k] for k in ("sampling", "stride", "orientation", "backend") if k in data}
        if isinstance(self.run_config.get("target"), dict):
            out["target"] = self.run_config["target"]
        return out

    @property
    def file_state(self) -> dict[str, torch.Tensor]:
        """The tensors its file holds: :attr:`state`, and an encoder's :attr:`pooled_norm` under the classifier's
        names (``fc_norm.*``), which our format keeps beside the encoder (``pooled_norm`` of :meth:`meta`)."""
        if self.pooled_norm is None:
            return self.state
        return {**self.state, **{f"{POOLED_NORM}.{k}": v.detach() for k, v in self.pooled_norm.state_dict().items()}}

    @property
    def final_norm(self) -> bool:
        """Whether the encoder has its final LayerNorm (not the case after mean-pooled fine-tuning)."""
        return "norm.weight" in self.encoder_state

    def meta(self) -> dict:
        out = {"format": "mme", "version": FORMAT_VERSION, "kind": self.kind, "model": dataclasses.asdict(self.cfg)}
        if self.assumed:
            out["assumed"] = list(self.assumed)
        if self.run_record:
            out["run"] = self.run_record
        if self.kind == "mae":
            out["heads"] = [dataclasses.asdict(h) for h in self.heads]
        if self.norm_pix is not None:  # (any part: an encoder's too, so that its read does not take its run's)
            out["norm_pix"] = self.norm_pix
        if self.pooled_norm is not None:
            out["pooled_norm"] = {"eps": self.pooled_norm.eps}
        if self.origin:
            out["origin"] = self.origin
        if self.kind == "classifier":
            out["classifier"] = dict(self.classifier)
            if self.class_names is not None:
                out["classes"] = list(self.class_names)
        return out


# --- reading ---

def _read_json(path: Path) -> dict:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))  # (JSON is UTF-8, whatever the locale)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: unreadable JSON ({e})") from e
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(obj).__name__}")
    return obj


def _head(path: Path) -> bytes:
    """The first 4 bytes of ``path``; CheckpointUnreadable with the reason where it cannot be opened (safetensors'
    reader calls a file without read permission another format)."""
    try:
        with open(path, "rb") as f:
            return f.read(4)
    except OSError as e:
        raise CheckpointUnreadable(cannot_read(path, e)) from e


def safetensors_header(path: Path) -> dict | None:
    """The JSON header a safetensors file starts with (an 8-byte little-endian length, then a JSON object of that
    many bytes), whatever the file's name; None where ``path`` does not start so (another format, or a file cut
    inside its header). CheckpointUnreadable with the reason where it cannot be opened."""
    try:
        with open(path, "rb") as f:
            prefix = f.read(9)
            if len(prefix) < 9 or prefix[8:] != b"{":
                return None
            size = int.from_bytes(prefix[:8], "little")
            if size > SAFETENSORS_HEADER_MAX:
                return None
            text = prefix[8:] + f.read(size - 1)
    except OSError as e:
        raise CheckpointUnreadable(cannot_read(path, e)) from e
    try:
        header = json.loads(text) if len(text) == size else None
    except ValueError:  # (json's and the UTF-8 decoder's)
        return None
    return header if isinstance(header, dict) else None


def checkpoint_config(folder: Path) -> dict | None:
    """``folder``'s config.json where it is a checkpoint's (an mme or a Hugging Face VideoMAE config), else None:
    none there, or another program's file (JSON of other keys, or no JSON object at all)."""
    try:
        meta = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ours_or_hf = isinstance(meta, dict) and (meta.get("format") == "mme" or meta.get("model_type") == "videomae")
    return meta if ours_or_hf else None


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    _head(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    except Exception as e:  # safetensors raises its own error types for truncated / non-safetensors files
        raise CheckpointError(f"{path}: not a readable safetensors file (truncated or another format): {e}") from e


def _damaged_member(file: BinaryIO, path: Path) -> str | None:
    """Why the zip container ``path`` (torch.save's) is damaged where a member's bytes fail their CRC-32, which
    torch.load does not check (a bit flipped inside a tensor loads as other weights, without a word): the first such
    member named, in one streamed read of the file (1 MiB at a time); None where every member passes. A member whose
    stored CRC-32 is 0 is not checked: torch writes 0 for each member of a file saved with its CRC-32s off
    (``torch.serialization.set_crc32_options(False)``), which torch.load reads. ``file``: ``path`` open, as torch.load
    read it (the same file, though its name were removed or replaced since). CheckpointUnreadable with the reason
    where it cannot be read."""
    try:
        with zipfile.ZipFile(file) as z:
            for info in z.infolist():
                if info.CRC == 0:  # (saved without CRC-32s; an empty member's is 0 too: nothing to check)
                    continue
                try:
                    with z.open(info) as member:
                        while member.read(1 << 20):
                            pass
                except zipfile.BadZipFile:  # (zipfile's testzip's reason: a member's CRC-32 or its header)
                    return (f"member {info.filename} fails its CRC-32 check: its bytes were changed after it was "
                            "written")
    except zipfile.BadZipFile as e:  # (torch read it, zipfile cannot: its directory damaged)
        return f"BadZipFile: {error_reason(e)}"
    except OSError as e:
        raise CheckpointUnreadable(cannot_read(path, e)) from e
    return None


def torch_load(path: Path, mmap: bool = False):
    """``torch.load(weights_only=True)``; argparse.Namespace (the ``args`` of VideoMAE/MME files) is allowed. Every
    failure is one CheckpointError naming the file and the reason; a zip container's members are checked against
    their CRC-32 (:func:`_damaged_member`). ``mmap``: tensors stay in the file, read when touched (a zip container's,
    not checked then: its caller reads a few values, not the weights; a legacy pickle is read whole)."""
    head = _head(path)
    if head != b"PK\x03\x04" and head[:1] != b"\x80":  # torch.save's zip container, or its legacy pickle
        raise CheckpointError(f"{path}: unknown checkpoint format (not a PyTorch or safetensors file, nor a checkpoint "
                              f"directory; it starts with {head!r})")
    allowed = torch.serialization.safe_globals([argparse.Namespace])  # outside the try: not a file's fault
    checked = head == b"PK\x03\x04" and not mmap  # (a memory map needs the name)
    try:
        file = open(path, "rb") if checked else None  # one open for the load and the check
    except OSError as e:
        raise CheckpointUnreadable(cannot_read(path, e)) from e
    with file or contextlib.nullcontext():
        return _torch_load(path, file, head, mmap, allowed)


def _torch_load(path: Path, file: BinaryIO | None, head: bytes, mmap: bool, allowed):
    """:func:`torch_load`'s load of ``path`` (``file``: it open, where a zip container's CRC-32s are checked)."""
    try:
        with allowed:
            obj = torch.load(file or path, map_location="cpu", weights_only=True, mmap=mmap and head == b"PK\x03\x04")
    except pickle.UnpicklingError as e:
        if "Weights only load failed" in str(e):
            first = next((ln for ln in str(e).splitlines() if "GLOBAL" in ln or "Unsupported" in ln), "")
            first = first.split(". Please")[0].strip()  # without torch's advice on how to load it anyway
            raise CheckpointError(f"{path}: refusing to unpickle objects other than tensors and plain containers "
                                  f"(weights_only=True, as loading them could run code): {first}") from e
        error = e
    except Exception as e:  # torch raises RuntimeError, EOFError, KeyError, ... for damaged or foreign files
        # a read's OSError, maybe under torch's RuntimeError; EINVAL is torch seeking before a damaged file's start
        io_error = e if isinstance(e, OSError) else e.__cause__ or e.__context__
        if isinstance(io_error, OSError) and io_error.errno != errno.EINVAL:
            raise CheckpointUnreadable(cannot_read(path, io_error)) from e
        error = e
    else:  # (outside the try: its reasons are its own)
        damaged = None if file is None else _damaged_member(file, path)
        if damaged is None:
            return obj
        raise CheckpointError(f"{path}: truncated or corrupt PyTorch checkpoint ({damaged})")
    why = type(error).__name__ + (f": {error_reason(error)}" if str(error).strip() else "")
    raise CheckpointError(f"{path}: truncated or corrupt PyTorch checkpoint ({why})") from error


def _unwrap(obj, path: Path) -> dict[str, torch.Tensor]:
    """The state dict inside a ``{"model": ...}`` / ``{"module": ...}`` / ``{"state_dict": ...}`` wrapper, or bare."""
    for _ in range(2):
        if isinstance(obj, dict):
            inner = next((obj[k] for k in ("model", "module", "state_dict") if isinstance(obj.get(k), dict)), None)
            if inner is not None:
                obj = inner
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        keys = sorted(obj)[:8] if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError(f"{path}: unknown checkpoint format: no state dict under 'model', 'module' or "
                              f"'state_dict', nor a bare one (top level: {keys})")
    return obj


def _with_hints(cfg: ModelConfig, hints: dict, assumed: tuple[str, ...] = ()) -> ModelConfig:
    """``cfg`` recorded in a file, with the hints given in place of its values: the clip geometry (to run the model
    on other clips), but never other head counts than the recorded ones (the same weights would compute another
    attention) unless they were ``assumed``. ConfigError otherwise."""
    given = {k: v for k, v in hints.items() if v is not None}
    for key in ("num_heads", "decoder_heads"):
        if key in given and given[key] != getattr(cfg, key) and key not in assumed:
            raise ConfigError(f"it records {key}={getattr(cfg, key)}; its weights were trained with that many heads, "
                              f"not {given[key]} (the hint is for files that do not record it)")
    try:
        return dataclasses.replace(cfg, **given) if given else cfg
    except TypeError as e:
        raise ConfigError(str(e)) from e


def _with_recorded_hints(cfg: ModelConfig, hints: dict, assumed: tuple[str, ...], fallback: ModelConfig | None,
                         kind: str) -> tuple[ModelConfig, tuple[str, ...], tuple[str, ...], dict[str, int]]:
    """``cfg`` recorded in a file (or inferred from its weights) of a model of ``kind`` with the hints
    (:func:`_with_hints`) and, for the head counts it took on trust (``assumed``) that no hint gives, ``fallback``'s
    where its width is the file's (:func:`~mme.models.convert_config.fallback_counts`); with the fields it still takes
    on trust, the counts taken from ``fallback``, and the recorded clip fields that hints replaced
    (``Checkpoint.replaced``). A ``decoder_heads`` hint is ignored where the model has no decoder (an encoder or a
    classifier, which records the decoder_heads of the run that made it)."""
    if kind != "mae":
        hints = {**hints, "decoder_heads": None}
    unhinted = tuple(k for k in assumed if hints.get(k) is None)
    taken = convert_config.fallback_counts(fallback, vars(cfg), unhinted)
    replaced = {k: getattr(cfg, k) for k in CLIP if hints.get(k) not in (None, getattr(cfg, k)) and k not in assumed}
    return (_with_hints(cfg, {**hints, **taken}, assumed), tuple(k for k in unhinted if k not in taken), tuple(taken),
            replaced)


def _check_position_tables(state: dict[str, torch.Tensor]) -> None:
    """Our models use VideoMAE's fixed sin-cos position tables, which its files do not store. A file that stores
    one (``use_learnable_pos_emb``) learned its own: refused unless it is the sin-cos table, since the weights
    were trained with it and would see other positions here."""
    for key in (k for k in state if k.endswith("pos_embed")):
        table = state[key].detach().reshape(-1, state[key].shape[-1])
        fixed = sincos_table(*table.shape).to(table.dtype)  # as stored: a half-precision file rounds it
        if not torch.allclose(table.float(), fixed.float(), atol=1e-4):
            raise CheckpointError(f"{key} is a learned position table (use_learnable_pos_emb), which mme's "
                                  f"models do not have: they use the fixed sin-cos table, as VideoMAE's and MME's "
                                  f"released models do")


def _fit_mlp_ratio(cfg: ModelConfig, state: dict[str, torch.Tensor], kind: str, source: str) -> ModelConfig:
    """``cfg`` recorded with ``state`` (our ``kind`` layout), with the MLP ratio of the weights where their MLP widths
    are the products of the block widths and ``cfg.mlp_ratio`` truncated, although one is a whole number up to float
    error (``88 x 120/88`` built as 119 units, which :func:`~mme.models.config.mlp_width` makes 120), so that such
    files still load; a CheckpointError naming the width where no ratio builds them all. Else as it is (other widths
    are the load's wrong architecture). For the configs files record (ours, a training run's, a Hugging Face one):
    one inferred from the weights is theirs already."""
    widths = {name: weight.shape[0] for name, weight in (
        ("embed_dim", state.get(convert.encoder_key("blocks.0.mlp.fc1.weight", kind))),
        ("decoder_dim", state.get("decoder_blocks.0.mlp.fc1.weight"))) if weight is not None}

    def unbuilt(ratio: float) -> list[tuple[str, int]]:
        return [(name, width) for name, width in widths.items() if mlp_width(getattr(cfg, name), ratio) != width]

    wrong = unbuilt(cfg.mlp_ratio)
    if not wrong or any(int(getattr(cfg, name) * cfg.mlp_ratio) != width for name, width in widths.items()):
        return cfg
    fitted = next((width / getattr(cfg, name) for name, width in widths.items()
                   if not unbuilt(width / getattr(cfg, name))), None)
    name, width = wrong[0]
    said = f"its MLP of {width} units is model.mlp_ratio={cfg.mlp_ratio!r} times {name} {getattr(cfg, name)} truncated"
    if fitted is None:
        raise CheckpointError(f"{source}: {said}, which mme builds as {mlp_width(getattr(cfg, name), cfg.mlp_ratio)} "
                              f"units, and no one mlp_ratio gives the widths of its MLPs ({widths})")
    log.info("%s: %s: read as mlp_ratio=%r", source, said, fitted)
    return dataclasses.replace(cfg, mlp_ratio=fitted)


def _from_state(state: dict[str, torch.Tensor], path: Path, hints: dict, cfg: ModelConfig | None = None,
                heads: list[HeadSpec] | None = None, encoder_only: bool = False, strict: bool = True,
                assumed: tuple[str, ...] = (), fallback: ModelConfig | None = None) -> Checkpoint:
    """Convert a bare state dict of any known layout; infer the config from the weights unless given (for the
    encoder alone with ``encoder_only``, so nothing about a discarded decoder needs to be known; ``assumed``: the
    fields of a given config that its file took on trust; ``fallback``: read_checkpoint's, for the head counts and
    clip the file records none of). Tensors that have no place in the model (of the encoder, with ``encoder_only``)
    are refused when ``strict``: the model would compute something else without them."""
    layout = "detected"
    try:
        kind, ours, unexpected, layout = convert.to_ours(state, encoder_only)
        _check_position_tables(state)
        _check_dropped(unexpected, layout, encoder_only, strict, path)
        hf = layout.startswith("Hugging Face")
        eps_arg = {"fc_norm_eps": 1e-5} if hf else {}  # a classifier's: HF's fc_norm has nn.LayerNorm's default
        pooled_norm = None
        if encoder_only and kind != "encoder":
            _say_encoder_used(path, ours, kind)
            if "fc_norm.weight" in ours:  # a classifier's
                pooled_norm = _pooled_norm(ours, eps_arg)
            kind, ours = "encoder", convert.encoder_part(ours, kind)
        if cfg is None:  # what the weights do not give is taken on trust: hints and fallback as of a recorded config
            cfg = convert_config.infer_config(ours, kind, fallback_heads=fallback, **hints)
            if hf:
                cfg.decoder_norm_eps = 1e-5  # Hugging Face's VideoMAEDecoder LayerNorm
            assumed = ("num_heads", "img_size", "num_frames") + (("decoder_heads",) if kind == "mae" else ())
        cfg, assumed, taken, replaced = _with_recorded_hints(cfg, hints, assumed, fallback, kind)
        table = next((v for k, v in state.items() if k.endswith("pos_embed") and not k.startswith("decoder")), None)
        ck = Checkpoint(kind, _fit_clip(cfg, table, assumed, fallback, path), ours, f"{path} ({layout})",
                        assumed=assumed, from_fallback=taken, pooled_norm=pooled_norm, replaced=replaced)
        if kind == "mae":
            ck.heads = heads or convert_config.infer_heads(ours, release=layout == convert.MME_LAYOUT)
        if kind == "classifier":
            ck.classifier = {**_classifier_args(ours), **eps_arg}
        return ck
    except (CheckpointError, ConfigError) as e:  # the kind kept for callers that act on it, with what it carries
        located = (type(e) if isinstance(e, CheckpointError) else CheckpointError)(f"{path}: {e}")
        located.__dict__.update(vars(e))  # (SeparateDecoders; HeadCountUnknown's widths)
        raise located from e
    except (KeyError, ValueError) as e:  # a tensor that a layout has missing, or of another rank
        raise CheckpointError(f"{path}: incomplete or foreign weights for the {layout} layout "
                              f"({type(e).__name__}: {e})") from e


def _say_encoder_used(source: str | Path, state: dict[str, torch.Tensor], kind: str) -> None:
    """Log that the encoder alone of our ``kind`` state is read, counting the tensors dropped: a decoder's, a
    classifier's head; not a classifier's fc_norm, which its encoder keeps (:attr:`Checkpoint.pooled_norm`)."""
    kept = len(convert.encoder_part(state, kind)) + sum(k.startswith(f"{POOLED_NORM}.") for k in state)
    log.info("%s: using the encoder; %d decoder/classifier tensors dropped", source, len(state) - kept)


def _check_dropped(keys: list[str], layout: str, encoder_only: bool, strict: bool, path: Path) -> None:
    """Refuse (``strict``) or report the tensors of a file that no key of the model takes: all of them, or with
    ``encoder_only`` those of the encoder. A stored position table is checked apart (``_check_position_tables``)."""
    keys = [k for k in keys if not k.endswith("pos_embed")]
    lost = [k for k in keys if convert.in_encoder(k)] if encoder_only else keys
    if lost and strict:
        hint = ("; a classifier without fc_norm (VideoMAE's use_mean_pooling=False, which reads the first token) "
                "is not one mme builds: load its encoder alone" if "head.weight" in lost else "")
        have, them = ("has", "it") if len(lost) == 1 else ("have", "them")
        raise CheckpointError(f"{counted(len(lost), 'tensor')} of the {layout} layout {have} no place in the model, "
                              f"which would compute something else without {them}: {lost[:10]}{hint}")
    if keys:
        log.warning("%s: %s of the %s layout, not part of the model, ignored: %s", path, counted(len(keys), "key"),
                    layout, keys[:10])


CLIP = ("num_frames", "img_size")
"""The clip geometry: not in an original ``.pth`` file's weights (its sin-cos position table is fixed)."""


class NoClipFits(CheckpointError):
    """A stored position table that fits no clip the reader has (:func:`_fit_clip`): read_checkpoint says how to
    give one, in the reading command's terms (its ``given_as``), raised from the message without that advice."""


def _fit_clip(cfg: ModelConfig, table: torch.Tensor | None, unrecorded: tuple[str, ...],
              fallback: ModelConfig | None, path: Path) -> ModelConfig:
    """``cfg`` with the clip fields it takes on trust (of ``unrecorded``: no file recorded them, no hint gave them)
    the ``fallback``'s (read_checkpoint's) where the file stores no position table (``table``, one row per token) or
    one that fits that clip, else as they are (224² x 16) where the table fits those, else the one clip of the
    fallback's frames or size that the table fits (:func:`_clips_of_table`). A table that fits none is a
    :class:`NoClipFits`."""
    taken = {k: getattr(fallback, k) for k in CLIP if k in unrecorded} if fallback is not None else {}
    candidates = [cfg]
    if taken and any(getattr(cfg, k) != v for k, v in taken.items()):
        with contextlib.suppress(ConfigError):  # (a clip the file's patch or tubelet does not divide fits nothing)
            candidates.insert(0, dataclasses.replace(cfg, **taken))
    rows = None if table is None else table.reshape(-1, table.shape[-1]).shape[0]
    fitting = next((c for c in candidates if rows is None or c.num_tokens == rows), None)
    found = _clips_of_table(candidates[0], rows, tuple(taken)) if fitting is None and taken else []
    if fitting is None and len(found) != 1:
        sizes = [f"{c.num_frames} frames of {c.img_size}x{c.img_size}" for c in candidates]
        make = (f"{sizes[0]} make {cfg.num_tokens} tokens" if len(sizes) == 1 else
                "neither " + " nor ".join(f"{size} ({c.num_tokens} tokens)" for size, c in zip(sizes, candidates))
                + " make as many")
        if taken:
            ours = f"{candidates[0].num_frames} frames or of {candidates[0].img_size}x{candidates[0].img_size}"
            make += (f", nor any clip of {ours}" if not found else f", and more than one clip of {ours} does ("
                     + ", ".join(f"{c.num_frames} frames of {c.img_size}x{c.img_size}" for c in found) + ")")
        raise NoClipFits(f"its position table has {rows} rows, one per token, but {make}")
    fitting = fitting or found[0]
    if fitting is not candidates[0]:
        log.info("%s: its position table of %d rows fits %d frames of %d px, not the config's %d of %d px "
                 "(model.num_frames, model.img_size): those taken for it", path, rows, fitting.num_frames,
                 fitting.img_size, candidates[0].num_frames, candidates[0].img_size)
    return fitting


def _clips_of_table(cfg: ModelConfig, rows: int, free: tuple[str, ...]) -> list[ModelConfig]:
    """The clips of a position table of ``rows`` rows that keep ``cfg``'s size (another number of frames, a multiple
    of its tubelet) or its frames (another square size, a multiple of its patch), of the ``free`` fields alone."""
    steps, side = cfg.num_frames // cfg.tubelet_size, cfg.img_size // cfg.patch_size
    found = []
    if "num_frames" in free and rows % (side * side) == 0:
        found.append(dataclasses.replace(cfg, num_frames=rows // (side * side) * cfg.tubelet_size))
    if "img_size" in free and rows % steps == 0 and math.isqrt(rows // steps) ** 2 == rows // steps:
        found.append(dataclasses.replace(cfg, img_size=math.isqrt(rows // steps) * cfg.patch_size))
    return found


def _classifier_args(state: dict[str, torch.Tensor]) -> dict:
    if "fc_norm.weight" not in state:
        raise CheckpointError("classifier without fc_norm (token pooling) is not supported; load its encoder")
    return {"num_classes": state["head.weight"].shape[0],
            "pool": "norm_mean" if "encoder.norm.weight" in state else "mean"}


def _pooled_norm(state: dict[str, torch.Tensor], classifier: dict) -> nn.LayerNorm:
    """The ``fc_norm`` of our classifier ``state``, in eval mode, of the eps its VideoClassifier arguments give
    (``classifier``, as ``Checkpoint.classifier``), else VideoClassifier's."""
    weight, bias = state[f"{POOLED_NORM}.weight"], state[f"{POOLED_NORM}.bias"]
    norm = nn.LayerNorm(weight.shape[0], eps=classifier.get("fc_norm_eps", FC_NORM_EPS))
    norm.load_state_dict({"weight": weight, "bias": bias})
    return norm.eval()


def _from_ours(meta: dict, state: dict[str, torch.Tensor], path: Path, hints: dict,
               fallback: ModelConfig | None) -> Checkpoint:
    if meta.get("version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{path}: format version {meta['version']} is newer than this mme ({FORMAT_VERSION})")
    kind = meta.get("kind")
    if kind not in KINDS:
        raise CheckpointError(f"{path}: config kind {kind!r} is not one of {KINDS}")
    try:
        recorded = from_dict(ModelConfig, recorded_model(meta.get("model", {})), prefix="model.")
        heads = [HeadSpec(**h) for h in meta.get("heads", [])]
    except (ConfigError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: invalid model config: {e}") from e
    try:  # (the hints' faults are not the file's)
        cfg, assumed, taken, replaced = _with_recorded_hints(recorded, hints, _assumed(meta, path), fallback, kind)
    except ConfigError as e:
        raise CheckpointError(f"{path}: {e}") from e
    state, pooled_norm = _stored_pooled_norm(meta, state, kind, path)
    cfg = _fit_mlp_ratio(cfg, state, kind, path)
    return Checkpoint(kind, _fit_clip(cfg, None, assumed, fallback, path), state, f"{path} (mme {kind})", heads,
                      dict(meta.get("classifier", {})), run_config=_run(meta, path), assumed=assumed,
                      from_fallback=taken, norm_pix=meta.get("norm_pix"), class_names=meta.get("classes"),
                      replaced=replaced, pooled_norm=pooled_norm, origin=_origin(meta, path))


def _stored_pooled_norm(meta: dict, state: dict[str, torch.Tensor], kind: str, path: Path) \
        -> tuple[dict[str, torch.Tensor], nn.LayerNorm | None]:
    """The encoder's ``state`` apart from the classifier's ``fc_norm`` an encoder file of ours keeps beside it
    (``pooled_norm`` of its config: its eps), and that norm; None where it keeps none (files written before)."""
    recorded = meta.get("pooled_norm")
    if recorded is None:
        return state, None
    eps = recorded.get("eps") if isinstance(recorded, dict) else None
    if kind != "encoder" or not is_positive_number(eps):
        raise CheckpointError(f"{path}: its 'pooled_norm' is not an encoder's {{\"eps\": positive number}}: "
                              f"{recorded!r}")
    names = [f"{POOLED_NORM}.weight", f"{POOLED_NORM}.bias"]
    if any(name not in state for name in names):
        raise CheckpointError(f"{path}: its config records a pooled_norm, but its weights lack {names}")
    norm = _pooled_norm(state, {"fc_norm_eps": float(eps)})
    return {k: v for k, v in state.items() if k not in names}, norm


def _run(meta: dict, path: Path, key: str = "run") -> dict:
    """The run's record an export carries (``run`` of ours, ``mme_run`` of a Hugging Face config that mme wrote;
    see ``Checkpoint.run_record``); empty for files written before exports carried it."""
    run = meta.get(key, {})
    if not isinstance(run, dict) or not all(isinstance(run.get(k, {}), dict) for k in ("data", "target")):
        raise CheckpointError(f"{path}: its {key!r} is not a JSON object of config sections: {run!r}")
    return run


def _origin(meta: dict, path: Path, key: str = "origin") -> dict:
    """Where an export's weights were trained (``origin`` of ours, ``mme_origin`` of a Hugging Face config that mme
    wrote; see ``Checkpoint.origin``); empty for files written before exports carried it."""
    origin = meta.get(key, {})
    if not isinstance(origin, dict):
        raise CheckpointError(f"{path}: its {key!r} is not a JSON object: {origin!r}")
    return origin


def _assumed(meta: dict, path: Path, key: str = "assumed") -> tuple[str, ...]:
    """The ModelConfig fields a converted file records as taken on trust (``assumed`` of ours, ``mme_assumed`` of
    a Hugging Face config that mme wrote)."""
    names = meta.get(key, [])
    fields = {f.name for f in dataclasses.fields(ModelConfig)}
    if not isinstance(names, list) or not all(isinstance(n, str) and n in fields for n in names):
        raise CheckpointError(f"{path}: its {key!r} is not a list of model config fields: {names!r}")
    return tuple(names)


def _from_hf_dir(path: Path, hf: dict, hints: dict, encoder_only: bool, strict: bool,
                 fallback: ModelConfig | None) -> Checkpoint:
    index, files = weight_files(path)
    if index is None and not files:
        raise CheckpointError(f"{path}: Hugging Face directory without {WEIGHTS} or {HF_BIN}, nor the "
                              f"{INDEX_SUFFIX} of their shards")
    state = {}
    for file in files:
        state.update(_read_safetensors(file)[0] if file.suffix == ".safetensors" else _unwrap(torch_load(file), file))
    decoder = any(k == "mask_token" or k.startswith("decoder.") for k in state)
    try:
        cfg = convert_config.config_from_hf(hf, decoder=decoder)
    except (CheckpointError, ConfigError) as e:
        raise CheckpointError(f"{path / CONFIG}: {e}") from e
    ck = _from_state(state, path, hints, cfg=cfg, heads=[HeadSpec("pixel", cfg.tubelet_size * cfg.patch_size ** 2
                                                                  * cfg.in_chans)], encoder_only=encoder_only,
                     strict=strict, assumed=_assumed(hf, path / CONFIG, "mme_assumed"), fallback=fallback)
    _check_mean_pooling(hf.get("use_mean_pooling", True), ck.final_norm, path / CONFIG)  # (transformers' default)
    ck.cfg = _fit_mlp_ratio(ck.cfg, ck.state, ck.kind, path)
    ck.run_config = _run(hf, path / CONFIG, "mme_run")
    ck.origin = _origin(hf, path / CONFIG, "mme_origin")
    ck.norm_pix = bool(hf.get("norm_pix_loss", True))  # (transformers' default; every kind's config records it)
    labels = hf.get("id2label")
    if ck.kind == "classifier" and isinstance(labels, dict) and len(labels) == ck.classifier["num_classes"]:
        from mme.data.lists import by_class_id, distinct_classes, named_classes

        where = f"id2label of {path / CONFIG}"
        try:  # (ids 0..n-1 as transformers reads them, int("1"), each of a name: a number's text, as transformers
            # reads an int name (its config's id2label of ints), null refused)
            names = named_classes([str(n) if type(n) is int else n for n in
                                   by_class_id(list(labels.items()), where, "{id: name}")], where)
        except DataError as e:  # (a fault of the checkpoint's files)
            raise CheckpointError(str(e)) from e
        try:
            ck.class_names = None if names == [f"LABEL_{i}" for i in range(len(names))] else \
                distinct_classes(names, where)  # (LABEL_<i>: transformers' names of none)
        except DataError as e:
            raise CheckpointError(f"{e}: rename one of them there") from e
    return ck


def _check_mean_pooling(pooling: object, final_norm: bool, config: Path) -> None:
    """Refuse a Hugging Face ``config``'s ``use_mean_pooling`` (``pooling``) that contradicts its weights, which hold
    the encoder's final LayerNorm or not (``final_norm``): transformers builds that norm, or not, by the key alone (a
    new one where the weights lack it, none where they hold it), so it would compute another model than mme."""
    if not isinstance(pooling, bool):
        raise CheckpointError(f"{config}: use_mean_pooling is {json.dumps(pooling, default=repr)}: expected true or "
                              "false")
    if pooling == final_norm:
        held, built = ("hold", "none") if final_norm else ("lack", "a new one")
        raise CheckpointError(f"{config}: use_mean_pooling is {json.dumps(pooling)}, but its weights {held} the "
                              f"encoder's final LayerNorm (layernorm.*): transformers would build another model of "
                              f"them ({built} there)")


def read_checkpoint(path: str | os.PathLike, num_heads: int | None = None, decoder_heads: int | None = None,
                    img_size: int | None = None, num_frames: int | None = None,
                    encoder_only: bool = False, strict: bool = True,
                    fallback: ModelConfig | None = None, given_as: dict[str, str] | None = None) -> Checkpoint:
    """Read any supported checkpoint into our layout (only its encoder with ``encoder_only``).

    The hints fill in what a file does not record (head counts, clip geometry of original ``.pth`` files) and
    override what it does; ``decoder_heads`` is ignored where no decoder is read (``encoder_only``, or a file without
    one: :func:`_with_recorded_hints`). ``fallback``, the run's model config: its head counts and clip are taken where
    the file records none, no hint gives them, and they fit: a head count where its width is the file's
    (``Checkpoint.from_fallback``), in place of the guess from the width (a HeadCountUnknown where none fits); the
    clip where the file stores no position table or one that fits it (else 224² x 16, where its table fits that, else
    the one clip of its frames or of its size that the table fits; a :class:`NoClipFits` naming what gives the clip
    where none or several do), still one the file took on trust (``Checkpoint.assumed``). ``strict``: a tensor of
    the file that the model has no place for is an error (else it is dropped with a warning). ``given_as``: how the
    reading command gives these fields (its flags or config keys, ``{"img_size": "--img-size"}``; default: keyword
    arguments), named in the messages of the read and of the model built (``Checkpoint.given_as``)."""
    decoder_heads = None if encoder_only else decoder_heads  # (no decoder is read: the hint is ignored, every route)
    given_as = dict(given_as or {})
    hints = {k: v if v is None else check_count(v, 1, given_as.get(k, k)) for k, v in (
        ("num_heads", num_heads), ("decoder_heads", decoder_heads), ("img_size", img_size), ("num_frames", num_frames))}
    try:
        with reading(path, CheckpointUnreadable):  # (a folder on the way this user may not enter: EACCES)
            ck = _read(Path(path), hints, encoder_only, strict, fallback)
    except NoClipFits as e:
        how = " / ".join(given_as.get(k, f"{k}=N") for k in CLIP)
        raise NoClipFits(f"{e}: give the clip it was trained on ({how})") from e
    except CheckpointError as e:  # a clip given that the file's patch or tubelet does not divide: named as given
        fault = e.__cause__
        if not isinstance(fault, ClipNotDivisible) or hints[fault.field] != fault.value:
            raise
        given = as_given(given_as.get(fault.field, fault.field), fault.value)
        raise CheckpointError(f"{Path(path)}: {given} {fault.reason}") from e
    target = ck.run_config.get("target")
    if ck.norm_pix is None and isinstance(target, dict) and "norm_pix" in target:  # the run's own, every route and
        ck.norm_pix = bool(target["norm_pix"])  # part, where the file records none (an export's --norm-pix is its own)
    if encoder_only and ck.kind != "encoder":
        _say_encoder_used(ck.source, ck.state, ck.kind)
        ck = select_part(ck, "model")
    ck.given_as = given_as
    return ck


def checkpoint_files(path: str | os.PathLike) -> list[Path]:
    """The files a checkpoint is of: the path itself, or a directory's config and weights, each weights file it
    holds (WEIGHTS and HF_BIN, as Hub downloads often hold both, though one is read) and the index and shards of a
    sharded one (other files kept in the folder, such as features embedded next to the encoder, are no part of it).
    The identity of the features embedded from it (:mod:`mme.eval.features`), and what an export over it replaces."""
    path = Path(path)
    if not path.is_dir():
        return [path]
    held = [path / name for name in (CONFIG, WEIGHTS, HF_BIN) if (path / name).is_file()]
    index, read = weight_files(path)
    return held + ([index] if index else []) + [file for file in read if file not in held and file.is_file()]


def weight_files(folder: Path) -> tuple[Path | None, list[Path]]:
    """The index of the shards of the checkpoint directory ``folder`` (None where it is not sharded) and the files
    its weights are read from, as transformers reads them: its WEIGHTS, else the shards its safetensors index
    (``save_pretrained(max_shard_size=...)``) names in its ``weight_map``, else HF_BIN, else the shards its index
    names; (None, []) where it has none."""
    for name in (WEIGHTS, WEIGHTS + INDEX_SUFFIX, HF_BIN, HF_BIN + INDEX_SUFFIX):
        if not (folder / name).is_file():
            continue
        if not name.endswith(INDEX_SUFFIX):
            return None, [folder / name]
        shards = _read_json(folder / name).get("weight_map")
        if not isinstance(shards, dict) or not all(isinstance(v, str) and Path(v).name == v for v in shards.values()):
            raise CheckpointError(f"{folder / name}: its 'weight_map' is not a JSON object of tensor names to the "
                                  "names of shard files beside it")
        return folder / name, [folder / shard for shard in dict.fromkeys(shards.values())]
    return None, []


def _read(path: Path, hints: dict, encoder_only: bool, strict: bool, fallback: ModelConfig | None) -> Checkpoint:
    from mme.train.checkpoint import kept_checkpoints, latest_valid, rotated_away, run_checkpoints  # (imports us)

    if not path.exists():
        raise CheckpointError(f"{path}: no such file or directory{rotated_away(path)}")
    if path.is_dir():
        if saved := run_checkpoints(path):  # (a model's files written beside them are not read in their place)
            beside = f" (its {CONFIG} is of weights written beside the run's checkpoints, which a folder of their " \
                     "own reads)" if (path / CONFIG).is_file() else ""
            one = len(saved) == 1
            which = "its one checkpoint does not read" if one else f"none of its {len(saved)} checkpoints reads"
            if newest := latest_valid(path):  # (each rotating one that does not read is named)
                which = f"pass its checkpoint, {newest[0]}" if one else \
                    f"pass one of its {len(saved)} checkpoints, e.g. the newest that reads, {newest[0]}"
            elif kept := kept_checkpoints(path):
                which = f"pass its checkpoint, {kept[-1]}" if one else \
                    f"pass one of its {len(saved)} checkpoints, e.g. the newest kept of an epoch, {kept[-1]}"
            raise CheckpointError(f"{path}: a training run's folder, not a checkpoint{beside}: {which}")
        if not (path / CONFIG).is_file():
            raise CheckpointError(f"{path}: not a checkpoint directory (no {CONFIG})")
        meta = _read_json(path / CONFIG)
        if meta.get("format") == "mme":
            if not (path / WEIGHTS).is_file():
                raise CheckpointError(f"{path / WEIGHTS}: missing (the directory has a {CONFIG} but no weights)")
            return _from_ours(meta, _read_safetensors(path / WEIGHTS)[0], path, hints, fallback)
        if meta.get("model_type") == "videomae":
            return _from_hf_dir(path, meta, hints, encoder_only, strict, fallback)
        raise CheckpointError(f"{path / CONFIG}: neither an mme nor a Hugging Face VideoMAE config "
                              f"(model_type={meta.get('model_type')!r})")
    if path.suffix == ".safetensors" or safetensors_header(path) is not None:  # (also named otherwise: .pt)
        state, metadata = _read_safetensors(path)
        if "mme" in metadata:
            try:
                meta = json.loads(metadata["mme"])
            except json.JSONDecodeError as e:
                raise CheckpointError(f"{path}: its 'mme' metadata is not valid JSON ({e})") from e
            if not isinstance(meta, dict):
                raise CheckpointError(f"{path}: its 'mme' metadata is not a JSON object")
            return _from_ours(meta, state, path, hints, fallback)
        return _from_state(state, path, hints, encoder_only=encoder_only, strict=strict, fallback=fallback)
    obj = torch_load(path)
    if isinstance(obj, dict) and isinstance(obj.get("config"), dict) and isinstance(obj["config"].get("model"), dict) \
            and isinstance(obj.get("model"), dict):  # our training checkpoint
        cfg = run_model_config(ModelConfig, obj["config"]["model"], path, meta=obj.get("meta"))
        ck = _from_state(_unwrap(obj["model"], path), path, hints, cfg=cfg, heads=_run_heads(obj), strict=strict,
                         fallback=fallback)
        ck.cfg = _fit_mlp_ratio(ck.cfg, ck.state, ck.kind, path)
        ck.run_config = obj["config"]
        ck.run_folder = recorded_cwd(obj)
        meta = recorded_meta(obj)
        ck.origin = {"file": path.name, **({"step": obj["step"]} if "step" in obj else {}),
                     **{k: meta[k] for k in ORIGIN_META if k in meta}}
        items, digest = meta.get("items"), meta.get("list_files_digest")
        if isinstance(items, int) and isinstance(digest, list):
            ck.run_list = items, tuple(map(str, digest))
        if ck.kind == "classifier" and isinstance(obj.get("classes"), list):
            ck.class_names = [str(n) for n in obj["classes"]]
        return ck
    return _from_state(_unwrap(obj, path), path, hints, encoder_only=encoder_only, strict=strict, fallback=fallback)


ORIGIN_META = ("run_id", "mme", "git", "precision")
"""What an export keeps of its training checkpoint's meta, with the file's name and step (``Checkpoint.origin``)."""


def recorded_meta(state: object) -> dict:
    """The ``meta`` our training checkpoint's ``state`` records ({} where it records none)."""
    meta = state.get("meta") if isinstance(state, dict) else None
    return meta if isinstance(meta, dict) else {}


def recorded_cwd(state: object) -> str | None:
    """The working folder of the run that made our training checkpoint's ``state`` (its meta's ``cwd``), which the
    relative paths of its config start from; None where it records none."""
    cwd = recorded_meta(state).get("cwd")
    return cwd if isinstance(cwd, str) else None


def run_model_config(cls: type, model: dict, path: str | Path, weights: dict[str, torch.Tensor] | None = None,
                     kind: str = "mae", meta: dict | None = None):
    """The model section ``model`` of the config a training checkpoint ``path`` records, as ``cls``; one this mme
    cannot read is a CheckpointError naming the file, and, for keys it lacks, the version of mme that wrote it
    (``meta``: the checkpoint's, whose ``mme`` records it) beside this one's, with advice to upgrade where that is a
    later one (:func:`_later_mme`). With the checkpoint's ``weights``
    (our ``kind`` layout), its MLP ratio is theirs where an earlier mme truncated the product of the recorded one
    (:func:`_fit_mlp_ratio`), as the file loads."""
    try:
        cfg = from_dict(cls, recorded_model(model), prefix="model.")
    except ConfigError as e:
        later = _later_mme(meta.get("mme") if isinstance(meta, dict) else None) \
            if isinstance(e, UnknownConfigKeys) else ""
        raise CheckpointError(f"{path}: invalid model config in the training checkpoint{later}: {e}") from e
    return cfg if weights is None else _fit_mlp_ratio(cfg, weights, kind, path)


def recorded_model(model: object) -> object:
    """The model section a file records (a training checkpoint's config, an export's), its negative layer scales
    (:data:`~mme.models.config.LAYER_SCALES`) read as 0: the mme that wrote it took them as off, which 0 is, where
    this one refuses them as a setting."""
    if not isinstance(model, dict):
        return model
    return {k: 0.0 if k in LAYER_SCALES and isinstance(v, (int, float)) and v < 0 else v for k, v in model.items()}


def _later_mme(theirs: object) -> str:
    """What a checkpoint of keys this mme lacks is said to be, by the version of mme that wrote it (``theirs``, its
    meta's; None where it records none): a later one's, named beside this one's with advice to upgrade; an earlier
    one's, named so; else (none recorded, or this version: a development build) perhaps a later one's."""
    ours = _release(__version__)
    if theirs is not None and _release(str(theirs)) > ours:
        return f", written by mme {theirs}, a later version than this one ({__version__}): upgrade mme to read it"
    if theirs is not None and _release(str(theirs)) < ours:
        return f", written by mme {theirs} (this is mme {__version__})"
    return ", perhaps of a later mme"


def _release(version: str) -> tuple[int, ...]:
    """The release numbers a version of mme begins with (``0.3.0.dev1``: (0, 3, 0)), () for none."""
    return tuple(int(n) for n in re.match(r"[\d.]*", version).group().split(".") if n)


def _run_heads(obj: dict) -> list[HeadSpec] | None:
    """The heads a pre-training run stored with its checkpoint (activations are not in the weights); None when it
    stored none (fine-tuning runs; pre-training runs of mme < 0.2, whose heads are then inferred from the
    weights, with linear outputs)."""
    if "heads" in obj:
        return [HeadSpec(**h) for h in obj["heads"]]
    if isinstance(obj["config"].get("target"), dict):
        log.warning("the pre-training checkpoint stores no head specs (mme < 0.2): heads inferred from the weights, "
                    "output activations taken as linear")
    return None


def select_part(ck: Checkpoint, kind: str) -> Checkpoint:
    """The part of ``ck`` for an export kind: 'model' = the encoder, 'pretraining' = the MAE,
    'classification' = the classifier."""
    if kind == "model":
        return Checkpoint("encoder", ck.cfg, ck.encoder_state, ck.source, run_config=ck.run_config,
                          run_folder=ck.run_folder, run_list=ck.run_list,
                          assumed=tuple(k for k in ck.assumed if k != "decoder_heads"),
                          from_fallback=tuple(k for k in ck.from_fallback if k != "decoder_heads"),
                          given_as=ck.given_as, replaced=ck.replaced, norm_pix=ck.norm_pix, origin=ck.origin,
                          pooled_norm=_pooled_norm(ck.state, ck.classifier)
                          if ck.kind == "classifier" else ck.pooled_norm)
    need = {"pretraining": "mae", "classification": "classifier"}[kind]
    if ck.kind != need:
        held = {"mae": "a masked autoencoder", "encoder": "an encoder", "classifier": "a classifier"}[ck.kind]
        raise CheckpointError(f"{ck.source}: holds {held}, cannot export it as {kind}")
    return ck


# --- building modules ---

def load_state(module: nn.Module, state: dict[str, torch.Tensor], source: str, strict: bool = True) -> None:
    """Load ``state`` into ``module`` once it :func:`fits` it."""
    expected = module.state_dict()
    fits(expected, state, source, strict)
    module.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=False)


def fits(expected: dict[str, torch.Tensor], state: dict[str, torch.Tensor], source: str, strict: bool = True) -> None:
    """Check that ``state`` fills a module whose state dict is ``expected`` (its keys and shapes alone: a module
    built on the meta device does): every shape (CheckpointError naming the key and both shapes); missing /
    unexpected keys raise when ``strict``, else are logged."""
    wrong = [k for k, v in expected.items() if k in state and state[k].shape != v.shape]  # in module order
    if wrong:
        k = wrong[0]
        raise CheckpointError(f"{source}: wrong architecture: {k} has shape {tuple(state[k].shape)} in the checkpoint, "
                              f"the model expects {tuple(expected[k].shape)}"
                              + (f" ({len(wrong) - 1} more keys differ)" if len(wrong) > 1 else ""))
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if strict and (missing or unexpected):
        raise CheckpointError(f"{source}: does not fit the model: missing keys {missing[:10]}"
                              f"{' ...' if len(missing) > 10 else ''}, unexpected keys {unexpected[:10]}")
    if missing:
        log.warning("%s: %s left at initial values: %s", source, counted(len(missing), "missing key"), missing[:10])
    if unexpected:
        log.warning("%s: %s ignored: %s", source, counted(len(unexpected), "unexpected key"), unexpected[:10])


def _encoder(ck: Checkpoint, encoder: VisionTransformer | None = None) -> VisionTransformer:
    """``encoder`` (default: a new one of ``ck``'s config) without its final LayerNorm when ``ck`` has none: a
    classifier fine-tuned with mean pooling, or Hugging Face's pre-training with ``use_mean_pooling``."""
    enc = VisionTransformer(ck.cfg) if encoder is None else encoder
    if not ck.final_norm:
        enc.norm = nn.Identity()
    return enc


def new_model(ck: Checkpoint) -> nn.Module:
    """The module ``ck`` describes, with its initial weights, built without advancing the caller's global generator;
    under ``torch.device("meta")``, its keys and shapes alone, to check that ``ck.state`` :func:`fits` it (a live
    module's checkpoint, before it is saved: no second model's weights made). Built in float32 whatever the caller's
    default dtype (:func:`~mme.utils.torch_as_mme`)."""
    with caller_generator_kept(), torch_as_mme():  # (its initial weights, replaced)
        if ck.kind == "mae":
            model = MaskedAutoencoder(ck.cfg, ck.heads)
            _encoder(ck, model.encoder)
        elif ck.kind == "classifier":
            model = VideoClassifier(ck.cfg, **ck.classifier)
        else:
            model = _encoder(ck)
    return model


RECORD = ("run_config", "assumed", "norm_pix", "class_names", "pooled_norm", "replaced")
"""What a Checkpoint records beside its module: :func:`build_model` keeps it on the module (``mme_record``), and that
of its encoder part (:func:`select_part`) on the encoder of a masked autoencoder or classifier, so that
``save_pretrained`` / ``export_hf`` of a loaded module or of its encoder write it again (they wrote the module alone: a
run's pixel loss exported as ``norm_pix_loss: true``, its clips and classes lost, guessed head counts written as
recorded; a classifier's encoder saved without its ``fc_norm``; a clip given as a hint, ``replaced``, written as the
one trained)."""


def check_fits(ck: Checkpoint) -> None:
    """Check that ``ck``'s weights fill the model its config describes (:func:`fits`), built on the meta device: no
    weight made, so a config they do not fill (edited to 1000 blocks) is a CheckpointError naming the file, not ~200
    GB allocated."""
    with torch.device("meta"):
        fits(new_model(ck).state_dict(), ck.state, ck.source)


def build_model(ck: Checkpoint, strict: bool = True) -> nn.Module:
    """The module ``ck`` holds, with its weights loaded, in eval mode (as ``from_pretrained``'s), and what ``ck``
    records beside it as ``mme_record`` (:data:`RECORD`); built without advancing the caller's global generator.
    With ``strict``, its weights are checked to fill the model (:func:`fits`) on the meta device first, so a config
    they do not fill is a CheckpointError naming the file before any weight is made.
    The fields it took on trust are said in a warning, naming how to give them: ``ck.given_as`` (a field's flag or
    config key in the command that read it; keyword arguments of the same names where it read none, in Python), or
    mme export's flags for the others."""
    if ck.assumed:
        given_as = ck.given_as
        values = ", ".join(f"{k}={getattr(ck.cfg, k)}" for k in ck.assumed)
        named = ", ".join(given_as[k] for k in ck.assumed if k in given_as)
        others = [k for k in ck.assumed if k not in given_as]
        export = "write a file that records them: mme export with " + ", ".join(flag(k) for k in others)
        if not given_as:  # read in Python
            advice = f"give the keyword arguments of the same names, or {export}"
        elif not others or not named:
            advice = f"give {named}" if named else export
        else:
            advice = f"give {named}; for {', '.join(others)}, {export}"
        log.warning("%s: not recorded by the file it comes from, so taken on trust: %s (if the model was trained "
                    "otherwise, %s)", ck.source, values, advice)
    if strict:
        check_fits(ck)
    model = new_model(ck)
    load_state(model, ck.state, ck.source, strict)
    model.mme_record = {name: getattr(ck, name) for name in RECORD}
    if ck.kind != "encoder":  # its encoder saved alone (save_pretrained(model.encoder)) keeps the encoder's part
        part = select_part(ck, "model")
        if ck.kind == "classifier":
            part.pooled_norm = model.fc_norm  # (the module's own, as it is when saved)
        model.encoder.mme_record = {name: getattr(part, name) for name in RECORD}
    return model.eval()


def load_model(path: str | os.PathLike, strict: bool = True, **hints) -> nn.Module:
    """Rebuild the module a checkpoint holds, in eval mode: MaskedAutoencoder, VisionTransformer or
    VideoClassifier."""
    return build_model(read_checkpoint(path, strict=strict, **hints), strict)


def load_encoder(path: str | os.PathLike, strict: bool = True, **hints) -> VisionTransformer:
    """The encoder of any supported checkpoint, in eval mode: ``(B, 3, T, H, W)`` ImageNet-normalised ->
    tokens ``(B, N, D)``. Decoder / classifier weights are dropped; missing encoder keys raise when ``strict``.
    Hints: ``num_heads``, ``decoder_heads``, ``img_size``, ``num_frames`` (see read_checkpoint).

    Clips of another size or frame count than the config's take the fixed sin-cos position table of their own token
    grid (``VisionTransformer.pos_for``), the one VideoMAE and Hugging Face compute for a model of that clip: the
    same features as the model built for it with ``img_size`` / ``num_frames`` (``mme embed --img-size /
    --num-frames``, fine-tuning at that size). Those hints also give the clip of a file that records none (an
    original ``.pth``)."""
    return build_model(read_checkpoint(path, encoder_only=True, strict=strict, **hints), strict)


def load_encoder_weights(encoder: VisionTransformer, path: str | os.PathLike, strict: bool = True, **hints) -> None:
    """Load a checkpoint's encoder weights into an existing encoder (e.g. ``VideoClassifier.encoder`` before
    fine-tuning). A pre-trained final norm is dropped when ``encoder.norm`` is Identity (VideoMAE fine-tuning
    does the same); shapes must match (CheckpointError naming the key otherwise)."""
    load_checkpoint_encoder(encoder, read_checkpoint(path, encoder_only=True, strict=strict, **hints), strict)


def load_checkpoint_encoder(encoder: VisionTransformer, ck: Checkpoint, strict: bool = True) -> None:
    """The encoder weights of a checkpoint already read (``ck``) into ``encoder``, as :func:`load_encoder_weights`
    loads them (a pre-trained final norm dropped where ``encoder.norm`` is Identity). An encoder built with other
    values than ``ck`` records (not takes on trust) of the fields no shape shows (:data:`UNSHAPED_ENCODER_FIELDS`:
    the weights would load, and compute another model) is a CheckpointError naming each, when ``strict``; else
    said in a warning. Another ``norm_eps`` (a Hugging Face file's 1e-12 into ours of 1e-6: features ~3e-6 apart) is
    said at info."""
    differ = [k for k in UNSHAPED_ENCODER_FIELDS
              if k not in ck.assumed and getattr(ck.cfg, k) != getattr(encoder.cfg, k)]
    if differ:
        what = (f"{ck.source}: wrong architecture: the checkpoint records "
                + ", ".join(f"{k}={getattr(ck.cfg, k)!r}" for k in differ) + ", the encoder has "
                + ", ".join(f"{k}={getattr(encoder.cfg, k)!r}" for k in differ)
                + " (no shape differs: its weights would compute another model)")
        if strict:
            raise CheckpointError(f"{what}; build the encoder with the checkpoint's, or load with strict=False")
        log.warning("%s; loaded as strict=False asks", what)
    if ck.cfg.norm_eps != encoder.cfg.norm_eps:
        log.info("%s: the checkpoint records norm_eps=%r, the encoder has norm_eps=%r: loaded, its LayerNorms use "
                 "the encoder's", ck.source, ck.cfg.norm_eps, encoder.cfg.norm_eps)
    state = ck.encoder_state
    if isinstance(encoder.norm, nn.Identity):
        state = {k: v for k, v in state.items() if not k.startswith("norm.")}
    load_state(encoder, state, ck.source, strict)
