"""Dates and ages (PII ``DATE``, its sub-type ``DOB``, and ``AGE``).

HIPAA's Safe Harbor rule removes every element of a date tied to a person except the year, and
every age over 89. People write dates in many forms, so this module reads them all:
numeric (``3/4/1957``, ``03-04-57``, ``12.03.2019``, ``1957-03-04``, ``2007-01-17 23:08:55``,
``03/2019``), with a month name (``04-Mar-57``, ``4 Mar 1957``, ``March 4th, 1957``, ``Mar. 4``,
``the 4th of March``, ``March 1957``; Spanish, French and German month names after a day or
before a year), and weekday names (``Tuesday``; an abbreviation ``Tue`` only capitalised and
before a date). What is not a date stays out: a version (``1.2.3``), a fraction (``3/4``, which
counts only after a visit or birth cue such as "admitted" or "DOB"), a score (``3-1``), a phone
number, an impossible date (month 13, day 32), "option 4 may ...", "Black Friday".

A bare year is a date only after an event cue in its clause ("born in", "founded in", "since",
"during", "became ... in"): "What happened in 1989?" is a question about history, not about a
person, and redacting every year would break ordinary prompts. A date after a birth cue
("DOB", "D.O.B.", "date of birth", "born", "birthday", "b.") is a ``DOB``.

Ages: ``45-year-old``, ``45 years old``, ``45 y/o``, ``45yo``, ``aged 45``, ``age: 45``, ``at the
age of 45``, ``turned 45``, ``I'm 45.``, ``Maria Lopez, 45, of Leeds``, ``her 90th birthday``,
``in his 90s``, ``nonagenarian``, ``tengo 45 años``. The span is the number
(Presidio's gold spans are), the whole word for ``nonagenarian``. A population's age range
("patients aged 18 to 65", "aged 65 and over") is not one person's age and is left alone.

Everything is tried only where a run of digits starts (anchored matches, see :mod:`._scan`) or
at a trigger word (month and weekday names, "age", "turned", "his"...): benign text pays for a
few failed anchored matches, never for a scan of the whole text.
"""

from __future__ import annotations

import re

import numpy as np

from edgeward.safety._scan import (
    MONTHS_EN,
    UPPER_CLASS,
    WEEKDAY_ABBR_EN,
    WEEKDAYS_EN,
    Intervals,
    Lexicon,
    Scan,
    Term,
)

__all__ = ["find_dates"]

_UPPER = UPPER_CLASS
_LOWER = "".join(chr(i) for i in range(0xDF, 0x250) if chr(i).islower())
_MONTHS_EN = MONTHS_EN
# Spanish, French and German names that differ from the English ones; with and without
# accents (the normaliser strips them, a caller of find_pii may not have normalised).
_MONTHS_OTHER = ("enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto",
                 "septiembre", "setiembre", "octubre", "noviembre", "diciembre",
                 "janvier", "février", "fevrier", "mars", "avril", "mai", "juin", "juillet",
                 "août", "aout", "septembre", "octobre", "novembre", "décembre", "decembre",
                 "januar", "februar", "märz", "marz", "maerz", "juni", "juli", "oktober",
                 "dezember")
_WEEKDAYS = (*WEEKDAYS_EN, "lunes", "martes", "miércoles", "miercoles", "jueves", "viernes",
             "sábado", "sabado", "lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi",
             "dimanche",
             "montag", "dienstag", "mittwoch", "donnerstag", "freitag", "samstag", "sonntag")
_WEEKDAY_ABBR = WEEKDAY_ABBR_EN


def _alt(words: tuple[str, ...]) -> str:
    return "|".join(sorted(set(words), key=len, reverse=True))


