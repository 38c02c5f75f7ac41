"""PII detection and redaction with typed placeholders (``[EMAIL]``), for prompts and outputs.

Structured types are found by pattern and then validated where a checksum or a rule exists:
payment cards by Luhn, IBANs by their ISO 13616 mod-97 check digits, US SSNs by the SSA's
area/group/serial rules, IP addresses by parsing. Dates of birth, medical record numbers and
person names need a cue in the text ("DOB", "MRN", "my name is", "Mr.") because a bare date, ID
or capitalised word is not enough evidence. Street addresses are found by a number next to a
street word or suffix in several languages, and by military and PO-box forms.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable

from edgeward.safety._scan import Lexicon, Scan, Term, merge_windows
from edgeward.safety._verdict import Span

__all__ = ["PII_TYPES", "PLACEHOLDERS", "find_pii", "iban_valid", "luhn_valid", "redact"]

PII_TYPES = ("EMAIL", "PHONE", "CARD", "IBAN", "SSN", "IP", "DOB", "MRN", "ADDRESS", "NAME")
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
_MONTHS = (r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|"
           r"sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?")
_DATE = (r"(?:\d{1,2}[/.-]\d{1,2}[/.-](?:\d{4}|\d{2})|\d{4}[/.-]\d{1,2}[/.-]\d{1,2}|"
         rf"{_MONTHS} \d{{1,2}}(?:st|nd|rd|th)?,? \d{{4}}|"
         rf"\d{{1,2}}(?:st|nd|rd|th)? (?:of )?{_MONTHS},? \d{{4}})")
_DOB = re.compile(rf"\b(?:d\.?o\.?b\.?|date of birth|birth ?date|birthday|born(?: on| in)?)"
                  rf"\s*[:\-]?\s*(?:is\s+|was\s+|on\s+)?({_DATE})", re.IGNORECASE)
_MRN = re.compile(r"\b(?:mrn|medical record(?: number| no\.?| #)?|patient (?:id|number|no\.?)|"
                  r"chart (?:number|no\.?|#)|hospital (?:number|no\.?))\s*(?:is\s+)?[:#]?\s*"
                  r"([A-Z]{0,3}[- ]?\d[\d-]{4,11}[A-Z0-9]?)\b", re.IGNORECASE)
_STREET_WORDS = (r"Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|"
                 r"Way|Place|Pl|Terrace|Parkway|Pkwy|Circle|Cir|Square|Sq|Highway|Hwy|Row|"
                 r"Close|Crescent|Alley|Trail|Plaza|Squares|Union|Mews|Gardens|Hill|Park")
_STREET_SUFFIX = (r"[\w'-]*(?:stra(?:ss|ß)e|str\.|weg|gasse|platz|allee|vej|gade|gata|gatan|"
                  r"vägen|veien|tie|katu|kuja|polku|straat|laan|plein|utca|út|tér|ulica|"
                  r"sokak|caddesi|stræti|str)")
# Addresses that start at their house number ("221B Baker Street", "28245 Puruntie 82") ...
_ADDRESS_FIRST = re.compile(
    rf"\d{{1,6}}[A-Za-z]?,?\s+(?:[A-Z][\w'.-]*\s+){{0,4}}(?i:{_STREET_WORDS})\b\.?"
    rf"(?:,?\s+(?i:Apt\.?|Suite|Unit|Flat|#)\s*\w+)?"
    rf"|\d{{2,6}}\s+(?:[A-ZÀ-Þ][\w'.-]*\s+){{1,3}}\d{{1,5}}[A-Za-z]?\b")
# ... and those whose number comes last ("Via Franscini 71", "PSC 0413, Box 8144").
_ADDRESS_LAST = re.compile(
    rf"\b(?:Via|Rue|Calle|Avenida|Rua|Viale|Piazza|Corso|Carrer)\s+(?:[\w'.-]+\s+){{0,3}}"
    rf"\d{{1,5}}\w?\b"
    rf"|\b{_STREET_SUFFIX}\s+\d{{1,5}}[A-Za-z]?\b(?:,?\s+(?:Apt\.?|Suite|Unit)\s*\w+)?"
    rf"|\b(?:PSC|Unit|CMR) \d{{3,5}},? Box \d{{3,5}}(?:\s+[AF]PO [A-Z]{{2}} \d{{5}})?"
    rf"|\bP\.? ?O\.? Box \d{{1,6}}\b"
    rf"|\b(?:Apt\.?|Suite|Unit) \d{{1,5}}\b", re.IGNORECASE)
_ADDRESS_LOOKBACK = 45  # characters before a number that the words of _ADDRESS_LAST may take
_UPPER = "A-Z" + "".join(chr(i) for i in range(0xC0, 0x250) if chr(i).isupper())
_NAME_PART = rf"[{_UPPER}][\w'’-]+"
_NAME = re.compile(
    rf"(?:\b(?:[Mm]y name is|[Mm]y name's|[Nn]ame:|[Cc]alled|I am|I'm|[Tt]his is|[Pp]atient:?|"
    rf"[Dd]ear|[Rr]egards,|[Ss]incerely,|[Tt]hanks,|[Ss]igned,?|[Cc]ontact|[Nn]amed|[Aa]ttn:?)\s+"
    rf"|\b(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Sir|Madam)\.?\s+)"
    rf"({_NAME_PART}(?:\s+(?:[A-Z]\.\s+)?{_NAME_PART}){{0,2}})")
_NOT_NAMES = frozenset([
    "I", "A", "The", "This", "That", "It", "Here", "There", "Sorry", "Happy", "Glad", "Not",
    "Going", "Looking", "Trying", "Writing", "Asking", "Interested", "Sure", "Fine", "Good", "Well",
    "New", "Just", "Also", "Still", "Now", "Currently", "Working", "Please", "Hi", "Hello",
    "Thanks", "Thank", "Yes", "No", "My", "Your", "Our", "Their", "We", "You", "He", "She", "They",
    "Doctor", "Patient", "Mr", "Mrs", "Ms", "Dr"
])


def luhn_valid(digits: str) -> bool:
    """Whether the digits of ``digits`` (other characters ignored) pass the Luhn check."""
    nums = [int(c) for c in digits if c.isdigit()]
    total = 0
    for i, d in enumerate(reversed(nums)):
        total += (d * 2 - 9 if d > 4 else d * 2) if i % 2 else d
    return bool(nums) and total % 10 == 0


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
    Term("DOB", ("dob", "d", "birth", "birthdate", "birthday", "born"), _DOB, before=5, after=60),
    Term("MRN", ("mrn", "medical", "patient", "chart", "hospital"), _MRN, before=5, after=60),
])

# Matched at the start of each run of digits, in priority order: (type, pattern, validator).
_AT_DIGITS: tuple[tuple[str, re.Pattern[str], Callable[[re.Match[str]], bool] | None], ...] = (
    ("CARD", _CARD, _card_ok),
    ("SSN", _SSN, _ssn_ok),
    ("IP", _IPV4, _ip_ok),
    ("PHONE", _PHONE, _phone_ok),
    ("ADDRESS", _ADDRESS_FIRST, None),
)
_PRIORITY = {t: i for i, t in enumerate(("EMAIL", "IBAN", "CARD", "SSN", "IP", "MRN", "DOB",
                                         "PHONE", "ADDRESS", "NAME"))}
_EMAIL_WINDOW = (64, 256)


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
                if _ip_ok(m):
                    found.append(("IP", m.start(), m.end()))
                    covered = max(covered, m.end())
        if "ADDRESS" in wanted:
            for m in _ADDRESS_LAST.finditer(text, max(0, s - _ADDRESS_LOOKBACK), min(n, e + 2)):
                found.append(("ADDRESS", m.start(), m.end()))
    return found


def _candidates(scan: Scan, wanted: set[str]) -> list[tuple[str, int, int]]:
    text = scan.text
    found: list[tuple[str, int, int]] = []
    if "EMAIL" in wanted and "@" in text:
        at = [i for i, ch in enumerate(text) if ch == "@"]
        for lo, hi in merge_windows((max(0, i - _EMAIL_WINDOW[0]), i + _EMAIL_WINDOW[1])
                                    for i in at):
            found += [("EMAIL", m.start(), m.end()) for m in _EMAIL.finditer(text, lo, hi)]
    if scan.digit_runs:
        found += _numeric(scan, wanted)
        found += [(t.key, s, e) for t, s, e in _CUED.find(scan) if t.key in wanted]
    if "NAME" in wanted:
        found += [("NAME", s, e) for _, s, e in _NAME_CUES.find(scan)
                  if text[s:e].split()[0] not in _NOT_NAMES]
    return found


def find_pii(text: str | Scan, types: Iterable[str] = PII_TYPES) -> list[Span]:
    """PII spans of a text, non-overlapping, in text order.

    Where two detections overlap, the one earlier in the priority order (email, IBAN, card,
    SSN, IP, MRN, DOB, phone, address, name) wins: a card number is not also a phone number.

    Args:
        text: the (normalised) text, or its :class:`~edgeward.safety._scan.Scan`.
        types: the PII types to look for (see :data:`PII_TYPES`).

    Returns:
        Spans with ``type`` one of :data:`PII_TYPES`.
    """
    scan = text if isinstance(text, Scan) else Scan(text)
    s_text = scan.text
    taken: list[tuple[int, int]] = []
    spans: list[Span] = []
    for kind, start, found_end in sorted(_candidates(scan, set(types)),
                                         key=lambda c: (_PRIORITY[c[0]], c[1])):
        end = found_end
        while end > start and s_text[end - 1] in " .,-\n":
            end -= 1
        if end <= start or any(s < end and start < e for s, e in taken):
            continue
        taken.append((start, end))
        spans.append(Span(start, end, kind))
    spans.sort(key=lambda s: s.start)
    return spans


def redact(text: str, spans: Iterable[Span]) -> str:
    """``text`` with every span replaced by its typed placeholder (``[EMAIL]``).

    Args:
        text: the text the spans index.
        spans: non-overlapping spans.
    """
    out: list[str] = []
    pos = 0
    for s in sorted(spans, key=lambda s: s.start):
        if s.start < pos:
            continue
        out.append(text[pos:s.start])
        out.append(PLACEHOLDERS.get(s.type, f"[{s.type}]"))
        pos = s.end
    out.append(text[pos:])
    return "".join(out)
