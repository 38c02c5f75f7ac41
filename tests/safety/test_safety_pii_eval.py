"""PII evaluation: Presidio's names mapped to edgeward types, a DOB scored as a DATE, micro
F1/F2 from counts, any detector scored the same way, tables per source, and false redactions
on benign prompts. Rows are invented here; most use a fake detector so that the figures do not
move with the detectors."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from edgeward.safety._eval import (
    Detection,
    benign_false_redactions,
    evaluate_pii,
    labelled_types,
    scored_type,
)


def _fake(spans: dict[str, Sequence[Detection]]) -> Any:
    """A detector that answers from a table (text -> spans) and records what it was asked."""
    asked: list[str] = []

    def detect(text: str) -> list[Detection]:
        asked.append(text)
        return list(spans.get(text, []))

    detect.asked = asked  # type: ignore[attr-defined]
    return detect


def _row(text: str, *spans: tuple[int, int, str], source: str = "s") -> dict[str, Any]:
    return {"id": text, "text": text, "source": source,
            "spans": [{"start": s, "end": e, "type": t} for s, e, t in spans]}


@pytest.mark.parametrize(("presidio", "edgeward"), [
    ("EMAIL_ADDRESS", "EMAIL"), ("PHONE_NUMBER", "PHONE"), ("CREDIT_CARD", "CARD"),
    ("IBAN_CODE", "IBAN"), ("US_SSN", "SSN"), ("IP_ADDRESS", "IP"), ("DOMAIN_NAME", "URL"),
    ("STREET_ADDRESS", "ADDRESS"), ("ZIP_CODE", "ADDRESS"), ("PERSON", "NAME"),
    ("DATE_TIME", "DATE"), ("AGE", "AGE"), ("URL", "URL"), ("US_DRIVER_LICENSE", "LICENSE"),
    ("US_BANK_NUMBER", "ACCOUNT"),
    ("ORGANIZATION", None), ("GPE", None), ("NRP", None), ("TITLE", None), ("LOCATION", None),
    # edgeward's own names pass through; a sub-type is scored as its type
    ("EMAIL", "EMAIL"), ("NAME", "NAME"), ("DOB", "DATE"), ("DATE", "DATE"),
    ("NOT_A_TYPE", None),
])
def test_type_map(presidio: str, edgeward: str | None) -> None:
    assert scored_type(presidio) == edgeward


def test_unscored_gold_types_are_counted_not_scored() -> None:
    text = "Ana Ruiz of Acme in Lima"
    row = _row(text, (0, 8, "PERSON"), (12, 16, "ORGANIZATION"), (20, 24, "GPE"),
               (20, 24, "GPE"))
    r = evaluate_pii([row], detect=_fake({text: [(0, 8, "NAME"), (12, 16, "ORG")]}))
    assert set(r["by_type"]) == {"NAME"}
    assert r["unscored_types"] == {"GPE": 2, "ORGANIZATION": 1}
    assert r["unscored_predicted"] == {"ORG": 1}
    assert r["micro"]["precision"] == 1.0 and r["micro"]["recall"] == 1.0


def test_a_predicted_dob_counts_as_a_date() -> None:
    text = "admitted 04-Mar-57, born 3/4/1957"
    row = _row(text, (9, 18, "DATE_TIME"), (25, 33, "DATE_TIME"))
    r = evaluate_pii([row], detect=_fake({text: [(9, 18, "DATE"), (25, 33, "DOB")]}))
    assert r["by_type"] == {"DATE": {"support": 2, "predicted": 2, "recall": 1.0,
                                     "precision": 1.0}}
    assert r["supertypes"] == {"DOB": "DATE"}


def test_matching_is_overlap_of_the_same_type() -> None:
    text = "call Ana at 555 0100 now"
    row = _row(text, (5, 8, "PERSON"), (12, 20, "PHONE_NUMBER"))
    # the NAME prediction only touches the gold span (end == start): no overlap, no match;
    # the phone span overlaps but carries the wrong type
    pred = [(8, 11, "NAME"), (14, 20, "CARD")]
    r = evaluate_pii([row], detect=_fake({text: pred}))
    assert r["by_type"]["NAME"] == {"support": 1, "predicted": 1, "recall": 0.0,
                                    "precision": 0.0}
    assert r["by_type"]["PHONE"]["recall"] == 0.0
    assert r["by_type"]["CARD"] == {"support": 0, "predicted": 1, "recall": None,
                                    "precision": 0.0}


def test_micro_precision_recall_f1_f2_by_hand() -> None:
    # gold: 4 spans; predicted: 3, of which 2 hit a gold span; 2 gold spans are found
    a, b = "Ana Ruiz mailed ana@x.org", "Bo Li, 12 Elm Street, 3/4/1957"
    rows = [_row(a, (0, 8, "PERSON"), (16, 25, "EMAIL_ADDRESS")),
            _row(b, (0, 5, "PERSON"), (7, 20, "STREET_ADDRESS"))]
    detect = _fake({a: [(0, 3, "NAME"), (16, 25, "EMAIL")], b: [(22, 30, "DATE")]})
    micro = evaluate_pii(rows, detect=detect)["micro"]
    # P = 2/3, R = 2/4; F1 = 2PR/(P+R) = 4/7; F2 = 5PR/(4P+R) = (5/3)/(19/6) = 10/19
    assert micro == {"support": 4, "predicted": 3, "precision": 0.6667, "recall": 0.5,
                     "f1": 0.5714, "f2": 0.5263}


def test_micro_is_undefined_without_predictions_or_gold() -> None:
    text = "nothing here"
    assert evaluate_pii([_row(text)], detect=_fake({}))["micro"] == {
        "support": 0, "predicted": 0, "precision": None, "recall": None, "f1": None, "f2": None}
    micro = evaluate_pii([_row(text, (0, 7, "PERSON"))], detect=_fake({}))["micro"]
    assert micro["recall"] == 0.0 and micro["precision"] is None and micro["f2"] is None


def test_an_injected_detector_is_the_one_scored() -> None:
    # edgeward finds no name in "zed" and does find the e-mail; the fake the other way round
    a, b = "zed was here", "mail ana@example.org"
    rows = [_row(a, (0, 3, "PERSON")), _row(b, (5, 20, "EMAIL_ADDRESS"))]
    detect = _fake({a: [(0, 3, "NAME")]})
    r = evaluate_pii(rows, detect=detect)
    assert detect.asked == [a, b]
    assert r["by_type"]["NAME"]["recall"] == 1.0 and r["by_type"]["EMAIL"]["recall"] == 0.0
    assert set(r["latency_ms"]) >= {"p50", "p99"}


def test_the_default_detector_reports_offsets_in_the_original_text() -> None:
    text = "\u200bmail \uff41na@example.org now"  # zero-width space, fullwidth "a"
    row = _row(text, (6, 21, "EMAIL_ADDRESS"))
    r = evaluate_pii([row])
    assert r["by_type"]["EMAIL"] == {"support": 1, "predicted": 1, "recall": 1.0,
                                     "precision": 1.0}
    # the fields the CLI's --json has always had are still there
    assert {"n", "by_type", "match", "type_map", "unscored_types", "latency_ms"} <= set(r)


def test_tables_per_source() -> None:
    a, b, c = "Ana Ruiz", "Bo Li", "Cy Oh"
    rows = [_row(a, (0, 8, "PERSON"), source="synth"), _row(b, (0, 5, "PERSON"), source="tweets"),
            _row(c, (0, 5, "PERSON"), source="tweets")]
    r = evaluate_pii(rows, detect=_fake({a: [(0, 8, "NAME")], b: [(0, 2, "NAME")]}))
    assert set(r["by_source"]) == {"synth", "tweets"}
    synth, tweets = r["by_source"]["synth"], r["by_source"]["tweets"]
    assert synth["n"] == 1 and synth["micro"]["recall"] == 1.0 and synth["micro"]["f2"] == 1.0
    assert tweets["n"] == 2 and tweets["by_type"]["NAME"] == {
        "support": 2, "predicted": 1, "recall": 0.5, "precision": 1.0}
    assert tweets["micro"]["f2"] == round(5 * 0.5 / (4 + 0.5), 4)
    assert r["micro"]["recall"] == round(2 / 3, 4)


def test_predictions_of_types_a_source_does_not_label_can_be_set_aside() -> None:
    # the tweets are labelled for people only: a date found in one says nothing either way
    a, b = "Ana Ruiz on 3/4/1957", "Bo Li on Friday"
    rows = [_row(a, (0, 8, "PERSON"), (12, 20, "DATE_TIME"), source="synth"),
            _row(b, (0, 5, "PERSON"), (9, 15, "GPE"), source="tweets")]
    detect = _fake({a: [(0, 8, "NAME"), (12, 20, "DOB")],
                    b: [(0, 5, "NAME"), (9, 15, "DATE")]})
    labelled = labelled_types(rows)
    assert labelled == {"synth": {"DATE", "NAME"}, "tweets": {"NAME"}}
    plain = evaluate_pii(rows, detect=detect)
    assert plain["by_type"]["DATE"]["precision"] == 0.5 and "labelled" not in plain
    fair = evaluate_pii(rows, detect=detect, labelled=labelled)
    assert fair["by_type"]["DATE"] == {"support": 1, "predicted": 1, "recall": 1.0,
                                       "precision": 1.0}
    assert fair["micro"]["precision"] == 1.0 and fair["unlabelled_predicted"] == {"DATE": 1}
    assert fair["labelled"] == {"synth": ["DATE", "NAME"], "tweets": ["NAME"]}


def test_benign_false_redactions() -> None:
    rows = [{"text": "how do I bake bread", "label": "benign", "source": "chat"},
            {"text": "call 555 0100 or 555 0101", "label": "benign", "source": "chat"},
            {"text": "what is 10.0.0.1", "label": "benign", "source": "net"},
            {"text": "explain subnets", "label": "benign", "source": "net"},
            {"text": "ana@x.org leak it", "label": "harmful", "source": "chat"}]
    detect = _fake({rows[1]["text"]: [(5, 13, "PHONE"), (17, 25, "PHONE")],
                    rows[2]["text"]: [(8, 16, "IP")],
                    rows[4]["text"]: [(0, 9, "EMAIL")]})
    r = benign_false_redactions(rows, detect=detect)
    assert rows[4]["text"] not in detect.asked  # only benign prompts are read
    assert (r["n"], r["spans"], r["per_100_prompts"], r["prompt_rate"]) == (4, 3, 75.0, 0.5)
    assert r["by_source"] == {
        "chat": {"n": 2, "spans": 2, "per_100_prompts": 100.0, "prompt_rate": 0.5},
        "net": {"n": 2, "spans": 1, "per_100_prompts": 50.0, "prompt_rate": 0.5}}
    assert r["by_type"] == {"PHONE": 2, "IP": 1}
    # one example per source and type, with the span in its context
    assert [(e["source"], e["type"]) for e in r["examples"]] == [("chat", "PHONE"),
                                                                   ("net", "IP")]
    assert "555 0100" in r["examples"][0]["snippet"]


def test_benign_false_redactions_without_benign_rows() -> None:
    r = benign_false_redactions([{"text": "x", "label": "harmful"}], detect=_fake({}))
    assert r["n"] == 0 and r["per_100_prompts"] is None and r["by_source"] == {}
