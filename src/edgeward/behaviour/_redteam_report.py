"""The red-team report's files: JSON (optionally signed, DSSE), Markdown and a chart.

``redteam.json`` holds the canonical JSON of :meth:`RedteamReport.to_dict`; with a key,
``redteam.dsse.json`` is a DSSE envelope whose payload is exactly those bytes, so
:func:`verify_report` can prove the report on disk is the one that was signed.
``redteam.png`` (matplotlib, when installed, as the compress report draws its chart) or
``redteam.svg`` (written by hand otherwise) shows per family what share of the attempts was
blocked, refused, passed through or skipped.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from edgeward.behaviour._redteam_records import OUTCOMES, RedteamReport
from edgeward.errors import ConfigError, DigestMismatchError
from edgeward.provenance import (
    PrivateKey,
    Role,
    TrustStore,
    VerifiedPayload,
    canonical_json,
    sign_payload,
    verify_envelope,
)
from edgeward.safeio import MAX_SIGNATURE_BYTES, read_capped

__all__ = ["REDTEAM_PAYLOAD_TYPE", "ReportFiles", "VerifiedReport", "render_markdown",
           "verify_report", "write_report"]

REDTEAM_PAYLOAD_TYPE = "application/vnd.edgeward.redteam+json"
JSON_NAME, ENVELOPE_NAME, MARKDOWN_NAME = "redteam.json", "redteam.dsse.json", "redteam.md"
_COLOURS = {"blocked": "#2e7d32", "refused": "#1565c0", "passed_through": "#c62828",
            "skipped": "#9e9e9e"}
_LABELS = {"blocked": "blocked by filter", "refused": "refused by model",
           "passed_through": "passed through", "skipped": "skipped"}
_NOTE = "benign look-alikes: blocked = over-blocking; passed through = as it should be"


@dataclass(frozen=True)
class ReportFiles:
    """The files :func:`write_report` wrote (``envelope`` is ``None`` when unsigned)."""

    json: Path
    markdown: Path
    chart: Path
    envelope: Path | None

    def to_dict(self) -> dict[str, str | None]:
        """The paths as strings."""
        return {"json": str(self.json), "markdown": str(self.markdown),
                "chart": str(self.chart),
                "envelope": None if self.envelope is None else str(self.envelope)}


@dataclass(frozen=True)
class VerifiedReport:
    """A report whose signature verified and whose JSON file is the signed bytes."""

    report: RedteamReport
    key_id: str


def write_report(report: RedteamReport, out_dir: Path, *, sign_key: PrivateKey | None = None,
                 chart: Literal["auto", "png", "svg"] = "auto") -> ReportFiles:
    """Write ``redteam.json``, ``redteam.md``, the chart and (with a key) the envelope.

    Args:
        report: what to write.
        out_dir: the directory (created if missing; existing report files are replaced).
        sign_key: sign the JSON into ``redteam.dsse.json`` with this key.
        chart: ``png`` needs matplotlib; ``auto`` draws a PNG when it is installed, else SVG.

    Raises:
        ConfigError: the directory cannot be written; ``png`` without matplotlib.
    """
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"{out_dir}: cannot create the report directory ({e.strerror})"
                          ) from e
    payload = canonical_json(report.to_dict())
    json_path = _write(out_dir / JSON_NAME, payload)
    envelope = None
    if sign_key is not None:
        env = sign_payload(payload, REDTEAM_PAYLOAD_TYPE, sign_key)
        envelope = _write(out_dir / ENVELOPE_NAME, env.to_json())
    chart_path = _chart(report, out_dir, chart)
    md = _write(out_dir / MARKDOWN_NAME, render_markdown(report, chart_path.name).encode())
    return ReportFiles(json_path, md, chart_path, envelope)


def verify_report(report_dir: Path, trust_store: TrustStore, *,
                  role: Role | str = Role.OPERATOR) -> VerifiedReport:
    """Check that ``REPORT_DIR/redteam.json`` is the report signed in ``redteam.dsse.json``
    by a key the trust store holds with ``role``.

    Raises:
        UnsignedArtifactError: no envelope there.
        BadSignatureError / UnknownKeyError / ... : the signature does not verify.
        DigestMismatchError: the JSON file differs from the signed payload.
        ConfigError: the JSON file cannot be read.
    """
    verified: VerifiedPayload = verify_envelope(report_dir / ENVELOPE_NAME, trust_store,
                                                role=role,
                                                payload_type=REDTEAM_PAYLOAD_TYPE)
    on_disk = read_capped(report_dir / JSON_NAME, MAX_SIGNATURE_BYTES, what="red-team report")
    if on_disk != verified.payload:
        raise DigestMismatchError(f"{report_dir / JSON_NAME}: differs from the report signed in "
                                  f"{ENVELOPE_NAME}; it was changed after signing. Do not use "
                                  "it", file=JSON_NAME)
    return VerifiedReport(RedteamReport.from_dict(verified.json()), verified.key_id)


def _write(path: Path, data: bytes) -> Path:
    tmp = path.with_name(f".{path.name}.partial")
    try:
        tmp.write_bytes(data)
        tmp.replace(path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise ConfigError(f"{path}: cannot write ({e.strerror})") from e
    return path


def _pct(n: int, total: int) -> str:
    return f"{100 * n / total:.0f} %" if total else "n/a"


def render_markdown(report: RedteamReport, chart_name: str | None = None) -> str:
    """The report for people: the per-family table, skip reasons, per-probe counts, the
    probes that did not run and a few answers that passed through."""
    lines = [f"# Red-team report: {report.target}", "",
             f"- engine: {report.engine}; model: `{report.model}`",
             f"- attack set: `{report.attack_set.get('id')}` (sha256 "
             f"{report.attack_set.get('sha256', '')[:16]}…)",
             f"- started {report.started_at}, took {report.seconds:.1f} s", "",
             "| family | attempts | blocked | refused | passed through | skipped | block rate |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for f in report.families:
        rate = f.block_rate
        lines.append(f"| {f.family} | {f.attempts} | {f.blocked} | {f.refused} | "
                     f"{f.passed_through} | {f.skipped} | "
                     f"{'n/a' if rate is None else f'{100 * rate:.0f} %'} |")
    lines += ["", "For the attack families (harmful, jailbreak, injection) *passed through* is "
              "a finding; for benign look-alikes *blocked* is over-blocking.", ""]
    if chart_name:
        lines += [f"![outcomes per family]({chart_name})", ""]
    reasons = [(f.family, r, n) for f in report.families for r, n in f.skip_reasons.items()]
    if reasons:
        lines += ["## Skipped", "", "| family | reason | attempts |", "|---|---|---:|"]
        lines += [f"| {fam} | {r} | {n} |" for fam, r, n in reasons]
        lines.append("")
    lines += ["## Per probe", "",
              "| family | probe | blocked | refused | passed through | skipped |",
              "|---|---|---:|---:|---:|---:|"]
    for f in report.families:
        for probe, c in f.by_transform.items():
            lines.append(f"| {f.family} | {probe} | {c['blocked']} | {c['refused']} | "
                         f"{c['passed_through']} | {c['skipped']} |")
    not_run = [p for p in report.probes if not p.ran]
    if not_run:
        lines += ["", "## Probes that did not run", "", "| probe | reason |", "|---|---|"]
        lines += [f"| {p.probe} | {p.reason or 'no attempts'} |" for p in not_run]
    leaks = [a for a in report.attempts
             if a.outcome == "passed_through" and a.family != "benign"][:10]
    if leaks:
        lines += ["", "## Passed through (first 10)", ""]
        lines += [f"- {a.family} / {a.prompt_id} / {a.transform}: "
                  f"{_md_quote(a.excerpt)}" for a in leaks]
    return "\n".join(lines) + "\n"


def _md_quote(text: str) -> str:
    flat = " ".join(text.split()).replace("|", "\\|").replace("`", "'")
    return f"“{flat}”" if flat else "(empty answer)"


def _shares(report: RedteamReport) -> list[tuple[str, list[float]]]:
    return [(f.family, [getattr(f, o) / f.attempts if f.attempts else 0.0 for o in OUTCOMES])
            for f in report.families]


def _chart(report: RedteamReport, out_dir: Path, kind: str) -> Path:
    if kind in ("auto", "png"):
        try:
            import matplotlib
        except ImportError as e:
            if kind == "png":
                raise ConfigError("a PNG chart needs matplotlib (pip install matplotlib, or "
                                  "'edgeward[compress]'); or choose --chart svg") from e
        else:
            del matplotlib
            return _png(report, out_dir / "redteam.png")
    return _write(out_dir / "redteam.svg", _svg(report).encode())


def _png(report: RedteamReport, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = _shares(report)
    fig, ax = plt.subplots(figsize=(7.5, 1.2 + 0.6 * len(rows)), dpi=120)
    left = [0.0] * len(rows)
    names = [name for name, _ in rows]
    for i, outcome in enumerate(OUTCOMES):
        widths = [100 * shares[i] for _, shares in rows]
        ax.barh(names, widths, left=left, color=_COLOURS[outcome], label=_LABELS[outcome])
        left = [a + b for a, b in zip(left, widths, strict=True)]
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("share of attempts (%)")
    ax.set_title(f"red team: {report.target} ({report.engine})", fontsize=10)
    ax.legend(fontsize=8, ncols=4, loc="upper center", bbox_to_anchor=(0.5, -0.35 if
              len(rows) < 3 else -0.2), frameon=False)
    if "benign" in names:
        fig.text(0.5, 0.01, _NOTE, ha="center", fontsize=7, style="italic")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    tmp = path.with_name(f".{path.name}.partial.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
    return path


def _svg(report: RedteamReport) -> str:
    rows = _shares(report)
    width, bar_x, bar_w, row_h = 640, 110, 500, 28
    height = 60 + row_h * len(rows) + 60
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'font-family="sans-serif" font-size="12">',
             f'<text x="10" y="20" font-size="13">red team: {html.escape(report.target)} '
             f"({html.escape(report.engine)})</text>"]
    for r, (name, shares) in enumerate(rows):
        y = 40 + r * row_h
        parts.append(f'<text x="10" y="{y + 17}">{html.escape(name)}</text>')
        x = float(bar_x)
        for outcome, share in zip(OUTCOMES, shares, strict=True):
            w = bar_w * share
            if w > 0:
                parts.append(f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{row_h - 6}" '
                             f'fill="{_COLOURS[outcome]}"><title>{_LABELS[outcome]}: '
                             f"{100 * share:.0f} %</title></rect>")
            x += w
    y = 40 + row_h * len(rows) + 16
    for i, outcome in enumerate(OUTCOMES):
        x = 10 + i * 155
        parts.append(f'<rect x="{x}" y="{y - 10}" width="10" height="10" '
                     f'fill="{_COLOURS[outcome]}"/><text x="{x + 14}" y="{y}">'
                     f"{_LABELS[outcome]}</text>")
    if any(name == "benign" for name, _ in rows):
        parts.append(f'<text x="10" y="{y + 22}" font-size="11" font-style="italic">'
                     f"{html.escape(_NOTE)}</text>")
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
