"""Fetch an artifact by digest over MQTT, in chunks, resumably.

The fetcher keeps ``window`` chunk requests in flight to the artifact server, writes each
chunk (checked against its own sha256) at its offset in ``STATE/downloads/DIGEST.part``, and
records which chunks it has in ``DIGEST.have`` — after fsyncing the part file, so the record
never claims bytes that are not on disk. A broker restart, a lost connection or a restart of
the agent resumes from that record: only missing chunks are asked for again. When every chunk
is there, the whole file's sha256 must equal the digest, or it is deleted; the caller then
verifies the signature (the slot flow) before anything runs it.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeward.device_agents._files import atomic_write
from edgeward.device_agents._log import log_event
from edgeward.errors import (
    ChannelError,
    ConfigError,
    DigestMismatchError,
    RejectedMessageError,
    ResourceError,
)
from edgeward.fleet.protocol import BrokerOptions, connect
from edgeward.fleet.protocol._transfer import (
    DEFAULT_CHUNK_SIZE,
    MAX_REQUEST_CHUNKS,
    Chunk,
    ChunkRequest,
    chunk_count,
    chunk_topic,
    request_topic,
)
from edgeward.provenance import content_chunks

__all__ = ["FetchStats", "Fetcher"]

_SAVE_EVERY = 32  # chunks between progress records


@dataclass
class FetchStats:
    """What one :meth:`Fetcher.fetch` did.

    Attributes:
        chunks: chunks in the artifact.
        received: chunks received and written in this call.
        duplicates: chunks received that were already there (sent twice).
        resumed_with: chunks already on disk when the call started.
        rerequests: chunk requests sent again after a timeout or a reconnect.
        reconnects: connections re-established.
        bytes: bytes written in this call.
        seconds: wall time.
    """

    chunks: int = 0
    received: int = 0
    duplicates: int = 0
    resumed_with: int = 0
    rerequests: int = 0
    reconnects: int = 0
    bytes: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON fields."""
        return dict(vars(self))


