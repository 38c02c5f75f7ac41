"""``python -m edgeward``: the same command line as the ``edgeward`` script."""

from edgeward.cli import main

try:
    status = main()
except KeyboardInterrupt:  # a Ctrl-C that lands after main() has handled one
    status = 130
raise SystemExit(status)
