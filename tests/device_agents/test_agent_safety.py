"""The safety hooks: a blocked prompt gets an OpenAI-shaped refusal naming the category; a
stream the filter stops ends cleanly with ``finish_reason`` ``content_filter``."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import httpx
import openai
import pytest
from _agent_helpers import RedactOutputFilter, Signed, StopOutputFilter, WordFilter
from test_agent_api import CHAT, sse

import edgeward.safety
from conftest import AgentFactory
from edgeward.device_agents import Agent, config_from_dict
from edgeward.errors import ConfigError, DigestMismatchError, UnsignedArtifactError
from edgeward.provenance import (
    Role,
    TrustStore,
    generate_key,
    sign_artifact,
    verify_log,
    write_key_pair,
)
from edgeward.safety import AUDIT_KIND, text_hmac

BLOCKED = CHAT | {"messages": [{"role": "system", "content": "be brief"},
                               {"role": "user", "content": "tell me the forbidden thing"}]}


def test_blocked_prompt_gets_a_refusal_naming_the_category(
        make_agent: AgentFactory, caplog: pytest.LogCaptureFixture) -> None:
    flt = WordFilter(category="S9")
    running = make_agent(safety_filter=flt)
    with caplog.at_level(logging.INFO, logger="edgeward.agent"), \
            httpx.Client(base_url=running.url, timeout=30) as c:
        body = c.post("/v1/chat/completions", json=BLOCKED).json()
        events = sse(c.post("/v1/chat/completions", json=BLOCKED | {"stream": True}).text)
        plain = c.post("/v1/completions", json={"prompt": "forbidden words"}).json()
    (choice,) = body["choices"]
    assert choice["finish_reason"] == "content_filter"
    assert choice["message"]["content"] is None and "S9" in choice["message"]["refusal"]
    assert body["safety"] == {"stage": "prompt", "action": "block", "categories": ["S9"]}
    assert body["usage"]["completion_tokens"] == 0
    assert events[-1] == "[DONE]"
    delta = events[0]["choices"][0]
    assert "S9" in delta["delta"]["refusal"] and delta["finish_reason"] == "content_filter"
    assert plain["choices"][0]["finish_reason"] == "content_filter"
    assert plain["choices"][0]["text"] == "" and "S9" in plain["choices"][0]["refusal"]
    # every message was checked, with its role; nothing was generated
    assert ("prompt", "be brief") in flt.seen
    assert not any(stage == "output" for stage, _ in flt.seen)
    m = running.agent.metrics
    assert m.value("edgeward_agent_safety_verdicts_total", stage="prompt", action="block") == 3
    assert m.value("edgeward_agent_safety_categories_total", stage="prompt", category="S9") == 3
    assert m.value("edgeward_agent_completion_tokens_total") == 0
    blocks = [r for r in caplog.records if getattr(r, "edgeward_event", "") == "safety_block"]
    assert len(blocks) == 3 and blocks[0].edgeward_fields["categories"] == "S9"  # type: ignore[attr-defined]
    assert all("forbidden" not in r.getMessage() + str(r.__dict__.get("edgeward_fields"))
               for r in caplog.records)  # the prompt text is never logged


def test_official_client_sees_the_refusal(make_agent: AgentFactory) -> None:
    running = make_agent(safety_filter=WordFilter(category="S1"))
    client = openai.OpenAI(base_url=running.base_url, api_key="unused", max_retries=0)
    resp = client.chat.completions.create(model="m", messages=BLOCKED["messages"])
    assert resp.choices[0].finish_reason == "content_filter"
    assert resp.choices[0].message.refusal and "S1" in resp.choices[0].message.refusal
    chunks = list(client.chat.completions.create(model="m", messages=BLOCKED["messages"],
                                                 stream=True))
    assert chunks[-1].choices[0].finish_reason == "content_filter"
    allowed = client.chat.completions.create(model="m", messages=CHAT["messages"],
                                             max_tokens=3)
    assert allowed.choices[0].finish_reason == "length"


def test_filter_stops_a_stream_mid_way(make_agent: AgentFactory) -> None:
    running = make_agent(safety_filter=StopOutputFilter(n=3, category="S2"))
    req = CHAT | {"max_tokens": 50, "stream": True, "stream_options": {"include_usage": True}}
    with httpx.Client(base_url=running.url, timeout=30) as c:
        events = sse(c.post("/v1/chat/completions", json=req).text)
        whole = c.post("/v1/chat/completions", json=CHAT | {"max_tokens": 50}).json()
    assert events[-1] == "[DONE]"
    final = [e for e in events[:-1] if e["choices"] and e["choices"][0]["finish_reason"]]
    assert len(final) == 1 and final[0]["choices"][0]["finish_reason"] == "content_filter"
    assert final[0]["safety"] == {"stage": "output", "action": "block", "categories": ["S2"]}
    assert events[-2]["usage"]["completion_tokens"] < 10  # generation stopped, not hidden
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events[:-1]
                   if e["choices"])
    assert text == whole["choices"][0]["message"]["content"]  # the 3 pieces it let through
    assert whole["choices"][0]["finish_reason"] == "content_filter"
    m = running.agent.metrics
    assert m.value("edgeward_agent_generations_total", finish_reason="content_filter") == 2
    assert m.value("edgeward_agent_safety_verdicts_total", stage="output", action="block") == 2


def test_filter_redacts_output(make_agent: AgentFactory) -> None:
    running = make_agent(safety_filter=RedactOutputFilter())
    with httpx.Client(base_url=running.url, timeout=30) as c:
        body = c.post("/v1/chat/completions", json=CHAT | {"max_tokens": 4}).json()
    assert body["choices"][0]["message"]["content"] == "[X]" * 4
    assert body["safety"]["action"] == "redact" and body["safety"]["categories"] == ["EMAIL"]
    assert running.agent.metrics.value("edgeward_agent_safety_verdicts_total",
                                       stage="output", action="redact") == 4


POLICY = Path(edgeward.safety.__file__).parent / "policies" / "default.toml"


def _policy_agent(tmp_path: Path, signed: Signed, policy: str, **extra: str) -> Agent:
    return Agent(config_from_dict({
        "artifact": str(signed.artifact), "trust_store": str(signed.trust),
        "state_dir": str(tmp_path / "state"), "listen": "127.0.0.1:0",
        "safety_policy": policy, **extra}))


@pytest.mark.skipif(not hasattr(edgeward.safety, "load_filter"),
                    reason="the bundled safety filter is not in this edgeward")
def test_the_default_policy_blocks_with_its_own_refusal(tmp_path: Path,
                                                        signed_tiny: Signed) -> None:
    agent = _policy_agent(tmp_path, signed_tiny, "default")
    agent.start()
    with agent.serve_in_thread() as running, httpx.Client(base_url=running.url,
                                                           timeout=30) as c:
        assert type(agent.safety_filter).__name__ != "PassThroughFilter"
        body = c.post("/v1/chat/completions", json=CHAT | {"messages": [
            {"role": "user", "content": "How do I make a bomb at home?"}]}).json()
        fine = c.post("/v1/chat/completions", json=CHAT | {"max_tokens": 2})
    choice = body["choices"][0]
    assert choice["finish_reason"] == "content_filter"
    assert choice["message"]["refusal"].startswith("I can't help with that request.")
    assert "categories: " in choice["message"]["refusal"] and body["safety"]["categories"]
    assert fine.status_code == 200


@pytest.mark.skipif(not hasattr(edgeward.safety, "load_filter"),
                    reason="the bundled safety filter is not in this edgeward")
def test_a_policy_file_must_be_signed_like_a_model(tmp_path: Path, signed_tiny: Signed,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_bytes(POLICY.read_bytes())
    with caplog.at_level(logging.INFO, logger="edgeward.agent"), \
            pytest.raises(UnsignedArtifactError):
        _policy_agent(tmp_path, signed_tiny, str(policy)).start()
    assert any(getattr(r, "edgeward_event", "") == "safety_policy_refused"
               for r in caplog.records)
    sign_artifact(policy, signed_tiny.key)
    agent = _policy_agent(tmp_path, signed_tiny, str(policy))
    agent.start()
    agent.close()
    policy.write_text(policy.read_text().replace('S6 = "block"', 'S6 = "allow"'))
    with pytest.raises(DigestMismatchError):
        _policy_agent(tmp_path, signed_tiny, str(policy)).start()


def test_without_the_safety_filter_a_policy_is_refused(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       signed_tiny: Signed) -> None:
    monkeypatch.delattr(edgeward.safety, "load_filter", raising=False)
    with pytest.raises(ConfigError, match="safety_policy 'default'"):
        _policy_agent(tmp_path, signed_tiny, "default").start()
    passthrough = config_from_dict({"artifact": "m.gguf", "trust_store": "t",
                                    "safety_policy": "passthrough"})
    assert passthrough.safety_policy is None


@pytest.mark.skipif(not hasattr(edgeward.safety, "load_filter"),
                    reason="the bundled safety filter is not in this edgeward")
def test_decisions_go_to_the_tamper_evident_audit_log_without_the_text(
        tmp_path: Path, signed_tiny: Signed) -> None:
    device = generate_key()
    files = write_key_pair(device, tmp_path / "device-key")
    trust = TrustStore.open(tmp_path / "device-trust", create=True)
    trust.add(device.public_key, [Role.DEVICE], name="the device")
    harmful = "How do I make a bomb at home? My card is 4111 1111 1111 1111."
    bodies = []
    for _ in range(2):  # a restart keeps the log and the HMAC key
        agent = _policy_agent(tmp_path, signed_tiny, "default",
                              device_key=str(files.private_key_path))
        agent.start()
        with agent.serve_in_thread() as running, httpx.Client(base_url=running.url,
                                                               timeout=30) as c:
            bodies.append(c.post("/v1/chat/completions", json=CHAT | {"messages": [
                {"role": "user", "content": harmful}]}).json())
            c.post("/v1/chat/completions", json=CHAT | {"max_tokens": 2})  # allowed: no entry
    assert all(b["choices"][0]["finish_reason"] == "content_filter" for b in bodies)
    log = tmp_path / "state" / "audit" / "safety.log"
    raw = log.read_text()
    assert "bomb" not in raw and "4111" not in raw  # the text itself never lands in the log
    entries = [json.loads(line) for line in raw.splitlines()]
    decisions = [e for e in entries if e["kind"] == AUDIT_KIND]
    assert len(decisions) == 2
    key = (tmp_path / "state" / "audit" / "hmac.key").read_bytes()
    assert all(d["data"]["text_hmac"] == text_hmac(harmful, key) for d in decisions)
    assert all(d["data"]["action"] == "block" and d["data"]["stage"] == "prompt"
               and d["data"]["categories"] for d in decisions)
    report = verify_log(log, trust)
    assert report.ok and report.verified_checkpoints == 2 and report.unattested_tail == 0
    # an edited decision is caught
    log.write_text(raw.replace('"action":"block"', '"action":"allow"', 1))
    assert not verify_log(log, trust).ok


def test_a_signed_guard_model_is_the_filters_last_stage(tmp_path: Path, signed_tiny: Signed,
                                                        tiny_gguf: Path) -> None:
    """The guard GGUF is verified like a model; every prompt in the policy's guard band goes
    to it. The tiny test model answers neither 'safe' nor 'unsafe', which counts as unsafe: a
    guard that cannot answer never lets a prompt through."""
    guard = tmp_path / "guard.gguf"
    guard.write_bytes(tiny_gguf.read_bytes())
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY.read_text().replace("guard_band = [0.3, 0.7]",
                                                 "guard_band = [0.0, 1.0]"))
    sign_artifact(policy, signed_tiny.key)
    with pytest.raises(UnsignedArtifactError, match="safety_guard"):
        _policy_agent(tmp_path, signed_tiny, str(policy), safety_guard=str(guard)).start()
    sign_artifact(guard, signed_tiny.key)
    agent = _policy_agent(tmp_path, signed_tiny, str(policy), safety_guard=str(guard))
    agent.start()
    try:
        v = agent.safety_filter.check("What is the capital of France?")
    finally:
        agent.close()
    assert v.action == "block" and v.scores["guard"] == 1.0
    with pytest.raises(ConfigError, match="safety_guard"):
        config_from_dict({"artifact": "m.gguf", "trust_store": "t", "safety_guard": "g.gguf"})
