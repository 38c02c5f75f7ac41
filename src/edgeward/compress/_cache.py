"""Candidates measured once: what quantizing a source with a recipe produced, and its quality.

Quality does not depend on the target, so a candidate's measurement is kept on disk, keyed by
everything it does depend on: the source's digest, the recipe, the importance matrix's digest,
the evaluation text's digest and settings, and the llama.cpp build that quantized it. A second
profile's plan, or ``--out`` after ``--plan``, then reads it instead of quantizing and
evaluating again. Each entry holds the candidate's GGUF header (its tensor table: memory and
speed are predicted from it for any profile) and a JSON record; an entry is written to a
temporary directory and renamed into place, and one that cannot be read is ignored (and
measured again).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from edgeward.compress._eval import EvalConfig, QualityReport
from edgeward.compress._quantize import FallbackTensor, QuantizeResult, QuantRecipe
from edgeward.errors import ArtifactError
from edgeward.runtimes import GGUFHeader, llama_backends, llama_cpp_version, parse_gguf_header

__all__ = ["CachedCandidate", "CandidateCache", "candidate_key"]

_FORMAT = "edgeward-candidate/1"
_MAX_RECORD = 4 << 20  # bytes


@dataclass(frozen=True)
class CachedCandidate:
    """A candidate read back from the cache (its artifact is not kept)."""

    result: QuantizeResult
    header: GGUFHeader
    quality: QualityReport | None


def candidate_key(source_sha256: str, recipe: QuantRecipe, *, imatrix_sha256: str | None,
                  text_sha256: str | None, eval_config: EvalConfig | None) -> str:
    """The cache key of one measurement (hex)."""
    parts = {
        "format": _FORMAT,
        "source": source_sha256,
        "recipe": recipe.to_dict() | {"imatrix": None},  # the matrix counts by digest
        "imatrix": imatrix_sha256,
        "text": text_sha256,
        "eval": None if eval_config is None else {
            "n_ctx": eval_config.n_ctx, "eval_tokens": eval_config.eval_tokens,
            "top_k": eval_config.top_k},
        "llama_cpp": llama_cpp_version(),
        "backends": sorted(llama_backends()),  # a CUDA rebuild of the same version differs
        "edgeward": _edgeward_version(),  # the evaluation code is part of the measurement
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:40]


class CandidateCache:
    """Measured candidates under ``root`` (``None``: a cache that keeps nothing)."""

    def __init__(self, root: Path | None) -> None:
        self.root = root

    def load(self, key: str, artifact: Path) -> CachedCandidate | None:
        """The entry for ``key``, as if its artifact were at ``artifact``; None if absent or
        unreadable."""
        if self.root is None:
            return None
        entry = self.root / key
        try:
            record = json.loads((entry / "candidate.json").read_text(encoding="utf-8")[
                :_MAX_RECORD])
            if record.get("format") != _FORMAT:
                return None
            header = parse_gguf_header((entry / "header.bin").read_bytes(), path=artifact,
                                       file_size=int(record["file_size"]))
            r = record["result"]
            result = QuantizeResult(
                artifact=artifact,
                recipe=_recipe(r["recipe"]),
                size_bytes=int(r["size_bytes"]), bpw=float(r["bpw"]),
                n_params=int(r["n_params"]), requantized=bool(r["requantized"]),
                fallback_tensors=[FallbackTensor(**f) for f in r["fallback_tensors"]],
                tensor_types={str(k): int(v) for k, v in r["tensor_types"].items()},
                seconds=float(r["seconds"]), warnings=[str(w) for w in r["warnings"]])
            q = record.get("quality")
            quality = QualityReport(**q) if q else None
        except (OSError, ValueError, KeyError, TypeError, ArtifactError):
            return None
        return CachedCandidate(result, header, quality)

    def save(self, key: str, result: QuantizeResult, header: GGUFHeader,
             quality: QualityReport | None) -> None:
        """Keep one measurement (best effort: a cache that cannot be written is skipped)."""
        if self.root is None:
            return
        record = {
            "format": _FORMAT,
            "file_size": header.file_size,
            "result": result.to_dict() | {"bpw": result.bpw, "seconds": result.seconds},
            "quality": dataclasses.asdict(quality) if quality else None,
        }
        with contextlib.suppress(OSError):
            self.root.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=self.root))
            try:
                with result.artifact.open("rb") as f:
                    (tmp / "header.bin").write_bytes(f.read(header.data_offset))
                (tmp / "candidate.json").write_text(json.dumps(record), encoding="utf-8")
                final = self.root / key
                if final.exists():
                    shutil.rmtree(final, ignore_errors=True)
                tmp.replace(final)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)


def _edgeward_version() -> str:
    try:
        return metadata.version("edgeward")
    except metadata.PackageNotFoundError:
        return "unknown"


def _recipe(d: dict[str, Any]) -> QuantRecipe:
    return QuantRecipe(
        type=d["type"], output_type=d.get("output_type"), embedding_type=d.get("embedding_type"),
        overrides=tuple((str(a), str(b)) for a, b in d.get("overrides", ())),
        imatrix=d.get("imatrix"), prune_layers=tuple(int(i) for i in d.get("prune_layers", ())),
        pure=bool(d.get("pure", False)))
