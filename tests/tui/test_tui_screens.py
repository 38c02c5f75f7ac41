"""Each TUI screen's main flow, driven with Textual's pilot against real files, keys, a real
fleet store, the real compression pipeline (a tiny GGUF) and a real Mosquitto."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from _tui_helpers import World
from textual.css.query import NoMatches
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Label, RichLog, Select, Static

from edgeward.compress import CompressOptions, EvalConfig
from edgeward.provenance import TrustStore, verify_artifact
from edgeward.tui import EdgewardApp
from edgeward.tui._compress import CompressPane
from edgeward.tui._flash import FlashPane
from edgeward.tui._fleet import DeviceScreen
from edgeward.tui._help import HelpScreen
from edgeward.tui._models import ModelsPane

Script = Callable[[Pilot[Any]], Awaitable[None]]


def drive(app: EdgewardApp, script: Script, size: tuple[int, int] = (80, 24)) -> None:
    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            await script(pilot)
    asyncio.run(main())


async def until(pilot: Pilot[Any], pred: Callable[[], bool], timeout: float = 30.0,
                what: str = "condition") -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        await pilot.pause(0.05)
        if pred():
            return
    raise AssertionError(f"timed out waiting for {what}")


def cells(app: EdgewardApp, selector: str) -> list[list[str]]:
    table = app.screen.query_one(selector, DataTable)
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


def log_text(app: EdgewardApp) -> str:
    return "\n".join(line.text for line in app.query_one("#flash-log", RichLog).lines)


def text(app: EdgewardApp, selector: str) -> str:
    try:
        w = app.screen.query_one(selector)
    except NoMatches:
        return ""
    return str(w.render()) if isinstance(w, Label | Static) else ""


def test_models_lists_verifies_and_catches_tampering(world: World) -> None:
    app = EdgewardApp(world.ctx())

    async def script(pilot: Pilot[Any]) -> None:
        await until(pilot, lambda: app.query_one("#models-table", DataTable).row_count == 2,
                    what="the scan")
        rows = {r[0]: r for r in cells(app, "#models-table")}
        assert rows["tiny-signed.gguf"][4] == "verified"
        assert rows["tiny-signed.gguf"][3] == "gguf Q8_0"
        assert "KLD 0.0123" in rows["tiny-signed.gguf"][5]
        assert rows["tiny-unsigned.gguf"][4] == "unsigned"
        # a byte changed on disk: the rescan says so
        signed = world.models / "tiny-signed.gguf"
        data = bytearray(signed.read_bytes())
        data[-10] ^= 0xFF
        signed.write_bytes(bytes(data))
        await pilot.press("r")
        await until(pilot, lambda: any(r[4] == "INVALID" for r in cells(app, "#models-table")),
                    what="the tampered artifact to show INVALID")
        # Enter picks the highlighted model for Compress and Flash
        table = app.query_one("#models-table", DataTable)
        table.focus()
        table.move_cursor(row=1)
        await pilot.press("enter")
        await pilot.pause(0.2)
        assert app.query_one("#compress-model", Select).value == str(
            world.models / "tiny-unsigned.gguf")
        assert app.query_one("#flash-artifact", Select).value == str(
            world.models / "tiny-unsigned.gguf")

    drive(app, script)


def test_profiles_show_the_local_machine_and_compare_two(world: World) -> None:
    app = EdgewardApp(world.ctx(), initial="profiles")

    async def script(pilot: Pilot[Any]) -> None:
        await until(pilot, lambda: cells(app, "#profiles-table")[0][0] == "local",
                    what="the detected profile")
        table = app.query_one("#profiles-table", DataTable)
        table.focus()
        await pilot.press("a")
        names = [r[0] for r in cells(app, "#profiles-table")]
        table.move_cursor(row=names.index("raspberry-pi-5-8gb"))
        await pilot.press("b")
        await pilot.pause(0.2)
        compare = {r[0]: r for r in cells(app, "#compare-table")}
        assert compare["memory_bytes"][1:] == ["16.0 GiB", "8.0 GiB", "≠"]
        assert compare["backend"][1:] == ["cpu", "cpu", ""]
        assert "neon" in compare["cpu_features"][2]

    drive(app, script)


def test_compress_plans_compresses_charts_and_signs(world: World) -> None:
    options = CompressOptions(eval=EvalConfig(n_ctx=128, eval_tokens=256, top_k=64))
    app = EdgewardApp(world.ctx(compress_options=options, candidates=("Q8_0", "Q4_0")),
                      initial="compress")

    async def script(pilot: Pilot[Any]) -> None:
        pane = app.query_one(CompressPane)
        await until(pilot, lambda: len(pane.models) == 2, what="the models")
        app.query_one("#compress-model", Select).value = str(world.models / "tiny-unsigned.gguf")
        app.query_one("#compress-profile", Select).value = "raspberry-pi-5-8gb"
        await pilot.pause()
        pane.action_compress()
        assert "Compressing" in text(app, "#compress-step")
        await until(pilot, lambda: not pane.busy, timeout=120, what="the compression")
        assert text(app, "#compress-step") == "Compressed.", text(app, "#compress-step")
        rows = cells(app, "#plan-table")
        assert [r[0] for r in rows] == ["Q8_0", "Q4_0"]
        assert sum(r[6] == "chosen" for r in rows) == 1 and all(r[3] == "yes" for r in rows)
        assert all(r[5].startswith("KLD ") for r in rows)
        artifact = world.models / "tiny-unsigned-raspberry-pi-5-8gb.gguf"
        assert pane.artifact == artifact and artifact.is_file()
        report = json.loads(artifact.with_name(artifact.name + ".report.json").read_text())
        chosen = next(r[0] for r in rows if r[6] == "chosen")
        assert report["type"] == chosen
        assert "mean KLD (log)" in text(app, "#compress-report")  # the chart
        await pilot.press("s")
        await until(pilot, lambda: not pane.busy and "Signed" in text(app, "#compress-step"),
                    what="signing")
        envelope = artifact.with_name(artifact.name + ".edgeward.json")
        verify_artifact(artifact, envelope.read_bytes(), TrustStore.open(world.trust))
        # the models screen picked the new, verified artifact up
        await until(pilot, lambda: any(r[0] == artifact.name and r[4] == "verified"
                                       for r in cells(app, "#models-table")),
                    what="the rescan")

    drive(app, script, size=(100, 40))


def test_compress_plans_an_onnx_encoder(world: World, minilm_onnx: Path) -> None:
    app = EdgewardApp(world.ctx(sources=lambda: [minilm_onnx]), initial="compress")

    async def script(pilot: Pilot[Any]) -> None:
        pane = app.query_one(CompressPane)
        await until(pilot, lambda: any(e.format == "onnx" for e in pane.models),
                    what="the models")
        app.query_one("#compress-model", Select).value = str(minilm_onnx)
        app.query_one("#compress-profile", Select).value = "raspberry-pi-5-8gb"
        await pilot.pause()
        pane.action_plan()
        await until(pilot, lambda: not pane.busy, timeout=240, what="the plan")
        assert text(app, "#compress-step") == "Planned (nothing written).", \
            text(app, "#compress-step")
        rows = {r[0]: r for r in cells(app, "#plan-table")}
        assert list(rows) == ["fp32", "int8-dynamic", "int8-static", "int4"]
        assert all(rows[k][5].startswith("cos ") for k in rows if k != "fp32")
        assert sum(r[6] == "chosen" for r in rows.values()) == 1
        assert pane.artifact is None

    drive(app, script, size=(100, 40))


def test_compress_says_what_is_missing(world: World) -> None:
    app = EdgewardApp(world.ctx(signing_key=None), initial="compress")

    async def script(pilot: Pilot[Any]) -> None:
        pane = app.query_one(CompressPane)
        pane.action_compress()  # nothing chosen
        pane.action_sign()  # nothing made
        await pilot.pause(0.2)
        messages = [n.message for n in app._notifications]
        assert "Choose a model and a profile first." in messages
        assert "Compress something first." in messages
        assert not pane.busy

    drive(app, script)


def test_flash_exports_an_air_gap_bundle_and_refuses_a_bad_artifact(world: World) -> None:
    app = EdgewardApp(world.ctx(), initial="flash")
    out = world.root / "usb" / "bundle"
    out.parent.mkdir()

    async def script(pilot: Pilot[Any]) -> None:
        await until(pilot, lambda: app.query_one("#flash-artifact", Select)._options[1:]
                    != [], what="the artifacts")
        app.query_one("#flash-artifact", Select).value = str(world.models / "tiny-signed.gguf")
        app.query_one("#flash-kind", Select).value = "bundle"
        await pilot.pause()
        assert "directory" in app.query_one("#flash-where", Input).placeholder
        app.query_one("#flash-where", Input).value = str(out)
        await pilot.click("#flash-go")
        await until(pilot, lambda: "bundle written" in text(app, "#flash-status"),
                    what="the bundle")
        manifest = json.loads((out / "MANIFEST.json").read_text())
        assert manifest["artifact"] == "tiny-signed.gguf"
        # tampered on disk: the rescan marks it INVALID and Flash refuses it
        signed = world.models / "tiny-signed.gguf"
        data = bytearray(signed.read_bytes())
        data[-10] ^= 0xFF
        signed.write_bytes(bytes(data))
        app.query_one(ModelsPane).action_rescan()
        pane = app.query_one(FlashPane)
        await until(pilot, lambda: any(e.signature.startswith("INVALID")
                                       for e in pane.artifacts), what="the rescan")
        app.query_one("#flash-artifact", Select).value = str(signed)
        app.query_one("#flash-where", Input).value = str(out.with_name("again"))
        pane.action_flash()
        await pilot.pause(0.2)
        assert any("does not verify" in n.message for n in app._notifications)
        assert not out.with_name("again").exists() and not pane.busy

    drive(app, script, size=(100, 30))


def test_flash_deploys_to_a_device_over_mqtt(world: World, tmp_path: Path) -> None:
    from edgeward.fleet import BrokerSpec, MosquittoBroker, open_store
    from edgeward.fleet._broker import find_mosquitto

    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto); CI installs it")
    with MosquittoBroker(BrokerSpec(directory=tmp_path / "broker")) as broker:
        world.fleet_config.write_text(f'broker = "{broker.url}"\nstore = "fleet.db"\n'
                                      f'trust_store = "trust"\n')
        app = EdgewardApp(world.ctx(operator_key=world.key,
                                    artifacts_dir=world.root / "artifacts"), initial="flash")

        async def script(pilot: Pilot[Any]) -> None:
            await until(pilot, lambda: len(app.query_one("#flash-artifact", Select)
                                           ._options) > 1, what="the artifacts")
            app.query_one("#flash-artifact", Select).value = str(
                world.models / "tiny-signed.gguf")
            app.query_one("#flash-where", Input).value = "pi-01"
            await pilot.press("ctrl+f")
            await until(pilot, lambda: "sent to pi-01" in log_text(app), what="the deploy")
            # the device's events come from the store as they arrive
            await until(pilot, lambda: "pi-01: update.committed" in log_text(app),
                        what="events")

        drive(app, script, size=(100, 30))
        with open_store(str(world.root / "fleet.db")) as store:
            (cmd,) = store.commands("pi-01", limit=5)
        assert cmd["action"] == "deploy"
        assert (world.root / "artifacts").is_dir()


def test_flash_shows_a_halted_rollout_and_its_rollbacks(world: World) -> None:
    app = EdgewardApp(world.ctx(), initial="flash")

    async def script(pilot: Pilot[Any]) -> None:
        pane = app.query_one(FlashPane)
        pane._watch = ("rollout", "smol-abababab")  # as after starting one
        await until(pilot, lambda: "HALTED" in text(app, "#flash-status"),
                    what="the rollout to show")
        rows = {r[0]: r for r in cells(app, "#rollout-table")}
        assert rows["pi-02"][2] == "rolled_back" and rows["nuc-01"][2] == "failed"
        assert rows["pi-01"][1:3] == ["1", "committed"]
        assert "2 of 2 devices failed" in text(app, "#flash-status")

    drive(app, script, size=(100, 30))


def test_fleet_shows_devices_safety_alerts_and_device_provenance(world: World) -> None:
    app = EdgewardApp(world.ctx(), initial="fleet")

    async def script(pilot: Pilot[Any]) -> None:
        await until(pilot, lambda: app.query_one("#devices-table", DataTable).row_count == 3,
                    what="the devices")
        rows = {r[0]: r for r in cells(app, "#devices-table")}
        assert rows["pi-02"][1] == "offline" and rows["pi-01"][1] == "online"
        assert rows["pi-01"][2] == "abababababab" and rows["pi-01"][3] == "20s"
        assert len(rows["pi-01"][4]) == 6  # cpu sparkline of the last 6 reports
        assert rows["pi-01"][5] == "29 ▁▂▄▅▇█"  # latest tok/s, then its last 6 as a sparkline
        assert rows["pi-01"][6] == "-"  # no behavioural check reported
        assert rows["pi-02"][7] == "1"  # one alert
        assert "3 devices, 2 online, 1 alerts" in text(app, "#fleet-status")
        assert text(app, "#fleet-safety") == "Safety decisions: S1 3, allow 240"
        assert cells(app, "#alerts-table")[0][1:3] == ["pi-02", "lost"]
        table = app.query_one("#devices-table", DataTable)
        table.focus()
        names = [r[0] for r in cells(app, "#devices-table")]
        for device, verdict in (("pi-01", "VERIFIED"), ("nuc-01", "NOT verified")):
            table.move_cursor(row=names.index(device))
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, DeviceScreen), what="detail")
            await until(pilot, lambda: "Provenance" in text(app, "#device-provenance"),
                        what="provenance")
            assert verdict in text(app, "#device-provenance")
            assert any("update.committed" in r[1] for r in cells(app, "#device-events"))
            await pilot.press("escape")
            await until(pilot, lambda: not isinstance(app.screen, DeviceScreen), what="back")

    drive(app, script, size=(100, 30))


def test_fleet_without_a_config_says_how_to_get_one(world: World) -> None:
    app = EdgewardApp(world.ctx(fleet_config=None), initial="fleet")

    async def script(pilot: Pilot[Any]) -> None:
        await pilot.pause(0.2)
        assert "--fleet-config" in text(app, "#fleet-status")

    drive(app, script)


def test_keys_help_and_command_palette(world: World) -> None:
    app = EdgewardApp(world.ctx())

    async def script(pilot: Pilot[Any]) -> None:
        for key, tab in zip("54321", ("fleet", "flash", "compress", "profiles", "models"),
                            strict=True):
            await pilot.press(key)
            assert app.query_one("#tabs").active == tab  # type: ignore[attr-defined]
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)
        await pilot.press("ctrl+p")
        await pilot.pause(0.2)
        await pilot.press(*"Go to Fleet")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await until(pilot, lambda: app.query_one("#tabs").active == "fleet",  # type: ignore[attr-defined]
                    what="the palette command")

    drive(app, script)