_MON = rf"(?:{_alt(_MONTHS_EN)})"
_MON_ANY = rf"(?:{_alt(_MONTHS_EN + _MONTHS_OTHER)})"
_DAY = r"(?:0?[1-9]|[12]\d|3[01])"
_ORD = r"(?:st|nd|rd|th|er|º)"
_YEAR4 = r"(?:1[6-9]\d\d|20\d\d)"
# A time of day after a date belongs to it: "2007-01-17 23:08:55", "3/4/1957 10:30 pm".
_TIME = (r"(?:(?:[ t]|,? (?:at )?)\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?: ?[ap]\.?m\b\.?)?"
         r"(?:z\b|[+-]\d{2}:?\d{2}\b| ?utc\b)?)?")
# A digit-run match must not continue a longer number or a dotted/dashed/slashed sequence.
_NOT_AFTER = r"(?![\d:]|[.\-/]\d)"
_NOT_BEFORE = r"(?<![\w.\-/:,$#])"
_ORDINALS = ("st", "nd", "rd", "th", "er")

_ISO = re.compile(rf"{_NOT_BEFORE}({_YEAR4})([-/.])(0?[1-9]|1[0-2])\2({_DAY}){_NOT_AFTER}{_TIME}")
_NUMERIC = re.compile(rf"{_NOT_BEFORE}(\d{{1,2}})([/.\-])(\d{{1,2}})\2(\d{{4}}|\d{{2}})"
                      rf"{_NOT_AFTER}{_TIME}")
_MONTH_YEAR = re.compile(rf"{_NOT_BEFORE}(0[1-9]|1[0-2])/((?:19|20)\d\d){_NOT_AFTER}")
_PARTIAL = re.compile(rf"{_NOT_BEFORE}(0?[1-9]|1[0-2])([/\-])({_DAY}){_NOT_AFTER}")
_DAY_MONTH = re.compile(
    rf"{_NOT_BEFORE}({_DAY})({_ORD})?\.?(?:\s+(?:of|de)\s+|\s+|-|/)({_MON_ANY})\b\.?"
    rf"(?:(?:-|/)'?(\d{{4}}|\d{{2}})|\s*,?\s+(?:de\s+|of\s+)?({_YEAR4})|\s+'(\d{{2}}))?"
    rf"(?![\d:]){_TIME}")
_MONTH_DAY = re.compile(
    rf"({_MON})\b\.?,?\s*(?:({_DAY})({_ORD})?\b(?:\s*,?\s+({_YEAR4}))?|(?:of\s+|,\s*)?({_YEAR4}))"
    rf"(?![\d:]|[.\-/]\d){_TIME}")
# "Mars 2020" is a rover: "mars" counts only after a day ("4 mars 1957").
_MONTH_YEAR_OTHER = re.compile(rf"({_alt(tuple(m for m in _MONTHS_OTHER if m != 'mars'))})"
                               rf"\s+(?:de\s+|del\s+)?({_YEAR4})(?!\d)")
# "Black Friday", "Super Tuesday": a named day of the calendar, no one's date.
_HOLIDAY = re.compile(r"\b(?:black|cyber|good|super|ash|easter|palm|holy|maundy|shrove|fat|"
                      r"bloody|giving)\s+$")
# "Tue, 4 Mar", "Sat 3/9/2024"; not "Sat 3 exams".
_WEEKDAY_BEFORE_DATE = re.compile(
    rf"(?:{_alt(_WEEKDAY_ABBR)})\b\.?,?\s+"
    rf"(?=\d{{1,2}}{_ORD}?\.?\s+{_MON_ANY}\b|\d{{1,4}}[/.\-]\d{{1,2}}[/.\-]\d|{_MON}\b)")
_YEAR = re.compile(r"(?<![\w.\-/:,$#£€])((?:19|20)\d\d)(?![\w%]|[.,\-/:]\d)")

