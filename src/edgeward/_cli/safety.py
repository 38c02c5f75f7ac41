"""``edgeward safety check|eval|policy``: the bundled safety filter from the command line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich import box
from rich.table import Table

from edgeward._cli._output import emit, json_option, out, state
from edgeward.errors import ConfigError, SafetyBlocked

if TYPE_CHECKING:
    from edgeward.safety import BundledFilter

__all__ = ["safety"]

_POLICY = click.option("--policy", "policy_path", metavar="PRESET|FILE",
                       help="A policy preset shipped with edgeward (default, phi) or a policy "
                            "TOML (default: the shipped default policy).")


def _filter(policy_path: str | None) -> BundledFilter:
    from edgeward.safety import load_filter

    return load_filter(policy_path or "default")


@click.group()
def safety() -> None:
    """The bundled safety filter: check a text, evaluate on data, inspect a policy."""


@safety.command("check")
@click.argument("text")
@_POLICY
@click.option("--stage", type=click.Choice(["prompt", "output"]), default="prompt",
              show_default=True, help="Check as a prompt or as model output.")
@click.option("--fail-on-block", is_flag=True,
              help="Exit with code 7 when the text is blocked (after printing the result).")
@json_option
def check(*, text: str, policy_path: str | None, stage: str, fail_on_block: bool,
          as_json: bool) -> None:
    """Check TEXT (or '-' for standard input) against the policy, as the agent checks a
    one-message request (so a policy with pseudonyms numbers them: [NAME_1]).

    JSON: action, categories, scores, redacted_text, spans, latency_ms.
    """
    from edgeward.safety import Pseudonyms

    if text == "-":
        text = sys.stdin.read()
    flt = _filter(policy_path)
    verdict = flt.check(text, stage="output" if stage == "output" else "prompt",
                        pseudonyms=Pseudonyms())
    result = verdict.to_dict()

    def human() -> None:
        style = {"allow": "green", "redact": "yellow", "block": "red"}[verdict.action]
        out.print(f"[{style}]{verdict.action}[/{style}] "
                  f"{', '.join(verdict.categories) or '-'}  ({verdict.latency_ms:.2f} ms)")
        shown = {k: v for k, v in verdict.scores.items() if v >= 0.01}
        if shown:
            out.print("scores: " + ", ".join(f"{k}={v:.2f}" for k, v in shown.items()))
        if verdict.redacted_text is not None:
            out.print(f"redacted: {verdict.redacted_text}")
        if verdict.action == "block":
            out.print(f"refusal: {flt.refusal(verdict)}")

    emit(as_json, result, human)
    if fail_on_block and verdict.action == "block":
        state.result_printed = True
        raise SafetyBlocked(f"blocked: {', '.join(verdict.categories)}",
                            categories=list(verdict.categories))


def _print_prompt_eval(r: dict[str, Any]) -> None:
    table = Table(title=f"{r['file']} ({r['n']} prompts, threshold {r['threshold']:.2f})",
                  title_justify="left", box=box.SIMPLE_HEAD)
    for col in ("label / source", "n", "detected", "rate"):
        table.add_column(col, justify="left" if col.startswith("label") else "right")
    for name, row in [*r["by_label"].items(), *r["by_source"].items()]:
        table.add_row(name, str(row["n"]), str(row["detected"]), f"{row['rate']:.1%}")
    out.print(table)
    lat = r["latency_ms"]
    fpr = "-" if r["benign_fpr"] is None else f"{r['benign_fpr']:.1%}"
    out.print(f"benign FPR {fpr}  precision {r['precision']:.3f}  "
              f"recall {r['recall']:.3f}  F1 {r['f1']:.3f}  latency p50 {lat['p50']:.2f} ms "
              f"p99 {lat['p99']:.2f} ms  ({r['prompts_per_s']} prompts/s)")
    labels = list(r["confusion"])
    conf = Table(title="confusion (rows: true, columns: predicted)", title_justify="left",
                 box=box.SIMPLE_HEAD)
    conf.add_column("true")
    predicted = ("harmful", "jailbreak", "injection", "benign")
    for p in predicted:
        conf.add_column(p, justify="right")
    for lab in labels:
        conf.add_row(lab, *(str(r["confusion"][lab].get(p, 0)) for p in predicted))
    out.print(conf)


def _print_pii_eval(r: dict[str, Any]) -> None:
    table = Table(title=f"{r['file']} ({r['n']} rows; a span matches on overlap)",
                  title_justify="left", box=box.SIMPLE_HEAD)
    for col in ("type", "support", "predicted", "recall", "precision"):
        table.add_column(col, justify="left" if col == "type" else "right")
    def fmt(x: float | None) -> str:
        return "-" if x is None else f"{x:.1%}"

    for t, row in r["by_type"].items():
        table.add_row(t, str(row["support"]), str(row["predicted"]), fmt(row["recall"]),
                      fmt(row["precision"]))
    out.print(table)
    micro = r.get("micro")
    if micro:
        f2 = "-" if micro.get("f2") is None else f"{micro['f2']:.3f}"
        out.print(f"micro: precision {fmt(micro['precision'])}, recall {fmt(micro['recall'])}, "
                  f"F2 {f2} (policy {r.get('policy', '?')}; per source with --json)")


@safety.command("eval")
@click.argument("data", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@_POLICY
@click.option("--split", help="Only rows of this split (e.g. dev).")
@click.option("--folds", type=click.IntRange(min=2), default=None, metavar="K",
              help="Also the leave-sources-out figures: the train split's sources in K folds, "
                   "a classifier fitted per fold without its sources (minutes a fold; kept "
                   "in ~/.cache/edgeward/safety-folds).")
@json_option
def eval_(*, data: Path, policy_path: str | None, split: str | None, folds: int | None,
          as_json: bool) -> None:
    """Evaluate the filter on DATA.jsonl: labelled prompts or PII spans.

    JSON for prompts: by_label, by_source, benign_fpr, precision, recall, f1, confusion,
    latency_ms {p50, p90, p99}; for PII: by_type {support, predicted, recall, precision}.
    With --folds K: leave_sources_out {folds, by_source, macro, worst}, each source scored
    by a classifier that never saw it, at the shipped threshold.
    """
    from edgeward.safety import evaluate, evaluate_folds

    flt = _filter(policy_path)
    result = evaluate(data, flt, split=split)
    if folds is not None:
        if result["kind"] != "prompts":
            raise ConfigError(f"{data}: --folds needs labelled prompts, not PII spans")
        result["leave_sources_out"] = evaluate_folds(
            data, k=folds, policy=flt.policy,
            cache_dir=Path.home() / ".cache" / "edgeward" / "safety-folds",
            progress=lambda line: click.echo(line, err=True))
    emit(as_json, result, lambda: _print_eval(result))


def _print_eval(r: dict[str, Any]) -> None:
    (_print_pii_eval if r["kind"] == "pii" else _print_prompt_eval)(r)
    lso = r.get("leave_sources_out")
    if lso is None:
        return
    table = Table(title=f"leave sources out: {' + '.join(lso['stages'])}, {lso['k']} folds, "
                        f"threshold {lso['threshold']} (benign: false-positive rate)",
                  title_justify="left",
                  box=box.SIMPLE_HEAD)
    for col in ("source", "label", "fold", "n", "rate"):
        table.add_column(col, justify="left" if col in ("source", "label") else "right")
    for key, cell in lso["by_source"].items():
        source, label = key.rsplit("/", 1)
        table.add_row(source, label, str(cell["fold"] + 1), str(cell["n"]), f"{cell['rate']:.1%}")
    out.print(table)
    for label, rate in lso["macro"].items():
        worst = lso["worst"][label]
        out.print(f"{label}: macro {rate:.1%}; worst {worst['source']} {worst['rate']:.1%}")


@safety.group("policy")
def policy() -> None:
    """Show or validate a safety policy."""


@policy.command("show")
@click.argument("policy_name", required=False, metavar="[POLICY]")
@json_option
def policy_show(*, policy_name: str | None, as_json: bool) -> None:
    """Show POLICY, a preset (default, phi) or a policy file (default: the shipped default
    policy) with every default filled in."""
    from edgeward.safety import resolve_policy

    p = resolve_policy(policy_name or "default")
    d = p.to_dict()

    def human() -> None:
        out.print(f"{d['name']} v{d['version']} ({d['source']}, {d['digest'][:19]}…)")
        out.print(f"pii: {', '.join(d['pii_types'])} on {', '.join(d['pii_stages'])}"
                  f"{'; pseudonyms' if d['pseudonyms'] else ''}")
        out.print(f"checks: {', '.join(d['checks'])}; threshold: "
                  f"{d['threshold'] if d['threshold'] is not None else 'model default'}; "
                  f"output threshold: {d['output_threshold']}")
        by_action: dict[str, list[str]] = {}
        for cat, act in d["actions"].items():
            by_action.setdefault(act, []).append(cat)
        for act, cats in sorted(by_action.items()):
            out.print(f"{act}: {' '.join(cats)}")
        out.print(f"audit: log_text={d['log_text']} log_redacted_text={d['log_redacted_text']}")

    emit(as_json, d, human)


@policy.command("validate")
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--trust", "trust_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Also verify FILE's signature (FILE.edgeward.json) against this trust store.")
@json_option
def policy_validate(*, file: Path, trust_dir: Path | None, as_json: bool) -> None:
    """Check that FILE is a valid policy (and, with --trust, that it is signed)."""
    from edgeward.safety import load_policy

    p = load_policy(file)
    result: dict[str, Any] = {"valid": True, "file": str(file), "name": p.name,
                              "version": p.version, "digest": p.digest, "signed_by": None}
    if trust_dir is not None:
        from edgeward.provenance import TrustStore, envelope_path_for, verify_artifact

        envelope = envelope_path_for(file)
        if not envelope.is_file():
            raise ConfigError(f"{file}: no signature at {envelope}; sign it with "
                              f"`edgeward sign {file} --key KEY`")
        verified = verify_artifact(file, envelope, TrustStore.open(trust_dir))
        result["signed_by"] = verified.key_id
    emit(as_json, result, lambda: out.print(
        f"{file}: valid policy {p.name!r} v{p.version}"
        + (f", signed by {result['signed_by'][:16]}…" if result["signed_by"] else "")))
