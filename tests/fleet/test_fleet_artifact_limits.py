"""What one chunk request can cost the artifact server (issue 18, break 3): the chunking is the
server's to bound, repeated indexes count once, a request names a bounded number of indexes
inside the artifact, a device cannot ask for another device's chunks, and each device is rate
limited (requests and bytes, with a burst). Fast: the server's ``handle`` with a fake publish
and a fake clock; the chunk-request decoder is fuzzed (bounded) for internal errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeward.errors import ConfigError, RejectedMessageError
from edgeward.fleet._artifacts import ArtifactServer, ServeLimits
from edgeward.fleet.protocol import BrokerOptions
from edgeward.fleet.protocol._transfer import (
    MAX_REQUEST_CHUNKS,
    Chunk,
    ChunkRequest,
    parse_request_topic,
    request_topic,
)

KIB = 1024


class _Sink:
    def __init__(self) -> None:
        self.frames: list[tuple[str, bytes]] = []

    def __call__(self, topic: str, payload: bytes) -> None:
        self.frames.append((topic, payload))

    @property
    def data_bytes(self) -> int:
        return sum(len(Chunk.decode(p).data) for _t, p in self.frames)


def _server(tmp_path: Path, size: int, **limits: float) -> tuple[ArtifactServer, str, list[float]]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    src = tmp_path / "model.bin"
    src.write_bytes(os.urandom(size))
    now = [1000.0]
    server = ArtifactServer(tmp_path / "store", BrokerOptions(url="mqtt://127.0.0.1:1"),
                            limits=ServeLimits(**limits),  # type: ignore[arg-type]
                            clock=lambda: now[0])
    return server, server.add(src), now


def _raw(device: str, chunks: list[int], chunk_size: int) -> bytes:
    return json.dumps({"device_id": device, "chunks": chunks, "chunk_size": chunk_size}).encode()


def test_the_red_team_request_costs_at_most_the_servers_chunking(tmp_path: Path) -> None:
    server, digest, _now = _server(tmp_path, 8 << 20, chunk_size=256 * KIB)
    sink = _Sink()
    # the 177-byte request that pushed 167.8 MB: 40 times chunk 0 at 4 MiB chunks
    server.handle(request_topic(digest, "dev-b"), _raw("dev-b", [0] * 40, 4 << 20), sink)
    assert sink.frames == [] and server.counters["rejected.chunk_size"] == 1
    # at a chunking the server allows, repeated indexes are sent once
    request = _raw("dev-b", [0] * 40 + [3, 3, 1], 256 * KIB)
    server.handle(request_topic(digest, "dev-b"), request, sink)
    assert [Chunk.decode(p).index for _t, p in sink.frames] == [0, 3, 1]
    assert sink.data_bytes <= 3 * server.limits.chunk_size
    assert server.counters["bytes_sent"] == sink.data_bytes


@pytest.mark.parametrize("chunks", [[0] * 40, [5, 5, 5, 1, 99, 2**31], list(range(64)),
                                    [0, 1, 1, 2, 2, 2, 3]])
def test_bytes_per_request_stay_within_distinct_chunks_times_the_chunk_size(
        tmp_path: Path, chunks: list[int]) -> None:
    server, digest, _now = _server(tmp_path, 40 * 64 * KIB + 5, chunk_size=64 * KIB)
    sink = _Sink()
    server.handle(request_topic(digest, "pi-01"), _raw("pi-01", chunks, 64 * KIB), sink)
    in_range = {i for i in chunks if i <= 40}
    assert len(sink.frames) == len(in_range)
    assert sink.data_bytes <= len(set(chunks)) * server.limits.chunk_size
    assert server.counters["rejected.bad_index"] == len({i for i in chunks if i > 40})


def test_a_request_may_not_name_too_many_indexes(tmp_path: Path) -> None:
    server, digest, _now = _server(tmp_path, 100 * 4096, chunk_size=4096)
    sink = _Sink()
    server.handle(request_topic(digest, "pi-01"),
                  _raw("pi-01", list(range(MAX_REQUEST_CHUNKS + 1)), 4096), sink)
    assert sink.frames == [] and server.counters["rejected.malformed"] == 1


def test_a_device_cannot_request_chunks_for_another(tmp_path: Path) -> None:
    server, digest, _now = _server(tmp_path, 64 * KIB)
    sink = _Sink()
    server.handle(request_topic(digest, "dev-a"), _raw("dev-b", [0], 64 * KIB), sink)
    server.handle(f"edgeward/v1/artifacts/{digest}/req", _raw("dev-b", [0], 64 * KIB), sink)
    assert sink.frames == []
    assert server.counters["rejected.wrong_device"] == 1
    assert server.counters["rejected.bad_topic"] == 1
    server.handle(request_topic(digest, "dev-b"), _raw("dev-b", [0], 64 * KIB), sink)
    assert [t for t, _p in sink.frames] == [f"edgeward/v1/artifacts/{digest}/chunks/dev-b"]


def test_each_device_is_rate_limited_in_bytes_and_requests(tmp_path: Path) -> None:
    limits = {"chunk_size": 64 * KIB, "bytes_per_s": 256 * KIB, "bytes_burst": 512 * KIB,
              "requests_per_s": 5.0, "requests_burst": 10}
    server, digest, now = _server(tmp_path, 64 * 64 * KIB, **limits)
    sinks = {"dev-a": _Sink(), "dev-b": _Sink()}
    start = now[0]
    for second in range(10):  # dev-a asks for everything 50 times a second for 10 s
        for _ in range(50):
            server.handle(request_topic(digest, "dev-a"),
                          _raw("dev-a", list(range(64)), 64 * KIB), sinks["dev-a"])
            now[0] += 0.02
        if second == 5:  # another device is not affected by dev-a
            server.handle(request_topic(digest, "dev-b"), _raw("dev-b", [0, 1], 64 * KIB),
                          sinks["dev-b"])
    elapsed = now[0] - start
    assert sinks["dev-a"].data_bytes <= 512 * KIB + 256 * KIB * elapsed
    assert sinks["dev-a"].data_bytes >= 256 * KIB * (elapsed - 1)  # it is served at the rate
    assert sinks["dev-b"].data_bytes == 2 * 64 * KIB
    assert server.counters["rejected.rate_limited"] > 0
    # requests: at most the burst plus the rate, whatever their size
    server2, digest2, now2 = _server(tmp_path / "2", 4096, **limits)
    sink = _Sink()
    for _ in range(100):
        server2.handle(request_topic(digest2, "dev-c"), _raw("dev-c", [0], 64 * KIB), sink)
        now2[0] += 0.01
    assert len(sink.frames) <= 10 + 5 * 1.0 + 1
    assert server2.counters["rejected.rate_limited"] >= 100 - 16


def test_the_limits_validate_themselves() -> None:
    with pytest.raises(ConfigError, match="chunk_size"):
        ServeLimits(chunk_size=100)
    with pytest.raises(ConfigError, match="bytes_burst"):
        ServeLimits(chunk_size=1 << 20, bytes_burst=1000)


def test_request_topics_carry_the_device() -> None:
    digest = "ab" * 32
    assert request_topic(digest, "pi-01") == f"edgeward/v1/artifacts/{digest}/req/pi-01"
    assert parse_request_topic(request_topic(digest, "pi-01")) == (digest, "pi-01")
    for bad in (f"edgeward/v1/artifacts/{digest}/req", f"edgeward/v1/artifacts/{digest}/req/+",
                f"edgeward/v1/artifacts/{digest}/req/a/b", "edgeward/v1/artifacts/xx/req/pi-01"):
        with pytest.raises(RejectedMessageError) as e:
            parse_request_topic(bad)
        assert e.value.reason == "bad_topic"


def test_malformed_requests_are_refused_as_malformed() -> None:
    deep = b"[" * 5000 + b"]" * 5000
    for bad in (deep, b'{"device_id": "pi-01", "chunks": [1.0], "chunk_size": 65536}',
                b'{"device_id": "pi-01", "chunks": [true], "chunk_size": 65536}',
                b'{"device_id": 7, "chunks": [1], "chunk_size": 65536}',
                b'{"device_id": "pi-01", "chunks": [1], "chunk_size": "65536"}',
                b'{"device_id": "pi-01", "chunks": [-1], "chunk_size": 65536}',
                b'{"device_id": "\\ud800", "chunks": [1], "chunk_size": 65536}',
                b'{"device_id": "pi-01", "chunks": [NaN], "chunk_size": 65536}'):
        with pytest.raises(RejectedMessageError) as e:
            ChunkRequest.decode(bad)
        assert e.value.reason in ("malformed", "oversize"), bad[:60]
    assert ChunkRequest.decode(_raw("pi-01", [3, 3, 1], 65536)).chunks == (3, 1)


_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
                     lambda c: st.lists(c) | st.dictionaries(st.text(), c), max_leaves=20)
_FIELDS = st.fixed_dictionaries({"device_id": _JSON | st.from_regex(r"[a-z]{1,8}", fullmatch=True),
                                 "chunks": _JSON | st.lists(st.integers()),
                                 "chunk_size": _JSON | st.integers()})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=300), _JSON.map(lambda v: json.dumps(v).encode()),
                 _FIELDS.map(lambda v: json.dumps(v).encode())))
def test_fuzzed_chunk_requests_never_end_in_an_internal_error(payload: bytes) -> None:
    try:
        req = ChunkRequest.decode(payload)
    except RejectedMessageError as e:
        assert e.reason in ("malformed", "oversize")
        return
    assert len(req.chunks) == len(set(req.chunks)) <= MAX_REQUEST_CHUNKS
