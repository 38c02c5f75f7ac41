"""``edgeward compress``: quantize a GGUF model for a type or a profile; ``imatrix``; scores."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from rich import box
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from edgeward._cli._output import emit, err, json_option, out
from edgeward.errors import ConfigError

__all__ = ["compress"]

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "B": 1, "K": 10**3, "KB": 10**3, "KIB": 2**10, "M": 10**6, "MB": 10**6,
          "MIB": 2**20, "G": 10**9, "GB": 10**9, "GIB": 2**30, "T": 10**12, "TB": 10**12,
          "TIB": 2**40}


class _DefaultGroup(click.Group):
    """A group whose first argument may be a model path: then the ``run`` command is meant."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_DefaultGroup)
def compress() -> None:
    """Compress a model: `edgeward compress SRC --type Q4_K_M --out OUT.gguf`, or
    `--profile NAME` to choose the recipe; `--format onnx` for ONNX Runtime (see
    `edgeward compress run --help`).

    \b
    Also: `edgeward compress imatrix SRC --out FILE` makes an importance matrix;
    `edgeward compress prune-scores SRC` ranks blocks for --prune-layers.
    """


def _rich_reporter(progress: Progress | None) -> Any:
    """A :class:`edgeward.compress.Reporter` that draws steps as rich progress bars."""
    from edgeward.compress import Reporter  # imported here: keeps `edgeward --help` fast

    class RichReporter(Reporter):
        def __init__(self) -> None:
            self._task: Any = None

        def step(self, text: str) -> None:
            if progress is None:
                return
            self.finish()
            self._task = progress.add_task(text, total=None)

        def progress(self, label: str, done: int, total: int) -> None:
            if progress is not None and self._task is not None:
                progress.update(self._task, completed=done, total=total)

        def warn(self, text: str) -> None:
            (progress.console if progress is not None else err).print(
                f"[yellow]warning:[/yellow] {text}")

        def finish(self) -> None:
            if progress is not None and self._task is not None:
                total = progress.tasks[-1].total or 1
                progress.update(self._task, completed=total, total=total)

    return RichReporter()


def _plain_reporter() -> Any:
    """Progress for a pipe or a log file: one line per step, and percentages with an ETA at
    most every 10 % (or 30 s), no bars or control codes."""
    from edgeward.compress import Reporter

    class PlainReporter(Reporter):
        def __init__(self) -> None:
            self._step = ""
            self._t0 = time.monotonic()
            self._last_pct = -100
            self._last_t = 0.0

        def step(self, text: str) -> None:
            self._step, self._t0, self._last_pct = text, time.monotonic(), -100
            err.print(text, markup=False, highlight=False, soft_wrap=True)

        def progress(self, label: str, done: int, total: int) -> None:
            if total <= 0:
                return
            pct = int(100 * done / total)
            now = time.monotonic()
            if pct < self._last_pct + 10 and now - self._last_t < 30 and done < total:
                return
            self._last_pct, self._last_t = pct, now
            elapsed = now - self._t0
            eta = elapsed * (total - done) / done if done else 0.0
            err.print(f"  {label}: {pct}% ({done}/{total}), ETA {_clock(eta)}",
                      markup=False, highlight=False, soft_wrap=True)

        def warn(self, text: str) -> None:
            err.print(f"[yellow]warning:[/yellow] {text}")

        def finish(self) -> None:
            pass

    return PlainReporter()


def _clock(seconds: float) -> str:
    s = int(seconds + 0.5)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


@contextmanager
def _reporter(quiet: bool) -> Iterator[Any]:
    if quiet:
        yield _rich_reporter(None)
        return
    if not err.is_terminal:
        yield _plain_reporter()
        return
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(bar_width=24),
               TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=False) as progress:
        reporter = _rich_reporter(progress)
        yield reporter
        reporter.finish()


def parse_size(text: str) -> int:
    """``"80MB"``, ``"100MiB"``, ``"1.5G"`` or plain bytes -> bytes."""
    m = _SIZE.match(text)
    if not m:
        raise ConfigError(f"--target-size {text!r} is not a size; use e.g. 80MB, 100MiB, 1.5GB")
    return int(float(m.group(1)) * _UNITS[(m.group(2) or "").upper()])


