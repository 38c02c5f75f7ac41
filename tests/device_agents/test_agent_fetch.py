"""Chunked, resumable artifact transfer over a real Mosquitto: the artifact server answers chunk
requests, the device's fetcher assembles and checks the file; a broker restart and a fetcher
restart in the middle resume with the chunks already on disk."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from edgeward.device_agents._fetch import Fetcher
from edgeward.errors import ChannelError, RejectedMessageError
from edgeward.fleet._artifacts import ArtifactServer
from edgeward.fleet._broker import MosquittoBroker
from edgeward.fleet.protocol import BrokerOptions
from edgeward.fleet.protocol._transfer import Chunk, ChunkRequest, chunk_count

CHUNK = 64 * 1024


def test_chunk_frames_are_checked() -> None:
    data = os.urandom(1000)
    frame = Chunk(1, 2, CHUNK + 1000, CHUNK, data).encode()
    assert Chunk.decode(frame).data == data
    corrupted = frame[:-1] + bytes([frame[-1] ^ 1])
    with pytest.raises(RejectedMessageError) as e:
        Chunk.decode(corrupted)
    assert e.value.reason == "forged"
    with pytest.raises(RejectedMessageError, match="expected"):
        Chunk.decode(Chunk(0, 2, CHUNK + 1000, CHUNK, data).encode())  # short first chunk
    with pytest.raises(RejectedMessageError):
        Chunk.decode(b"EWC1" + b"\0" * 10)
    assert chunk_count(CHUNK * 3, CHUNK) == 3 and chunk_count(1, CHUNK) == 1
    req = ChunkRequest("pi-01", (0, 5, 9), CHUNK)
    assert ChunkRequest.decode(req.encode()) == req
    for bad in (b"[]", b'{"device_id": "pi-01", "chunks": [], "chunk_size": 65536}',
                b'{"device_id": "a/b", "chunks": [1], "chunk_size": 65536}', b"\xff"):
        with pytest.raises(RejectedMessageError):
            ChunkRequest.decode(bad)


@pytest.fixture
def artifact(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "model.bin"
    path.write_bytes(os.urandom(CHUNK * 40 + 1234))  # 41 chunks, the last one short
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def _serve(server: ArtifactServer) -> tuple[threading.Event, threading.Thread]:
    stop, ready = threading.Event(), threading.Event()
    t = threading.Thread(target=server.run, kwargs={"stop": stop, "on_ready": ready.set},
                         daemon=True)
    t.start()
    assert ready.wait(15)
    return stop, t


@pytest.mark.integration
def test_a_full_transfer_arrives_whole(tmp_path: Path, broker: MosquittoBroker,
                                       artifact: tuple[Path, str]) -> None:
    src, digest = artifact
    server = ArtifactServer(tmp_path / "store", BrokerOptions(url=broker.url))
    assert server.add(src) == digest
    stop, t = _serve(server)
    try:
        fetcher = Fetcher(tmp_path / "state", BrokerOptions(url=broker.url), "pi-01",
                          chunk_size=CHUNK, window=4)
        path, stats = fetcher.fetch(digest, deadline_s=60)  # size learnt from the first chunk
    finally:
        stop.set()
        t.join(10)
    assert path.read_bytes() == src.read_bytes()
    assert (stats.chunks, stats.received, stats.duplicates) == (41, 41, 0)
    assert not list((tmp_path / "state" / "downloads").glob("*.part"))
    # a second fetch of the same digest is already there
    assert fetcher.fetch(digest)[1].received == 0


@pytest.mark.integration
@pytest.mark.chaos
def test_a_broker_restart_and_a_fetcher_restart_resume(tmp_path: Path, broker: MosquittoBroker,
                                                       artifact: tuple[Path, str]) -> None:
    src, digest = artifact
    server = ArtifactServer(tmp_path / "store", BrokerOptions(url=broker.url))
    server.add(src)
    stop_server, t = _serve(server)
    options = BrokerOptions(url=broker.url)
    halfway, give_up = threading.Event(), threading.Event()

    def at(done: int, total: int) -> None:
        if done >= total // 3:
            halfway.set()
        if done >= 2 * total // 3:
            give_up.set()  # the agent is stopped two thirds of the way

    try:
        fetcher = Fetcher(tmp_path / "state", options, "pi-01", chunk_size=CHUNK, window=2,
                          timeout_s=2.0)
        box: dict[str, object] = {}

        def run() -> None:
            try:
                fetcher.fetch(digest, size=src.stat().st_size, progress=at, stop=give_up,
                              deadline_s=90)
            except ChannelError as e:
                box["stopped"] = e

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        assert halfway.wait(30)
        broker.stop()  # the broker goes away a third of the way in ...
        broker.start()  # ... and comes back
        worker.join(90)
        assert "stopped" in box, "the fetch should have been stopped two thirds of the way"
        have = (tmp_path / "state" / "downloads" / f"{digest}.have").read_bytes()
        on_disk = sum(have[8:])
        assert 41 * 2 // 3 <= on_disk < 41
        # a new fetcher (the agent restarted) asks only for what is missing
        path, stats = Fetcher(tmp_path / "state", options, "pi-01", chunk_size=CHUNK,
                              window=4).fetch(digest, deadline_s=60)
    finally:
        stop_server.set()
        t.join(10)
    assert path.read_bytes() == src.read_bytes()
    assert stats.resumed_with == on_disk and stats.received == 41 - on_disk
    twice = sum(n - 1 for n in server.sent.values() if n > 1)
    assert twice <= 2 * 2, f"{twice} chunks were sent twice (window 2, one broker restart)"


@pytest.mark.integration
def test_the_cli_serves_artifacts(tmp_path: Path, broker: MosquittoBroker,
                                  artifact: tuple[Path, str]) -> None:
    src, digest = artifact
    toml = tmp_path / "fleet.toml"
    toml.write_text(f'broker = "{broker.url}"\nstore = "fleet.db"\n')
    proc = subprocess.Popen([sys.executable, "-m", "edgeward.cli", "fleet", "serve-artifacts",
                             "--config", str(toml), "--dir", str(tmp_path / "store"),
                             "--add", str(src), "--duration", "60", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        fetcher = Fetcher(tmp_path / "state", BrokerOptions(url=broker.url), "pi-03",
                          chunk_size=CHUNK, window=8, timeout_s=1.0)
        path, _stats = fetcher.fetch(digest, deadline_s=45)  # retries until the server is up
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert path.read_bytes() == src.read_bytes()
    result = json.loads(out)
    assert result["added"] == [digest] and result["counters"]["chunks_sent"] >= 41, err


@pytest.mark.integration
def test_a_delta_fetch_downloads_only_what_the_device_lacks(
        tmp_path: Path, broker: MosquittoBroker) -> None:
    import random

    from edgeward.provenance import content_chunks

    rng = random.Random(5)
    base = rng.randbytes(CHUNK * 60)
    old = tmp_path / "old.bin"
    old.write_bytes(base)
    new = tmp_path / "new.bin"  # a header that grew, then the same content with one part changed
    new.write_bytes(rng.randbytes(3000) + base[:CHUNK * 30] + rng.randbytes(CHUNK * 3)
                    + base[CHUNK * 33:])
    digest = hashlib.sha256(new.read_bytes()).hexdigest()
    server = ArtifactServer(tmp_path / "store", BrokerOptions(url=broker.url))
    server.add(new)
    stop, t = _serve(server)
    try:
        fetcher = Fetcher(tmp_path / "state", BrokerOptions(url=broker.url), "pi-04",
                          chunk_size=CHUNK, window=8)
        size = new.stat().st_size
        reused = fetcher.seed(digest, size, content_chunks(new), [old])
        path, stats = fetcher.fetch(digest, size=size, deadline_s=60)
    finally:
        stop.set()
        t.join(10)
    assert path.read_bytes() == new.read_bytes()
    total = chunk_count(size, CHUNK)
    assert reused > 0.8 * size
    assert stats.resumed_with > 0.8 * total and stats.received == total - stats.resumed_with
    assert server.counters["chunks_sent"] < 0.2 * total


_FETCH_IN_A_SMALL_DISK = """
import resource, signal, sys
from pathlib import Path
from edgeward.device_agents._fetch import Fetcher
from edgeward.errors import EdgewardError
from edgeward.fleet.protocol import BrokerOptions
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
limit = int(sys.argv[4])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
try:
    Fetcher(Path(sys.argv[1]), BrokerOptions(url=sys.argv[2]), "pi-01", chunk_size=65536,
            window=2).fetch(sys.argv[3], deadline_s=60)