# -- ages ----------------------------------------------------------------------------------
# What may follow a number for it to be an age after "turned", "I'm", "when he was": the end
# of the clause or "years"; not "turned 90 degrees", "I'm 5 minutes away".
_AGE_END = (r"(?=\s*$|\s*[.,;!?)\]]|\s+(?:years?|yrs?|and|but|now|today|yesterday|last|this|"
            r"in|on|when|so|too|already|soon|next|tomorrow)\b)")
_AGE_NUMBER_FIRST = re.compile(
    r"(?<![\d.,])(\d{1,3})(?:"
    r"(?:\s*|-)(?:years?|yrs?\.?)(?:\s*|-)old\b"
    r"|(?:\s*|-)(?:years?|yrs?)\s+of\s+age\b"
    r"|\s*(?:y/o|y\.o\b\.?|yo\b|y-o\b|yr-old\b)"
    r"|(?:st|nd|rd|th)\s+birthday\b"
    r"|\s+(?:años|anos)\s+de\s+edad\b|\s+jahre\s+alt\b)")
# A range or a bound after an age is a population ("aged 18 to 65", "aged 65 and over").
_RANGE = (r"(?!\s*(?:-|–|to|through|\+|or\s+(?:older|over|more|above|younger|under|less)\b"
          r"|and\s+(?:older|over|above|up|under|younger)\b))")
_AGE_CUED = re.compile(
    rf"age[d]?(?:\s*[:=\-]\s*|\s+(?:of|is|was|at)\s+|\s+)(\d{{1,3}})(?![\d.,]\d|\d)"
    rf"{_RANGE}(?!\s*(?:%|percent|kg|lbs?|cm|mm|mg|ml|degrees?|°|hours?|days?|weeks?|"
    rf"months?|minutes?|mins?|times?|points?|groups?)\b)")
_AGE_TURN = re.compile(rf"(?:turned|turns|turning)\s+(\d{{1,3}}){_AGE_END}")
_KIN = ("son", "daughter", "mother", "father", "mom", "mum", "dad", "wife", "husband",
        "brother", "sister", "grandmother", "grandfather", "grandma", "grandpa", "child", "kid",
        "baby", "boy", "girl", "patient", "he", "she", "who")
_AGE_SELF = re.compile(
    rf"(?:i'm|i’m|i am|i was|(?:{_alt(_KIN)})(?:'s|’s|\s+is|\s+was|\s+turned|\s+turns))\s+"
    rf"(?:only\s+|now\s+|just\s+|almost\s+|nearly\s+|about\s+)?(\d{{1,3}}){_AGE_END}")
_AGE_WHEN = re.compile(r"when\s+(?:he|she|i|they|we|you)\s+(?:was|were|turned|is)\s+(\d{1,3})"
                       + _AGE_END)
_DECADES = ("twenties", "thirties", "forties", "fifties", "sixties", "seventies", "eighties",
            "nineties")
_AGE_DECADE = re.compile(r"(?:his|her|their|my|your)\s+(?:early\s+|mid\s*-?\s*|late\s+)?"
                         rf"([1-9]0'?s|{_alt(_DECADES)})\b")
# "tengo 45 años", "j'ai 45 ans", "ich bin 45": the year word makes the number an age.
_AGE_OTHER = re.compile(r"(?:tengo|tiene|j'ai|j’ai|il a|elle a|ich bin|er ist|sie ist)\s+"
                        r"(\d{1,3})\s+(?:años|anos|ans|jahre)\b")
_APPOSITIVE_BEFORE = re.compile(rf"(?:\b[{_UPPER}][a-z{_LOWER}'’-]+,|(?:^|[.!?]\s+|\n)At) $")
_APPOSITIVE_AFTER = re.compile(r",\s")
_AGE_OF = re.compile(r"(?:man|woman|boy|girl|lady|gentleman|person|patient)\s+of\s+(\d{1,3})\b"
                     + _RANGE + r"(?!\s*(?:%|years?\s+(?:ago|of\s+(?!age))))")
