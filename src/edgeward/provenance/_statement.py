"""in-toto Statement v1 with edgeward's provenance predicate (``https://edgeward.dev/provenance/v1``).

A statement's subjects are the artifact's files with their sha256 digests; its predicate says
where the artifact came from: the source model and its digest, the recipe, the hardware
profile, tool versions, the quality report, who built it and when.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import PurePosixPath
from typing import Any

from edgeward.errors import ConfigError, MalformedEnvelopeError, UnsupportedPredicateError
from edgeward.provenance._dsse import canonical_json

__all__ = [
    "IN_TOTO_PAYLOAD_TYPE",
    "PREDICATE_TYPE",
    "STATEMENT_TYPE",
    "CardInfo",
    "ProvenancePredicate",
    "SourceModel",
    "Statement",
    "Subject",
    "check_predicate_type",
    "tool_versions",
    "utc_now",
]

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
PREDICATE_TYPE = "https://edgeward.dev/provenance/v1"
_PREDICATE_PREFIX = "https://edgeward.dev/provenance/"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")
_TOOLS = ("edgeward", "llama-cpp-python", "onnxruntime", "gguf", "cryptography")

Json = dict[str, Any]


def utc_now() -> str:
    """Now as an RFC 3339 UTC timestamp with second precision (``2025-01-31T12:00:00Z``)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def tool_versions() -> dict[str, str]:
    """Installed versions of the tools that shape an artifact, read without importing them."""
    out = {}
    for dist in _TOOLS:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    out["python"] = sys.version.split()[0]
    return out


def _check_sha256(value: object, what: str) -> None:
    if not isinstance(value, str) or not _HEX64.fullmatch(value):
        raise ConfigError(f"{what}: sha256 must be 64 lowercase hex digits, got {value!r}")


@dataclass(frozen=True)
class Subject:
    """One file of the artifact: its name (relative POSIX path) and sha256 (hex)."""

    name: str
    sha256: str

    def __post_init__(self) -> None:
        p = PurePosixPath(self.name) if isinstance(self.name, str) else None
        if p is None or not self.name or p.is_absolute() or ".." in p.parts:
            raise ConfigError(f"subject name must be a relative path inside the artifact, "
                              f"got {self.name!r}")
        _check_sha256(self.sha256, f"subject {self.name!r}")

    def to_dict(self) -> Json:
        """in-toto ResourceDescriptor: ``{"name", "digest": {"sha256"}}``."""
        return {"name": self.name, "digest": {"sha256": self.sha256}}

    @classmethod
    def from_dict(cls, d: object) -> Subject:
        """Parse a ResourceDescriptor with a sha256 digest.

        Raises:
            MalformedEnvelopeError: not a descriptor with a name and a sha256 digest.
        """
        if not isinstance(d, Mapping) or not isinstance(d.get("digest"), Mapping) \
                or "sha256" not in d["digest"]:
            raise MalformedEnvelopeError(f"statement: a subject needs a name and a sha256 "
                                         f"digest, got {d!r:.120}")
        try:
            return cls(d.get("name", ""), d["digest"]["sha256"])
        except ConfigError as e:
            raise MalformedEnvelopeError(f"statement: {e}") from e


@dataclass(frozen=True, kw_only=True)
class SourceModel:
    """The model an artifact was made from.

    Attributes:
        name: a human name (``SmolLM2-135M-Instruct``).
        sha256: the source's digest (hex; of the file, or of a directory's sorted manifest).
        licence: its licence (SPDX id where there is one).
        uri: where it came from (a path, a package, a URL), informational.
    """

    name: str
    sha256: str | None = None
    licence: str | None = None
    uri: str | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigError(f"source model needs a name, got {self.name!r}")
        if self.sha256 is not None:
            _check_sha256(self.sha256, f"source model {self.name!r}")

    def to_dict(self) -> Json:
        """As the predicate's ``source_model`` object."""
        return {"name": self.name, "digest": {"sha256": self.sha256} if self.sha256 else {},
                "licence": self.licence, "uri": self.uri}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SourceModel:
        """Inverse of :meth:`to_dict`."""
        digest = d.get("digest") or {}
        return cls(name=d.get("name", ""), sha256=digest.get("sha256"),
                   licence=d.get("licence"), uri=d.get("uri"))


