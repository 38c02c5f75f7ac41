"""The harm score of a text: classifier logits plus rule evidence, over every decoded view.

``P(label) = softmax(logits + evidence)``: the rules' log-odds (:mod:`._rules`) add to the
classifier's logits (:mod:`._classifier`), so a known attack phrasing raises the score of an
otherwise unfamiliar prompt and benign context lowers it. The unsafe score is
``1 - P(benign)``. A text with hidden payloads (base64, rot13, ...) is scored on each decoded
view too, and the most unsafe view counts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

import numpy as np

from edgeward.safety._classifier import LABELS, LinearModel
from edgeward.safety._decode import Payload, decode_payloads
from edgeward.safety._encoder import Encoder
from edgeward.safety._normalise import normalise
from edgeward.safety._rules import RuleHit, rule_evidence
from edgeward.safety._scan import Scan

__all__ = ["Cascade", "HarmScore", "score_text", "score_views"]

_NO_MODEL_LOGITS = np.array([2.0, 0.0, 0.0, 0.0])  # rules only: benign unless they say otherwise
# The classifier's logits are scaled by this before the rules' log-odds are added: the n-gram
# model is often confident about phrasings it has never seen (it learned its sources' style),
# and strong rule evidence, for or against, must be able to overrule it. Chosen on the dev
# split together with the hand-written cases of tests/safety/test_safety_attacks.py.
CLASSIFIER_SCALE = 0.6
# Log-odds of "injection" that a payload's encoding adds to its decoded view.
_HIDDEN_EVIDENCE = {"base64": 1.0, "base32": 1.0, "hex": 1.0, "url": 0.5, "rot13": 1.0,
                    "reversed": 1.0, "morse": 1.0, "pig_latin": 1.0, "unicode_tags": 2.0,
                    "leet": 0.5, "spaced": 0.5}


@dataclass(frozen=True)
class HarmScore:
    """The scores of one text.

    Attributes:
        probs: probability of each of :data:`LABELS`.
        hazards: hazard categories whose terms occur, with their lexicon weights.
        hits: the rules that matched.
        view: which view decided (``text``, or the payload's encoding).
        encoder: the encoder stage's label probabilities, when it was consulted.
    """

    probs: dict[str, float]
    hazards: dict[str, float] = field(default_factory=dict)
    hits: tuple[RuleHit, ...] = ()
    view: str = "text"
    encoder: dict[str, float] | None = None

    @property
    def unsafe(self) -> float:
        """``1 - P(benign)``."""
        return 1.0 - self.probs["benign"]

    @property
    def label(self) -> str:
        """The most likely unsafe label (``harmful``, ``jailbreak`` or ``injection``)."""
        return max(LABELS[1:], key=lambda k: self.probs[k])


def score_text(text: str, model: LinearModel | None, *, rules: bool = True,
               scan: Scan | None = None, view: str = "text", hidden: float = 0.0) -> HarmScore:
    """Score one normalised text.

    Args:
        text: normalised text.
        model: the classifier, or ``None`` to score by the rules alone.
        rules: add the rules' evidence.
        scan: the text's scan, if already made.
        view: the name of this view.
        hidden: log-odds added to ``injection`` because the text was hidden (a decoded
            payload): hiding an instruction is itself evidence of an attack.
    """
    logits = (CLASSIFIER_SCALE * model.logits(text) if model is not None
              else _NO_MODEL_LOGITS.copy())
    logits[3] += hidden
    hazards: dict[str, float] = {}
    hits: list[RuleHit] = []
    if rules:
        boost, hits, hazards = rule_evidence(scan or Scan(text))
        logits = logits + np.array([0.0, boost["harmful"], boost["jailbreak"],
                                    boost["injection"]])
    z = np.exp(logits - logits.max())
    p = z / z.sum()
    return HarmScore({k: float(v) for k, v in zip(LABELS, p, strict=True)}, hazards,
                     tuple(hits), view)


# The most frequent function words of English and of the other languages the rules know:
# a text with more of the latter than of the former (and at least two) is not English.
_EN_WORDS = frozenset((
    "the", "a", "an", "and", "or", "of", "to", "in", "on", "for", "with", "is", "are", "was",
    "be", "how", "what", "which", "who", "can", "i", "you", "my", "your", "it", "this", "that",
    "do", "does", "not", "from", "by", "at", "as", "me", "we", "they",
))
_OTHER_WORDS = frozenset((
    "el", "la", "los", "las", "un", "una", "y", "o", "de", "del", "en", "con", "es", "son", "que",
    "como", "para", "por", "mi", "tu", "su", "se", "puedo", "le", "les", "des", "et", "ou", "du",
    "dans", "avec", "est", "sont", "qui", "comment", "pour", "je", "mon", "ma", "ton", "une",
    "der", "die", "das", "den", "dem", "ein", "eine", "und", "oder", "von", "zu", "im", "mit",
    "ist", "sind", "wie", "was", "ich", "mein", "nicht", "kann", "man", "fur",
)) - _EN_WORDS
_WORD = re.compile(r"[a-z]+")


def reads_as_english(text: str) -> bool:
    """Whether a (normalised) text reads as English rather than Spanish, French or German,
    by counting the most frequent function words of each (cheap; short texts are English
    unless they clearly are not)."""
    words = _WORD.findall(text[:4000].lower())
    en = sum(w in _EN_WORDS for w in words)
    other = sum(w in _OTHER_WORDS for w in words)
    return not (other >= 2 and other > en)


@dataclass(frozen=True)
class Cascade:
    """How the encoder stage joins the fast stage (n-gram classifier and rules).

    The fast stage decides the clear cases; a view whose fast unsafe score falls in
    ``[low, high)`` also goes to the encoder, and the two are combined as
    ``softmax(fast_weight * log p_fast + encoder_weight * log p_encoder)``.
    """

    encoder: Encoder
    min_words: int = 6
    low: float = 0.5
    high: float = 0.95
    fast_weight: float = 1.0
    encoder_weight: float = 0.5

    def combine(self, fast: HarmScore, text: str) -> HarmScore:
        """``fast`` with the encoder's evidence on ``text`` added, if its score is in band.

        A text that opens defensively about the hazard it names ("What are the warning signs
        of ...", "How can I protect ... from ...", with no outright request for it: the rules'
        ``-defensive`` evidence against ``harmful``) is left to the fast stage: the encoder
        reads the hazard's meaning but not reliably the protective framing around it. Text
        that reads as another language is left to the fast stage too: the encoder is English
        only (MiniLM's vocabulary), and on Spanish, French or German it flags ordinary
        questions. So is a text of fewer than ``min_words`` words ("hello there"), which gives
        the encoder too little to read: it was trained on whole requests. And
        where the rules found an outright request for a hazard, or a strong attack phrasing,
        the encoder may raise the score but not lower it: it reads English paraphrases, not
        every language and encoding the rules know.
        """
        if not self.low <= fast.unsafe < self.high:
            return fast
        if any(h.rule.endswith("-defensive") and h.weight < 0 for h in fast.hits):
            return fast
        if len(text.split()) < self.min_words or not reads_as_english(text):
            return fast
        explicit = any((h.rule.startswith("hazard_terms+intent") and h.weight > 0)
                       or (h.label != "harmful" and h.weight >= 2.5) for h in fast.hits)
        z_enc = self.encoder.logits(text)
        log_enc = z_enc - np.logaddexp.reduce(z_enc)
        log_fast = np.log(np.maximum([fast.probs[k] for k in LABELS], 1e-12))
        z = self.fast_weight * log_fast + self.encoder_weight * log_enc
        p = np.exp(z - z.max())
        p /= p.sum()
        enc = {k: float(v) for k, v in zip(LABELS, np.exp(log_enc), strict=True)}
        if explicit and p[0] > fast.probs["benign"]:
            return replace(fast, encoder=enc)  # it may raise this score, not lower it
        return replace(fast, probs={k: float(v) for k, v in zip(LABELS, p, strict=True)},
                       encoder=enc)


def score_views(text: str, model: LinearModel | None, *, rules: bool = True,
                decode: bool = True, scan: Scan | None = None, hidden: str = "",
                cascade: Cascade | None = None) -> tuple[HarmScore, list[Payload]]:
    """Score a normalised text and each payload decoded from it; return the most unsafe.

    Args:
        text: normalised text.
        model: the classifier, or ``None``.
        rules: add the rules' evidence.
        decode: look for hidden payloads.
        scan: the text's scan, if already made.
        hidden: text decoded from Unicode tag characters by the normaliser.
        cascade: the encoder stage, for views the fast stage is unsure of.

    Returns:
        The most unsafe view's score, and the payloads found.
    """
    scan = scan or Scan(text)
    best = score_text(text, model, rules=rules, scan=scan)
    best_text = text
    payloads = decode_payloads(scan) if decode else []
    if hidden:
        payloads.insert(0, Payload("unicode_tags", hidden))
    for payload in payloads:
        view = normalise(payload.text).text
        s = score_text(view, model, rules=rules, view=payload.encoding,
                       hidden=_HIDDEN_EVIDENCE.get(payload.encoding, 0.0))
        if s.unsafe > best.unsafe:
            best, best_text = s, view
    if cascade is not None:  # one encoder call at most: on the view the fast stage fears most
        best = cascade.combine(best, best_text)
    return best, payloads
