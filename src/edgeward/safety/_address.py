"""Street addresses, postal codes and the city/state/ZIP lines that follow them (PII ``ADDRESS``).

An address is found from an *anchor* that is hard to mistake for anything else — a house number
next to a street word ("221B Baker Street"), a street word or suffix next to a number in other
languages ("Via Franscini 71", "Hauptstraße 5", "Király u. 15."), military forms ("PSC 0413,
Box 8144", "FPO AP 93757"), a P.O. box, an apartment or suite, "the corner of X and Y", a
US/Canadian "City, ST ZIP" line, a postal code after a "ZIP"/"postcode" cue, or the line after
an "Address:" label — and then *extended* over what follows it: the unit, the city, the state or
region, the postal code and the country, on the same line, after commas or on the next lines
of an address block. City and ZIP code are identifiers under HIPAA's Safe Harbor rule too, so
the whole block is one span. A house number followed by capitalised words and another number
("28245 Puruntie 82") is a weak anchor: it counts only when an address line follows it or an
address word ("address", "lives", "ship to") comes before it, because sports scores and
product names ("48 Mayflower 36", "2019 Toyota Camry 2") look the same.

Everything is tried only where a run of digits starts or where a trigger word is (see
:mod:`._scan`): benign text pays for a few anchored matches, not for scans of the whole text.
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from functools import lru_cache

from edgeward.safety._scan import (
    MONTHS_EN,
    UPPER_CLASS,
    WEEKDAY_ABBR_EN,
    WEEKDAYS_EN,
    Lexicon,
    Scan,
    Term,
    merge_windows,
)

__all__ = ["find_addresses"]



def _with_plain(words: str) -> str:
    """An alternation of ``words`` and of their forms without accents (the normaliser strips
    them: "tér" reaches the detector as "ter")."""
    out = words.split("|")
    for w in list(out):
        plain = "".join(c for c in unicodedata.normalize("NFD", w)
                        if not unicodedata.combining(c)).replace("ø", "o").replace("ł", "l")
        if plain not in out:
            out.append(plain)
    return "|".join(out)


_UPPER = UPPER_CLASS + "\u0391-\u03a9\u0410-\u042f"  # and Greek, Cyrillic capitals
_CAP = rf"[{_UPPER}][\w'’.-]*"  # a capitalised word ("Crown", "St.", "Λεωφόρος")
_PARTICLE = r"(?:de|del|della|delle|dei|di|da|do|dos|das|du|des|la|le|les|el|los|las|y|e|i|" \
            r"van|von|der|den|am|an|im|nad|pod|sur|sous|en|op|aan|upon|on)(?![\w'’])"
_CAPS = rf"{_CAP}(?:[ \t]+(?:{_PARTICLE}[ \t]+)?{_CAP}){{0,3}}"  # "Mora de Rubielos"
_NUM = r"\d{1,6}[A-Za-z]?"
_MONTHS = "|".join(sorted({w.capitalize() for w in (*MONTHS_EN, *WEEKDAYS_EN, *WEEKDAY_ABBR_EN)},
                          key=lambda w: (-len(w), w)))
_NOT_PLACE = frozenset((
    "The", "A", "An", "I", "We", "You", "He", "She", "It", "They", "My", "Our", "Your", "His",
    "Her", "Their", "This", "That", "These", "Those", "And", "Or", "But", "If", "When", "Then",
    "Also", "Please", "Thanks", "Thank", "Hi", "Hello", "Dear", "Best", "Regards", "Sincerely",
    "Cheers", "Call", "Phone", "Mobile", "Tel", "Telephone", "Fax", "Email", "E-mail", "Desk",
    "Office", "Website", "Web", "Name", "Address", "Date", "Time", "Yes", "No", "Is", "Are", "Was",
    "Were", "Do", "Does", "Did", "Can", "Could", "Will", "Would", "Should", "Might", "Must", "Card",
    "Amount", "Merchant", "Total", "Price", "Note", "Ok", "OK", "Sent", "From", "To", "Subject",
    "Re", "In", "On", "At", "For", "With", "By", "As", "Of", "Not", "Just", "Only", "So", "Now",
    "Here", "There", "What", "Where", "Who", "How", "Why", "Which", "After", "Before", "Since",
    "Until", "While", "Because", "Although", "Cell", "Contact", "Page", "Chapter", "Section",
    "Step", "Part", "Table", "Figure", "Version", "Level", "Round", "Day", "Week", "Year", "Month",
    "Hour", "Minute", "Score", "Total", "Points", "During", "Top", "Buy", "Click", "Type", "Review",
    "Point", "Bullet", "Item", "Number", "Vol", "Volume", "Issue", "Phase", "Stage", "Grade",
    "Class", "Vitamin", "Windows", "Office", "Model", "Series", "Season", "Episode", "Game", "Team",
    "Group", "Top", "Rank",
    *_MONTHS.split("|")))

# Street types written after the street's name in English: unambiguous ones in any case,
# the ones that are also ordinary words ("Park", "Way", "Point") only capitalised and after
# at least one capitalised word ("Gordon Terrace", "Elisabeth Parks").
_STREET_PLAIN = (r"Street|Streets|St|Avenue|Ave|Av|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|"
                 r"Parkway|Pkwy|Terrace|Highway|Hwy|Crescent|Cres|Alley|Turnpike|Tpke|"
                 r"Expressway|Freeway|Fwy|Motorway|Bypass")
_STREET_WORD = (r"Court|Ct|Way|Place|Pl|Circle|Cir|Square|Squares|Sq|Row|Close|Trail|Trl|"
                r"Plaza|Union|Mews|Gardens|Garden|Hill|Hills|Park|Parks|Pass|Point|Pt|Loop|"
                r"Mall|Harbor|Harbour|Gateway|Greens|Green|Crossroad|Crossroads|Crossing|Flat|"
                r"Flats|View|Walk|Path|Pike|Ridge|Heights|Grove|Meadow|Meadows|Bend|Cove|"
                r"Creek|Spur|Junction|Manor|Estate|Estates|Wharf|Quay|Esplanade|Embankment|"
                r"Villas|Station|Summit|Springs|Valley|Vista|Knoll|Isle|Fork|Forks|Ford|"
                r"Brook|Field|Fields|Glen|Haven|Lake|Lakes|Landing|Lodge|Mill|Mills|Orchard|"
                r"Port|Prairie|Ranch|Rapids|Shore|Shores|Trace|Track|Tunnel|Viaduct|Well|"
                r"Wells|Wood|Woods")
_ORDINAL = r"\d{1,3}(?:st|nd|rd|th)"
_NAME_WORD = rf"(?:{_CAP}|{_ORDINAL})"
# Street words written before the name ("Via", "Rue", "ul.") and after it as a separate word
# ("Erzsébet tér", "Trenerys gate", "Luite tee"), or glued to it ("Hauptstraße", "Mellemvej").
_STREET_FIRST = (r"Via|Viale|Vicolo|Piazza|Piazzale|Corso|Largo|Strada|Rue|Avenue|Avenida|"
                 r"Avda\.|Av\.|Boulevard|Bd|Chemin|Impasse|Allée|Quai|Calle|Carrer|Paseo|"
                 r"Plaza|Camino|Carretera|Rua|Travessa|Praça|Estrada|Alameda|ul\.|ulica|al\.|"
                 r"aleja|Plac|Calea|Bulevardul|Strasse|Straße|Λεωφόρος|Οδός|Πλατεία|Jalan|Jl\.")
_STREET_FIRST = _with_plain(_STREET_FIRST)
_STREET_AFTER = (r"u\.|utca|út|útja|tér|tere|kapu|köz|körút|sor|sétány|gate|gata|gatan|vei|"
                 r"veien|vej|gade|tee|tie|katu|kuja|straat|laan|weg|gasse|terrasse|allé|str\.|"
                 r"iela|gatvė|tänav|cesta|ulica|ulice|trg|náměstí|nábřeží|třída|sokak|caddesi|"
                 r"vegur|stræti|stræde|väg|vägen|gränd|stig|stien|bakken|alle|plads|torv")
_STREET_AFTER = _with_plain(_STREET_AFTER)
_STREET_GLUED = _with_plain(
    r"stra(?:ss|ß)e|str\.|weg|gasse|platz|allee|vej|gade|gata|gatan|vägen|veien|vegen|tie|"
    r"katu|kuja|polku|straat|laan|plein|gracht|utca|ulica|sokak|caddesi|stræti|stræde|braut|"
    r"vegur|stien|bakken|gränd|torget|plads|str")
_UNIT = r"(?i:apt\.?|apartment|suite|ste\.?|unit|flat|floor|fl\.|room|rm\.?|bldg\.?|building)"
_UK_POSTCODE = r"[A-Z]{1,2}\d[A-Z\d]?[ \t]\d[A-Z]{2}"
_CA_POSTCODE = r"[A-Z]\d[A-Z][ \t]?\d[A-Z]\d"
# Postal codes as they end an address line: US ZIP(+4), NL "7412 SL", PT "3610-114",
# PL "53-320", SE/CZ "394 13", 3-6 digit codes, UK and Canadian codes.
_ZIP = (rf"(?:\d{{5}}(?:-\d{{4}})?|\d{{4}}[ \t]?[A-Z]{{2}}\b|\d{{4}}-\d{{3}}|\d{{2}}-\d{{3}}|"
        rf"\d{{3}}[ \t]\d{{2}}|\d{{3,6}}|{_UK_POSTCODE}|{_CA_POSTCODE})(?!\w|[.,:/-]\w|[ \t]?\d)")
_STATES = ("AL AK AZ AR CA CO CT DE DC FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT NE "
           "NV NH NJ NM NY NC ND OH OK OR PA RI SC SD TN TX UT VT VA WA WV WI WY PR GU VI AS MP "
           "AA AE AP AB BC MB NB NL NS NT NU ON PE QC SK YT")
_STATE = "(?:" + "|".join(_STATES.split()) + ")"
_MILITARY = r"[ADF]PO[ \t]+A[AEP][ \t]+\d{5}(?:-\d{4})?"

# Anchors that start at a digit run.
_AT_NUMBER = re.compile(
    rf"(?P<street>{_NUM},?[ \t]+(?:{_NAME_WORD}[ \t]+){{1,4}}(?i:{_STREET_PLAIN})\b\.?"
    rf"|{_NUM},?[ \t]+(?:{_NAME_WORD}[ \t]+){{1,4}}(?:{_STREET_WORD})\b\.?"
    rf"|{_NUM}[ \t]+(?i:{_STREET_FIRST})(?:[ \t]+(?:{_PARTICLE}|{_CAP})){{1,5}}"
    rf"(?:[ \t]+\d{{1,5}}\w?\b)?)"
    rf"|(?P<weak>\d{{2,6}}[ \t]+(?:(?!(?:{_MONTHS})\b){_CAP}[ \t]+){{1,3}}\d{{1,5}}[A-Za-z]?\b"
    rf"(?![.,/:]\d|%|[ \t]?(?:[-+*x×/]|am\b|pm\b)))")
# Anchors whose number comes last; searched in a window before a digit run.
_NUMBER_LAST = re.compile(
    rf"(?<![\w.])(?:{_STREET_FIRST})[ \t]+(?:(?:{_PARTICLE}|{_CAP})[ \t]+){{0,4}}"
    rf"\d{{1,5}}[A-Za-z]?\b\.?"
    rf"|(?<![\w.])(?:{_CAP}[ \t]+){{1,3}}(?:{_STREET_AFTER})[ \t]+\d{{1,5}}[A-Za-z]?\b\.?"
    rf"|(?<![\w.])[\w'-]*(?i:{_STREET_GLUED})[ \t]+\d{{1,5}}[A-Za-z]?\b\.?"
    rf"|\b(?i:PSC|CMR|Unit)[ \t]+\d{{3,5}},?[ \t]+(?i:Box)[ \t]+\d{{3,5}}"
    rf"|\b(?:USNS|USNV|USS|USCGC|USAV)[ \t]+{_CAP}(?:[ \t]+{_CAP})?\s+{_MILITARY}"
    rf"|\b{_MILITARY}\b"
    rf"|\b(?i:p\.?[ \t]?o\.?[ \t]?box|post(?:al)?[ \t]?(?:office[ \t])?box|postbox|postfach|"
    rf"apartado(?:[ \t]de[ \t]correos)?|casilla|bo[iî]te[ \t]postale)[ \t]+\d{{1,6}}\b"
    rf"|\b(?i:apt\.?|apartment)[ \t]*#?[ \t]*\d{{1,5}}[A-Za-z]?\b"
    rf"|\b(?i:suite|ste\.|unit|flat)[ \t]*#?[ \t]*\d{{3,5}}[A-Za-z]?\b"
    rf"|(?<![\w.])(?:{_CAP}[ \t]+){{0,3}}{_CAP},[ \t]*{_STATE}[ \t]+(?:\d{{5}}(?:-\d{{4}})?|"
    rf"{_CA_POSTCODE})\b"
    rf"|(?<![\w.])(?:{_CAP}[ \t]+){{0,2}}{_CAP},?[ \t]+{_UK_POSTCODE}\b")
# "Joaquin Suarez 2906": a name and a number, the order of most of Europe and Latin America;
# weak (it counts only after an address word, see _CUE_BEFORE).
_NAME_NUMBER = re.compile(
    rf"(?<![\w.])(?:(?!(?:{_MONTHS})\b){_CAP}[ \t]+){{1,3}}\d{{1,5}}[A-Za-z]?\b"
    rf"(?![.,/:]\d|%|[ \t]?(?:[-+*x×/]|am\b|pm\b))")
_WORDS_BEFORE_NUMBER = frozenset(
    (_STREET_AFTER.replace("\\", "") + "|box|apt|apt.|apartment|suite|ste.|unit|flat"
     ).split("|"))
_GLUED_END = re.compile(rf"(?:{_STREET_GLUED})\.?$")
_STATE_SET = frozenset(_STATES.split())
_OUTWARD_CODE = re.compile(r"[A-Z]{1,2}\d[A-Z\d]?")  # "SW1A", "M5H": a postcode's first half
_AFTER_NUMBER = re.compile(r"[A-Za-z]?,?[ \t]+([\w.]+)")
_WORDS_AFTER_NUMBER = frozenset(_with_plain(_STREET_FIRST).lower().replace("\\", "").split("|"))
_CODE_CHARS = re.compile(r"[(){}\[\]<>=;\"`]|::")
_WORD_START = re.compile(r"(?<![\w.])[\w'-]")
_MILITARY_BEFORE = re.compile(r"\b[ADF]PO[ \t]+A[AEP][ \t]+$")
_LOOKBACK = 60  # characters before a digit run that the words of _NUMBER_LAST may take

# What may follow an anchor, one item at a time: a separator, then a unit, a military or box
# line, a postal code (and the city after it), or a place (city, region, country) with an
# optional state code and postal code.
_SEP = r"(?:[ \t]*,[ \t]*(?:\n[ \t>?|*-]*)?|[ \t]*\n[ \t>?|*-]*(?:,[ \t]*)?|[ \t]+)"
_TAIL = re.compile(
    rf"(?P<sep>{_SEP})(?:(?P<unit>{_UNIT}[ \t]*#?[ \t]*\d{{1,5}}[A-Za-z]?\b"
    rf"|\d{{1,2}}[ºª°oa](?:[ \t]*(?:[A-Z]|izq(?:da)?\.?|dcha\.?)\b)?)"
    rf"|(?P<mil>{_MILITARY}\b|(?i:box)[ \t]+\d{{1,6}}\b)"
    rf"|(?P<zip>{_ZIP})(?:[ \t]+{_CAPS})?(?![ \t]+[a-z])"
    rf"|(?P<place>(?:{_CAPS}|nan)(?:[ \t]*\([^\W\d_][^()\n\d]{{0,29}}\))?"
    rf"(?:(?P<state>,?[ \t]+(?:[A-Z]{{2}}|nan))\b)?(?:,?[ \t]+(?P<pzip>{_ZIP}))?)"
    rf"(?![\w'’-]|[ \t]*:))")
_STATE_CODE = re.compile(rf",[ \t]*{_STATE}$")
# A postal code that alone is evidence of an address: not a year, not three digits.
_STRONG_ZIP = re.compile(r"(?!(?:19|20)\d\d$|\d{3}$)")
_TAIL_ITEMS = 6
_TAIL_CHARS = 160
_LEAD_NUMBER = re.compile(r"(?<![\w.,-])\d{1,6}[ \t]+$")
_CUE_BEFORE = re.compile(
    r"(?:(?<!ip )(?<!mac )(?<!email )(?<!e-mail )(?<!web )(?<!memory )(?<!server )"
    r"\b(?:address(?:es)?|addr)\b"
    r"|\b(?:send|sent|ship|shipped|deliver(?:ed)?|mail(?:ed)?|post(?:ed)?|return(?:ed)?|"
    r"move[sd]?|moving|forward(?:ed)?)(?:[ \t]+(?:it|them|this|me|you|us|him|her))?[ \t]+to"
    r"|\b(?:live[sd]?|living|located|resides?|residing|situated|arrived|meet(?:ing)?|stop)"
    r"(?:[ \t]+(?:me|you|us))?[ \t]+(?:at|on|in)"
    r"|\b(?:station|office|house|home|clinic|hospital|shop|store)[ \t]+(?:is|are)"
    r"(?:[ \t]+located)?[ \t]+(?:at|on|in))\b[^\n]{0,50}$", re.IGNORECASE)

_ZIP_CUE = re.compile(
    rf"(?i:zip(?:[ \t]?code)?|post(?:al)?[ \t]?code|postcode|plz|postleitzahl|postnummer|"
    rf"code[ \t]postal|c[oó]digo[ \t]postal)[ \t]*(?:is[ \t]+|:|#|-)?[ \t]*"
    rf"((?i:{_ZIP}))")
_CORNER = re.compile(
    rf"(?i:(?:the[ \t]+)?corner[ \t]+of)[ \t]+(?:[\d{_UPPER}]|ul\.|u\.)[\w'’.-]*"
    rf"(?:[ \t]+[\w'’.-]+){{0,5}}?[ \t]+and[ \t]+(?:{_CAP}[ \t]+){{0,3}}{_CAP}")
_LABEL = re.compile(
    r"(?<!e-mail )(?<!email )(?<!\bip )(?<!\bmac )(?<!\bweb )(?<!memory )(?<!wallet )"
    r"(?<!server )(?<!return )(?i:address(?:es)?|addr\.?)[ \t]*(?::|is\b|-)[ \t]*\n?[ \t]*"
    r"((?!0x)[^\s:][^\n]{3,100}?)(?=[.!?;][ \t\n]|[.!?;]?$|\n)", re.MULTILINE)
_LEXICON = Lexicon([
    Term("zip", ("zip", "zipcode", "postal", "postcode", "post", "plz", "postleitzahl",
                 "postnummer", "code", "codigo", "código"), _ZIP_CUE, anchored=True,
         case_sensitive=True),
    Term("corner", ("corner",), _CORNER, before=4, after=120, case_sensitive=True),
    Term("label", ("address", "addresses", "addr"), _LABEL, before=12, after=110),
])


@lru_cache(maxsize=8)
def _cue_spans(text: str) -> tuple[list[int], list[int]]:
    """Starts and ends of every address cue of ``text``, found once per text."""
    starts, ends = [], []
    for m in _CUE_BEFORE.finditer(text):
        starts.append(m.start())
        ends.append(m.end())
    return starts, ends


@lru_cache(maxsize=8)
def _cue_calls(text: str) -> list[int]:
    """How often :func:`_cue_before` searched a window of ``text`` (one counter per text)."""
    return [0]


def _cue_before(text: str, lo: int, hi: int) -> bool:
    """Whether an address cue ("lives at", "ship to", "address") lies in ``text[lo:hi]``.
    The first few windows of a text are searched; past that (number-dense text) every cue of
    the text is found once and looked up."""
    if hi - lo < 3:
        return False
    calls = _cue_calls(text)
    calls[0] += 1
    if calls[0] <= 16 or hi - lo > 200:
        return _CUE_BEFORE.search(text, lo, hi) is not None
    starts, ends = _cue_spans(text)
    i = bisect.bisect_left(starts, lo)
    return i < len(starts) and ends[i] <= hi


def _tail(text: str, end: int) -> tuple[int, bool]:
    """Where the address block that ends at ``end`` really ends, and whether what it took is
    evidence of an address on its own: a unit, a box, a postal code that is not a year, a
    state code after a comma, or two place lines of an address block."""
    places, strong, limit = 0, False, end + _TAIL_CHARS
    for _ in range(_TAIL_ITEMS):
        m = _TAIL.match(text, end)
        if m is None or m.end() > limit:
            break
        place, code = m.group("place"), m.group("zip") or m.group("pzip")
        if place is not None and place.split()[0].rstrip(",.") in _NOT_PLACE:
            break
        strong = (strong or m.group("unit") is not None or m.group("mil") is not None
                  or (code is not None and _STRONG_ZIP.match(code) is not None)
                  or _STATE_CODE.search(m.group("state") or "") is not None)
        places += place is not None and "\n" in m.group("sep")
        end = m.end()
    return end, strong or places >= 2


def _block(text: str, start: int, end: int, *, weak: bool) -> tuple[int, int] | None:
    """The anchor ``text[start:end]`` grown into its address block; ``None``: a weak anchor
    with no evidence after it (see :func:`_tail`) and no address word before it."""
    if weak and any(w in _NOT_PLACE for w in text[start:end].split()):
        return None
    new_end, evidence = _tail(text, end)
    if weak and not evidence and not _cue_before(text, max(0, start - 60), start):
        return None
    lead = _LEAD_NUMBER.search(text, max(0, start - 8), start)
    return (lead.start() if lead else start), new_end


def _word_before(text: str, s: int) -> str:
    """The word that ends one space or tab before ``s`` ("" if none)."""
    if s < 2 or text[s - 1] not in " \t":
        return ""
    k = s - 1
    while k > 0 and s - k < 40 and not text[k - 1].isspace():
        k -= 1
    return text[k:s - 1]


def _ending_here(text: str, s: int, e: int) -> tuple[re.Pattern[str], bool] | None:
    """Which number-last form may end at the digit run ``text[s:e]``, decided from the words
    before it on its line: ``(_NUMBER_LAST, False)`` after a street, unit, box, state or
    postcode word, ``(_NAME_NUMBER, True)`` after another capitalised word when an address
    line or an address word backs it up, else ``None``. Most digit runs of ordinary text
    ("in 2019", "( 12 )") are settled here without a regular expression."""
    word = _word_before(text, s)
    if not word:
        return None
    low = word.lower().rstrip(",")
    if (low in _WORDS_BEFORE_NUMBER or _GLUED_END.search(low) is not None
            or low.upper() in _STATE_SET or _OUTWARD_CODE.fullmatch(word) is not None):
        return _NUMBER_LAST, False
    if not word[0].isupper():
        return None
    line = text.rfind("\n", max(0, s - _LOOKBACK), s) + 1
    if _WORDS_AFTER_NUMBER.intersection(text[max(line, s - _LOOKBACK):s].lower().split()):
        return _NUMBER_LAST, False
    end = e + (e < len(text) and text[e].isalpha())
    if _tail(text, end)[1] or _cue_before(text, max(0, s - 90), s):
        return _NAME_NUMBER, True
    return None


def _may_start_at(text: str, e: int) -> bool:
    """Whether a house number that ends at ``e`` may start an address: a capitalised word, an
    ordinal or a street word follows it."""
    m = _AFTER_NUMBER.match(text, e)
    return m is not None and (m.group(1)[0].isupper() or m.group(1)[0].isdigit()
                              or m.group(1).lower() in _WORDS_AFTER_NUMBER)


def find_addresses(scan: Scan) -> list[tuple[int, int]]:
    """Character ranges of street addresses and postal codes in ``scan.text`` (merged)."""
    text = scan.text
    n = len(text)
    found: list[tuple[int, int]] = []
    covered = -1
    for s, e in scan.digit_runs:
        if s < covered:
            continue
        if _may_start_at(text, e):
            m = _AT_NUMBER.match(text, s)
            if m is not None:
                block = _block(text, m.start(), m.end(), weak=m.group("weak") is not None)
                if block is not None:
                    found.append(block)
                    covered = block[1]
                    continue
        form = _ending_here(text, s, e)
        if form is None:
            continue
        pattern, weak = form
        # a window on this digit run's line (a ship's name may be on the line before FPO)
        lo = max(0, s - _LOOKBACK)
        if not _MILITARY_BEFORE.search(text, max(lo, s - 16), s):  # "APO AE " right before
            lo = max(lo, text.rfind("\n", lo, s) + 1)
        # both forms start at a word start: try those only (a window search tries every
        # position and costs milliseconds on number-dense text)
        for ws in _WORD_START.finditer(text, lo, s + 1):
            w = pattern.match(text, ws.start(), min(n, e + 12))
            if w is None or w.end() <= s:  # none, or ends before this digit run
                continue
            m = pattern.match(text, w.start())  # again, without the window's end
            block = None if m is None else _block(text, m.start(), m.end(), weak=weak)
            if block is not None:
                found.append(block)
                covered = max(covered, block[1])
                break
    for term, s, e in _LEXICON.find(scan):
        value = text[s:e]
        if term.key == "label" and not _label_ok(value):
            continue
        found.append(_block(text, s, e, weak=False) or (s, e))
    return merge_windows(found)


def _label_ok(value: str) -> bool:
    """Whether the text after an "Address:" label reads like an address, not like code."""
    return (any(c.isdigit() for c in value) and any(c.isalpha() for c in value)
            and (value[0].isdigit() or value[0].isupper()) and not _CODE_CHARS.search(value))
