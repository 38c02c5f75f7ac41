"""The TUI's data layer, without a terminal: formatting, sparklines, model scanning and
profile comparison."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeward.hardware_profiles import resolve_profile
from edgeward.tui._compress import unique_output
from edgeward.tui._data import age, compare_profiles, human_bytes, scan_models, sparkline


@pytest.mark.parametrize(("n", "text"), [(None, "-"), (0, "0 B"), (1023, "1023 B"),
                                         (1536, "1.5 KiB"), (5 << 20, "5.0 MiB"),
                                         (3 << 40, "3.0 TiB")])
def test_human_bytes(n: int | None, text: str) -> None:
    assert human_bytes(n) == text


def test_sparkline_scales_to_the_range_and_keeps_gaps() -> None:
    assert sparkline([]) == "" and sparkline([None, None]) == ""
    assert sparkline([0, 7]) == "▁█"
    assert sparkline([5, 5, 5]) == "▁▁▁"  # flat: the lowest bar, not a division by zero
    assert sparkline([1, None, 3]) == "▁ █"
    assert sparkline(range(20), width=4) == "▁▃▆█"  # the last four only


@pytest.mark.parametrize(("dt", "text"), [(0, "0s"), (59, "59s"), (60, "1m"), (7199, "1h"),
                                          (86400 * 3, "3d"), (-5, "0s")])
def test_age(dt: float, text: str) -> None:
    assert age(1000.0 - dt, 1000.0) == text
    assert age(None, 1000.0) == "never"


def test_compare_profiles_marks_differences() -> None:
    pi, nano = resolve_profile("raspberry-pi-5-8gb"), resolve_profile("jetson-orin-nano-8gb")
    rows = {r[0]: r for r in compare_profiles(pi, nano)}
    assert rows["memory_bytes"] == ("memory_bytes", "8.0 GiB", "8.0 GiB", False)
    assert rows["backend"][1:] == ("cpu", "cuda", True)
    assert all(not differ for *_, differ in compare_profiles(pi, pi))


def test_scan_finds_gguf_files_and_onnx_directories_with_their_reports(
        tmp_path: Path, tiny_gguf: Path) -> None:
    (tmp_path / "a.gguf").write_bytes(tiny_gguf.read_bytes())
    onnx = tmp_path / "enc-int8"
    onnx.mkdir()
    (onnx / "model.onnx").write_bytes(b"x" * 100)
    (onnx / "compression-report.json").write_text(json.dumps(
        {"type": "int8-dynamic", "quality": {"cosine_mean": 0.9931}}))
    (tmp_path / "notes.txt").write_text("not a model")
    (tmp_path / ".hidden.gguf").write_bytes(b"")
    entries = {e.name: e for e in scan_models([tmp_path, tmp_path / "missing"])}
    assert sorted(entries) == ["a.gguf", "enc-int8"]
    assert entries["a.gguf"].quantization == "F32" and entries["a.gguf"].signature == "unsigned"
    assert entries["enc-int8"].format == "onnx" and entries["enc-int8"].quantization == \
        "int8-dynamic"
    assert entries["enc-int8"].quality_text == "cosine 0.9931"
    # a signature next to it, but no trust store to check it against: said so
    (tmp_path / "a.gguf.edgeward.json").write_text("{}")
    (entry,) = [e for e in scan_models([tmp_path]) if e.name == "a.gguf"]
    assert entry.signature == "signed (no trust store to check)"


def test_unique_output_never_overwrites(tmp_path: Path) -> None:
    first = unique_output(tmp_path, "m-pi", ".gguf")
    assert first == tmp_path / "m-pi.gguf"
    first.write_bytes(b"")
    assert unique_output(tmp_path, "m-pi", ".gguf") == tmp_path / "m-pi-2.gguf"
