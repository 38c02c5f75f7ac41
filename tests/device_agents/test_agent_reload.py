"""Reload: the new artifact is swapped in only if it verifies; otherwise one log line says why
and the old model keeps serving."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from _agent_helpers import Signed, flip_byte, sign_copy, toml_config
from test_agent_api import CHAT, assert_error

from conftest import API_KEY
from edgeward.device_agents import Agent, RunningAgent, load_agent_config

AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture
def served(tmp_path: Path, tiny_gguf: Path) -> Iterator[tuple[RunningAgent, Signed, Path]]:
    """An agent started from a config file (so reload re-reads it), with an api key."""
    signed = sign_copy(tiny_gguf, tmp_path / "models")
    config = toml_config(tmp_path / "agent.toml", artifact=signed.artifact,
                         trust_store=signed.trust, listen="127.0.0.1:0",
                         state_dir=tmp_path / "state", api_key=API_KEY)
    agent = Agent(load_agent_config(config), config_path=config)
    agent.start()
    running = agent.serve_in_thread()
    yield running, signed, config
    running.stop()


def _answer(running: RunningAgent) -> str:
    with httpx.Client(base_url=running.url, timeout=30, headers=AUTH) as c:
        resp = c.post("/v1/chat/completions", json=CHAT)
    assert resp.status_code == 200
    return str(resp.json()["choices"][0]["message"]["content"])


def test_a_tampered_artifact_is_refused_and_the_old_one_keeps_serving(
        served: tuple[RunningAgent, Signed, Path], caplog: pytest.LogCaptureFixture) -> None:
    running, signed, _ = served
    before = running.agent.engine.model.info
    answer = _answer(running)
    flip_byte(signed.artifact)  # tamper with the configured file in place
    with caplog.at_level(logging.INFO, logger="edgeward.agent"):
        result = running.agent.reload()
    assert not result.ok and result.error == "digest_mismatch_error"
    assert result.model == before and running.agent.engine.model.info == before
    refused = [r for r in caplog.records if getattr(r, "edgeward_event", "") == "reload_refused"]
    assert len(refused) == 1
    assert refused[0].edgeward_fields["reason"] == "digest_mismatch_error"  # type: ignore[attr-defined]
    assert _answer(running) == answer  # the same verified bytes still answer
    assert running.agent.metrics.value("edgeward_agent_reloads_total", result="refused") == 1
    models = list((running.agent.config.state_dir / "models").iterdir())
    assert models == [before.path.parent]  # the refused copy was deleted


def test_admin_reload_swaps_in_a_new_verified_artifact(
        served: tuple[RunningAgent, Signed, Path], tiny_gguf: Path, tmp_path: Path) -> None:
    running, signed, config = served
    old = running.agent.engine.model.info
    new = tmp_path / "models" / "next.gguf"
    new.write_bytes(tiny_gguf.read_bytes() + b"\0" * 64)  # different bytes, same model
    sign_copy(new, new.parent, key=signed.key, trust=signed.trust)
    toml_config(config, artifact=new, trust_store=signed.trust, listen="127.0.0.1:0",
                state_dir=tmp_path / "state", api_key=API_KEY, model_name="next")
    with httpx.Client(base_url=running.url, timeout=30) as c:
        assert_error(c.post("/admin/reload"), 401)
        resp = c.post("/admin/reload", headers=AUTH)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        models = c.get("/v1/models", headers=AUTH).json()
    assert body["reloaded"] is True and body["model"]["id"] == "next"
    assert body["model"]["sha256"] != old.sha256 and body["model"]["verified"] is True
    assert [m["id"] for m in models["data"]] == ["next"]
    assert not old.path.exists()  # the old copy went with the old model
    assert _answer(running)
    assert running.agent.metrics.value("edgeward_agent_reloads_total", result="ok") == 1


def test_admin_reload_refusals_keep_the_old_model(
        served: tuple[RunningAgent, Signed, Path], tmp_path: Path) -> None:
    running, signed, config = served
    old = running.agent.engine.model.info
    with httpx.Client(base_url=running.url, timeout=30, headers=AUTH) as c:
        config.write_text(config.read_text() + "max_queue = -5\n")  # a broken config
        broken = c.post("/admin/reload")
        unsigned = tmp_path / "models" / "unsigned.gguf"
        unsigned.write_bytes(signed.artifact.read_bytes())
        toml_config(config, artifact=unsigned, trust_store=signed.trust,
                    listen="127.0.0.1:0", state_dir=tmp_path / "state", api_key=API_KEY)
        refused = c.post("/admin/reload")
    assert broken.status_code == 422 and broken.json()["error"]["code"] == "config_error"
    assert "max_queue" in broken.json()["error"]["message"]
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "unsigned_artifact_error"
    assert refused.json()["model"]["sha256"] == old.sha256
    assert running.agent.engine.model.info == old
    assert _answer(running)
