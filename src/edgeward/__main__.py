"""``python -m edgeward``: the same command line as the ``edgeward`` script."""

from edgeward.cli import program

program()
