"""Model cards from the signed statement and the compression report; completeness score."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _prov_helpers import fixed_statement

from edgeward.errors import ConfigError, DigestMismatchError, UnsignedArtifactError
from edgeward.provenance import (
    PrivateKey,
    TrustStore,
    build_statement,
    model_card,
    render_card,
    sign_artifact,
)
from edgeward.provenance._card import COMPLETENESS_FIELDS

# The shape the compression package writes (ARTIFACT.report.json).
REPORT = {
    "report_version": 1, "artifact": "m.gguf", "size_bytes": 90_000_000, "bpw": 4.85,
    "type": "Q4_K_M", "recipe": {"type": "Q4_K_M", "imatrix": None},
    "fallback_tensors": [{"name": "token_embd.weight", "wanted": "Q4_K", "got": "Q5_0"}],
    "quality": {"ppl": 22.1, "ppl_ref": 20.9, "kld_mean": 0.051, "kld_p99": 0.62,
                "top1_agreement": 0.87, "eval_tokens": 2048},
    "memory": {"context": 2048, "profile": "raspberry-pi-5-8gb", "fits": True},
    "source": {"path": "/models/SmolLM2-135M-Instruct.Q4_1.gguf", "sha256": "cd" * 32,
               "license": "Apache-2.0", "architecture": "llama"},
    "tools": {"edgeward": "0.1.0", "llama-cpp-python": "0.3.16"},
    "created_at": "2025-03-01T10:00:00+00:00",
}


def test_full_statement_gives_a_complete_card(artifact_dir: Path) -> None:
    card = render_card(fixed_statement(artifact_dir), artifact="model-onnx", signer="ab" * 32)
    md = card.markdown
    for section in ("## Intended use", "## Limitations", "## Quality", "## Hardware profile",
                    "## Safety-filter policy", "## Provenance chain",
                    "## Documentation completeness"):
        assert section in md
    assert "Offline assistant on kiosks." in md and "- No medical advice" in md
    assert "| kld_mean | 0.0123 |" in md and "| top1_agreement | 0.91 |" in md
    assert "raspberry-pi-5-8gb" in md and "edgeward-default-v1" in md and "Apache-2.0" in md
    assert "`tokenizer/tokenizer.json` sha256" in md
    assert card.completeness.missing == ()
    assert card.completeness.score == 1.0


def test_report_fills_what_the_statement_lacks(tmp_path: Path) -> None:
    art = tmp_path / "m.gguf"
    art.write_bytes(b"GGUF" + bytes(100))
    statement = build_statement(art, report=REPORT)
    pred = statement.provenance()
    assert pred.source_model is not None and pred.source_model.sha256 == "cd" * 32
    assert pred.source_model.licence == "Apache-2.0"
    assert pred.started_at == "2025-03-01T10:00:00Z"
    assert pred.hardware_profile == {"name": "raspberry-pi-5-8gb", "context": 2048}
    assert pred.tool_versions["llama-cpp-python"] == "0.3.16"  # the build's, not ours
    card = render_card(statement, artifact="m.gguf", report=REPORT)
    assert "| ppl | 22.1 |" in card.markdown and "| bpw | 4.85 |" in card.markdown
    assert card.completeness.missing == ("intended_use", "limitations", "safety_policy",
                                         "signature_verified")
    assert card.completeness.score == pytest.approx(9 / len(COMPLETENESS_FIELDS))


def test_card_from_disk_tolerates_a_missing_report_and_verifies_on_request(
        artifact_dir: Path, publisher_key: PrivateKey, store: TrustStore) -> None:
    sign_artifact(artifact_dir, publisher_key, statement=fixed_statement(artifact_dir))
    unverified = model_card(artifact_dir)
    assert not unverified.verified and "signature_verified" in unverified.completeness.missing
    assert "no compression report found" in unverified.markdown
    verified = model_card(artifact_dir, trust_store=store)
    assert verified.verified and verified.completeness.score == 1.0
    assert publisher_key.key_id in verified.markdown
    (artifact_dir / "model.onnx").write_bytes(b"tampered")
    with pytest.raises(DigestMismatchError):
        model_card(artifact_dir, trust_store=store)


def test_report_next_to_the_artifact_is_read(tmp_path: Path, publisher_key: PrivateKey) -> None:
    art = tmp_path / "m.gguf"
    art.write_bytes(b"GGUF" + bytes(10))
    (tmp_path / "m.gguf.report.json").write_text(json.dumps(REPORT))
    sign_artifact(art, publisher_key)  # the statement takes the report's fields
    card = model_card(art)
    assert "and the compression report" in card.markdown
    assert "sha256 `" + "cd" * 32 in card.markdown
    (tmp_path / "m.gguf.report.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        model_card(art)


def test_card_without_a_signature_is_refused(tmp_path: Path) -> None:
    art = tmp_path / "m.gguf"
    art.write_bytes(b"x")
    with pytest.raises(UnsignedArtifactError):
        model_card(art)
