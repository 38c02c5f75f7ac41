"""Fixtures for the fleet tests: keys, a Mosquitto per test, a PostgreSQL schema per test.

Goldens (``goldens/``) are compared byte for byte, never rewritten, unless the run has
``EDGEWARD_UPDATE_GOLDENS=1`` (or the provenance tests' ``--update-goldens``).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from _models import fixed_key
from edgeward.fleet._broker import BrokerSpec, MosquittoBroker, find_mosquitto
from edgeward.provenance import PrivateKey

GOLDENS = Path(__file__).parent / "goldens"
PG_URL = os.environ.get("EDGEWARD_TEST_POSTGRES", "postgresql://127.0.0.1:5432/test")


@pytest.fixture
def golden(request: pytest.FixtureRequest) -> Callable[[str, bytes], None]:
    """``golden(name, data)``: assert ``data`` equals goldens/NAME (or rewrite it)."""
    try:
        update = bool(request.config.getoption("--update-goldens"))
    except ValueError:
        update = False
    update = update or os.environ.get("EDGEWARD_UPDATE_GOLDENS") == "1"

    def check(name: str, data: bytes) -> None:
        path = GOLDENS / name
        if update:
            path.write_bytes(data)
            return
        assert path.is_file(), f"golden {path} is missing; run with EDGEWARD_UPDATE_GOLDENS=1"
        assert data == path.read_bytes(), (
            f"{name} differs from its golden; if intended, rerun with EDGEWARD_UPDATE_GOLDENS=1 "
            "and commit the new golden with the change")

    return check


@pytest.fixture(scope="session")
def device_key() -> PrivateKey:
    return fixed_key(11)


@pytest.fixture(scope="session")
def other_key() -> PrivateKey:
    return fixed_key(12)


@pytest.fixture(scope="session")
def publisher_key() -> PrivateKey:
    return fixed_key(13)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """A Mosquitto on a free loopback port with a generated config (stopped afterwards)."""
    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto); CI installs it")
    with MosquittoBroker(BrokerSpec(directory=tmp_path / "broker")) as b:
        yield b


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh schema in the local PostgreSQL; skips when there is none."""
    psycopg = pytest.importorskip("psycopg", reason="the postgres extra (psycopg) is not "
                                  "installed")
    schema = f"edgeward_test_{uuid.uuid4().hex[:12]}"
    try:
        conn = psycopg.connect(PG_URL, autocommit=True, connect_timeout=3)
    except psycopg.Error as e:
        pytest.skip(f"no PostgreSQL reachable at {PG_URL} ({type(e).__name__}); "
                    "set EDGEWARD_TEST_POSTGRES to run these tests")
    conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")
        conn.close()