except EdgewardError as e:
    print(type(e).__name__, e)
    sys.exit(e.exit_code)
"""


@pytest.mark.integration
@pytest.mark.chaos
def test_disk_full_during_a_transfer_stops_clearly_and_resumes(
        tmp_path: Path, broker: MosquittoBroker, artifact: tuple[Path, str]) -> None:
    src, digest = artifact
    server = ArtifactServer(tmp_path / "store", BrokerOptions(url=broker.url))
    server.add(src)
    stop, t = _serve(server)
    try:
        # the "disk" holds 10 chunks: the part file cannot grow past them
        proc = subprocess.run([sys.executable, "-c", _FETCH_IN_A_SMALL_DISK,
                               str(tmp_path / "state"), broker.url, digest, str(10 * CHUNK)],
                              capture_output=True, text=True, timeout=120, check=False)
        assert proc.returncode == 9, proc.stdout + proc.stderr  # ResourceError, at once
        assert "ResourceError" in proc.stdout and "free some space" in proc.stdout
        have = (tmp_path / "state" / "downloads" / f"{digest}.have").read_bytes()
        kept = sum(have[8:])
        assert 0 < kept <= 10  # what was written is recorded, nothing beyond it
        # with room again, the download resumes from what was kept and completes
        path, stats = Fetcher(tmp_path / "state", BrokerOptions(url=broker.url), "pi-01",
                              chunk_size=CHUNK, window=4).fetch(digest, deadline_s=60)
    finally:
        stop.set()
        t.join(10)
    assert path.read_bytes() == src.read_bytes()
    assert stats.resumed_with == kept and stats.received == 41 - kept