@dataclass(frozen=True, kw_only=True)
class CardInfo:
    """What a model card needs that no measurement gives: stated by the publisher.

    Attributes:
        intended_use: what the model is for (and for whom).
        limitations: known limitations, one per item.
        safety_policy: the safety-filter policy it must run behind (a name or a digest).
    """

    intended_use: str | None = None
    limitations: tuple[str, ...] = ()
    safety_policy: str | None = None

    def to_dict(self) -> Json:
        """As the predicate's ``model_card`` object."""
        return {"intended_use": self.intended_use, "limitations": list(self.limitations),
                "safety_policy": self.safety_policy}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CardInfo:
        """Inverse of :meth:`to_dict`."""
        return cls(intended_use=d.get("intended_use"),
                   limitations=tuple(d.get("limitations") or ()),
                   safety_policy=d.get("safety_policy"))


@dataclass(frozen=True, kw_only=True)
class ProvenancePredicate:
    """edgeward's provenance predicate, version 1.

    Attributes:
        builder: who built it (``user@host``, a CI job id).
        started_at: when the build started (RFC 3339 UTC).
        finished_at: when it finished / was signed (RFC 3339 UTC).
        tool_versions: tool name -> version (edgeward, llama-cpp-python, onnxruntime, ...).
        source_model: the model it was made from.
        recipe: the compression recipe (quantization type, overrides, imatrix, pruning).
        hardware_profile: the target profile (the profile's record, or at least its name).
        quality: the quality report (perplexity, KL-divergence, top-1 agreement, ...).
        model_card: intended use, limitations, safety policy.
        behaviour: the behavioural fingerprint record (``fingerprint``: its subject's name,
            ``probe_set``, ``metric``, ``threshold``, ...); ``None`` when there is none.
    """

    builder: str
    started_at: str
    finished_at: str
    tool_versions: Mapping[str, str] = field(default_factory=dict)
    source_model: SourceModel | None = None
    recipe: Mapping[str, Any] | None = None
    hardware_profile: Mapping[str, Any] | None = None
    quality: Mapping[str, Any] | None = None
    model_card: CardInfo = field(default_factory=CardInfo)
    behaviour: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.behaviour is not None and not (
                isinstance(self.behaviour, Mapping)
                and isinstance(self.behaviour.get("fingerprint"), str)
                and self.behaviour["fingerprint"]):
            raise ConfigError("behaviour must be an object naming its fingerprint subject, got "
                              f"{self.behaviour!r:.120}")
        if not self.builder:
            raise ConfigError(f"builder identity must not be empty, got {self.builder!r}")
        for name in ("started_at", "finished_at"):
            value = getattr(self, name)
            if not isinstance(value, str) or not _TIMESTAMP.fullmatch(value):
                raise ConfigError(f"{name} must be an RFC 3339 UTC timestamp like "
                                  f"2025-01-31T12:00:00Z, got {value!r}")

    def to_dict(self) -> Json:
        """The predicate object of the statement."""
        return {
            "builder": {"id": self.builder},
            "timestamps": {"started_at": self.started_at, "finished_at": self.finished_at},
            "tool_versions": dict(self.tool_versions),
            "source_model": self.source_model.to_dict() if self.source_model else None,
            "recipe": dict(self.recipe) if self.recipe is not None else None,
            "hardware_profile": (dict(self.hardware_profile)
                                 if self.hardware_profile is not None else None),
            "quality": dict(self.quality) if self.quality is not None else None,
            "model_card": self.model_card.to_dict(),
            **({"behaviour": dict(self.behaviour)} if self.behaviour is not None else {}),
        }

    @classmethod
    def from_dict(cls, d: object) -> ProvenancePredicate:
        """Parse a v1 predicate object.

        Raises:
            MalformedEnvelopeError: missing or mistyped fields.
        """
        try:
            if not isinstance(d, Mapping):
                raise ConfigError(f"expected an object, got {type(d).__name__}")
            ts = d.get("timestamps") or {}
            src = d.get("source_model")
            return cls(builder=(d.get("builder") or {}).get("id", ""),
                       started_at=str(ts.get("started_at") or ""),
                       finished_at=str(ts.get("finished_at") or ""),
                       tool_versions=dict(d.get("tool_versions") or {}),
                       source_model=SourceModel.from_dict(src) if src else None,
                       recipe=d.get("recipe"), hardware_profile=d.get("hardware_profile"),
                       quality=d.get("quality"),
                       model_card=CardInfo.from_dict(d.get("model_card") or {}),
                       behaviour=d.get("behaviour"))
        except (ConfigError, AttributeError, TypeError) as e:
            raise MalformedEnvelopeError(f"statement: bad provenance predicate: {e}") from e