@compress.command("run")
@click.argument("src", type=click.Path(path_type=Path))
@click.option("--type", "qtype", help="Quantization type, e.g. Q4_K_M (see --help for all).")
@click.option("--profile", help="Choose the recipe for this hardware profile (name or .toml).")
@click.option("--out", "out_path", type=click.Path(path_type=Path),
              help="Artifact to write (report, card and chart go beside it).")
@click.option("--plan", is_flag=True, help="Print the candidates table; write nothing.")
@click.option("--candidates", help="Comma-separated types the planner tries, or 'all'.")
@click.option("--context", type=click.IntRange(128, 1 << 20),
              help="Context length for memory figures [default: the profile's].")
@click.option("--headroom", type=click.FloatRange(0, 0.95), default=0.2, show_default=True,
              help="Fraction of the profile's memory kept free (OS, other processes).")
@click.option("--max-kld", type=click.FloatRange(0), help="Only candidates with mean KLD <= this.")
@click.option("--target-size", help="Only candidates at most this big (e.g. 80MB, 100MiB).")
@click.option("--imatrix", "imatrix_path", type=click.Path(path_type=Path, dir_okay=False),
              help="Importance matrix file (GGUF imatrix format).")
@click.option("--prune-layers", type=click.IntRange(1), help="Prune this many least "
              "influential blocks (scored on the calibration text; needs torch).")
@click.option("--output-type", help="Tensor type for output.weight.")
@click.option("--embedding-type", help="Tensor type for token_embd.weight.")
@click.option("--override", "overrides", multiple=True, metavar="REGEX=TYPE",
              help="Per-tensor type override, e.g. 'ffn_down=Q6_K' (repeatable).")
@click.option("--pure", is_flag=True, help="Every tensor gets the main type (no mixture).")
@click.option("--eval-text", type=click.Path(path_type=Path, dir_okay=False),
              help="Evaluation text [default: built-in pydoc topics, evaluation part].")
@click.option("--calibration-text", type=click.Path(path_type=Path, dir_okay=False),
              help="Calibration text for pruning scores [default: built-in, calibration part].")
@click.option("--eval-tokens", type=click.IntRange(16), default=4096, show_default=True,
              help="Evaluation token budget.")
@click.option("--eval-ctx", type=click.IntRange(16), default=512, show_default=True,
              help="Tokens per evaluation chunk.")
@click.option("--no-eval", is_flag=True, help="Skip the quality measurement.")
@click.option("--no-cache", is_flag=True, help="Measure everything again: no cached reference "
              "logits, measured candidates or converted checkpoints.")
@click.option("--threads", type=click.IntRange(1), help="Threads [default: all cores].")
@click.option("--force", is_flag=True, help="Replace an existing artifact.")
@click.option("--format", "fmt", type=click.Choice(["gguf", "onnx"]),
              help="The artifact's format [default: gguf for a GGUF file or a causal-LM "
              "Hugging Face checkpoint, onnx for an ONNX or other Hugging Face model "
              "directory]. onnx: OUT is a directory and --type one of fp32, int8-dynamic, "
              "int8-static, int8-weight, int4, fp16 (or --profile to choose).")
@click.option("--block-size", type=click.IntRange(16), default=32, show_default=True,
              help="onnx int4, int8-weight: weights per quantization block (a power of two).")
@click.option("--lm-head", is_flag=True, help="onnx int4, int8-weight: quantize the LM head too.")
@click.option("--optimize", type=click.Choice(["basic", "extended"]),
              help="onnx: apply ONNX Runtime's offline graph optimisations at this level.")
@click.option("--prune-ffn", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="onnx: remove this share of every feed-forward block's neurons (least "
              "important on the calibration text) before export, e.g. 0.25.")
@click.option("--min-cosine", type=click.FloatRange(0, 1), default=0.99, show_default=True,
              help="onnx --profile: quality floor for encoders (mean cosine to fp32).")
@click.option("--no-keep-reference", is_flag=True,
              help="onnx: delete the fp32 export (OUT.fp32, the quality reference) after "
                   "measurement [default: keep it beside OUT].")
@click.option("--no-fingerprint", is_flag=True,
              help="Do not write the artifact's behavioural fingerprint "
                   "(ARTIFACT.behaviour.json, which `edgeward sign` signs with it).")
