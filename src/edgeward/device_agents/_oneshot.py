"""One-off local generation through the agent's verified path (``edgeward run``).

The artifact is verified and loaded from a private read-only copy exactly as the agent does
(in a fresh directory under ``~/.cache/edgeward/run`` unless told otherwise, removed after the
run), and the prompt and output pass through the same safety-filter hooks.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeward.device_agents._generate import (
    Prompt,
    refusal_text,
    screen_prompt,
    stream_filtered,
)
from edgeward.device_agents._verified import ModelInfo, ModelStore
from edgeward.errors import SafetyBlocked
from edgeward.hardware_profiles import HardwareProfile
from edgeward.runtimes import ChatMessage, GenerationStats, SamplingParams
from edgeward.safety import PassThroughFilter, Pseudonyms, SafetyFilter, Verdict

__all__ = ["RunResult", "default_run_dir", "run_once"]


def default_run_dir() -> Path:
    """``$XDG_CACHE_HOME/edgeward/run``, else ``~/.cache/edgeward/run`` (on disk, not tmpfs:
    the model copy can be large)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edgeward" / "run"


@dataclass(frozen=True)
class RunResult:
    """A one-off generation.

    Attributes:
        text: what the model said (after the output filter).
        finish_reason: ``stop``, ``length`` or ``content_filter``.
        stats: the runtime's figures.
        model: what ran, and whether it was verified.
        safety_verdict: the output verdict that stopped or redacted it, if any.
        prompt_redacted_types: the PII types redacted in the prompt before the model saw it.
    """

    text: str
    finish_reason: str
    stats: GenerationStats
    model: ModelInfo
    safety_verdict: Verdict | None = None
    prompt_redacted_types: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The ``edgeward run --json`` object."""
        s = self.stats
        return {"text": self.text, "finish_reason": self.finish_reason,
                "model": self.model.to_dict(),
                "stats": {"prompt_tokens": s.prompt_tokens,
                          "completion_tokens": s.completion_tokens,
                          "time_to_first_token_s": s.time_to_first_token_s,
                          "decode_tokens_per_s": s.decode_tokens_per_s, "total_s": s.total_s,
                          "peak_memory_bytes": s.peak_memory_bytes},
                "safety": self.safety_verdict.to_dict() if self.safety_verdict else None,
                "prompt_redacted_types": list(self.prompt_redacted_types)}


def run_once(artifact: Path, prompt: str, *, trust_store: Path | None,
             signature: Path | None = None, allow_unsigned: bool = False, raw: bool = False,
             params: SamplingParams | None = None, profile: HardwareProfile | None = None,
             context_length: int | None = None, run_dir: Path | None = None,
             safety_filter: SafetyFilter | None = None,
             on_text: Callable[[str], None] | None = None, allow_cpu_fallback: bool = False,
             on_warning: Callable[[str], None] | None = None) -> RunResult:
    """Verify ``artifact``, load it from a private copy, and generate once.

    Args:
        artifact: the model file or directory.
        prompt: the user's message (chat template) or, with ``raw``, the text to continue.
        trust_store: the trust store directory (``None`` only with ``allow_unsigned``).
        signature: its signature (default next to it).
        allow_unsigned: run it even if its signature is missing or does not verify.
        raw: plain completion instead of the chat template.
        params: sampling parameters.
        profile: the hardware profile to load it for.
        context_length: tokens of context.
        run_dir: where the private copy goes (default :func:`default_run_dir`).
        safety_filter: default :class:`~edgeward.safety.PassThroughFilter`.
        on_text: receives the text as it is generated.
        allow_cpu_fallback: run on the CPU when the profile's GPU backend is missing from
            the installed llama.cpp (else RuntimeBackendError).
        on_warning: receives why the model does not run as the profile says (CPU fallback,
            fewer threads).

    Returns:
        The text and its figures.

    Raises:
        SignatureError: the artifact was refused.
        SafetyBlocked: the filter blocked the prompt (``categories`` says why).
        ConfigError, ArtifactError, RuntimeBackendError, ResourceError: as for the agent.
    """
    flt = safety_filter or PassThroughFilter()
    root = run_dir or default_run_dir()
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    _sweep_stale(root)
    store = ModelStore(root / f"run-{os.getpid()}-{uuid.uuid4().hex[:8]}",
                       allow_cpu_fallback=allow_cpu_fallback)
    store.open()
    try:
        model = store.load(artifact, trust_store=trust_store, signature=signature,
                           allow_unsigned=allow_unsigned, profile=profile,
                           context_length=context_length)
        for warning in getattr(model.runtime, "load_warnings", ()):
            if on_warning is not None:
                on_warning(warning)
        try:
            request = (Prompt(text=prompt) if raw else
                       Prompt(messages=(ChatMessage(role="user", content=prompt),)))
            context = {"endpoint": "run", "model": model.info.id}
            pseudonyms = Pseudonyms()
            request, blocked = screen_prompt(flt, request, context=context,
                                             pseudonyms=pseudonyms)
            if blocked is not None:
                raise SafetyBlocked(refusal_text("prompt", blocked, flt),
                                    categories=list(blocked.categories))
            pieces: list[str] = []

            def emit(text: str) -> None:
                pieces.append(text)
                if on_text is not None:
                    on_text(text)

            checker = flt.output_stream(context=context, pseudonyms=pseudonyms)
            outcome = stream_filtered(model.runtime, request, params or SamplingParams(),
                                      checker=checker, emit=emit, cancelled=lambda: False)
        finally:
            model.close()
    finally:
        store.close()
        shutil.rmtree(store.state_dir, ignore_errors=True)
    return RunResult("".join(pieces), outcome.finish_reason, outcome.stats, model.info,
                     outcome.verdict, outcome.prompt_redacted_types)


def _sweep_stale(root: Path) -> None:
    """Remove run directories whose process is gone (their lock is free)."""
    for d in root.glob("run-*"):
        lock = d / "agent.lock"
        try:
            fd = os.open(lock, os.O_RDWR)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # a run in progress
        finally:
            os.close(fd)
        with contextlib.suppress(OSError):
            for sub in d.rglob("*"):
                if sub.is_dir():
                    sub.chmod(0o700)
            shutil.rmtree(d, ignore_errors=True)
