"""The artifact server: answers devices' chunk requests from a directory of artifacts.

Artifacts are stored by digest (``DIR/SHA256``, with the signature as
``DIR/SHA256.edgeward.json``); :meth:`ArtifactServer.add` puts one there. The server subscribes
to ``edgeward/v1/artifacts/+/req/+`` (a shared subscription on MQTT 5, so several servers split
the requests) and publishes each requested chunk, QoS 1, on the asking device's chunk topic.
It counts every chunk it sends, so a benchmark can tell how many were sent twice.

What one request can cost is bounded (:class:`ServeLimits`): the chunking is at most the
server's ``chunk_size``, a request names at most 64 distinct indexes inside the artifact, a
request whose ``device_id`` is not the device of its topic is refused (``wrong_device``), and
each device has a token bucket for requests and one for bytes: past them, requests and chunks
are dropped and counted (``rate_limited``); the device's fetcher asks again after its timeout.
So the bytes sent for one request are at most its distinct indexes x ``chunk_size``, and a
device gets at most ``bytes_burst + bytes_per_s x t`` bytes in ``t`` seconds.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeward.errors import ChannelError, ConfigError, RejectedMessageError
from edgeward.fleet.protocol import BrokerOptions, connect
from edgeward.fleet.protocol._transfer import (
    MAX_CHUNK_SIZE,
    MIN_CHUNK_SIZE,
    REQUEST_FILTER,
    Chunk,
    ChunkRequest,
    chunk_count,
    chunk_topic,
    parse_request_topic,
)
from edgeward.provenance import content_chunks

__all__ = ["ArtifactServer", "ServeLimits"]

log = logging.getLogger("edgeward.fleet")
_REQUESTS = REQUEST_FILTER


@dataclass(frozen=True, kw_only=True)
class ServeLimits:
    """What one device may cost the artifact server (see the module docstring).

    Attributes:
        chunk_size: the largest chunk served (bytes); a request may use a smaller chunking,
            a larger one is refused (``rejected.chunk_size``).
        bytes_per_s: chunk bytes sent to one device per second, sustained.
        bytes_burst: chunk bytes one device may get at once (at least ``chunk_size``).
        requests_per_s: requests answered for one device per second, sustained.
        requests_burst: requests one device may make at once.
        devices: devices whose buckets are kept (the least recently seen are forgotten).
    """

    chunk_size: int = 1 << 20  # bytes
    bytes_per_s: float = 64 << 20  # bytes per second and device
    bytes_burst: int = 32 << 20  # bytes
    requests_per_s: float = 100.0  # requests per second and device
    requests_burst: int = 200  # requests
    devices: int = 100_000

    def __post_init__(self) -> None:
        if type(self.chunk_size) is not int \
                or not MIN_CHUNK_SIZE <= self.chunk_size <= MAX_CHUNK_SIZE:
            raise ConfigError(f"chunk_size {self.chunk_size!r} must be {MIN_CHUNK_SIZE}.."
                              f"{MAX_CHUNK_SIZE} bytes")
        if not self.bytes_per_s > 0 or not self.requests_per_s > 0:
            raise ConfigError("bytes_per_s and requests_per_s must be positive")
        if self.bytes_burst < self.chunk_size or self.requests_burst < 1 or self.devices < 1:
            raise ConfigError(f"bytes_burst ({self.bytes_burst}) must hold one chunk "
                              f"({self.chunk_size}); requests_burst and devices at least 1")


class _Bucket:
    """A token bucket: ``rate`` tokens per second, at most ``burst`` saved up."""

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate, self.burst, self.tokens, self.at = rate, burst, burst, now

    def take(self, n: float, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < n:
            return False
        self.tokens -= n
        return True


class ArtifactServer:
    """Serves the artifacts of ``directory`` over MQTT (see the module docstring).

    Args:
        directory: the artifact store (created if missing).
        broker: the broker.
        client_id: the MQTT client id.
        share_group: the MQTT 5 shared-subscription group (``""``: a plain subscription).
        limits: the chunking and the per-device rate limits.
        clock: monotonic seconds (the rate limits' clock).
    """

    def __init__(self, directory: Path, broker: BrokerOptions, *,
                 client_id: str = "edgeward-artifacts", share_group: str = "artifacts",
                 limits: ServeLimits | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits or ServeLimits()
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[_Bucket, _Bucket]] = OrderedDict()
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.broker = broker
        self.client_id = client_id
        self.share_group = share_group
        self.sent: Counter[tuple[str, int]] = Counter()  # (digest, index) -> times published
        self.counters: Counter[str] = Counter()
        self._lock = threading.Lock()

    def add(self, artifact: Path) -> str:
        """Store a file by its sha256 (a no-op when it is there); returns the digest.

        A device fetches an artifact and its signature file the same way: add both (see
        :meth:`add_signed`).

        Raises:
            ConfigError: not a file, or it cannot be copied.
        """
        artifact = Path(artifact)
        if not artifact.is_file():
            raise ConfigError(f"{artifact}: the artifact server serves single files")
        h = hashlib.sha256()
        with artifact.open("rb") as f:
            while block := f.read(1 << 20):
                h.update(block)
        digest = h.hexdigest()
        if (self.directory / digest).is_file():
            return digest
        try:
            tmp = self.directory / f".{digest}.tmp"
            shutil.copyfile(artifact, tmp)
            tmp.replace(self.directory / digest)
        except OSError as e:
            raise ConfigError(f"{artifact}: cannot add it to {self.directory} ({e.strerror})"
                              ) from e
        return digest

    def add_chunk_map(self, artifact: Path, digest: str) -> str:
        """Store the artifact's content-defined chunk map (for delta updates); returns the
        map's digest. The map is JSON: ``{"format": 1, "sha256", "size", "chunks": [[offset,
        length, sha256], ...]}``.

        Raises:
            ConfigError: the artifact cannot be read or the map written.
        """
        doc = {"format": 1, "sha256": digest, "size": Path(artifact).stat().st_size,
               "chunks": [list(c) for c in content_chunks(Path(artifact))]}
        tmp = self.directory / f".map-{digest}.json"
        try:
            tmp.write_text(json.dumps(doc, separators=(",", ":")))
            return self.add(tmp)
        except OSError as e:
            raise ConfigError(f"{tmp}: cannot write the chunk map ({e.strerror})") from e
        finally:
            tmp.unlink(missing_ok=True)

    def add_signed(self, artifact: Path) -> tuple[str, str]:
        """Store an artifact and its signature (``ARTIFACT.edgeward.json``); returns both
        digests.

        Raises:
            ConfigError: either file is missing or cannot be copied.
        """
        signature = Path(artifact).with_name(Path(artifact).name + ".edgeward.json")
        if not signature.is_file():
            raise ConfigError(f"{artifact}: no signature at {signature}; sign it first")
        return self.add(artifact), self.add(signature)

    def handle(self, topic: str, payload: bytes, publish: Callable[[str, bytes], None]) -> None:
        """Answer one request (never raises: a bad request is counted and dropped)."""
        try:
            digest, device = parse_request_topic(topic)
            req = ChunkRequest.decode(payload)
        except RejectedMessageError as e:
            self._count(f"rejected.{e.reason}")
            return
        if req.device_id != device:  # one device asking for chunks sent to another
            self._count("rejected.wrong_device")
            return
        if req.chunk_size > self.limits.chunk_size:
            self._count("rejected.chunk_size")
            return
        requests, sent_bytes = self._bucket(device)
        now = self._clock()
        if not requests.take(1, now):
            self._count("rejected.rate_limited")
            return
        path = self.directory / digest
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            self._count("unknown_artifact")
            return
        try:
            size = os.fstat(fd).st_size
            self._send(fd, digest, size, req, budget=sent_bytes, now=now, publish=publish)
        finally:
            os.close(fd)

    def _send(self, fd: int, digest: str, size: int, req: ChunkRequest, *, budget: _Bucket,
              now: float, publish: Callable[[str, bytes], None]) -> None:
        """Publish the request's chunks that are in the artifact, while the device's byte
        budget lasts."""
        count = chunk_count(size, req.chunk_size)
        out = chunk_topic(digest, req.device_id)
        for n, index in enumerate(req.chunks):
            if index >= count:
                self._count("rejected.bad_index")
                continue
            length = min(req.chunk_size, size - index * req.chunk_size)
            if not budget.take(length, now):
                self._count("rejected.rate_limited")
                self._count("chunks_rate_limited", len(req.chunks) - n)
                return
            data = os.pread(fd, length, index * req.chunk_size)
            publish(out, Chunk(index, count, size, req.chunk_size, data).encode())
            with self._lock:
                self.sent[(digest, index)] += 1
                self.counters["chunks_sent"] += 1
                self.counters["bytes_sent"] += len(data)

    def _bucket(self, device: str) -> tuple[_Bucket, _Bucket]:
        """The device's (requests, bytes) buckets; the least recently seen are forgotten."""
        buckets = self._buckets.get(device)
        if buckets is None:
            now, lim = self._clock(), self.limits
            buckets = (_Bucket(lim.requests_per_s, lim.requests_burst, now),
                       _Bucket(lim.bytes_per_s, lim.bytes_burst, now))
            self._buckets[device] = buckets
            while len(self._buckets) > lim.devices:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(device)
        return buckets

    def _count(self, what: str, n: int = 1) -> None:
        with self._lock:
            self.counters[what] += n

    def _wire(self, client: Any, lost: threading.Event) -> None:
        def publish(t: str, p: bytes) -> None:
            client.publish(t, p, qos=1)

        client.on_message = lambda _c, _u, msg: self.handle(msg.topic, bytes(msg.payload),
                                                            publish)
        client.on_disconnect = lambda *_a: lost.set()

    def run(self, *, stop: threading.Event, on_ready: Callable[[], None] | None = None) -> None:
        """Serve until ``stop`` is set, reconnecting when the broker goes away."""
        first = True
        while not stop.is_set():
            try:
                conn = connect(self.broker, client_id=self.client_id)
            except ChannelError as e:
                log.warning("artifact server: %s; retrying", e)
                stop.wait(0.5)
                continue
            client = conn.client
            lost = threading.Event()
            self._wire(client, lost)
            shared = conn.version == "5" and self.share_group
            client.subscribe(f"$share/{self.share_group}/{_REQUESTS}" if shared else _REQUESTS,
                             qos=1)
            if first and on_ready is not None:
                on_ready()
            first = False
            while not stop.is_set() and not lost.is_set():
                client.loop(timeout=0.05)
            conn.close()
