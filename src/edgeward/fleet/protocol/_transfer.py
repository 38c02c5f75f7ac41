"""Chunked artifact transfer over MQTT (``edgeward/v1/artifacts/DIGEST/...``).

A device asks for chunks of an artifact by its sha256; an artifact server (a fleet-side role)
answers with each chunk on a topic for that device only::

    edgeward/v1/artifacts/DIGEST/req                 device -> server   JSON ChunkRequest
    edgeward/v1/artifacts/DIGEST/chunks/DEVICE       server -> device   binary chunk frames

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

from edgeward.errors import ConfigError, RejectedMessageError
from edgeward.fleet.protocol._topics import TOPIC_ROOT, check_device_id

__all__ = ["CHUNK_HEADER", "DEFAULT_CHUNK_SIZE", "MAX_CHUNK_SIZE", "MAX_REQUEST_CHUNKS", "Chunk",
           "ChunkRequest", "chunk_count", "chunk_topic", "parse_request_topic", "request_topic"]

DEFAULT_CHUNK_SIZE = 256 * 1024  # bytes
MAX_CHUNK_SIZE = 8 * 1024 * 1024  # bytes: well within Mosquitto's default message size limit
MAX_REQUEST_CHUNKS = 1024  # chunk indexes in one request
_MAGIC = b"EWC1"
CHUNK_HEADER = struct.Struct(">4sIIQI32s")
_DIGEST = re.compile(r"[0-9a-f]{64}")


def request_topic(digest: str) -> str:
    """``edgeward/v1/artifacts/DIGEST/req``."""
    _check_digest(digest)
    return f"{TOPIC_ROOT}/artifacts/{digest}/req"


def chunk_topic(digest: str, device_id: str) -> str:
    """``edgeward/v1/artifacts/DIGEST/chunks/DEVICE``."""
    _check_digest(digest)
    check_device_id(device_id)
    return f"{TOPIC_ROOT}/artifacts/{digest}/chunks/{device_id}"


def parse_request_topic(topic: str) -> str:
    """The digest of a request topic.

    Raises:
        RejectedMessageError: ``bad_topic``.
    """
    parts = topic.split("/")
    if len(parts) != 5 or "/".join(parts[:3]) != f"{TOPIC_ROOT}/artifacts" \
            or parts[4] != "req" or not _DIGEST.fullmatch(parts[3]):
        raise RejectedMessageError(f"{topic!r:.120} is not {TOPIC_ROOT}/artifacts/DIGEST/req",
                                   reason="bad_topic")
    return parts[3]


def chunk_count(size: int, chunk_size: int) -> int:
    """Chunks of an artifact of ``size`` bytes (at least one)."""
    return max(1, -(-size // chunk_size))


@dataclass(frozen=True)
class ChunkRequest:
    """A device's request for chunks.

    Attributes:
        device_id: where the chunks go (``.../chunks/DEVICE``).
        chunks: the chunk indexes wanted (at most 1,024).
        chunk_size: the chunking the device uses (bytes).
    """

    device_id: str
    chunks: tuple[int, ...]
    chunk_size: int = DEFAULT_CHUNK_SIZE

    def __post_init__(self) -> None:
        try:
            check_device_id(self.device_id)
        except ConfigError as e:
            raise RejectedMessageError(str(e), reason="malformed") from e
        if not 4096 <= self.chunk_size <= MAX_CHUNK_SIZE:
            raise RejectedMessageError(f"chunk_size {self.chunk_size!r} is not 4096.."
                                       f"{MAX_CHUNK_SIZE}", reason="malformed")
        if not self.chunks or len(self.chunks) > MAX_REQUEST_CHUNKS or not all(
                isinstance(i, int) and not isinstance(i, bool) and 0 <= i < 2**32
                for i in self.chunks):
            raise RejectedMessageError(f"chunks must be 1..{MAX_REQUEST_CHUNKS} indexes",
                                       reason="malformed")

    def encode(self) -> bytes:
        """The JSON payload."""
        return json.dumps({"device_id": self.device_id, "chunks": list(self.chunks),
                           "chunk_size": self.chunk_size}, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, payload: bytes) -> ChunkRequest:
        """Parse a request.

        Raises:
            RejectedMessageError: ``oversize`` or ``malformed``.
        """
        if len(payload) > 16 * 1024:
            raise RejectedMessageError("chunk request over 16 KiB", reason="oversize")
        try:
            d = json.loads(payload)
            if set(d) != {"device_id", "chunks", "chunk_size"}:
                raise ValueError(f"fields {sorted(d)}")
            return cls(str(d["device_id"]), tuple(d["chunks"]), d["chunk_size"])
        except RejectedMessageError:
            raise
        except (ValueError, TypeError, AttributeError) as e:
            raise RejectedMessageError(f"not a chunk request ({e})", reason="malformed") from e


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


def _check_digest(digest: str) -> None:
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        raise RejectedMessageError(f"{digest!r:.80} is not a sha256 hex digest",
                                   reason="bad_topic")
