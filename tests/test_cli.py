"""The CLI imports library modules lazily, so it states their choice lists itself: they must stay the same."""

import argparse

from mme.cli import build_parser
from mme.data.synth import MOTIONS, TEXTURES
from mme.data.video import BACKENDS
from mme.motion.flow import METHODS
from mme.train.precision import PRECISIONS


def _choices(command: str, flag: str) -> tuple:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    action = next(a for a in sub.choices[command]._actions if flag in a.option_strings)
    return tuple(action.choices)


def test_cli_choices_are_the_library_ones():
    assert _choices("synth", "--motion") == MOTIONS
    assert _choices("synth", "--texture") == TEXTURES
    assert _choices("extract", "--flow") == METHODS
    for command in ("extract", "embed"):
        assert _choices(command, "--backend") == BACKENDS
    for command in ("probe", "embed"):
        assert _choices(command, "--precision") == PRECISIONS
