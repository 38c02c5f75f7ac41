"""Snapshot tests of the main screens at 80×24 (SVG goldens in __snapshots__/; regenerate
with `pytest tests/tui --snapshot-update` after a deliberate change and look at them).

The world is fixed (paths relative to it, a fixed clock, a fixed "local" profile, fixed
keys; no periodic refresh), so a difference is a change in what the screen shows."""

from __future__ import annotations

import time
from typing import Any

import pytest
from _tui_helpers import World
from textual.pilot import Pilot
from textual.widgets import DataTable, Select

from edgeward.tui import EdgewardApp

pytest.importorskip("pytest_textual_snapshot", reason="pytest-textual-snapshot not installed")


async def _settle(pilot: Pilot[Any], selector: str, rows: int, first: str | None = None) -> None:
    end = time.monotonic() + 30
    while time.monotonic() < end:
        await pilot.pause(0.05)
        table = pilot.app.query_one(selector, DataTable)
        if table.row_count >= rows and (first is None or table.get_row_at(0)[0] == first):
            break
    while any(w.is_running for w in pilot.app.workers):
        await pilot.pause(0.05)
    await pilot.pause(0.2)


def test_models_screen(world: World, snap_compare: Any) -> None:
    async def ready(pilot: Pilot[Any]) -> None:
        await _settle(pilot, "#models-table", 2)

    assert snap_compare(EdgewardApp(world.ctx(refresh_s=600)), run_before=ready,
                        terminal_size=(80, 24))


def test_profiles_screen_with_a_comparison(world: World, snap_compare: Any) -> None:
    async def ready(pilot: Pilot[Any]) -> None:
        await _settle(pilot, "#profiles-table", 2, first="local")  # detected
        pilot.app.query_one("#compare-a", Select).value = "local"
        pilot.app.query_one("#compare-b", Select).value = "raspberry-pi-5-8gb"
        await pilot.pause(0.2)

    assert snap_compare(EdgewardApp(world.ctx(refresh_s=600), initial="profiles"),
                        run_before=ready,
                        terminal_size=(80, 24))


def test_fleet_screen(world: World, snap_compare: Any) -> None:
    async def ready(pilot: Pilot[Any]) -> None:
        await _settle(pilot, "#devices-table", 3)

    assert snap_compare(EdgewardApp(world.ctx(refresh_s=600), initial="fleet"),
                        run_before=ready, terminal_size=(80, 24))
