"""The llama.cpp runtime on the tiny generated GGUF (unit tests: real llama.cpp, tiny model)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edgeward.errors import ConfigError, RuntimeBackendError
from edgeward.hardware_profiles import get_profile
from edgeward.runtimes import LlamaCppRuntime, SamplingParams
from edgeward.runtimes._base import find_stop as _find_stop
from edgeward.runtimes._base import stop_prefix_len as _stop_prefix_len

GREEDY = SamplingParams(temperature=0.0, max_tokens=12, seed=0)


@pytest.fixture(scope="module")
def runtime(tiny_gguf: Path) -> Iterator[LlamaCppRuntime]:
    rt = LlamaCppRuntime()
    rt.load(tiny_gguf, context_length=256)
    yield rt
    rt.unload()


def test_tiny_model_generates_tokens(runtime: LlamaCppRuntime) -> None:
    stream = runtime.generate("the model", GREEDY)
    pieces = list(stream)
    stats = stream.stats
    assert stats.prompt_tokens == len(runtime.tokenize("the model"))
    assert 1 <= stats.completion_tokens <= 12
    assert stats.finish_reason in ("stop", "length")
    assert stats.time_to_first_token_s is not None and stats.time_to_first_token_s > 0
    assert stats.total_s >= stats.time_to_first_token_s
    assert stats.peak_memory_bytes > 0
    assert isinstance("".join(pieces), str)


def test_max_tokens_is_respected(runtime: LlamaCppRuntime) -> None:
    # min_p=0 and top_k=0 keep every token in play, so the random model never hits EOS by luck
    # often; whatever it does, it may not exceed the budget.
    for seed in range(3):
        stream = runtime.generate("hello", SamplingParams(max_tokens=5, seed=seed, min_p=0.0,
                                                          top_k=0))
        stream.text()
        assert stream.stats.completion_tokens <= 5
        if stream.stats.completion_tokens == 5:
            assert stream.stats.finish_reason == "length"


def test_greedy_generation_is_deterministic(runtime: LlamaCppRuntime) -> None:
    a = runtime.complete("world", GREEDY).text
    b = runtime.complete("world", GREEDY).text
    assert a == b


def test_seeded_sampling_is_reproducible(runtime: LlamaCppRuntime) -> None:
    params = SamplingParams(temperature=1.0, max_tokens=10, seed=1234, min_p=0.0)
    assert runtime.complete("the", params).text == runtime.complete("the", params).text


def test_chat_uses_the_models_template(runtime: LlamaCppRuntime) -> None:
    stream = runtime.chat([{"role": "user", "content": "hello"}], GREEDY)
    stream.text()
    rendered = "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n"
    spelled_out = runtime.tokenize(rendered, add_special=False)  # markers as plain text
    # The template's markers became single special tokens, so the prompt is much shorter
    # than the same text spelled out character by character.
    assert 0 < stream.stats.prompt_tokens <= len(spelled_out) - 3 * 8


def test_closing_a_stream_stops_generation(runtime: LlamaCppRuntime) -> None:
    stream = runtime.generate("the", SamplingParams(max_tokens=200, seed=0, min_p=0.0, top_k=0))
    next(iter(stream), None)
    stream.close()
    assert stream.stats.completion_tokens < 200
    # The model is free again.
    assert runtime.complete("the", GREEDY).stats.completion_tokens >= 1


def test_tokenize(runtime: LlamaCppRuntime) -> None:
    ids = runtime.tokenize("hello world")
    assert ids[0] == 1  # <s>
    assert len(ids) == 3  # whole words from the tiny vocabulary
    assert runtime.tokenize("hello world", add_special=False) == ids[1:]


def test_prompt_longer_than_the_context_is_a_config_error(runtime: LlamaCppRuntime) -> None:
    with pytest.raises(ConfigError, match="context holds 256"):
        runtime.complete("the " * 400, GREEDY)


def test_profile_sets_threads_and_context(tiny_gguf: Path) -> None:
    pi = get_profile("raspberry-pi-5-8gb")
    with LlamaCppRuntime() as rt:
        rt.load(tiny_gguf, pi)
        # The profile asks for 2048 tokens, the model was trained for 512: 512 is used.
        assert rt.context_length == 512
        assert rt.complete("the", GREEDY).stats.completion_tokens >= 1
    assert not rt.loaded


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such model file"):
        LlamaCppRuntime().load(tmp_path / "absent.gguf")


def test_garbage_file_is_translated_to_a_backend_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"this is not a gguf file" * 100)
    rt = LlamaCppRuntime()
    with pytest.raises(RuntimeBackendError) as info:
        rt.load(bad)
    assert info.value.__cause__ is not None  # the backend's own error is chained
    assert not rt.loaded


def test_truncated_gguf_is_refused(tiny_gguf: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(tiny_gguf.read_bytes()[: tiny_gguf.stat().st_size // 2])
    with pytest.raises(RuntimeBackendError):
        LlamaCppRuntime().load(cut)


def test_generate_without_a_model_fails_clearly() -> None:
    with pytest.raises(RuntimeBackendError, match="no model is loaded"):
        LlamaCppRuntime().generate("hi")


@pytest.mark.parametrize(("field", "value"), [
    ("max_tokens", 0), ("temperature", -1.0), ("top_p", 0.0), ("top_k", -1),
    ("min_p", 1.0), ("repeat_penalty", 0.0), ("seed", -1), ("stop", ("",)),
])
def test_bad_sampling_params_are_config_errors(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=field):
        SamplingParams(**{field: value})  # type: ignore[arg-type]


def test_chat_rejects_malformed_messages(runtime: LlamaCppRuntime) -> None:
    with pytest.raises(ConfigError, match="needs string 'role' and 'content'"):
        runtime.chat([{"role": "user"}])  # type: ignore[typeddict-item]
    with pytest.raises(ConfigError, match="at least one message"):
        runtime.chat([])


@pytest.mark.parametrize(("text", "stops", "cut"), [
    ("hello world", ("wor",), 6),
    ("hello world", ("xyz",), None),
    ("a.b.c", (".", "b"), 1),
])
def test_find_stop(text: str, stops: tuple[str, ...], cut: int | None) -> None:
    assert _find_stop(text, stops) == cut


@pytest.mark.parametrize(("text", "stops", "held"), [
    ("hello wo", ("world",), 2),      # "wo" may start "world": hold it back
    ("hello", ("world",), 0),
    ("abc<|im", ("<|im_end|>",), 4),
    ("x", ("xy", "x!"), 1),
])
def test_stop_prefix_is_held_back(text: str, stops: tuple[str, ...], held: int) -> None:
    assert _stop_prefix_len(text, stops) == held
