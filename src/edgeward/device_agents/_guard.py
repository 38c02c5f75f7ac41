"""A guard model (e.g. Llama Guard 3 as a GGUF) as the safety filter's last stage.

The operator names a signed guard GGUF in the agent's config (``safety_guard``); the agent
verifies it against the trust store like the model it serves, loads it with llama.cpp, and
hands the filter a callable that asks it about the prompts the filter is unsure of (the
policy's ``guard_band``). Each call is one short greedy generation (``safe`` / ``unsafe`` and
the categories); calls are serialised, since one llama.cpp context serves them.
"""

from __future__ import annotations

import threading
from pathlib import Path

from edgeward.runtimes import LlamaCppRuntime, SamplingParams
from edgeward.safety import GuardResult, Stage, llama_guard_prompt, parse_llama_guard

__all__ = ["GgufGuard"]

_ANSWER_TOKENS = 10  # "unsafe\nS1,S10" and a little room


class GgufGuard:
    """Asks a guard GGUF whether a text is safe (the filter's ``guard`` callable).

    Args:
        path: the verified guard GGUF.
        context_length: tokens of context (the guard prompt plus the text).
    """

    def __init__(self, path: Path, *, context_length: int = 2048) -> None:
        self.path = Path(path)
        self._runtime = LlamaCppRuntime()
        self._runtime.load(self.path, context_length=context_length)
        self._lock = threading.Lock()
        self._params = SamplingParams(max_tokens=_ANSWER_TOKENS, temperature=0.0, seed=0)

    def __call__(self, text: str, *, stage: Stage) -> GuardResult:
        """The guard's verdict on ``text``; an answer it cannot parse is unsafe."""
        prompt = llama_guard_prompt(text, stage=stage)
        with self._lock:
            answer = self._runtime.complete(prompt, self._params).text
        return parse_llama_guard(answer)

    def close(self) -> None:
        """Unload the guard model."""
        with self._lock:
            self._runtime.unload()
