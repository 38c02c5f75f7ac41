"""One generation behind the safety filter: the prompt check, then the filtered token stream.

Shared by the agent's worker and ``edgeward run``, so both apply the filter the same way:
:func:`screen_prompt` checks every message (or the plain prompt) and applies redactions;
:func:`stream_filtered` feeds each generated piece through the filter's
:class:`~edgeward.safety.OutputStream`, emits what it allows, and closes the runtime's
:class:`~edgeward.runtimes.TokenStream` (which stops generation) as soon as the filter says
stop or the caller cancels. One :class:`~edgeward.safety.Pseudonyms` per request goes to both,
so a policy with numbered placeholders gives a person the same ``[NAME_1]`` in every message
and in the answer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from edgeward.runtimes import ChatMessage, GenerationStats, Runtime, SamplingParams
from edgeward.safety import OutputStream, Pseudonyms, SafetyFilter, Stage, Verdict

__all__ = ["Outcome", "Prompt", "VerdictHook", "refusal_text", "screen_prompt",
           "stream_filtered"]

FinishReason = Literal["stop", "length", "content_filter", "cancelled"]
VerdictHook = Callable[[Stage, Verdict], None]


@dataclass(frozen=True)
class Prompt:
    """What to generate from: chat ``messages`` (with the model's template) or a raw
    ``text`` completion; ``redacted_types``: the PII types the safety filter replaced in it
    before the model saw it (sorted; empty: as the client sent it)."""

    messages: tuple[ChatMessage, ...] | None = None
    text: str | None = None
    redacted_types: tuple[str, ...] = ()

    @property
    def is_chat(self) -> bool:
        """Whether this is a chat (templated) prompt."""
        return self.messages is not None


@dataclass
class Outcome:
    """How a generation ended.

    Attributes:
        finish_reason: ``stop``, ``length``, ``content_filter`` (the filter stopped it) or
            ``cancelled`` (the caller stopped it).
        stats: the runtime's figures for it.
        verdict: the filter's verdict that stopped or last redacted the output, if any.
        prompt_redacted_types: the PII types redacted in the prompt before the model saw it
            (the prompt's ``redacted_types``; types only, never values).
    """

    finish_reason: FinishReason
    stats: GenerationStats
    verdict: Verdict | None = None
    prompt_redacted_types: tuple[str, ...] = ()


def refusal_text(stage: Stage, verdict: Verdict, flt: object = None) -> str:
    """The refusal shown to a client: the policy's own words when the filter has them
    (``flt.refusal(verdict)``), naming the categories (never the matched text)."""
    cats = ", ".join(verdict.categories) or "unspecified"
    custom = getattr(flt, "refusal", None)
    if callable(custom):
        text = custom(verdict)
        if isinstance(text, str) and text:
            return f"{text} (blocked by the device's safety policy; categories: {cats})"
    what = "request" if stage == "prompt" else "response"
    return f"This {what} was blocked by the device's safety policy (categories: {cats})."


def screen_prompt(flt: SafetyFilter, prompt: Prompt, *, context: Mapping[str, Any],
                  on_verdict: VerdictHook | None = None,
                  pseudonyms: Pseudonyms | None = None) -> tuple[Prompt, Verdict | None]:
    """Check a prompt before generation.

    Args:
        flt: the safety filter.
        prompt: the prompt; every chat message (its content and ``name``) is checked, with
            its role in the context, and then the system, user and tool turns together (a
            request split over turns).
        context: passed to the filter (endpoint, request id, model).
        on_verdict: called with every verdict that is not ``allow``.
        pseudonyms: the request's placeholders, passed to the check of every message's
            content and name, in order (pass the same one to the output stream).

    Returns:
        The prompt to generate from (redacted where the filter redacted, with its
        ``redacted_types``) and the blocking verdict, or ``None`` when nothing blocked it.
    """
    extra = {} if pseudonyms is None else {"pseudonyms": pseudonyms}
    if prompt.messages is None:
        verdict = flt.check(prompt.text or "", stage="prompt", context=context, **extra)
        if verdict.action != "allow" and on_verdict is not None:
            on_verdict("prompt", verdict)
        if verdict.action == "block":
            return prompt, verdict
        if verdict.action == "redact" and verdict.redacted_text is not None \
                and verdict.redacted_text != prompt.text:
            return Prompt(text=verdict.redacted_text,
                          redacted_types=_span_types((verdict,))), None
        return prompt, None
    messages: list[ChatMessage] = []
    redactions: list[Verdict] = []
    for m in prompt.messages:
        checked, blocked = _screen_message(flt, m, context=context, on_verdict=on_verdict,
                                           extra=extra, redactions=redactions)
        if blocked is not None:
            return prompt, blocked
        messages.append(checked)
    # A request split over several turns passes each turn alone: the client's turns are
    # checked together too (the assistant's own turns are not the client's request).
    turns = [m["content"] for m in prompt.messages if m["role"] != "assistant"]
    if len(turns) > 1:
        whole = flt.check("\n".join(turns), stage="prompt",
                          context={**context, "role": "conversation"})
        if whole.action == "block":
            if on_verdict is not None:
                on_verdict("prompt", whole)
            return prompt, whole
    return Prompt(messages=tuple(messages), redacted_types=_span_types(redactions)), None


def _span_types(verdicts: Sequence[Verdict]) -> tuple[str, ...]:
    return tuple(sorted({s.type for v in verdicts for s in v.spans} or
                        {c for v in verdicts for c in v.categories}))


def _screen_message(flt: SafetyFilter, m: ChatMessage, *, context: Mapping[str, Any],
                    on_verdict: VerdictHook | None, extra: Mapping[str, Any],
                    redactions: list[Verdict]) -> tuple[ChatMessage, Verdict | None]:
    """One message's content and ``name`` checked: the message to send (each redacted where
    the filter redacted it, since a chat template may show the name; the verdicts that changed
    it go to ``redactions``) and the blocking verdict, if any."""
    parts: dict[str, str] = {"content": m["content"]}
    if m.get("name"):
        parts["name"] = m["name"]
    redacted = m.copy()
    for part, text in parts.items():
        verdict = flt.check(text, stage="prompt", context={**context, "role": m["role"]},
                            **extra)
        if verdict.action != "allow" and on_verdict is not None:
            on_verdict("prompt", verdict)
        if verdict.action == "block":
            return m, verdict
        if verdict.action == "redact" and verdict.redacted_text is not None \
                and verdict.redacted_text != text:
            if part == "content":
                redacted["content"] = verdict.redacted_text
            else:
                redacted["name"] = verdict.redacted_text
            redactions.append(verdict)
    return (m if redacted == m else redacted), None


def stream_filtered(runtime: Runtime, prompt: Prompt, params: SamplingParams, *,
                    checker: OutputStream, emit: Callable[[str], None],
                    cancelled: Callable[[], bool],
                    on_verdict: VerdictHook | None = None) -> Outcome:
    """Generate, passing every piece through the output filter.

    Args:
        runtime: the loaded model.
        prompt: what to generate from.
        params: sampling parameters.
        checker: this response's output filter.
        emit: receives the text the filter lets out, as it comes.
        cancelled: polled before each piece; ``True`` stops generation.
        on_verdict: called with every output verdict that is not ``allow``.

    Returns:
        How it ended.

    Raises:
        ConfigError: bad messages or a prompt longer than the context.
        RuntimeBackendError: the backend failed.
    """
    stream = (runtime.chat(prompt.messages, params) if prompt.messages is not None
              else runtime.generate(prompt.text or "", params))
    finish: FinishReason | None = None
    verdict: Verdict | None = None
    feed = checker.feed
    try:
        for piece in stream:
            if cancelled():
                finish = "cancelled"
                break
            step = feed(piece)
            if step.emit:
                emit(step.emit)
            if step.verdict is not None and step.verdict.action != "allow":
                verdict = step.verdict
                if on_verdict is not None:
                    on_verdict("output", verdict)
            if step.stop:
                finish = "content_filter"
                break
        else:
            step = checker.finish()
            if step.emit:
                emit(step.emit)
            if step.verdict is not None and step.verdict.action != "allow":
                verdict = step.verdict
                if on_verdict is not None:
                    on_verdict("output", verdict)
            if step.stop:
                finish = "content_filter"
    finally:
        stream.close()
    return Outcome(finish or stream.stats.finish_reason, stream.stats, verdict,
                   prompt_redacted_types=prompt.redacted_types)


def chat_messages(messages: Sequence[Mapping[str, str]]) -> tuple[ChatMessage, ...]:
    """Plain ``{"role", "content"}`` mappings as chat messages."""
    return tuple(ChatMessage(role=m["role"], content=m["content"]) for m in messages)
