"""PII detection: each type with valid and invalid examples, checksums, typed placeholders."""

from __future__ import annotations

import pytest

from edgeward.safety import BundledFilter, find_pii, redact
from edgeward.safety._pii import iban_valid, luhn_valid


def _types(text: str) -> list[tuple[str, str]]:
    return [(s.type, text[s.start:s.end]) for s in find_pii(text)]


@pytest.mark.parametrize(("kind", "text", "value"), [
    ("EMAIL", "write to ana.lopez+work@clinic.example.org today",
     "ana.lopez+work@clinic.example.org"),
    ("PHONE", "call +1 (415) 555-0132 after six", "+1 (415) 555-0132"),
    ("PHONE", "Phone: 0393 1144137", "0393 1144137"),
    ("PHONE", "my mobile is 07700 900 123", "07700 900 123"),
    ("CARD", "card 4111 1111 1111 1111 expires", "4111 1111 1111 1111"),
    ("CARD", "amex 378282246310005 please", "378282246310005"),
    ("IBAN", "pay to GB82 WEST 1234 5698 7654 32 now", "GB82 WEST 1234 5698 7654 32"),
    ("IBAN", "iban de89370400440532013000", "de89370400440532013000"),
    ("SSN", "my SSN is 536-22-8726", "536-22-8726"),
    ("SSN", "social security number 536 22 8726", "536 22 8726"),
    ("IP", "server at 192.168.10.254 is down", "192.168.10.254"),
    ("IP", "ipv6 2001:db8:85a3::8a2e:370:7334 ok", "2001:db8:85a3::8a2e:370:7334"),
    ("DOB", "Patient DOB: 03/14/1962, admitted", "03/14/1962"),
    ("DOB", "she was born on March 3, 1981 in Ohio", "March 3, 1981"),
    ("MRN", "MRN: 00482913 bed 4", "00482913"),
    ("MRN", "medical record number A-1234567 on file", "A-1234567"),
    # the city is part of the address (a Safe Harbor identifier too)
    ("ADDRESS", "ship it to 221B Baker Street, London", "221B Baker Street, London"),
    ("ADDRESS", "Ufficio in Via Franscini 71, Lugano", "Via Franscini 71, Lugano"),
    ("NAME", "Hello, my name is Šárka Ottová and I need help", "Šárka Ottová"),
    ("NAME", "Referred by Dr. Amal Haddad yesterday", "Amal Haddad"),
])
def test_each_type_is_found(kind: str, text: str, value: str) -> None:
    assert (kind, value) in _types(text)


@pytest.mark.parametrize(("kind", "text"), [
    ("CARD", "card 4111 1111 1111 1112 expires"),        # Luhn fails
    ("CARD", "order 1234567890123"),                      # Luhn fails
    ("IBAN", "pay to GB83 WEST 1234 5698 7654 32 now"),   # mod-97 check digits wrong
    ("IBAN", "code DE00370400440532013000"),              # check digits 00 never valid
    ("SSN", "ref 000-12-3456"),                           # area 000 is never issued
    ("SSN", "ref 666-12-3456"),                           # area 666 is never issued
    ("SSN", "ref 912-12-3456"),                           # 9xx is not an SSN area
    ("IP", "version 300.1.2.3 released"),                 # octet > 255
    ("PHONE", "it happened in 1977 and again in 2014"),   # years are not phones
    ("PHONE", "at 2003-08-28 12:13:52 the job ran"),      # timestamps are not phones
    ("PHONE", "the HL7 root OID 2.16.840.1.113883.3.1 is registered"),  # an OID, no phone
    ("IP", "snmpget SNMPv2-MIB::enterprises now"),       # "::e" parses, but is no address
    ("DOB", "the meeting is on 03/14/2025"),              # a date without a birth cue
    ("NAME", "I am Happy to help"),                       # a capitalised word, not a name
])
def test_invalid_examples_are_not_flagged(kind: str, text: str) -> None:
    assert kind not in [t for t, _ in _types(text)]


def test_checksums() -> None:
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    assert iban_valid("GB82WEST12345698765432") and not iban_valid("GB82WEST12345698765433")
    assert not iban_valid("GB82")


def test_redaction_uses_typed_placeholders() -> None:
    text = "Mail ana@example.org or call +44 20 7946 0958, card 4111-1111-1111-1111."
    assert redact(text, find_pii(text)) == "Mail [EMAIL] or call [PHONE], card [CARD]."


def test_filter_redacts_and_maps_spans_to_the_original(flt: BundledFilter) -> None:
    text = "Contact a\u200bna@exa\u200bmple.org please"
    v = flt.check(text)
    assert v.action == "redact" and v.categories == ("EMAIL",)
    assert v.redacted_text == "Contact [EMAIL] please"
    assert text[v.spans[0].start:v.spans[0].end] == "a\u200bna@exa\u200bmple.org"


def test_card_and_phone_do_not_double_count() -> None:
    assert _types("card 4111111111111111") == [("CARD", "4111111111111111")]
