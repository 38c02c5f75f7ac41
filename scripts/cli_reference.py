"""Write the CLI reference (docs/cli-reference.md) from the `edgeward` command's own parser.

Every command and option, with its help text, default and choices, exactly as `--help` knows
them — so the reference cannot drift from the code. tests/test_cli.py fails when the file is
out of date; regenerate it with:

    .venv/bin/python scripts/cli_reference.py            # rewrite docs/cli-reference.md
    .venv/bin/python scripts/cli_reference.py --check    # exit 1 if it is out of date
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "cli-reference.md"


def _commands(group: click.Group, prefix: tuple[str, ...] = ()
              ) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    for name in sorted(group.commands):
        cmd = group.commands[name]
        yield (*prefix, name), cmd
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, (*prefix, name))


def _param_row(p: click.Parameter, ctx: click.Context) -> str:
    if isinstance(p, click.Argument):
        return f"| `{p.human_readable_name}` | argument{'' if p.required else ' (optional)'} |"
    assert isinstance(p, click.Option)
    names = ", ".join(f"`{o}`" for o in [*p.opts, *p.secondary_opts])
    help_text = " ".join((p.help or "").split()).replace("|", "\\|")
    extra = []
    if isinstance(p.type, click.Choice):
        extra.append("one of " + ", ".join(f"`{c}`" for c in p.type.choices))
    if p.required:
        extra.append("required")
    if p.multiple:
        extra.append("repeatable")
    default = p.get_default(ctx, call=False)
    if p.show_default and default not in (None, False, ()) and not callable(default):
        extra.append(f"default `{default}`")
    detail = "; ".join(extra)
    return f"| {names} | {help_text}{' (' + detail + ')' if detail else ''} |"


def render() -> str:
    """The whole reference as Markdown."""
    from edgeward.cli import cli

    lines = ["# CLI reference", "",
             "Generated from the `edgeward` parser by `scripts/cli_reference.py`; do not edit. "
             "The conventions (output, `--json`, exit codes) are in [cli.md](cli.md).", ""]
    root_ctx = click.Context(cli, info_name="edgeward")
    for path, cmd in _commands(cli):
        ctx = click.Context(cmd, info_name=path[-1], parent=root_ctx)
        usage = " ".join(cmd.collect_usage_pieces(ctx))
        lines += [f"## `edgeward {' '.join(path)}`", ""]
        help_text = (cmd.help or "").replace("\b\n", "")
        lines += [" ".join(help_text.split()) if help_text else "(no description)", ""]
        if isinstance(cmd, click.Group):
            lines += ["Subcommands: " + ", ".join(f"`{n}`" for n in sorted(cmd.commands)), ""]
            continue
        lines += [f"Usage: `edgeward {' '.join(path)} {usage}`", ""]
        params = [p for p in cmd.params if p.name != "help"]
        if params:
            lines += ["| parameter | meaning |", "|---|---|"]
            lines += [_param_row(p, ctx) for p in params]
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if the file is out of date")
    args = ap.parse_args()
    text = render()
    if args.check:
        current = OUT.read_text(encoding="utf-8") if OUT.is_file() else ""
        if current != text:
            print(f"{OUT} is out of date: run scripts/cli_reference.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