_AGE_WORDS = ("nonagenarian", "nonagenarians", "centenarian", "centenarians",
              "supercentenarian", "octogenarian", "septuagenarian", "sexagenarian")

# -- cues ----------------------------------------------------------------------------------
_FILLER = (r"(?:[\s:=#,.?!\-–()'\"’]|\b(?:is|was|on|in|it's|it’s|it is|its|of|the|mine|my|his|"
           r"her|their|patient's|approx|approximately|around|circa|c|reported|listed|as)\b)*$")
_BIRTH_CUE = re.compile(
    r"(?:\bd\.?\s?o\.?\s?b\b\.?|\bdate of birth|\bbirth\s?date|\bbirthday|\bborn|"
    r"\byear of birth|\bnacid[oa]|\bfecha de nacimiento|\bnée?\b|\bdate de naissance|"
    r"\bgeboren|\bgeburtsdatum|\bgeb\.)" + _FILLER)
# "b. 1957": only a lower-case "b." right before the date ("Plan B. On Tuesday" is no cue).
_B_DOT = re.compile(r"(?<![\w.])b\. ?$")
# A partial numeric date ("3/4") is a date only right after one of these.
_VISIT_CUE = re.compile(
    r"\b(?:admit\w*|discharg\w*|seen|visit\w*|died|death|deceased|expired|procedure|surgery|"
    r"operat(?:ed|ion)|appointment|appt|dated?|dob|d\.o\.b|born|birthday|since|until|"
    r"scheduled|follow[- ]?up|presented|injur(?:ed|y)|onset|delivered|vaccinated|"
    r"(?:last|next) (?:seen|visit|dose))\b" + _FILLER)
# Events that make a bare year a date: the clause before the year, up to "in/during/since".
_YEAR_EVENT = re.compile(
    r"\b(?:born|died|passed away|deceased|married|divorced|widowed|graduated|retired|"
    r"admitted|discharged|diagnosed|hospitali[sz]ed|operated|treated|seen|surgery|"
    r"procedure|founded|established|incorporated|formed|moved|emigrated|immigrated|"
    r"relocated|joined|hired|enlisted|became|sung|recorded|arranged|wrote|written|"
    r"publish\w*|started|began|opened|launched|elected|appointed|arrested|convicted|"
    r"injured|adopted|bapti[sz]ed|invested|acquired|acquisition)\b")
_YEAR_PREP = re.compile(r"\b(in|during|since|from|until|till|by|of|circa|c\.|around|year|"
                        r"early|late|mid|summer|winter|spring|autumn|fall)\s+$")
_CLAUSE_START = re.compile(r"[.!?;:\n]\s+|\n|^")
_CLAUSE_END = re.compile(r"[.!?;\n]")

_TERMS = Lexicon([
    Term("month", _MONTHS_EN, _MONTH_DAY, anchored=True),
    Term("month_other", _MONTHS_OTHER, _MONTH_YEAR_OTHER, anchored=True),
    Term("weekday", _WEEKDAYS),
    Term("weekday_abbr", _WEEKDAY_ABBR, _WEEKDAY_BEFORE_DATE, anchored=True),
    Term("age_cued", ("age", "aged"), _AGE_CUED, anchored=True),
    Term("age_turn", ("turned", "turns", "turning"), _AGE_TURN, anchored=True),
    Term("age_self", ("i", *_KIN), _AGE_SELF, anchored=True),
    Term("age_when", ("when",), _AGE_WHEN, anchored=True),
    Term("age_decade", ("his", "her", "their", "my", "your"), _AGE_DECADE, anchored=True),
    Term("age_other", ("tengo", "tiene", "j", "il", "elle", "ich", "er", "sie"), _AGE_OTHER,
         anchored=True),
    Term("age_of", ("man", "woman", "boy", "girl", "lady", "gentleman", "person", "patient"),
         _AGE_OF, anchored=True),
    Term("age_word", _AGE_WORDS),
])
_AGE_TERMS = frozenset({"age_cued", "age_turn", "age_self", "age_when", "age_decade",
                        "age_other", "age_of", "age_word"})


