"""The ``edgeward`` command: parses arguments, calls the packages, prints the result.

Thin by design: each command calls one library function that returns a result object;
``--json`` prints that object as JSON, otherwise a rich table. Errors print one line (what was
wrong, what to do) and exit with the code of their class in :mod:`edgeward.errors`; a traceback
only with ``--debug``.

Exit codes:
    0 success; 1 internal error (a bug: please report it with --debug output); 2 usage error
    (bad option or argument); 3 configuration or input error; 4 unusable artifact or model file;
    5 signature or provenance check failed; 6 inference or compression backend failed;
    7 blocked by the safety filter; 8 device/fleet channel error; 9 missing resource (disk,
    memory, port); 130 interrupted.
"""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

import click
from rich import box
from rich.console import Console
from rich.table import Table

from edgeward import __version__
from edgeward.errors import ConfigError, EdgewardError

__all__ = ["cli", "main"]

F = TypeVar("F", bound=Callable[..., Any])

_EXIT_CODES_HELP = """\b
Exit codes:
  0  success            5  signature/provenance check failed
  1  internal error     6  inference/compression backend failed
  2  usage error        7  blocked by the safety filter
  3  bad config/input   8  device/fleet channel error
  4  unusable artifact  9  missing resource (disk, memory, port)
  130 interrupted
"""


class _RunState:
    """What the error handler needs to know about this invocation."""

    json: bool = False
    debug: bool = False


_state = _RunState()
_out = Console(highlight=False, soft_wrap=False)
_err = Console(stderr=True, highlight=False)


