"""Person names: the shipped token model on sentences written for these tests."""

from __future__ import annotations

import json

import pytest

from edgeward.errors import ConfigError
from edgeward.safety import find_pii
from edgeward.safety._names import MODEL_DIR, NameModel, default_name_model, find_names, tokens
from edgeward.safety._scan import Scan


def _names(text: str) -> list[str]:
    return [text[s.start:s.end] for s in find_pii(text, ("NAME",))]


@pytest.mark.parametrize(("text", "name"), [
    ("Pt Rosalind Achterberg was seen today for a follow-up.", "Rosalind Achterberg"),
    ("The discharge summary was signed by Dr. Nnamdi Okafor.", "Nnamdi Okafor"),
    ("Please ask Siobhan O'Brien to call the ward.", "Siobhan O'Brien"),
    ("Her sister, Anna-Lena Vogt-Berger, brought the forms.", "Anna-Lena Vogt-Berger"),
    ("We met Willem van der Merwe at the clinic.", "Willem van der Merwe"),
    ("The consent was witnessed by María de la Cruz.", "María de la Cruz"),
    ("Referred by Ms. Takahashi from cardiology.", "Takahashi"),
    ("Thanks,\nPriyanka Raghunathan", "Priyanka Raghunathan"),
])
def test_names_in_mixed_case_text(text: str, name: str) -> None:
    assert name in _names(text)


@pytest.mark.parametrize(("text", "name"), [
    ("spoke to jennifer martinez about the bill yesterday", "jennifer martinez"),
    ("PATIENT ROBERT JOHNSON ADMITTED TO WARD 4", "ROBERT JOHNSON"),
])
def test_lower_case_and_all_caps_text_lean_on_the_lexicons(text: str, name: str) -> None:
    found = _names(text)
    assert any(name in f or f in name for f in found), found


@pytest.mark.parametrize("text", [
    "Will it rain in Seattle on Monday?",
    "May I ask how the kernel schedules threads?",
    "Grant read access to the shared folder.",
    "How do I kill a Python process that hangs?",
    "What are the treatments for chronic kidney disease?",
    "Install Docker and restart Kubernetes before the upgrade.",
])
def test_capitalised_ordinary_words_are_not_names(text: str) -> None:
    assert _names(text) == []


def test_the_word_grant_and_the_name_grant() -> None:
    assert _names("Please grant me access.") == []
    assert "Hugh Grant" in _names("I watched a film with Hugh Grant last night.")


def test_tokens_join_apostrophes_and_hyphens() -> None:
    words = [t.word for t in tokens(Scan("Jean-Luc O'Neill met d'Arcy"))]
    assert words == ["Jean-Luc", "O'Neill", "met", "d'Arcy"]


def test_a_custom_model_is_used_and_its_threshold_decides() -> None:
    model = default_name_model()
    text = "Rosalind Achterberg was seen today."
    never = NameModel(model.lexicon, model.weights, model.bias, threshold=1.01)
    assert find_names(Scan(text), never) == []
    assert find_names(Scan(text), model) != []


def test_the_record_names_its_data_and_threshold() -> None:
    record = json.loads((MODEL_DIR / "names.json").read_text(encoding="utf-8"))
    assert record["data"]["split"] == "train"
    assert record["data"]["pii"].startswith("sha256:")
    assert 0 < record["threshold"] < 1
    assert record["params"]["variants"] == ["orig", "lower", "upper"]


def test_a_missing_model_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match="name model cannot be read"):
        NameModel.load(tmp_path)


def test_the_default_policy_leaves_the_people_a_prompt_is_about_alone() -> None:
    from edgeward.safety import load_filter

    text = "Write a short biography of Ada Lovelace for my class."
    assert load_filter("default").check(text).action == "allow"
    phi = load_filter("phi").check(text)
    assert phi.action == "redact" and "Ada Lovelace" not in (phi.redacted_text or "")


def test_cued_names_are_found_in_both_modes() -> None:
    text = "Dear Mr. Okonkwo, your results are ready."
    for mode in ("cued", "model"):
        assert "Okonkwo" in [text[s.start:s.end] for s in find_pii(text, ("NAME",), names=mode)]


def test_an_unknown_name_mode_is_an_error() -> None:
    with pytest.raises(ConfigError, match="names='all'"):
        find_pii("x", ("NAME",), names="all")


def test_a_policy_names_mode_is_checked(tmp_path) -> None:
    from edgeward.safety import load_policy
    from edgeward.safety._policy import PolicyError

    bad = tmp_path / "p.toml"
    bad.write_text('[pii]\nnames = "everything"\n', encoding="utf-8")
    with pytest.raises(PolicyError, match=r"\[pii\] names = 'everything'"):
        load_policy(bad)


@pytest.mark.parametrize(("text", "kept"), [
    ("A 45-year-old man with chest pain.", True),
    ("A 92-year-old woman with a hip fracture.", False),
])
def test_age_over_keeps_the_ages_safe_harbor_allows(text: str, kept: bool) -> None:
    ages = [s for s in find_pii(text, ("AGE",), age_over=89)]
    assert (ages == []) is kept
    assert find_pii(text, ("AGE",))  # every age without the bound


def test_a_name_found_once_is_found_where_it_repeats() -> None:
    text = ("Mr. Achterberg was seen in clinic today. Achterberg reports a cough. "
            "Achterberg's daughter will call.")
    found = _names(text)
    assert sum("Achterberg" in f for f in found) == 3, found


def test_lower_case_names_in_mixed_text() -> None:
    assert "jennifer" in _names("Went to the mall with jennifer and then home. So tired!")


@pytest.mark.parametrize(("text", "kept"), [
    ("She is in her eighties and lives alone.", True),
    ("An octogenarian with a cough.", True),
    ("A man in his nineties with a fall.", False),
])
def test_age_over_reads_ages_written_as_words(text: str, kept: bool) -> None:
    assert (find_pii(text, ("AGE",), age_over=89) == []) is kept


def test_unknown_pii_types_are_an_error() -> None:
    with pytest.raises(ConfigError, match=r"unknown PII types \['FOO'\]"):
        find_pii("x", ["FOO"])


def test_a_text_full_of_dates_keeps_every_one() -> None:
    text = "March 4 " * 2000
    assert len(find_pii(text, ("DATE",))) == 2000


def test_an_overlong_word_is_not_scored() -> None:
    model = default_name_model()
    before = len(model.cache)
    long = "A" + "b" * 5000
    assert find_names(Scan(f"We met {long} and {long}x."), model) == []
    assert all(long.lower() not in k for k in list(model.cache)[before:])
