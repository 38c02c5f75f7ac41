"""Fixtures for the provenance tests: fixed keys, small artifacts, trust stores, goldens.

Goldens (``goldens/``) hold byte-exact canonical statements and envelopes. They are compared,
never rewritten, unless the run is given ``--update-goldens``::

    .venv/bin/python -m pytest tests/provenance --update-goldens
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from _prov_helpers import GOLDEN_FILES, fixed_key, write_files

from edgeward.provenance import PrivateKey, Role, TrustStore, generate_key

GOLDENS = Path(__file__).parent / "goldens"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-goldens", action="store_true", default=False,
                     help="Rewrite tests/provenance/goldens/ from the current output.")


@pytest.fixture
def golden(request: pytest.FixtureRequest) -> Callable[[str, bytes], None]:
    """``golden(name, data)``: assert ``data`` equals goldens/NAME (or rewrite it)."""
    update = bool(request.config.getoption("--update-goldens"))

    def check(name: str, data: bytes) -> None:
        path = GOLDENS / name
        if update:
            path.write_bytes(data)
            return
        assert path.is_file(), (f"golden {path} is missing; run `pytest tests/provenance "
                                "--update-goldens` once and review the diff")
        assert data == path.read_bytes(), (
            f"{name} differs from its golden; if the change is intended, rerun with "
            "--update-goldens and commit the new golden with the change")

    return check


@pytest.fixture(scope="session")
def publisher_key() -> PrivateKey:
    """A fixed Ed25519 key (deterministic signatures: the envelope golden is stable)."""
    return fixed_key(1)


@pytest.fixture(scope="session")
def other_key() -> PrivateKey:
    """Another fixed Ed25519 key, not trusted unless a test adds it."""
    return fixed_key(2)


@pytest.fixture(scope="session")
def ecdsa_key() -> PrivateKey:
    """A fresh ECDSA P-256 key."""
    return generate_key("ecdsa-p256")


@pytest.fixture
def store(publisher_key: PrivateKey) -> TrustStore:
    """An in-memory trust store trusting ``publisher_key`` as publisher."""
    s = TrustStore()
    s.add(publisher_key.public_key, [Role.PUBLISHER], name="release")
    return s


@pytest.fixture
def artifact_dir(tmp_path: Path) -> Path:
    """A small multi-file artifact: an ONNX-like model with external data and a tokenizer."""
    return write_files(tmp_path / "model-onnx", GOLDEN_FILES)
