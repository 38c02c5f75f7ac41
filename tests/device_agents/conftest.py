"""Fixtures for the agent tests: a signed tiny GGUF and in-process agents on free ports."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _agent_helpers import Signed, sign_copy

from edgeward.device_agents import Agent, RunningAgent, config_from_dict
from edgeward.fleet._broker import BrokerSpec, MosquittoBroker, find_mosquitto
from edgeward.provenance import PrivateKey, Role, TrustStore, generate_key
from edgeward.safety import SafetyFilter

API_KEY = "test-key-0123456789"

AgentFactory = Callable[..., RunningAgent]


@pytest.fixture(scope="session")
def signed_tiny(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path) -> Signed:
    """The tiny GGUF, signed, with a trust store trusting its key (never modified: tests
    that tamper make their own copy)."""
    return sign_copy(tiny_gguf, tmp_path_factory.mktemp("signed-tiny"))


def _factory(tmp_path: Path, signed_tiny: Signed) -> Iterator[AgentFactory]:
    running: list[RunningAgent] = []

    def make(*, safety_filter: SafetyFilter | None = None, **keys: Any) -> RunningAgent:
        data: dict[str, Any] = {"artifact": str(signed_tiny.artifact),
                                "trust_store": str(signed_tiny.trust),
                                "listen": "127.0.0.1:0",
                                "state_dir": str(tmp_path / f"state-{len(running)}")}
        data.update({k: str(v) if isinstance(v, Path) else v for k, v in keys.items()})
        agent = Agent(config_from_dict(data), safety_filter=safety_filter)
        agent.start()
        try:
            r = agent.serve_in_thread()
        except BaseException:
            agent.close()
            raise
        running.append(r)
        return r

    yield make
    for r in running:
        r.stop()


@pytest.fixture
def make_agent(tmp_path: Path, signed_tiny: Signed) -> Iterator[AgentFactory]:
    """``make_agent(safety_filter=..., **config_keys)``: a started agent serving the signed
    tiny GGUF on a free loopback port, stopped after the test."""
    yield from _factory(tmp_path, signed_tiny)


@pytest.fixture(scope="module")
def module_agent(tmp_path_factory: pytest.TempPathFactory,
                 signed_tiny: Signed) -> Iterator[AgentFactory]:
    """Like ``make_agent``, but the agents it starts serve the whole module."""
    yield from _factory(tmp_path_factory.mktemp("module-agent"), signed_tiny)


@pytest.fixture(scope="module")
def shared_agent(tmp_path_factory: pytest.TempPathFactory,
                 signed_tiny: Signed) -> Iterator[RunningAgent]:
    """One agent with the default configuration for a module's read-only tests."""
    factory = _factory(tmp_path_factory.mktemp("shared-agent"), signed_tiny)
    yield next(factory)()
    for _ in factory:
        pass


@pytest.fixture
def operator() -> PrivateKey:
    """An operator key (commands are signed with it)."""
    return generate_key()


@pytest.fixture
def trust(tmp_path: Path, operator: PrivateKey) -> Path:
    """A trust store that trusts ``operator`` with the operator role."""
    store = TrustStore.open(tmp_path / "trust", create=True)
    store.add(operator.public_key, [Role.OPERATOR], name="ops")
    return tmp_path / "trust"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """A Mosquitto on a free loopback port (skips where mosquitto is not installed)."""
    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto); CI installs it")
    with MosquittoBroker(BrokerSpec(directory=tmp_path / "broker")) as b:
        yield b
