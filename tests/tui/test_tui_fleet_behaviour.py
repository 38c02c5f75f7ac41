"""The Fleet screen shows each device's behavioural check and counts the behaviour alerts:
three devices on the same digest, one of which drifted while its peers did not."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _tui_helpers import T0, World
from textual.pilot import Pilot
from textual.widgets import DataTable, Label, Static

from edgeward.fleet import open_store
from edgeward.fleet._alerts import AlertEngine, AlertRules
from edgeward.fleet._store import Accepted
from edgeward.fleet.protocol import HealthReport, HealthSample
from edgeward.tui import EdgewardApp
from edgeward.tui._data import behaviour_indicator, fleet_snapshot
from edgeward.tui._fleet import DeviceScreen

DIGEST = "ab" * 32
EXPECTED = {"benign": 0.0, "harmful": 0.83, "injection": 0.75, "jailbreak": 0.67}


def _report(device: str, seq: int, status: str, distance: float,
            harmful: float = 0.83) -> Accepted:
    metrics = HealthSample(
        uptime_s=4000.0, cpu_percent=20.0, decode_tokens_per_s=25.0, artifact_digest=DIGEST,
        slot="a", behaviour={"status": status, "distance": distance, "threshold": 2e-4,
                             "top1_agreement": 1.0 if status == "ok" else 0.97, "checks": 2,
                             "checked_at": "2025-06-15T14:40:00Z",
                             "probe_set": "edgeward-probes/1"},
        canaries={"status": "ok", "checked_at": "2025-06-15T14:40:00Z",
                  "rates": EXPECTED | {"harmful": harmful}, "expected": EXPECTED})
    return Accepted(HealthReport(device_id=device, seq=seq, time=T0 - 5, metrics=metrics),
                    b"", T0 - 5)


def _drift(root: Path) -> None:
    """pi-02 drifts (and is an outlier); nuc-01's canaries leave the fleet's rates."""
    engine = AlertEngine(AlertRules())
    with open_store(str(root / "fleet.db")) as store:
        # each device is compared when it reports, with the peers heard from so far
        batch = [_report("pi-01", 30, "ok", 0.0), _report("nuc-01", 30, "ok", 0.0, 0.1),
                 _report("pi-02", 30, "drift", 0.06), _report("nuc-01", 31, "ok", 0.0, 0.1)]
        for a in batch:
            outcome = store.write([a], manager="test", now=T0 - 5)
            for alert in engine.observe(outcome.new):
                store.add_alert(alert, manager="test")


def _until(pilot: Pilot[Any], pred: Callable[[], bool], what: str) -> Any:
    async def wait() -> None:
        end = time.monotonic() + 30
        while time.monotonic() < end:
            await pilot.pause(0.05)
            if pred():
                return
        raise AssertionError(f"timed out waiting for {what}")
    return wait()


def _cells(app: EdgewardApp, selector: str) -> list[list[str]]:
    table = app.screen.query_one(selector, DataTable)
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


def test_the_snapshot_marks_the_outlier(world: World) -> None:
    _drift(world.root)
    with open_store(str(world.root / "fleet.db")) as store:
        snap = fleet_snapshot(store, clock=lambda: T0)
    marks = {d.device_id: d.behaviour for d in snap.devices}
    assert marks == {"pi-01": "ok", "pi-02": "OUTLIER", "nuc-01": "canary"}
    assert behaviour_indicator(None) == "-"


def test_fleet_screen_shows_the_check_and_counts_behaviour_alerts(world: World) -> None:
    _drift(world.root)
    app = EdgewardApp(world.ctx(), initial="fleet")

    async def script(pilot: Pilot[Any]) -> None:
        await _until(pilot, lambda: app.query_one("#devices-table", DataTable).row_count == 3,
                     "the devices")
        rows = {r[0]: r for r in _cells(app, "#devices-table")}
        assert [rows[d][6] for d in ("pi-01", "pi-02", "nuc-01")] == ["ok", "OUTLIER", "canary"]
        assert rows["pi-02"][7] == "3"  # lost, behaviour, behaviour_outlier
        assert rows["nuc-01"][7] == "1"  # canary_outlier
        status = str(app.query_one("#fleet-status", Label).render())
        assert "3 devices, 2 online, 4 alerts, 2 not behaving as signed" in status
        kinds = {(r[1], r[2]) for r in _cells(app, "#alerts-table")}
        assert {("pi-02", "behaviour"), ("pi-02", "behaviour_outlier"),
                ("nuc-01", "canary_outlier")} <= kinds
        table = app.query_one("#devices-table", DataTable)
        table.focus()
        table.move_cursor(row=[r[0] for r in _cells(app, "#devices-table")].index("pi-02"))
        await pilot.press("enter")
        await _until(pilot, lambda: isinstance(app.screen, DeviceScreen), "the device")
        await _until(pilot, lambda: "behaviour" in str(
            app.screen.query_one("#device-summary", Static).render()), "its check")
        summary = str(app.screen.query_one("#device-summary", Static).render())
        assert "behaviour drift: distance 0.06 (threshold 0.0002)" in summary
        assert "canaries ok: benign 0.00, harmful 0.83" in summary

    async def main() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await script(pilot)
    asyncio.run(main())
