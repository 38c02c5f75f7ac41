"""The Profiles screen: the catalog and the detected local machine, and a side-by-side
comparison of two profiles."""

from __future__ import annotations

from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import DataTable, Label, Select

from edgeward.hardware_profiles import HardwareProfile, catalog
from edgeward.tui._data import compare_profiles, human_bytes

__all__ = ["ProfilesPane"]


class ProfilesPane(Vertical):
    """Profiles table and comparison. Posts :class:`ProfilesPane.Loaded` once the local
    machine is detected, so the other screens can offer it."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("a", "compare_a", "Compare as A"),
                Binding("b", "compare_b", "Compare as B")]

    class Loaded(Message):
        """Every profile, the detected local one first."""

        def __init__(self, profiles: list[HardwareProfile]) -> None:
            self.profiles = profiles
            super().__init__()

    def __init__(self, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.profiles: list[HardwareProfile] = list(catalog())

    def compose(self) -> ComposeResult:
        table: DataTable[str] = DataTable(id="profiles-table", cursor_type="row",
                                          zebra_stripes=True)
        table.add_columns("profile", "backend", "memory", "GB/s", "runtime", "context")
        yield table
        options = [(p.name, p.name) for p in self.profiles]
        with Horizontal(id="compare-pick"):
            yield Label("Compare")
            yield Select(options, prompt="profile A", id="compare-a")
            yield Select(options, prompt="profile B", id="compare-b")
        compare: DataTable[str] = DataTable(id="compare-table", cursor_type="none")
        compare.add_columns("field", "A", "B", "")
        yield compare

    def on_mount(self) -> None:
        self._fill()
        self._detect()

    @work(thread=True, exclusive=True, group="detect")
    def _detect(self) -> None:
        local = self.app.ctx.detect()  # type: ignore[attr-defined]
        self.app.call_from_thread(self._add_local, local)

    def _add_local(self, local: HardwareProfile) -> None:
        self.profiles = [local, *[p for p in self.profiles if p.name != local.name]]
        self._fill()
        options = [(p.name + (" (this machine)" if p is local else ""), p.name)
                   for p in self.profiles]
        for sel in self.query(Select):
            value = sel.value
            sel.set_options(options)
            if value is not Select.NULL:
                sel.value = value
        self.post_message(self.Loaded(self.profiles))

    def _fill(self) -> None:
        table = self.query_one("#profiles-table", DataTable)
        table.clear()
        for p in self.profiles:
            table.add_row(p.name, p.backend, human_bytes(p.memory_bytes),
                          f"{p.bandwidth_gbps:g}", p.preferred_runtime,
                          str(p.default_context), key=p.name)

    def _highlighted_name(self) -> str | None:
        table = self.query_one("#profiles-table", DataTable)
        if table.row_count == 0:
            return None
        return str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)

    def action_compare_a(self) -> None:
        """Put the highlighted profile in the comparison's A column."""
        if name := self._highlighted_name():
            self.query_one("#compare-a", Select).value = name

    def action_compare_b(self) -> None:
        """Put the highlighted profile in the comparison's B column."""
        if name := self._highlighted_name():
            self.query_one("#compare-b", Select).value = name

    @on(Select.Changed, "#compare-a, #compare-b")
    def _compare(self) -> None:
        a, b = (self.query_one(f"#compare-{x}", Select).value for x in "ab")
        table = self.query_one("#compare-table", DataTable)
        table.clear()
        by_name = {p.name: p for p in self.profiles}
        if a not in by_name or b not in by_name:
            return
        for field_name, va, vb, differ in compare_profiles(by_name[str(a)], by_name[str(b)]):
            table.add_row(field_name, va, vb, "≠" if differ else "")
