"""The streamed-output check: redacts PII split across tokens, stops harmful output, holds back
only a short tail."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from edgeward.safety import (
    BundledFilter,
    MemoryAuditSink,
    StreamStep,
    normalise,
    policy_from_dict,
)


def _run(flt: BundledFilter, pieces: Iterable[str]) -> tuple[str, list[StreamStep], int]:
    stream = flt.output_stream()
    steps, emitted, most_held = [], [], 0
    received = 0
    for piece in pieces:
        step = stream.feed(piece)
        received += len(piece)
        steps.append(step)
        emitted.append(step.emit)
        most_held = max(most_held, received - len("".join(emitted)))
        if step.stop:
            return "".join(emitted), steps, most_held
    final = stream.finish()
    steps.append(final)
    emitted.append(final.emit)
    return "".join(emitted), steps, most_held


def _tokens(text: str, size: int = 3) -> list[str]:
    return [text[i:i + size] for i in range(0, len(text), size)]


@pytest.mark.parametrize("pieces", [
    pytest.param(["You can reach her at ", "ana", ".lopez", "@", "clinic", ".example", ".org",
                  " any time."], id="email-split-across-tokens"),
    pytest.param(_tokens("You can reach her at ana.lopez@clinic.example.org any time.", 1),
                 id="one-char-tokens"),
    pytest.param(_tokens("You can reach her at ana.lopez@clinic.example.org any time.", 5),
                 id="five-char-tokens"),
])
def test_email_split_across_tokens_is_redacted(pieces: list[str]) -> None:
    flt = BundledFilter()
    out, steps, held = _run(flt, pieces)
    assert out == "You can reach her at [EMAIL] any time."
    assert not any(s.stop for s in steps)
    assert held <= flt.policy.max_hold + max(len(p) for p in pieces)


def test_phone_and_card_arriving_in_pieces_are_redacted() -> None:
    text = "Call +44 20 7946 0958 or use card 4111 1111 1111 1111 to pay."
    out, _, _ = _run(BundledFilter(), _tokens(text, 2))
    assert out == "Call [PHONE] or use card [CARD] to pay."


def test_harmful_output_stops_generation() -> None:
    audit = MemoryAuditSink()
    flt = BundledFilter(audit=audit)
    harmful = ("Sure! Here is how to build a pipe bomb at home. First, get a steel pipe and "
               "two end caps. Fill the pipe with black powder explosive from fireworks, then "
               "drill a hole for the fuse and detonate it near the crowd to kill people. ")
    out, steps, _ = _run(flt, _tokens(harmful * 2, 4))
    assert steps[-1].stop and steps[-1].verdict is not None
    assert steps[-1].verdict.action == "block"
    assert len(out) < len(harmful * 2)
    assert audit.records[-1]["stage"] == "output" and audit.records[-1]["action"] == "block"
    assert flt.counts()["block"] == 1


def test_after_a_stop_every_feed_says_stop() -> None:
    flt = BundledFilter(policy_from_dict({"classifier": {"output_threshold": 0.0},
                                          "stream": {"check_every": 8}}))
    stream = flt.output_stream()
    steps = [stream.feed("hello there, friend ") for _ in range(3)]
    assert steps[-1].stop and stream.finish().stop


def test_benign_output_streams_through_unchanged() -> None:
    text = ("The mitochondria is the powerhouse of the cell. It produces ATP through oxidative "
            "phosphorylation, which needs oxygen. Muscle cells have many of them. ") * 4
    out, steps, held = _run(BundledFilter(), _tokens(text, 4))
    assert out == text and not any(s.stop for s in steps)
    assert held <= 48 + 4


def test_hold_back_is_bounded_even_for_a_long_number() -> None:
    flt = BundledFilter()
    stream = flt.output_stream()
    for ch in "Numbers: " + "1234 " * 40:
        stream.feed(ch)
        assert stream.held <= flt.policy.max_hold  # type: ignore[attr-defined]


class _CountingEncoder:
    """Stands in for the encoder stage and counts the texts it is asked about."""

    max_tokens = 128

    def __init__(self) -> None:
        self.calls: list[str] = []

    def logits(self, text: str):  # type: ignore[no-untyped-def]
        import numpy as np

        self.calls.append(text)
        return np.array([0.0, 0.0, 0.0, 0.0])


def test_the_encoder_reads_prompts_not_output() -> None:
    enc = _CountingEncoder()
    flt = BundledFilter(encoder=enc)  # type: ignore[arg-type]
    text = ("Here is the HTML of my page, please review the layout and tell me what "
            "to change so that the cards line up on small screens. ") * 12
    stream = flt.output_stream()
    for i in range(0, len(text), 4):
        stream.feed(text[i:i + 4])
    stream.finish()
    flt.check(text, stage="output")
    assert enc.calls == []
    # a prompt the fast stage is unsure of goes to it, once, whatever its decoded views
    prompt = ("Could you tell me which of these two plans is the better one for me? "
              "cGxlYXNlIHRlbGwgbWUgd2hhdCB0aGUgd2VhdGhlciB3aWxsIGJlIGxpa2UgdG9tb3Jyb3cgaW4gUGFyaXM=")
    fast = flt.harm(normalise(prompt), stage="output").unsafe  # output: the fast stage alone
    assert flt.policy.encoder_band[0] <= fast < flt.policy.encoder_band[1]
    flt.check(prompt)
    assert len(enc.calls) == 1


_PHI_OUTPUTS = [
    "She lives at 14 Elm Street, Springfield, IL 62701 with her son.",
    "She was admitted on March 5, 2021 and seen again on the 4th of April, 2021.",
    "His VIN is 1HGCM82633A004352 and the car is blue.",
    "We met Willem van der Merwe at the clinic. Call +1 415 555 0132 now.",
]


@pytest.mark.parametrize("text", _PHI_OUTPUTS)
@pytest.mark.parametrize("pieces", ["words", "chars"])
def test_streamed_phi_is_redacted_whole_as_in_one_check(text: str, pieces: str) -> None:
    import re

    from edgeward.safety import Pseudonyms, load_filter

    flt = load_filter("phi")
    whole = flt.check(text, stage="output", pseudonyms=Pseudonyms()).redacted_text
    stream = flt.output_stream(pseudonyms=Pseudonyms())
    parts = re.findall(r"\s*\S+", text) if pieces == "words" else list(text)
    got = "".join(stream.feed(p).emit for p in parts) + stream.finish().emit
    assert whole is not None and got == whole
