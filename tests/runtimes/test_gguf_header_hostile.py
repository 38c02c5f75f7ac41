"""Crafted and random GGUF headers end in ArtifactError (exit 4), never an internal error.

The red team's cases (issue 18, break 7): ``general.alignment = 0`` (ZeroDivisionError),
nested arrays (RecursionError), alignment as a string or an array (ValueError, TypeError),
also through ``compress`` and ``compress --plan``; plus a FIFO and ``/dev/zero`` in place of
the file, and hypothesis-generated headers and byte mutations of a real one.
"""

from __future__ import annotations

import contextlib
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeward.errors import ArtifactError
from edgeward.runtimes import read_gguf_header

_U32, _STR, _ARR, _F32 = 4, 8, 9, 6


def _s(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("<Q", len(raw)) + raw


def _kv(key: str, vtype: int, payload: bytes) -> bytes:
    return _s(key) + struct.pack("<I", vtype) + payload


def _nested_array(depth: int) -> bytes:
    inner = struct.pack("<IQ", _U32, 1) + struct.pack("<I", 7)
    for _ in range(depth):
        inner = struct.pack("<IQ", _ARR, 1) + inner
    return inner


def _gguf(*kvs: bytes, align: int = 32) -> bytes:
    """A GGUF v3 file with the given metadata and one 4-element F32 tensor."""
    kvs = (_kv("general.architecture", _STR, _s("llama")), *kvs)
    head = b"GGUF" + struct.pack("<IQQ", 3, 1, len(kvs)) + b"".join(kvs)
    head += _s("w") + struct.pack("<I", 1) + struct.pack("<Q", 4) + struct.pack("<IQ", 0, 0)
    head += b"\0" * (-len(head) % align)
    return head + struct.pack("<4f", 1, 2, 3, 4)


CRAFTED = {
    "alignment zero": _gguf(_kv("general.alignment", _U32, struct.pack("<I", 0))),
    "alignment not a power of two": _gguf(_kv("general.alignment", _U32,
                                              struct.pack("<I", 24))),
    "alignment a string": _gguf(_kv("general.alignment", _STR, _s("32"))),
    "alignment an array": _gguf(_kv("general.alignment", _ARR,
                                    struct.pack("<IQ", _U32, 1) + struct.pack("<I", 32))),
    "nested arrays": _gguf(_kv("x.nested", _ARR, _nested_array(5000))),
    "block count a string": _gguf(_kv("llama.block_count", _STR, _s("two"))),
    "architecture a number": _gguf()[:0] + b"GGUF" + struct.pack("<IQQ", 3, 0, 1)
    + _kv("general.architecture", _U32, struct.pack("<I", 1)),
    "unknown value type": _gguf(_kv("x.odd", 77, b"")),
}


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_crafted_headers_are_artifact_errors(case: str, tmp_path: Path) -> None:
    p = tmp_path / "crafted.gguf"
    p.write_bytes(CRAFTED[case])
    with pytest.raises(ArtifactError, match=r"corrupt|truncated"):
        read_gguf_header(p)


def test_the_crafted_builder_makes_a_valid_file(tmp_path: Path) -> None:
    # the cases above differ from a readable file only in what they name
    p = tmp_path / "ok.gguf"
    p.write_bytes(_gguf(_kv("general.alignment", _U32, struct.pack("<I", 32)),
                        _kv("x.nested", _ARR, _nested_array(2))))
    header = read_gguf_header(p)
    assert header.metadata["general.alignment"] == 32
    assert [t.name for t in header.tensors] == ["w"]


def test_a_fifo_or_a_device_in_place_of_the_file_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "model.gguf"
    os.mkfifo(fifo)
    with pytest.raises(ArtifactError, match="a FIFO, not a regular file"):
        read_gguf_header(fifo)
    link = tmp_path / "zero.gguf"
    link.symlink_to("/dev/zero")
    with pytest.raises(ArtifactError, match="a character device"):
        read_gguf_header(link)


@pytest.mark.parametrize("case", ["alignment zero", "nested arrays", "alignment a string",
                                  "alignment an array"])
@pytest.mark.parametrize("mode", [["--type", "Q8_0"], ["--plan", "--profile",
                                                       "raspberry-pi-5-8gb"]])
def test_compress_answers_crafted_headers_with_exit_4(case: str, mode: list[str],
                                                     tmp_path: Path) -> None:
    p = tmp_path / "crafted.gguf"
    p.write_bytes(CRAFTED[case])
    out = tmp_path / "out.gguf"
    args = [sys.executable, "-m", "edgeward", "compress", str(p), *mode]
    if "--type" in mode:
        args += ["--out", str(out)]
    proc = subprocess.run(args, check=False, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "80"})
    assert proc.returncode == 4, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "GGUF header" in proc.stderr
    assert not out.exists()


_VALUES = st.one_of(
    st.tuples(st.just(_U32), st.integers(0, 2**32 - 1).map(lambda v: struct.pack("<I", v))),
    st.tuples(st.just(_STR), st.text(max_size=20).map(_s)),
    st.tuples(st.just(_F32), st.floats(width=32).map(lambda v: struct.pack("<f", v))),
    st.tuples(st.just(_ARR), st.integers(0, 8).map(_nested_array)),
    st.tuples(st.integers(0, 20), st.binary(max_size=24)),
)
_KEYS = st.sampled_from(["general.alignment", "general.file_type", "llama.block_count",
                         "llama.context_length", "llama.attention.head_count", "general.name",
                         "tokenizer.chat_template", "x.other"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kvs=st.lists(st.tuples(_KEYS, _VALUES), max_size=6), cut=st.integers(0, 400))
def test_generated_headers_never_raise_anything_else(
        kvs: list[tuple[str, tuple[int, bytes]]], cut: int,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    data = _gguf(*(_kv(k, t, v) for k, (t, v) in kvs))
    p = tmp_path_factory.mktemp("gen") / "g.gguf"
    p.write_bytes(data[:len(data) - cut] if cut < len(data) else data)
    with contextlib.suppress(ArtifactError):
        read_gguf_header(p)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(flips=st.lists(st.tuples(st.integers(0, 4095), st.integers(0, 255)), min_size=1,
                      max_size=8))
def test_mutated_real_headers_never_raise_anything_else(tiny_gguf: Path,
                                                        flips: list[tuple[int, int]],
                                                        tmp_path_factory: pytest.TempPathFactory
                                                        ) -> None:
    data = bytearray(tiny_gguf.read_bytes())
    for pos, value in flips:
        data[pos % len(data)] = value
    p = tmp_path_factory.mktemp("mut") / "m.gguf"
    p.write_bytes(bytes(data))
    with contextlib.suppress(ArtifactError):
        read_gguf_header(p)
