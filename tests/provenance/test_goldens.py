"""Byte-exact canonical statements and envelopes, against goldens/ (fixed key, fixed times)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from _prov_helpers import GOLDEN_FILES, fixed_statement

from edgeward.provenance import (
    IN_TOTO_PAYLOAD_TYPE,
    PREDICATE_TYPE,
    Envelope,
    PrivateKey,
    Statement,
    TrustStore,
    sign_artifact,
    verify_artifact,
)
from edgeward.provenance._verify import ENVELOPE_SUFFIX


def test_canonical_statement_bytes_match_the_golden(
        artifact_dir: Path, golden: Callable[[str, bytes], None]) -> None:
    data = fixed_statement(artifact_dir).canonical_bytes()
    # Canonical: sorted keys, no insignificant whitespace, UTF-8; re-serialising is a no-op.
    assert b"\n" not in data and b'": ' not in data and b", " not in data.split(b'"quality"')[1]
    assert json.dumps(json.loads(data), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode() == data
    golden("statement.canonical.json", data)


def test_statement_shape_is_in_toto_v1_with_the_edgeward_predicate(artifact_dir: Path) -> None:
    d = fixed_statement(artifact_dir).to_dict()
    assert d["_type"] == "https://in-toto.io/Statement/v1"
    assert d["predicateType"] == PREDICATE_TYPE == "https://edgeward.dev/provenance/v1"
    assert [s["name"] for s in d["subject"]] == sorted(GOLDEN_FILES)
    pred = d["predicate"]
    assert pred["source_model"]["digest"] == {"sha256": "ab" * 32}
    assert pred["timestamps"] == {"started_at": "2025-01-01T00:00:00Z",
                                  "finished_at": "2025-01-01T00:05:00Z"}
    assert {"edgeward", "llama-cpp-python", "onnxruntime"} <= set(pred["tool_versions"])
    assert pred["builder"]["id"] == "ci@edgeward.invalid"
    assert Statement.from_dict(d) == fixed_statement(artifact_dir)


def test_envelope_matches_the_golden_and_verifies(
        artifact_dir: Path, publisher_key: PrivateKey, store: TrustStore,
        golden: Callable[[str, bytes], None]) -> None:
    signed = sign_artifact(artifact_dir, publisher_key, statement=fixed_statement(artifact_dir))
    assert signed.envelope_path == artifact_dir.with_name(artifact_dir.name + ENVELOPE_SUFFIX)
    data = signed.envelope_path.read_bytes()
    golden("envelope.ed25519.json", data)
    env = Envelope.from_json(data)
    assert env.payload_type == IN_TOTO_PAYLOAD_TYPE
    assert env.signatures[0].keyid == publisher_key.key_id
    assert verify_artifact(artifact_dir, signed.envelope_path, store).key_id == \
        publisher_key.key_id
