"""The tamper-evident log: an append-only JSONL hash chain with signed checkpoints (writer).

Each line is one entry, canonical JSON::

    {"data":{...},"kind":"...","prev":"<sha256 of the previous line>","seq":N,"time":"..."}

``prev`` of the first entry is 64 zeros. An entry's digest is the sha256 of its line's exact
bytes (without the newline). Every ``checkpoint_every`` entries (and on close) the writer appends
a ``checkpoint`` entry holding a DSSE envelope, signed by the device key, over
``{"seq", "head", "time"}`` where ``head`` is the digest of the entry before it: whoever can
edit the file can recompute the chain, but cannot re-sign the checkpoints.

Crash safety: each entry is one ``write`` of a whole line to a file opened ``O_APPEND``; with
the default :attr:`FsyncPolicy.EVERY_ENTRY` it is ``fsync``-ed before ``append`` returns, so an
entry that was acknowledged survives a power cut. A crash in the middle of a write leaves a
last line with no newline: the writer refuses to append after it and ``verify_log`` reports it
(``torn``); :meth:`TamperEvidentLog.recover` cuts it off explicitly and records that it did.
"""

from __future__ import annotations

import base64
import enum
import fcntl
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from edgeward.errors import ConfigError, LogTamperedError
from edgeward.provenance._dsse import canonical_json, sign_envelope
from edgeward.provenance._keys import PrivateKey
from edgeward.provenance._statement import utc_now

__all__ = ["CHECKPOINT_PAYLOAD_TYPE", "GENESIS", "FsyncPolicy", "LogConfig", "LogEntry",
           "TamperEvidentLog"]

CHECKPOINT_PAYLOAD_TYPE = "application/vnd.edgeward.log-checkpoint+json"
CHECKPOINT_TYPE = "https://edgeward.dev/log-checkpoint/v1"
GENESIS = "0" * 64


class FsyncPolicy(enum.StrEnum):
    """When appended entries are forced to stable storage."""

    EVERY_ENTRY = "every-entry"  # fsync before append() returns: nothing acknowledged is lost
    CHECKPOINT = "checkpoint"  # fsync at checkpoints and close: the entries since may be lost
    NONE = "none"  # leave it to the OS (tests, throwaway logs)


@dataclass(frozen=True, kw_only=True)
class LogConfig:
    """How a log is written.

    Attributes:
        fsync: the fsync policy (default: every entry).
        checkpoint_every: entries between signed checkpoints (0: only explicit ones and close).
        checkpoint_on_close: sign a checkpoint when the log is closed (needs a key).
    """

    fsync: FsyncPolicy = FsyncPolicy.EVERY_ENTRY
    checkpoint_every: int = 100  # entries
    checkpoint_on_close: bool = True

    def __post_init__(self) -> None:
        if self.checkpoint_every < 0:
            raise ConfigError(f"checkpoint_every must be >= 0 entries, got "
                              f"{self.checkpoint_every!r}")
        object.__setattr__(self, "fsync", FsyncPolicy(self.fsync))


