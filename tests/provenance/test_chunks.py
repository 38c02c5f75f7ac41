"""Content-defined chunks: boundaries follow the content, so shifted or partly changed files
share most of their chunks; the chunks always tile the file exactly."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

from edgeward.provenance import content_chunks
from edgeward.provenance._chunks import CHUNK_MAX, CHUNK_MIN


def _bytes(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def test_chunks_tile_the_file_within_their_bounds(tmp_path: Path) -> None:
    data = _bytes(3_000_000, 1)
    path = tmp_path / "f"
    path.write_bytes(data)
    chunks = content_chunks(path)
    assert [c[0] for c in chunks] == [0, *[o + n for o, n, _ in chunks[:-1]]]
    assert sum(n for _, n, _ in chunks) == len(data)
    assert all(CHUNK_MIN <= n <= CHUNK_MAX for _, n, _ in chunks[:-1])
    assert all(hashlib.sha256(data[o:o + n]).hexdigest() == h for o, n, h in chunks)
    assert 15 < len(chunks) < 150  # about 64 KiB on average


def test_shifted_and_edited_content_keeps_its_chunks(tmp_path: Path) -> None:
    base = _bytes(4_000_000, 2)
    old, new = tmp_path / "old", tmp_path / "new"
    old.write_bytes(base)
    # 777 bytes inserted at the front, 200 kB replaced in the middle
    new.write_bytes(_bytes(777, 3) + base[:1_500_000] + _bytes(200_000, 4) + base[1_700_000:])
    known = {h for _, _, h in content_chunks(old)}
    shared = sum(n for _, n, h in content_chunks(new) if h in known)
    assert shared / new.stat().st_size > 0.75  # all but the edit and its neighbouring chunks
    # fixed-size chunks would share nothing after the insertion
    fixed = {hashlib.sha256(base[i:i + 65536]).hexdigest() for i in range(0, len(base), 65536)}
    moved = new.read_bytes()
    assert not any(hashlib.sha256(moved[i:i + 65536]).hexdigest() in fixed
                   for i in range(0, len(moved), 65536))


def test_small_and_empty_files(tmp_path: Path) -> None:
    (tmp_path / "empty").write_bytes(b"")
    assert content_chunks(tmp_path / "empty") == []
    (tmp_path / "small").write_bytes(b"abc")
    assert content_chunks(tmp_path / "small") == [
        (0, 3, hashlib.sha256(b"abc").hexdigest())]
