"""``edgeward demo``."""

from __future__ import annotations

import json

import click

from edgeward._cli._output import json_option, ms, out, print_fields

__all__ = ["demo"]


@click.command()
@click.option("--question", default=None, help="What to ask the model.")
@click.option("--max-tokens", default=64, show_default=True, type=click.IntRange(1, 1024),
              help="Most tokens in the reply.")
@json_option
def demo(question: str | None, max_tokens: int, as_json: bool) -> None:
    """Run the end-to-end demo on the packaged SmolLM2 model (no services needed)."""
    from edgeward.demo import DEFAULT_QUESTION, run_demo

    asked = question or DEFAULT_QUESTION
    if as_json:
        result = run_demo(question=asked, max_tokens=max_tokens)
        click.echo(json.dumps(result.to_dict(), indent=2, default=str))
        return

    def on_step(text: str) -> None:
        out.print(f"[bold]▶[/bold] {text}", soft_wrap=True)

    started = False

    def on_text(piece: str) -> None:
        nonlocal started
        if not started:
            out.print(f"\n[bold]You:[/bold] {asked}", soft_wrap=True)
            out.print("[bold]SmolLM2:[/bold] ", end="")
            started = True
        out.print(piece, end="", markup=False, soft_wrap=True)

    result = run_demo(question=asked, max_tokens=max_tokens, on_step=on_step, on_text=on_text)
    s = result.stats
    out.print(
        f"\n[dim]prompt {s.prompt_tokens} tokens, reply {s.completion_tokens} tokens, "
        f"first token after {ms(s.time_to_first_token_s)}, "
        f"decode {s.decode_tokens_per_s or 0:.1f} tokens/s, "
        f"peak memory {s.peak_memory_bytes / 2**20:.0f} MiB[/dim]\n",
        soft_wrap=True,
    )
    print_fields(result.detected.to_dict(), title="Detected profile",
                 measured=result.detected.measured, from_spec=result.detected.from_spec)