@dataclass(frozen=True)
class LogEntry:
    """One log entry.

    Attributes:
        seq: its position, from 0.
        time: when it was appended (RFC 3339 UTC).
        kind: what it records (``safety_block``, ``update``, ``checkpoint``, ...).
        data: the record (JSON object).
        prev: the digest of the previous entry's line (``GENESIS`` for the first).
    """

    seq: int
    time: str
    kind: str
    data: Mapping[str, Any] = field(default_factory=dict)
    prev: str = GENESIS

    def __post_init__(self) -> None:
        if not isinstance(self.seq, int) or isinstance(self.seq, bool) or self.seq < 0:
            raise ConfigError(f"log entry seq must be an integer >= 0, got {self.seq!r}")
        if not isinstance(self.kind, str) or not self.kind:
            raise ConfigError(f"log entry kind must be a non-empty string, got {self.kind!r}")
        if not isinstance(self.data, Mapping):
            raise ConfigError(f"log entry data must be a JSON object, got {self.data!r:.80}")
        if not isinstance(self.prev, str) or len(self.prev) != 64:
            raise ConfigError(f"log entry prev must be a sha256 hex digest, got {self.prev!r}")

    def to_dict(self) -> dict[str, Any]:
        """The entry as a JSON object."""
        return {"seq": self.seq, "time": self.time, "kind": self.kind, "data": dict(self.data),
                "prev": self.prev}

    @classmethod
    def from_dict(cls, d: object) -> LogEntry:
        """Parse an entry object.

        Raises:
            ConfigError: missing or mistyped fields (quoted).
        """
        if not isinstance(d, Mapping):
            raise ConfigError(f"a log entry must be a JSON object, got {d!r:.80}")
        try:
            return cls(seq=d["seq"], time=str(d["time"]), kind=d["kind"], data=d["data"],
                       prev=d["prev"])
        except KeyError as e:
            raise ConfigError(f"a log entry needs seq, time, kind, data and prev; "
                              f"{e.args[0]!r} is missing") from e

    def line(self) -> bytes:
        """The entry's line, without the newline: canonical JSON."""
        return canonical_json(self.to_dict())

    @property
    def digest(self) -> str:
        """sha256 (hex) of :meth:`line`."""
        return hashlib.sha256(self.line()).hexdigest()


def _tail(fd: int, size: int) -> bytes:
    """The file's bytes after its second-to-last newline (the last line, newline included)."""
    pos, chunk, buf = size, 64 * 1024, b""
    while pos > 0:
        step = min(chunk, pos)
        pos -= step
        buf = os.pread(fd, step, pos) + buf
        if buf.count(b"\n") >= 2 or (not buf.endswith(b"\n") and b"\n" in buf):
            break
    body = buf[:-1] if buf.endswith(b"\n") else buf
    return buf[body.rfind(b"\n") + 1:]


