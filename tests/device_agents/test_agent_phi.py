"""PHI through the agent: the ``phi`` preset by name, one set of pseudonyms per request (every
message and the answer), and the response's ``edgeward`` field saying the prompt was redacted
before the model saw it (types only). Texts are invented (a made-up patient, Mrs. Okonkwo)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import httpx
import openai
import pytest
from _agent_helpers import Signed, WordFilter
from test_agent_api import CHAT, sse

from conftest import AgentFactory
from edgeward.device_agents import Agent, config_from_dict, load_agent_config, safety_filter_for
from edgeward.device_agents._generate import Prompt, screen_prompt, stream_filtered
from edgeward.errors import UnsignedArtifactError
from edgeward.provenance import sign_artifact
from edgeward.runtimes import ChatMessage, Runtime, SamplingParams, TokenStream
from edgeward.safety import (
    BundledFilter,
    OutputStream,
    Pseudonyms,
    Stage,
    Verdict,
    preset_policy,
)

PHI = Path(__file__).parents[2] / "src" / "edgeward" / "safety" / "policies" / "phi.toml"
VISIT = "Summarise the visit for Mrs. Okonkwo, MRN: 00482913, DOB: 3/4/1957."
CONTACT = "Her daughter can be reached at ngozi.okonkwo@example.org or 555-201-8899."
VALUES = ("Okonkwo", "00482913", "3/4/1957", "ngozi.okonkwo@example.org", "555-201-8899")
NOT_REDACTED = {"prompt_redacted": False, "redacted_types": []}


def _pii_only() -> BundledFilter:
    """The phi preset with only its PII check (these tests are about redaction)."""
    return BundledFilter(dataclasses.replace(preset_policy("phi"), checks=("pii",)))


class RecordingFilter(BundledFilter):
    """The phi preset (PII check only), recording the Pseudonyms object of every call."""

    def __init__(self) -> None:
        super().__init__(dataclasses.replace(preset_policy("phi"), checks=("pii",)))
        self.calls: list[tuple[str, Pseudonyms | None]] = []

    def check(self, text: str, *, stage: Stage = "prompt",
              context: Mapping[str, Any] | None = None,
              pseudonyms: Pseudonyms | None = None) -> Verdict:
        self.calls.append(("check", pseudonyms))
        return super().check(text, stage=stage, context=context, pseudonyms=pseudonyms)

    def output_stream(self, *, context: Mapping[str, Any] | None = None,
                      pseudonyms: Pseudonyms | None = None) -> OutputStream:
        self.calls.append(("output_stream", pseudonyms))
        return super().output_stream(context=context, pseudonyms=pseudonyms)


class EchoRuntime:
    """Stands in for a runtime: records the messages it was given and "generates"
    ``answer`` two characters at a time."""

    def __init__(self, answer: str) -> None:
        self.answer = answer
        self.seen: list[Sequence[ChatMessage]] = []

    def chat(self, messages: Sequence[ChatMessage], params: SamplingParams) -> TokenStream:
        self.seen.append(messages)
        a = self.answer
        return TokenStream(iter([a[i:i + 2] for i in range(0, len(a), 2)]))


def _chat(*turns: tuple[str, str]) -> Prompt:
    return Prompt(messages=tuple(ChatMessage(role=r, content=c) for r, c in turns))


# -- screening and the stream, without the server ------------------------------------------


def test_one_conversation_one_set_of_numbers_and_what_the_model_saw() -> None:
    flt, p = _pii_only(), Pseudonyms()
    prompt = _chat(("system", "You write discharge summaries."), ("user", VISIT),
                   ("assistant", "Done. Anything else?"),
                   ("user", CONTACT + " Also MRN: 00482913 again."))
    screened, blocked = screen_prompt(flt, prompt, context={}, pseudonyms=p)
    assert blocked is None and screened.messages is not None
    assert [m["content"] for m in screened.messages] == [
        "You write discharge summaries.",
        "Summarise the visit for Mrs. [NAME_1], MRN: [MRN_1], DOB: [DOB_1].",
        "Done. Anything else?",
        "Her daughter can be reached at [EMAIL_1] or [PHONE_1]. Also MRN: [MRN_1] again."]
    assert screened.redacted_types == ("DOB", "EMAIL", "MRN", "NAME", "PHONE")
    runtime = EchoRuntime("I will write to ngozi.okonkwo@example.org and ben@example.org.")
    out: list[str] = []
    outcome = stream_filtered(cast(Runtime, runtime), screened, SamplingParams(),
                              checker=flt.output_stream(pseudonyms=p), emit=out.append,
                              cancelled=lambda: False)
    seen = json.dumps(runtime.seen)
    assert not any(v in seen for v in VALUES)  # the model never saw a value
    assert "".join(out) == "I will write to [EMAIL_1] and [EMAIL_2]."
    assert outcome.prompt_redacted_types == screened.redacted_types


def test_a_resent_history_gets_the_same_numbers() -> None:
    flt = _pii_only()
    first, _ = screen_prompt(flt, _chat(("user", VISIT)), context={}, pseudonyms=Pseudonyms())
    again, _ = screen_prompt(flt, _chat(("user", VISIT), ("assistant", "ok"),
                                        ("user", CONTACT)), context={}, pseudonyms=Pseudonyms())
    assert first.messages is not None and again.messages is not None
    assert again.messages[0] == first.messages[0]


def test_the_name_field_is_redacted_too() -> None:
    prompt = Prompt(messages=(ChatMessage(role="user", content="hello",
                                          name="ngozi.okonkwo@example.org"),))
    screened, _ = screen_prompt(_pii_only(), prompt, context={}, pseudonyms=Pseudonyms())
    assert screened.messages is not None
    assert screened.messages[0] == {"role": "user", "content": "hello", "name": "[EMAIL_1]"}
    assert screened.redacted_types == ("EMAIL",)


def test_an_unredacted_prompt_is_the_clients_and_says_so() -> None:
    prompt = _chat(("user", "What is a usual adult dose of amoxicillin?"))
    screened, blocked = screen_prompt(_pii_only(), prompt, context={}, pseudonyms=Pseudonyms())
    assert blocked is None and screened == prompt and screened.redacted_types == ()
    text, _ = screen_prompt(_pii_only(), Prompt(text="call 555-201-8899"), context={})
    assert text == Prompt(text="call [PHONE]", redacted_types=("PHONE",))  # no pseudonyms


def test_a_filter_without_pseudonyms_still_works_when_none_are_given() -> None:
    class OldFilter(WordFilter):  # the SafetyFilter protocol before pseudonyms
        def check(self, text: str, *, stage: Stage = "prompt",  # type: ignore[override]
                  context: Mapping[str, Any] | None = None) -> Verdict:
            return super().check(text, stage=stage, context=context)

    _, blocked = screen_prompt(OldFilter(), _chat(("user", "the forbidden thing")), context={})
    assert blocked is not None and blocked.action == "block"


# -- the agent: preset by name, one Pseudonyms per request, the response field -------------


def test_the_agent_passes_one_pseudonyms_per_request_to_everything(
        make_agent: AgentFactory) -> None:
    flt = RecordingFilter()
    running = make_agent(safety_filter=flt)
    body = CHAT | {"messages": [{"role": "system", "content": "be brief"},
                                {"role": "user", "content": VISIT},
                                {"role": "user", "content": CONTACT}], "max_tokens": 4}
    with httpx.Client(base_url=running.url, timeout=30) as c:
        c.post("/v1/chat/completions", json=body).raise_for_status()
        first = list(flt.calls)
        c.post("/v1/chat/completions", json=body).raise_for_status()
    per_request = [p for _, p in first if p is not None]
    assert [kind for kind, _ in first].count("output_stream") == 1
    assert len(per_request) == 4  # three messages and the output stream ...
    assert len({id(p) for p in per_request}) == 1  # ... share one Pseudonyms
    assert all(p is not per_request[0] for _, p in flt.calls[len(first):])  # a new request
    (whole,) = [p for kind, p in first if kind == "check" and p is None]  # the turns together
    assert whole is None


def test_the_response_says_the_prompt_was_redacted(make_agent: AgentFactory) -> None:
    running = make_agent(safety_filter=_pii_only())
    redacted = CHAT | {"messages": [{"role": "user", "content": VISIT},
                                    {"role": "user", "content": CONTACT}], "max_tokens": 4}
    with httpx.Client(base_url=running.url, timeout=30) as c:
        body = c.post("/v1/chat/completions", json=redacted).json()
        plain = c.post("/v1/chat/completions", json=CHAT | {"max_tokens": 4}).json()
        events = sse(c.post("/v1/chat/completions",
                            json=redacted | {"stream": True,
                                             "stream_options": {"include_usage": True}}).text)
        completion = c.post("/v1/completions", json={"prompt": CONTACT, "max_tokens": 3}).json()
        streamed_plain = sse(c.post("/v1/completions", json={
            "prompt": "the model", "max_tokens": 3, "stream": True}).text)
    field = {"prompt_redacted": True,
             "redacted_types": ["DOB", "EMAIL", "MRN", "NAME", "PHONE"]}
    assert body["edgeward"] == field
    assert not any(v in json.dumps(body) for v in VALUES)  # types, never values
    assert set(body) == {"id", "object", "created", "model", "choices", "usage", "edgeward"}
    assert plain["edgeward"] == NOT_REDACTED
    # streamed: on the final chunk (the one with finish_reason), and only there
    chunks = events[:-1]
    (final,) = [e for e in chunks if e["choices"] and e["choices"][0]["finish_reason"]]
    assert final["edgeward"] == field
    assert [e for e in chunks if "edgeward" in e] == [final]
    assert completion["edgeward"] == {"prompt_redacted": True,
                                      "redacted_types": ["EMAIL", "PHONE"]}
    assert streamed_plain[-2]["edgeward"] == NOT_REDACTED


def test_a_refusal_says_the_model_saw_nothing(make_agent: AgentFactory) -> None:
    running = make_agent(safety_filter=WordFilter())
    blocked = CHAT | {"messages": [{"role": "user", "content": "the forbidden thing"}]}
    with httpx.Client(base_url=running.url, timeout=30) as c:
        body = c.post("/v1/chat/completions", json=blocked).json()
        events = sse(c.post("/v1/chat/completions", json=blocked | {"stream": True}).text)
    assert body["edgeward"] == NOT_REDACTED and body["safety"]["action"] == "block"
    assert events[0]["edgeward"] == NOT_REDACTED


def test_the_official_client_reads_the_field(make_agent: AgentFactory) -> None:
    running = make_agent(safety_filter=_pii_only())
    client = openai.OpenAI(base_url=running.base_url, api_key="unused", max_retries=0)
    resp = client.chat.completions.create(model="m", max_tokens=3,
                                          messages=[{"role": "user", "content": CONTACT}])
    assert resp.choices[0].finish_reason in ("stop", "length")
    assert (resp.model_extra or {})["edgeward"] == {"prompt_redacted": True,
                                                    "redacted_types": ["EMAIL", "PHONE"]}


def _agent(tmp_path: Path, signed: Signed, policy: str) -> Agent:
    return Agent(config_from_dict({
        "artifact": str(signed.artifact), "trust_store": str(signed.trust),
        "state_dir": str(tmp_path / "state"), "listen": "127.0.0.1:0",
        "safety_policy": policy}))


def test_the_phi_preset_by_name_in_the_agents_config(tmp_path: Path,
                                                     signed_tiny: Signed) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(f'artifact = "{signed_tiny.artifact}"\ntrust_store = '
                      f'"{signed_tiny.trust}"\nsafety_policy = "phi"\n')
    assert load_agent_config(config).safety_policy == "phi"  # a name, not tmp/phi
    flt = safety_filter_for("phi")  # no trust store: a preset is part of the package
    assert isinstance(flt, BundledFilter) and flt.policy.name == "phi"
    agent = _agent(tmp_path, signed_tiny, "phi")
    agent.start()
    with agent.serve_in_thread() as running, httpx.Client(base_url=running.url,
                                                           timeout=30) as c:
        body = c.post("/v1/chat/completions", json=CHAT | {"max_tokens": 3, "messages": [
            {"role": "user", "content": CONTACT}]}).json()
    assert body["edgeward"]["prompt_redacted"] is True, body


def test_a_copy_of_phi_must_be_signed_like_any_policy_file(tmp_path: Path,
                                                          signed_tiny: Signed) -> None:
    copy = tmp_path / "site-phi.toml"
    copy.write_bytes(PHI.read_bytes())
    with pytest.raises(UnsignedArtifactError):
        _agent(tmp_path, signed_tiny, str(copy)).start()
    sign_artifact(copy, signed_tiny.key)
    agent = _agent(tmp_path, signed_tiny, str(copy))
    agent.start()
    try:
        assert cast(BundledFilter, agent.safety_filter).policy.name == "phi"
    finally:
        agent.close()