@json_option
def run(src: Path, qtype: str | None, profile: str | None, out_path: Path | None, plan: bool,
        candidates: str | None, context: int | None, headroom: float, max_kld: float | None,
        target_size: str | None, imatrix_path: Path | None, prune_layers: int | None,
        output_type: str | None, embedding_type: str | None, overrides: tuple[str, ...],
        pure: bool, eval_text: Path | None, calibration_text: Path | None, eval_tokens: int,
        eval_ctx: int, no_eval: bool, no_cache: bool, threads: int | None, force: bool,
        fmt: str | None, block_size: int, lm_head: bool, optimize: str | None,
        prune_ffn: float | None, min_cosine: float, no_keep_reference: bool,
        no_fingerprint: bool, as_json: bool) -> None:
    """Quantize SRC (a GGUF model, or a Hugging Face checkpoint directory, converted first
    with llama.cpp's converter) with llama.cpp and measure the result; with `--format onnx`,
    export SRC to ONNX and quantize it with ONNX Runtime.

    \b
    GGUF types: F16 BF16 Q8_0 Q6_K Q5_K_M Q5_K_S Q5_1 Q5_0 Q4_K_M Q4_K_S Q4_1 Q4_0 IQ4_XS IQ4_NL
           Q3_K_L Q3_K_M Q3_K_S IQ3_M IQ3_S IQ3_XS Q2_K; with --imatrix also IQ3_XXS Q2_K_S
           IQ2_M IQ2_S IQ2_XS IQ2_XXS IQ1_M IQ1_S.
    ONNX types: fp32 int8-dynamic int8-static int8-weight int4 fp16 (docs/compression.md).
    """
    from edgeward.compress import (
        CompressOptions,
        CompressRequest,
        EvalConfig,
        QuantRecipe,
        compress,
        default_cache_dir,
    )
    from edgeward.hardware_profiles import resolve_profile

    options = CompressOptions(
        eval_text=eval_text, evaluate=not no_eval,
        eval=EvalConfig(n_ctx=eval_ctx, eval_tokens=eval_tokens, threads=threads),
        threads=threads, cache_dir=None if no_cache else default_cache_dir(), force=force)
    parsed = tuple(_parse_override(o) for o in overrides)
    recipe = None
    if parsed or pure or output_type or embedding_type:
        recipe = QuantRecipe(type="Q8_0", output_type=output_type,
                             embedding_type=embedding_type, overrides=parsed, pure=pure)
    onnx = None
    onnx_flags = bool(lm_head or optimize or prune_ffn or no_keep_reference or block_size != 32)
    if fmt == "onnx" or (fmt is None and (onnx_flags or (src.is_dir()
                                                         and not _causal_lm_dir(src)))):
        from edgeward._cli._compress_onnx import onnx_options

        onnx = onnx_options(calibration_text, eval_text, qtype, prune_ffn,
                            evaluate=not no_eval, block_size=block_size, lm_head=lm_head,
                            optimize=optimize, keep_reference=not no_keep_reference)
    request = CompressRequest(
        source=src, out=out_path, format=fmt, profile=resolve_profile(profile) if profile
        else None, type=qtype, candidates=_candidate_types(candidates), recipe=recipe,
        prune_layers=prune_layers, imatrix=imatrix_path, calibration_text=calibration_text,
        context=context, headroom=headroom, max_kld=max_kld,
        target_size=parse_size(target_size) if target_size else None, min_cosine=min_cosine,
        options=options, onnx=onnx, plan_only=plan)
    with _reporter(as_json) as reporter:
        result = compress(request, reporter=reporter)
    payload = result.to_dict()
    if result.artifact is not None and not no_fingerprint:
        from edgeward._cli.behaviour import fingerprint_built

        payload.update(fingerprint_built(result.artifact, as_json))
    emit(as_json, payload, lambda: _print_result(result))


def _causal_lm_dir(src: Path) -> bool:
    from edgeward.compress import backends

    return backends()["gguf"].accepts(src)


def _print_result(result: Any) -> None:
    """What was made (each format has its own facts), then the plan table (one for all)."""
    if result.report is not None:
        if result.format == "onnx":
            from edgeward._cli._compress_onnx import print_onnx_report

            print_onnx_report(result.report)
        else:
            _print_report(result.report)
    if result.plan is not None:
        _print_plan(result)


@compress.command("imatrix")
@click.argument("src", type=click.Path(path_type=Path))
@click.option("--out", "out_path", type=click.Path(path_type=Path, dir_okay=False),
              required=True, help="Where to write the matrix (GGUF imatrix format).")
@click.option("--calibration-text", type=click.Path(path_type=Path, dir_okay=False),
              help="Calibration text [default: built-in pydoc topics, calibration part]. "
                   "Never use the evaluation text.")
