"""The ONNX path of ``edgeward compress run --format onnx``: argument checks, the plan table
and the result line; the work is :mod:`edgeward.compress._onnx_pipeline`'s."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich import box
from rich.table import Table

from edgeward._cli._output import emit, out, state
from edgeward.errors import ConfigError

__all__ = ["run_onnx"]


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


def _onnx_plan_table(plan: dict[str, Any]) -> Table:
    table = Table(title=f"ONNX candidates for {plan['profile']} ({plan['task']}, budget "
                  f"{plan['memory_budget_bytes'] / 2**20:,.0f} MiB)", box=box.SIMPLE)
    for col in ("type", "size MiB", "of fp32", "memory MiB", "fits", "tok/s (pred.)",
                "quality vs fp32", "chosen"):
        table.add_column(col)
    for r in plan["candidates"]:
        tps = r["predicted_tokens_per_s"]
        table.add_row(r["type"], f"{r['size_bytes'] / 2**20:.1f}", f"{r['size_ratio']:.2f}",
                      f"{r['predicted_memory_bytes'] / 2**20:.0f}",
                      "yes" if r["fits"] else "NO", "-" if tps is None else f"{tps:.0f}",
                      "reference" if r["type"] == "fp32" else _onnx_quality(r["quality"]),
                      "*" if r["type"] == plan["choice"] else "")
    return table


def run_onnx(src: Path, qtype: str | None, profile: str | None, out_path: Path | None,
              plan: bool, extra: dict[str, Any], as_json: bool, *,
              fingerprint: bool = True) -> None:
    """The ONNX path of `compress run` (see edgeward.compress._onnx_pipeline)."""
    from edgeward.compress import (
        ONNX_TYPES,
        OnnxOptions,
        compress_onnx,
        plan_onnx,
    )
    from edgeward.hardware_profiles import resolve_profile

    if qtype is not None and qtype not in ONNX_TYPES:
        raise ConfigError(f"--format onnx: --type is one of {', '.join(ONNX_TYPES)}, "
                          f"not {qtype!r}")
    if qtype is None and not profile:
        raise ConfigError("--format onnx needs --type (one of "
                          f"{', '.join(ONNX_TYPES)}) or --profile NAME to choose one")
    if plan and not profile:
        raise ConfigError("--plan needs --profile NAME (the target to plan for)")
    if not plan and out_path is None:
        raise ConfigError("--out DIR is required (the ONNX model directory to write)")
    if not src.exists():
        raise ConfigError(f"{src}: no such model directory or file")
    texts, evaluation = _onnx_texts(extra.pop("calibration_text"), extra.pop("eval_text"),
                                    qtype, extra.get("prune_ffn"))
    # third-party warnings and logs (torch, transformers, ONNX Runtime) only with --debug
    options = OnnxOptions(calibration_texts=texts, eval_text=evaluation,
                          third_party_output=state.debug, **extra)
    prof = resolve_profile(profile) if profile else None
    if plan:
        assert prof is not None
        result = plan_onnx(src, prof, kinds=[qtype] if qtype else None, options=options)
        for row in result["candidates"]:
            row.pop("path", None)

        def show_plan() -> None:
            out.print(_onnx_plan_table(result))
            out.print(f"choice: {result['choice']} — {result['reason']}")

        emit(as_json, result, show_plan)
        return
    assert out_path is not None
    report = compress_onnx(src, out_path, qtype, profile=prof, options=options)
    if fingerprint:
        from edgeward._cli.behaviour import fingerprint_built

        report = {**report, **fingerprint_built(Path(report.get("out") or out_path), as_json)}

    def human() -> None:
        if report.get("plan"):
            out.print(_onnx_plan_table(report["plan"]))
        out.print(f"wrote {report['out']} ({report['type']}, "
                  f"{report['size_bytes'] / 2**20:.1f} MiB, {report['size_ratio']:.2f} of "
                  f"fp32); {_onnx_quality(report['quality'])}", markup=False)
        floats = (report.get("float_tensors") or {}).get("note")
        if floats:
            out.print(floats, markup=False)
        out.print(report["reference_note"], markup=False)

    emit(as_json, report, human)
