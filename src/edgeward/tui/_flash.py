"""The Flash screen: an artifact → a device, a group (staged rollout), or an air-gap bundle in
a directory; live progress of the transfer and the rollout, halts and rollbacks as they happen.

Deploys and rollouts go through :class:`edgeward.fleet._operator.Operator` (the same code as
``edgeward fleet deploy|rollout``); bundles through
:func:`edgeward.device_agents.export_bundle`. Progress is read back from the fleet store (the
device's events, the rollout document), which the running fleet manager fills from MQTT.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Button, DataTable, Input, Label, RichLog, Select

from edgeward.errors import ConfigError, EdgewardError
from edgeward.fleet import summarize
from edgeward.tui._data import ModelEntry

__all__ = ["FlashPane"]

# target -> (label, what the input asks for)
_TARGETS = {"device": ("Device (signed deploy over MQTT)", "device id, e.g. pi-07"),
            "group": ("Group (staged rollout)", "device group, e.g. lab (see `fleet group set`)"),
            "bundle": ("Air-gap bundle (a directory)", "a new directory, e.g. /media/usb/b1")}


class FlashPane(Vertical):
    """Choose an artifact and a target; flash; watch."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+f", "flash", "Flash"), Binding("x", "stop", "Stop rollout")]

    class Update(Message):
        """Progress from a worker: a log line and/or a rollout document."""

        def __init__(self, line: str | None = None, rollout: dict[str, Any] | None = None,
                     done: bool = False) -> None:
            self.line, self.rollout, self.done = line, rollout, done
            super().__init__()

    def __init__(self, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.artifacts: list[ModelEntry] = []
        self.busy = False
        self._stop = threading.Event()
        self._watch: tuple[str, str] | None = None  # ("device", id) or ("rollout", name)
        self._seen_events: set[tuple[Any, ...]] = set()

    def compose(self) -> ComposeResult:
        yield Select([], prompt="artifact", id="flash-artifact")
        with Horizontal(id="flash-target"):
            yield Select([(label, key) for key, (label, _) in _TARGETS.items()],
                         value="device", allow_blank=False, id="flash-kind")
            yield Input(placeholder=_TARGETS["device"][1], id="flash-where")
        yield Button("Flash (ctrl+f)", id="flash-go", variant="primary")
        yield Label("Choose an artifact and a target.", id="flash-status")
        table: DataTable[str] = DataTable(id="rollout-table", cursor_type="none")
        table.add_columns("device", "wave", "status", "attempts")
        yield table
        yield RichLog(id="flash-log", wrap=True, max_lines=500)

    # --- data down ---------------------------------------------------------------------

    def set_models(self, entries: list[ModelEntry]) -> None:
        """Offer the artifacts (compressed models; single files or ONNX directories)."""
        self.artifacts = [e for e in entries if e.role == "artifact"]
        sel = self.query_one("#flash-artifact", Select)
        value = sel.value
        sel.set_options([(f"{e.name} — {e.signature.split(':')[0]}", str(e.path))
                         for e in self.artifacts])
        if value is not Select.NULL and any(str(e.path) == value for e in self.artifacts):
            sel.value = value

    def choose_model(self, entry: ModelEntry) -> None:
        """Select ``entry`` as the artifact to flash (artifacts only)."""
        if entry.role == "artifact":
            self.query_one("#flash-artifact", Select).value = str(entry.path)

    def target(self) -> str:
        """``device``, ``group`` or ``bundle``."""
        return str(self.query_one("#flash-kind", Select).value)

    @on(Select.Changed, "#flash-kind")
    def _kind(self) -> None:
        self.query_one("#flash-where", Input).placeholder = _TARGETS[self.target()][1]

    # --- flash ---------------------------------------------------------------------------

    @on(Button.Pressed, "#flash-go")
    @on(Input.Submitted, "#flash-where")
    def action_flash(self) -> None:
        """Start the flash the form describes."""
        value = self.query_one("#flash-artifact", Select).value
        artifact = next((e for e in self.artifacts if str(e.path) == value), None)
        where = self.query_one("#flash-where", Input).value.strip()
        if artifact is None:
            self.notify("Choose an artifact.", severity="warning")
            return
        if not where:
            self.notify(f"Give the {self.target()}.", severity="warning")
            return
        if self.busy:
            self.notify("A flash is already running.", severity="warning")
            return
        if artifact.signature.startswith("INVALID"):
            self.notify(f"{artifact.name} does not verify: {artifact.signature}",
                        severity="error")
            return
        self.busy = True
        self._stop.clear()
        self._seen_events.clear()
        self.query_one("#rollout-table", DataTable).clear()
        self.query_one("#flash-log", RichLog).clear()
        self._run(self.target(), artifact.path, where)

    def action_stop(self) -> None:
        """Stop driving the rollout (its state stays in the store; resume from the CLI)."""
        if self.busy:
            self._stop.set()

    @work(thread=True, exclusive=True, group="flash")
    def _run(self, target: str, artifact: Path, where: str) -> None:
        ctx = self.app.ctx  # type: ignore[attr-defined]
        say = self.post_message
        try:
            if target == "bundle":
                self._bundle(ctx, artifact, Path(where).expanduser())
            else:
                self._fleet(ctx, target, artifact, where)
        except EdgewardError as e:
            say(self.Update(f"failed: {e}", done=True))
            return
        except OSError as e:
            say(self.Update(f"failed: {e.strerror or e}", done=True))
            return

    def _bundle(self, ctx: Any, artifact: Path, out_dir: Path) -> None:
        from edgeward.device_agents import export_bundle

        if ctx.trust_store is None:
            raise ConfigError("a bundle carries the publisher's trust store: start "
                              "`edgeward tui --trust-store DIR`")
        self.post_message(self.Update(f"verifying {artifact.name} and writing the bundle"))
        manifest = export_bundle(artifact, out_dir, trust_store=ctx.trust_store)
        self.post_message(self.Update(
            f"bundle written to {out_dir}: {manifest['artifact']} and "
            f"{len(manifest['files']) - 1} more files; carry it to the device and run "
            "`edgeward bundle import`", done=True))

    def _fleet(self, ctx: Any, target: str, artifact: Path, where: str) -> None:
        from edgeward.fleet import Operator, parse_fraction, parse_stages
        from edgeward.provenance import load_private_key

        if ctx.operator_key is None or ctx.artifacts_dir is None:
            raise ConfigError("flashing needs the operator's key and the artifact server's "
                              "directory: start `edgeward tui --fleet-config F --operator-key "
                              "K --artifacts-dir D`")
        cfg = ctx.fleet(secrets=True)
        with Operator(cfg, load_private_key(ctx.operator_key)) as op, \
                ctx.open_store() as store:
            if target == "device":
                res = op.deploy(store, artifact, where, artifacts_dir=ctx.artifacts_dir)
                self._watch = ("device", where)
                self.post_message(self.Update(
                    f"deploy {res['command_id']} sent to {where} (sha256 "
                    f"{res['artifact_digest'][:12]}…); waiting for the device", done=True))
                return
            name = op.create_rollout(store, artifact, where, artifacts_dir=ctx.artifacts_dir,
                                     stages=parse_stages("5%,25%,100%"),
                                     max_failure=parse_fraction("2%", "max failure"))
            self._watch = ("rollout", name)
            self.post_message(self.Update(f"rollout {name} to group {where} started"))
            doc = op.run_rollout(store, name, poll_s=max(0.2, ctx.refresh_s / 2),
                                 should_stop=self._stop.is_set)
        self.post_message(self.Update(f"rollout {name}: {doc['state']}"
                                      + (f" ({doc['halt_reason']})" if doc.get("halt_reason")
                                         else ""), rollout=doc, done=True))

    # --- live progress -------------------------------------------------------------------

    def poll(self) -> None:
        """Read the watched device's events or rollout from the store (the app calls this on
        its refresh timer)."""
        if self._watch is not None:
            self._poll()

    @work(thread=True, exclusive=True, group="flash-poll")
    def _poll(self) -> None:
        assert self._watch is not None
        kind, name = self._watch
        ctx = self.app.ctx  # type: ignore[attr-defined]
        try:
            with ctx.open_store() as store:
                if kind == "rollout":
                    doc = store.get_doc("rollouts", name)
                    if doc is not None:
                        self.post_message(self.Update(rollout=doc))
                    return
                for ev in reversed(store.events(name, limit=20)):
                    key = (ev.get("seq"), ev.get("event"))
                    if key not in self._seen_events:
                        self._seen_events.add(key)
                        detail = ev.get("data") or ""
                        self.post_message(self.Update(
                            f"{name}: {ev.get('event')} {detail}"[:200]))
        except EdgewardError as e:
            self.post_message(self.Update(f"cannot read the fleet store: {e}"))

    @on(Update)
    def _update(self, message: Update) -> None:
        if message.line:
            self.query_one("#flash-log", RichLog).write(message.line)
            self.query_one("#flash-status", Label).update(message.line[:160])
        if message.rollout is not None:
            self._show_rollout(message.rollout)
        if message.done:
            self.busy = False

    def _show_rollout(self, doc: dict[str, Any]) -> None:
        table = self.query_one("#rollout-table", DataTable)
        table.clear()
        for device, st in sorted(doc.get("devices", {}).items(),
                                 key=lambda kv: (kv[1]["wave"], kv[0])):
            table.add_row(device, str(st["wave"] + 1), st["status"], str(st["attempts"]))
        s = summarize(doc)
        counts = ", ".join(f"{k} {v}" for k, v in sorted(s["devices"].items()))
        halt = f" — HALTED: {s['halt_reason']}" if s["state"] == "halted" else ""
        self.query_one("#flash-status", Label).update(
            f"rollout {s['name']}: {s['state']}, wave {s['wave']}/{len(s['waves'])} "
            f"({counts}){halt}")
