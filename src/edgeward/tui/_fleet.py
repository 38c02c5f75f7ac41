"""The Fleet screen: every device with its state, running artifact, health sparklines, its
behaviour check (``check``: OUTLIER, drift, canary, ok, ...) and alerts, refreshed from the
fleet store (which the fleet manager fills from MQTT); safety decisions by category;
rollouts. Enter opens a device: its provenance and whether it verified, health history, its
behavioural check and canaries, transitions and events."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Label, Sparkline, Static

from edgeward.errors import EdgewardError
from edgeward.tui._data import FleetSnapshot, age, device_detail, fleet_snapshot, sparkline

__all__ = ["DeviceScreen", "FleetPane"]


def _short(digest: str | None) -> str:
    return digest[:12] if digest else "-"


def _when(t: Any) -> str:
    """A device time (Unix seconds) or an RFC 3339 string as ``MM-DD HH:MM:SS`` UTC."""
    if isinstance(t, int | float):
        return datetime.fromtimestamp(t, UTC).strftime("%m-%d %H:%M:%S")
    return str(t or "")[5:19].replace("T", " ")


def _behaviour_lines(h: dict[str, Any]) -> str:
    """The latest health's behavioural check and canaries, for the device screen."""
    text = ""
    b, c = h.get("behaviour"), h.get("canaries")
    if b:
        text += (f"\nbehaviour {b.get('status')}: distance {b.get('distance', '-')} "
                 f"(threshold {b.get('threshold', '-')}), top-1 agreement "
                 f"{b.get('top1_agreement', '-')}, {b.get('checks', 0)} checks")
    if c:
        rates = ", ".join(f"{k} {v:.2f}" for k, v in dict(c.get("rates") or {}).items())
        text += f"\ncanaries {c.get('status')}: {rates or '-'}"
    return text


