"""PII detection and redaction with typed placeholders (``[EMAIL]``), for prompts and outputs.

Structured types are found by pattern and then validated where a checksum or a rule exists:
payment cards by Luhn, IBANs by their ISO 13616 mod-97 check digits, US SSNs by the SSA's
area/group/serial rules, IP addresses by parsing. Medical record numbers and dates of birth need
a cue ("MRN", "DOB") because a bare ID or date is not enough evidence. The other Safe Harbor
identifiers have modules of their own, whose spans :func:`find_pii` merges by priority: URLs,
account, licence, vehicle and device identifiers (:mod:`._identifiers`), street addresses with
their city and postal code (:mod:`._address`), dates and ages (:mod:`._dates`), person names
(:mod:`._names`). A policy may add its own patterns per type (``patterns``).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping, Sequence

from edgeward.errors import ConfigError
from edgeward.safety._address import find_addresses
from edgeward.safety._dates import find_dates
from edgeward.safety._identifiers import find_identifiers, luhn_valid
from edgeward.safety._names import find_names
from edgeward.safety._scan import UPPER_CLASS, Intervals, Lexicon, Scan, Term, merge_windows
from edgeward.safety._verdict import Span

__all__ = ["NAME_MODES", "PII_TYPES", "PLACEHOLDERS", "find_pii", "iban_valid", "luhn_valid",
           "redact"]

PII_TYPES = ("EMAIL", "PHONE", "CARD", "IBAN", "SSN", "IP", "URL", "MRN", "ACCOUNT", "LICENSE",
             "VEHICLE", "DEVICE", "DATE", "DOB", "AGE", "ADDRESS", "NAME")
PLACEHOLDERS = {t: f"[{t}]" for t in PII_TYPES}

_EMAIL = re.compile(r"(?<![\w.+-])[\w.%+-]{1,64}@(?:[A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,24}\b")
_CARD = re.compile(r"(?<![\d+-])\d(?:[ -]?\d){11,18}(?![\d-])")
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}(?: ?[A-Za-z0-9]{4}){2,7}"
                   r"(?: ?[A-Za-z0-9]{1,3})?(?![A-Za-z0-9])")
_SSN = re.compile(r"(?<![\d-])(\d{3})([- ]?)(\d{2})\2(\d{4})(?![\d-])")
_SSN_CUE = re.compile(r"\b(?:ssn|social security|soc\.? sec)", re.IGNORECASE)
_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d]|\.\d)")
_IPV6 = re.compile(r"(?<![0-9A-Fa-f:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![0-9A-Fa-f:])")
_PHONE = re.compile(
    r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{1,12}(?:[ .-]\(?\d{1,8}\)?){0,5}"
    r"(?: ?(?:x|ext\.?) ?\d{1,5})?(?!\w)")
_PHONE_CUE = re.compile(r"\b(?:phone|tel|telephone|mobile|cell|fax|call|contact|reach|number|"
                        r"whatsapp|text me|ring)\b", re.IGNORECASE)
_DATE_LIKE = re.compile(r"^\d{4}[-.]\d{1,2}[-.]\d{1,2}$|^\d{1,2}[-.]\d{1,2}[-.]\d{2,4}$")
_DATE_START = re.compile(r"\d{4}-\d{2}-\d{2}\b|\d{1,2}/\d{1,2}/\d{2,4}\b")
_MRN = re.compile(r"\b(?:mrn|medical record(?: number| no\.?| #)?|patient (?:id|number|no\.?)|"
                  r"chart (?:number|no\.?|#)|hospital (?:number|no\.?))\s*(?:is\s+)?[:#]?\s*"
                  r"([A-Z]{0,3}[- ]?\d[\d-]{4,11}[A-Z0-9]?)\b", re.IGNORECASE)
_UPPER = UPPER_CLASS
_NAME_PART = rf"[{_UPPER}][\w'’-]+"
_NAME = re.compile(
    rf"(?:\b(?:[Mm]y name is|[Mm]y name's|[Nn]ame:|[Cc]alled|I am|I'm|[Tt]his is|[Pp]atient:?|"
    rf"[Dd]ear|[Rr]egards,|[Ss]incerely,|[Tt]hanks,|[Ss]igned,?|[Cc]ontact|[Nn]amed|[Aa]ttn:?)\s+"
    rf"(?:(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof)\.?\s+)?"  # "Dear Mr. Okonkwo"
    rf"|\b(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Sir|Madam)\.?\s+)"
    rf"({_NAME_PART}(?:\s+(?:[A-Z]\.\s+)?{_NAME_PART}){{0,2}})")
_NOT_NAMES = frozenset([
    "I", "A", "The", "This", "That", "It", "Here", "There", "Sorry", "Happy", "Glad", "Not",
    "Going", "Looking", "Trying", "Writing", "Asking", "Interested", "Sure", "Fine", "Good", "Well",
    "New", "Just", "Also", "Still", "Now", "Currently", "Working", "Please", "Hi", "Hello",
    "Thanks", "Thank", "Yes", "No", "My", "Your", "Our", "Their", "We", "You", "He", "She", "They",
    "Doctor", "Patient", "Mr", "Mrs", "Ms", "Dr"
])


def iban_valid(text: str) -> bool:
    """Whether ``text`` (spaces ignored, any case) is an IBAN with valid mod-97 check digits."""
    s = text.replace(" ", "").upper()
    if not 15 <= len(s) <= 34 or not s[:2].isalpha() or not s[2:4].isdigit():
        return False
    rearranged = s[4:] + s[:4]
    try:
        return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1
    except ValueError:
        return False


def _card_ok(m: re.Match[str]) -> bool:
    digits = re.sub(r"\D", "", m.group())
    return 12 <= len(digits) <= 19 and len(set(digits)) > 1 and luhn_valid(digits)


def _ssn_ok(m: re.Match[str]) -> bool:
    area, group, serial = m.group(1), m.group(3), m.group(4)
    if area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000":
        return False
    if m.group(2) == "-":
        return True
    window = m.string[max(0, m.start() - 40):m.start()]
    return bool(_SSN_CUE.search(window))


def _ip_ok(m: re.Match[str]) -> bool:
    try:
        ipaddress.ip_address(m.group())
    except ValueError:
        return False
    return True


def _phone_ok(m: re.Match[str]) -> bool:
    s = m.group()
    digits = sum(c.isdigit() for c in s.split("x")[0].split("ext")[0])
    if not 7 <= digits <= 15 or _DATE_LIKE.match(s) or _DATE_START.match(s):
        return False
    if m.string[m.end():m.end() + 1] == ":":  # a time of day
        return False
    if "." in s and (m.string[m.start() - 1:m.start()] == "."
                     or _DOT_DIGIT.match(m.string, m.end())):  # an OID or a version, 1.3.6.1.4
        return False
    seps = sum(c in " .-()" for c in s)
    if s.startswith(("+", "(")) or seps >= 2 or (seps == 0 and digits in (10, 11)):
        return True
    window = m.string[max(0, m.start() - 40):m.start()]
    return bool(_PHONE_CUE.search(window))


_NAME_CUE_WORDS = ("name", "named", "called", "am", "m", "this", "patient", "dear", "regards",
                   "sincerely", "thanks", "signed", "contact", "mr", "mrs", "ms", "miss", "mx",
                   "dr", "prof", "sir", "madam", "attn")
_NAME_CUES = Lexicon([Term("NAME", _NAME_CUE_WORDS, _NAME, before=20, after=90,
                           case_sensitive=True)])
_CUED = Lexicon([
    Term("MRN", ("mrn", "medical", "patient", "chart", "hospital"), _MRN, before=5, after=60),
])

# Matched at the start of each run of digits, in priority order: (type, pattern, validator).
_AT_DIGITS: tuple[tuple[str, re.Pattern[str], Callable[[re.Match[str]], bool] | None], ...] = (
    ("CARD", _CARD, _card_ok),
    ("SSN", _SSN, _ssn_ok),
    ("IP", _IPV4, _ip_ok),
    ("PHONE", _PHONE, _phone_ok),
)
# A cued identifier outranks the checksummed types: an IMEI passes Luhn like a card number,
# and "Member ID: 123-45-6789" is a member ID. An address block outranks a phone number: its
# postal code ("1100-053") can look like one.
_PRIORITY = {t: i for i, t in enumerate((
    "EMAIL", "URL", "IBAN", "DEVICE", "VEHICLE", "LICENSE", "ACCOUNT", "MRN", "CARD", "SSN", "IP",
    "DOB", "DATE", "AGE", "ADDRESS", "PHONE", "NAME"))}
_EMAIL_WINDOW = (64, 256)
_AT_SIGN = re.compile("@")
_DOT_DIGIT = re.compile(r"\.\d")


def _numeric(scan: Scan, wanted: set[str]) -> list[tuple[str, int, int]]:
    """Numeric PII, tried only where a run of digits starts (no scan of the whole text)."""
    text = scan.text
    n = len(text)
    found: list[tuple[str, int, int]] = []
    covered = -1
    at_digits = [f for f in _AT_DIGITS if f[0] in wanted]
    for s, e in scan.digit_runs:
        if s < covered:
            continue
        begin = s - 1 if s and text[s - 1] in "+(" else s
        for kind, pattern, valid in at_digits:
            m = pattern.match(text, begin if kind == "PHONE" else s)
            if m and (valid is None or valid(m)):
                found.append((kind, m.start(), m.end()))
                covered = max(covered, m.end())
        if "IBAN" in wanted and s >= 2 and text[s - 2:s].isalpha():
            m = _IBAN.match(text, s - 2)
            if m and iban_valid(m.group()):
                found.append(("IBAN", m.start(), m.end()))
                covered = max(covered, m.end())
        if "IP" in wanted and ":" in text[max(0, s - 5):e + 5]:
            for m in _IPV6.finditer(text, max(0, s - 5), min(n, e + 40)):
                # not inside a word, two groups at least: "B::e" in "MIB::enterprises" parses
                # as an address but is none
                a, b = m.start(), m.end()
                if (a == 0 or not text[a - 1].isalnum()) and not text[b:b + 1].isalpha() \
                        and sum(1 for g in m.group().split(":") if g) >= 2 and _ip_ok(m):
                    found.append(("IP", m.start(), m.end()))
                    covered = max(covered, m.end())
    return found


def _candidates(scan: Scan, wanted: set[str], *, model_names: bool = True
                ) -> list[tuple[str, int, int]]:
    text = scan.text
    found: list[tuple[str, int, int]] = []
    if "EMAIL" in wanted and "@" in text:
        at = [m.start() for m in _AT_SIGN.finditer(text)]
        for lo, hi in merge_windows((max(0, i - _EMAIL_WINDOW[0]), i + _EMAIL_WINDOW[1])
                                    for i in at):
            found += [("EMAIL", m.start(), m.end()) for m in _EMAIL.finditer(text, lo, hi)]
    if scan.digit_runs:
        found += _numeric(scan, wanted)
        found += [(t.key, s, e) for t, s, e in _CUED.find(scan) if t.key in wanted]
    found += find_identifiers(scan, wanted)
    if "ADDRESS" in wanted:
        found += [("ADDRESS", s, e) for s, e in find_addresses(scan)]
    if wanted & {"DATE", "DOB", "AGE"}:
        found += [(t, s, e) for t, s, e in find_dates(scan) if t in wanted]
    if "NAME" in wanted:
        found += [("NAME", s, e) for _, s, e in _NAME_CUES.find(scan)
                  if text[s:e].split()[0] not in _NOT_NAMES]
        if model_names:
            found += [("NAME", s, e) for s, e in find_names(scan)]
    return found


def _extra(text: str, wanted: set[str], patterns: Mapping[str, Sequence[re.Pattern[str]]]
           ) -> list[tuple[str, int, int]]:
    """Spans of a policy's own patterns (``[pii.patterns]``): group 1 if a pattern has groups,
    else the whole match; empty matches are ignored."""
    found: list[tuple[str, int, int]] = []
    for kind, regexes in patterns.items():
        if kind not in wanted:
            continue
        for regex in regexes:
            group = 1 if regex.groups else 0
            found += [(kind, m.start(group), m.end(group)) for m in regex.finditer(text)
                      if m.end(group) > m.start(group) >= 0]
    return found


NAME_MODES = ("model", "cued")


def find_pii(text: str | Scan, types: Iterable[str] = PII_TYPES, *,
             patterns: Mapping[str, Sequence[re.Pattern[str]]] | None = None,
             names: str = "model", age_over: int = 0) -> list[Span]:
    """PII spans of a text, non-overlapping, in text order.

    Where two detections overlap, the one earlier in the priority order wins (email, URL,
    IBAN, device, vehicle, licence and account identifiers, MRN, card, SSN, IP, dates, address,
    phone, name): a card number is not also a phone number, an IMEI is not a card number.

    Args:
        text: the (normalised) text, or its :class:`~edgeward.safety._scan.Scan`.
        types: the PII types to look for (see :data:`PII_TYPES`).
        patterns: extra regular expressions per PII type (a policy's ``[pii.patterns]``);
            each match of a type in ``types`` is a span of that type (group 1 if the pattern
            has groups). They run over the whole text, so they should be linear-time.
        names: ``"model"``: person names by the learned name model (:mod:`._names`) and by
            cues; ``"cued"``: only after a cue ("my name is", "Dr.", "Dear"), which leaves
            the names of people a prompt is about (a poet, a president) alone.
        age_over: ages at or below this are not reported (HIPAA's Safe Harbor: ages over
            89); 0 reports every age. Ages written without a number ("in her nineties") are
            always reported.

    Returns:
        Spans with ``type`` one of :data:`PII_TYPES`.
    """
    scan = text if isinstance(text, Scan) else Scan(text)
    s_text = scan.text
    wanted = set(types)
    if names not in NAME_MODES:
        raise ConfigError(f"names={names!r}: expected one of {list(NAME_MODES)}")
    unknown = sorted(set(types) - set(PII_TYPES) | set(patterns or {}) - set(PII_TYPES))
    if unknown:
        raise ConfigError(f"unknown PII types {unknown}; known: {list(PII_TYPES)}")
    candidates = _candidates(scan, wanted, model_names=names == "model")
    if age_over:
        candidates = [c for c in candidates if c[0] != "AGE" or not _age_at_most(
            s_text[c[1]:c[2]], age_over)]
    if patterns:
        candidates += _extra(s_text, wanted, patterns)
    taken = Intervals()
    spans: list[Span] = []
    for kind, start, found_end in sorted(candidates, key=lambda c: (_PRIORITY[c[0]], c[1])):
        end = found_end
        if kind == "ADDRESS":  # an address block ends where an email or an ID on it starts
            inside = taken.first_start_in(start, end)
            end = end if inside is None else inside
        while end > start and s_text[end - 1] in " .,-\n":
            end -= 1
        if end <= start or not taken.add(start, end):
            continue
        spans.append(Span(start, end, kind))
    spans.sort(key=lambda s: s.start)
    return spans


_AGE_WORD_VALUES = {"twent": 20, "thirt": 30, "fort": 40, "fift": 50, "sixt": 60, "sevent": 70,
                    "eight": 80, "ninet": 90, "sexagenarian": 60, "septuagenarian": 70,
                    "octogenarian": 80, "nonagenarian": 90, "centenarian": 100,
                    "supercentenarian": 110}


def _age_at_most(value: str, limit: int) -> bool:
    """Whether an age span is at most ``limit`` (its number, or the least age its word
    means: "eighties" and "octogenarian" 80); unknown words are kept (not at most)."""
    digits = re.search(r"\d+", value)
    if digits is not None:
        return int(digits.group()) <= limit
    low = value.lower()
    least = [v for k, v in _AGE_WORD_VALUES.items() if low.startswith(k)]
    return bool(least) and max(least) <= limit


def redact(text: str, spans: Iterable[Span], *,
           placeholder: Callable[[str, str], str] | None = None) -> str:
    """``text`` with every span replaced by its typed placeholder (``[EMAIL]``).

    Args:
        text: the text the spans index.
        spans: non-overlapping spans.
        placeholder: ``(type, value) -> placeholder`` instead of the typed one (numbered
            pseudonyms, :class:`~edgeward.safety.Pseudonyms`).
    """
    out: list[str] = []
    pos = 0
    for s in sorted(spans, key=lambda s: s.start):
        if s.start < pos:
            continue
        out.append(text[pos:s.start])
        out.append(placeholder(s.type, text[s.start:s.end]) if placeholder is not None
                   else PLACEHOLDERS.get(s.type, f"[{s.type}]"))
        pos = s.end
    out.append(text[pos:])
    return "".join(out)
