"""Building a statement for an artifact: hash its files, gather where it came from."""

from __future__ import annotations

import getpass
import hashlib
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgeward.errors import ConfigError
from edgeward.provenance._digest import HashConfig, artifact_files, hash_files
from edgeward.provenance._dsse import canonical_json
from edgeward.provenance._report import defaults_from_report
from edgeward.provenance._statement import (
    PREDICATE_TYPE,
    CardInfo,
    ProvenancePredicate,
    SourceModel,
    Statement,
    Subject,
    tool_versions,
    utc_now,
)

__all__ = ["build_statement", "default_builder", "source_model_from", "subjects_of"]


def build_statement(
    artifact: Path,
    *,
    builder: str | None = None,
    started_at: str | None = None,
    finished_at: str | None = None,
    source_model: SourceModel | None = None,
    recipe: Mapping[str, Any] | None = None,
    hardware_profile: Mapping[str, Any] | None = None,
    quality: Mapping[str, Any] | None = None,
    model_card: CardInfo | None = None,
    versions: Mapping[str, str] | None = None,
    report: Mapping[str, Any] | None = None,
    hash_config: HashConfig | None = None,
    fingerprint: Path | None = None,
    behaviour: Mapping[str, Any] | None = None,
) -> Statement:
    """Hash an artifact and describe where it came from.

    Args:
        artifact: a model file or a model directory (e.g. ONNX with external data).
        builder: who builds it; default ``user@host``.
        started_at: default: the report's ``started_at``, else now.
        finished_at: default now.
        source_model: the source model (default: from the report's ``source``).
        recipe: the recipe (default: the report's ``recipe``).
        hardware_profile: the target profile record (default: the report's ``profile``).
        quality: the quality figures (default: the report's ``quality``).
        model_card: intended use, limitations, safety policy.
        versions: tool versions (default: installed versions, the report's first).
        report: a compression report (JSON object) to take defaults from; tolerated partial.
        hash_config: block size and threads for hashing.
        fingerprint: the artifact's behavioural fingerprint file; it becomes one more subject
            (named by its file name) and ``behaviour`` the predicate's record of it.
        behaviour: what the statement says about the fingerprint (probe set, metric,
            tolerance); its ``fingerprint`` and ``sha256`` are filled in here.

    Returns:
        The statement, subjects sorted by name.

    Raises:
        ConfigError: the artifact does not exist, or a bad value (quoted).
        ArtifactError: a file cannot be read or is not a regular file.
    """
    files = artifact_files(artifact)
    if not files:
        raise ConfigError(f"{artifact}: an empty directory; there is nothing to sign")
    digests = hash_files(files, config=hash_config)
    record: dict[str, Any] | None = None
    if fingerprint is not None:
        fingerprint = Path(fingerprint)
        if not fingerprint.is_file():
            raise ConfigError(f"{fingerprint}: no such fingerprint file")
        if fingerprint.name in digests:
            raise ConfigError(f"{fingerprint.name}: the fingerprint's name is also a file of "
                              "the artifact; rename it")
        fp_digest = hash_files({fingerprint.name: fingerprint}, config=hash_config)
        digests.update(fp_digest)
        record = {**dict(behaviour or {}), "fingerprint": fingerprint.name,
                  "sha256": fp_digest[fingerprint.name]}
    elif behaviour is not None:
        raise ConfigError("a behaviour record needs its fingerprint file")
    d = defaults_from_report(report or {})
    now = utc_now()
    predicate = ProvenancePredicate(
        builder=builder or default_builder(),
        started_at=started_at or d.started_at or now,
        finished_at=finished_at or now,
        tool_versions=dict(versions) if versions is not None else {
            **tool_versions(), **d.tool_versions},
        source_model=source_model or d.source_model,
        recipe=recipe if recipe is not None else d.recipe,
        hardware_profile=hardware_profile if hardware_profile is not None else d.profile,
        quality=quality if quality is not None else d.quality,
        model_card=model_card or d.model_card or CardInfo(),
        behaviour=record,
    )
    subjects = tuple(Subject(n, digests[n]) for n in sorted(digests))
    return Statement(subjects, PREDICATE_TYPE, predicate.to_dict())


def subjects_of(artifact: Path, *, hash_config: HashConfig | None = None) -> tuple[Subject, ...]:
    """The artifact's files as subjects, hashed now."""
    digests = hash_files(artifact_files(artifact), config=hash_config)
    return tuple(Subject(n, digests[n]) for n in sorted(digests))


def default_builder() -> str:
    """``user@host`` of this process."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):
        user = "unknown"
    return f"{user}@{socket.gethostname() or 'localhost'}"


def source_model_from(path: Path, *, name: str | None = None, licence: str | None = None,
                      hash_config: HashConfig | None = None) -> SourceModel:
    """Describe a local source model file or directory, with its digest.

    A file's digest is its sha256; a directory's is the sha256 of its canonical manifest
    (``{relative name: sha256}``), so the same files always give the same digest.

    Raises:
        ConfigError: the path does not exist.
    """
    digests = hash_files(artifact_files(path), config=hash_config)
    digest = (next(iter(digests.values())) if path.is_file()
              else hashlib.sha256(canonical_json(digests)).hexdigest())
    return SourceModel(name=name or path.name, sha256=digest, licence=licence,
                       uri=str(path))
