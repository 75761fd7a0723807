"""The CLI imports library modules lazily, so it states their choice lists itself: they must stay the same; and
it only maps flags to the keyword arguments of one library function per subcommand."""

import argparse
import importlib
import inspect
import json

from mme.cli import build_parser, main
from mme.data.synth import MOTIONS, PRESETS, TEXTURES
from mme.data.video import BACKENDS
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


def test_cli_choices_are_the_library_ones():
    assert _choices("synth", "--motion") == MOTIONS
    assert _choices("synth", "--texture") == TEXTURES
    assert _choices("synth", "--preset") == tuple(PRESETS)
    for command in ("extract", "bench targets"):
        assert _choices(command, "--flow") == METHODS
        assert f"default {DEFAULT_FLOW}:" in _action(command, "--flow").help
    for command in ("extract", "embed"):
        assert _choices(command, "--backend") == BACKENDS
    for command in ("probe", "embed"):
        assert _choices(command, "--precision") == PRECISIONS


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
        dests = {a.dest for a in parser._actions if a.dest != "help"}
        assert dests <= params, (name, dests - params)


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
