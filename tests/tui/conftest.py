"""Fixtures of the TUI tests: a fixed world (models, keys, a fleet store) and an app factory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("textual", reason="the tui extra (Textual) is not installed")

from _tui_helpers import World, models_dir, populate_fleet, write_keys


@pytest.fixture
def world(tmp_path: Path, tiny_gguf: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    """The fixed world, with paths relative to it (stable screen text)."""
    monkeypatch.chdir(tmp_path)
    key, trust = write_keys(Path())
    models = models_dir(Path(), tiny_gguf, key)
    yield World(tmp_path, models, key, trust, populate_fleet(Path()))
