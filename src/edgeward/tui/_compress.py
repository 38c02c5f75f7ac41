"""The Compress screen: a source model and a profile → the plan table (size, predicted memory,
fits, predicted tokens/s, measured quality) → compress with live progress → the report with a
size-against-KLD chart → sign.

The work runs in a thread worker calling compression's front door
(:func:`edgeward.compress.compress`, GGUF or ONNX by the model's format); its progress comes
back as messages, so the screen never freezes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Button, DataTable, Label, ProgressBar, Select, Static

from edgeward.errors import EdgewardError
from edgeward.hardware_profiles import HardwareProfile, catalog
from edgeward.tui._data import ModelEntry, human_bytes

__all__ = ["CompressPane", "unique_output"]


def unique_output(directory: Path, stem: str, suffix: str) -> Path:
    """``directory/stem{suffix}``, or ``stem-2{suffix}``… when taken (never overwrites)."""
    candidate = directory / f"{stem}{suffix}"
    n = 2
    while candidate.exists():
        candidate = directory / f"{stem}-{n}{suffix}"
        n += 1
    return candidate


def chart_text(rows: list[dict[str, Any]], width: int = 44, height: int = 6) -> str:
    """The size-against-KLD chart of the measured rows (plain text, no colour needed)."""
    from edgeward.compress import ChartPoint, render_text

    points = [ChartPoint(r["type"], r["size_bytes"], r["kld"], r["fits"], r["chosen"])
              for r in rows if r["kld"] is not None]
    if not points:
        return "(no KLD measured: nothing to chart)"
    return render_text(points, width=width, height=height)


class CompressPane(Vertical):
    """Pick a model and a profile, plan, compress, sign."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("p", "plan", "Plan"), Binding("c", "compress", "Compress"),
        Binding("s", "sign", "Sign")]

    class Progress(Message):
        """A step of the running job (posted from the worker thread)."""

        def __init__(self, text: str, done: int | None = None,
                     total: int | None = None) -> None:
            self.text, self.done, self.total = text, done, total
            super().__init__()

    class Finished(Message):
        """The job is done: plan rows, and the report of an installed artifact (if any)."""

        def __init__(self, rows: list[dict[str, Any]], reason: str,
                     report: dict[str, Any] | None, artifact: Path | None) -> None:
            self.rows, self.reason, self.report, self.artifact = rows, reason, report, artifact
            super().__init__()

    class Failed(Message):
        """The job failed with a message for the user."""

        def __init__(self, error: str) -> None:
            self.error = error
            super().__init__()

    class Signed(Message):
        """An artifact was signed (the app rescans the models)."""

        def __init__(self, artifact: Path, envelope: Path) -> None:
            self.artifact, self.envelope = artifact, envelope
            super().__init__()

    def __init__(self, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.models: list[ModelEntry] = []
        self.profiles: list[HardwareProfile] = list(catalog())
        self.artifact: Path | None = None
        self.busy = False

    def compose(self) -> ComposeResult:
        with Horizontal(id="compress-pick"):
            yield Select([], prompt="model", id="compress-model")
            yield Select([(p.name, p.name) for p in self.profiles], prompt="profile",
                         id="compress-profile")
        with Horizontal(id="compress-buttons"):
            yield Button("Plan (p)", id="plan")
            yield Button("Compress (c)", id="compress", variant="primary")
            yield Button("Sign (s)", id="sign", disabled=True)
            yield ProgressBar(id="compress-progress", show_eta=False)
        yield Label("Choose a model and a profile, then Plan or Compress.", id="compress-step")
        table: DataTable[str] = DataTable(id="plan-table", cursor_type="row")
        table.add_columns("type", "size", "memory", "fits", "tok/s", "quality", "")
        yield table
        with VerticalScroll(id="compress-result"):
            yield Static("", id="compress-report")

    # --- data down ---------------------------------------------------------------------

    def set_models(self, entries: list[ModelEntry]) -> None:
        """Offer the source models (GGUF, ONNX, Hugging Face directories)."""
        self.models = entries
        sel = self.query_one("#compress-model", Select)
        value = sel.value
        sel.set_options([(f"{e.name} ({e.format})", str(e.path)) for e in entries])
        if value is not Select.NULL and any(str(e.path) == value for e in entries):
            sel.value = value

    def set_profiles(self, profiles: list[HardwareProfile]) -> None:
        """Offer these profiles (the detected local one first)."""
        self.profiles = profiles
        sel = self.query_one("#compress-profile", Select)
        value = sel.value
        sel.set_options([(p.name, p.name) for p in profiles])
        if value is not Select.NULL:
            sel.value = value

    def choose_model(self, entry: ModelEntry) -> None:
        """Select ``entry`` as the model to compress."""
        self.query_one("#compress-model", Select).value = str(entry.path)

    # --- actions -------------------------------------------------------------------------

    def _selection(self) -> tuple[ModelEntry, HardwareProfile] | None:
        m = self.query_one("#compress-model", Select).value
        p = self.query_one("#compress-profile", Select).value
        entry = next((e for e in self.models if str(e.path) == m), None)
        profile = next((x for x in self.profiles if x.name == p), None)
        if entry is None or profile is None:
            self.notify("Choose a model and a profile first.", severity="warning")
            return None
        return entry, profile

    def _start(self, text: str) -> bool:
        if self.busy:
            self.notify("A compression is already running.", severity="warning")
            return False
        self.busy = True
        self.query_one("#compress-step", Label).update(text)
        self.query_one("#compress-progress", ProgressBar).update(total=None, progress=0)
        for b in ("#plan", "#compress", "#sign"):
            self.query_one(b, Button).disabled = True
        return True

    @on(Button.Pressed, "#plan")
    def action_plan(self) -> None:
        """Measure every candidate for the profile; install nothing."""
        sel = self._selection()
        if sel and self._start(f"Planning {sel[0].name} for {sel[1].name}…"):
            self._job(sel[0], sel[1], install=False)

    @on(Button.Pressed, "#compress")
    def action_compress(self) -> None:
        """Plan, then install the chosen candidate with its report and card."""
        sel = self._selection()
        if sel and self._start(f"Compressing {sel[0].name} for {sel[1].name}…"):
            self._job(sel[0], sel[1], install=True)

    @on(Button.Pressed, "#sign")
    def action_sign(self) -> None:
        """Sign the artifact just made with the publisher's key."""
        ctx = self.app.ctx  # type: ignore[attr-defined]
        if self.artifact is None:
            self.notify("Compress something first.", severity="warning")
        elif ctx.signing_key is None:
            self.notify("No signing key: start `edgeward tui --signing-key KEY`.",
                        severity="error")
        elif not self.busy:
            self._sign(self.artifact, ctx.signing_key)

    # --- workers -------------------------------------------------------------------------

    def _reporter(self) -> Any:
        from edgeward.compress import Reporter

        pane = self

        class _PostingReporter(Reporter):
            def step(self, text: str) -> None:
                pane.post_message(CompressPane.Progress(text))

            def progress(self, label: str, done: int, total: int) -> None:
                pane.post_message(CompressPane.Progress(label, done, total))

            def warn(self, text: str) -> None:
                pane.post_message(CompressPane.Progress(f"warning: {text}"))

        return _PostingReporter()

    @work(thread=True, exclusive=True, group="compress")
    def _job(self, entry: ModelEntry, profile: HardwareProfile, *, install: bool) -> None:
        from edgeward.compress import (
            CompressOptions,
            CompressRequest,
            OnnxOptions,
            backends,
            compress,
            default_cache_dir,
            default_calibration_texts,
        )

        ctx = self.app.ctx  # type: ignore[attr-defined]
        try:
            # the backend follows the source: a causal-LM Hugging Face checkpoint goes to GGUF
            gguf = entry.format == "gguf" or backends()["gguf"].accepts(entry.path)
            out = None
            if install:
                stem = f"{entry.path.stem if gguf else entry.path.name}-{profile.name}"
                out = unique_output(ctx.output_dir, stem if gguf else f"{stem}-onnx",
                                    ".gguf" if gguf else "")
            request = CompressRequest(
                source=entry.path, out=out, format="gguf" if gguf else "onnx",
                profile=profile, plan_only=not install,
                candidates=tuple(ctx.candidates) if gguf and ctx.candidates else None,
                options=ctx.compress_options or CompressOptions(cache_dir=default_cache_dir()),
                # int8-static among the candidates calibrates on the built-in text, as the
                # CLI does
                onnx=None if gguf else OnnxOptions(
                    calibration_texts=default_calibration_texts()))
            result = compress(request, reporter=self._reporter())
            self.post_message(self.Finished(result.rows(), result.reason, result.report,
                                            result.artifact))
        except EdgewardError as e:
            self.post_message(self.Failed(str(e)))

    @work(thread=True, exclusive=True, group="compress")
    def _sign(self, artifact: Path, key_path: Path) -> None:
        from edgeward.provenance import (
            build_statement,
            load_private_key,
            read_report,
            sign_artifact,
        )

        try:
            self.post_message(self.Progress(f"signing {artifact.name}"))
            statement = build_statement(artifact, report=read_report(artifact))
            signed = sign_artifact(artifact, load_private_key(key_path), statement=statement)
        except EdgewardError as e:
            self.post_message(self.Failed(str(e)))
            return
        self.post_message(self.Signed(artifact, signed.envelope_path))

    # --- messages from the workers -------------------------------------------------------

    @on(Progress)
    def _progress(self, message: Progress) -> None:
        bar = self.query_one("#compress-progress", ProgressBar)
        if message.total:
            bar.update(total=message.total, progress=message.done or 0)
            self.query_one("#compress-step", Label).update(
                f"{message.text}: {message.done}/{message.total}")
        else:
            bar.update(total=None)
            self.query_one("#compress-step", Label).update(message.text)

    def _idle(self) -> None:
        self.busy = False
        for b in ("#plan", "#compress"):
            self.query_one(b, Button).disabled = False
        self.query_one("#sign", Button).disabled = self.artifact is None
        bar = self.query_one("#compress-progress", ProgressBar)
        bar.update(total=1, progress=1)

    @on(Finished)
    def _finished(self, message: Finished) -> None:
        table = self.query_one("#plan-table", DataTable)
        table.clear()
        for r in message.rows:
            quality = r["quality"] or ("-" if r["kld"] is None else f"KLD {r['kld']:.4f}")
            tps = r["tokens_per_s"]
            table.add_row(r["type"], human_bytes(r["size_bytes"]),
                          human_bytes(r["memory_bytes"]), "yes" if r["fits"] else "NO",
                          "-" if tps is None else f"{tps:.0f}", quality,
                          "chosen" if r["chosen"] else "")
        lines = [f"Choice: {message.reason}"]
        if message.report is not None and message.artifact is not None:
            self.artifact = message.artifact
            size = message.report.get("size_bytes")
            lines.append(f"Wrote {message.artifact} ({human_bytes(size)}). "
                         "Press s to sign it.")
        lines.append(chart_text(message.rows))
        self.query_one("#compress-report", Static).update("\n".join(lines))
        self.query_one("#compress-step", Label).update(
            "Compressed." if message.report is not None else "Planned (nothing written).")
        self._idle()

    @on(Failed)
    def _failed(self, message: Failed) -> None:
        self.query_one("#compress-step", Label).update(f"Failed: {message.error}")
        self.notify(message.error, title="Compression failed", severity="error")
        self._idle()

    @on(Signed)
    def _signed(self, message: Signed) -> None:
        self.query_one("#compress-step", Label).update(
            f"Signed {message.artifact.name} → {message.envelope.name}")
        self._idle()
