"""The CLI imports library modules lazily, so it states their choice lists itself: they must stay the same; and
it only maps flags to the keyword arguments of one library function per subcommand."""

import argparse
import importlib
import inspect
import io
import json
import os
import re
import subprocess
import sys
import tokenize
from pathlib import Path

import pytest
from training import FP32, TINY

import mme
from mme.cli import build_parser, main
from mme.data import MIN_SHORT_SIDE
from mme.data.synth import CLASSES, MAX_FPS, MOTIONS, PRESETS, TEXTURES, generate_synth
from mme.data.video import BACKENDS
from mme.models.config import PRESETS as MODEL_PRESETS
from mme.motion.flow import DEFAULT_FLOW, METHODS
from mme.train.precision import PRECISIONS


def _action(command: str, flag: str) -> argparse.Action:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    if command.startswith("bench "):
        command, kind = command.split()
        sub = next(a for a in sub.choices[command]._actions if isinstance(a, argparse._SubParsersAction))
        command = kind
    return next(a for a in sub.choices[command]._actions if flag in a.option_strings)


def _choices(command: str, flag: str) -> tuple:
    return tuple(_action(command, flag).choices)


def test_an_allocation_failed_under_a_memory_limit_is_one_line_naming_the_limit(synth, tmp_path, monkeypatch, capsys):
    """``ulimit -v 700000`` (684 MiB of address space) ended ``mme pretrain`` with ``libavcodec-....so: failed to map
    segment from shared object (a dependency of mme: reinstall opencv-python-headless ...)``, the wrong advice; at
    1000000, in a 70-line traceback ending in a bare MemoryError (torch._dynamo's import). Each is one line naming
    the limit. Without a limit, the same errors are as they were: the reinstall advice, the MemoryError raised."""
    import resource

    limit, hard = 700000 * 1024, resource.getrlimit(resource.RLIMIT_AS)[1]
    if hard != resource.RLIM_INFINITY and hard < limit:
        pytest.skip("a hard limit of address space below 684 MiB here")
    proc = subprocess.run(
        [sys.executable, "-m", "mme", "pretrain", "--config", "tiny_cpu_pixel", *TINY, *synth,
         f"train.out_dir={tmp_path / 'run'}", "train.steps=1", FP32], capture_output=True, text=True, timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, hard)))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert re.fullmatch(r"mme pretrain: error: out of memory under this process's address space limit, 684 MiB "
                        r"\(ulimit -v 700000\): .+; raise it \(ulimit -v unlimited: torch and its libraries reserve "
                        r"gigabytes of address space they do not use; a scheduler's --mem limits what a job uses "
                        r"instead\)", proc.stderr.splitlines()[-1]), proc.stderr[-3000:]

    def said(error: BaseException, limits: dict) -> tuple[int, str]:  # (mme pretrain failing with ``error``)
        monkeypatch.setattr(resource, "getrlimit", lambda kind: (limits.get(kind, resource.RLIM_INFINITY),
                                                                 resource.RLIM_INFINITY))
        monkeypatch.setattr("mme.cli._main", lambda _: (_ for _ in ()).throw(error))
        code = main(["pretrain"])
        return code, capsys.readouterr().err.strip().splitlines()[-1]

    mapped = ImportError("libavcodec-e863e0e1.so.63.1.102: failed to map segment from shared object", name="cv2")
    assert said(MemoryError(), {resource.RLIMIT_AS: 1000000 * 1024}) == (
        1, "mme pretrain: error: out of memory under this process's address space limit, 977 MiB (ulimit -v 1000000): "
           "MemoryError; raise it (ulimit -v unlimited: torch and its libraries reserve gigabytes of address space "
           "they do not use; a scheduler's --mem limits what a job uses instead)")
    assert said(MemoryError(), {resource.RLIMIT_DATA: 2**31})[1].startswith(
        "mme pretrain: error: out of memory under this process's data limit, 2048 MiB (ulimit -d 2097152): ")
    assert said(mapped, {}) == (1, f"mme pretrain: error: {mapped} (a dependency of mme: reinstall "
                                   "opencv-python-headless (it is installed but fails to load), or reinstall mme)")
    with pytest.raises(MemoryError):
        said(MemoryError(), {})


