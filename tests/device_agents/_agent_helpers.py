"""Helpers for the agent tests: signed artifacts, fake safety filters, an agent subprocess.

Fakes, not mocks: each fake filter implements :class:`edgeward.safety.SafetyFilter` for real,
with one behaviour a test needs (block a word, stop the output, hold the worker at a gate).
"""

from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeward.provenance import PrivateKey, Role, TrustStore, generate_key, sign_artifact
from edgeward.safety import (
    OutputStream,
    PassThroughFilter,
    Pseudonyms,
    Stage,
    StreamStep,
    Verdict,
)

BIN = Path(sys.executable).with_name("edgeward")


@dataclass
class Signed:
    """A signed copy of a model with the trust store that trusts its key."""

    artifact: Path
    trust: Path
    key: PrivateKey


def sign_copy(src: Path, workdir: Path, *, name: str | None = None,
              key: PrivateKey | None = None, trust: Path | None = None) -> Signed:
    """Copy ``src`` into ``workdir`` (unless it is there), sign it, and trust the key in
    ``workdir/trust``."""
    workdir.mkdir(parents=True, exist_ok=True)
    artifact = workdir / (name or src.name)
    if artifact.resolve() != src.resolve():
        if src.is_dir():
            shutil.copytree(src, artifact)
        else:
            shutil.copyfile(src, artifact)
    key = key or generate_key()
    trust = trust or workdir / "trust"
    store = TrustStore.open(trust, create=True)
    if store.get(key.key_id) is None:
        store.add(key.public_key, [Role.PUBLISHER], name="test publisher")
    sign_artifact(artifact, key, overwrite=True)
    return Signed(artifact, trust, key)


def flip_byte(path: Path, offset: int = -100) -> None:
    """Change one byte of ``path`` in place (tampering)."""
    with path.open("r+b") as f:
        f.seek(offset, os.SEEK_END if offset < 0 else os.SEEK_SET)
        b = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([b[0] ^ 0xFF]))


def toml_config(path: Path, **keys: Any) -> Path:
    """Write an agent config with ``keys`` (strings quoted, paths as strings)."""
    lines = []
    for k, v in keys.items():
        if isinstance(v, bool):
            lines.append(f"{k} = {'true' if v else 'false'}")
        elif isinstance(v, int | float):
            lines.append(f"{k} = {v}")
        else:
            lines.append(f'{k} = "{v}"')
    path.write_text("\n".join(lines) + "\n")
    return path


# -- fake safety filters -------------------------------------------------------------------


class _Pass:
    def feed(self, piece: str) -> StreamStep:
        return StreamStep(emit=piece)

    def finish(self) -> StreamStep:
        return StreamStep(emit="")


class WordFilter(PassThroughFilter):
    """Blocks prompts containing ``word`` (category ``category``); records what it saw."""

    def __init__(self, word: str = "forbidden", category: str = "S9") -> None:
        self.word = word
        self.category = category
        self.seen: list[tuple[Stage, str]] = []

    def check(self, text: str, *, stage: Stage = "prompt",
              context: Mapping[str, Any] | None = None,
              pseudonyms: Pseudonyms | None = None) -> Verdict:
        self.seen.append((stage, text))
        if self.word in text:
            return Verdict("block", categories=(self.category,))
        return Verdict("allow")


class _StopAfter:
    def __init__(self, n: int, category: str) -> None:
        self.n = n
        self.category = category
        self.fed = 0

    def feed(self, piece: str) -> StreamStep:
        self.fed += 1
        if self.fed > self.n:
            return StreamStep(emit="", stop=True,
                              verdict=Verdict("block", categories=(self.category,)))
        return StreamStep(emit=piece)

    def finish(self) -> StreamStep:
        return StreamStep(emit="")


class StopOutputFilter(PassThroughFilter):
    """Lets ``n`` output pieces through, then stops generation (category ``category``)."""

    def __init__(self, n: int = 3, category: str = "S2") -> None:
        self.n = n
        self.category = category

    def output_stream(self, *, context: Mapping[str, Any] | None = None,
                      pseudonyms: Pseudonyms | None = None) -> OutputStream:
        return _StopAfter(self.n, self.category)


class _Redact:
    def feed(self, piece: str) -> StreamStep:
        return StreamStep(emit="[X]", verdict=Verdict("redact", categories=("EMAIL",)))

    def finish(self) -> StreamStep:
        return StreamStep(emit="")


class RedactOutputFilter(PassThroughFilter):
    """Replaces every output piece with ``[X]`` (a redaction)."""

    def output_stream(self, *, context: Mapping[str, Any] | None = None,
                      pseudonyms: Pseudonyms | None = None) -> OutputStream:
        return _Redact()


class _Gated:
    def __init__(self, gate: GateFilter) -> None:
        self.gate = gate

    def feed(self, piece: str) -> StreamStep:
        self.gate.entered.set()
        if not self.gate.released.wait(30):
            raise RuntimeError("the test never opened the gate")
        if self.gate.delay_s:
            time.sleep(self.gate.delay_s)  # simulates a slow model, not synchronisation
        return StreamStep(emit=piece)

    def finish(self) -> StreamStep:
        return StreamStep(emit="")


class GateFilter(PassThroughFilter):
    """Holds the generation worker inside the first output piece until :meth:`release`
    (so tests can fill the queue deterministically); ``delay_s`` slows every piece after."""

    def __init__(self, *, open_: bool = False, delay_s: float = 0.0) -> None:
        self.entered = threading.Event()
        self.released = threading.Event()
        self.delay_s = delay_s
        if open_:
            self.released.set()

    def release(self) -> None:
        self.released.set()

    def output_stream(self, *, context: Mapping[str, Any] | None = None,
                      pseudonyms: Pseudonyms | None = None) -> OutputStream:
        return _Gated(self)


def wait_for(predicate: Any, timeout: float = 10.0, what: str = "condition") -> None:
    """Poll ``predicate`` until true (a bounded wait on observable state)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.005)


# -- the agent as a subprocess -------------------------------------------------------------


class AgentProcess:
    """``edgeward agent run --config FILE`` as a subprocess; its stderr lines are collected and
    its URL is read from its ``event=listening`` line."""

    def __init__(self, config: Path, *, wait: bool = True, timeout: float = 60.0) -> None:
        self.proc = subprocess.Popen([str(BIN), "agent", "run", "--config", str(config)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self._new: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.url = ""
        if wait:
            line = self.wait_line("event=listening", timeout)
            self.url = line.split("url=", 1)[1].split()[0]

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            self._new.put(line)
        self._new.put("")  # EOF

    def wait_line(self, needle: str, timeout: float = 30.0) -> str:
        """The first stderr line (already seen or new) containing ``needle``."""
        for line in list(self.lines):
            if needle in line:
                return line
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._new.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no log line with {needle!r} within {timeout} s; "
                                     f"stderr so far:\n{''.join(self.lines)}") from None
            if line == "":
                raise AssertionError(f"the agent exited ({self.proc.wait()}) without a log "
                                     f"line with {needle!r}; stderr:\n{''.join(self.lines)}")
            if needle in line:
                return line

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        rc = self.proc.wait(timeout)
        self._reader.join(5)
        return rc

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def until(pred: Callable[[], bool], timeout: float = 20.0) -> bool:
    """Poll ``pred`` every 50 ms until it holds or ``timeout`` seconds pass; its last value."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return pred()
