"""The ``edgeward`` command: parses arguments, calls the packages, prints the result.

Thin by design: each command (one module per group in :mod:`edgeward._cli`) calls one library
function that returns a result object; ``--json`` prints that object as JSON, otherwise a rich
table. Errors print one line (what was wrong, what to do) and exit with the code of their class
in :mod:`edgeward.errors`; a traceback only with ``--debug``.

Exit codes:
    0 success; 1 internal error (a bug: please report it with --debug output); 2 usage error
    (bad option or argument); 3 configuration or input error; 4 unusable artifact or model file;
    5 signature or provenance check failed; 6 inference or compression backend failed;
    7 blocked by the safety filter; 8 device/fleet channel error; 9 missing resource (disk,
    memory, port); 130 interrupted.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Sequence
from importlib import metadata
from typing import NoReturn

import click

from edgeward import __version__
from edgeward._cli._output import err, state
from edgeward._cli.agent import agent, run
from edgeward._cli.behaviour import behaviour
from edgeward._cli.bundle import bundle
from edgeward._cli.compress import compress
from edgeward._cli.demo import demo
from edgeward._cli.fleet import fleet
from edgeward._cli.profile import profile
from edgeward._cli.provenance import card, keys, sign, verify, verify_log
from edgeward._cli.redteam import redteam
from edgeward._cli.safety import safety
from edgeward._cli.tui import tui
from edgeward.errors import EdgewardError

__all__ = ["cli", "main", "program"]

_EXIT_CODES_HELP = """\b
Exit codes:
  0  success            5  signature/provenance check failed
  1  internal error     6  inference/compression backend failed
  2  usage error        7  blocked by the safety filter
  3  bad config/input   8  device/fleet channel error
  4  unusable artifact  9  missing resource (disk, memory, port)
  130 interrupted
"""


def _version_message() -> str:
    try:
        llama = metadata.version("llama-cpp-python")
    except metadata.PackageNotFoundError:
        llama = "not installed"
    return f"edgeward {__version__} (llama-cpp-python {llama}, Python {sys.version.split()[0]})"


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
             epilog=_EXIT_CODES_HELP)
@click.version_option(__version__, "--version", message=_version_message())
@click.option("--debug", is_flag=True, help="Show a full traceback when something fails.")
def cli(debug: bool) -> None:
    """edgeward: compress, sign, ship and run open-weights models on devices people own."""
    state.debug = state.debug or debug


cli.add_command(profile)
cli.add_command(demo)
cli.add_command(keys)
cli.add_command(sign)
cli.add_command(verify)
cli.add_command(card)
cli.add_command(verify_log)
cli.add_command(compress)
cli.add_command(safety)
cli.add_command(fleet)
cli.add_command(agent)
cli.add_command(run)
cli.add_command(tui)
cli.add_command(bundle)
cli.add_command(behaviour)
cli.add_command(redteam)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code (see the module docstring)."""
    state.json = False
    state.debug = False
    state.result_printed = False
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        cli.main(args=args, prog_name="edgeward", standalone_mode=False)
    except click.exceptions.Exit as e:
        return int(e.exit_code)
    except click.ClickException as e:
        e.show()
        return int(e.exit_code)
    except (click.Abort, KeyboardInterrupt):
        err.print("interrupted")
        if argv is None:  # the program itself, not a caller that passed its own arguments
            _exit_on_another_interrupt()
        return 130
    except EdgewardError as e:
        return _fail(e.kind, str(e), e.exit_code)
    except Exception as e:  # noqa: BLE001 - the last line of defence prints one clear line
        return _fail("internal_error",
                     f"internal error: {type(e).__name__}: {e} "
                     "(this is a bug; re-run with --debug and report the traceback)", 1)
    return 0


def program() -> NoReturn:
    """The program (the ``edgeward`` script and ``python -m edgeward``): :func:`main`, then
    exit with its status.

    An interrupted run (130) has already stopped what it started when :func:`main` returns;
    it then ends at once, after flushing the logs and the terminal, so that nothing during
    the interpreter's own shutdown (joining threads, a late signal) can turn its status into
    a death by SIGINT.
    """
    try:
        status = main()
    except KeyboardInterrupt:  # a Ctrl-C that lands after main() has handled one
        status = 130
    if status == 130:
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(130)
    sys.exit(status)


def _exit_on_another_interrupt() -> None:
    """After a Ctrl-C has been handled, another one (while the interpreter winds down and
    joins threads) ends the process at once with the same status, 130, instead of a
    KeyboardInterrupt escaping past the handler and the process dying of SIGINT."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, lambda *_: os._exit(130))


def _fail(kind: str, detail: str, code: int) -> int:
    if state.debug:
        traceback.print_exc()
    if state.json and not state.result_printed:
        click.echo(json.dumps({"error": kind, "detail": detail}))
    print(f"edgeward: error: {detail}", file=sys.stderr)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
