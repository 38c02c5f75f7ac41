"""The provenance commands: the stable --json interface, exit codes, one-line errors."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from _prov_helpers import GOLDEN_FILES

from edgeward.cli import main
from edgeward.provenance import TamperEvidentLog, load_private_key


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def _keys(capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str,
          key_type: str = "ed25519") -> dict[str, str]:
    code, out, _ = run(capsys, "keys", "generate", "--out", str(tmp_path / "keys"), "--name",
                       name, "--type", key_type, "--json")
    assert code == 0
    return json.loads(out)


def test_keys_generate_json_interface(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    d = _keys(capsys, tmp_path, "pub", "ecdsa-p256")
    assert {"key_id", "public_key_path", "private_key_path"} <= set(d)
    assert stat.S_IMODE(Path(d["private_key_path"]).stat().st_mode) == 0o600
    assert load_private_key(Path(d["private_key_path"])).key_id == d["key_id"]
    code, out, err = run(capsys, "keys", "generate", "--out", str(tmp_path / "keys"),
                         "--name", "pub", "--json")
    assert code == 3 and "already exists" in err and err.count("\n") == 1
    assert json.loads(out)["error"] == "config_error"


def test_sign_verify_round_trip_and_failure(capsys: pytest.CaptureFixture[str],
                                            artifact_dir: Path, tmp_path: Path) -> None:
    k = _keys(capsys, tmp_path, "release")
    trust = str(tmp_path / "trust")
    code, out, _ = run(capsys, "keys", "trust", k["public_key_path"], "--trust", trust,
                       "--role", "publisher", "--name", "release", "--json")
    assert code == 0 and json.loads(out)["roles"] == ["publisher"]
    code, out, _ = run(capsys, "sign", str(artifact_dir), "--key", k["private_key_path"],
                       "--intended-use", "tests", "--json")
    assert code == 0
    signed = json.loads(out)
    assert signed["envelope_path"] == str(artifact_dir) + ".edgeward.json"
    assert [s["name"] for s in signed["subjects"]] == sorted(GOLDEN_FILES)
    assert all(len(s["sha256"]) == 64 for s in signed["subjects"])

    code, out, _ = run(capsys, "verify", str(artifact_dir), "--trust", trust, "--json")
    assert code == 0
    v = json.loads(out)
    assert v["verified"] is True and v["key_id"] == k["key_id"]
    assert v["subjects"] == signed["subjects"]

    (artifact_dir / "model.onnx_data").write_bytes(b"evil")
    code, out, err = run(capsys, "verify", str(artifact_dir), "--trust", trust, "--json")
    assert code == 5
    assert json.loads(out) == {"verified": False, "error": "digest_mismatch_error",
                               "detail": json.loads(out)["detail"]}
    assert "model.onnx_data" in json.loads(out)["detail"]
    assert err.startswith("edgeward: error: ") and err.count("\n") == 1
    code, out, err = run(capsys, "verify", str(artifact_dir), "--trust", trust)
    assert code == 5 and out == "" and "model.onnx_data" in err

    code, _, err = run(capsys, "sign", str(artifact_dir), "--key", k["private_key_path"])
    assert code == 3 and "--force" in err


def test_keys_list_revoke_rotate(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                 artifact_dir: Path) -> None:
    old, new = _keys(capsys, tmp_path, "old"), _keys(capsys, tmp_path, "new")
    trust = str(tmp_path / "trust")
    run(capsys, "keys", "trust", old["public_key_path"], "--trust", trust, "--role",
        "publisher")
    code, out, _ = run(capsys, "keys", "rotate", "--trust", trust, "--key",
                       old["private_key_path"], "--new", new["public_key_path"], "--json")
    assert code == 0 and json.loads(out)["roles"] == ["publisher"]
    code, out, _ = run(capsys, "keys", "revoke", old["key_id"][:12], "--trust", trust,
                       "--key", old["private_key_path"], "--reason", "retired", "--json")
    assert code == 0 and json.loads(out)["key_id"] == old["key_id"]
    code, out, _ = run(capsys, "keys", "list", "--trust", trust, "--json")
    listed = {k["key_id"]: k for k in json.loads(out)}
    assert listed[old["key_id"]]["revoked"] is True
    assert listed[new["key_id"]]["rotated_from"] == old["key_id"]
    code, out, _ = run(capsys, "keys", "list", "--trust", trust)
    assert code == 0 and "revoked" in out

    run(capsys, "sign", str(artifact_dir), "--key", old["private_key_path"], "--json")
    code, out, _ = run(capsys, "verify", str(artifact_dir), "--trust", trust, "--json")
    assert code == 5 and json.loads(out)["error"] == "revoked_key_error"
    run(capsys, "sign", str(artifact_dir), "--key", new["private_key_path"], "--force")
    code, out, _ = run(capsys, "verify", str(artifact_dir), "--trust", trust, "--json")
    assert code == 0 and json.loads(out)["key_id"] == new["key_id"]
    code, out, _ = run(capsys, "card", str(artifact_dir), "--trust", trust, "--json")
    assert code == 0 and json.loads(out)["verified"] is True
    assert "## Provenance chain" in json.loads(out)["markdown"]


def test_verify_unsigned_and_missing_trust(capsys: pytest.CaptureFixture[str],
                                           artifact_dir: Path, tmp_path: Path) -> None:
    k = _keys(capsys, tmp_path, "k")
    trust = str(tmp_path / "trust")
    run(capsys, "keys", "trust", k["public_key_path"], "--trust", trust, "--role", "device")
    code, out, _ = run(capsys, "verify", str(artifact_dir), "--trust", trust, "--json")
    assert code == 5 and json.loads(out)["error"] == "unsigned_artifact_error"
    code, out, _ = run(capsys, "verify", str(artifact_dir), "--trust", str(tmp_path / "no"),
                       "--json")
    assert code == 3 and json.loads(out)["verified"] is False
    code, _, err = run(capsys, "keys", "trust", k["public_key_path"], "--trust", trust)
    assert code == 3 and "--role" in err


def test_verify_log_exit_codes(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    with TamperEvidentLog(log) as w:
        for i in range(3):
            w.append("event", {"i": i})
    code, out, _ = run(capsys, "verify-log", str(log), "--json")
    assert code == 0 and json.loads(out)["ok"] is True and json.loads(out)["entries"] == 3
    lines = log.read_bytes().splitlines()
    log.write_bytes(b"\n".join([lines[0], lines[2], lines[1]]) + b"\n")
    code, out, err = run(capsys, "verify-log", str(log), "--json")
    assert code == 5
    report = json.loads(out)
    assert report["ok"] is False and report["problems"][0]["kind"] == "reordered"
    assert "reordered" in err and err.count("\n") == 1


def test_sign_oms_via_the_cli_and_option_checks(capsys: pytest.CaptureFixture[str],
                                                artifact_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("model_signing")
    k = _keys(capsys, tmp_path, "ec", "ecdsa-p256")
    trust = str(tmp_path / "trust")
    run(capsys, "keys", "trust", k["public_key_path"], "--trust", trust, "--role", "publisher")
    code, _, err = run(capsys, "sign", str(artifact_dir), "--key", k["private_key_path"],
                       "--format", "oms", "--intended-use", "x")
    assert code == 3 and "--intended-use" in err and "--format dsse" in err
    code, out, _ = run(capsys, "sign", str(artifact_dir), "--key", k["private_key_path"],
                       "--format", "oms", "--json")
    assert code == 0 and json.loads(out)["envelope_path"].endswith(".oms.sig")
    code, out, _ = run(capsys, "verify", str(artifact_dir), "--trust", trust, "--json")
    assert code == 0 and json.loads(out)["format"] == "oms"


def test_card_out_and_statement_import(capsys: pytest.CaptureFixture[str],
                                       artifact_dir: Path, tmp_path: Path) -> None:
    k = _keys(capsys, tmp_path, "k")
    op = _keys(capsys, tmp_path, "op")
    trust, device = str(tmp_path / "trust"), str(tmp_path / "device-trust")
    for store in (trust, device):
        run(capsys, "keys", "trust", k["public_key_path"], "--trust", store, "--role",
            "publisher")
        run(capsys, "keys", "trust", op["public_key_path"], "--trust", store, "--role",
            "operator")
    run(capsys, "sign", str(artifact_dir), "--key", k["private_key_path"], "--licence",
        "Apache-2.0", "--source-name", "tiny")
    md = tmp_path / "card.md"
    code, out, _ = run(capsys, "card", str(artifact_dir), "--out", str(md), "--json")
    assert code == 0 and md.read_text() == json.loads(out)["markdown"]
    assert "| licence | Apache-2.0 |" in md.read_text()
    code, out, _ = run(capsys, "card", str(artifact_dir))
    assert code == 0 and out.startswith("# Model card: model-onnx")
    # A revocation signed by the operator, carried to another store as a file, applies there.
    code, out, _ = run(capsys, "keys", "revoke", k["key_id"], "--trust", trust, "--key",
                       op["private_key_path"], "--json")
    assert code == 0
    code, out, _ = run(capsys, "keys", "trust", json.loads(out)["revocation_path"],
                       "--trust", device, "--json")
    assert code == 0 and json.loads(out)["key_id"] == k["key_id"]
    code, out, _ = run(capsys, "verify", str(artifact_dir), "--trust", device, "--json")
    assert code == 5 and json.loads(out)["error"] == "revoked_key_error"
