"""Dates and ages: each written form with its exact span, non-dates left alone, DOB typing,
ages, case, bare years, and the path through find_pii."""

from __future__ import annotations

import itertools

import pytest

from edgeward.safety import find_pii, redact
from edgeward.safety._dates import find_dates
from edgeward.safety._scan import Scan


def _found(text: str) -> list[tuple[str, str]]:
    return [(kind, text[s:e]) for kind, s, e in find_dates(Scan(text))]


@pytest.mark.parametrize(("text", "value"), [
    ("Follow-up booked for 7/11/2031 at the clinic.", "7/11/2031"),
    ("Seen 09-02-68 by the night team.", "09-02-68"),
    ("Scan dated 2031-11-07 was normal.", "2031-11-07"),
    ("Logged at 2029-05-30 06:41:17 by the pump.", "2029-05-30 06:41:17"),
    ("Event at 2029-05-30T06:41:17Z in the log.", "2029-05-30T06:41:17Z"),
    ("Admitted 12-Aug-71 with chest pain.", "12-Aug-71"),
    ("Transferred 9 Oct 1983 to the ward.", "9 Oct 1983"),
    ("Operated on February 22nd, 1948 in Leeds.", "February 22nd, 1948"),
    ("Reviewed Sept. 19 with the family.", "Sept. 19"),
    ("Her labs came back on the 2nd of November.", "2nd of November"),
    ("The results from 21st June were lost.", "21st June"),
    ("He moved there in November 1966 for work.", "November 1966"),
    ("Card valid until 08/2033 only.", "08/2033"),
    ("Die Aufnahme war am 27.10.2024 morgens.", "27.10.2024"),
    ("Ingresó el 3 de julio de 1990 por la tarde.", "3 de julio de 1990"),
    ("Elle est arrivée le 14 juillet 1979 à Lyon.", "14 juillet 1979"),
    ("Entlassen am 5. Dezember 2001 nach Hause.", "5. Dezember 2001"),
    ("Nacido en septiembre de 1944 en Cádiz.", "septiembre de 1944"),
    ("See you on Wednesday after rounds.", "Wednesday"),
    ("Meet me Thu, 6 Jan please.", "Thu"),
    ("Admitted 3/4 after the fall.", "3/4"),  # a partial date after a visit cue
])
def test_each_date_form_is_found_with_its_span(text: str, value: str) -> None:
    assert ("DATE", value) in _found(text)


@pytest.mark.parametrize("text", [
    "Upgrade from 1.2.3 to 2.10.14 before Friday's release",  # versions (the day counts alone)
    "Add 3/4 cup of flour and 1/2 cup of sugar.",              # fractions
    "The final score was 3-1 after extra time.",               # a score
    "Call 555-123-4567 or 020 7946 0958 today.",               # phone numbers
    "Order 12-34-56-78 shipped.",                              # an ID in date-like groups
    "Invalid 13/45/2019 and 2019-13-01 and 32.01.2019 rows.",  # month 13, day 45/32
    "Mix at a ratio of 1:4:2 by volume.",                      # a ratio
    "Option 4 may be the cheaper one.",                        # "may" the verb
    "Two Mars rovers and the Mars 2020 mission.",              # the planet, not "mars" (fr)
    "Use 192.168.10.12 as the gateway.",                       # an IP address
    "Black Friday and Super Tuesday are named days.",          # calendar events
    "Sat 3 exams and the sun 5 times brighter.",               # lower-case "sat"/"sun"
])
def test_non_dates_are_left_alone(text: str) -> None:
    assert [k for k, v in _found(text) if k in ("DATE", "DOB") and v != "Friday"] == []


def test_may_and_weekday_abbreviations_need_evidence() -> None:
    assert _found("you may 1 day regret it") == []       # lower-case "may", no year/ordinal
    assert _found("due may 1st") == [("DATE", "may 1st")]
    assert _found("they sat 4 March exams") == [("DATE", "4 March")]  # "sat", not "Sat"
    assert _found("Sat 4 March exams") == [("DATE", "Sat"), ("DATE", "4 March")]


def test_friday_in_the_version_row_is_the_only_date() -> None:
    # guards the filter in the test above: "Friday" is a date, the versions are not
    assert _found("Upgrade from 1.2.3 to 2.10.14 before Friday's release") == [
        ("DATE", "Friday")]


@pytest.mark.parametrize(("text", "value"), [
    ("DOB: 11/30/1952", "11/30/1952"),
    ("D.O.B. 30.11.52 on the wristband", "30.11.52"),
    ("Date of birth is February 2, 1939.", "February 2, 1939"),
    ("She was born on 17 May 1960 in Cork.", "17 May 1960"),
    ("birthday: 6th of April", "6th of April"),
    ("Ruth Amsel (b. 1931) wrote it.", "1931"),
    ("He was born in 1928 near Gdańsk.", "1928"),
    ("What is your date of birth? It's 4/19/1987", "4/19/1987"),
])
def test_a_date_after_a_birth_cue_is_a_dob(text: str, value: str) -> None:
    assert _found(text) == [("DOB", value)]


