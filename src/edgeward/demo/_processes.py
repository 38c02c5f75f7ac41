"""The demo's child processes: started with their logs in files, stopped in reverse order,
and checked afterwards so that nothing is left running.

Each child is a real ``edgeward`` command (``fleet run``, ``fleet serve-artifacts``,
``agent run``) in its own process, as on a real deployment. On Linux each child also asks the
kernel to SIGTERM it when the demo process dies (``PR_SET_PDEATHSIG``), so even a demo killed
with SIGKILL leaves no orphans behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from edgeward.errors import ConfigError, EdgewardError

__all__ = ["Child", "Supervisor", "edgeward_command", "require", "running"]

_PR_SET_PDEATHSIG = 1


def edgeward_command(*args: str) -> list[str]:
    """``edgeward ARGS`` run by this interpreter (works without the console script on PATH)."""
    return [sys.executable, "-m", "edgeward", *args]


def _libc_prctl() -> Callable[..., int] | None:
    if sys.platform != "linux":
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _libc_prctl()  # looked up here: the child must not load libraries after fork


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Child:
    """One started process and where its output goes."""

    name: str
    argv: list[str]
    log: Path
    process: subprocess.Popen[bytes]
    started_at: float = field(default_factory=time.monotonic)

    @property
    def pid(self) -> int:
        """The process id."""
        return self.process.pid

    def alive(self) -> bool:
        """Whether it is still running."""
        return self.process.poll() is None

    def tail(self, lines: int = 15) -> str:
        """The last lines of its log (for an error message)."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class Supervisor:
    """Starts children and guarantees they are gone when it closes.

    Use it as a context manager; :meth:`close` stops the children newest first (SIGTERM, then
    SIGKILL after ``grace_s``) and :meth:`strays` lists any that survived.
    """

    def __init__(self, log_dir: Path, *, env: dict[str, str] | None = None,
                 grace_s: float = 15.0) -> None:
        self.log_dir = log_dir
        self.env = {**os.environ, **(env or {})}
        self.grace_s = grace_s
        self.children: list[Child] = []
        self.exit_codes: dict[str, int | None] = {}

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self, name: str, argv: Sequence[str]) -> Child:
        """Start ``argv`` with stdout and stderr going to ``LOG_DIR/NAME.log``."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"{name}.log"
        with log.open("ab") as f:
            process = subprocess.Popen(
                list(argv), stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                env=self.env,
                # only prctl(2) runs between fork and exec, no lock is taken there
                preexec_fn=_die_with_parent if _PRCTL is not None else None)  # noqa: PLW1509
        child = Child(name, list(argv), log, process)
        self.children.append(child)
        return child

    def wait_for(self, child: Child, ready: Callable[[], bool], *, what: str,
                 timeout_s: float = 60.0, poll_s: float = 0.1) -> None:
        """Wait until ``ready()``; a child that exits first, or a timeout, is an error that
        quotes the child's log."""
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if ready():
                return
            if not child.alive():
                raise EdgewardError(
                    f"{child.name} exited with code {child.process.returncode} before {what}; "
                    f"its log ({child.log}) ends:\n{child.tail()}")
            time.sleep(poll_s)
        if ready():
            return
        raise EdgewardError(f"{child.name} did not reach '{what}' within {timeout_s:.0f} s; "
                            f"its log ({child.log}) ends:\n{child.tail()}")

    def stop(self, child: Child) -> int | None:
        """SIGTERM ``child``, SIGKILL it after the grace period; returns its exit code."""
        if child.alive():
            with contextlib.suppress(ProcessLookupError):
                child.process.send_signal(signal.SIGTERM)
            try:
                child.process.wait(self.grace_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    child.process.kill()
                child.process.wait(10)
        self.exit_codes[child.name] = child.process.returncode
        return child.process.returncode

    def close(self) -> None:
        """Stop every child, newest first (idempotent)."""
        for child in reversed(self.children):
            self.stop(child)

    def strays(self) -> list[str]:
        """Children that are still running (``name pid``); empty after a clean :meth:`close`."""
        return [f"{c.name} (pid {c.pid})" for c in self.children if running(c.pid)]


def running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - someone else's process reused the pid
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def require(condition: bool, message: str) -> None:
    """A demo precondition: ConfigError with ``message`` when it does not hold."""
    if not condition:
        raise ConfigError(message)
