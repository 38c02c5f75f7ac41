"""The real SmolLM2-135M-Instruct model through the llama.cpp runtime."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeward.hardware_profiles import get_profile
from edgeward.runtimes import LlamaCppRuntime, SamplingParams

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def smollm2(smollm2_gguf: Path):  # type: ignore[no-untyped-def]
    with LlamaCppRuntime() as rt:
        rt.load(smollm2_gguf, get_profile("raspberry-pi-5-8gb"), context_length=1024)
        yield rt


def test_answers_a_factual_question(smollm2: LlamaCppRuntime) -> None:
    question = "What's the capital city of France? Answer in one word."
    stream = smollm2.chat([{"role": "user", "content": question}],
                          SamplingParams(temperature=0.0, max_tokens=24, seed=0))
    reply = stream.text()
    assert "Paris" in reply
    assert stream.stats.finish_reason in ("stop", "length")
    assert stream.stats.completion_tokens >= 2
    assert stream.stats.decode_tokens_per_s is not None and stream.stats.decode_tokens_per_s > 0


def test_chat_ends_at_the_end_of_turn(smollm2: LlamaCppRuntime) -> None:
    stream = smollm2.chat([{"role": "user", "content": "Say hello."}],
                          SamplingParams(temperature=0.0, max_tokens=200, seed=0))
    reply = stream.text()
    assert stream.stats.finish_reason == "stop"  # <|im_end|> was generated, well before 200
    assert "<|im_end|>" not in reply and "<|im_start|>" not in reply


def test_stop_string_cuts_the_output(smollm2: LlamaCppRuntime) -> None:
    c = smollm2.complete("Count: one, two, three, four, five,",
                         SamplingParams(temperature=0.0, max_tokens=30, stop=(" eight",)))
    assert "eight" not in c.text
    assert c.stats.finish_reason == "stop"


def test_context_from_the_profile(smollm2_gguf: Path) -> None:
    with LlamaCppRuntime() as rt:
        rt.load(smollm2_gguf, get_profile("raspberry-pi-5-8gb"))
        assert rt.context_length == 2048
        assert rt.metadata["general.architecture"] == "llama"
