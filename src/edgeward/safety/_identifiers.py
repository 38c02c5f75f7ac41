"""HIPAA Safe Harbor identifier numbers: URLs, account and health-plan numbers, licence and
certificate numbers, vehicle identifiers and plates, device identifiers and serial numbers.

An account, member or serial number is just a run of letters and digits; what makes it one is
the word before it. So these detectors are cue-based: a :class:`~._scan.Lexicon` finds the cue
words ("member ID", "policy number", "driver's licence", "S/N", "IMEI", "plate") and a pattern
anchored at the cue reads the value after it. Where the identifier carries a check, the value
must pass it: DEA registration numbers (their check digit), NPIs (Luhn over ``80840`` + the
number), IMEIs (Luhn), North American VINs (the check digit at position 9). A VIN with a valid
check digit and a MAC address are found without a cue (their shape and check are evidence
enough); a VIN without a valid check digit (European ones have none) needs "VIN"/"chassis".

URLs are found at ``http``/``https``/``ftp``/``www`` and at bare domains that end in a known
top-level domain (``example.com``, ``clinic.co.uk``). Top-level domains that are also file
extensions or code (``.py``, ``.rs``, ``.pl``, ``.md``, ``.sh``, ``.pt``, ``.id``, ``.to``) are left
out of the bare form, so ``model.py``, ``user.id`` and ``x.to(device)`` are not URLs; a version
string (``v1.2.3``) or ``e.g.`` ends in no top-level domain at all.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial

from edgeward.safety._scan import Lexicon, Scan, Term

__all__ = ["dea_valid", "find_identifiers", "luhn_valid", "npi_valid", "vin_valid"]


def luhn_valid(digits: str) -> bool:
    """Whether the digits of ``digits`` (other characters ignored) pass the Luhn check."""
    nums = [int(c) for c in digits if c.isdigit()]
    total = 0
    for i, d in enumerate(reversed(nums)):
        total += (d * 2 - 9 if d > 4 else d * 2) if i % 2 else d
    return bool(nums) and total % 10 == 0


def dea_valid(value: str) -> bool:
    """Whether ``value`` (two letters and seven digits, separators ignored) is a DEA
    registration number with a valid check digit: (d1 + d3 + d5) + 2 * (d2 + d4 + d6) ends in
    d7."""
    s = re.sub(r"[\s-]", "", value).upper()
    if not re.fullmatch(r"[A-Z][A-Z9]\d{7}", s):
        return False
    d = [int(c) for c in s[2:]]
    return (d[0] + d[2] + d[4] + 2 * (d[1] + d[3] + d[5])) % 10 == d[6]


def npi_valid(value: str) -> bool:
    """Whether ``value`` is a 10-digit US National Provider Identifier whose last digit is the
    Luhn check digit of ``80840`` followed by the first nine (the ISO 7812 card-issuer prefix)."""
    digits = re.sub(r"\D", "", value)
    return len(digits) == 10 and digits[0] in "12" and luhn_valid("80840" + digits)


_VIN_VALUES = {**{str(i): i for i in range(10)},
               **dict(zip("ABCDEFGH", range(1, 9), strict=True)),
               **dict(zip("JKLMN", range(1, 6), strict=True)), "P": 7, "R": 9,
               **dict(zip("STUVWXYZ", range(2, 10), strict=True))}
_VIN_WEIGHTS = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)


def vin_valid(vin: str) -> bool:
    """Whether ``vin`` is a 17-character VIN (no I, O or Q) whose 9th character is the
    North American check digit (ISO 3779 weights, mod 11, 10 written ``X``)."""
    v = vin.upper()
    if len(v) != 17 or any(c not in _VIN_VALUES for c in v):
        return False
    total = sum(_VIN_VALUES[c] * w for c, w in zip(v, _VIN_WEIGHTS, strict=True)) % 11
    return v[8] == ("X" if total == 10 else str(total))


# --- URLs -----------------------------------------------------------------------------------
_URL_END = r"[^\s<>\"'`]*[^\s<>\"'`.,;:!?)\]}*]"
_URL_AT = re.compile(rf"(?:(?:https?|s?ftp)://|www\d?\.)[^\s<>\"'`/]{{2}}(?:{_URL_END})?",
                     re.IGNORECASE)
# Top-level domains a bare domain may end in: the generic ones and country codes that are not
# also file extensions or code (.py .rs .pl .md .sh .so .cs .cc .pt .pk .tf .id .in .app .dev
# .int .to .be .by .ms .my .st) or short English words that would make every "it", "no",
# "at", "me", "us", "co" a trigger word. Those still count after a scheme or "www.".
_TLDS = (
    "com", "org", "net", "edu", "gov", "mil", "info", "biz", "io", "ai", "uk", "de", "fr", "nl",
    "ch", "se", "dk", "fi", "cz", "sk", "hu", "ro", "bg", "gr", "ie", "ru", "ua", "br", "ar", "mx",
    "cl", "uy", "ca", "au", "nz", "za", "jp", "cn", "kr", "tw", "hk", "sg", "ph", "th", "vn", "tr",
    "il", "ae", "sa", "ng", "ke", "eu", "tv", "ly", "gl", "xyz", "online", "site", "tech", "shop",
    "blog", "cloud", "health", "news", "care", "clinic", "hospital",
)
_BARE_DOMAIN = re.compile(
    rf"(?<![\w@.\-/:])(?:[a-z0-9](?:[a-z0-9-]{{0,61}}[a-z0-9])?\.)+(?:{'|'.join(_TLDS)})"
    rf"(?::\d{{2,5}})?(?:/{_URL_END})?(?![\w-]|\.[^\s]|\()")
_NOT_DOMAINS = frozenset(("vb.net", "asp.net", "ado.net"))  # product names, not hosts
_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-")


def _bare_domain(scan: Scan, s: int, e: int) -> tuple[int, int] | None:
    """The bare domain whose top-level domain is the word ``text[s:e]``, if there is one: a
    dot before the word, a host name before the dot, no upper-case TLD (``ASP.NET``)."""
    text, lower = scan.text, scan.lower
    if s < 2 or text[s - 1] != "." or not lower[s - 2].isalnum() or text[s:e].isupper():
        return None
    k = s - 1
    while k > 0 and s - k < 253 and lower[k - 1] in _HOST_CHARS:
        k -= 1
    while lower[k] in ".-":
        k += 1
    m = _BARE_DOMAIN.match(lower, k)
    if m is None or m.end() < e or not any(c.isalpha() for c in lower[k:s - 1]) \
            or lower[k:e] in _NOT_DOMAINS:
        return None
    return m.start(), m.end()


# --- cue + value ----------------------------------------------------------------------------
# After the cue: an optional number word, then optional "is", ":", "#", "=" or "-".
_FILL = (r"(?:[ \t]*(?i:number|num|no|nr|id|identifier|code)\b\.?)?[ \t]*(?i:is[ \t]+)?"
         r"[:#=-]?[ \t]*")
# The same, but one of the number words or ":"/"#" must be there ("policy 12" is not enough).
_FILL_REQ = (r"(?:[ \t]*(?i:number|num|no|nr|id|identifier|code)\b\.?[ \t]*(?i:is[ \t]+)?"
             r"[:#=-]?|[ \t]*[:#])[ \t]*")
# The same, but a number word must be there (not a bare ":": "Plan: 2024 goals").
_FILL_ID = (r"[ \t]*(?:(?i:number|num|no|nr|id|identifier|code)\b\.?|#)[ \t]*(?i:is[ \t]+)?"
            r"[:#=-]?[ \t]*")
_VALUE = r"([A-Za-z0-9](?:[A-Za-z0-9]|[-/.](?=[A-Za-z0-9])|[ ](?=\d{3})){3,30})(?![\w-])"
_PLATE = r"([A-Z0-9]{1,4}(?:[ -]?[A-Z0-9]{1,4}){1,3})(?![\w-])"
_ACCOUNT = r"(?i:(?:bank|checking|savings|billing|customer)[ \t]+)?(?i:account|acct|acc)\.?"
_PLAN = (r"(?i:(?:health[ \t]+plan|insurance|medicaid|medicare|policy(?:holder)?|group|"
         r"plan|insurer|coverage|claim)(?:[ \t]+(?:beneficiary|member|subscriber|policy))?|"
         r"beneficiary|member(?:ship)?|subscriber|enrollee|insured|customer|billing)")
_LICENSE = r"(?i:(?:driver'?s?|driving)[ \t]+licen[cs]e|dl|passport)"
_LICENSE_REQ = (r"(?i:(?:state|medical|nursing|professional|pharmacy|business)[ \t]+)?"
                r"(?i:licen[cs]e|certificate|certification|cert\.?|permit)")
_SERIAL = (r"(?i:serial[ \t]+(?:number|no\b\.?|nr\b\.?|num\b|#)|device[ \t]+(?:id|identifier|"
           r"serial(?:[ \t]+number)?|number|no\b\.?)|(?:equipment|hardware|implant|pacemaker|"
           r"pump|monitor)[ \t]+(?:id|serial(?:[ \t]+number)?|number|no\b\.?))")
_YEAR = re.compile(r"(?:19|20)\d\d")
_MAC = r"[0-9A-Fa-f]{2}(?P<sep>[:-])(?:[0-9A-Fa-f]{2}(?P=sep)){4}[0-9A-Fa-f]{2}"


def _value_ok(kind: str, value: str) -> bool:
    digits = sum(c.isdigit() for c in value)
    alnum = sum(c.isalnum() for c in value)
    if _YEAR.fullmatch(value):
        return False
    if kind == "digits6":
        return digits >= 6
    if kind == "plate":
        return 4 <= alnum <= 10 and digits >= 1 and alnum > digits
    return alnum >= 4 and digits >= {"digits4": 4, "digits3": 3, "digits2": 2}.get(kind, 3)


def _imei_ok(value: str) -> bool:
    digits = re.sub(r"\D", "", value)
    return len(digits) == 16 or (len(digits) == 15 and luhn_valid(digits))


_CHECKS: dict[str, Callable[[str], bool]] = {
    "dea": dea_valid, "npi": npi_valid, "imei": _imei_ok, "vin": lambda v: len(v) == 17,
    **{k: partial(_value_ok, k) for k in ("digits2", "digits3", "digits4", "digits6", "plate")},
}


def _term(key: str, triggers: str, pattern: str) -> Term:
    return Term(key, tuple(triggers.split()), re.compile(pattern), anchored=True,
                case_sensitive=True)


_CUED = Lexicon([
    _term("ACCOUNT:digits4", "account acct acc bank checking savings billing customer",
          rf"{_ACCOUNT}{_FILL_REQ}{_VALUE}"),
    _term("ACCOUNT:digits6", "account acct", rf"{_ACCOUNT}[ \t]+{_VALUE}"),
    _term("ACCOUNT:digits3", "health insurance medicaid medicare policy policyholder group plan "
          "insurer coverage claim beneficiary member membership subscriber enrollee insured "
          "customer billing", rf"{_PLAN}{_FILL_ID}{_VALUE}"),
    _term("LICENSE:digits3", "driver drivers driving dl passport", rf"{_LICENSE}{_FILL}{_VALUE}"),
    _term("LICENSE:digits3", "state medical nursing professional pharmacy business license "
          "licence certificate certification cert permit", rf"{_LICENSE_REQ}{_FILL_REQ}{_VALUE}"),
    _term("LICENSE:dea", "dea", rf"(?i:dea)(?:[ \t]+(?i:registration|reg\.?))?{_FILL}"
          r"([A-Za-z][A-Za-z9][ \t-]?\d{7})\b"),
    _term("LICENSE:npi", "npi", rf"(?i:npi){_FILL}(\d{{10}})\b"),
    _term("VEHICLE:vin", "vin vehicle chassis",
          r"(?i:vin|vehicle[ \t]+identification(?:[ \t]+number|[ \t]+no\b\.?)?|"
          rf"chassis(?:[ \t]+number|[ \t]+no\b\.?)?){_FILL}([A-HJ-NPR-Z0-9]{{17}})\b"),
    _term("VEHICLE:plate", "license licence number registration car vehicle plate reg rego",
          r"(?i:(?:(?:licen[cs]e|number|registration|car|vehicle)[ \t]+plate|plate|rego)"
          rf"{_FILL}|(?:registration(?:[ \t]+(?:mark|plate))?|reg\.?){_FILL_REQ}){_PLATE}"),
    _term("DEVICE:digits2", "serial device equipment hardware implant pacemaker pump monitor",
          rf"{_SERIAL}{_FILL}{_VALUE}"),
    # "S/N": the "s" of every "it's" would be a trigger; "n" is rare, so look around it.
    Term("DEVICE:digits2", ("n",), re.compile(rf"(?i:s/n){_FILL}{_VALUE}"), before=2, after=50,
         case_sensitive=True),
    _term("DEVICE:digits2", "serial sn", rf"(?i:serial|sn)[ \t]*[:#][ \t]*{_VALUE}"),
    _term("DEVICE:imei", "imei", rf"(?i:imei){_FILL}(\d{{2}}[ -]?\d{{6}}[ -]?\d{{6}}[ -]?\d{{1,2}})"
          r"(?!\d)"),
    _term("DEVICE:digits4", "udi",
          rf"(?i:udi)(?:[ \t]+(?i:di|pi))?{_FILL}((?:\(\d{{2,4}}\)[A-Za-z0-9./-]+){{1,8}}|"
          r"\+[A-Za-z0-9/$.+-]{6,60}|\d{14})"),
    _term("DEVICE:digits4", "mac", rf"(?i:mac)(?:[ \t]+(?i:address|addr|id))?{_FILL}"
          rf"({_MAC}|[0-9A-Fa-f]{{4}}\.[0-9A-Fa-f]{{4}}\.[0-9A-Fa-f]{{4}})(?![\w:-])"),
])
_URLS = Lexicon([
    Term("URL", ("http", "https", "ftp", "sftp", "www", "www1", "www2", "www3"), _URL_AT,
         anchored=True, case_sensitive=True),
    Term("URL:bare", tuple(_TLDS)),
])
_VIN = re.compile(r"[A-HJ-NPR-Z0-9]{17}")
_MAC_AT = re.compile(rf"(?<![0-9A-Fa-f:-]){_MAC}(?![0-9A-Fa-f:-])")


def _at_digits(scan: Scan, wanted: set[str]) -> list[tuple[str, int, int]]:
    """VINs with a valid check digit and MAC addresses, tried only next to digit runs that
    touch a letter (VIN) or a ``:``/``-`` (MAC)."""
    text, n = scan.text, len(scan.text)
    found: list[tuple[str, int, int]] = []
    covered = -1
    for s, e in scan.digit_runs:
        if s < covered:
            continue
        before = text[s - 1] if s else " "
        after = text[e] if e < n else " "
        if "VEHICLE" in wanted and (before.isalnum() or after.isalnum()):
            # the letters and digits around this run, once per token
            a, b = s, e
            while a > 0 and e - a <= 17 and text[a - 1].isascii() and text[a - 1].isalnum():
                a -= 1
            while b < n and b - a <= 17 and text[b].isascii() and text[b].isalnum():
                b += 1
            covered = b
            token = text[a:b]
            if len(token) == 17 and _VIN.fullmatch(token) and vin_valid(token) \
                    and any(c.isalpha() for c in token):
                found.append(("VEHICLE", a, b))
                continue
        if "DEVICE" in wanted and (before in ":-" or after in ":-"):
            m = _MAC_AT.search(text, max(0, s - 15), min(n, e + 17))
            if m and m.start() <= s < m.end():
                found.append(("DEVICE", m.start(), m.end()))
                covered = m.end()
    return found


def find_identifiers(scan: Scan, wanted: set[str]) -> list[tuple[str, int, int]]:
    """``(type, start, end)`` of URLs, account, licence, vehicle and device identifiers in
    ``scan.text``, for the types in ``wanted``."""
    text = scan.text
    found: list[tuple[str, int, int]] = []
    if "URL" in wanted:
        for term, s, e in _URLS.find(scan):
            span = (s, e) if term.key == "URL" else _bare_domain(scan, s, e)
            if span is not None:
                found.append(("URL", *span))
    if not scan.digit_runs or not wanted & {"ACCOUNT", "LICENSE", "VEHICLE", "DEVICE"}:
        return found
    for term, s, e in _CUED.find(scan):
        kind, _, check = term.key.partition(":")
        if kind in wanted and _CHECKS[check](text[s:e]):
            found.append((kind, s, e))
    found += _at_digits(scan, wanted)
    return found