@click.option("--tokens", type=click.IntRange(64), default=8192, show_default=True,
              help="Calibration token budget.")
@click.option("--ctx", type=click.IntRange(16), default=512, show_default=True,
              help="Tokens per chunk.")
@click.option("--force", is_flag=True, help="Replace an existing file.")
@json_option
def imatrix(src: Path, out_path: Path, calibration_text: Path | None, tokens: int, ctx: int,
            force: bool, as_json: bool) -> None:
    """Compute an importance matrix for SRC from a calibration text (needs torch)."""
    from edgeward.compress import make_imatrix

    with _reporter(as_json) as reporter:
        result = make_imatrix(src, out_path, calibration=calibration_text, n_ctx=ctx,
                              max_tokens=tokens, force=force, reporter=reporter)
    emit(as_json, result, lambda: out.print(
        f"importance matrix for {result['tensors']} tensors written to {result['imatrix']} "
        f"({result['seconds']} s, calibration: {result['calibration_text']})"))


@compress.command("prune-scores")
@click.argument("src", type=click.Path(path_type=Path))
@click.option("--k", "k", type=click.IntRange(1), default=1, show_default=True,
              help="How many blocks to propose for pruning.")
@click.option("--calibration-text", type=click.Path(path_type=Path, dir_okay=False),
              help="Calibration text [default: built-in, calibration part].")
@json_option
def prune_scores(src: Path, k: int, calibration_text: Path | None, as_json: bool) -> None:
    """Score each block's influence (ShortGPT) and propose the K to prune (needs torch)."""
    from edgeward.compress import prune_plan

    with _reporter(as_json) as reporter:
        result = prune_plan(src, k, calibration=calibration_text, reporter=reporter)

    def human() -> None:
        table = Table(title="Block influence (1 - cos(in, out))", box=box.SIMPLE_HEAD)
        table.add_column("block", justify="right")
        table.add_column("influence", justify="right")
        table.add_column("")
        for i, s in enumerate(result["scores"]):
            table.add_row(str(i), f"{s:.4f}", "prune" if i in result["prune_layers"] else "")
        out.print(table)

    emit(as_json, result, human)


def _parse_override(text: str) -> tuple[str, str]:
    pattern, sep, ggml_type = text.rpartition("=")
    if not sep or not pattern or not ggml_type:
        raise ConfigError(f"--override {text!r} must look like REGEX=TYPE, e.g. ffn_down=Q6_K")
    return pattern, ggml_type


def _candidate_types(text: str | None) -> tuple[str, ...] | None:
    """The ``--candidates`` list (None: the profile's defaults; ``all``: every GGUF type
    that is not F32/BF16)."""
    if not text:
        return None
    if text.strip().lower() == "all":
        from edgeward.compress import QUANT_TYPES

        return tuple(k for k in QUANT_TYPES if k not in ("F32", "BF16"))
    return tuple(t.strip() for t in text.split(",") if t.strip())


