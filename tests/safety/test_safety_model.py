"""The shipped classifier: loads, is small, and records what it was trained on."""

from __future__ import annotations

from pathlib import Path

from edgeward.safety._classifier import LABELS, default_model, model_dir
from edgeward.safety.train import read_rows, train_split_digest


def test_shipped_model_loads_and_is_small() -> None:
    m = default_model()
    assert m.weights.shape == (2**m.features.bits, len(LABELS))
    size = sum(p.stat().st_size for p in model_dir().iterdir())
    assert size < 4 * 2**20
    assert 0.3 <= m.threshold <= 0.95
    rec = m.record
    assert rec["data"]["split"] == "train"
    assert rec["training"]["l2"] > 0 and rec["training"]["iterations"] > 0
    assert set(rec["dev"]["recall"]) == {"harmful", "jailbreak", "injection"}


def test_recorded_digest_matches_the_train_split(shared_data: Path) -> None:
    rows = read_rows(shared_data / "safety" / "prompts.jsonl")
    rec = default_model().record["data"]
    assert rec["train_digest"] == train_split_digest(rows)
    assert sum(rec["train_rows"].values()) == sum(r["split"] == "train" for r in rows)
    assert rec["dev_rows"] == {lab: sum(r["split"] == "dev" and r["label"] == lab for r in rows)
                               for lab in rec["dev_rows"]}


def test_no_shared_file_is_in_the_package() -> None:
    names = {p.name for p in model_dir().parent.rglob("*") if p.is_file()}
    assert not names & {"prompts.jsonl", "pii.jsonl", "copyright.jsonl", "SOURCES.md"}