class FleetPane(Vertical):
    """Devices, alerts and safety counts; refreshed by the app's timer (data down)."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("r", "refresh", "Refresh")]

    class Snapshot(Message):
        """A fresh read of the fleet store (posted from the worker thread)."""

        def __init__(self, snapshot: FleetSnapshot | None, error: str | None = None) -> None:
            self.snapshot, self.error = snapshot, error
            super().__init__()

    class Open(Message):
        """The user opened a device (Enter)."""

        def __init__(self, device_id: str) -> None:
            self.device_id = device_id
            super().__init__()

    def compose(self) -> ComposeResult:
        yield Label("Fleet: waiting for the first read…", id="fleet-status")
        table: DataTable[str] = DataTable(id="devices-table", cursor_type="row",
                                          zebra_stripes=True)
        # Fixed widths (fit 80 columns): the layout must not depend on whether the first
        # read arrived before the table was first drawn.
        for label, width in (("device", 12), ("state", 7), ("artifact", 12), ("seen", 4),
                             ("cpu %", 6), ("tok/s", 9), ("check", 7), ("alerts", 6)):
            table.add_column(label, width=width)
        yield table
        yield Static("", id="fleet-safety")
        alerts: DataTable[str] = DataTable(id="alerts-table", cursor_type="none")
        for label, width in (("time", 8), ("device", 12), ("kind", 12), ("detail", 36)):
            alerts.add_column(label, width=width)
        yield alerts

    def action_refresh(self) -> None:
        """Read the fleet store now."""
        self.refresh_fleet()

    def refresh_fleet(self) -> None:
        """Read the store in a worker (the app's timer calls this)."""
        if self.app.ctx.fleet_config is None:  # type: ignore[attr-defined]
            self.query_one("#fleet-status", Label).update(
                "No fleet configured: start `edgeward tui --fleet-config FLEET.toml`.")
            return
        self._read()

    @work(thread=True, exclusive=True, group="fleet")
    def _read(self) -> None:
        ctx = self.app.ctx  # type: ignore[attr-defined]
        try:
            with ctx.open_store() as store:
                snap = fleet_snapshot(store, clock=ctx.clock)
        except EdgewardError as e:
            self.post_message(self.Snapshot(None, str(e)))
            return
        self.post_message(self.Snapshot(snap))

    @on(Snapshot)
    def _show(self, message: Snapshot) -> None:
        status = self.query_one("#fleet-status", Label)
        if message.snapshot is None:
            status.update(f"Cannot read the fleet store: {message.error}")
            return
        snap = message.snapshot
        now = snap.taken_at
        table = self.query_one("#devices-table", DataTable)
        cursor = table.cursor_row
        table.clear()
        for d in snap.devices:
            tps = [v for v in d.tokens_per_s if v is not None]
            table.add_row(d.device_id, d.state, _short(d.artifact_digest),
                          age(d.last_seen, now), sparkline(d.cpu, 6),
                          (f"{tps[-1]:.0f} " if tps else "") + sparkline(d.tokens_per_s, 6),
                          d.behaviour, str(d.alerts) if d.alerts else "", key=d.device_id)
        if snap.devices:
            table.move_cursor(row=min(cursor, len(snap.devices) - 1))
        online = sum(1 for d in snap.devices if d.state == "online")
        unlike = sum(1 for d in snap.devices if d.behaviour in ("OUTLIER", "drift", "canary"))
        rolling = [r for r in snap.rollouts if r["state"] not in ("done", "halted")]
        status.update(f"{len(snap.devices)} devices, {online} online, {len(snap.alerts)} "
                      f"alerts" + (f", {unlike} not behaving as signed" if unlike else "")
                      + (f", rollout {rolling[0]['name']} wave {rolling[0]['wave']}"
                         if rolling else ""))
        safety = ", ".join(f"{k} {v}" for k, v in snap.safety.items()) or "none"
        self.query_one("#fleet-safety", Static).update(f"Safety decisions: {safety}")
        alerts = self.query_one("#alerts-table", DataTable)
        alerts.clear()
        for a in snap.alerts[:20]:
            alerts.add_row(str(a["time"])[11:19], a["device_id"], a["kind"], a["detail"])

    @on(DataTable.RowSelected, "#devices-table")
    def _open(self, event: DataTable.RowSelected) -> None:
        self.post_message(self.Open(str(event.row_key.value)))


class DeviceScreen(Screen[None]):
    """One device in detail (Escape goes back)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back"), Binding("r", "reload", "Refresh")]

    def __init__(self, device_id: str) -> None:
        super().__init__()
        self.device_id = device_id

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="device-view"):
            yield Label(f"Device {self.device_id}", id="device-title")
            yield Static("Reading…", id="device-summary")
            with Horizontal(classes="sparks"):
                yield Label("cpu %  ")
                yield Sparkline([], id="spark-cpu")
            with Horizontal(classes="sparks"):
                yield Label("tok/s  ")
                yield Sparkline([], id="spark-tps")
            yield Static("", id="device-provenance")
            events: DataTable[str] = DataTable(id="device-events", cursor_type="none")
            events.add_columns("time", "what", "detail")
            yield events
        yield Footer()

    def on_mount(self) -> None:
        self.action_reload()

    def action_reload(self) -> None:
        """Read the device again."""
        self._read()

    @work(thread=True, exclusive=True, group="device")
    def _read(self) -> None:
        ctx = self.app.ctx  # type: ignore[attr-defined]
        try:
            with ctx.open_store() as store:
                detail = device_detail(store, self.device_id)
        except EdgewardError as e:
            self.app.call_from_thread(self._show, None, str(e))
            return
        self.app.call_from_thread(self._show, detail, None)

    def _show(self, d: dict[str, Any] | None, error: str | None) -> None:
        summary = self.query_one("#device-summary", Static)
        if d is None:
            summary.update(error or f"{self.device_id} is not enrolled in this fleet.")
            return
        latest = d["health"][-1] if d["health"] else {}
        summary.update(
            f"state {d['state']}   last seen {d['last_seen'] or 'never'}   slot "
            f"{d.get('slot') or '-'}\nartifact {d['artifact_digest'] or '-'}\n"
            f"latest health: cpu {latest.get('cpu_percent', '-')}%, "
            f"{latest.get('decode_tokens_per_s') or '-'} tok/s, queue "
            f"{latest.get('queue_depth', '-')}, safety {latest.get('safety') or '-'}"
            + _behaviour_lines(latest))
        self.query_one("#spark-cpu", Sparkline).data = [
            float(h["cpu_percent"] or 0) for h in d["health"]]
        self.query_one("#spark-tps", Sparkline).data = [
            float(h["decode_tokens_per_s"] or 0) for h in d["health"]]
        prov = d["provenance"]
        if prov is None:
            text = "Provenance: no report yet."
        else:
            verified = prov.get("statement_verified")
            verdict = ("VERIFIED against the fleet's trust store" if verified
                       else "NOT verified" if verified is False else "not checked")
            text = (f"Provenance: {verdict}; publisher {prov.get('publisher_key_id') or '-'}; "
                    f"artifact {prov.get('artifact_digest') or '-'}")
            if prov.get("artifact_digest") and d["artifact_digest"] and \
                    prov["artifact_digest"] != d["artifact_digest"]:
                text += "\n(the running artifact has changed since this report)"
        self.query_one("#device-provenance", Static).update(text)
        events = self.query_one("#device-events", DataTable)
        events.clear()
        rows = [(t.get("device_time"), f"state {t.get('state')}", "") for t in d["transitions"]]
        rows += [(e.get("device_time"), e.get("event"), str(e.get("data") or "")[:60])
                 for e in d["events"]]
        rows += [(a.get("time"), f"alert {a['kind']}", a["detail"]) for a in d["alerts"]]
        for t, what, detail in sorted(rows, key=lambda r: _when(r[0]), reverse=True)[:20]:
            events.add_row(_when(t), str(what), detail)
