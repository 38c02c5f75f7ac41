"""The fast GGUF header reader agrees with gguf-py and rejects broken files clearly."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeward.errors import ArtifactError
from edgeward.runtimes import read_gguf_header


def test_header_matches_gguf_py(tiny_gguf: Path) -> None:
    import gguf

    header = read_gguf_header(tiny_gguf)
    reader = gguf.GGUFReader(tiny_gguf)
    assert header.architecture == "llama"
    assert header.arch_value("block_count") == 2
    assert header.arch_value("context_length") == 512
    assert header.data_offset == reader.data_offset
    assert [(t.name, t.n_bytes, t.type, tuple(t.shape)) for t in header.tensors] == [
        (t.name, int(t.n_bytes), int(t.tensor_type), tuple(int(d) for d in t.shape))
        for t in reader.tensors]
    assert header.metadata["tokenizer.ggml.tokens"] == ("array", len(reader.fields[
        "tokenizer.ggml.tokens"].data))
    assert header.metadata["tokenizer.ggml.scores"][0] == "array"
    assert header.tensor("output.weight") is not None
    assert header.tensor("nope") is None
    assert header.n_params == sum(int(t.n_elements) for t in reader.tensors)


def test_not_a_gguf_file(tmp_path: Path) -> None:
    p = tmp_path / "model.safetensors"
    p.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}" + b"\x00" * 64)
    with pytest.raises(ArtifactError, match="not a GGUF file"):
        read_gguf_header(p)


@pytest.mark.parametrize("keep", [3, 20, 5000, -100])
def test_truncated_files_are_refused(tiny_gguf: Path, tmp_path: Path, keep: int) -> None:
    data = tiny_gguf.read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[:keep])
    with pytest.raises(ArtifactError, match=r"truncated|not a GGUF"):
        read_gguf_header(cut)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="no such file"):
        read_gguf_header(tmp_path / "absent.gguf")
    with pytest.raises(ArtifactError, match="is a directory"):
        read_gguf_header(tmp_path)


def test_unsupported_version(tiny_gguf: Path, tmp_path: Path) -> None:
    data = bytearray(tiny_gguf.read_bytes())
    data[4:8] = (99).to_bytes(4, "little")
    p = tmp_path / "v99.gguf"
    p.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="version 99"):
        read_gguf_header(p)
