"""`edgeward behaviour fingerprint/check`, and the fingerprint inside `sign`/`verify`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from _models import scaled_copy
from edgeward.cli import main
from edgeward.provenance import Envelope, Statement


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def art(tiny_gguf: Path, tmp_path: Path) -> Path:
    path = tmp_path / "tiny.gguf"
    shutil.copyfile(tiny_gguf, path)
    return path


@pytest.fixture
def keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, Path]:
    assert run(capsys, "keys", "generate", "--out", str(tmp_path / "k"), "--name", "pub")[0] == 0
    assert run(capsys, "keys", "trust", str(tmp_path / "k" / "pub.pub"), "--trust",
               str(tmp_path / "trust"), "--role", "publisher")[0] == 0
    return tmp_path / "k" / "pub.key", tmp_path / "trust"


def test_fingerprint_and_check_as_the_interface_says(art: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "behaviour", "fingerprint", str(art), "--json")
    assert code == 0
    made = json.loads(out)
    assert made["fingerprint"] == str(art) + ".behaviour.json"
    assert made["probes"] == 9 and made["threshold"] > 0 and made["calibration_runs"] >= 5
    code, out, _ = run(capsys, "behaviour", "check", str(art), "--fingerprint",
                       made["fingerprint"], "--json")
    assert code == 0
    result = json.loads(out)
    assert result["status"] == "ok" and result["distance"] <= result["threshold"]
    assert result["top1_agreement"] == 1.0


def test_check_exits_10_on_drift(art: Path, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "behaviour", "fingerprint", str(art), "--no-calibrate")[0] == 0
    changed = scaled_copy(art, tmp_path / "changed.gguf", "output.weight", 1.02)
    code, out, err = run(capsys, "behaviour", "check", str(changed), "--fingerprint",
                         str(art) + ".behaviour.json", "--json")
    assert code == 10
    result = json.loads(out)
    assert result["status"] == "drift" and result["reasons"]
    assert "drifted" in err and "Traceback" not in err
    code, out, _ = run(capsys, "behaviour", "check", str(changed), "--fingerprint",
                       str(art) + ".behaviour.json")
    assert code == 10 and "DRIFT" in out
    assert all(len(line) <= 80 for line in out.splitlines())


def test_sign_signs_the_fingerprint_and_verify_checks_it(
        art: Path, keys: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    key, trust = keys
    code, out, _ = run(capsys, "sign", str(art), "--key", str(key), "--json")
    assert code == 0
    signed = json.loads(out)
    fp = art.with_name(art.name + ".behaviour.json")
    assert signed["fingerprint"] == str(fp) and fp.is_file()
    assert [s["name"] for s in signed["subjects"]] == [art.name]  # the artifact's own files
    env = Envelope.from_json(art.with_name(art.name + ".edgeward.json").read_bytes())
    statement = Statement.from_dict(json.loads(env.payload))
    assert statement.fingerprint_subject is not None
    assert statement.fingerprint_subject.name == fp.name
    assert statement.predicate["behaviour"]["probe_set"]["id"] == "edgeward-probes/1"
    assert [s.name for s in statement.artifact_subjects] == [art.name]

    code, out, _ = run(capsys, "verify", str(art), "--trust", str(trust), "--json")
    assert code == 0 and json.loads(out)["fingerprint_state"] == "verified"
    code, out, _ = run(capsys, "behaviour", "check", str(art), "--signature",
                       str(art) + ".edgeward.json", "--trust", str(trust), "--json")
    assert code == 0 and json.loads(out)["signed"] is True

    raw = bytearray(fp.read_bytes())
    raw[raw.index(b'"top_k":') + 8] = ord("9")
    fp.write_bytes(bytes(raw))
    code, out, err = run(capsys, "verify", str(art), "--trust", str(trust), "--json")
    assert code == 5 and "fingerprint does not match" in err
    code, _, err = run(capsys, "behaviour", "check", str(art), "--signature",
                       str(art) + ".edgeward.json", "--trust", str(trust))
    assert code == 5 and "Traceback" not in err
    fp.unlink()
    code, out, _ = run(capsys, "verify", str(art), "--trust", str(trust), "--json")
    assert code == 0 and json.loads(out)["fingerprint_state"] == "absent"


def test_sign_reuses_a_fingerprint_of_these_bytes_only(
        art: Path, keys: tuple[Path, Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    key, _ = keys
    assert run(capsys, "behaviour", "fingerprint", str(art), "--no-calibrate")[0] == 0
    code, out, _ = run(capsys, "sign", str(art), "--key", str(key), "--json")
    assert code == 0 and "reused" in json.loads(out)["fingerprint_note"]
    other = scaled_copy(art, tmp_path / "other.gguf", "output.weight", 1.5)
    code, _, err = run(capsys, "sign", str(other), "--key", str(key), "--fingerprint",
                       str(art) + ".behaviour.json")
    assert code == 3 and "made from other bytes" in err


def test_sign_without_a_fingerprint(art: Path, keys: tuple[Path, Path],
                                    capsys: pytest.CaptureFixture[str]) -> None:
    key, trust = keys
    code, out, _ = run(capsys, "sign", str(art), "--key", str(key), "--no-fingerprint", "--json")
    assert code == 0 and json.loads(out)["fingerprint"] is None
    assert not art.with_name(art.name + ".behaviour.json").exists()
    code, out, _ = run(capsys, "verify", str(art), "--trust", str(trust), "--json")
    assert code == 0 and json.loads(out)["fingerprint_state"] == "unsigned"
    code, _, err = run(capsys, "sign", str(art), "--key", str(key), "--force",
                       "--no-fingerprint", "--fingerprint", str(art))
    assert code == 3 and "contradict" in err