def _valid_dm(a: int, b: int) -> bool:
    """Whether ``a/b`` reads as month/day or day/month."""
    return (1 <= a <= 12 and 1 <= b <= 31) or (1 <= a <= 31 and 1 <= b <= 12)


def _numeric_ok(m: re.Match[str]) -> bool:
    a, sep, b, year = int(m.group(1)), m.group(2), int(m.group(3)), m.group(4)
    if not _valid_dm(a, b):
        return False
    if sep == ".":  # "1.2.35" is a version; "12.03.2019" and "12.03.19" are dates
        return len(year) == 4 or (len(m.group(1)) == 2 and len(m.group(3)) == 2)
    return True


def _cued(pattern: re.Pattern[str], lower: str, start: int, width: int = 60) -> bool:
    return pattern.search(lower, max(0, start - width), start) is not None


def _date_at(scan: Scan, s: int, e: int) -> tuple[int, int] | None:
    """The span of a date that starts at the digit run ``s:e``, or None."""
    lower = scan.lower
    size = e - s
    nxt = lower[e:e + 1]
    m: re.Match[str] | None = None
    if size == 4 and nxt and nxt in "-/.":
        m = _ISO.match(lower, s)
    elif size <= 2 and nxt and nxt in "-/.":
        m = _NUMERIC.match(lower, s)
        if m is not None and not _numeric_ok(m):
            m = None
        m = m or _MONTH_YEAR.match(lower, s) or _DAY_MONTH.match(lower, s)
        if m is None:
            p = _PARTIAL.match(lower, s)
            if p and _valid_dm(int(p.group(1)), int(p.group(3))) and _cued(_VISIT_CUE, lower, s):
                m = p
    elif size <= 2 and (nxt in (" ", ".", "\t", "\n") or lower[e:e + 2] in _ORDINALS):
        m = _DAY_MONTH.match(lower, s)
        if m is not None and not _day_month_ok(m, scan.text):
            m = None
    return None if m is None else (m.start(), m.end())


def _at_digits(scan: Scan) -> list[tuple[str, int, int]]:
    """Dates and ages that start at a run of digits (anchored matches only)."""
    found: list[tuple[str, int, int]] = []
    covered = -1
    for s, e in scan.digit_runs:
        if s < covered:
            continue
        date = _date_at(scan, s, e)
        if date is not None:
            found.append(("DATE", *date))
            covered = date[1]
        elif e - s <= 3:
            a = _AGE_NUMBER_FIRST.match(scan.lower, s)
            if a is not None and 0 < int(a.group(1)) <= 125:
                found.append(("AGE", a.start(1), a.end(1)))
            elif e - s == 2 and _appositive_age(scan.text, s, e):
                found.append(("AGE", s, e))
        elif e - s == 4 and _YEAR.match(scan.lower, s) and _year_cued(scan, s):
            found.append(("DATE", s, e))
    return found


def _appositive_age(text: str, s: int, e: int) -> bool:
    """"Maria Lopez, 45, of Leeds" and "At 45, she ...": a name or a capitalised "At" before
    the number, a comma after it."""
    if _APPOSITIVE_AFTER.match(text, e) is None:
        return False
    return _APPOSITIVE_BEFORE.search(text, max(0, s - 40), s) is not None


def _day_month_ok(m: re.Match[str], text: str) -> bool:
    """"4 may" could be "option 4 may ..."; "4 Mars" a planet: those need more than a day."""
    month = m.group(3)
    has_year = any(m.group(i) for i in (4, 5, 6))
    if month == "may":
        return has_year or bool(m.group(2)) or text[m.start(3)].isupper() \
            or " of " in m.group(0)
    if month == "mars":
        return has_year
    return True


