"""scripts/bench_summary.py: every number of every benchmark result reaches the summary page,
under its path, with the machine; unreadable files are named, not skipped silently."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "bench_summary.py"


@pytest.fixture(scope="module")
def summary() -> dict[str, object]:
    return runpy.run_path(str(SCRIPT))


def test_every_figure_is_listed_with_its_path(summary: dict[str, object],
                                              tmp_path: Path) -> None:
    (tmp_path / "compress_onnx.json").write_text(json.dumps({
        "benchmark": "compress_onnx", "machine": {"cpus": 2, "platform": "Linux"},
        "minilm": {"results": {"int8-dynamic": {"size_ratio": 0.262, "quality": {
            "cosine_mean": 0.992552}}}, "int8_meets_cosine": {"int8-dynamic": True}},
        "rates": [1.5, 2.25], "note": "x | y"}))
    (tmp_path / "broken.json").write_text("{not json")
    page = summary["render"](tmp_path)  # type: ignore[operator]
    assert "## compress_onnx" in page and "Machine: cpus 2, platform Linux" in page
    assert "| `minilm.results.int8-dynamic.size_ratio` | 0.262 |" in page
    assert "| `minilm.results.int8-dynamic.quality.cosine_mean` | 0.992552 |" in page
    assert "| `minilm.int8_meets_cosine.int8-dynamic` | true |" in page
    assert "| `rates` | 1.5, 2.25 |" in page and "| `note` | x / y |" in page
    assert "## broken" in page and "(unreadable:" in page
    assert "`benchmark`" not in page  # the name is the heading, not a figure


def test_the_benchmarks_page_includes_the_latest_summary(summary: dict[str, object],
                                                         tmp_path: Path) -> None:
    (tmp_path / "demo.json").write_text(json.dumps({"benchmark": "demo", "wall_s_median": 131.5,
                                                    "within_limit": True}))
    page = ("# Benchmarks\n\nhand-written tables\n\n<!-- make bench: begin -->\nold run\n"
            "<!-- make bench: end -->\n\nafter\n")
    rendered = summary["render"](tmp_path)  # type: ignore[operator]
    new = summary["include"](page, rendered)  # type: ignore[operator]
    assert new.startswith("# Benchmarks\n\nhand-written tables\n") and new.endswith("after\n")
    assert "old run" not in new and "### demo" in new
    assert "| `wall_s_median` | 131.5 |" in new and "](benchmarks.md)" in new
    again = summary["include"](new, rendered)  # type: ignore[operator]
    assert again == new  # idempotent: the markers stay, the content is replaced
    with pytest.raises(ValueError, match="make bench: begin"):
        summary["include"]("# no markers\n", rendered)  # type: ignore[operator]
