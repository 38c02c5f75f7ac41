"""`edgeward demo` end to end: the detected profile and a reply from the real SmolLM2."""

from __future__ import annotations

import json
import os

import pytest

from edgeward.cli import main

pytestmark = pytest.mark.integration


def test_demo_json(capsys: pytest.CaptureFixture[str], smollm2_gguf) -> None:  # type: ignore[no-untyped-def]
    code = main(["demo", "--json", "--max-tokens", "24",
                 "--question", "What's the capital city of France? Answer in one word."])
    out, _ = capsys.readouterr()
    assert code == 0
    result = json.loads(out)
    assert "Paris" in result["reply"]
    assert result["profile"]["cores"] == len(os.sched_getaffinity(0))
    assert "bandwidth_gbps" in result["profile"]["measured"]
    assert result["stats"]["completion_tokens"] >= 2
    assert result["model"].endswith("SmolLM2-135M-Instruct.Q4_1.gguf")


def test_demo_human_output(capsys: pytest.CaptureFixture[str], smollm2_gguf) -> None:  # type: ignore[no-untyped-def]
    code = main(["demo", "--max-tokens", "16"])
    out, _ = capsys.readouterr()
    assert code == 0
    assert "SmolLM2:" in out and "Detected profile" in out and "tokens/s" in out
