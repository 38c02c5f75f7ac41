"""Chunked artifact transfer over MQTT (``edgeward/v1/artifacts/DIGEST/...``).

A device asks for chunks of an artifact by its sha256; an artifact server (a fleet-side role)
answers with each chunk on a topic for that device only::

    edgeward/v1/artifacts/DIGEST/req/DEVICE          device -> server   JSON ChunkRequest
    edgeward/v1/artifacts/DIGEST/chunks/DEVICE       server -> device   binary chunk frames

The request topic names the asking device, so the broker's ACL can confine each device to its
own request topic (``pattern write edgeward/v1/artifacts/+/req/%u``) and the server refuses a
request whose ``device_id`` is not the one of its topic: a device cannot make the server send
chunks to another device. A request is small and bounded (at most ``MAX_REQUEST_CHUNKS``
distinct indexes; repeated ones count once) and its ``chunk_size`` is bounded by the server's.

A chunk frame is binary (no base64: a 100 MB artifact travels as 100 MB)::

    b"EWC1" | index u32 | count u32 | size u64 | chunk_size u32 | sha256(data) 32 bytes | data

Each frame carries the artifact's size and chunking, so a device that knows only the digest
learns them from the first chunk; each chunk's own sha256 catches corruption before it is
written, and the whole file's sha256 (the digest it was asked for) and its signature are
verified before anything installs it.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from dataclasses import dataclass
from typing import Any

from edgeward.errors import ConfigError, RejectedMessageError
from edgeward.fleet.protocol._topics import TOPIC_ROOT, check_device_id
from edgeward.safeio import parse_json

__all__ = ["CHUNK_HEADER", "DEFAULT_CHUNK_SIZE", "MAX_CHUNK_FRAME_BYTES", "MAX_CHUNK_SIZE",
           "MAX_REQUEST_BYTES", "MAX_REQUEST_CHUNKS", "MIN_CHUNK_SIZE", "REQUEST_FILTER",
           "Chunk", "ChunkRequest", "chunk_count", "chunk_topic", "parse_request_topic",
           "request_topic"]

DEFAULT_CHUNK_SIZE = 256 * 1024  # bytes
MIN_CHUNK_SIZE = 4096  # bytes
MAX_CHUNK_SIZE = 8 * 1024 * 1024  # bytes: the protocol's ceiling; a server may serve less
MAX_REQUEST_CHUNKS = 64  # chunk indexes in one request (a fetcher's window is 2-16)
MAX_REQUEST_BYTES = 4 * 1024  # a request of 64 indexes below 2**32 is ~750 bytes
_MAGIC = b"EWC1"
CHUNK_HEADER = struct.Struct(">4sIIQI32s")
MAX_CHUNK_FRAME_BYTES = CHUNK_HEADER.size + MAX_CHUNK_SIZE  # the largest message of the protocol
_DIGEST = re.compile(r"[0-9a-f]{64}")
REQUEST_FILTER = f"{TOPIC_ROOT}/artifacts/+/req/+"  # what an artifact server subscribes to


def request_topic(digest: str, device_id: str) -> str:
    """``edgeward/v1/artifacts/DIGEST/req/DEVICE``: where ``device_id`` asks for chunks."""
    _check_digest(digest)
    check_device_id(device_id)
    return f"{TOPIC_ROOT}/artifacts/{digest}/req/{device_id}"


def chunk_topic(digest: str, device_id: str) -> str:
    """``edgeward/v1/artifacts/DIGEST/chunks/DEVICE``."""
    _check_digest(digest)
    check_device_id(device_id)
    return f"{TOPIC_ROOT}/artifacts/{digest}/chunks/{device_id}"


def parse_request_topic(topic: str) -> tuple[str, str]:
    """The digest and the asking device of a request topic.

    Raises:
        RejectedMessageError: ``bad_topic``.
    """
    parts = topic.split("/") if isinstance(topic, str) and len(topic) <= 256 else []
    try:
        if len(parts) != 6 or "/".join(parts[:3]) != f"{TOPIC_ROOT}/artifacts" \
                or parts[4] != "req" or not _DIGEST.fullmatch(parts[3]):
            raise ConfigError("not a request topic")
        check_device_id(parts[5])
    except ConfigError:
        raise RejectedMessageError(f"{topic!r:.120} is not "
                                   f"{TOPIC_ROOT}/artifacts/DIGEST/req/DEVICE",
                                   reason="bad_topic") from None
    return parts[3], parts[5]


def chunk_count(size: int, chunk_size: int) -> int:
    """Chunks of an artifact of ``size`` bytes (at least one)."""
    return max(1, -(-size // chunk_size))


@dataclass(frozen=True)
class ChunkRequest:
    """A device's request for chunks.

    Attributes:
        device_id: the asking device, where the chunks go (``.../chunks/DEVICE``); it must
            be the device of the request topic.
        chunks: the distinct chunk indexes wanted (1 to ``MAX_REQUEST_CHUNKS``).
        chunk_size: the chunking the device uses (bytes, ``MIN_CHUNK_SIZE`` to
            ``MAX_CHUNK_SIZE``; a server refuses one above its own ``chunk_size``).
    """

    device_id: str
    chunks: tuple[int, ...]
    chunk_size: int = DEFAULT_CHUNK_SIZE

    def __post_init__(self) -> None:
        try:
            check_device_id(self.device_id)
        except ConfigError as e:
            raise RejectedMessageError(str(e), reason="malformed") from e
        if type(self.chunk_size) is not int \
                or not MIN_CHUNK_SIZE <= self.chunk_size <= MAX_CHUNK_SIZE:
            raise RejectedMessageError(f"chunk_size {self.chunk_size!r:.40} is not an integer "
                                       f"{MIN_CHUNK_SIZE}..{MAX_CHUNK_SIZE}", reason="malformed")
        if not isinstance(self.chunks, tuple) or not self.chunks \
                or len(self.chunks) > MAX_REQUEST_CHUNKS or not all(
                type(i) is int and 0 <= i < 2**32 for i in self.chunks) \
                or len(set(self.chunks)) != len(self.chunks):
            raise RejectedMessageError(f"chunks must be 1..{MAX_REQUEST_CHUNKS} distinct "
                                       "indexes (integers 0..2**32-1)", reason="malformed")

    def encode(self) -> bytes:
        """The JSON payload."""
        return json.dumps({"device_id": self.device_id, "chunks": list(self.chunks),
                           "chunk_size": self.chunk_size}, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, payload: bytes) -> ChunkRequest:
        """Parse a request (strictly: exact fields and types; a repeated index counts once).

        Raises:
            RejectedMessageError: ``oversize`` or ``malformed``.
        """
        if len(payload) > MAX_REQUEST_BYTES:
            raise RejectedMessageError(f"chunk request of {len(payload)} bytes is over "
                                       f"{MAX_REQUEST_BYTES}", reason="oversize")
        d: Any = parse_json(payload, what="chunk request", max_depth=2, error=_malformed)
        if not isinstance(d, dict) or set(d) != {"device_id", "chunks", "chunk_size"}:
            raise RejectedMessageError("not a chunk request: a JSON object with exactly "
                                       "device_id, chunks, chunk_size", reason="malformed")
        if not isinstance(d["device_id"], str) or not isinstance(d["chunks"], list):
            raise RejectedMessageError("not a chunk request: device_id must be a string and "
                                       "chunks a list", reason="malformed")
        if len(d["chunks"]) > MAX_REQUEST_CHUNKS:
            raise RejectedMessageError(f"chunk request of {len(d['chunks'])} indexes; at most "
                                       f"{MAX_REQUEST_CHUNKS}", reason="malformed")
        if not all(type(i) is int for i in d["chunks"]):
            raise RejectedMessageError("chunk request: every index must be an integer",
                                       reason="malformed")
        return cls(d["device_id"], tuple(dict.fromkeys(d["chunks"])), d["chunk_size"])


@dataclass(frozen=True)
class Chunk:
    """One chunk frame.

    Attributes:
        index: which chunk.
        count: chunks in the artifact.
        size: the artifact's size (bytes).
        chunk_size: the chunking (bytes).
        data: the chunk's bytes.
    """

    index: int
    count: int
    size: int
    chunk_size: int
    data: bytes

    def encode(self) -> bytes:
        """The binary frame."""
        return CHUNK_HEADER.pack(_MAGIC, self.index, self.count, self.size, self.chunk_size,
                                 hashlib.sha256(self.data).digest()) + self.data

    @classmethod
    def decode(cls, payload: bytes) -> Chunk:
        """Parse and check a frame (its data against its sha256, its length against the
        chunking).

        Raises:
            RejectedMessageError: ``malformed`` (short, bad magic, inconsistent) or ``forged``
                (the data does not match its sha256: corrupted).
        """
        if len(payload) < CHUNK_HEADER.size:
            raise RejectedMessageError("chunk frame too short", reason="malformed")
        magic, index, count, size, chunk_size, digest = CHUNK_HEADER.unpack_from(payload)
        data = payload[CHUNK_HEADER.size:]
        if magic != _MAGIC or not 0 < chunk_size <= MAX_CHUNK_SIZE \
                or count != chunk_count(size, chunk_size) or index >= count:
            raise RejectedMessageError("not a consistent chunk frame", reason="malformed")
        expected = min(chunk_size, size - index * chunk_size)
        if len(data) != expected:
            raise RejectedMessageError(f"chunk {index}: {len(data)} bytes, expected {expected}",
                                       reason="malformed")
        if hashlib.sha256(data).digest() != digest:
            raise RejectedMessageError(f"chunk {index}: data does not match its sha256",
                                       reason="forged")
        return cls(index, count, size, chunk_size, data)


def _malformed(message: str) -> RejectedMessageError:
    return RejectedMessageError(message, reason="malformed")


def _check_digest(digest: str) -> None:
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        raise RejectedMessageError(f"{digest!r:.80} is not a sha256 hex digest",
                                   reason="bad_topic")
