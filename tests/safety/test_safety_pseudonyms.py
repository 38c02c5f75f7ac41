"""Consistent pseudonyms: the same value gets the same ``[TYPE_n]`` across a conversation's
turns and in its streamed answer; different values get different numbers; the mapping is never
shown. Texts are invented (a made-up patient, Mrs. Okonkwo)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import pytest

from edgeward.errors import ConfigError
from edgeward.safety import (
    BundledFilter,
    MemoryAuditSink,
    Pseudonyms,
    load_filter,
    policy_from_dict,
    preset_policy,
    redact,
)


@pytest.fixture(scope="module")
def phi() -> BundledFilter:
    """The phi preset (every PII type, pseudonyms on) with only its PII check: these tests
    are about redaction, not about the harm classifier's view of clinical notes."""
    return BundledFilter(dataclasses.replace(preset_policy("phi"), checks=("pii",)))


def _stream(flt: BundledFilter, text: str, p: Pseudonyms, size: int) -> str:
    stream = flt.output_stream(pseudonyms=p)
    out = [stream.feed(text[i:i + size]).emit for i in range(0, len(text), size)]
    return "".join(out) + stream.finish().emit


def _checked(flt: BundledFilter, turns: Iterable[str], p: Pseudonyms) -> list[str]:
    out = []
    for t in turns:
        v = flt.check(t, pseudonyms=p)
        assert v.action in ("allow", "redact"), (t, v.categories)
        out.append(v.redacted_text if v.redacted_text is not None else t)
    return out


def test_same_value_same_number_and_different_values_different_numbers() -> None:
    p = Pseudonyms()
    assert p.placeholder("EMAIL", "ngozi.okonkwo@example.org") == "[EMAIL_1]"
    assert p.placeholder("EMAIL", "ada.okonkwo@example.org") == "[EMAIL_2]"
    assert p.placeholder("EMAIL", "NGOZI.Okonkwo@Example.org") == "[EMAIL_1]"  # case-folded
    assert p.placeholder("NAME", "Ada   Okonkwo") == "[NAME_1]"  # numbered per type
    assert p.placeholder("NAME", "ada okonkwo") == "[NAME_1]"  # whitespace collapsed
    assert p.placeholder("PHONE", "(555) 201-8899") == p.placeholder("PHONE", "555 201 8899")
    assert p.placeholder("PHONE", "555 201 8800") == "[PHONE_2]"
    assert p.size == 5


def test_the_mapping_is_bounded_and_never_reuses_a_number() -> None:
    p = Pseudonyms(max_values=2)
    assert p.placeholder("MRN", "00482913") == "[MRN_1]"
    assert p.placeholder("MRN", "00482914") == "[MRN_2]"
    assert p.placeholder("MRN", "00482915") == "[MRN]"  # full: plain, not a wrong number
    assert p.placeholder("MRN", "00482913") == "[MRN_1]"  # known values keep theirs
    with pytest.raises(ConfigError, match="max_values = 0"):
        Pseudonyms(max_values=0)


def test_the_mapping_is_never_shown() -> None:
    p = Pseudonyms()
    p.placeholder("NAME", "Ada Okonkwo")
    shown = repr(p) + str(p)
    assert "Okonkwo" not in shown.title() and "1 values" in shown
    assert not hasattr(p, "__dict__")  # no attribute a generic dumper could walk


def test_consistent_across_turns(phi: BundledFilter) -> None:
    p = Pseudonyms()
    turns = ["Summarise the visit for the patient, MRN: 00482913, DOB: 3/4/1957.",
             "Her daughter can be reached at ngozi.okonkwo@example.org or 555-201-8899.",
             "Also copy ben.adeyemi@example.org, and note MRN 00482913 again.",
             "Follow up with NGOZI.OKONKWO@example.org by phone at (555) 201-8899."]
    out = _checked(phi, turns, p)
    assert out[0] == "Summarise the visit for the patient, MRN: [MRN_1], DOB: [DOB_1]."
    assert out[1] == "Her daughter can be reached at [EMAIL_1] or [PHONE_1]."
    assert out[2] == "Also copy [EMAIL_2], and note MRN [MRN_1] again."
    assert out[3] == "Follow up with [EMAIL_1] by phone at [PHONE_1]."


def test_a_new_conversation_starts_from_one(phi: BundledFilter) -> None:
    first, second = Pseudonyms(), Pseudonyms()
    phi.check("write to ben.adeyemi@example.org", pseudonyms=first)
    v = phi.check("write to ngozi.okonkwo@example.org", pseudonyms=second)
    assert v.redacted_text == "write to [EMAIL_1]"