@dataclass(frozen=True)
class Statement:
    """An in-toto Statement v1.

    Attributes:
        subjects: the artifact's files with their sha256 digests, sorted by name.
        predicate_type: the predicate's type URI (edgeward's, or another tool's).
        predicate: the predicate object, as signed.
    """

    subjects: tuple[Subject, ...]
    predicate_type: str
    predicate: Mapping[str, Any]

    def __post_init__(self) -> None:
        if not self.subjects:
            raise ConfigError("a statement needs at least one subject")
        names = [s.name for s in self.subjects]
        if len(set(names)) != len(names):
            raise ConfigError(f"duplicate subject names in {names!r:.200}")

    def to_dict(self) -> Json:
        """The statement object."""
        return {"_type": STATEMENT_TYPE, "subject": [s.to_dict() for s in self.subjects],
                "predicateType": self.predicate_type, "predicate": dict(self.predicate)}

    def canonical_bytes(self) -> bytes:
        """What gets signed: canonical JSON (sorted keys, no whitespace, UTF-8)."""
        return canonical_json(self.to_dict())

    @classmethod
    def from_dict(cls, d: object) -> Statement:
        """Parse a statement object.

        Raises:
            MalformedEnvelopeError: not an in-toto Statement v1.
        """
        if not isinstance(d, Mapping):
            raise MalformedEnvelopeError(f"statement: expected a JSON object, got "
                                         f"{type(d).__name__}")
        if d.get("_type") != STATEMENT_TYPE:
            raise MalformedEnvelopeError(f"statement: _type must be {STATEMENT_TYPE}, got "
                                         f"{d.get('_type')!r}")
        subjects, ptype, pred = d.get("subject"), d.get("predicateType"), d.get("predicate")
        if not isinstance(subjects, list) or not isinstance(ptype, str) \
                or not isinstance(pred, Mapping):
            raise MalformedEnvelopeError("statement: needs a subject list, a predicateType "
                                         "string and a predicate object")
        try:
            return cls(tuple(Subject.from_dict(s) for s in subjects), ptype, dict(pred))
        except ConfigError as e:
            raise MalformedEnvelopeError(f"statement: {e}") from e

    @property
    def fingerprint_subject(self) -> Subject | None:
        """The subject that is the behavioural fingerprint (named by the predicate's
        ``behaviour.fingerprint``), or None."""
        behaviour = self.predicate.get("behaviour") if self.predicate_type == PREDICATE_TYPE \
            else None
        name = behaviour.get("fingerprint") if isinstance(behaviour, Mapping) else None
        return next((s for s in self.subjects if s.name == name), None)

    @property
    def artifact_subjects(self) -> tuple[Subject, ...]:
        """The subjects that are the artifact's own files (every subject but the fingerprint)."""
        fp = self.fingerprint_subject
        return tuple(s for s in self.subjects if s is not fp)

    def provenance(self) -> ProvenancePredicate:
        """The predicate as edgeward's provenance record.

        Raises:
            UnsupportedPredicateError: another predicate type, or a version this edgeward does
                not read.
            MalformedEnvelopeError: the predicate is malformed.
        """
        check_predicate_type(self.predicate_type)
        return ProvenancePredicate.from_dict(self.predicate)


def check_predicate_type(predicate_type: str) -> None:
    """Accept edgeward provenance v1 only.

    Raises:
        UnsupportedPredicateError: any other type or version, with what to do.
    """
    if predicate_type == PREDICATE_TYPE:
        return
    if predicate_type.startswith(_PREDICATE_PREFIX):
        raise UnsupportedPredicateError(
            f"statement: predicate version {predicate_type.removeprefix(_PREDICATE_PREFIX)!r} "
            f"is not supported (this edgeward reads {PREDICATE_TYPE}); upgrade edgeward")
    raise UnsupportedPredicateError(f"statement: predicate type {predicate_type!r} is not "
                                    f"edgeward provenance ({PREDICATE_TYPE})")
