"""``edgeward agent run`` (the device agent) and ``edgeward run`` (one-off generation)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from edgeward._cli._output import emit, err, json_option, ms, state
from edgeward.errors import ConfigError, SafetyBlocked

__all__ = ["agent", "run"]

_UNSIGNED_WARNING = (
    "[bold red]WARNING: unsigned artifacts allowed.[/bold red] A model whose signature is "
    "missing or does not verify will run anyway; nobody can prove what it is. Never do this "
    "on a production device.")


@click.group()
def agent() -> None:
    """The device agent: verified models behind a local OpenAI-compatible API."""


@agent.command("run")
@click.option("--config", "config_path", required=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="The agent's TOML configuration (see docs/agent.md).")
@json_option
def agent_run(*, config_path: Path, as_json: bool) -> None:
    """Verify the configured artifact and serve it until SIGTERM or SIGINT.

    SIGHUP (or POST /admin/reload with the api key) re-reads the configuration and swaps in
    the new artifact only if it verifies. Logs go to stderr, one line per event.
    """
    from edgeward.device_agents import configure_logging, load_agent_config, run_agent

    config = load_agent_config(config_path)
    configure_logging(config.log_format)
    if config.allow_unsigned:
        err.print(_UNSIGNED_WARNING, soft_wrap=True)
    result = run_agent(config, config_path=config_path)

    def human() -> None:
        served = sum(result.requests.values())
        err.print(f"agent stopped ({result.shutdown_reason}) after {result.uptime_s:.1f} s; "
                  f"{served} requests answered")

    emit(as_json, result.to_dict(), human)


@click.command("run")
@click.argument("artifact", type=click.Path(exists=True, path_type=Path))
@click.argument("prompt")
@click.option("--trust", "trust_dir", type=click.Path(file_okay=False, path_type=Path),
              help="The trust store to verify ARTIFACT against (required unless "
                   "--allow-unsigned).")
@click.option("--signature", type=click.Path(dir_okay=False, path_type=Path),
              help="Its signature (default ARTIFACT.edgeward.json, else ARTIFACT.oms.sig).")
@click.option("--allow-unsigned", is_flag=True,
              help="Run it even if its signature is missing or does not verify (loud).")
@click.option("--raw", is_flag=True, help="Continue PROMPT as plain text (no chat template).")
@click.option("--max-tokens", default=256, show_default=True, type=click.IntRange(1, 1 << 20),
              help="Most tokens to generate.")
@click.option("--temperature", default=0.8, show_default=True, type=click.FloatRange(0, 10),
              help="0 is greedy (deterministic).")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), help="Fix the sampler's seed.")
@click.option("--profile", "profile_name", help="Hardware profile (name or .toml).")
@click.option("--allow-cpu-fallback", is_flag=True,
              help="On a GPU profile whose backend this llama.cpp lacks, run on the CPU "
                   "(loud) instead of refusing.")
@click.option("--context-length", type=click.IntRange(16), help="Tokens of context.")
@click.option("--safety-policy", help="A policy preset ('default', 'phi'), or a signed policy "
                                      "TOML (verified with --trust); default: no filter.")
@json_option
def run(*, artifact: Path, prompt: str, trust_dir: Path | None, signature: Path | None,
        allow_unsigned: bool, raw: bool, max_tokens: int, temperature: float,
        seed: int | None, profile_name: str | None, allow_cpu_fallback: bool,
        context_length: int | None, safety_policy: str | None, as_json: bool) -> None:
    """Verify ARTIFACT, load it from a private copy and answer PROMPT once (streamed)."""
    from edgeward.device_agents import run_once, safety_filter_for
    from edgeward.runtimes import SamplingParams

    if trust_dir is None and not allow_unsigned:
        raise ConfigError("run: give --trust DIR to verify the artifact (or --allow-unsigned, "
                          "for development only)")
    if allow_unsigned:
        err.print(_UNSIGNED_WARNING, soft_wrap=True)
    profile = None
    if profile_name:
        from edgeward.hardware_profiles import resolve_profile

        profile = resolve_profile(profile_name)

    safety_filter = safety_filter_for(safety_policy, trust_store=trust_dir,
                                      allow_unsigned=allow_unsigned)

    def on_text(piece: str) -> None:
        sys.stdout.write(piece)
        sys.stdout.flush()

    result = run_once(artifact, prompt, trust_store=trust_dir, signature=signature,
                      allow_unsigned=allow_unsigned, raw=raw,
                      params=SamplingParams(max_tokens=max_tokens, temperature=temperature,
                                            seed=seed),
                      profile=profile, context_length=context_length,
                      safety_filter=safety_filter, on_text=None if as_json else on_text,
                      allow_cpu_fallback=allow_cpu_fallback,
                      on_warning=lambda w: err.print(f"[bold red]WARNING:[/bold red] {w}",
                                                     soft_wrap=True))
    if not result.model.verified:
        err.print(f"[bold red]WARNING: ran an UNVERIFIED artifact[/bold red] "
                  f"({result.model.unverified_reason or 'unsigned'})", soft_wrap=True)

    def human() -> None:
        s, m = result.stats, result.model
        sys.stdout.write("\n")
        signed = f", signed by {m.key_id[:16]}…" if m.key_id else ", NOT verified"
        err.print(f"[dim]{s.prompt_tokens} prompt tokens, {s.completion_tokens} generated "
                  f"({result.finish_reason}), first token after "
                  f"{ms(s.time_to_first_token_s)}, {s.decode_tokens_per_s or 0:.1f} tokens/s; "
                  f"model sha256 {m.sha256[:16]}…{signed}[/dim]", soft_wrap=True)

    emit(as_json, result.to_dict(), human)
    if result.finish_reason == "content_filter":
        state.result_printed = True
        cats = list(result.safety_verdict.categories) if result.safety_verdict else []
        raise SafetyBlocked("the safety filter stopped the output (categories: "
                            f"{', '.join(cats) or 'unspecified'})", categories=cats)