@pytest.mark.parametrize("size", [1, 2, 3, 7])
def test_the_streamed_answer_uses_the_prompts_numbers(phi: BundledFilter, size: int) -> None:
    p = Pseudonyms()
    phi.check("Her daughter can be reached at ngozi.okonkwo@example.org or 555-201-8899.",
              pseudonyms=p)
    answer = ("I will write to ben.adeyemi@example.org and to ngozi.okonkwo@example.org, "
              "then call 555-201-8899 about MRN: 00482913.")
    assert _stream(phi, answer, p, size) == (
        "I will write to [EMAIL_2] and to [EMAIL_1], then call [PHONE_1] about MRN: [MRN_1].")


def test_without_pseudonyms_redaction_is_as_before(phi: BundledFilter) -> None:
    text = "Write to ngozi.okonkwo@example.org or ben.adeyemi@example.org."
    v = phi.check(text)  # no Pseudonyms passed: plain placeholders
    assert v.redacted_text == "Write to [EMAIL] or [EMAIL]." == redact(text, v.spans)
    assert _stream(phi, text, Pseudonyms(), 3) != v.redacted_text  # it does number them


def test_a_policy_without_pseudonyms_ignores_them() -> None:
    flt = BundledFilter()  # the default policy: pseudonyms off
    assert not flt.policy.pseudonyms
    p = Pseudonyms()
    v = flt.check("Write to ngozi.okonkwo@example.org or ben.adeyemi@example.org.",
                  pseudonyms=p)
    assert v.redacted_text == "Write to [EMAIL] or [EMAIL]."
    assert _stream(flt, "mail ngozi.okonkwo@example.org now", p, 2) == "mail [EMAIL] now"
    assert p.size == 0


def test_the_option_is_read_from_the_policy() -> None:
    base = {"checks": {"enabled": ["pii"]}}
    on = BundledFilter(policy_from_dict(base | {"pii": {"pseudonyms": True}}))
    assert on.policy.pseudonyms and on.policy.to_dict()["pseudonyms"] is True
    assert on.check("a@example.org b@example.org", pseudonyms=Pseudonyms()).redacted_text \
        == "[EMAIL_1] [EMAIL_2]"


def test_audit_records_hold_no_values_or_placeholders() -> None:
    audit = MemoryAuditSink()
    flt = load_filter("phi", audit=audit, hmac_key=b"k" * 32)
    p = Pseudonyms()
    secrets = ["ngozi.okonkwo@example.org", "555-201-8899", "00482913", "3/4/1957"]
    flt.check(f"Contact {secrets[0]} or {secrets[1]}; MRN: {secrets[2]}, DOB: {secrets[3]}.",
              pseudonyms=p)
    _stream(flt, f"I will email {secrets[0]} about MRN: {secrets[2]}.", p, 2)
    assert len(audit.records) >= 2
    dumped = repr(audit.records)
    for value in [*secrets, "okonkwo", "8899", "1957", "[EMAIL_1]", "_1]"]:
        assert value.lower() not in dumped.lower(), value
    assert {"EMAIL", "PHONE", "MRN", "DOB"} <= {t for r in audit.records for t in r["span_types"]}


# Names without a title cue and bare dates (the detectors of issue 17, items 1 and 2).
def test_names_are_numbered_per_person(phi: BundledFilter) -> None:
    p = Pseudonyms()
    out = _checked(phi, ["Mrs. Okonkwo was seen today with her son Chidi Okonkwo.",
                         "Ask Mrs. Okonkwo whether Chidi Okonkwo can drive her home."], p)
    assert out == ["Mrs. [NAME_1] was seen today with her son [NAME_2].",
                   "Ask Mrs. [NAME_1] whether [NAME_2] can drive her home."]


def test_dates_are_numbered_per_date(phi: BundledFilter) -> None:
    p = Pseudonyms()
    out = _checked(phi, ["Admitted on 3/4/2023 and discharged on 3/9/2023.",
                         "Review the labs from 3/4/2023."], p)
    assert out == ["Admitted on [DATE_1] and discharged on [DATE_2].",
                   "Review the labs from [DATE_1]."]


def test_a_name_keeps_its_number_in_the_stream(phi: BundledFilter) -> None:
    p = Pseudonyms()
    assert phi.check("Summarise the visit for Mrs. Okonkwo.", pseudonyms=p).redacted_text \
        == "Summarise the visit for Mrs. [NAME_1]."
    assert _stream(phi, "Mrs. Okonkwo was seen today and is well.", p, 2) \
        == "Mrs. [NAME_1] was seen today and is well."
