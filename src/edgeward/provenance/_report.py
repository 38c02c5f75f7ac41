"""Reading the compression report (``ARTIFACT.report.json``) tolerantly.

The compression package writes the report; provenance only reads it, to fill a statement's
predicate and a model card. Any field may be absent (an older report, a hand-made artifact):
absent fields stay absent, and a malformed file is a clear ConfigError.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edgeward.errors import ConfigError
from edgeward.provenance._statement import CardInfo, SourceModel
from edgeward.safeio import MAX_MANIFEST_BYTES, parse_json, read_text_capped

__all__ = [
    "BuildRecord",
    "ReportDefaults",
    "defaults_from_report",
    "read_report",
    "report_path_for",
]

REPORT_SUFFIX = ".report.json"
DIRECTORY_REPORT = "compression-report.json"  # inside a directory artifact (ONNX)
_RECIPE_KEYS = ("type", "quant_type", "output_tensor_type", "token_embedding_type",
                "tensor_overrides", "imatrix", "prune_layers", "fallback_tensors", "bpw")


def report_path_for(artifact: Path) -> Path:
    """``ARTIFACT.report.json`` next to the artifact (file or directory)."""
    return artifact.with_name(artifact.name + REPORT_SUFFIX)


def read_report(artifact: Path, *, path: Path | None = None) -> dict[str, Any] | None:
    """The compression report of ``artifact``, or None when there is none.

    Args:
        artifact: the artifact; its report is looked for next to it.
        path: an explicit report path (then it must exist).

    Raises:
        ConfigError: an explicit path is missing, or the report is not a JSON object.
    """
    report = path or report_path_for(artifact)
    if path is None and not report.exists() and Path(artifact).is_dir():
        report = Path(artifact) / DIRECTORY_REPORT
    if not report.exists():
        if path is not None:
            raise ConfigError(f"{path}: no such report file")
        return None
    text = read_text_capped(report, MAX_MANIFEST_BYTES, what="compression report")
    try:
        data = parse_json(text, what="compression report")
    except ConfigError as e:
        raise ConfigError(f"{report}: {e}; re-run the compression or remove the "
                          "file") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{report}: the compression report must be a JSON object")
    return data


@dataclass(frozen=True)
class ReportDefaults:
    """What a report says about the build, each field None/empty when it says nothing."""

    started_at: str | None = None
    tool_versions: dict[str, str] = field(default_factory=dict)
    source_model: SourceModel | None = None
    recipe: dict[str, Any] | None = None
    profile: dict[str, Any] | None = None
    quality: dict[str, Any] | None = None
    model_card: CardInfo | None = None


def _timestamp(value: object) -> str | None:
    """An ISO 8601 time as RFC 3339 UTC with a Z (what the predicate records), else None."""
    if not isinstance(value, str):
        return None
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if t.tzinfo is None:
        return None
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _obj(value: object) -> dict[str, Any] | None:
    return dict(value) if isinstance(value, Mapping) else None


def defaults_from_report(report: Mapping[str, Any]) -> ReportDefaults:
    """What a compression report says about the build: its ``build`` record when it has one
    (every report this version writes), else its fields mapped tolerantly (older reports,
    hand-made ones)."""
    build = report.get("build")
    if build is not None:
        if not isinstance(build, Mapping):
            raise ConfigError("compression report: 'build' must be an object; re-run the "
                              "compression or remove the report")
        try:
            d = BuildRecord.from_dict(build).defaults()
        except ConfigError as e:
            raise ConfigError(f"compression report: its build record is damaged ({e}); "
                              "re-run the compression or remove the report") from None
        card = _obj(report.get("model_card"))
        return ReportDefaults(**{**d.__dict__,
                                 "model_card": CardInfo.from_dict(card) if card else None})
    recipe = _obj(report.get("recipe"))
    if recipe is None:
        picked = {k: report[k] for k in _RECIPE_KEYS if k in report}
        recipe = picked or None
    profile = _obj(report.get("hardware_profile")) or _obj(report.get("profile"))
    if profile is None and isinstance(report.get("profile"), str):
        profile = {"name": report["profile"]}
    source = report.get("source_model", report.get("source"))
    source_model = None
    try:
        if isinstance(source, Mapping) and (source.get("name") or source.get("path")):
            digest = source.get("sha256") or (source.get("digest") or {}).get("sha256")
            source_model = SourceModel(
                name=str(source.get("name") or Path(str(source["path"])).name),
                sha256=digest, licence=source.get("licence", source.get("license")),
                uri=source.get("uri", source.get("path")))
        elif isinstance(source, str) and source:
            source_model = SourceModel(name=Path(source).name, uri=source,
                                       licence=report.get("licence", report.get("license")))
    except ConfigError:
        source_model = None  # a report with an odd digest does not stop signing
    card = _obj(report.get("model_card"))
    versions = _obj(report.get("tool_versions")) or _obj(report.get("tools")) or {}
    memory = _obj(report.get("memory")) or {}
    if profile is None and isinstance(memory.get("profile"), str):
        profile = {"name": memory["profile"], "context": memory.get("context")}
    return ReportDefaults(
        started_at=_timestamp(report.get("started_at") or report.get("created_at")),
        tool_versions={str(k): str(v) for k, v in versions.items()},
        source_model=source_model,
        recipe=recipe,
        profile=profile,
        quality=_obj(report.get("quality")),
        model_card=CardInfo.from_dict(card) if card else None,
    )


@dataclass(frozen=True, kw_only=True)
class BuildRecord:
    """What a compression made, in the shape the provenance predicate records it.

    The compression package writes it into its report under ``"build"``; provenance owns the
    shape, so a statement takes the source, recipe, profile and quality from it as they are,
    for every format, instead of guessing among a report's keys.

    Attributes:
        format: the artifact's format (``gguf``, ``onnx``).
        source_model: the model it was made from.
        recipe: how it was made (type, refinements, importance matrix, pruning).
        hardware_profile: the profile it was chosen or measured for, if any.
        quality: the quality figures against the reference.
        tool_versions: the tools that shaped it.
        started_at: when the build started (RFC 3339 UTC).
    """

    format: str
    source_model: SourceModel | None
    recipe: dict[str, Any]
    hardware_profile: dict[str, Any] | None = None
    quality: dict[str, Any] | None = None
    tool_versions: dict[str, str] = field(default_factory=dict)
    started_at: str | None = None

    def __post_init__(self) -> None:
        # one spelling of the time (RFC 3339 UTC with a Z), so a record reads back equal
        object.__setattr__(self, "started_at", _timestamp(self.started_at))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the report's ``build`` object)."""
        return {"format": self.format,
                "source_model": self.source_model.to_dict() if self.source_model else None,
                "recipe": self.recipe, "hardware_profile": self.hardware_profile,
                "quality": self.quality, "tool_versions": dict(self.tool_versions),
                "started_at": self.started_at}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> BuildRecord:
        """Read what :meth:`to_dict` wrote.

        Raises:
            ConfigError: a field of the wrong kind (named).
        """
        def obj(key: str) -> dict[str, Any] | None:
            value = d.get(key)
            if value is not None and not isinstance(value, Mapping):
                raise ConfigError(f"build record: {key!r} must be an object, got {value!r}")
            return dict(value) if value is not None else None

        src = obj("source_model")
        fmt = d.get("format")
        if not isinstance(fmt, str) or not fmt:
            raise ConfigError(f"build record: 'format' must be a format name, got {fmt!r}")
        try:
            source = SourceModel.from_dict(src) if src else None
        except (AttributeError, TypeError) as e:
            raise ConfigError(f"build record: a malformed 'source_model' ({e})") from None
        return cls(format=fmt, source_model=source,
                   recipe=obj("recipe") or {}, hardware_profile=obj("hardware_profile"),
                   quality=obj("quality"),
                   tool_versions={str(k): str(v) for k, v in (obj("tool_versions") or {}).items()},
                   started_at=_timestamp(d.get("started_at")))

    def defaults(self) -> ReportDefaults:
        """As the defaults a statement takes."""
        return ReportDefaults(started_at=self.started_at, tool_versions=dict(self.tool_versions),
                              source_model=self.source_model, recipe=dict(self.recipe),
                              profile=self.hardware_profile, quality=self.quality)
