"""Shared pieces of every command: ``--json``, result printing, consoles, formatting."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from edgeward.errors import ConfigError

__all__ = [
    "emit",
    "err",
    "gib",
    "json_option",
    "ms",
    "out",
    "print_fields",
    "state",
    "write_new",
]

F = TypeVar("F", bound=Callable[..., Any])


class RunState:
    """What the top-level error handler needs to know about this invocation.

    Attributes:
        json: ``--json`` was given: errors also go to stdout as ``{"error", "detail"}``.
        debug: ``--debug`` was given: errors print their traceback.
        result_printed: the command already printed its own result object describing the
            failure (``verify`` prints ``{"verified": false, ...}``), so the handler must not
            print a second JSON object.
    """

    json: bool = False
    debug: bool = False
    result_printed: bool = False


state = RunState()
out = Console(highlight=False, soft_wrap=False)
err = Console(stderr=True, highlight=False)


def _set_json(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    state.json = state.json or value
    return value


def json_option(f: F) -> F:
    """``--json``: print the command's result object as JSON (every command has it)."""
    return click.option("--json", "as_json", is_flag=True, callback=_set_json,
                        is_eager=True, help="Print the result as JSON.")(f)


def emit(as_json: bool, result: Any, human: Callable[[], None]) -> None:
    """Print ``result`` as JSON, or call ``human`` to print it for people."""
    if as_json:
        click.echo(json.dumps(result, indent=2, default=str))
    else:
        human()


def print_fields(d: dict[str, Any], *, title: str, measured: Sequence[str] = (),
                 from_spec: Sequence[str] = ()) -> None:
    """A two-column table of a record's fields; a third column says measured/spec."""
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column("field", style="bold", no_wrap=True)
    table.add_column("value")
    if measured or from_spec:
        table.add_column("source")
    for key, value in d.items():
        if key in ("measured", "from_spec", "details") or value in (None, "", []):
            continue
        shown = gib(value) if key.endswith("memory_bytes") else (
            " ".join(value) if isinstance(value, list) else str(value))
        if measured or from_spec:
            src = "measured" if key in measured else "spec" if key in from_spec else ""
            table.add_row(key, shown, src)
        else:
            table.add_row(key, shown)
    out.print(table)


def gib(n: int) -> str:
    """Bytes as GiB with one decimal."""
    return f"{n / 2**30:.1f} GiB"


def ms(seconds: float | None) -> str:
    """Seconds as whole milliseconds, or n/a."""
    return "n/a" if seconds is None else f"{seconds * 1000:.0f} ms"


def write_new(path: Path, text: str) -> None:
    """Create ``path`` with ``text``; never overwrite, never leave a partial file.

    Raises:
        ConfigError: the file exists or cannot be written.
    """
    if path.exists():
        raise ConfigError(f"{path}: already exists; choose another path or remove it first")
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.rename(path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise ConfigError(f"{path}: cannot write ({e.strerror})") from e