def test_a_library_unmapped_or_a_workers_batch_unmapped_under_a_memory_limit_names_the_limit(monkeypatch):
    """Under ``ulimit -v`` 1200000, matplotlib's import (mme's figures, its warning) said "...failed to map segment...;
    reinstall matplotlib", tensorboard's alike, and a loader worker's batch that could not be mapped ("unable to mmap
    ...: Cannot allocate memory (12)") ended the run in a 100-line traceback: each names the limit, where the advice
    and the out-of-memory diagnosis are made; the advice names it alone (it said the failure again, after its
    caller)."""
    import resource

    from mme.errors import import_advice, memory_limit_said

    mapped = ImportError("libpng16.so.16: failed to map segment from shared object", name="matplotlib")
    unmapped = RuntimeError("unable to mmap 1048576 bytes from file </torch_4_1_0>: Cannot allocate memory (12)")
    limit, remedy = ("out of memory under this process's address space limit, 1172 MiB (ulimit -v 1200000)",
                     "raise it (ulimit -v unlimited: torch and its libraries reserve gigabytes of address space they "
                     "do not use; a scheduler's --mem limits what a job uses instead)")
    assert import_advice("matplotlib", error=mapped) == "reinstall matplotlib (it is installed but fails to load)"
    monkeypatch.setattr(resource, "getrlimit", lambda kind: (1200000 * 1024 if kind == resource.RLIMIT_AS else
                                                             resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    assert import_advice("matplotlib", error=mapped) == f"{limit}: {remedy}"  # (its callers say the error first)
    assert memory_limit_said(unmapped) == f"{limit}: {unmapped}; {remedy}"


def test_srun_tasks_without_torchrun_are_refused_in_one_line_naming_how_to_launch(synth, tmp_path, monkeypatch,
                                                                                   capsys):
    """``srun -n 2 mme pretrain ...`` (no torchrun: no RANK, WORLD_SIZE) trained a run of world size 1 in one task
    while the other failed on its folder, "in use by another job". Each task now refuses in one line, before any
    work, naming torchrun's launch; a batch script's own environment (SLURM_NTASKS without srun's step) and torchrun's
    ranks under srun are left as they were, and so are tasks of their own shares (mme extract --shard k/n); a
    one-process command is refused naming one task."""
    from mme.errors import ConfigError
    from mme.utils import check_srun_tasks, launch_ranks

    for name in ("RANK", "WORLD_SIZE", "SLURM_STEP_NUM_TASKS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SLURM_NTASKS", "2")
    monkeypatch.setenv("SLURM_PROCID", "1")
    assert launch_ranks() == (0, 1)  # (a batch script: SLURM_NTASKS alone)
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "2")
    out = tmp_path / "run"
    assert main(["pretrain", "--config", "tiny_cpu_pixel", *TINY, *synth, f"train.out_dir={out}", FP32]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "mme pretrain: error: srun started 2 tasks of this command (SLURM_STEP_NUM_TASKS=2) without torchrun, which "
        "sets RANK and WORLD_SIZE: each would run all of it alone, on the same files. Start one torchrun per node "
        "(srun --ntasks-per-node=1 torchrun --nnodes=$SLURM_NNODES --nproc_per_node=GPUS --rdzv_backend=c10d "
        "--rdzv_endpoint=HOST:29500 -m mme.cli ..., as docs/scaling.md in mme's source repository does), or one task "
        "(srun -n 1)")
    assert not out.exists()
    check_srun_tasks(True, "1/2")  # (mme extract --shard $SLURM_PROCID/2: each task its share)
    assert launch_ranks() == (0, 1)
    with pytest.raises(ConfigError) as refused:
        check_srun_tasks(False)  # (mme check, ...: no torchrun)
    assert str(refused.value) == ("srun started 2 tasks of this command (SLURM_STEP_NUM_TASKS=2), which runs as one "
                                  "process: each would do all of it, on the same files. Start one task (srun -n 1)")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert launch_ranks() == (1, 4)  # (srun's tasks, each a torchrun: its ranks)


def test_python_dash_m_mme_is_the_mme_command():
    """``python -m mme`` failed: no mme.__main__ (where the mme script is not on PATH)."""
    proc = subprocess.run([sys.executable, "-m", "mme", "synth", "--help"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and proc.stdout.startswith("usage: mme synth"), proc.stderr[-2000:]


@pytest.mark.parametrize("module, args, pip", [
    ("yaml", ["pretrain", "--config", "tiny_cpu_mme"], "pyyaml"),  # imported as the arguments are parsed
    ("cv2", ["synth", "out", "--classes", "2"], "opencv-python-headless")])  # as the command runs
def test_a_missing_dependency_is_one_line_naming_its_pip_package(module, args, pip, tmp_path, monkeypatch, capsys):
    """A required package missing (or failing to import) was an ImportError traceback, at argument parsing (yaml,
    tqdm) or in the command (cv2, av, safetensors, PIL): one line naming it and its pip package, exit 1. An
    ImportError of a module that is not mme's dependency is raised as it was."""
    hidden = tmp_path / "hidden" / module
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text(f"raise ImportError(\"No module named '{module}'\", name='{module}')\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(tmp_path / "hidden"), *filter(None, [os.environ.get("PYTHONPATH")])])}
    proc = subprocess.run([sys.executable, "-m", "mme", *args], capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=120)
    assert (proc.returncode, proc.stderr.splitlines()[-1:]) == (1, [  # one there that fails to import
        f"mme {args[0]}: error: No module named '{module}' (a dependency of mme: reinstall {pip} (it is installed but "
        "fails to load), or reinstall mme)"])
    missing = (f"import runpy, sys; sys.modules[{module!r}] = None; sys.argv = ['mme', *{args!r}]; "
               "runpy.run_module('mme', run_name='__main__')")
    proc = subprocess.run([sys.executable, "-c", missing], capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=120)
    assert (proc.returncode, proc.stderr.splitlines()[-1:][0].split(": error: ")[1].partition(" (")[2]) == (
        1, f"a dependency of mme: pip install {pip}, or reinstall mme)"), proc.stderr[-2000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hidden"]

    def fails(_):
        raise ImportError("No module named 'users_own'", name="users_own")

    monkeypatch.setattr("mme.cli._main", fails)
    with pytest.raises(ImportError, match="users_own"):
        main(["pretrain"])


def test_cli_choices_are_the_library_ones():
    assert _choices("synth", "--motion") == MOTIONS
    assert _choices("synth", "--texture") == TEXTURES
    assert _choices("synth", "--preset") == tuple(PRESETS)
    classes, size = _action("synth", "--classes").type, _action("synth", "--size").type
    assert (classes.least, classes.most, size.least, size.even) == (2, len(CLASSES), 32, True)  # as _check_design
    assert _action("synth", "--fps").type.most == MAX_FPS
    for command in ("extract", "bench targets"):
        assert _choices(command, "--flow") == METHODS
        assert f"default {DEFAULT_FLOW}:" in _action(command, "--flow").help
    for command in ("extract", "embed", "probe", "viz", "bench data"):
        assert _choices(command, "--backend") == BACKENDS
    assert _choices("bench train", "--preset") == tuple(MODEL_PRESETS)
    for command in ("probe", "embed"):
        assert _choices(command, "--precision") == PRECISIONS
    assert _action("extract", "--short-side").type.least == MIN_SHORT_SIDE  # (the frames a reader takes)


def test_viz_help_says_the_options_a_checkpoint_fixes_are_refused_with_it():
    """``mme viz --help`` gave --length and the like a value "with --checkpoint: the model's", where that pair is
    refused ("leave it out"); --size and --num-frames give the clip the model is built for."""
    for flag in ("--length", "--seed-stride"):
        assert "not with --checkpoint: the model's" in _action("viz", flag).help, flag
    for flag, what in (("--size", "the side"), ("--num-frames", "the clip")):
        assert f"with --checkpoint: {what} the model is built for, default the checkpoint's" in _action("viz",
                                                                                                        flag).help
    assert "with --checkpoint: its run's data.stride" in _action("viz", "--stride").help  # taken with one


def test_check_help_says_a_file_whose_frames_end_before_its_header_duration_is_suspicious():
    """`mme check --help` said 'suspicious' means read by decoding from the start, where a cut Matroska file, read by
    seeking, is suspicious too: its frames end well before the duration its header gives (check_video)."""
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    said = " ".join(sub.choices["check"].description.split())
    assert ("or suspicious (read by decoding from the start, slower, because its timestamps or frame count cannot "
            "be trusted, or its frames end well before the duration its header gives: a copy or download stopped "
            "partway, whose rest no read has)") in said


def test_the_help_and_messages_of_an_installed_mme_say_where_the_docs_they_cite_are():
    """The wheel holds no docs/: `mme probe --help` said `Protocol: docs/evaluation.md.`, the demo's results.md
    and a cache's backend warning cited docs/results.md and docs/data.md as if beside the user."""
    from mme.demo_report import markdown_loss_table

    said = " in mme's source repository"
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    helps = " ".join(" ".join(p.format_help().split()) for p in sub.choices.values())  # unwrapped
    assert "Protocol: docs/evaluation.md" + said + "." in helps
    assert all(helps[m.end():].startswith(said) for m in re.finditer(r"docs/[\w.]+\.md", helps))
    row = {"target": "pixel", "seeds": 1, "final_loss": 1.0, "mean_prediction_loss": 1.0, "loss_ratio": 1.0}
    stuck = markdown_loss_table([{**row, **{f"{k}_std": 0.0 for k in row}}])
    assert '(docs/results.md' + said + ', "Why pixel and HOG stay below a random encoder").' in stuck
    for source in (Path(mme.__file__).parent).rglob("*.py"):  # and every one-line string that cites docs/
        strings = [t.string for t in tokenize.generate_tokens(io.StringIO(source.read_text()).readline)
                   if t.type == tokenize.STRING and not t.string.endswith('"""')]
        assert not [s for s in strings if "docs/" in s and said not in s], source


def test_mme_version_prints_the_packages_version(capsys):
    """Was refused: the following arguments are required: COMMAND. The version is written twice, in pyproject.toml
    (what pip installs and names) and mme.__version__ (what --version says and run meta record): they agree."""
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0 and capsys.readouterr().out == f"mme {mme.__version__}\n"
    tomllib = pytest.importorskip("tomllib")
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    assert tomllib.loads(pyproject.read_text())["project"]["version"] == mme.__version__


def test_every_flag_is_a_parameter_of_the_function_its_command_calls():
    """Each subcommand calls one function with the parsed flags as keyword arguments: every flag's ``dest`` must be
    one of its parameters, or of the function its ``**kwargs`` go to (probe: embed; export: read_checkpoint)."""
    from mme.eval.features import embed
    from mme.models.checkpoint import read_checkpoint

    passed_on = {"probe": embed, "export": read_checkpoint}
    commands = _subcommands(build_parser())
    for name, parser in commands.items():
        target = getattr(parser.get_default("func"), "target", None)
        if target is None:  # a group (bench), or a command whose flags become config overrides
            assert name in ("bench", "pretrain", "finetune"), name
            continue
        module, function = target.split(":")
        functions = [getattr(importlib.import_module(module), function), passed_on.get(name)]
        params = {p for f in functions if f is not None for p in inspect.signature(f).parameters}
        dests = {a.dest for a in parser._actions if a.dest not in ("help", "verbose")}  # (-v: the parser's, any place)
        assert dests <= params, (name, dests - params)


def test_one_setting_has_one_pair_of_names_on_every_command():
    """The crop side was ``--size`` in viz and the benches but ``--img-size`` in export and bench train (the
    config's ``data.img_size``), the clip's frames ``--frames`` / ``--num-frames`` likewise, a batch ``--batch`` /
    ``--batch-size``: every command now takes both spellings of each, for the same setting."""
    pairs = [("--size", "--img-size"), ("--frames", "--num-frames"), ("--batch", "--batch-size"),
             ("--clips", "--test-clips"), ("--crops", "--test-crops")]
    own = {("synth", "--size"),  # the generated videos' side, not a crop
           ("bench data", "--clips"), ("bench pipeline", "--clips")}  # timed items, not test views
    seen = set()
    for name, parser in _subcommands(build_parser()).items():
        for action in parser._actions:
            for a, b in pairs:
                if {a, b} & set(action.option_strings) and not any((name, f) in own for f in (a, b)):
                    assert {a, b} <= set(action.option_strings), (name, action.option_strings)
                    seen.add((name, a))
    assert {("viz", "--size"), ("export", "--size"), ("bench train", "--size"), ("export", "--frames"),
            ("viz", "--frames"), ("probe", "--clips"), ("embed", "--crops"), ("bench train", "--batch"),
            ("probe", "--batch")} <= seen


def _subcommands(parser: argparse.ArgumentParser, prefix: str = "") -> dict[str, argparse.ArgumentParser]:
    """Every (nested) subcommand's parser by its name, e.g. 'bench train'."""
    out = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out[prefix + name] = sub
                out.update(_subcommands(sub, prefix + name + " "))
    return out


def test_mme_synth_preset_with_a_flag_replacing_its_value(tmp_path, capsys):
    assert main(["synth", str(tmp_path), "--preset", "demo", "--classes", "2", "--videos-per-class", "1",
                 "--size", "32", "--frames", "4", "--workers", "1"]) == 0
    assert capsys.readouterr().out == (f"wrote 2 videos of 2 classes to {tmp_path} (lists: {{'train': 2, 'val': 0, "
                                       "'test': 0}; classes.json, params.json)\n")
    params = json.loads((tmp_path / "params.json").read_text())
    assert {(p["motion"], p["texture"], len(p["movers"])) for p in params.values()} == {("scene", "dead_leaves", 2)}


def _with_reader_gone(*argv: str, stderr_too: bool = False) -> tuple[int, str]:
    """``mme ARGV | head -0``: the exit status and stderr of the command, whose stdout's reader went before it printed
    a line (with ``stderr_too``, ``2>&1 | head -0``: stderr went with it, and the text is empty)."""
    proc = subprocess.Popen([sys.executable, "-m", "mme.cli", *argv], stdout=subprocess.PIPE, text=True,
                            stderr=subprocess.STDOUT if stderr_too else subprocess.PIPE,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    proc.stdout.close()
    err = "" if stderr_too else proc.stderr.read()
    return proc.wait(timeout=300), err


@pytest.mark.parametrize("stderr_too", [pytest.param(False, marks=pytest.mark.slow), True])  # (True: both gone)
def test_a_run_whose_output_s_reader_has_gone_trains_on_and_writes_its_files(stderr_too, synth, tmp_path):
    """``mme pretrain ... | head -0`` (``| true``): the summary printed before step 1 raised BrokenPipeError, a
    traceback that ended the run, exit 1, nothing trained; with stderr in the pipe (``2>&1 | head``) the progress bar
    would have. What a run prints is no part of its work: the output goes to /dev/null and the run trains on."""
    from mme.train import checkpoint as ckpt

    code, err = _with_reader_gone("pretrain", "--config", "tiny_cpu_pixel", *TINY, *synth,
                                  f"train.out_dir={tmp_path}", "train.steps=3", FP32, stderr_too=stderr_too)
    assert code == 0 and "Traceback" not in err and "Exception ignored" not in err, err[-2000:]
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["checkpoint-00000003.pt"]
    assert [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]


def test_a_command_whose_output_s_reader_has_gone_ends_quietly(tmp_path):
    """``mme synth ... | head -0``: its summary, printed as it ends, raised BrokenPipeError, a traceback and exit 1
    after its videos were written."""
    code, err = _with_reader_gone("synth", str(tmp_path), "--classes", "2", "--videos-per-class", "1", "--size", "32",
                                  "--frames", "4", "--workers", "1")
    assert code == 0 and "Traceback" not in err and "Exception ignored" not in err, err[-2000:]
    assert len(json.loads((tmp_path / "params.json").read_text())) == 2


def test_a_run_with_stderr_closed_trains_and_writes_its_files(synth, tmp_path):
    """``mme pretrain ... 2>&-`` (a cron or daemon wrapper): Python left ``sys.stderr`` None, the progress bar's
    write to it ended the command (AttributeError) with exit 1, nothing trained, and descriptor 2 stayed free for the
    next file opened. The closed descriptor is opened on /dev/null and the run does its work."""
    from mme.train import checkpoint as ckpt

    proc = subprocess.run([sys.executable, "-m", "mme.cli", "pretrain", "--config", "tiny_cpu_pixel", *TINY, *synth,
                           f"train.out_dir={tmp_path}", "train.steps=2", FP32], preexec_fn=lambda: os.close(2),
                          stdout=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert proc.returncode == 0
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["checkpoint-00000002.pt"]
    assert [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [1, 2]


def test_a_command_whose_stdout_cannot_encode_a_path_prints_it_escaped(tmp_path):
    """``PYTHONIOENCODING=ascii`` (or ``LC_ALL=C PYTHONUTF8=0``) and a non-ASCII path: the summary's print raised
    UnicodeEncodeError, a traceback and exit 1 (a run's, before step 1). The character is written as an escape."""
    out = tmp_path / "caf\u00e9"
    proc = subprocess.run([sys.executable, "-m", "mme.cli", "synth", str(out), "--classes", "2", "--videos-per-class",
                           "1", "--size", "32", "--frames", "4", "--workers", "1"], capture_output=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONIOENCODING": "ascii"}, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert proc.stdout.decode("ascii").startswith(f"wrote 2 videos of 2 classes to {tmp_path}{os.sep}caf\\xe9 ")
    assert len(json.loads((out / "params.json").read_text())) == 2


def test_every_number_a_flag_takes_has_its_range(tmp_path, monkeypatch, capsys):
    """A count of 0 or -1, or a NaN, was a bare traceback deep in the work (ZeroDivisionError, an empty median,
    cv2's assertions), or ran silently as something else (bench train --batch 0 timed batch 4). Every numeric flag
    now parses through ``count`` or ``number``, so argparse refuses a value out of range in one line. (In a folder of
    its own: a flag whose range regressed runs its command, writing its relative ``out``.)"""
    import pytest

    monkeypatch.chdir(tmp_path)

    from mme.cli import count, number

    kinds = (type(count()), type(number()))
    for name, parser in _subcommands(build_parser()).items():
        for action in parser._actions:
            if action.type in (int, float):
                raise AssertionError(f"mme {name} {action.option_strings}: an int or float without its range")
            if isinstance(action.type, kinds) and hasattr(action.type, "least"):
                low = action.type.least - 1 if action.type.__qualname__.startswith("count") else "nan"
                with pytest.raises(argparse.ArgumentTypeError):
                    action.type(str(low))
    for argv, said in ((["bench", "train", "--batch", "0"], "argument --batch/--batch-size: must be at least 1, got 0"),
                       (["demo", "--minutes", "nan"], "argument --minutes: must be a finite number > 0, got nan"),
                       (["synth", "out", "--fps", "0"], "argument --fps: must be at least 1, got 0"),
                       # before: exit 0, MP4s of whose frames some (at 65536 fps all) were lost on decode
                       (["synth", "out", "--fps", "5000"], "argument --fps: must be at most 1000, got 5000"),
                       # before: exit 1, 'synth needs num_frames >= 2 and videos_per_class >= 1'
                       (["synth", "out", "--frames", "1"], "argument --frames/--num-frames: must be at least 2, got 1"),
                       (["synth", "out", "--size", "16"], "argument --size: must be at least 32, got 16"),  # as synth
                       # before: exit 1, 'synth size must be an even number', 'synth num_classes must be in [2, 10]'
                       (["synth", "out", "--size", "33"], "argument --size: must be even, got 33"),
                       (["synth", "out", "--classes", "11"], "argument --classes: must be at most 10, got 11"),
                       (["embed", "ck", "list.txt", "--out", "x.npy", "--num-workers", "-1"],
                        "argument --workers/--num-workers: must be at least 0, got -1")):
        with pytest.raises(SystemExit):
            main(argv)
        assert said in capsys.readouterr().err, argv


def test_an_empty_recipe_is_refused_naming_its_flag(tmp_path, monkeypatch, capsys):
    """``--config "$RECIPE"`` with RECIPE unset ran mme pretrain and mme finetune on the full-size defaults (ViT-B,
    1600 epochs) without a word, and ``mme bench train --recipe ""`` timed the default model: an empty recipe is
    refused naming its flag; from Python (``load_config``, a ``_base_: ""``), naming the empty recipe."""
    import mme.eval.finetuned
    import mme.train.bench
    import mme.train.pretrain
    from mme.config import load_config
    from mme.errors import ConfigError
    from mme.train.config import PretrainConfig

    ran = []
    for module, name in ((mme.train.pretrain, "pretrain"), (mme.eval.finetuned, "finetune"),
                         (mme.train.bench, "bench_train")):
        monkeypatch.setattr(module, name, lambda *args, **kwargs: ran.append(args))
    for argv in (["pretrain", "--config", "", "train.steps=1"], ["finetune", "--config", " "],
                 ["bench", "train", "--recipe", ""]):
        with pytest.raises(SystemExit) as info:
            main(argv)
        flag = "--recipe" if "bench" in argv else "--config"
        assert (info.value.code, capsys.readouterr().err.splitlines()[-1]) == (2, (
            f"mme {' '.join(argv[:-2] if 'bench' in argv else argv[:1])}: error: argument {flag}: empty, which "
            "names no recipe (an unset shell variable?): give a YAML path or a packaged recipe's name")), argv
    assert not ran
    with pytest.raises(ConfigError, match=r"^recipe '': empty, which names no recipe; give a YAML path or a "
                                          r"packaged recipe's name \(\[.*'tiny_cpu_mme'"):
        load_config(PretrainConfig, "")
    (tmp_path / "r.yaml").write_text("_base_: ''\ntrain:\n  steps: 3\n")
    with pytest.raises(ConfigError, match=r"r\.yaml: its _base_: recipe '': empty, which names no recipe"):
        load_config(PretrainConfig, tmp_path / "r.yaml")


def test_every_count_flag_refuses_an_integer_past_int64_in_one_line(tmp_path, capsys):
    """``mme embed --stride 2**63`` was an OverflowError of numpy (Python int too large to convert to C long), ``mme
    viz --size 10**20`` a ValueError of torch, ``mme demo --minutes 1e30`` one of the steps it scaled to."""
    from mme.cli import count

    for parser in _subcommands(build_parser()).values():
        for action in parser._actions:
            if isinstance(action.type, type(count())) and action.type.__qualname__.startswith("count") \
                    and action.type.most is None:  # (a bounded one refuses both as past its bound)
                top = 2**63 - 1 - action.type.even  # (the largest even int64 where it takes even numbers)
                assert action.type(str(top)) == top
                with pytest.raises(argparse.ArgumentTypeError, match="does not fit a 64-bit integer"):
                    action.type(str(2**63))
    too_large = "does not fit a 64-bit integer (at most 2**63 - 1 = 9223372036854775807 in size)"
    for argv, said in ((["embed", "ck", "v.mp4", "--out", "x.npy", "--stride", str(2**63)],
                        f"mme embed: error: argument --stride: {2**63} {too_large}"),
                       (["viz", "v.mp4", "--out", "x.png", "--size", str(10**20)],
                        f"mme viz: error: argument --size/--img-size: {10**20} {too_large}")):
        with pytest.raises(SystemExit):
            main(argv)
        assert capsys.readouterr().err.strip().splitlines()[-1] == said, argv
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--minutes", "1e30"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("mme demo: error: minutes=1e+30 scales the pre-training to too many steps: ") \
        and err.endswith(too_large) and "\n" not in err, err
    assert not out.exists()


def test_a_bench_flag_of_fixed_values_is_refused_by_argparse_and_bench_errors_name_the_kind(capsys):
    """``mme bench data --backend foo`` and ``bench train --preset huge`` were refused by the library, exit 1 under
    ``mme bench: error:``, where the same flags elsewhere are argparse's (exit 2, the usage, the command's name); the
    library's own refusals named ``mme bench``, not the kind run."""
    for argv, said in ((["bench", "data", "--backend", "foo"],
                        "mme bench data: error: argument --backend: invalid choice: 'foo' (choose from 'pyav', "
                        "'pyav-cuda', 'opencv', 'decord')"),
                       (["bench", "train", "--preset", "huge"],
                        "mme bench train: error: argument --preset: invalid choice: 'huge' (choose from 'tiny', "
                        "'small', 'base', 'large')")):
        with pytest.raises(SystemExit) as stop:
            main(argv)
        err = capsys.readouterr().err
        assert stop.value.code == 2 and err.startswith(f"usage: mme {argv[0]} {argv[1]} ") \
            and err.strip().splitlines()[-1] == said, (argv, err)
    assert main(["bench", "data", "--workers", "1", "1"]) == 1
    assert capsys.readouterr().err.startswith("mme bench data: error: --workers 1 1: give each count once")


def test_bad_pictures_and_outputs_are_refused_before_the_work(tmp_path, capsys):
    """mme viz wrote PNG data under a .gif/.mp4/.jpg name and ignored --size and the like with --checkpoint; an
    output that is a folder, or under a file, was a traceback after the work (viz, bench --json, demo --out)."""
    from videos import affine_video, write_video

    video = str(write_video(tmp_path / "v.mp4", affine_video(12, 32, 32, dx=1.0, seed=0)[0]))
    (tmp_path / "afile").write_text("")
    (tmp_path / "adir").mkdir()
    for argv, said in (
            (["viz", video, "--out", str(tmp_path / "p.jpg")], "the picture is written as its suffix says"),
            (["viz", video, "--out", str(tmp_path / "p.png"), "--checkpoint", "ck", "--length", "4"],
             "--length: with --checkpoint the track length and points are the model's; leave it out"),
            (["viz", video, "--out", str(tmp_path / "p.gif"), "--checkpoint", "ck"],
             "a picture of predicted motion is a .png"),
            (["viz", video, "--out", str(tmp_path / "p.mp4"), "--size", "33"], "an .mp4 (H.264, 4:2:0) needs an even"),
            (["viz", video, "--out", str(tmp_path / "adir")], "the picture is written as its suffix says"),
            (["viz", video, "--out", str(tmp_path / "afile" / "p.png")], "afile is a file, not a folder"),
            (["bench", "targets", "--json", str(tmp_path / "adir"), "--video", video], "is a folder; give a file"),
            (["bench", "flow", "--sizes", "34", "35"], "--sizes [35]: the analytic videos are H.264"),
            (["demo", "--quick", "--out", str(tmp_path / "afile")], "--out " + str(tmp_path / "afile") + ": is a file"),
            (["demo", "--quick", "--seeds", "0", "0"], "--seeds 0 0: give each once"),
            (["demo", "--quick", "--out", str(tmp_path / "d"), "model.depth=x"], "model.depth"),
            (["demo", "--quick", "--out", str(tmp_path / "d"), "--device", "tpu"], "'tpu' is not a device")):
        assert main(argv) == 1, argv
        assert said in capsys.readouterr().err, argv
    assert not (tmp_path / "d" / "data").exists()  # the demo stopped before making its data


@pytest.mark.parametrize("command", ["viz", "export", "export-folder", "embed"])
def test_a_file_out_ending_in_a_separator_is_refused_where_the_command_takes_its_path_first(command, tmp_path, capsys,
                                                                                           monkeypatch):
    """check_output refuses a file option ending in a separator, but viz, export and embed made it a Path first,
    which drops the '/': `mme viz V --out pics.png/` wrote a file pics.png, `mme export CK x.safetensors/ --format
    safetensors` a file x.safetensors (`exports/`: exports.safetensors). Refused in one line (mme.utils.file_path),
    nothing written."""
    import torch
    from videos import affine_video, write_video

    from mme.models import HeadSpec, MaskedAutoencoder, ModelConfig

    monkeypatch.chdir(tmp_path)
    write_video(tmp_path / "v.mp4", affine_video(8, 32, 32, dx=1.0, seed=0)[0])
    cfg = ModelConfig(img_size=32, num_frames=4, embed_dim=64, depth=1, num_heads=2, decoder_dim=32, decoder_depth=1,
                      decoder_heads=2)
    torch.save({"model": MaskedAutoencoder(cfg, [HeadSpec("pixel", 2 * 16 * 16 * 3)]).state_dict()}, "c.pth")
    (tmp_path / "list.txt").write_text("v.mp4\n")
    export = ["export", "c.pth", "--format", "safetensors", "--img-size", "32", "--num-frames", "4", "--num-heads",
              "1", "--decoder-heads", "2"]
    out, argv, option = {"viz": ("pics.png/", ["viz", "v.mp4", "--out", "pics.png/", "--size", "32"], "--out"),
                         "export": ("x.safetensors/", [*export[:2], "x.safetensors/", *export[2:]], "out"),
                         "export-folder": ("exports/", [*export[:2], "exports/", *export[2:]], "out"),
                         "embed": ("f.npy/", ["embed", "c.pth", "list.txt", "--out", "f.npy/", "--img-size", "32",
                                              "--num-frames", "4"], "--out")}[command]
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(argv) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"mme {argv[0]}: error: {option} {out}: ends in '/', a folder's name; give a file name")
    assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.mark.parametrize("argv", [["viz", "missing.mp4", "--out", "figs/run1/x.png"],
                                  ["bench", "targets", "--video", "missing.mp4", "--json", "reps/a/b.json"],
                                  ["check", "empty.txt", "--index-dir", "idx/k400"],
                                  ["check", "empty.txt", "--out", "reports/a/check.json"],
                                  ["export", "missing.pt", "exports/a/x.safetensors", "--format", "safetensors"]])
def test_a_refused_command_leaves_no_empty_folder_it_made_for_its_output(argv, tmp_path, capsys, monkeypatch):
    """check_output makes an output's folders before the inputs are read: `mme viz missing.mp4 --out
    figs/run1/x.png` left figs/run1, `bench targets --video missing --json reps/a/b.json` reps/a, `mme check EMPTY
    --index-dir idx` idx. Every command runs in mme.utils.removing_made_folders, which removes those it made, empty,
    when it fails; a folder that was there stays."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "idx").mkdir()  # the user's: stays, its new sub-folder goes
    assert main(argv) == 1
    assert "error: " in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.txt", "idx"] and not any((tmp_path / "idx").iterdir())


def test_verbose_is_taken_after_the_command_too(tmp_path, monkeypatch, capsys):
    """``mme synth d -v`` was refused, 'unrecognized arguments: -v': ``-v`` was the top parser's alone. Every
    command's parser (a bench kind's too) takes it, set only where given, so one before the command stands."""
    import logging

    import mme.data.synth as synth

    for argv, verbose in ((["synth", "d", "-v"], True), (["-v", "synth", "d"], True), (["synth", "d"], False),
                          (["bench", "data", "--verbose", "--workers", "0"], True), (["-v", "bench", "data"], True),
                          (["pretrain", "--config", "tiny_cpu_pixel", "-v", "train.steps=2"], True)):
        assert build_parser().parse_args(argv).verbose is verbose, argv
    levels, real = [], synth.generate_synth
    monkeypatch.setattr(synth, "generate_synth", lambda *a, **k: levels.append(logging.getLogger("mme").level)
                        or real(*a, **k))
    assert main(["synth", str(tmp_path / "d"), "--classes", "2", "--videos-per-class", "1", "--size", "32",
                 "--frames", "4", "--workers", "1", "-v"]) == 0
    assert levels == [logging.DEBUG] and (tmp_path / "d" / "classes.json").is_file()
    assert capsys.readouterr().out.startswith("wrote 2 videos of 2 classes to ")


def test_verbose_logs_mme_s_debug_lines_and_not_its_libraries(tmp_path):
    """``mme -v`` set the root logger to debug: a two-step run wrote about 2,100 lines of matplotlib's (findfont,
    for the loss curve's picture) around its own few. Its resolved config is a recipe that reads back (it was
    yaml.safe_dump's, whose unquoted text None a recipe reads as unset: data.index_dir here). The libraries' info
    lines are not shown, with -v or without: matplotlib's 'generated new fontManager' in a new home (its config
    folder empty) was said as mme's, '[mme 10:32:48 INFO] generated new fontManager'."""
    from mme.config import load_config
    from mme.train.config import PretrainConfig

    d = generate_synth(tmp_path / "synth", num_classes=2, videos_per_class=2, size=64, num_frames=12, workers=1,
                       splits=(1, 0, 0))
    proc = subprocess.run([sys.executable, "-m", "mme.cli", "-v", "pretrain", "--config", "tiny_cpu_mme",
                           f"data.list_file={d.lists['train']}", f"data.root={d.root}", "data.img_size=64",
                           "model.img_size=64", "data.num_workers=0", "train.steps=1", "train.batch_size=2",
                           'data.index_dir="None"', f"train.out_dir={tmp_path / 'run'}"], capture_output=True,
                          text=True, env={**os.environ, "OMP_NUM_THREADS": "1", "MPLCONFIGDIR": str(tmp_path / "mpl")},
                          timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "DEBUG] resolved config:" in proc.stderr and (tmp_path / "run" / "loss.png").is_file()
    assert "findfont" not in proc.stderr and proc.stderr.count("DEBUG]") < 10, proc.stderr[-2000:]
    assert list((tmp_path / "mpl").glob("fontlist-*.json")) and "fontManager" not in proc.stderr, proc.stderr[-2000:]
    dumped = re.match(r"(?:(?:\w+:| ).*\n)+", proc.stderr.split("DEBUG] resolved config:\n", 1)[1])[0]
    (tmp_path / "dumped.yaml").write_text(dumped)
    cfg = load_config(PretrainConfig, tmp_path / "dumped.yaml")
    assert (cfg.data.index_dir, cfg.train.steps, cfg.data.root) == ("None", 1, str(d.root))


TWO_CALLS = """
import json, logging, sys
from mme.cli import main
logging.getLogger("torch").setLevel(logging.ERROR)  # the caller's own setting
def state():
    root = logging.getLogger()
    return [root.level, [type(h).__name__ for h in root.handlers], logging.getLogger("mme").level,
            logging.getLogger("torch").level]
argv = ["pretrain", "--config", "tiny_cpu_pixel", "data.list_file=/nowhere/list.txt", "train.out_dir=run"]
before = state()
print("first call", main(["-v", *argv]), file=sys.stderr, flush=True)
after = state()
print("second call", main(argv), file=sys.stderr, flush=True)
print(json.dumps({"before": before, "after": after, "again": state()}))
"""


def test_a_python_caller_of_main_keeps_its_logging_settings(tmp_path):
    """mme.cli.main called from Python (a notebook, a script running commands) left its logging set up for the
    command: after a ``-v`` call mme's logger stayed at DEBUG, so every later call logged its debug lines, and the
    root logger stayed at INFO with the CLI's handler (and torch's level the CLI's). Now put back as it ends."""
    proc = subprocess.run([sys.executable, "-c", TWO_CALLS], capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    first, second = proc.stderr.split("first call 1\n")
    assert "DEBUG] config:" in first and "DEBUG]" not in second and second.endswith("second call 1\n"), proc.stderr
    assert "INFO] config: recipe" in second  # the second call sets the log up as the first did
    states = json.loads(proc.stdout)
    assert states["before"] == states["after"] == states["again"] == [30, [], 0, 40], states


def test_in_workers_sizes_its_open_files_by_the_workers_it_starts(monkeypatch):
    """2 jobs with 64 workers start 2 processes: under ``ulimit -n 100`` they were refused, "below the 280 that 64
    worker processes may hold"; they need 32 files and run."""
    import resource

    from mme.errors import MMEError
    from mme.utils import in_workers

    real = resource.getrlimit
    monkeypatch.setattr(resource, "getrlimit", lambda kind: (100, 100) if kind == resource.RLIMIT_NOFILE else
                        real(kind))
    assert sorted(in_workers(abs, [-1, -2], 64, None)) == [1, 2]
    monkeypatch.setattr(resource, "getrlimit", lambda kind: (30, 30) if kind == resource.RLIMIT_NOFILE else
                        real(kind))  # (refused: the setting named as given, what would help said)
    with pytest.raises(MMEError, match=r"^--workers=64 \(3 start\): .* below the 36 that 3 worker processes .* "
                                       r"or lower --workers below 3$"):
        list(in_workers(abs, [-1, -2, -3], 64, None))


def test_worker_processes_started_fresh_log_as_the_command_does(monkeypatch, capfd):
    """A loader worker started by spawn or forkserver (macOS's default; Linux's from Python 3.14; a script's
    ``set_start_method``), and every worker of :func:`mme.utils.in_workers` (``mme synth``, ``extract``, ``check``),
    started with no log set up: their warnings were bare lines (no ``[mme ...]``, no rank), their info and ``-v``
    debug lines lost. They set up the command's log as they start (a forked worker has it already)."""
    import logging

    from torch.utils.data import DataLoader
    from worker_jobs import Says, says

    from mme import cli
    from mme.data.dataset import start_workers
    from mme.utils import in_workers

    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    kinds = ["a fork loader worker", "a spawn loader worker", "in_workers' worker 1", "in_workers' worker 2"]
    with cli._logging_put_back():
        root = logging.getLogger()
        for handler in list(root.handlers):  # (pytest's, put back after: the CLI sets its log up where there is none)
            root.removeHandler(handler)
        cli._logging_of_ranks(argparse.Namespace(verbose=True))
        for context in ("fork", "spawn"):
            assert list(start_workers(DataLoader(Says(f"a {context} loader worker"), batch_size=None, num_workers=1,
                                                 multiprocessing_context=context))) == [f"a {context} loader worker"]
        assert sorted(in_workers(says, kinds[2:], 2, None)) == kinds[2:]
    said = sorted(re.sub(r"^\[mme \d\d:\d\d:\d\d ", "[mme T ", line) for line in capfd.readouterr().err.splitlines()
                  if " by " in line)
    assert said == sorted(f"[mme T {level} rank 0] {what} by {kind}" for kind in kinds
                          for level, what in (("WARNING", "warned"), ("INFO", "said"), ("DEBUG", "debugged"))), said


def test_an_argument_this_locale_cannot_encode_back_is_refused_naming_it(monkeypatch, capsys):
    """UTF-8 bytes in a path under an EUC-JP locale: Python decodes them to characters its euc_jp codec cannot encode
    back (``\\x97``), and ``mme synth / lists / check / pretrain`` ended in a UnicodeEncodeError traceback at the
    first use of the name. A path argument or an override is refused naming it and the reason, nothing run."""
    import mme.data.synth
    import mme.train.pretrain

    ran = []
    monkeypatch.setattr(mme.data.synth, "generate_synth", lambda **kwargs: ran.append(kwargs))
    monkeypatch.setattr(mme.train.pretrain, "main", lambda *args: ran.append(args))
    monkeypatch.setattr(os, "fsencode", lambda name: os.fspath(name).encode("euc_jp", "surrogateescape"))
    monkeypatch.setattr(sys, "getfilesystemencoding", lambda: "euc_jp")
    name = "/tmp/out_\udce6\x97"
    why = (": its bytes cannot be represented in this locale's encoding (euc_jp), so it names no file: run mme "
           "under a UTF-8 locale (LC_ALL=C.UTF-8)")
    for argv, said in ((["synth", name], f"mme synth: error: argument out: {name!r}{why}"),
                       (["check", "list.txt", "--out", name], f"mme check: error: argument --out: {name!r}{why}"),
                       (["pretrain", "--config", "tiny_cpu_mme", f"train.out_dir={name}"],
                        f"mme pretrain: error: argument key=value: {f'train.out_dir={name}'!r}{why}"),
                       (["pretrain", "train.steps=1", "--config", "tiny_cpu_mme", f"train.out_dir={name}"],
                        f"mme: error: argument key=value: {f'train.out_dir={name}'!r}{why}")):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert (info.value.code, capsys.readouterr().err.splitlines()[-1]) == (2, said), argv
    assert ran == []


def test_an_empty_path_is_refused_naming_its_flag_and_an_empty_root_is_the_working_folder(monkeypatch, capsys):
    """An empty path, what an unset shell variable gives, was taken for the option not given, exit 0: ``--resume
    "$CKPT"`` trained a fresh run from step 0, ``mme export SRC ""`` wrote into the working folder, ``viz
    --checkpoint ""`` drew the plain tracks, ``bench --json ""`` wrote no figures, ``probe --test ""`` scored on val
    and ``--val ""`` carved val from train. Each is refused naming its flag, nothing run; ``--root ""``, its
    documented default, is the working folder."""
    import mme.eval.finetuned
    import mme.eval.probe
    import mme.models.export
    import mme.motion.bench
    import mme.motion.viz
    import mme.train.bench
    import mme.train.pretrain

    ran = []
    for module, name in ((mme.train.pretrain, "main"), (mme.eval.finetuned, "main"), (mme.models.export, "export"),
                         (mme.motion.viz, "draw_picture"), (mme.motion.bench, "bench_targets"),
                         (mme.train.bench, "bench_train"), (mme.eval.probe, "run_probe")):
        monkeypatch.setattr(module, name, lambda *args, **kwargs: ran.append(args or kwargs))
    probe = ["probe", "c.pt", "--train", "train.txt", "--out", "p"]
    for argv, flag in ((["pretrain", "--config", "tiny_cpu_mme", "--resume", ""], "--resume"),
                       (["finetune", "--config", "finetune_tiny_cpu", "--resume", ""], "--resume"),
                       (["export", "c.pt", ""], "out"),
                       (["viz", "v.mp4", "--out", "v.png", "--checkpoint", ""], "--checkpoint"),
                       (["bench", "targets", "--json", ""], "--json"), (["bench", "train", "--json", ""], "--json"),
                       ([*probe, "--test", ""], "--test"), ([*probe, "--val", ""], "--val")):
        with pytest.raises(SystemExit) as info:
            main(argv)
        command = " ".join(argv[:2] if argv[0] == "bench" else argv[:1])
        assert (info.value.code, capsys.readouterr().err.splitlines()[-1]) == (2, (
            f"mme {command}: error: argument {flag}: empty, which names no file or folder (an unset shell "
            "variable?)")), argv
    assert ran == []
    parser = build_parser()
    assert parser.parse_args([*probe, "--root", ""]).root == ""
    assert parser.parse_args(["check", "list.txt", "--root", ""]).root == ""


def test_an_empty_text_option_is_refused_naming_its_flag(tmp_path, monkeypatch, capsys):
    """``--group-by ""`` (an unset shell variable) compiled to a pattern that matches every name: every train video
    one source, no split to carve, or a false warning of a source in two splits; ``--shard ""`` extracted the whole
    list and ``bench train --target ""`` timed the pixel target, exit 0. The command's line is the library's refusal
    (:func:`mme.data.lists.group_pattern`, :func:`mme.motion.extract.parse_shard`, the bench's target check), nothing
    made."""
    monkeypatch.chdir(tmp_path)
    Path("t.txt").write_text("a.mp4 0\n")
    for argv, said in ((["probe", "c.pt", "--train", "t.txt", "--out", "p", "--group-by", ""],
                        "--group-by is empty, which matches every file name"),
                       (["extract", "t.txt", "--out", "c", "--shard", ""], "--shard must look like k/n"),
                       (["bench", "train", "--target", ""], "--target: '' names no target")):
        assert main(argv) == 1, argv
        command = " ".join(argv[:2] if argv[0] == "bench" else argv[:1])
        assert capsys.readouterr().err.splitlines()[-1].startswith(f"mme {command}: error: {said}"), argv
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.txt"]


def test_an_empty_value_from_python_is_refused_naming_it_not_taken_for_the_value_not_given(tmp_path):
    """From Python, an empty value was taken for the argument not given: ``draw_picture(checkpoint="")`` drew the
    tracks picture (with ``seed=3`` refused as a seed without --checkpoint), ``check_bench_json("")`` let the
    benchmark write no figures, ``run_probe(test_list="")`` scored on val, ``val_list=""`` carved val from train,
    ``group_by=""`` made every video one source, ``parse_shard("")`` took the whole list and the bench's ``target=""``
    timed the pixel target. Each is refused naming its option, before any work."""
    from mme.data.lists import group_pattern
    from mme.errors import ConfigError
    from mme.eval.probe import run_probe
    from mme.motion.extract import parse_shard
    from mme.motion.viz import draw_picture
    from mme.train.bench import _configs
    from mme.utils import check_bench_json

    out = tmp_path / "v.png"
    for call, said in (
            (lambda: draw_picture("v.mp4", out, checkpoint=""), "--checkpoint is empty; give a file or folder name"),
            (lambda: draw_picture("v.mp4", out, checkpoint="", seed=3),
             "--checkpoint is empty; give a file or folder name"),
            (lambda: check_bench_json(""), "--json is empty; give a file name"),
            (lambda: run_probe("c.pt", "t.txt", tmp_path / "p", test_list=""), "--test is empty; give a file name"),
            (lambda: run_probe("c.pt", "t.txt", tmp_path / "p", val_list=""), "--val is empty; give a file name"),
            (lambda: run_probe("c.pt", "t.txt", tmp_path / "p", classes=""), "--classes is empty; give a file name"),
            (lambda: group_pattern(""), "--group-by is empty, which matches every file name: all videos one source; "
             "give a regular expression, or leave it out for the sources the names say"),
            (lambda: parse_shard(""), "--shard must look like k/n (e.g. 3/16), got ''"),
            (lambda: _configs(None, None, None, None, None, "", None),
             "--target: '' names no target; choose from ['pixel', 'hog', 'mme', 'mme-released']")):
        with pytest.raises(ConfigError) as info:
            call()
        assert str(info.value) == said
    assert sorted(tmp_path.iterdir()) == []


def test_a_path_argument_starting_with_a_tilde_is_under_the_home_folder(tmp_path, monkeypatch):
    """A shell leaves ``--out=~/x`` (and a quoted ``'~/x'``) as written: ``mme extract``, ``check``, ``embed`` and
    ``export`` wrote into a folder named ``~`` of the working folder (one that ``rm -rf ~`` invites), where a config
    key's ``~/`` was the home folder; then a bare ``--root=~`` still was that folder, its videos missing. Every path
    argument now parses through ``mme.cli.path``, as a config key does; the text options that are no paths are named
    here."""
    import torch
    from videos import affine_video, write_video

    from mme.models.config import ModelConfig
    from mme.models.export import save_pretrained
    from mme.models.vit import VisionTransformer

    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    write_video(home / "v.mp4", affine_video(12, 32, 32, dx=1.0, seed=0)[0])
    (home / "list.txt").write_text("v.mp4 0\n")
    torch.manual_seed(0)
    save_pretrained(VisionTransformer(ModelConfig(img_size=32, patch_size=16, num_frames=4, tubelet_size=2,
                                                  embed_dim=32, depth=1, num_heads=2)), home / "encoder")
    codes = [main(argv) for argv in (
        ["check", "~/list.txt", "--root=~", "--out=~/check.json", "--index-dir=~/index"],
        ["extract", str(home / "list.txt"), "--root", str(home), "--out=~/cache", "--short-side", "32"],
        ["embed", "~/encoder", "~/v.mp4", "--out=~/e.npy", "--workers", "0", "--device", "cpu"],
        ["export", str(home / "encoder"), "~/exported", "--format", "mme"])]
    assert not (work / "~").exists(), sorted(p.name for p in (work / "~").iterdir())
    assert codes == [0, 0, 0, 0]
    assert {"check.json", "index", "cache", "e.npy", "exported"} <= {p.name for p in home.iterdir()}
    texts = {"backend", "device", "group_by", "kind", "methods", "overrides", "path_format", "preset", "shard",
             "target"}
    for name, parser in _subcommands(build_parser()).items():
        for action in parser._actions:
            if action.nargs != 0 and action.type is None and not action.choices and action.dest not in texts | {
                    "help", "command", "bench"}:
                raise AssertionError(f"mme {name} {action.option_strings or action.dest}: a path without type=path")


def test_a_command_whose_current_folder_was_removed_says_so_in_one_line_before_any_work(tmp_path, monkeypatch,
                                                                                          capsys):
    # before: mme synth's workers died in a traceback, a torch command in an MKL "FATAL ERROR" (exit 2)
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    assert main(["export", str(tmp_path / "run" / "checkpoint-00000002.pt"), str(tmp_path / "exp")]) == 1
    assert capsys.readouterr().err == "mme export: error: the current folder was removed; cd to an existing one\n"
    assert sorted(tmp_path.iterdir()) == []


def test_a_command_with_no_writable_temporary_folder_says_so_in_one_line_before_any_work(tmp_path, monkeypatch,
                                                                                           capsys):
    # before: torch's import died in tempfile's "No usable temporary directory" traceback. The one folder tempfile
    # tries here is a file (a read-only /tmp cannot be made for root in a test)
    import tempfile

    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    monkeypatch.setattr(tempfile, "tempdir", None)  # (its cached choice)
    monkeypatch.setattr(tempfile, "_candidate_tempdir_list", lambda: [str(not_a_folder)])
    assert main(["export", str(tmp_path / "run" / "checkpoint-00000002.pt"), str(tmp_path / "exp")]) == 1
    assert capsys.readouterr().err == ("mme export: error: no writable temporary folder (TMPDIR, /tmp, /var/tmp, "
                                       "/usr/tmp and the current folder were tried): set TMPDIR to one\n")
    assert sorted(tmp_path.iterdir()) == [not_a_folder]


def test_a_line_logged_while_a_bar_is_drawn_starts_a_line_of_its_own():
    """A progress bar leaves its line open (redrawn after a carriage return); the tests' bars of mme embed, probe
    and finetune are redrawn by set_postfix after each failed video's warning, which the handler did not see as a
    drawing: in a log file the next warnings followed the bar's text on its line. The CLI's handler starts a record
    on a new line where the stream's last write left one open, and adds none after a whole line."""
    import io
    import logging

    from tqdm import tqdm

    from mme.cli import _LinesAfterBars, _ReaderMayGo

    stream = _ReaderMayGo(io.StringIO())
    handler = _LinesAfterBars(stream)
    handler.setFormatter(logging.Formatter("[mme] %(message)s"))
    log = logging.getLogger("mme.test_bars")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("before")
        bar = tqdm(total=3, file=stream, mininterval=0, desc="test")
        for i in range(3):
            bar.update()
            log.warning("video %d failed", i)
            bar.set_postfix(failed=i + 1)
        bar.close()
        log.warning("after")
    finally:
        log.removeHandler(handler)
    text = stream._stream.getvalue()
    logged = [line for line in text.split("\n") if "[mme]" in line]
    assert logged == ["[mme] before", *(f"[mme] video {i} failed" for i in range(3)), "[mme] after"], text
    assert "\n\n" not in text  # (no empty line where none was open)
    stream.write("\rlook: 50%|\r    \r")  # a bar cleared (on a terminal): the next line overwrites it
    assert not stream.line_open


FINALIZED_AT_EXIT = """\
import sys
from mme import cli
class Cycle:
    def __del__(self):
        open(sys.argv[2], "w").write("finalized")
print(getattr(cli, sys.argv[1])(["check", sys.argv[3]]))
cycle = Cycle()
cycle.me = cycle  # held by its reference cycle alone: freed by a garbage collection, at exit the interpreter's last
del cycle
"""


@pytest.mark.parametrize("entry, finalized", [("console", False), ("main", True)])
def test_the_command_alone_exits_without_the_last_collections_a_python_caller_keeps_them(entry, finalized, tmp_path):
    """The mme command's process (mme.cli.console: its script, python -m mme) freezes its objects at exit, so the
    interpreter's teardown skips tracing them (0.6-1.1 s of CPU after a command that imported torch); a Python caller
    of mme.cli.main keeps its exit's last collections, which finalize its objects held by reference cycles alone (a
    file held so is flushed)."""
    marker = tmp_path / "finalized.txt"
    proc = subprocess.run([sys.executable, "-c", FINALIZED_AT_EXIT, entry, str(marker), str(tmp_path / "no.txt")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "1", proc.stderr[-2000:]  # (the command's own status)
    assert marker.exists() == finalized


def test_a_second_command_in_one_process_warns_as_the_first(tmp_path, caplog):
    """mme.cli.main called twice in one process (a notebook, a script): the second command's warning of a key given
    without effect was not said (said once per process; each command says its own)."""
    import logging

    argv = ["pretrain", "--config", "tiny_cpu_pixel", "data.test_clips=3", "data.list_file=/nowhere/list.txt",
            f"train.out_dir={tmp_path / 'run'}"]
    for _ in range(2):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="mme.config"):
            assert main(argv) == 1
        assert [r.getMessage() for r in caplog.records if "has no effect" in r.getMessage()] == [
            "config: data.test_clips=3 has no effect: pre-training tests nothing (the test views are mme "
            "finetune's)"], caplog.text


@pytest.mark.parametrize("stop", ["worker lost", "out of memory", "Ctrl-C"])
def test_a_stop_mid_way_says_what_the_command_keeps(tmp_path, capsys, monkeypatch, stop):
    """A loader worker lost, the data side out of memory or a Ctrl-C ended every command's line with 'what was
    written is kept (...)', ``mme bench data`` too, which writes its figures at its end: nothing is kept there. A
    check keeps its partial report, a run what it wrote, each with what continues it."""
    from mme.data import bench, lists
    from mme.errors import OutOfMemory, ProcessLost

    def stopping(**kwargs):
        if stop == "Ctrl-C":
            raise KeyboardInterrupt
        raise (ProcessLost if stop == "worker lost" else OutOfMemory)("data loader worker 0 (pid 1) died")

    monkeypatch.setattr(bench, "bench_data", stopping)
    monkeypatch.setattr(lists, "check_lists", stopping)
    said = "interrupted" if stop == "Ctrl-C" else "error: data loader worker 0 (pid 1) died"
    (tmp_path / "train.txt").write_text("a.mp4 0\n")
    for argv, line in ((["bench", "data"], f"mme bench data: {said}; nothing is kept: run it again"),
                       (["check", str(tmp_path / "train.txt")],
                        f"mme check: {said}; what was written is kept (run it again)")):
        assert main(argv) == (130 if stop == "Ctrl-C" else 1)
        assert capsys.readouterr().err.splitlines()[-1] == line
