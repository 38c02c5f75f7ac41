"""Streaming sha256 of artifact files: block boundaries, threads, file listing."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from edgeward.errors import ArtifactError, ConfigError
from edgeward.provenance import HashConfig
from edgeward.provenance._digest import artifact_files, file_sha256, hash_files


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 4097, 3 * 4096 + 5])
def test_streamed_digest_equals_hashlib_across_block_boundaries(tmp_path: Path,
                                                                size: int) -> None:
    data = os.urandom(size)
    f = tmp_path / "f.bin"
    f.write_bytes(data)
    assert file_sha256(f, block_size=4096) == hashlib.sha256(data).hexdigest()


def test_parallel_and_serial_hashing_agree(tmp_path: Path) -> None:
    files = {}
    for i in range(6):
        p = tmp_path / f"d{i % 2}" / f"shard-{i}.bin"
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(os.urandom(50_000 + i))
    files = artifact_files(tmp_path)
    assert list(files) == sorted(files) and "d0/shard-0.bin" in files
    serial = hash_files(files, config=HashConfig(workers=1, block_size=8192))
    parallel = hash_files(files, config=HashConfig(workers=4, block_size=8192))
    assert serial == parallel
    assert serial["d1/shard-5.bin"] == hashlib.sha256(
        (tmp_path / "d1" / "shard-5.bin").read_bytes()).hexdigest()


def test_listing_rules(tmp_path: Path) -> None:
    single = tmp_path / "m.gguf"
    single.write_bytes(b"x")
    assert artifact_files(single) == {"m.gguf": single}
    (tmp_path / "dir" / ".git").mkdir(parents=True)
    (tmp_path / "dir" / ".git" / "HEAD").write_text("ref")
    (tmp_path / "dir" / "a").write_text("a")
    assert set(artifact_files(tmp_path / "dir")) == {".git/HEAD", "a"}
    assert set(artifact_files(tmp_path / "dir", ignore=[".git"])) == {"a"}
    with pytest.raises(ConfigError, match="no such file or directory"):
        artifact_files(tmp_path / "missing")
    (tmp_path / "dir" / "ln").symlink_to(tmp_path / "dir" / "a")
    with pytest.raises(ArtifactError, match="not a regular file"):
        hash_files(artifact_files(tmp_path / "dir"))


def test_hash_config_validates_with_units() -> None:
    with pytest.raises(ConfigError, match="at least 4096 bytes, got 10"):
        HashConfig(block_size=10)
    with pytest.raises(ConfigError, match="workers must be >= 0, got -1"):
        HashConfig(workers=-1)
    assert HashConfig().worker_count(1) == 1
