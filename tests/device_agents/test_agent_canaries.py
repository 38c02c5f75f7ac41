"""The agent runs the safety canaries through its filter: the shipped filter is ok, a filter
that stopped firing (here: a pass-through one in its place) is a drop and a safety.drift event."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from _agent_helpers import Signed, until

from edgeward.device_agents import Agent, config_from_dict
from edgeward.device_agents._canary_watch import CanaryWatch
from edgeward.errors import ConfigError
from edgeward.safety import PassThroughFilter


def _agent(signed: Signed, tmp_path: Path, **kw: Any) -> Agent:
    agent = Agent(config_from_dict({
        "artifact": str(signed.artifact), "trust_store": str(signed.trust),
        "listen": "127.0.0.1:0", "state_dir": str(tmp_path / "state"),
        "safety_policy": "default", "behaviour": {"canary_interval_s": 600}}), **kw)
    agent.start()
    return agent


def test_the_shipped_filter_passes_its_canaries(signed_tiny: Signed, tmp_path: Path) -> None:
    agent = _agent(signed_tiny, tmp_path)
    try:
        assert agent.canaries is not None
        assert agent.canaries.health()["status"] == "unchecked"
        assert agent.canaries.request()
        assert until(lambda: agent.canaries.health()["checks"] == 1, 60)
        h = agent.health_figures()["canaries"]
        assert h["status"] == "ok" and h["canary_set"] == "edgeward-canaries/1"
        assert h["rates"] == h["expected"]
        # canaries are not user traffic: the safety counters did not move
        assert agent.health_figures()["safety_decisions"] == {}
    finally:
        agent.close()


def test_a_filter_that_stopped_firing_is_a_drop(signed_tiny: Signed, tmp_path: Path) -> None:
    agent = _agent(signed_tiny, tmp_path, safety_filter=PassThroughFilter())
    events: list[tuple[str, dict[str, Any], str]] = []
    try:
        assert agent.canaries is not None
        agent.canaries._report = lambda e, d, s: events.append((e, d, s))
        agent.canaries.request()
        assert until(lambda: agent.canaries.health()["checks"] == 1, 60)
        h = agent.canaries.health()
        assert h["status"] == "drift" and h["rates"]["jailbreak"] == 0.0
        families = sorted(d["family"] for e, d, _ in events if e == "safety.drift")
        assert families == ["harmful", "injection", "jailbreak"]
        assert all(d["direction"] == "drop" and s == "error" for _, d, s in events)
        assert events[0][1]["artifact_digest"] == agent.engine.model.info.sha256
        agent.canaries.request()  # still drifting: no second event for the same families
        assert until(lambda: agent.canaries.health()["checks"] == 2, 60)
        assert len(events) == 3
    finally:
        agent.close()


def test_no_policy_means_no_canaries(make_agent: Any) -> None:
    running = make_agent()
    assert running.agent.canaries is None


@pytest.mark.parametrize("value", [5, -1, True])
def test_the_canary_interval_is_checked(value: object) -> None:
    with pytest.raises(ConfigError, match="canary_interval_s"):
        config_from_dict({"artifact": "m.gguf", "allow_unsigned": True,
                          "behaviour": {"canary_interval_s": value}})


def test_an_unsigned_canary_file_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "canaries.json"
    bad.write_text("{}")
    with pytest.raises(ConfigError):
        CanaryWatch(600, bad, None, run_idle=lambda t, f: None, safety_filter=lambda: None,
                    report_event=lambda e, d, s: None, artifact_digest=lambda: None)
