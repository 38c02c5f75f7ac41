"""Fixtures for compression tests: a text long enough to evaluate the tiny model on."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeward.compress import EvalConfig, Text, evaluation_text


@pytest.fixture(scope="session")
def eval_text() -> Text:
    """The built-in evaluation text (always present: it comes with Python)."""
    return evaluation_text()


@pytest.fixture(scope="session")
def tiny_eval_cfg() -> EvalConfig:
    """Two chunks of 128 tokens: enough to exercise every code path in well under a second."""
    return EvalConfig(n_ctx=128, eval_tokens=256, top_k=64)


@pytest.fixture()
def out_dir(tmp_path: Path) -> Path:
    d = tmp_path / "out"
    d.mkdir()
    return d
