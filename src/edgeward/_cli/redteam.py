"""``edgeward redteam --target URL``: an attack suite against an OpenAI-compatible endpoint;
``edgeward redteam verify DIR``: check a signed red-team report."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from edgeward._cli._output import emit, err, json_option, out
from edgeward.errors import ConfigError

__all__ = ["redteam"]

_FAMILIES = ("harmful", "jailbreak", "injection", "benign")


def _split(values: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(v.strip() for value in values for v in value.split(",") if v.strip())


def _env(var: str | None, what: str) -> str | None:
    if var is None:
        return None
    value = os.environ.get(var)
    if value is None:
        raise ConfigError(f"{what} {var}: that environment variable is not set")
    return value


@click.group(invoke_without_command=True)
@click.option("--target", metavar="URL",
              help="The endpoint: http://HOST:PORT or .../v1 (an edgeward agent or any "
                   "OpenAI-compatible server).")
@click.option("--model", metavar="ID", help="Model id to send (default: the first of "
              "/v1/models, else 'default').")
@click.option("--api-key-env", metavar="VAR",
              help="Environment variable holding the endpoint's API key (sent as Bearer).")
@click.option("--families", multiple=True, metavar="LIST",
              help=f"Families to run, comma-separated or repeated (default all: "
                   f"{','.join(_FAMILIES)}).")
@click.option("--transforms", multiple=True, metavar="LIST",
              help="Our engine's transformations (default all: plain, base64, rot13, "
                   "leetspeak, spanish, german, roleplay, multiturn).")
@click.option("--max-prompts", type=click.IntRange(min=1), metavar="N",
              help="Seed prompts per family at most (garak: prompts per probe, default 10).")
@click.option("--max-tokens", type=click.IntRange(min=1), default=64, show_default=True,
              help="Answer length cap per request (tokens).")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0, min_open=True),
              default=30.0, show_default=True, help="One request's time limit (seconds).")
@click.option("--budget", "budget_s", type=click.FloatRange(min=0, min_open=True),
              default=600.0, show_default=True,
              help="The whole run's time limit (seconds); what is not sent by then is "
                   "skipped.")
@click.option("--concurrency", type=click.IntRange(1, 4), default=1, show_default=True,
              help="Requests in flight at once.")
@click.option("--engine", type=click.Choice(["edgeward", "garak"]), default="edgeward",
              show_default=True, help="garak runs from its own virtualenv (--garak).")
@click.option("--garak", "garak_path", type=click.Path(dir_okay=False, path_type=Path),
              help="garak's python or garak script (its own virtualenv), for --engine garak.")
@click.option("--garak-probes", multiple=True, metavar="LIST",
              help="garak probes to run (default: the offline-capable ones per family).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Report directory (default ./redteam-UTCTIME).")
@click.option("--chart", type=click.Choice(["auto", "png", "svg"]), default="auto",
              show_default=True, help="auto: PNG when matplotlib is installed, else SVG.")
@click.option("--sign-key", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Private key: sign redteam.json into redteam.dsse.json (DSSE).")
@click.option("--passphrase-env", metavar="VAR",
              help="Environment variable holding the signing key's passphrase.")
@json_option
@click.pass_context
def redteam(ctx: click.Context, *, target: str | None, model: str | None,
            api_key_env: str | None, families: tuple[str, ...], transforms: tuple[str, ...],
            max_prompts: int | None, max_tokens: int, timeout_s: float, budget_s: float,
            concurrency: int, engine: str, garak_path: Path | None,
            garak_probes: tuple[str, ...], out_dir: Path | None, chart: str,
            sign_key: Path | None, passphrase_env: str | None, as_json: bool) -> None:
    """Red-team an OpenAI-compatible endpoint: harmful, jailbreak and injection prompts (with
    encodings, other-language and role-play wrappers, a multi-turn split) and benign
    look-alikes; counts per family what was blocked by the filter, refused by the model,
    passed through or skipped; writes JSON, Markdown and a chart (see docs/behaviour.md)."""
    if ctx.invoked_subcommand is not None:
        return
    if target is None:
        raise click.UsageError("give --target URL (or a subcommand: verify)")
    from edgeward.behaviour import RedteamConfig, run_garak, run_redteam, write_report

    config = RedteamConfig(
        target=target, model=model, api_key=_env(api_key_env, "--api-key-env"),
        families=_split(families) or _FAMILIES,
        **({"transforms": _split(transforms)} if transforms else {}),
        max_prompts=max_prompts, max_tokens=max_tokens, timeout_s=timeout_s,
        budget_s=budget_s, concurrency=concurrency)
    key = None
    if sign_key is not None:  # load it first: a wrong passphrase must not cost a whole run
        from edgeward.provenance import load_private_key

        passphrase = _env(passphrase_env, "--passphrase-env")
        key = load_private_key(sign_key, passphrase=None if passphrase is None
                               else passphrase.encode())
    if engine == "garak":
        if garak_path is None:
            raise ConfigError("--engine garak needs --garak PATH: the python (or garak script) "
                              "of the virtualenv garak is installed in")
        report = run_garak(config, garak=garak_path, probes=_split(garak_probes) or None)
    else:
        report = run_redteam(config, progress=None if as_json else _progress())
    directory = out_dir or Path(f"redteam-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}")
    files = write_report(report, directory, sign_key=key, chart=chart)  # type: ignore[arg-type]
    result: dict[str, Any] = {
        "engine": report.engine, "target": report.target, "model": report.model,
        "report": files.to_dict(), "seconds": round(report.seconds, 3),
        "families": {f.family: {k: v for k, v in f.to_dict().items()
                                if k not in ("family", "by_transform")}
                     for f in report.families},
        "probes": [p.to_dict() for p in report.probes]}
    emit(as_json, result, lambda: _human(result))


def _progress() -> Any:
    def show(done: int, total: int) -> None:
        if done == total or done % 10 == 0:
            err.print(f"red team: {done}/{total} attempts", highlight=False)
    return show


def _human(result: dict[str, Any]) -> None:
    table = Table(title=f"red team: {result['target']} ({result['engine']}, model "
                        f"{result['model']})", title_justify="left")
    for col in ("family", "attempts", "blocked", "refused", "passed through", "skipped",
                "skip reasons"):
        table.add_column(col, justify="left" if col in ("family", "skip reasons") else "right")
    for name, f in result["families"].items():
        reasons = ", ".join(f"{r} ({n})" for r, n in f["skip_reasons"].items())
        table.add_row(name, str(f["attempts"]), str(f["blocked"]), str(f["refused"]),
                      str(f["passed_through"]), str(f["skipped"]), reasons)
    out.print(table)
    for p in result["probes"]:
        if not p["ran"]:
            out.print(f"  not run: {p['probe']}: {p['reason']}")
    files = result["report"]
    out.print(f"report: {files['markdown']} (JSON {files['json']}, chart {files['chart']}"
              + (f", signed {files['envelope']})" if files["envelope"] else ", unsigned)"))


@redteam.command("verify")
@click.argument("report_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--trust", "trust_dir", required=True,
              type=click.Path(file_okay=False, path_type=Path), help="The trust store directory.")
@click.option("--role", type=click.Choice(["operator", "publisher", "device"]),
              default="operator", show_default=True, help="The role the signer must hold.")
@json_option
def verify(*, report_dir: Path, trust_dir: Path, role: str, as_json: bool) -> None:
    """Check that REPORT_DIR/redteam.json is the report signed in redteam.dsse.json."""
    from edgeward.behaviour import verify_report
    from edgeward.provenance import TrustStore

    verified = verify_report(report_dir, TrustStore.open(trust_dir), role=role)
    r = verified.report
    result = {"verified": True, "key_id": verified.key_id, "target": r.target,
              "engine": r.engine, "started_at": r.started_at,
              "families": {f.family: f.attempts for f in r.families}}
    emit(as_json, result, lambda: out.print(
        f"verified: red-team report of {r.target} ({r.started_at}), signed by "
        f"{verified.key_id[:16]}…"))
