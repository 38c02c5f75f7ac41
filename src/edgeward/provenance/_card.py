"""Model cards from the signed statement and the compression report, with a completeness score.

The card is Markdown for people; the completeness score is for auditors: a fixed list of
documentation fields, each present or missing, so two models' transparency can be compared
(the same fields, the same order, in every card edgeward writes).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeward.errors import MalformedEnvelopeError, SignatureError
from edgeward.provenance._dsse import read_envelope
from edgeward.provenance._report import defaults_from_report, read_report
from edgeward.provenance._statement import (
    CardInfo,
    ProvenancePredicate,
    SourceModel,
    Statement,
)
from edgeward.provenance._trust import TrustStore
from edgeward.provenance._verify import envelope_path_for, verify_artifact

__all__ = ["COMPLETENESS_FIELDS", "Completeness", "ModelCard", "model_card", "render_card"]

COMPLETENESS_FIELDS: tuple[str, ...] = (
    "source_model", "source_digest", "licence", "intended_use", "limitations", "quality",
    "hardware_profile", "safety_policy", "recipe", "tool_versions", "builder", "timestamps",
    "signature_verified",
)
_QUALITY_ORDER = ("ppl", "ppl_ref", "kld_mean", "kld_p99", "top1_agreement", "eval_tokens")


@dataclass(frozen=True)
class Completeness:
    """Which documentation fields a card has (the transparency index).

    Attributes:
        present: fields that are documented, in :data:`COMPLETENESS_FIELDS` order.
        missing: fields that are not.
    """

    present: tuple[str, ...]
    missing: tuple[str, ...]

    @property
    def score(self) -> float:
        """present / all, from 0.0 to 1.0."""
        return len(self.present) / len(COMPLETENESS_FIELDS)

    def to_dict(self) -> dict[str, Any]:
        """``{"score", "present", "missing", "fields"}``."""
        return {"score": round(self.score, 4), "present": list(self.present),
                "missing": list(self.missing), "fields": len(COMPLETENESS_FIELDS)}


@dataclass(frozen=True)
class ModelCard:
    """A rendered model card.

    Attributes:
        artifact: the artifact's name.
        markdown: the card.
        completeness: the documentation-completeness score.
        verified: whether the statement's signature was verified against a trust store.
    """

    artifact: str
    markdown: str
    completeness: Completeness
    verified: bool

    def to_dict(self) -> dict[str, Any]:
        """The ``edgeward card --json`` object."""
        return {"artifact": self.artifact, "verified": self.verified,
                "completeness": self.completeness.to_dict(), "markdown": self.markdown}


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | tuple):
        return ", ".join(_fmt(v) for v in value) or "—"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(rows: list[tuple[str, object]], head: tuple[str, str] = ("field", "value")) -> str:
    lines = [f"| {head[0]} | {head[1]} |", "|---|---|"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in rows]
    return "\n".join(lines)


def _scalars(d: Mapping[str, Any], order: tuple[str, ...] = ()) -> list[tuple[str, object]]:
    keys = [k for k in order if k in d] + sorted(k for k in d if k not in order)
    rows: list[tuple[str, object]] = []
    for k in keys:
        v = d[k]
        if isinstance(v, Mapping):
            rows += [(f"{k}.{k2}", v2) for k2, v2 in sorted(v.items())
                     if not isinstance(v2, Mapping | list)]
        elif v is not None:
            rows.append((k, v))
    return rows


@dataclass(frozen=True)
class _Facts:
    """What the statement and the report say, merged (the statement wins)."""

    pred: ProvenancePredicate | None
    src: SourceModel | None
    info: CardInfo
    licence: str | None
    quality: dict[str, Any]
    profile: Mapping[str, Any] | None
    recipe: Mapping[str, Any] | None
    versions: dict[str, str]

    def have(self, signer: str | None) -> dict[str, bool]:
        """Each completeness field: documented or not."""
        pred, src, info = self.pred, self.src, self.info
        return {
            "source_model": src is not None, "source_digest": bool(src and src.sha256),
            "licence": bool(self.licence), "intended_use": bool(info.intended_use),
            "limitations": bool(info.limitations), "quality": bool(self.quality),
            "hardware_profile": bool(self.profile), "safety_policy": bool(info.safety_policy),
            "recipe": bool(self.recipe), "tool_versions": bool(self.versions),
            "builder": bool(pred and pred.builder),
            "timestamps": bool(pred and pred.finished_at),
            "signature_verified": signer is not None,
        }


def _gather(statement: Statement, report: Mapping[str, Any]) -> _Facts:
    try:
        pred: ProvenancePredicate | None = statement.provenance()
    except SignatureError:
        pred = None  # another tool's predicate: a sparse card, not an error
    d = defaults_from_report(report)
    src = (pred.source_model if pred else None) or d.source_model
    info = pred.model_card if pred else CardInfo()
    if d.model_card is not None:
        info = CardInfo(intended_use=info.intended_use or d.model_card.intended_use,
                        limitations=info.limitations or d.model_card.limitations,
                        safety_policy=info.safety_policy or d.model_card.safety_policy)
    quality = dict((pred.quality if pred and pred.quality else None) or d.quality or {})
    for k in ("type", "size_bytes", "bpw"):
        if k in report and k not in quality:
            quality[k] = report[k]
    return _Facts(
        pred=pred, src=src, info=info,
        licence=(src.licence if src else None) or report.get("licence") or report.get("license"),
        quality=quality, profile=(pred.hardware_profile if pred else None) or d.profile,
        recipe=(pred.recipe if pred else None) or d.recipe,
        versions=dict(pred.tool_versions) if pred else d.tool_versions)


def render_card(statement: Statement, *, artifact: str, report: Mapping[str, Any] | None = None,
                signer: str | None = None) -> ModelCard:
    """Render the model card of an artifact.

    Args:
        statement: its statement (edgeward's predicate; another tool's gives a sparse card).
        artifact: the artifact's name, for the title.
        report: the compression report, if there is one; it fills what the statement lacks.
        signer: the key id that signed the statement, when it was verified (else None).

    Returns:
        The card and its completeness score.
    """
    f = _gather(statement, report or {})
    have = f.have(signer)
    completeness = Completeness(tuple(k for k in COMPLETENESS_FIELDS if have[k]),
                                tuple(k for k in COMPLETENESS_FIELDS if not have[k]))
    src, info, none = f.src, f.info, "_Not stated._"
    out = [f"# Model card: {artifact}", "",
           "Generated by edgeward from the signed provenance statement"
           + (" and the compression report." if report else " (no compression report found)."),
           ("Signature **verified** by key `" + signer + "`." if signer else
            "Signature **not verified** (render with `--trust DIR` to verify it)."), "",
           "## Model", "",
           _table([("artifact", artifact), ("source model", src.name if src else "—"),
                   ("source location", (src.uri if src else None) or "—"),
                   ("source sha256", (src.sha256 if src else None) or "—"),
                   ("licence", f.licence or "—")]), "",
           "## Intended use", "", info.intended_use or none, "",
           "## Limitations", "",
           "\n".join(f"- {x}" for x in info.limitations) if info.limitations else none, "",
           "## Quality", "",
           _table(_scalars(f.quality, _QUALITY_ORDER), ("metric", "value")) if f.quality
           else none, "",
           "## Hardware profile", "", _table(_scalars(f.profile)) if f.profile else none, "",
           "## Safety-filter policy", "", info.safety_policy or none, "",
           "## Provenance chain", "", _chain(statement, f, signer), "",
           "## Documentation completeness", "",
           f"{len(completeness.present)} of {len(COMPLETENESS_FIELDS)} fields documented "
           f"(score {completeness.score:.2f}).", "",
           _table([(k, "present" if have[k] else "**missing**") for k in COMPLETENESS_FIELDS],
                  ("field", "status")), ""]
    return ModelCard(artifact, "\n".join(out), completeness, signer is not None)


def _chain(statement: Statement, f: _Facts, signer: str | None) -> str:
    pred, src, recipe, versions = f.pred, f.src, f.recipe, f.versions
    steps = []
    if src:
        steps.append(f"1. Source model **{src.name}**"
                     + (f", sha256 `{src.sha256}`" if src.sha256 else ", digest not recorded"))
    else:
        steps.append("1. Source model: not recorded")
    how = ", ".join(f"{k}={_fmt(v)}" for k, v in _scalars(recipe or {})[:8]) or "not recorded"
    steps.append(f"2. Recipe: {how}")
    if pred:
        tools = ", ".join(f"{k} {v}" for k, v in sorted(versions.items()))
        steps.append(f"3. Built by `{pred.builder}` from {pred.started_at} to "
                     f"{pred.finished_at} with {tools or 'unrecorded tools'}")
    else:
        steps.append(f"3. Build: not recorded (predicate {statement.predicate_type})")
    own = statement.artifact_subjects
    files = "\n".join(f"   - `{s.name}` sha256 `{s.sha256}`" for s in own)
    steps.append(f"4. Artifact files ({len(own)}):\n{files}")
    fp = statement.fingerprint_subject
    if fp is not None:
        b = statement.predicate.get("behaviour") or {}
        probe = (b.get("probe_set") or {}).get("id", "?") if isinstance(b.get("probe_set"),
                                                                          dict) else "?"
        steps.append(f"   Behavioural fingerprint `{fp.name}` sha256 `{fp.sha256}` (probe set "
                     f"{probe}, {b.get('metric', '?')} threshold {_fmt(b.get('threshold'))}); "
                     "a device replays it after loading and reports drift")
    steps.append(f"5. Signed statement ({statement.predicate_type}): "
                 + (f"verified, key `{signer}`" if signer else "signature not verified"))
    return "\n".join(steps)


def model_card(artifact: Path, *, envelope: Path | None = None,
               trust_store: TrustStore | None = None,
               report: Path | None = None) -> ModelCard:
    """The model card of a signed artifact, from its envelope and its report (if any).

    Args:
        artifact: the artifact (file or directory).
        envelope: its envelope; default ``ARTIFACT.edgeward.json``.
        trust_store: verify the artifact against it first (the card then says so).
        report: the compression report; default ``ARTIFACT.report.json`` if it exists.

    Raises:
        ConfigError: the artifact or an explicitly named report is missing or unreadable.
        SignatureError: no envelope; or, with a trust store, verification failed.
    """
    env_path = envelope or envelope_path_for(artifact)
    rep = read_report(artifact, path=report)
    if trust_store is not None:
        verified = verify_artifact(artifact, env_path, trust_store)
        return render_card(verified.statement, artifact=artifact.name, report=rep,
                           signer=verified.key_id)
    env = read_envelope(env_path)
    try:
        statement = Statement.from_dict(json.loads(env.payload))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise MalformedEnvelopeError(f"{env_path}: the payload is not JSON ({e})") from e
    return render_card(statement, artifact=artifact.name, report=rep)
