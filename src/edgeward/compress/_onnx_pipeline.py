"""``edgeward compress SRC --format onnx --type KIND --out DIR``: export if needed, quantize,
measure, report.

SRC may be an ONNX model directory (``model.onnx``), a Hugging Face model directory (exported
with optimum first: ``feature-extraction`` for encoders, ``text-generation-with-past`` for
``*ForCausalLM`` architectures), or a GGUF file (turned into a Hugging Face directory through
transformers, then exported as a causal LM). The fp32 export is kept beside the output as the
quality reference (``OUT.fp32``); the report goes to ``OUT/compression-report.json``.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgeward.compress._onnx_eval import encoder_quality, lm_quality
from edgeward.compress._onnx_export import OnnxTask, export_onnx, gguf_to_hf_dir
from edgeward.compress._onnx_quant import OnnxKind, quantize_onnx
from edgeward.errors import ConfigError
from edgeward.hardware_profiles import HardwareProfile

__all__ = ["compress_onnx"]

REPORT = "compression-report.json"


def _task_of(hf_dir: Path) -> OnnxTask:
    try:
        config = json.loads((hf_dir / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"{hf_dir}: no readable config.json; give an ONNX or Hugging Face "
                          f"model directory, or a GGUF file ({e})") from e
    archs = config.get("architectures") or []
    causal = any(str(a).endswith("ForCausalLM") for a in archs)
    return "text-generation-with-past" if causal else "feature-extraction"


def _default_eval_text() -> str:
    """The built-in evaluation text (CPython's pydoc topics, as for GGUF)."""
    from pydoc_data import topics

    return "\n\n".join(topics.topics[k] for k in sorted(topics.topics)[-60:])


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def compress_onnx(src: Path, out: Path, kind: OnnxKind, *,
                  profile: HardwareProfile | None = None,
                  calibration_texts: Sequence[str] | None = None, evaluate: bool = True,
                  eval_text: str | None = None, force: bool = False) -> dict[str, Any]:
    """Make the ONNX artifact ``out`` of ``src`` (see the module docstring).

    Returns:
        The report (also written to ``out/compression-report.json``).

    Raises:
        ConfigError: bad source, existing ``out`` without ``force``, missing extras;
        ArtifactError, RuntimeBackendError: export, quantization or evaluation failed.
    """
    started = time.perf_counter()
    src = Path(src)
    if out.exists() and not force:
        raise ConfigError(f"{out}: exists; pass --force to replace it")
    if (src / "model.onnx").is_file():
        reference, task = src, None
    else:
        reference = out.with_name(out.name + ".fp32")
        with tempfile.TemporaryDirectory(prefix="edgeward-hf-") as tmp:
            if src.is_file() and src.suffix == ".gguf":
                hf_dir = gguf_to_hf_dir(src, Path(tmp) / "hf", force=True)
            elif src.is_dir():
                hf_dir = src
            else:
                raise ConfigError(f"{src}: not an ONNX or Hugging Face model directory, nor a "
                                  "GGUF file")
            task = _task_of(hf_dir)
            export_onnx(hf_dir, reference, task=task, force=True)
    if task is None:
        task = "feature-extraction" if not (src / "generation_config.json").is_file() \
            else "text-generation-with-past"
    quantize_onnx(reference, out, kind, profile=profile, calibration_texts=calibration_texts,
                  force=force)
    report: dict[str, Any] = {
        "format": "onnx", "type": kind, "task": task, "source": str(src),
        "reference": str(reference), "out": str(out),
        "profile": profile.name if profile else None,
        "size_bytes": _dir_size(out), "reference_size_bytes": _dir_size(reference),
    }
    report["size_ratio"] = round(report["size_bytes"] / max(report["reference_size_bytes"], 1),
                                 4)
    if not evaluate:
        report["quality"] = None
    elif task == "feature-extraction":
        report["quality"] = encoder_quality(reference, out)
    else:  # PPL, KLD and top-1 against fp32, as the GGUF path defines them
        report["quality"] = lm_quality(reference, out, eval_text or _default_eval_text())
    report["seconds"] = round(time.perf_counter() - started, 2)
    (out / REPORT).write_text(json.dumps(report, indent=2) + "\n")
    return report