class Fetcher:
    """Fetches artifacts into ``STATE/downloads`` (one fetch at a time per instance).

    Args:
        state_dir: the agent's state directory.
        broker: the broker.
        device_id: this device (its chunk topic).
        window: chunk requests in flight.
        chunk_size: bytes per chunk.
        timeout_s: a requested chunk not received in this time is asked for again.
    """

    def __init__(self, state_dir: Path, broker: BrokerOptions, device_id: str, *,
                 window: int = 16, chunk_size: int = DEFAULT_CHUNK_SIZE,
                 timeout_s: float = 5.0) -> None:
        self.dir = Path(state_dir) / "downloads"
        self.broker = broker
        self.device_id = device_id
        self.window = window
        self.chunk_size = chunk_size
        self.timeout_s = timeout_s

    def seed(self, digest: str, size: int, chunk_map: list[tuple[int, int, str]],
             local: list[Path]) -> int:
        """Delta update: fill the download of ``digest`` from files the device already holds.

        ``chunk_map`` is the new artifact's content-defined chunks (``(offset, length,
        sha256)``, from :func:`edgeward.provenance.content_chunks` on the publisher's side);
        every chunk found in ``local`` (by the same chunking) is copied into place, checked
        against its sha256, and the fixed-size transfer chunks it covers completely are marked
        as present, so :meth:`fetch` asks only for the rest. The whole file is still checked
        against ``digest`` at the end.

        Returns:
            Bytes copied from local files (0 when a download was already in progress).

        Raises:
            ConfigError: the download directory or a local file cannot be read or written.
        """
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        part, have_path = self.dir / f"{digest}.part", self.dir / f"{digest}.have"
        if (self.dir / digest).is_file() or have_path.is_file():
            return 0
        index: dict[str, tuple[Path, int]] = {}
        for path in local:
            if path.is_file():
                for off, _length, sha in content_chunks(path):
                    index.setdefault(sha, (path, off))
        count = chunk_count(size, self.chunk_size)
        filled = bytearray(count)  # bytes of each transfer chunk filled locally
        covered = [0] * count
        reused = 0
        try:
            fd = os.open(part, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        except OSError as e:
            raise ConfigError(f"{part}: cannot open ({e.strerror})") from e
        try:
            os.ftruncate(fd, size)
            for off, length, sha in chunk_map:
                hit = index.get(sha)
                if hit is None or off + length > size:
                    continue
                with hit[0].open("rb") as f:
                    f.seek(hit[1])
                    data = f.read(length)
                if hashlib.sha256(data).hexdigest() != sha:
                    continue
                os.pwrite(fd, data, off)
                reused += length
                first, last = off // self.chunk_size, (off + length - 1) // self.chunk_size
                for i in range(first, last + 1):
                    lo = max(off, i * self.chunk_size)
                    hi = min(off + length, (i + 1) * self.chunk_size, size)
                    covered[i] += hi - lo
            for i in range(count):
                if covered[i] == min(self.chunk_size, size - i * self.chunk_size):
                    filled[i] = 1
            _save_have(fd, have_path, size, filled)
        finally:
            os.close(fd)
        return reused

    def fetch(self, digest: str, *, size: int | None = None, deadline_s: float = 3600.0,
              progress: Callable[[int, int], None] | None = None,
              stop: threading.Event | None = None) -> tuple[Path, FetchStats]:
        """Fetch ``digest`` (resuming what an earlier call left).

        Args:
            digest: the artifact's sha256.
            size: its size, when known (else learnt from the first chunk).
            deadline_s: give up after this long (the progress stays on disk).
            progress: called with (chunks there, chunks in all) as chunks arrive.
            stop: set to give up early (the progress stays on disk).

        Returns:
            The complete file (``STATE/downloads/DIGEST``) and the statistics.

        Raises:
            ChannelError: the deadline passed or ``stop`` was set before it completed.
            DigestMismatchError: the assembled file's sha256 is not ``digest`` (it is deleted).
            ConfigError: the download directory cannot be written.
            ResourceError: a chunk cannot be written (the disk is full); what is on disk is
                kept, and a later call resumes from it.
        """
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        final = self.dir / digest
        if final.is_file():
            return final, FetchStats()
        dl = _Download(self, digest, size, progress)
        end = time.monotonic() + deadline_s
        try:
            while not dl.complete:
                if (stop is not None and stop.is_set()) or time.monotonic() > end:
                    raise ChannelError(f"fetching {digest[:16]}…: stopped with "
                                       f"{sum(dl.have)} of {dl.count or '?'} chunks "
                                       "(resumable)")
                try:
                    conn = connect(self.broker, client_id=f"{self.device_id}-fetch")
                except ChannelError as e:
                    log_event(logging.WARNING, "fetch_broker_unreachable", detail=str(e))
                    dl.stats.reconnects += 1
                    time.sleep(0.5)
                    continue
                try:
                    dl.session(conn.client, stop, end)
                finally:
                    conn.close()
            dl.finish()
        finally:
            dl.close()
        return dl.verify(final), dl.stats


class _Download:
    """One artifact's download: the part file, the progress record, the requests in flight."""

    def __init__(self, f: Fetcher, digest: str, size: int | None,
                 progress: Callable[[int, int], None] | None) -> None:
        self.f, self.digest, self.progress = f, digest, progress
        self.part = f.dir / f"{digest}.part"
        self.have_path = f.dir / f"{digest}.have"
        total, self.have = _load_have(self.have_path)
        self.total = total or size or 0
        self.count = len(self.have) or (chunk_count(self.total, f.chunk_size) if self.total
                                        else 0)
        if self.count and not self.have:
            self.have = bytearray(self.count)
        self.stats = FetchStats(resumed_with=sum(self.have))
        self.started = time.monotonic()
        self.unsaved = 0
        try:
            self.fd = os.open(self.part, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            raise ConfigError(f"{self.part}: cannot open ({e.strerror})") from e

    @property
    def complete(self) -> bool:
        return bool(self.count) and sum(self.have) == self.count

    def session(self, client: Any, stop: threading.Event | None, end: float) -> None:
        """Receive over one connection until complete, lost, stopped or past ``end``."""
        inbox: queue.Queue[bytes | None] = queue.Queue()
        client.on_message = lambda _c, _u, m: inbox.put(bytes(m.payload))
        client.on_disconnect = lambda *_a: inbox.put(None)
        client.subscribe(chunk_topic(self.digest, self.f.device_id), qos=1)
        client.loop_start()
        try:
            self._receive_all(client, inbox, stop, end)
        except BaseException:
            # record what is on disk, but never let that hide why the session ended
            with contextlib.suppress(ConfigError, OSError):
                self._save()
            raise
        finally:
            client.loop_stop()
        self._save()

    def _receive_all(self, client: Any, inbox: queue.Queue[bytes | None],
                     stop: threading.Event | None, end: float) -> None:
        pending: dict[int, float] = {}
        while not self.complete and time.monotonic() < end \
                and not (stop is not None and stop.is_set()):
            self._request(client, pending)
            try:
                frame = inbox.get(timeout=0.2)
            except queue.Empty:
                continue
            if frame is None:
                self.stats.reconnects += 1
                self.stats.rerequests += len(pending)
                return
            self._receive(frame, pending)

    def _request(self, client: Any, pending: dict[int, float]) -> None:
        now = time.monotonic()
        for i in [i for i, t in pending.items() if now - t > self.f.timeout_s]:
            del pending[i]
            self.stats.rerequests += 1
        if self.count == 0:
            ask = [] if pending else [0]
        else:
            room = max(0, self.f.window - len(pending))
            if pending and room < max(1, self.f.window // 2):
                return  # ask in batches of half a window: fewer requests, same pipeline
            ask = [i for i in range(self.count) if not self.have[i] and i not in pending]
            ask = ask[:min(room, MAX_REQUEST_CHUNKS)]
        if ask:
            req = ChunkRequest(self.f.device_id, tuple(ask), self.f.chunk_size)
            client.publish(request_topic(self.digest, self.f.device_id), req.encode(), qos=1)
            pending.update(dict.fromkeys(ask, now))

    def _receive(self, frame: bytes, pending: dict[int, float]) -> None:
        try:
            chunk = Chunk.decode(frame)
        except RejectedMessageError as e:
            log_event(logging.WARNING, "fetch_bad_chunk", detail=str(e))
            return
        if self.count == 0:
            self.count, self.total = chunk.count, chunk.size
            self.have = bytearray(self.count)
        if chunk.count != self.count or chunk.chunk_size != self.f.chunk_size:
            return
        pending.pop(chunk.index, None)
        if self.have[chunk.index]:
            self.stats.duplicates += 1
            return
        try:
            os.pwrite(self.fd, chunk.data, chunk.index * chunk.chunk_size)
        except OSError as e:  # the disk is full (or a file-size limit): stop, keep what is
            raise ResourceError(
                f"{self.f.dir}: cannot write the download of {self.digest[:16]}… "
                f"({e.strerror}); the {sum(self.have)} of {self.count} chunks on disk are "
                "kept: free some space and fetch again to resume") from e
        self.have[chunk.index] = 1
        self.stats.received += 1
        self.stats.bytes += len(chunk.data)
        self.unsaved += 1
        if self.unsaved >= _SAVE_EVERY:
            self._save()
        if self.progress is not None:
            self.progress(sum(self.have), self.count)

    def _save(self) -> None:
        _save_have(self.fd, self.have_path, self.total, self.have)
        self.unsaved = 0

    def finish(self) -> None:
        os.ftruncate(self.fd, self.total)
        os.fsync(self.fd)
        self.stats.chunks = self.count
        self.stats.seconds = round(time.monotonic() - self.started, 3)

    def close(self) -> None:
        os.close(self.fd)

    def verify(self, final: Path) -> Path:
        actual = _sha256(self.part)
        if actual != self.digest:
            self.part.unlink(missing_ok=True)
            self.have_path.unlink(missing_ok=True)
            raise DigestMismatchError(f"fetched artifact's sha256 is {actual}, not the "
                                      f"{self.digest} asked for; deleted, fetch it again")
        self.part.replace(final)
        self.have_path.unlink(missing_ok=True)
        return final


def _load_have(path: Path) -> tuple[int, bytearray]:
    """(artifact size, which chunks are on disk) from a progress record."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return 0, bytearray()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read download progress ({e.strerror})") from e
    if len(raw) < 8:
        return 0, bytearray()
    return int.from_bytes(raw[:8], "big"), bytearray(raw[8:])


def _save_have(fd: int, path: Path, total: int, have: bytearray) -> None:
    """Record the chunks that are on disk (after they are: fsync the data first)."""
    if not have:
        return
    try:
        os.fsync(fd)
    except OSError as e:
        raise ConfigError(f"{path}: cannot record download progress ({e.strerror})") from e
    atomic_write(path, total.to_bytes(8, "big") + bytes(have))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()