def _year_cued(scan: Scan, s: int) -> bool:
    """Whether the bare year at ``s`` is a date: after a birth cue ("born 1957", "b. 1957"),
    after "since"/"during", or after a preposition in a clause with an event in it ("founded
    in 1977", "which later became X in 2014", "During 1971, X invested")."""
    lower = scan.lower
    prep = _YEAR_PREP.search(lower, max(0, s - 12), s)
    if prep is None:
        return _birth_cued(scan, s)
    if prep.group(1) in ("since", "during"):
        return True
    clause = lower[max(0, s - 160):s]
    cut = max((m.end() for m in _CLAUSE_START.finditer(clause)), default=0)
    if _YEAR_EVENT.search(clause, cut):
        return True
    if prep.group(1) != "in":
        return False
    after = lower[s + 4:s + 100]  # "In 1971, X invested ...": the event comes after the year
    end = _CLAUSE_END.search(after)
    return _YEAR_EVENT.search(after, 0, end.start() if end else len(after)) is not None


def _at_words(scan: Scan) -> list[tuple[str, int, int]]:
    """Dates and ages that start at a trigger word (month, weekday, age cue)."""
    text, lower = scan.text, scan.lower
    found: list[tuple[str, int, int]] = []
    for term, s, found_end in _TERMS.find(scan):
        key = term.key
        end = found_end
        if key in ("month", "month_other"):  # the whole date, not group 1 (the month)
            m = _MONTH_DAY.match(lower, s) if key == "month" else _MONTH_YEAR_OTHER.match(lower, s)
            if m is None:
                continue
            # "you may 2x it": a lower-case "may" needs a year or an ordinal
            if key == "month" and m.group(1) == "may" \
                    and not (text[s].isupper() or m.group(3) or m.group(4) or m.group(5)):
                continue
            end = m.end()
        elif key == "weekday" and _HOLIDAY.search(lower, max(0, s - 10), s):
            continue
        elif key == "weekday_abbr":
            if not text[s].isupper():  # "sat 3 exams", "sun 5 times"
                continue
            end = int(scan.ends[_word_at(scan, s)])
        found.append(("AGE" if key in _AGE_TERMS else "DATE", s, end))
    return found


def _word_at(scan: Scan, s: int) -> int:
    """The index of the word that starts at ``s``."""
    return int(np.searchsorted(scan.starts, s))


def _trim(text: str, s: int, e: int) -> int:
    """``e`` without the punctuation a match may end on ("4 Mar." at the end of a sentence)."""
    while e > s + 1 and text[e - 1] in " .,-\t\n":
        e -= 1
    return e


def _resolve(spans: list[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
    """Non-overlapping spans: the longer of two overlapping ones wins."""
    out: list[tuple[str, int, int]] = []
    taken = Intervals()
    for kind, s, e in sorted(spans, key=lambda t: (-(t[2] - t[1]), t[1])):
        if taken.add(s, e):
            out.append((kind, s, e))
    return sorted(out, key=lambda t: t[1])


def find_dates(scan: Scan) -> list[tuple[str, int, int]]:
    """Dates (``DATE``; ``DOB`` after a birth cue) and ages (``AGE``) in ``scan.text``.

    Args:
        scan: the scanned (normalised) text.

    Returns:
        ``(type, start, end)`` spans into ``scan.text``, non-overlapping, in text order.
    """
    spans = _resolve([(kind, s, _trim(scan.text, s, e))
                      for kind, s, e in _at_digits(scan) + _at_words(scan)])
    return [("DOB" if kind == "DATE" and _birth_cued(scan, s) else kind, s, e)
            for kind, s, e in spans]


def _birth_cued(scan: Scan, s: int) -> bool:
    """Whether a birth cue ("DOB:", "date of birth is", "born on", "b.") ends right before
    ``s``."""
    return _cued(_BIRTH_CUE, scan.lower, s, 50) or _cued(_B_DOT, scan.text, s, 4)
