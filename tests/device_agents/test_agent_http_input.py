"""Malformed and out-of-range HTTP input (issue 18, breaks 7 and 9): a client's mistake is a
400 in OpenAI's error shape naming what was wrong, never a 500, a traceback or a closed
connection; every numeric field has a documented range; generated bodies find no internal
error."""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_agent_api import CHAT, assert_error

from edgeward.device_agents import RunningAgent
from edgeward.device_agents._openai import (
    RANGES,
    ApiError,
    parse_chat,
    parse_completion,
    parse_embeddings,
)


def _post_raw(c: httpx.Client, body: bytes, path: str = "/v1/chat/completions") -> httpx.Response:
    return c.post(path, content=body, headers={"content-type": "application/json"})


def test_deeply_nested_json_is_a_400_and_the_connection_stays_usable(
        shared_agent: RunningAgent, caplog: pytest.LogCaptureFixture) -> None:
    deep = b'{"messages": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    with caplog.at_level(logging.INFO), httpx.Client(base_url=shared_agent.url,
                                                     timeout=30) as c:
        error = assert_error(_post_raw(c, deep), 400, code="invalid_json")
        assert "nests deeper than" in error["message"]
        assert error["type"] == "invalid_request_error"
        r = c.get("/healthz")  # the same keep-alive connection
        assert r.status_code == 200 and r.headers.get("connection") != "close"
    assert not [rec for rec in caplog.records if rec.exc_info], "a traceback was logged"


@pytest.mark.parametrize("content", [r'"\ud800"', r'"ok \udfff"',
                                     r'[{"type": "text", "text": "\ud83d"}]'])
def test_a_lone_surrogate_is_a_client_error_not_a_model_failure(
        shared_agent: RunningAgent, content: str) -> None:
    body = ('{"messages": [{"role": "user", "content": ' + content + "}]}").encode()
    with httpx.Client(base_url=shared_agent.url, timeout=30) as c:
        error = assert_error(_post_raw(c, body), 400, code="invalid_json")
    assert "surrogate" in error["message"]


@pytest.mark.parametrize(("field", "literal"), [
    ("top_k", str(2**70)), ("top_k", "-1"), ("seed", str(2**70)), ("max_tokens", str(2**40)),
    ("temperature", "1e400"), ("top_p", "0"), ("min_p", "1.0"), ("repeat_penalty", "11"),
    ("max_completion_tokens", "0"), ("presence_penalty", "3"), ("n", "1000"),
    ("top_k", "1.5"), ("temperature", "true"),
], ids=lambda v: str(v)[:12])
def test_numeric_fields_out_of_their_range_name_the_field_and_range(
        shared_agent: RunningAgent, field: str, literal: str) -> None:
    body = json.dumps(CHAT).encode()[:-1] + f', "{field}": {literal}}}'.encode()
    with httpx.Client(base_url=shared_agent.url, timeout=30) as c:
        error = assert_error(_post_raw(c, body), 400, param=field, code="invalid_value")
    assert str(RANGES[field]) in error["message"]


@pytest.mark.parametrize(("change", "param"), [
    ({"messages": [{"role": ["user"], "content": "x"}]}, "messages[0].role"),
    ({"messages": [{"role": {"a": 1}, "content": "x"}]}, "messages[0].role"),
    ({"stream": 0}, "stream"),
    ({"stream": []}, "stream"),
    ({"stream_options": {"include_usage": "yes"}}, "stream_options.include_usage"),
    ({"stop": ["x" * 2000]}, "stop"),
    ({"n": True}, "n"),
], ids=["role-list", "role-object", "stream-zero", "stream-list", "include-usage-string",
        "long-stop", "n-true"])
def test_fields_of_the_wrong_type_are_400(shared_agent: RunningAgent, change: dict[str, Any],
                                          param: str) -> None:
    with httpx.Client(base_url=shared_agent.url, timeout=30) as c:
        error = assert_error(c.post("/v1/chat/completions", json=CHAT | change), 400,
                             param=param)
    assert error["type"] == "invalid_request_error"


def test_embeddings_encoding_format_of_the_wrong_type_is_400() -> None:
    for fmt in ([], {"a": 1}, 0):
        with pytest.raises(ApiError) as e:
            parse_embeddings({"input": "x", "encoding_format": fmt})
        assert e.value.status == 400 and e.value.param == "encoding_format"


# -- fuzz ----------------------------------------------------------------------------------

_FIELDS = ["model", "messages", "prompt", "input", "stream", "stream_options", "max_tokens",
           "max_completion_tokens", "temperature", "top_p", "top_k", "min_p", "repeat_penalty",
           "seed", "stop", "n", "logprobs", "top_logprobs", "tools", "tool_choice", "echo",
           "suffix", "best_of", "logit_bias", "presence_penalty", "frequency_penalty",
           "response_format", "encoding_format", "dimensions", "user"]
_scalars = (st.none() | st.booleans() | st.integers() | st.integers(-2**80, 2**80)
            | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20)
            | st.sampled_from(["user", "system", "assistant", "text", "float", "base64", ""]))
_json = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.sampled_from(["role", "content", "type", "text",
                                                        "name", "include_usage"]) | st.text(
                                                            max_size=5), inner, max_size=4),
                     max_leaves=12)
_message = st.fixed_dictionaries({}, optional={"role": st.sampled_from(["user", "system"])
                                               | _json, "content": st.text(max_size=20) | _json,
                                               "name": _json})
_bodies = st.dictionaries(st.sampled_from(_FIELDS), _json, max_size=8) | st.fixed_dictionaries(
    {"messages": st.lists(_message, max_size=3) | _json},
    optional={k: _json for k in _FIELDS if k != "messages"})


def _parse_all(body: dict[str, Any]) -> None:
    for parse in (lambda b: parse_chat(b, default_max_tokens=16, cap=64),
                  lambda b: parse_completion(b, default_max_tokens=16, cap=64),
                  parse_embeddings):
        try:
            parse(body)
        except ApiError as e:
            assert e.status == 400 and e.type == "invalid_request_error" and e.message


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_bodies)
def test_fuzz_request_parsers_never_fail_internally(body: dict[str, Any]) -> None:
    _parse_all(body)


@pytest.fixture(scope="module")
def fuzz_agent_url(module_agent: Any) -> str:
    # not `from conftest import ...`: in a whole-suite run "conftest" may be another directory's
    return str(module_agent(max_tokens_cap=2, default_max_tokens=2).url)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(body=_bodies, path=st.sampled_from(["/v1/chat/completions", "/v1/completions",
                                           "/v1/embeddings"]))
def test_fuzz_http_bodies_never_end_in_a_500(fuzz_agent_url: str, body: dict[str, Any],
                                             path: str) -> None:
    with httpx.Client(base_url=fuzz_agent_url, timeout=30) as c:
        r = c.post(path, json=body)
    assert r.status_code in (200, 400), r.text
    if r.status_code == 400:
        assert r.json()["error"]["type"] == "invalid_request_error"

