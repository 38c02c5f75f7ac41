"""The ONNX face of ``edgeward compress run``: its options, the plan table and the result
lines; the work is :func:`edgeward.compress.compress`'s."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeward._cli._output import out, state
from edgeward.errors import ConfigError

__all__ = ["onnx_options", "print_onnx_report"]


def _onnx_texts(calibration_text: Path | None, eval_text: Path | None, qtype: str | None,
                prune_ffn: float | None) -> tuple[list[str] | None, str | None]:
    texts = None
    if calibration_text is not None:
        try:
            raw = calibration_text.read_text(encoding="utf-8")
        except OSError as e:
            raise ConfigError(f"{calibration_text}: cannot read ({e.strerror})") from e
        texts = [p.strip() for p in raw.split("\n\n") if p.strip()][:64]
        if not texts:
            raise ConfigError(f"{calibration_text}: empty; give a text with paragraphs")
    elif qtype in (None, "int8-static") or prune_ffn:
        from edgeward.compress import default_calibration_texts

        texts = default_calibration_texts()  # the built-in default text, as for GGUF
    try:
        evaluation = eval_text.read_text(encoding="utf-8") if eval_text is not None else None
    except OSError as e:
        raise ConfigError(f"{eval_text}: cannot read ({e.strerror})") from e
    return texts, evaluation


def _onnx_quality(q: dict[str, Any] | None) -> str:
    q = q or {}
    if "cosine_mean" in q:
        return f"cosine {q['cosine_mean']:.4f}, NN {q['nearest_neighbour_agreement']:.0%}"
    if "ppl" in q:
        return f"PPL {q['ppl']}, KLD {q['kld_mean']}, top-1 {q['top1_agreement']:.1%}"
    return "-"


def onnx_options(calibration_text: Path | None, eval_text: Path | None, qtype: str | None,
                 prune_ffn: float | None, *, evaluate: bool, block_size: int, lm_head: bool,
                 optimize: str | None, keep_reference: bool) -> Any:
    """The ``OnnxOptions`` of ``compress run --format onnx`` (texts read here)."""
    from edgeward.compress import OnnxOptions

    texts, evaluation = _onnx_texts(calibration_text, eval_text, qtype, prune_ffn)
    # third-party warnings and logs (torch, transformers, ONNX Runtime) only with --debug
    return OnnxOptions(calibration_texts=texts, eval_text=evaluation, evaluate=evaluate,
                       block_size=block_size, lm_head=lm_head, optimize=optimize,
                       prune_ffn=prune_ffn, keep_reference=keep_reference,
                       third_party_output=state.debug)


def print_onnx_report(report: dict[str, Any]) -> None:
    """What an ONNX compression wrote, in a few lines (the plan table is the CLI's, for
    every format)."""
    out.print(f"wrote {report['out']} ({report['type']}, "
              f"{report['size_bytes'] / 2**20:.1f} MiB, {report['size_ratio']:.2f} of "
              f"fp32); {_onnx_quality(report['quality'])}", markup=False)
    floats = (report.get("float_tensors") or {}).get("note")
    if floats:
        out.print(floats, markup=False)
    out.print(report["reference_note"], markup=False)