def _set_json(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    _state.json = _state.json or value
    return value


def json_option(f: F) -> F:
    """``--json``: print the command's result object as JSON (on every command)."""
    return click.option("--json", "as_json", is_flag=True, callback=_set_json,
                        is_eager=True, help="Print the result as JSON.")(f)


def _emit(as_json: bool, result: Any, human: Callable[[], None]) -> None:
    if as_json:
        click.echo(json.dumps(result, indent=2, default=str))
    else:
        human()


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
    _state.debug = _state.debug or debug


# -- profiles ------------------------------------------------------------------------------


@cli.group()
def profile() -> None:
    """Hardware profiles: the catalog and this machine."""


@profile.command("list")
@json_option
def profile_list(as_json: bool) -> None:
    """List the catalog of hardware profiles."""
    from edgeward.hardware_profiles import catalog

    profiles = catalog()

    def human() -> None:
        table = Table(title="Hardware profiles", title_justify="left", box=box.SIMPLE_HEAD,
                      pad_edge=False, collapse_padding=True)
        table.add_column("name", no_wrap=True)
        table.add_column("memory", justify="right", no_wrap=True)
        table.add_column("GB/s", justify="right", no_wrap=True)
        table.add_column("backend", no_wrap=True)
        table.add_column("format", no_wrap=True)
        table.add_column("ctx", justify="right", no_wrap=True)
        table.add_column("SIMD", no_wrap=True)
        for p in profiles:
            table.add_row(p.name, _gib(p.memory_bytes), f"{p.bandwidth_gbps:g}", p.backend,
                          p.preferred_format, str(p.default_context), _best_simd(p.cpu_features))
        _out.print(table)

    _emit(as_json, [p.to_dict() for p in profiles], human)


@profile.command("show")
@click.argument("name")
@json_option
def profile_show(name: str, as_json: bool) -> None:
    """Show one profile: a catalog NAME or a path to a profile .toml file."""
    from edgeward.hardware_profiles import resolve_profile

    p = resolve_profile(name)
    _emit(as_json, p.to_dict(), lambda: _print_profile(p.to_dict(), title=p.display_name))


@profile.command("detect")
@click.option("--no-bandwidth", is_flag=True,
              help="Skip the ~2 s memory-bandwidth measurement.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the profile as TOML to this file (refuses to overwrite).")
@click.option("--name", default="local", show_default=True, help="Slug for the profile.")
@json_option
def profile_detect(no_bandwidth: bool, out: Path | None, name: str, as_json: bool) -> None:
    """Detect this machine: CPU features, cores, memory, GPUs, memory bandwidth."""
    from edgeward.hardware_profiles import detect_profile

    if out is not None and out.exists():
        raise ConfigError(f"{out}: already exists; choose another path or remove it first")
    if as_json:
        detected = detect_profile(measure_bandwidth=not no_bandwidth, name=name)
    else:
        with _err.status("measuring this machine…"):
            detected = detect_profile(measure_bandwidth=not no_bandwidth, name=name)
    if out is not None:
        _write_new(out, detected.profile.to_toml())

    def human() -> None:
        _print_profile(detected.to_dict(), title="This machine", measured=detected.measured,
                       from_spec=detected.from_spec)
        if out is not None:
            _out.print(f"written to {out}")

    _emit(as_json, detected.to_dict(), human)


# -- demo ----------------------------------------------------------------------------------


@cli.command()
@click.option("--question", default=None, help="What to ask the model.")
@click.option("--max-tokens", default=64, show_default=True, type=click.IntRange(1, 1024),
              help="Most tokens in the reply.")
@json_option
def demo(question: str | None, max_tokens: int, as_json: bool) -> None:
    """Run the end-to-end demo on the packaged SmolLM2 model (no services needed)."""
    from edgeward.demo import DEFAULT_QUESTION, run_demo

    if as_json:
        result = run_demo(question=question or DEFAULT_QUESTION, max_tokens=max_tokens)
        click.echo(json.dumps(result.to_dict(), indent=2, default=str))
        return

    def on_step(text: str) -> None:
        _out.print(f"[bold]▶[/bold] {text}", soft_wrap=True)

    asked = question or DEFAULT_QUESTION
    state = {"started": False}

    def on_text(piece: str) -> None:
        if not state["started"]:
            _out.print(f"\n[bold]You:[/bold] {asked}", soft_wrap=True)
            _out.print("[bold]SmolLM2:[/bold] ", end="")
            state["started"] = True
        _out.print(piece, end="", markup=False, soft_wrap=True)

    result = run_demo(question=asked, max_tokens=max_tokens, on_step=on_step, on_text=on_text)
    s = result.stats
    _out.print(
        f"\n[dim]prompt {s.prompt_tokens} tokens, reply {s.completion_tokens} tokens, "
        f"first token after {_ms(s.time_to_first_token_s)}, "
        f"decode {s.decode_tokens_per_s or 0:.1f} tokens/s, "
        f"peak memory {s.peak_memory_bytes / 2**20:.0f} MiB[/dim]\n",
        soft_wrap=True,
    )
    _print_profile(result.detected.to_dict(), title="Detected profile",
                   measured=result.detected.measured, from_spec=result.detected.from_spec)


# -- output helpers ------------------------------------------------------------------------


def _print_profile(d: dict[str, Any], *, title: str, measured: Sequence[str] = (),
                   from_spec: Sequence[str] = ()) -> None:
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column("field", style="bold", no_wrap=True)
    table.add_column("value")
    if measured or from_spec:
        table.add_column("source")
    for key, value in d.items():
        if key in ("measured", "from_spec", "details") or value in (None, "", []):
            continue
        shown = _gib(value) if key.endswith("memory_bytes") else (
            " ".join(value) if isinstance(value, list) else str(value))
        if measured or from_spec:
            src = "measured" if key in measured else "spec" if key in from_spec else ""
            table.add_row(key, shown, src)
        else:
            table.add_row(key, shown)
    _out.print(table)


def _best_simd(features: Sequence[str]) -> str:
    for level in ("amx", "avx512_vnni", "avx512f", "avx2", "avx", "i8mm", "dotprod", "neon"):
        if level in features:
            return level
    return "-"


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


def _ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1000:.0f} ms"


def _write_new(path: Path, text: str) -> None:
    """Create ``path`` with ``text``; never overwrite, never leave a partial file."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.rename(path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise ConfigError(f"{path}: cannot write ({e.strerror})") from e


# -- entry point ---------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code (see the module docstring)."""
    _state.json = False
    _state.debug = False
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        cli.main(args=args, prog_name="edgeward", standalone_mode=False)
    except click.exceptions.Exit as e:
        return int(e.exit_code)
    except click.ClickException as e:
        e.show()
        return int(e.exit_code)
    except (click.Abort, KeyboardInterrupt):
        _err.print("interrupted")
        return 130
    except EdgewardError as e:
        return _fail(e.kind, str(e), e.exit_code)
    except Exception as e:
        return _fail("internal_error",
                     f"internal error: {type(e).__name__}: {e} "
                     "(this is a bug; re-run with --debug and report the traceback)", 1)
    return 0


def _fail(kind: str, detail: str, code: int) -> int:
    if _state.debug:
        traceback.print_exc()
    if _state.json:
        click.echo(json.dumps({"error": kind, "detail": detail}))
    print(f"edgeward: error: {detail}", file=sys.stderr)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
