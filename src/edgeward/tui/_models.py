"""The Models screen: source models and artifacts on disk, with format, size, quantization,
signature state and the quality figures of their reports."""

from __future__ import annotations

from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Static

from edgeward.tui._data import ModelEntry, human_bytes, scan_models

__all__ = ["ModelsPane"]


class ModelsPane(Vertical):
    """The models table; Enter posts :class:`ModelsPane.Chosen` up to the app."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("r", "rescan", "Rescan")]

    class Loaded(Message):
        """The scan finished (the app hands the list to the other screens)."""

        def __init__(self, entries: list[ModelEntry]) -> None:
            self.entries = entries
            super().__init__()

    class Chosen(Message):
        """The user picked a model (Enter)."""

        def __init__(self, entry: ModelEntry) -> None:
            self.entry = entry
            super().__init__()

    def __init__(self, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.entries: list[ModelEntry] = []

    def compose(self) -> ComposeResult:
        table: DataTable[str] = DataTable(id="models-table", cursor_type="row", zebra_stripes=True)
        table.add_columns("model", "kind", "size", "type", "signature", "quality")
        yield table
        yield Static("Scanning…", id="model-detail", classes="detail")

    def on_mount(self) -> None:
        self.action_rescan()

    def action_rescan(self) -> None:
        """Scan the model directories again (in a worker: verification reads every byte)."""
        self.query_one("#model-detail", Static).update("Scanning and verifying…")
        self._scan()

    @work(thread=True, exclusive=True, group="models")
    def _scan(self) -> None:
        ctx = self.app.ctx  # type: ignore[attr-defined]
        entries = scan_models(ctx.model_dirs, trust_store=ctx.trust_store,
                              sources=ctx.sources())
        self.app.call_from_thread(self.show, entries)

    def show(self, entries: list[ModelEntry]) -> None:
        """Fill the table (data down) and tell the app (message up)."""
        self.entries = entries
        table = self.query_one("#models-table", DataTable)
        table.clear()
        for i, e in enumerate(entries):
            sig = "verified" if e.signature == "verified" else e.signature.split(":")[0]
            table.add_row(e.name, e.role, human_bytes(e.size_bytes),
                          f"{e.format} {e.quantization or ''}".strip(), sig, e.quality_text,
                          key=str(i))
        where = ", ".join(str(d) for d in self.app.ctx.model_dirs)  # type: ignore[attr-defined]
        detail = self.query_one("#model-detail", Static)
        if entries:  # the highlighted row's detail, whatever order the events come in
            detail.update(self._detail(entries[min(table.cursor_row, len(entries) - 1)]))
        else:
            detail.update(f"No GGUF files or ONNX directories in {where}.")
        self.post_message(self.Loaded(entries))

    @staticmethod
    def _detail(e: ModelEntry) -> str:
        lines = [f"{e.path}", f"signature: {e.signature}"
                 + (f" (publisher {e.publisher})" if e.publisher else "")]
        if e.quality:
            lines.append("quality: " + e.quality_text)
        return "\n".join(lines)

    def _entry(self, row_key: object) -> ModelEntry | None:
        try:
            return self.entries[int(str(getattr(row_key, "value", row_key)))]
        except (ValueError, IndexError):
            return None

    @on(DataTable.RowHighlighted, "#models-table")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        e = self._entry(event.row_key)
        if e is not None:
            self.query_one("#model-detail", Static).update(self._detail(e))

    @on(DataTable.RowSelected, "#models-table")
    def _selected(self, event: DataTable.RowSelected) -> None:
        e = self._entry(event.row_key)
        if e is not None:
            self.post_message(self.Chosen(e))
