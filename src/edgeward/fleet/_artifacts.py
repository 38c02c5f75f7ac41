"""The artifact server: answers devices' chunk requests from a directory of artifacts.

Artifacts are stored by digest (``DIR/SHA256``, with the signature as
``DIR/SHA256.edgeward.json``); :meth:`ArtifactServer.add` puts one there. The server subscribes
to ``edgeward/v1/artifacts/+/req`` (a shared subscription on MQTT 5, so several servers split
the requests) and publishes each requested chunk, QoS 1, on the asking device's chunk topic.
It counts every chunk it sends, so a benchmark can tell how many were sent twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgeward.errors import ChannelError, ConfigError, RejectedMessageError
from edgeward.fleet.protocol import BrokerOptions, connect
from edgeward.fleet.protocol._transfer import (
    Chunk,
    ChunkRequest,
    chunk_count,
    chunk_topic,
    parse_request_topic,
)
from edgeward.provenance import content_chunks

__all__ = ["ArtifactServer"]

log = logging.getLogger("edgeward.fleet")
_REQUESTS = "edgeward/v1/artifacts/+/req"


class ArtifactServer:
    """Serves the artifacts of ``directory`` over MQTT (see the module docstring).

    Args:
        directory: the artifact store (created if missing).
        broker: the broker.
        client_id: the MQTT client id.
        share_group: the MQTT 5 shared-subscription group (``""``: a plain subscription).
    """

    def __init__(self, directory: Path, broker: BrokerOptions, *,
                 client_id: str = "edgeward-artifacts", share_group: str = "artifacts") -> None:
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
            digest = parse_request_topic(topic)
            req = ChunkRequest.decode(payload)
        except RejectedMessageError as e:
            self.counters[f"rejected.{e.reason}"] += 1
            return
        path = self.directory / digest
        try:
            size = path.stat().st_size
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            self.counters["unknown_artifact"] += 1
            return
        try:
            count = chunk_count(size, req.chunk_size)
            out = chunk_topic(digest, req.device_id)
            for index in req.chunks:
                if index >= count:
                    self.counters["rejected.bad_index"] += 1
                    continue
                data = os.pread(fd, req.chunk_size, index * req.chunk_size)
                publish(out, Chunk(index, count, size, req.chunk_size, data).encode())
                with self._lock:
                    self.sent[(digest, index)] += 1
                    self.counters["chunks_sent"] += 1
                    self.counters["bytes_sent"] += len(data)
        finally:
            os.close(fd)

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