@pytest.mark.parametrize(("text", "value"), [
    ("Discharged on 11/30/1952 after review.", "11/30/1952"),
    ("Plan B. On Monday we start.", "Monday"),  # "B." is not "b." (born)
])
def test_a_date_without_a_birth_cue_is_a_plain_date(text: str, value: str) -> None:
    assert _found(text) == [("DATE", value)]


@pytest.mark.parametrize(("text", "value"), [
    ("A 67-year-old woman presented with a cough.", "67"),
    ("The patient is 58 years old.", "58"),
    ("Now 71 years of age, he lives alone.", "71"),
    ("Patient aged 93 with dementia.", "93"),
    ("Age: 40, weight 70 kg", "40"),
    ("at the age of 104 she still painted", "104"),
    ("76 y/o male, afebrile", "76"),
    ("76yo M with chest pain", "76"),
    ("Refer a 97 year old for review.", "97"),
    ("My aunt just turned 90.", "90"),
    ("I'm 38 and healthy.", "38"),
    ("It was written when she was 81.", "81"),
    ("Tomás Ruiz, 66, of Valencia, said so.", "66"),
    ("Her 95th birthday was quiet.", "95"),
    ("a woman of 91 who lives alone", "91"),
    ("tengo 52 años y vivo sola", "52"),
    ("A man in his 90s was admitted.", "90s"),
    ("She is in her late eighties.", "eighties"),
    ("A frail nonagenarian on the ward.", "nonagenarian"),
])
def test_ages(text: str, value: str) -> None:
    assert ("AGE", value) in _found(text)


@pytest.mark.parametrize("text", [
    "Patients aged 18 to 65 were enrolled.",     # a population's range
    "Adults aged 65 and over get the vaccine.",  # a bound
    "Turn the dial; it turned 90 degrees.",      # not an age
    "I'm 5 minutes away from the office.",
    "Set the age limit field to 100% coverage.",
])
def test_non_ages_are_left_alone(text: str) -> None:
    assert [k for k, _ in _found(text) if k == "AGE"] == []


def test_lower_case_text() -> None:
    text = "pt seen on march 3rd, 2019 and on 4 feb 2020; dob 2/9/1961; a 54 y/o male; monday"
    assert _found(text) == [("DATE", "march 3rd, 2019"), ("DATE", "4 feb 2020"),
                            ("DOB", "2/9/1961"), ("AGE", "54"), ("DATE", "monday")]


def test_all_caps_text() -> None:
    text = "ADMITTED 12-AUG-71. DOB: JANUARY 5, 1950. AGE 81. SEEN TUESDAY."
    assert _found(text) == [("DATE", "12-AUG-71"), ("DOB", "JANUARY 5, 1950"), ("AGE", "81"),
                            ("DATE", "TUESDAY")]


@pytest.mark.parametrize(("text", "value"), [
    ("The choir was founded in 1961 by teachers.", "1961"),
    ("We have lived here since 1994.", "1994"),
    ("During 1983, the firm invested in Oslo.", "1983"),
    ("She graduated in 2006 from Leeds.", "2006"),
])
def test_a_bare_year_with_an_event_cue_is_a_date(text: str, value: str) -> None:
    assert _found(text) == [("DATE", value)]


@pytest.mark.parametrize("text", [
    "What happened in 1989?",
    "Compare the economy in 2008 and 2009.",
    "The 2022 model has 2048 tokens of context.",
    "Population grew 12% in 2015 to 2019.",
])
def test_a_bare_year_without_a_cue_is_not_a_date(text: str) -> None:
    assert _found(text) == []


def test_spans_do_not_overlap_and_are_in_order() -> None:
    found = find_dates(Scan("Tue, 4 Mar 2031 10:30 and 2031-03-04 and March 2031, aged 91."))
    assert [k for k, _, _ in found] == ["DATE", "DATE", "DATE", "DATE", "AGE"]
    assert all(a[2] <= b[1] for a, b in itertools.pairwise(found))


def test_end_to_end_through_find_pii() -> None:
    text = ("Mr. Okafor, DOB 02/14/1931, was admitted 3 Jan 2024 and discharged on Friday; "
            "a 93-year-old, he moved here in 1990.")
    spans = find_pii(text, types=("DATE", "DOB", "AGE"))
    assert [(s.type, text[s.start:s.end]) for s in spans] == [
        ("DOB", "02/14/1931"), ("DATE", "3 Jan 2024"), ("DATE", "Friday"), ("AGE", "93"),
        ("DATE", "1990")]
    assert redact(text, spans) == (
        "Mr. Okafor, DOB [DOB], was admitted [DATE] and discharged on [DATE]; "
        "a [AGE]-year-old, he moved here in [DATE].")


def test_find_pii_keeps_only_the_types_asked_for() -> None:
    text = "DOB 02/14/1931, seen 3 Jan 2024, aged 93"
    assert [s.type for s in find_pii(text, types=("AGE",))] == ["AGE"]
    assert [s.type for s in find_pii(text, types=("DOB",))] == ["DOB"]
