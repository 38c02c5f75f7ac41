"""edgeward's own look-alike training rows: deterministic, mostly benign, unlike the test cases."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from test_safety_attacks import ALLOW as ATTACK_ALLOW
from test_safety_generalise import ALLOW as GENERALISE_ALLOW

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "safety_look_alikes.py"


def _module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("safety_look_alikes", SCRIPT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["safety_look_alikes"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_rows_are_deterministic_unique_and_benign() -> None:
    mod = _module()
    rows = mod.rows()
    assert rows == mod.rows()
    assert len(rows) >= 300
    assert len({r["text"] for r in rows}) == len(rows)
    assert {r["label"] for r in rows} == {"benign", "harmful"}
    assert sum(r["label"] == "benign" for r in rows) > 2 * sum(r["label"] == "harmful"
                                                              for r in rows)
    assert {r["split"] for r in rows} == {"train"}
    assert {r["category"] for r in rows} == set(mod.SENSES)
    # every harmful phrasing is also a benign one: the phrasing says nothing about the label
    forms = {r["text"].split(" ")[0] for r in rows if r["label"] == "harmful"}
    assert forms <= {r["text"].split(" ")[0] for r in rows if r["label"] == "benign"}


def test_no_named_test_case_is_a_training_row() -> None:
    texts = {r["text"].lower() for r in _module().rows()}
    for case in [*ATTACK_ALLOW.values(), *GENERALISE_ALLOW.values()]:
        text = case if isinstance(case, str) else case.values[0]  # a pytest.param
        assert str(text).lower() not in texts