class TamperEvidentLog:
    """An append-only, hash-chained JSONL log. One writer at a time (an exclusive flock).

    Example::

        with TamperEvidentLog(path, key=device_key) as log:
            log.append("safety_block", {"categories": ["S1"], "stage": "prompt"})

    Args:
        path: the log file (created with mode 0640 if missing).
        key: the device key that signs checkpoints; without it no checkpoints are written.
        config: fsync policy and checkpoint interval.

    Raises:
        ConfigError: the file cannot be opened, or another process holds it.
        LogTamperedError: its last line is torn or is not an entry (see :meth:`recover`).
    """

    def __init__(self, path: Path, *, key: PrivateKey | None = None,
                 config: LogConfig | None = None) -> None:
        self.path = path
        self.key = key
        self.config = config or LogConfig()
        try:
            self._fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o640)
        except OSError as e:
            raise ConfigError(f"{path}: cannot open the log ({e.strerror})") from e
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(self._fd)
            raise ConfigError(f"{path}: another process is writing this log") from e
        try:
            self._next_seq, self._head = self._read_tail()
        except BaseException:
            os.close(self._fd)
            raise
        self._since_checkpoint = 0
        self._closed = False

    def _read_tail(self) -> tuple[int, str]:
        size = os.fstat(self._fd).st_size
        if size == 0:
            return 0, GENESIS
        last = _tail(self._fd, size)
        if not last.endswith(b"\n"):
            raise LogTamperedError(
                f"{self.path}: the last line is torn ({len(last)} bytes with no newline: an "
                "append did not complete); run `edgeward verify-log` on it, then "
                "TamperEvidentLog.recover() to cut the torn line off on the record",
                problems=["torn last line"])
        try:
            entry = LogEntry.from_dict(json.loads(last))
        except (json.JSONDecodeError, UnicodeDecodeError, ConfigError) as e:
            raise LogTamperedError(f"{self.path}: the last line is not a log entry ({e}); run "
                                   "`edgeward verify-log` on it", problems=[str(e)]) from e
        return entry.seq + 1, hashlib.sha256(last[:-1]).hexdigest()

    @classmethod
    def recover(cls, path: Path, *, key: PrivateKey | None = None,
                config: LogConfig | None = None) -> TamperEvidentLog:
        """Cut off a torn last line and open the log, recording the cut in a
        ``log_recovered`` entry (its length, sha256 and bytes), so nothing is silently lost.

        Raises:
            ConfigError: the file cannot be opened or truncated.
        """
        try:
            with path.open("r+b") as f:
                size = f.seek(0, os.SEEK_END)
                torn = _tail(f.fileno(), size) if size else b""
                if torn and not torn.endswith(b"\n"):
                    f.truncate(size - len(torn))
                    f.flush()
                    os.fsync(f.fileno())
                else:
                    torn = b""
        except OSError as e:
            raise ConfigError(f"{path}: cannot recover the log ({e.strerror})") from e
        log = cls(path, key=key, config=config)
        if torn:
            log.append("log_recovered", {
                "torn_bytes": len(torn), "torn_sha256": hashlib.sha256(torn).hexdigest(),
                "torn_base64": base64.b64encode(torn[:65536]).decode("ascii")})
        return log

    @property
    def next_seq(self) -> int:
        """The seq the next entry gets."""
        return self._next_seq

    @property
    def head(self) -> str:
        """The digest of the last entry (``GENESIS`` for an empty log)."""
        return self._head

    def append(self, kind: str, data: Mapping[str, Any]) -> LogEntry:
        """Append one entry (and a checkpoint after every ``checkpoint_every`` entries).

        Raises:
            ConfigError: bad kind or data, the log is closed, or the write failed.
        """
        if kind == "checkpoint":
            raise ConfigError("'checkpoint' entries are written by checkpoint() only")
        entry = self._write(kind, data)
        self._since_checkpoint += 1
        every = self.config.checkpoint_every
        if self.key is not None and every and self._since_checkpoint >= every:
            self.checkpoint()
        return entry

    def checkpoint(self) -> LogEntry:
        """Append a checkpoint signed by the device key over the current head.

        Raises:
            ConfigError: the log has no key, or the write failed.
        """
        if self.key is None:
            raise ConfigError(f"{self.path}: checkpoints need the device key; open the log "
                              "with key=...")
        body = {"_type": CHECKPOINT_TYPE, "seq": self._next_seq, "head": self._head,
                "time": utc_now()}
        env = sign_envelope(canonical_json(body), CHECKPOINT_PAYLOAD_TYPE, [self.key])
        entry = self._write("checkpoint", {"envelope": env.to_dict()})
        self._since_checkpoint = 0
        if self.config.fsync is FsyncPolicy.CHECKPOINT:
            os.fsync(self._fd)
        return entry

    def _write(self, kind: str, data: Mapping[str, Any]) -> LogEntry:
        if self._closed:
            raise ConfigError(f"{self.path}: the log is closed")
        entry = LogEntry(self._next_seq, utc_now(), kind, data, self._head)
        line = entry.line()
        buf = memoryview(line + b"\n")
        start = os.fstat(self._fd).st_size
        try:
            while buf:
                n = os.write(self._fd, buf)
                buf = buf[n:]
            if self.config.fsync is FsyncPolicy.EVERY_ENTRY:
                os.fsync(self._fd)
        except OSError as e:
            try:  # cut a partly written line off, so that a retry (e.g. once the disk has
                os.ftruncate(self._fd, start)  # room again) appends a whole line
                torn = ""
            except OSError:
                torn = "; the last line may be torn: run `edgeward verify-log`"
            raise ConfigError(f"{self.path}: cannot append ({e.strerror}){torn}") from e
        self._next_seq += 1
        self._head = hashlib.sha256(line).hexdigest()
        return entry

    def close(self) -> None:
        """Checkpoint (if configured and anything was appended since), fsync, unlock, close."""
        if self._closed:
            return
        try:
            if self.key is not None and self.config.checkpoint_on_close \
                    and self._since_checkpoint:
                self.checkpoint()
            if self.config.fsync is not FsyncPolicy.NONE:
                os.fsync(self._fd)
        finally:
            self._closed = True
            os.close(self._fd)

    def __enter__(self) -> TamperEvidentLog:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
