"""The real thing: ``edgeward agent run --config ...`` as a process serving SmolLM2, driven by
the official OpenAI client; refusals at start and on reload; SIGTERM."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from _agent_helpers import AgentProcess, Signed, flip_byte, sign_copy, toml_config, wait_for

pytestmark = pytest.mark.integration

KEY = "integration-key-0123"
QUESTION = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
COUNTING = {"model": "m", "prompt": "1, 2, 3, 4, 5, 6,", "max_tokens": 2000, "stream": True,
            "temperature": 0}


@pytest.fixture(scope="module")
def smol(tmp_path_factory: pytest.TempPathFactory, smollm2_gguf: Path) -> Signed:
    return sign_copy(smollm2_gguf, tmp_path_factory.mktemp("smol"))


def _config(path: Path, smol: Signed, **extra: Any) -> Path:
    keys: dict[str, Any] = {"artifact": smol.artifact, "trust_store": smol.trust,
                            "listen": "127.0.0.1:0", "state_dir": path.parent / "state",
                            "api_key": KEY, "max_queue": 4, "max_tokens_cap": 2048,
                            "context_length": 2048, "shutdown_deadline_s": 5}
    return toml_config(path, **(keys | extra))


@pytest.fixture(scope="module")
def agent(smol: Signed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    config = _config(tmp_path_factory.mktemp("agent") / "agent.toml", smol)
    proc = AgentProcess(config, timeout=120)
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def client(agent: AgentProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=agent.base_url, api_key=KEY, max_retries=0, timeout=300)


def _metric(agent: AgentProcess, line_start: str) -> float:
    text = httpx.get(agent.url + "/metrics", timeout=30).text
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
              if line.startswith(line_start + " ")]
    return values[0] if values else 0.0


def test_chat_streaming_completions_and_errors(agent: AgentProcess,
                                               client: openai.OpenAI) -> None:
    chat = client.chat.completions.create(model="smollm2", messages=QUESTION,  # type: ignore[arg-type]
                                          max_tokens=8, temperature=0)
    assert "Paris" in (chat.choices[0].message.content or "")
    assert chat.model == "SmolLM2-135M-Instruct.Q4_1" and chat.usage is not None
    stream = client.chat.completions.create(model="smollm2", messages=QUESTION,  # type: ignore[arg-type]
                                            max_tokens=8, temperature=0, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == chat.choices[0].message.content
    done = client.completions.create(model="smollm2", prompt="The capital of France is",
                                     max_tokens=4, temperature=0)
    assert done.choices[0].text and done.usage is not None and done.usage.completion_tokens <= 4
    assert [m.id for m in client.models.list().data] == ["SmolLM2-135M-Instruct.Q4_1"]

    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=agent.base_url, api_key="not-the-key",
                      max_retries=0).models.list()
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="smollm2", messages=QUESTION,  # type: ignore[arg-type]
                                       temperature=42)
    assert bad.value.param == "temperature" and bad.value.type == "invalid_request_error"
    with pytest.raises(openai.NotFoundError):
        client.get("/nowhere", cast_to=object)
    too_big = httpx.post(agent.url + "/v1/completions", content=b"x" * (2 * 1024 * 1024),
                         headers={"Authorization": f"Bearer {KEY}"}, timeout=30)
    assert too_big.status_code == 413 and too_big.json()["error"]["code"] == "request_too_large"


def test_ten_concurrent_requests_with_max_queue_4(agent: AgentProcess,
                                                  client: openai.OpenAI) -> None:
    before = _metric(agent, 'edgeward_agent_rejected_total{reason="queue_full"}')
    start = threading.Barrier(10)

    def one(i: int) -> tuple[str, Any]:
        start.wait()
        try:
            r = client.chat.completions.create(
                model="smollm2", messages=[{"role": "user", "content": f"Say {i}."}],
                max_tokens=3, temperature=0)
            return "ok", r.choices[0].finish_reason
        except openai.RateLimitError as e:
            return "429", (e.code, e.response.headers.get("retry-after"))

    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(one, range(10)))
    ok = [r for r in results if r[0] == "ok"]
    refused = [r for r in results if r[0] == "429"]
    assert len(ok) + len(refused) == 10  # nothing else: no 500s, no hangs
    assert len(ok) >= 1 and len(refused) <= 5  # 1 generating + 4 waiting always fit
    assert all(f in ("stop", "length") for _, f in ok)
    for _, (code, retry_after) in refused:
        assert code == "queue_full" and int(retry_after) >= 1
    after = _metric(agent, 'edgeward_agent_rejected_total{reason="queue_full"}')
    assert after - before == len(refused)


def test_a_client_that_disconnects_frees_its_slot(agent: AgentProcess) -> None:
    headers = {"Authorization": f"Bearer {KEY}"}
    cancelled = 'edgeward_agent_generations_total{finish_reason="cancelled"}'
    before = _metric(agent, cancelled)
    tokens_before = _metric(agent, "edgeward_agent_completion_tokens_total")
    with httpx.Client(base_url=agent.url, headers=headers, timeout=120) as c:
        with c.stream("POST", "/v1/completions", json=COUNTING) as resp:
            seen = 0
            for line in resp.iter_lines():
                seen += line.startswith("data: {")
                if seen == 3:
                    break  # hang up mid-stream, 2000 tokens from the end
        wait_for(lambda: _metric(agent, cancelled) == before + 1, timeout=30,
                 what="the agent to cancel the generation")
        generated = _metric(agent, "edgeward_agent_completion_tokens_total") - tokens_before
        assert generated < 200
        started = time.monotonic()
        nxt = c.post("/v1/completions", json={"prompt": "Hello", "max_tokens": 2})
        assert nxt.status_code == 200
        assert time.monotonic() - started < 30  # the rest of 2000 tokens did not run first


def test_tampering_with_the_served_artifact_is_refused_on_sighup(agent: AgentProcess,
                                                                 smol: Signed,
                                                                 client: openai.OpenAI) -> None:
    before = httpx.get(agent.url + "/healthz", timeout=30).json()["model"]
    answer = client.chat.completions.create(model="m", messages=QUESTION,  # type: ignore[arg-type]
                                            max_tokens=4, temperature=0)
    flip_byte(smol.artifact, -1000)  # tamper with the configured file in place
    try:
        agent.signal(signal.SIGHUP)
        line = agent.wait_line("event=reload_refused", 120)
        assert "reason=digest_mismatch_error" in line
        health = httpx.get(agent.url + "/healthz", timeout=30).json()
        assert health["status"] == "ok" and health["model"]["sha256"] == before["sha256"]
        again = client.chat.completions.create(model="m", messages=QUESTION,  # type: ignore[arg-type]
                                               max_tokens=4, temperature=0)
        assert again.choices[0].message.content == answer.choices[0].message.content
        assert _metric(agent, 'edgeward_agent_reloads_total{result="refused"}') >= 1
    finally:
        flip_byte(smol.artifact, -1000)  # restore it for the other tests


def test_an_unsigned_artifact_is_refused_at_start(smol: Signed, tmp_path: Path) -> None:
    config = _config(tmp_path / "agent.toml", smol, signature=tmp_path / "absent.json")
    proc = AgentProcess(config, wait=False)
    try:
        rc = proc.wait(120)
    finally:
        proc.stop()
    stderr = "".join(proc.lines)
    assert rc == 5, stderr
    refusal = [ln for ln in proc.lines if "event=artifact_refused" in ln]
    assert len(refusal) == 1 and "reason=unsigned_artifact_error" in refusal[0]
    assert "edgeward: error:" in stderr and "event=listening" not in stderr


def test_sigterm_shuts_down_within_the_deadline(smol: Signed, tmp_path: Path) -> None:
    config = _config(tmp_path / "agent.toml", smol, shutdown_deadline_s=1)
    proc = AgentProcess(config, timeout=120)
    try:
        first = threading.Event()
        body: list[str] = []

        def stream() -> None:
            headers = {"Authorization": f"Bearer {KEY}"}
            with httpx.Client(base_url=proc.url, headers=headers, timeout=120) as c, \
                    c.stream("POST", "/v1/completions", json=COUNTING) as resp:
                for line in resp.iter_lines():
                    body.append(line)
                    first.set()

        reader = threading.Thread(target=stream)
        reader.start()
        assert first.wait(120)
        started = time.monotonic()
        proc.signal(signal.SIGTERM)
        rc = proc.wait(60)
        elapsed = time.monotonic() - started
        reader.join(30)
    finally:
        proc.stop()
    assert rc == 0, "".join(proc.lines)
    assert elapsed < 1 + 5  # the deadline, plus the server's own wind-down
    events = [json.loads(ln[6:]) for ln in body if ln.startswith("data: {")]
    assert events[-1]["error"]["code"] == "shutting_down"  # the stream ended cleanly
    log = "".join(proc.lines)
    assert "event=shutdown_started" in log and "reason=SIGTERM" in log
    assert "event=shutdown_deadline" in log and "event=stopped" in log
