"""The HTTP API on the tiny GGUF: OpenAI shapes, streaming, auth, body limit, max_tokens cap,
error shapes, health and metrics."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import openai
import pytest

from conftest import API_KEY, AgentFactory
from edgeward.device_agents import RunningAgent

CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "hello world"}],
        "max_tokens": 12, "temperature": 0, "seed": 3}


def sse(text: str) -> list[Any]:
    """The data of each server-sent event: parsed JSON, or the raw string ([DONE])."""
    out: list[Any] = []
    for block in text.split("\n\n"):
        if block.startswith("data: "):
            data = block[len("data: "):]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def assert_error(resp: httpx.Response, status: int, *, code: str | None = None,
                 param: str | None = None) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code
    if param is not None:
        assert body["error"]["param"] == param
    return dict(body["error"])


def test_chat_completions_shape_and_stream_equals_whole(make_agent: AgentFactory) -> None:
    agent = make_agent()
    with httpx.Client(base_url=agent.url, timeout=30) as c:
        whole = c.post("/v1/chat/completions", json=CHAT)
        assert whole.status_code == 200
        body = whole.json()
        assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
        assert body["model"] == "tiny-llama-f32"
        (choice,) = body["choices"]
        assert choice["message"]["role"] == "assistant"
        assert isinstance(choice["message"]["content"], str) and choice["message"]["content"]
        assert choice["finish_reason"] in ("stop", "length")
        u = body["usage"]
        assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"] > 0

        streamed = c.post("/v1/chat/completions",
                          json=CHAT | {"stream": True, "stream_options": {"include_usage": True}})
        assert streamed.headers["content-type"].startswith("text/event-stream")
        events = sse(streamed.text)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert len({c["id"] for c in chunks}) == 1
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    finals = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert len(finals) == 1 and finals[0]["choices"][0]["finish_reason"] == choice["finish_reason"]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == u
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == choice["message"]["content"]  # greedy: streamed and whole agree


def test_completions_shape_and_stream(shared_agent: RunningAgent) -> None:
    agent = shared_agent
    req = {"model": "tiny", "prompt": "the model", "max_tokens": 10, "temperature": 0}
    with httpx.Client(base_url=agent.url, timeout=30) as c:
        body = c.post("/v1/completions", json=req).json()
        events = sse(c.post("/v1/completions", json=req | {"stream": True}).text)
    assert body["object"] == "text_completion" and body["id"].startswith("cmpl-")
    assert body["choices"][0]["text"] and body["usage"]["completion_tokens"] == 10
    assert body["choices"][0]["finish_reason"] == "length"
    assert events[-1] == "[DONE]"
    assert "".join(e["choices"][0]["text"] for e in events[:-1]) == body["choices"][0]["text"]
    assert events[-2]["choices"][0]["finish_reason"] == "length"


def test_official_openai_client(make_agent: AgentFactory) -> None:
    agent = make_agent(api_key=API_KEY)
    client = openai.OpenAI(base_url=agent.base_url, api_key=API_KEY, max_retries=0)
    models = client.models.list()
    assert [m.id for m in models.data] == ["tiny-llama-f32"]
    chat = client.chat.completions.create(model="tiny", messages=[{"role": "user",
                                          "content": "hi"}], max_tokens=5, temperature=0)
    assert chat.choices[0].message.content and chat.usage and chat.usage.completion_tokens == 5
    stream = client.chat.completions.create(model="tiny", messages=[{"role": "user",
                                            "content": "hi"}], max_tokens=5, temperature=0,
                                            stream=True)
    pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert "".join(pieces) == chat.choices[0].message.content
    done = client.completions.create(model="tiny", prompt="the", max_tokens=4)
    assert done.choices[0].finish_reason == "length"
    with pytest.raises(openai.AuthenticationError) as e:
        openai.OpenAI(base_url=agent.base_url, api_key="wrong-key", max_retries=0
                      ).models.list()
    assert e.value.code == "invalid_api_key"
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="tiny", messages=[], max_tokens=5)
    assert bad.value.param == "messages"


def test_bearer_api_key(make_agent: AgentFactory) -> None:
    agent = make_agent(api_key=API_KEY)
    with httpx.Client(base_url=agent.url, timeout=30) as c:
        for headers in ({}, {"Authorization": "Bearer nope-nope-nope"},
                        {"Authorization": f"Basic {API_KEY}"}):
            resp = c.post("/v1/chat/completions", json=CHAT, headers=headers)
            assert_error(resp, 401, code="invalid_api_key")
            assert resp.headers["www-authenticate"] == "Bearer"
        assert_error(c.get("/v1/models"), 401)
        ok = c.post("/v1/chat/completions", json=CHAT,
                    headers={"Authorization": f"Bearer {API_KEY}"})
        assert ok.status_code == 200
        assert c.get("/healthz").status_code == 200  # health and metrics stay open
        assert "edgeward_agent_rejected_total{reason=\"unauthorized\"} 4" in c.get(
            "/metrics").text


def test_request_body_limit(make_agent: AgentFactory) -> None:
    agent = make_agent(max_body_bytes=2048)
    big = CHAT | {"messages": [{"role": "user", "content": "word " * 1000}]}
    with httpx.Client(base_url=agent.url, timeout=30) as c:
        assert_error(c.post("/v1/chat/completions", json=big), 413, code="request_too_large")

        def chunked() -> Any:  # no Content-Length: counted as it arrives
            data = json.dumps(big).encode()
            for i in range(0, len(data), 512):
                yield data[i:i + 512]

        assert_error(c.post("/v1/chat/completions", content=chunked()), 413)
        assert c.post("/v1/chat/completions", json=CHAT).status_code == 200
        metrics = c.get("/metrics").text
    assert 'edgeward_agent_rejected_total{reason="body_too_large"} 2' in metrics


def test_max_tokens_cap_and_default(make_agent: AgentFactory) -> None:
    agent = make_agent(max_tokens_cap=8, default_max_tokens=3)
    with httpx.Client(base_url=agent.url, timeout=30) as c:
        capped = c.post("/v1/chat/completions", json=CHAT | {"max_tokens": 1000}).json()
        newer = c.post("/v1/chat/completions",
                       json=CHAT | {"max_completion_tokens": 500}).json()
        default = c.post("/v1/chat/completions",
                         json={k: v for k, v in CHAT.items() if k != "max_tokens"}).json()
    assert capped["usage"]["completion_tokens"] == 8
    assert capped["choices"][0]["finish_reason"] == "length"
    assert newer["usage"]["completion_tokens"] == 8
    assert default["usage"]["completion_tokens"] == 3


@pytest.mark.parametrize(("body", "param", "code"), [
    ({"model": "m"}, "messages", "missing_required_parameter"),
    (CHAT | {"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role", None),
    (CHAT | {"messages": [{"role": "user", "content": 3}]}, "messages[0].content", None),
    (CHAT | {"temperature": 50}, "temperature", None),
    (CHAT | {"temperature": "hot"}, "temperature", None),
    (CHAT | {"max_tokens": 0}, "max_tokens", None),
    (CHAT | {"n": 2}, "n", "unsupported_parameter"),
    (CHAT | {"logprobs": True}, "logprobs", "unsupported_parameter"),
    (CHAT | {"tools": [{"type": "function"}]}, "tools", "unsupported_parameter"),
    (CHAT | {"stream": "yes"}, "stream", None),
    (CHAT | {"stop": ["a", ""]}, "stop", None),
    (CHAT | {"model": 7}, "model", None),
], ids=["no-messages", "bad-role", "bad-content", "temperature-range", "temperature-type",
        "max-tokens-zero", "n", "logprobs", "tools", "stream-type", "empty-stop", "model-type"])
def test_bad_requests_name_the_parameter(shared_agent: RunningAgent, body: dict[str, Any],
                                         param: str, code: str | None) -> None:
    agent = shared_agent
    with httpx.Client(base_url=agent.url, timeout=30) as c:
        error = assert_error(c.post("/v1/chat/completions", json=body), 400, code=code,
                             param=param)
    assert error["type"] == "invalid_request_error"


def test_other_errors_have_the_openai_shape(shared_agent: RunningAgent) -> None:
    agent = shared_agent
    with httpx.Client(base_url=agent.url, timeout=30) as c:
        assert_error(c.post("/v1/chat/completions", content=b"{not json"), 400,
                     code="invalid_json")
        assert_error(c.post("/v1/chat/completions", json=[1, 2]), 400, code="invalid_json")
        assert_error(c.get("/v1/nothing-here"), 404, code="not_found")
        assert_error(c.get("/v1/chat/completions"), 405, code="method_not_allowed")
        long_prompt = CHAT | {"messages": [{"role": "user", "content": "hello " * 700}]}
        assert_error(c.post("/v1/chat/completions", json=long_prompt), 400,
                     code="context_length_exceeded")
        assert_error(c.post("/v1/completions", json={"prompt": ["a", "b"]}), 400,
                     param="prompt")
        # no api_key configured: the admin endpoint is off
        assert_error(c.post("/admin/reload"), 403, code="admin_disabled")


def test_health_models_and_metrics(make_agent: AgentFactory) -> None:
    agent = make_agent(max_queue=3)
    with httpx.Client(base_url=agent.url, timeout=30) as c:
        health = c.get("/healthz").json()
        models = c.get("/v1/models").json()
        usages = [c.post("/v1/chat/completions", json=CHAT).json()["usage"] for _ in range(3)]
        c.post("/v1/chat/completions", json={"bad": 1})
        # The worker marks itself idle just after the last response is sent: wait for that
        # (bounded) instead of racing it on a loaded machine.
        deadline = time.monotonic() + 10
        while True:
            metrics = c.get("/metrics")
            if "\nedgeward_agent_busy 0" in metrics.text or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    assert health["status"] == "ok" and health["max_queue"] == 3
    assert health["model"]["verified"] is True and len(health["model"]["sha256"]) == 64
    (entry,) = models["data"]
    assert entry["object"] == "model" and entry["owned_by"] == "edgeward"
    assert entry["edgeward"]["sha256"] == health["model"]["sha256"]
    assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
    lines = dict(line.rsplit(" ", 1) for line in metrics.text.splitlines()
                 if line and not line.startswith("#"))
    chat = 'endpoint="/v1/chat/completions"'
    assert lines[f'edgeward_agent_requests_total{{code="200",{chat}}}'] == "3"
    assert lines[f'edgeward_agent_requests_total{{code="400",{chat}}}'] == "1"
    assert lines["edgeward_agent_prompt_tokens_total"] == str(
        sum(u["prompt_tokens"] for u in usages))
    assert lines["edgeward_agent_completion_tokens_total"] == str(
        sum(u["completion_tokens"] for u in usages))
    assert lines[f'edgeward_agent_request_duration_seconds_count{{{chat}}}'] == "4"
    assert lines["edgeward_agent_time_to_first_token_seconds_count"] == "3"
    assert lines["edgeward_agent_queue_depth"] == "0"
    assert lines["edgeward_agent_queue_capacity"] == "3"
    assert lines["edgeward_agent_busy"] == "0"
    assert any(k.startswith("edgeward_agent_model_info{") and 'verified="true"' in k
               for k in lines)
