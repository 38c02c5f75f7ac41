"""Policy presets shipped in the package (``default``, ``phi``) and the default PII types of a
policy that does not list them."""

from __future__ import annotations

import json
import tomllib
from importlib import resources
from pathlib import Path

import pytest

from edgeward.errors import PolicyError
from edgeward.safety import (
    DEFAULT_PII_TYPES,
    HAZARD_NAMES,
    PII_TYPES,
    POLICY_PRESETS,
    MemoryAuditSink,
    Pseudonyms,
    default_policy,
    load_filter,
    load_policy,
    policy_from_dict,
    preset_policy,
    resolve_policy,
)

POLICIES = resources.files("edgeward.safety") / "policies"
PATIENT = ("Summarise the visit for Mrs. Okonkwo, MRN: 00482913, DOB: 3/4/1957. Her daughter "
           "can be reached at ngozi.okonkwo@example.org or 555-201-8899.")
VALUES = ("Okonkwo", "00482913", "3/4/1957", "ngozi.okonkwo@example.org", "555-201-8899")


def test_every_shipped_policy_file_is_a_preset_and_back() -> None:
    files = sorted(p.name.removesuffix(".toml") for p in POLICIES.iterdir()
                   if p.name.endswith(".toml"))
    assert files == sorted(POLICY_PRESETS)
    for name in POLICY_PRESETS:
        p = preset_policy(name)
        assert p.name == name and p.source == f"<{name}>" and p.digest.startswith("sha256:")


def test_an_unknown_preset_names_the_presets() -> None:
    for unknown in (lambda: preset_policy("hipaa"), lambda: load_filter("hipaa")):
        with pytest.raises(PolicyError, match=r"no policy preset 'hipaa'.*default, phi"):
            unknown()
    with pytest.raises(PolicyError, match="no such file"):  # a path is a file, never a preset
        resolve_policy("./phi")


def test_a_policy_without_types_keeps_the_ten_types_it_always_had() -> None:
    omitted = policy_from_dict({"policy": {"name": "site"}})
    assert omitted.pii_types == DEFAULT_PII_TYPES
    assert "DATE" not in omitted.pii_types and "URL" not in omitted.pii_types
    assert set(DEFAULT_PII_TYPES) < set(PII_TYPES)


def test_the_default_policy_is_unchanged() -> None:
    p = default_policy()
    data = tomllib.loads((POLICIES / "default.toml").read_text())
    assert tuple(data["pii"]["types"]) == DEFAULT_PII_TYPES == p.pii_types
    assert not p.pseudonyms and p.action_for("S6") == "block"
    assert load_filter("default").check(PATIENT).redacted_text == (
        "Summarise the visit for Mrs. [NAME], MRN: [MRN], DOB: [DOB]. Her daughter "
        "can be reached at [EMAIL] or [PHONE].")


def test_every_pii_type_defaults_to_redact() -> None:
    p = policy_from_dict({})
    assert all(p.action_for(t) == "redact" for t in PII_TYPES)


def test_phi_redacts_every_type_in_prompts_and_outputs() -> None:
    p = preset_policy("phi")
    assert set(p.pii_types) == set(PII_TYPES)  # a new type must be decided on here too
    assert set(p.pii_stages) == {"prompt", "output"}
    assert all(p.action_for(t) == "redact" for t in PII_TYPES)
    assert p.pseudonyms and not p.log_text and not p.log_redacted_text
    assert p.action_for("S6") == "allow"  # clinical deployments ask for clinical advice
    assert all(p.action_for(h) == "block" for h in HAZARD_NAMES if h != "S6")
    assert p.action_for("injection") == p.action_for("jailbreak") == "block"


def test_phi_loads_by_name_and_redacts() -> None:
    flt = load_filter("phi")
    assert flt.policy == preset_policy("phi")
    v = flt.check(PATIENT, pseudonyms=Pseudonyms())
    assert v.action == "redact", v.categories
    assert {"NAME", "MRN", "DOB", "EMAIL", "PHONE"} <= {s.type for s in v.spans}
    assert v.redacted_text is not None
    assert not any(value in v.redacted_text for value in VALUES)
    assert "[MRN_1]" in v.redacted_text and "[EMAIL_1]" in v.redacted_text


def test_a_copy_of_phi_is_an_ordinary_policy_file(tmp_path: Path) -> None:
    copy = tmp_path / "phi.toml"
    copy.write_bytes((POLICIES / "phi.toml").read_bytes())
    p = load_policy(copy)
    assert p.to_dict() | {"source": ""} == preset_policy("phi").to_dict() | {"source": ""}
    assert load_filter(str(copy)).policy.source == str(copy)  # a str path is a file
    assert resolve_policy(copy).source == str(copy) and resolve_policy("phi").source == "<phi>"


def test_phi_audit_records_hold_no_values() -> None:
    audit = MemoryAuditSink()
    flt = load_filter("phi", audit=audit, hmac_key=b"k" * 32)
    p = Pseudonyms()
    flt.check(PATIENT, stage="prompt", pseudonyms=p,
              context={"request_id": "r-1", "note": PATIENT})  # an unknown key is dropped
    stream = flt.output_stream(pseudonyms=p, context={"request_id": "r-1"})
    answer = "I will call 555-201-8899 and write to ngozi.okonkwo@example.org today."
    for i in range(0, len(answer), 2):
        stream.feed(answer[i:i + 2])
    stream.finish()
    assert {r["stage"] for r in audit.records} == {"prompt", "output"}
    dumped = json.dumps(audit.records)
    for value in (*VALUES, "Okonkwo".lower(), "8899", "_1]", "redacted_text", '"text"'):
        assert value not in dumped, value
    assert all(r["policy"]["name"] == "phi" for r in audit.records)
