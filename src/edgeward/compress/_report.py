"""The compression report (JSON), the model-card stub (Markdown) and where they are written."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from edgeward.compress._chart import ChartPoint, render_png
from edgeward.compress._pipeline import Candidate, Plan, reference_note
from edgeward.hardware_profiles import HardwareProfile
from edgeward.provenance import BuildRecord, SourceModel

__all__ = ["CompressionReport", "output_paths", "tool_versions"]

REPORT_VERSION = 1


def output_paths(artifact: Path) -> dict[str, Path]:
    """Where the files that go with an artifact are written: ``ARTIFACT.report.json``,
    ``ARTIFACT.card.md`` and, for a plan, ``ARTIFACT.chart.png``."""
    return {
        "report": artifact.with_name(artifact.name + ".report.json"),
        "card": artifact.with_name(artifact.name + ".card.md"),
        "chart": artifact.with_name(artifact.name + ".chart.png"),
    }


def tool_versions() -> dict[str, str]:
    """Versions of edgeward and the libraries that produced an artifact."""
    out = {}
    for dist in ("edgeward", "llama-cpp-python", "gguf", "onnxruntime"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


@dataclass
class CompressionReport:
    """Everything about one compression: source, recipe, artifact, quality, memory, timings.

    ``to_dict()`` is the JSON report; its top-level keys ``artifact``, ``size_bytes``, ``bpw``,
    ``type``, ``fallback_tensors``, ``quality`` and ``timings`` are a stable interface.
    """

    source: dict[str, Any]
    artifact: Path
    artifact_sha256: str
    chosen: Candidate
    profile: HardwareProfile | None
    context: int
    timings: dict[str, float]
    evaluation_text: dict[str, str] | None
    plan: Plan | None = None
    imatrix: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(
        timespec="seconds"))

    def to_dict(self) -> dict[str, Any]:
        """The JSON report."""
        r = self.chosen.result
        return {
            "report_version": REPORT_VERSION,
            "artifact": str(self.artifact),
            "artifact_sha256": self.artifact_sha256,
            "size_bytes": r.size_bytes,
            "bpw": round(r.bpw, 4),
            "type": self.chosen.recipe.type,
            "recipe": self.chosen.recipe.to_dict(),
            "fallback_tensors": [f.__dict__ for f in r.fallback_tensors],
            "tensor_types": r.tensor_types,
            "requantized": r.requantized,
            "quality": self.chosen.quality.to_dict() if self.chosen.quality else None,
            "memory": {
                "context": self.context,
                "predicted": self.chosen.memory.to_dict(),
                "profile": self.profile.name if self.profile else None,
                "fits": self.chosen.fits if self.profile else None,
                "predicted_tokens_per_s": (round(self.chosen.predicted_tokens_per_s, 1)
                                           if self.profile and self.chosen.predicted_tokens_per_s
                                           else None),
                "placement": (self.chosen.placement.to_dict() if self.chosen.placement
                              else None),
                "speed": self.chosen.speed.to_dict() if self.chosen.speed else None,
            },
            "reference": self.reference_note(),
            "source": self.source,
            "evaluation_text": self.evaluation_text,
            "imatrix": self.imatrix,
            "plan": self.plan.to_dict() if self.plan else None,
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
            "tools": tool_versions(),
            "warnings": self.warnings,
            "created_at": self.created_at,
            "build": self.build_record().to_dict(),
        }

    def reference_note(self) -> str:
        """What quality was measured against, in a sentence."""
        if self.chosen.quality is None:
            return "quality not measured"
        return reference_note(self.chosen.result.requantized)

    def build_record(self) -> BuildRecord:
        """What provenance signs about this build (the report's ``build``)."""
        src = self.source
        name = src.get("name") or Path(str(src.get("path", "source"))).name
        sha = src.get("sha256")
        source = SourceModel(name=str(name), sha256=sha if isinstance(sha, str) else None,
                             licence=src.get("license"), uri=str(src.get("path") or "") or None)
        recipe = self.chosen.recipe.to_dict() | {
            "format": "gguf", "bpw": round(self.chosen.result.bpw, 4),
            "fallback_tensors": len(self.chosen.result.fallback_tensors),
            "imatrix_sha256": (self.imatrix or {}).get("sha256")}
        if src.get("conversion"):
            recipe["conversion"] = src["conversion"]
        profile = None
        if self.profile is not None:
            pl = self.chosen.placement
            profile = {"name": self.profile.name, "context": self.context,
                       "backend": self.profile.backend, "fits": self.chosen.fits,
                       "gpu_layers": pl.gpu_layers if pl else 0,
                       "offload": pl.offload if pl else "none"}
        return BuildRecord(
            format="gguf", source_model=source, recipe=recipe, hardware_profile=profile,
            quality=self.chosen.quality.to_dict() if self.chosen.quality else None,
            tool_versions=tool_versions(), started_at=self.created_at)

    def write(self) -> dict[str, Path]:
        """Write the report, the model-card stub and (for a plan) the chart next to the
        artifact; each file atomically. Returns the paths written."""
        paths = output_paths(self.artifact)
        _atomic_write(paths["report"], json.dumps(self.to_dict(), indent=2) + "\n")
        _atomic_write(paths["card"], self.card())
        written = {"report": paths["report"], "card": paths["card"]}
        points = self.chart_points()
        if self.plan is not None and points:
            render_png(points, paths["chart"],
                       title=f"{self.source.get('name', '')} for {self.plan.profile.name}")
            written["chart"] = paths["chart"]
        return written

    def chart_points(self) -> list[ChartPoint]:
        """The plan's measured candidates as chart points."""
        if self.plan is None:
            return []
        return [ChartPoint(c.recipe.label, c.result.size_bytes, c.kld_mean, c.fits,
                           c is self.plan.choice)
                for c in self.plan.candidates if c.kld_mean is not None]

    def card(self) -> str:
        """A Markdown model-card stub: what is known for certain, and TODOs for the rest."""
        r, q = self.chosen.result, self.chosen.quality
        src = self.source
        lines = [
            f"# {src.get('name') or Path(src['path']).stem} — {self.chosen.recipe.label}",
            "",
            f"A {self.chosen.recipe.type} GGUF of `{Path(src['path']).name}` made by edgeward "
            f"{tool_versions()['edgeward']} with llama.cpp's quantizer "
            f"(llama-cpp-python {tool_versions()['llama-cpp-python']}).",
            "",
            "## Intended use",
            "",
            "TODO: who should run this model, for what, and what it must not be used for.",
            "",
            "## Source",
            "",
            f"- file: `{src['path']}` (sha256 `{src['sha256']}`)",
            f"- architecture: {src.get('architecture')}, {src.get('n_params', 0):,} parameters",
            f"- licence: {src.get('license') or 'unknown — check the source model'}",
            "",
            "## Artifact",
            "",
            f"- `{self.artifact.name}`: {r.size_bytes / 2**20:.1f} MiB, {r.bpw:.2f} bits per "
            f"weight, sha256 `{self.artifact_sha256}`",
            f"- recipe: `{json.dumps(self.chosen.recipe.to_dict())}`",
            f"- tensors that fell back to another type: {len(r.fallback_tensors)}",
        ]
        if r.requantized:
            lines.append("- requantized from an already quantized source: quality is measured "
                         "against its dequantized form")
        lines += ["", "## Quality", ""]
        if q is None:
            lines.append("Not measured (`--no-eval`).")
        else:
            reference = ("the dequantized form of the already quantized source (not the "
                         "original weights)" if r.requantized else "the unquantized source")
            lines += [
                f"Against {reference} on {q.text} ({q.eval_tokens} scored tokens, "
                f"{q.n_ctx}-token chunks):",
                "",
                "| PPL | PPL (reference) | mean KLD | p99 KLD | top-1 agreement |",
                "|---|---|---|---|---|",
                f"| {q.ppl:.3f} | {q.ppl_ref:.3f} | {q.kld_mean:.4f} | {q.kld_p99:.4f} | "
                f"{q.top1_agreement:.1%} |",
            ]
        m = self.chosen.memory
        lines += ["", "## Hardware", "",
                  f"Predicted memory at {self.context} tokens of context: "
                  f"{m.total / 2**20:.0f} MiB (weights {m.weights / 2**20:.0f}, KV cache "
                  f"{m.kv_cache / 2**20:.0f}, compute {m.compute / 2**20:.0f})."]
        if self.profile is not None:
            lines.append(f"Profile `{self.profile.name}` ({self.profile.display_name}): "
                         f"{'fits' if self.chosen.fits else 'does NOT fit'}; predicted decode "
                         f"{self.chosen.predicted_tokens_per_s or 0:.0f} tokens/s.")
        lines += ["", "## Limitations", "",
                  "TODO: known failure modes, languages, safety evaluation. Quantization "
                  "lowers quality (see the KLD above); small models make factual errors.", ""]
        return "\n".join(lines)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    with tmp.open("w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
