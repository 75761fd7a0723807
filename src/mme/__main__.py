"""``python -m mme``: the ``mme`` command, where its script is not on PATH (``python -m mme.cli`` alike)."""

import sys

from mme.cli import console

sys.exit(console())