def _print_plan(result: Any) -> None:
    """The candidates table of any format's plan, its choice and warnings, and the chart."""
    from edgeward.compress import ChartPoint, render_text

    head, rows = result.plan_summary(), result.rows()
    gpu = head["backend"] != "cpu"
    budget = f"budget {(head['budget_bytes'] or 0) / 2**20:,.0f} MiB"
    if gpu:
        budget = (f"{head['backend']}, GPU {budget}" + (
            f", host {head['host_budget_bytes'] / 2**20:,.0f} MiB"
            if head["host_budget_bytes"] is not None else ""))
    at = f" at {head['context']} tokens" if head["context"] else ""
    task = f", {head['task']}" if head["task"] else ""
    table = Table(title=f"Candidates for {head['profile']}{at}{task} ({budget})",
                  title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)

    def has(key: str) -> bool:
        return any(r[key] is not None for r in rows)

    # short headers: the table must read at 80 columns
    columns = [("type", True), ("MiB", True), ("bpw", has("bpw")),
               ("of fp32", has("of_reference")), ("mem MiB", True), ("fits", True),
               ("GPU", gpu and has("gpu_layers")), ("tok/s*", has("tokens_per_s")),
               ("KLD", has("kld")), ("top-1", has("top1")), ("quality", has("quality"))]
    shown = [c for c, on in columns if on]
    for col in shown:
        table.add_column(col, justify="left" if col in ("type", "fits", "quality") else "right",
                         no_wrap=True)
    for r in rows:
        cells = {
            "type": r["type"] + (" ◀" if r["chosen"] else ""),
            "MiB": f"{r['size_bytes'] / 2**20:.1f}",
            "bpw": "-" if r["bpw"] is None else f"{r['bpw']:.2f}",
            "of fp32": "-" if r["of_reference"] is None else f"{r['of_reference']:.2f}",
            "mem MiB": "-" if r["memory_bytes"] is None else f"{r['memory_bytes'] / 2**20:,.0f}",
            "fits": "yes" if r["fits"] else "NO",
            "GPU": "-" if r["gpu_layers"] is None else f"{r['gpu_layers']}/{r['n_layer']}",
            "tok/s*": "-" if r["tokens_per_s"] is None else f"{r['tokens_per_s']:,.0f}",
            "KLD": ("-" if r["kld"] is None else f"{r['kld']:.4f}") + ("ᶜ" if r["cached"] else ""),
            "top-1": "-" if r["top1"] is None else f"{r['top1']:.1%}",
            "quality": r["quality"] or "-",
        }
        table.add_row(*(cells[c] for c in shown))
    out.print(table)
    notes = ["mem: predicted memory at the context"]
    if "KLD" in shown:
        notes.append("KLD: mean KLD against the reference")
    if "GPU" in shown:
        notes.append("GPU: blocks offloaded")
    if "tok/s*" in shown:
        kinds = {r["estimate"] for r in rows}
        notes.append("* tok/s: an estimate (" + (
            "memory and compute roofline" if kinds == {"roofline"} else
            "bandwidth bound, an upper limit") + ", docs/compression.md)")
    if any(r["cached"] for r in rows):
        notes.append("ᶜ measured before (cache)")
    out.print("; ".join(notes), style="dim")
    if gpu:
        out.print(f"needs a build with the {head['backend']} backend (docs/install.md)",
                  style="dim")
    out.print(f"choice: {head['choice'] or 'none'} — {head['reason']}")
    if head["reference"]:
        out.print(f"quality reference: {head['reference']}", style="dim")
    for w in head["warnings"]:
        err.print(f"[yellow]warning:[/yellow] {w}")
    points = [ChartPoint(r["type"], r["size_bytes"], r["kld"], r["fits"], r["chosen"])
              for r in rows if r["kld"] is not None]
    if points:
        out.print(render_text(points), markup=False)


def _print_report(d: dict[str, Any]) -> None:
    """What a GGUF compression wrote."""
    from edgeward.compress import output_paths

    q = d["quality"]
    table = Table(title=f"{Path(d['artifact']).name}", title_justify="left", show_header=False,
                  box=box.SIMPLE)
    table.add_column("", style="bold")
    table.add_column("")
    table.add_row("type", d["recipe"]["type"] + (" (chosen for " + d["memory"]["profile"] + ")"
                                                 if d["plan"] else ""))
    conv = (d.get("source") or {}).get("conversion")
    if conv:
        table.add_row("source", f"{conv['source']} (Hugging Face, {conv['architecture']}), "
                      f"converted to {conv['outtype'].upper()} by llama.cpp's converter"
                      + (" (cached)" if conv.get("reused") else ""))
    table.add_row("size", f"{d['size_bytes'] / 2**20:.1f} MiB, {d['bpw']:.2f} bits/weight")
    table.add_row("fallbacks", f"{len(d['fallback_tensors'])} tensor(s)")
    if q:
        table.add_row("reference", d.get("reference") or "-")
        table.add_row("perplexity", f"{q['ppl']:.3f} (reference {q['ppl_ref']:.3f})")
        table.add_row("KLD", f"mean {q['kld_mean']:.4f}, p99 {q['kld_p99']:.4f}")
        table.add_row("top-1 agreement", f"{q['top1_agreement']:.1%} over {q['eval_tokens']} "
                      "tokens")
    m = d["memory"]
    table.add_row("memory", f"{m['predicted']['total'] / 2**20:.0f} MiB at {m['context']} tokens"
                  + (f" — {'fits' if m['fits'] else 'does NOT fit'} {m['profile']}"
                     if m["profile"] else ""))
    table.add_row("time", f"{d['timings']['total_s']:.1f} s")
    paths = output_paths(Path(d["artifact"]))
    table.add_row("written", ", ".join(str(p) for k, p in paths.items()
                                       if k != "chart" or d["plan"]))
    out.print(table)
