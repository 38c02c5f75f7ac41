"""The streamed-output check: redact or stop a response while it is being generated.

Per piece, the cost must stay far below a token's generation time, so the stream does not run
the whole pipeline on every token:

- **Harm** is checked on a bounded window (the last ``window`` characters) every
  ``check_every`` characters of new output, and at the end. A flagged window stops generation.
- **PII** is checked on text about to be released, with a little already-released context
  for cues ("my name is"). Text is released up to a cut that holds back only what could be the
  start of a PII pattern: the unfinished last word, a trailing run of digits and separators
  (a phone or card number still arriving), an IBAN-shaped tail, or a name cue and the
  capitalised words after it. The hold-back never exceeds ``max_hold`` characters.

With a :class:`~edgeward.safety.Pseudonyms` and ``[pii] pseudonyms`` on, redactions write the
conversation's numbered placeholders, so a name of the prompt keeps its number in the answer.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from edgeward.safety._normalise import normalise
from edgeward.safety._pii import find_pii, redact
from edgeward.safety._pseudonyms import Pseudonyms
from edgeward.safety._verdict import Span, StreamStep, Verdict

if TYPE_CHECKING:
    from edgeward.safety._filter import BundledFilter

__all__ = ["FilterStream"]

_CONTEXT = 64  # characters of released text the PII check sees for cues
_MIN_RECHECK = 24  # characters: at a sentence end, check harm if at least this much is new
_SENTENCE_END = frozenset(".!?\n")
# A tail that could still grow into PII is held back (up to max_hold characters): a run
# with a digit (a phone, card or ID still arriving, "14 Elm", "the 4th of"), an IBAN-shaped
# tail, an email-shaped tail, a cue ("Dr.", "DOB:") and the capitalised run after it, or a
# trailing run of capitalised words (a name or a street still arriving).
_PII_TAIL = re.compile(
    r"(?:[+(]?\w*\d[\w .,()/:-]*|\b[A-Za-z]{2}\d{2}[ A-Za-z0-9]*|[\w.+-]+@[\w.-]*|"
    r"\b(?:name is|name's|[Nn]ame:|Mr\.?|Mrs\.?|Ms\.?|Dr\.?|Dear|I am|I'm|DOB:?|MRN:?)"
    r"(?:\s+[A-Z][\w'’-]*)*\s*|"
    r"\b[A-Z][\w'’.-]*(?:[ ,]+(?:[A-Z][\w'’.-]*|van|von|der|de|la|da|di|del|y|of))*\s*)$")


class FilterStream:
    """Checks one streamed response (an :class:`~edgeward.safety.OutputStream`).

    Args:
        owner: the filter whose policy, classifier, counters and audit sink it uses.
        context: the caller's context (passed on to audit records).
        pseudonyms: the conversation's placeholders (used when the policy sets
            ``[pii] pseudonyms``).
    """

    def __init__(self, owner: BundledFilter, *, context: Mapping[str, Any] | None = None,
                 pseudonyms: Pseudonyms | None = None) -> None:
        self._f = owner
        self._context = context
        self._pseudonyms = pseudonyms
        p = owner.policy
        self._every, self._window, self._hold = p.check_every, p.window, p.max_hold
        self._pii = "pii" in p.checks and "output" in p.pii_stages
        self._harm = "rules" in p.checks or owner.model is not None
        self._text = ""
        self._emitted = 0  # characters of _text released
        self._checked = 0  # length of _text at the last harm check
        self._stop: Verdict | None = None

    @property
    def held(self) -> int:
        """Characters received but not yet released."""
        return len(self._text) - self._emitted

    def feed(self, piece: str) -> StreamStep:
        """Take the next generated piece.

        Returns:
            What may be sent now (possibly redacted, possibly empty while a short tail is held
            back), and whether generation must stop.
        """
        if self._stop is not None:
            return StreamStep(emit="", stop=True, verdict=self._stop)
        self._text += piece
        new = len(self._text) - self._checked
        if self._harm and (new >= self._every or (
                new >= _MIN_RECHECK and any(c in _SENTENCE_END for c in piece))):
            stop = self._check_harm()
            if stop is not None:
                return stop
        return self._release(self._cut())

    def finish(self) -> StreamStep:
        """Generation ended: check what is left and release it."""
        if self._stop is not None:
            return StreamStep(emit="", stop=True, verdict=self._stop)
        if self._harm and len(self._text) > self._checked:
            stop = self._check_harm()
            if stop is not None:
                return stop
        return self._release(len(self._text))

    def _check_harm(self) -> StreamStep | None:
        f = self._f
        self._checked = len(self._text)
        window = self._text[-self._window:]
        harm = f.harm(normalise(window), stage="output")
        scores: dict[str, float] = {"unsafe": round(harm.unsafe, 4)}
        found = f._harm_categories(harm, window, "output", scores, use_guard=False)
        if not found or all(f.policy.action_for(c) == "allow" for c in found):
            return None
        verdict = f._decide(window, found, scores, [], time.perf_counter())
        if verdict.action != "block":
            return None
        self._stop = verdict
        f._record(verdict, self._text, "output", self._context)
        return StreamStep(emit="", stop=True, verdict=verdict)

    def _cut(self) -> int:
        """Where released text may end: before a tail that could still become PII."""
        text, n = self._text, len(self._text)
        floor = max(self._emitted, n - self._hold)
        i = n
        while i > floor and not text[i - 1].isspace():
            i -= 1
        if self._pii:
            m = _PII_TAIL.search(text, max(floor, i - self._hold), i)
            if m is not None and m.start() < i:
                i = m.start()
        return max(i, floor)

    def _release(self, cut: int) -> StreamStep:  # noqa: PLR0911
        if cut <= self._emitted:
            return StreamStep(emit="")
        start, f = self._emitted, self._f
        if not self._pii:
            self._emitted = cut
            return StreamStep(emit=self._text[start:cut])
        # PII is looked for in everything received (with some released text before it for
        # cues), and the cut moves back to the start of a span that crosses it: a value is
        # released whole, redacted once, with one placeholder
        lo = max(0, start - _CONTEXT)
        norm = normalise(self._text[lo:])
        found = []
        for s in find_pii(norm.text, f.policy.pii_types, patterns=f.policy.pii_patterns,
                          names=f.policy.pii_names, age_over=f.policy.pii_age_over):
            a, b = norm.original_span(s.start, s.end)
            found.append((a + lo, b + lo, s.type))
        for a, b, _ in found:
            if start <= a < cut < b:
                cut = a
        if cut <= start:
            return StreamStep(emit="")
        chunk = self._text[start:cut]
        self._emitted = cut
        spans = [Span(max(a, start) - start, min(b, cut) - start, t) for a, b, t in found
                 if min(b, cut) > max(a, start)]
        if not spans:
            return StreamStep(emit=chunk)
        verdict = f._decide(chunk, dict.fromkeys((s.type for s in spans), 1.0), {}, spans,
                            time.perf_counter(), pseudonyms=self._pseudonyms)
        if verdict.action == "allow":
            return StreamStep(emit=chunk)
        f._record(verdict, chunk, "output", self._context)
        if verdict.action == "block":
            self._stop = verdict
            return StreamStep(emit="", stop=True, verdict=verdict)
        return StreamStep(emit=verdict.redacted_text or redact(chunk, verdict.spans),
                          verdict=verdict)
