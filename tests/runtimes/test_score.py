"""Runtime.score: teacher-forced next-token log-probabilities from the loaded llama.cpp model."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgeward.errors import ConfigError, RuntimeBackendError
from edgeward.runtimes import LlamaCppRuntime, OnnxRuntime, SamplingParams

GREEDY = SamplingParams(temperature=0.0, max_tokens=8, seed=0)


@pytest.fixture(scope="module")
def runtime(tiny_gguf: Path) -> Iterator[LlamaCppRuntime]:
    rt = LlamaCppRuntime(batch_size=4)  # texts longer than a batch are decoded in chunks
    rt.load(tiny_gguf, context_length=128)
    yield rt
    rt.unload()


def _tokens(rt: LlamaCppRuntime) -> list[int]:
    tokens = rt.tokenize("the model reads the text and the model writes")
    assert len(tokens) > 6
    return tokens


def test_top_k_is_sorted_and_a_distribution(runtime: LlamaCppRuntime) -> None:
    tokens = _tokens(runtime)
    scores = runtime.score(tokens, list(range(len(tokens))), top_k=5)
    assert [s.position for s in scores] == list(range(len(tokens)))
    for s in scores:
        lps = [lp for _, lp in s.top]
        assert len(lps) == 5 and lps == sorted(lps, reverse=True)
        assert all(lp <= 0.0 for lp in lps)
        assert sum(math.exp(lp) for lp in lps) <= 1.0 + 1e-9
    # position i's distribution depends on the prefix: not every row is the same
    assert len({s.top[0] for s in scores}) > 1


def test_lookup_matches_the_top_k_it_names(runtime: LlamaCppRuntime) -> None:
    tokens = _tokens(runtime)
    first = runtime.score(tokens, [2, 5], top_k=3)
    lookup = [[t for t, _ in s.top] for s in first]
    again = runtime.score(tokens, [2, 5], top_k=1, lookup=lookup)
    for a, b in zip(first, again, strict=True):
        assert b.looked_up == pytest.approx([lp for _, lp in a.top], abs=1e-9)


def test_scores_do_not_depend_on_other_positions_or_batching(tiny_gguf: Path,
                                                             runtime: LlamaCppRuntime) -> None:
    tokens = _tokens(runtime)
    some = runtime.score(tokens, [3], top_k=4)[0]
    every = runtime.score(tokens, list(range(len(tokens))), top_k=4)[3]
    assert [t for t, _ in some.top] == [t for t, _ in every.top]
    assert [lp for _, lp in some.top] == pytest.approx([lp for _, lp in every.top], abs=1e-6)
    with LlamaCppRuntime(batch_size=512) as other:
        other.load(tiny_gguf, context_length=256)
        top = other.score(tokens, [3], top_k=4)[0].top
        assert [lp for _, lp in top] == pytest.approx([lp for _, lp in some.top], abs=1e-5)


def test_generation_after_scoring_is_unchanged(runtime: LlamaCppRuntime) -> None:
    before = runtime.complete("the model", GREEDY).text
    runtime.score(_tokens(runtime), [1, 2, 3])
    assert runtime.complete("the model", GREEDY).text == before


@pytest.mark.parametrize(("tokens", "positions", "top_k", "message"), [
    ([], [0], 5, "at least one token"),
    ([1, 2, 3], [], 5, "at least one token"),
    ([1, 2, 3], [2, 1], 5, "ascending"),
    ([1, 2, 3], [3], 5, "ascending"),
    ([1, 2, 3], [-1], 5, "ascending"),
    ([1, 2, 3], [0], 0, "top_k"),
    ([1, 2, 3], [0], 65, "top_k"),
    ([1, 10**9, 3], [0], 5, "vocabulary"),
])
def test_bad_arguments_are_config_errors(runtime: LlamaCppRuntime, tokens: list[int],
                                         positions: list[int], top_k: int, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        runtime.score(tokens, positions, top_k=top_k)


def test_lookup_must_have_one_row_per_position(runtime: LlamaCppRuntime) -> None:
    with pytest.raises(ConfigError, match="one list per position"):
        runtime.score([1, 2, 3], [0, 1], lookup=[[1]])


def test_a_text_longer_than_the_context_is_refused(runtime: LlamaCppRuntime) -> None:
    with pytest.raises(ConfigError, match="context holds"):
        runtime.score([1] * 5000, [0])


def test_a_backend_without_the_capability_cannot_score(tiny_gguf: Path) -> None:
    class EmbedOnly(LlamaCppRuntime):
        capabilities = frozenset({"embed"})

    with EmbedOnly() as rt:
        rt.load(tiny_gguf, context_length=64)
        with pytest.raises(RuntimeBackendError, match="log-probabilities"):
            rt.score([1, 2], [0])
    assert "score" not in OnnxRuntime().capabilities


def test_batch_size_is_checked() -> None:
    with pytest.raises(ConfigError, match="batch_size"):
        LlamaCppRuntime(batch_size=0)
