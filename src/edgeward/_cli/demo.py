"""``edgeward demo``: the whole mission on loopback, with progress and a summary table."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

import click

from edgeward._cli._output import emit, json_option, out

__all__ = ["demo"]


@click.command()
@click.option("--keep", is_flag=True,
              help="Leave the fleet running after the summary (for `edgeward tui`) until Ctrl-C.")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path),
              help="Where the deployment lives (new or empty) [default: a temporary "
                   "directory, removed at the end unless --keep].")
@click.option("--question", default=None, help="The benign question asked through the API.")
@click.option("--max-tokens", default=48, show_default=True, type=click.IntRange(1, 512),
              help="Most tokens in each reply.")
@click.option("--eval-tokens", default=1024, show_default=True,
              type=click.IntRange(128, 65536),
              help="Evaluation tokens each compression candidate is measured on.")
@json_option
def demo(keep: bool, workdir: Path | None, question: str | None, max_tokens: int,
         eval_tokens: int, as_json: bool) -> None:
    """Run the whole mission on this machine: an embedded broker, a fleet manager and three
    device agents (each its own process, each a different hardware profile); SmolLM2
    compressed per profile, signed and rolled out over MQTT; a benign answer, a blocked
    request and redacted PII through the OpenAI API; verified provenance; a tampered
    artifact refused. Needs Mosquitto installed; nothing else, no network."""
    from edgeward.demo import DEFAULT_QUESTION, DemoOptions, run_demo

    options = DemoOptions(workdir=workdir, keep=keep, question=question or DEFAULT_QUESTION,
                          max_tokens=max_tokens, eval_tokens=eval_tokens)
    stop, kept, interrupted = threading.Event(), threading.Event(), threading.Event()
    view = _Progress(quiet=as_json, interrupted=interrupted)
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if kept.is_set() and not stop.is_set():
            stop.set()  # --keep: leave the wait; the demo then shuts down as usual
            return
        # Unwinds through the demo's clean shutdown. Raised inside a ctypes callback (llama.cpp
        # logs through one while it quantizes) it would be swallowed, so the flag makes the
        # next progress report raise it again.
        interrupted.set()
        raise KeyboardInterrupt

    for s in previous:
        signal.signal(s, on_signal)
    try:
        result = run_demo(options, on_step=view.step, on_progress=view.progress,
                          on_detail=view.detail, on_kept=kept.set, should_stop=stop.is_set)
    finally:
        view.done()
        for s, handler in previous.items():
            signal.signal(s, handler)
    doc = result.to_dict()
    doc["workdir_removed"] = workdir is None and not keep
    emit(as_json, doc, lambda: _summary(doc))
    if doc["processes"]["strays"]:
        raise click.ClickException(f"processes left running: {doc['processes']['strays']}")


class _Progress:
    """Step lines with the time since the start, and a transient bar for long steps."""

    def __init__(self, *, quiet: bool, interrupted: threading.Event) -> None:
        self.quiet = quiet
        self.interrupted = interrupted
        self.t0 = time.monotonic()
        self.bar: Any = None
        self.task: Any = None
        self.label = ""

    def _clock(self) -> str:
        return f"[dim]{time.monotonic() - self.t0:6.1f}s[/dim]"

    def _check(self) -> None:
        """Re-raise a Ctrl-C that was swallowed (once)."""
        if self.interrupted.is_set():
            self.interrupted.clear()
            raise KeyboardInterrupt

    def step(self, text: str) -> None:
        self._check()
        self.done()
        if not self.quiet:
            out.print(f"{self._clock()} [bold]▶[/bold] {text}", soft_wrap=True)

    def detail(self, text: str) -> None:
        self._check()
        self.done()
        if not self.quiet:
            out.print(f"         {text}", soft_wrap=True, markup=False)

    def progress(self, label: str, done: int, total: int) -> None:
        self._check()
        if self.quiet or not out.is_terminal:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        if self.bar is None or label != self.label:
            self.done()
            self.bar = Progress(TextColumn("         {task.description}"), BarColumn(),
                                MofNCompleteColumn(), console=out, transient=True)
            self.bar.start()
            self.task = self.bar.add_task(label, total=total)
            self.label = label
        self.bar.update(self.task, completed=done, total=total)

    def done(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar, self.label = None, ""


def _mib(n: Any) -> str:
    return "-" if n is None else f"{n / 2**20:.0f}"


def _summary(doc: dict[str, Any]) -> None:
    from rich import box
    from rich.table import Table

    table = Table(title="edgeward demo: the fleet", title_justify="left", box=box.SIMPLE_HEAD,
                  pad_edge=False)
    for col, right in (("device", False), ("profile", False), ("recipe", False),
                       ("MiB", True), ("KLD", True), ("mem", True), ("state", False),
                       ("prov", False)):
        table.add_column(col, justify="right" if right else "left",
                         min_width=18 if col == "profile" else None,
                         overflow="fold" if col == "profile" else "ellipsis")
    for d in doc["devices"]:
        table.add_row(d["device_id"], d["profile"], d["type"], _mib(d["size_bytes"]),
                      "-" if d["kld_mean"] is None else f"{d['kld_mean']:.4f}",
                      _mib(d["predicted_memory_bytes"]), d["state"],
                      "ok" if d["provenance_verified"] and d["auditor_check"] else "FAIL")
    out.print(table)
    out.print("[dim]MiB: artifact size; KLD: mean KL divergence to the reference; mem: "
              "predicted memory (MiB) at the profile's context; prov: the signed provenance "
              "verifies for the bytes the device reports[/dim]", soft_wrap=True)
    api, tamper = doc["api"], doc["tamper"]
    rollouts = ", ".join(f"{r['name']} {r['state']} ({r['waves']} wave"
                         f"{'s' if r['waves'] != 1 else ''})" for r in doc["rollouts"])
    health = "; ".join(
        f"{d['device_id']} slot {d['health'].get('slot') or '-'}, up "
        f"{d['health'].get('uptime_s') or 0:.0f} s"
        + (f", {d['health']['decode_tokens_per_s']:.0f} tok/s"
           if d["health"].get("decode_tokens_per_s") else "")
        + (f", safety {d['safety']}" if d["safety"] else "")
        for d in doc["devices"])
    rows = [
        ("health", health),
        ("rollouts", rollouts),
        ("benign", f"{api['benign']['content']!r}"),
        ("harmful", f"blocked ({api['harmful']['finish_reason']}), category "
                    f"{', '.join(api['harmful']['categories'])}: {api['harmful']['refusal']!r}"),
        ("PII", f"{api['pii']['action']} {', '.join(api['pii']['categories'])} in the reply: "
                f"{api['pii']['content']!r}"),
        ("tamper", f"{tamper['device_id']}: {tamper.get('event')} ({tamper.get('reason')}); "
                   f"old artifact kept: {tamper['old_artifact_kept']}, still answers: "
                   f"{tamper['still_answers']}"),
        ("time", f"{doc['timings']['mission_s']:.0f} s to the summary "
                 f"(compression {doc['timings']['compress_s']:.0f} s)"),
        ("processes", "all stopped" if not doc["processes"].get("strays")
         else f"LEFT RUNNING: {doc['processes']['strays']}"),
        ("workdir", doc["workdir"] + (" (a temporary directory, removed)"
                                      if doc.get("workdir_removed") else
                                      " (keys, configs, models, logs, summary.json)")),
    ]
    for key, value in rows:
        out.print(f"[bold]{key:>10}[/bold]  {value}", soft_wrap=True)
