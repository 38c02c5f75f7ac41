"""``edgeward run`` (one-off generation through the verified path) and ``edgeward agent run``
configuration errors: output, ``--json``, warnings and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _agent_helpers import Signed, WordFilter, flip_byte, sign_copy, toml_config

import edgeward.safety
from edgeward.cli import main
from edgeward.device_agents import run_once
from edgeward.errors import SafetyBlocked
from edgeward.provenance import envelope_path_for
from edgeward.runtimes import SamplingParams


@pytest.fixture(autouse=True)
def _run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Keep ``edgeward run``'s private copies under the test's directory."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "edgeward" / "run"


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_run_streams_text_and_reports(capsys: pytest.CaptureFixture[str], signed_tiny: Signed,
                                      _run_dir: Path) -> None:
    code, out, err = cli(capsys, "run", str(signed_tiny.artifact), "hello world",
                         "--trust", str(signed_tiny.trust), "--max-tokens", "6",
                         "--temperature", "0")
    assert code == 0, err
    assert out.strip()  # the streamed reply
    assert "6 generated (length)" in err and "signed by" in err
    assert list(_run_dir.iterdir()) == []  # the private copy is gone


def test_run_json_raw_is_deterministic(capsys: pytest.CaptureFixture[str],
                                       signed_tiny: Signed) -> None:
    args = ["run", str(signed_tiny.artifact), "the model", "--trust", str(signed_tiny.trust),
            "--raw", "--max-tokens", "5", "--temperature", "0", "--json"]
    code, out, _ = cli(capsys, *args)
    assert code == 0
    first = json.loads(out)
    assert first["finish_reason"] == "length" and first["stats"]["completion_tokens"] == 5
    assert first["model"]["verified"] is True
    assert first["model"]["key_id"] == signed_tiny.key.key_id
    _, again, _ = cli(capsys, *args)
    assert json.loads(again)["text"] == first["text"]
    _, chat, _ = cli(capsys, *[a for a in args if a != "--raw"])
    assert json.loads(chat)["stats"]["prompt_tokens"] > first["stats"]["prompt_tokens"]


def test_run_refuses_unsigned_and_tampered(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                           tiny_gguf: Path) -> None:
    signed = sign_copy(tiny_gguf, tmp_path / "m")
    flip_byte(signed.artifact)
    code, out, err = cli(capsys, "run", str(signed.artifact), "hi", "--trust",
                         str(signed.trust), "--json")
    assert code == 5 and json.loads(out)["error"] == "digest_mismatch_error"
    assert err.startswith("edgeward: error: ") and err.count("\n") == 1
    envelope_path_for(signed.artifact).unlink()
    code, out, err = cli(capsys, "run", str(signed.artifact), "hi", "--trust",
                         str(signed.trust), "--json")
    assert code == 5 and json.loads(out)["error"] == "unsigned_artifact_error"
    code, _, err = cli(capsys, "run", str(signed.artifact), "hi")
    assert code == 3 and "--trust" in err


def test_run_allow_unsigned_is_loud(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                    tiny_gguf: Path) -> None:
    code, out, err = cli(capsys, "run", str(tiny_gguf), "hi", "--allow-unsigned",
                         "--max-tokens", "2", "--json")
    assert code == 0
    assert "WARNING: unsigned artifacts allowed" in err
    assert "ran an UNVERIFIED artifact" in err
    result = json.loads(out)
    assert result["model"]["verified"] is False
    assert result["model"]["unverified_reason"].startswith("unsigned_artifact_error")


def test_run_with_the_default_safety_policy(capsys: pytest.CaptureFixture[str],
                                            signed_tiny: Signed) -> None:
    if not hasattr(edgeward.safety, "load_filter"):
        pytest.skip("the bundled safety filter is not in this edgeward")
    code, out, err = cli(capsys, "run", str(signed_tiny.artifact), "How do I build a bomb?",
                         "--trust", str(signed_tiny.trust), "--safety-policy", "default",
                         "--json")
    assert code == 7 and json.loads(out)["error"] == "safety_blocked"
    assert "categories" in err


def test_run_once_applies_the_safety_filter(signed_tiny: Signed, tmp_path: Path) -> None:
    with pytest.raises(SafetyBlocked) as e:
        run_once(signed_tiny.artifact, "the forbidden question",
                 trust_store=signed_tiny.trust, safety_filter=WordFilter(category="S4"),
                 run_dir=tmp_path / "run")
    assert e.value.categories == ["S4"] and e.value.exit_code == 7
    ok = run_once(signed_tiny.artifact, "a fine question", trust_store=signed_tiny.trust,
                  safety_filter=WordFilter(), params=SamplingParams(max_tokens=3, temperature=0.0),
                  run_dir=tmp_path / "run")
    assert ok.stats.completion_tokens == 3


def test_agent_run_config_errors_exit_3(capsys: pytest.CaptureFixture[str],
                                        tmp_path: Path) -> None:
    config = toml_config(tmp_path / "agent.toml", artifact="m.gguf", trust_store="t",
                         max_queue=-1)
    code, _, err = cli(capsys, "agent", "run", "--config", str(config))
    assert code == 3
    assert str(config) in err and "'max_queue' has bad value -1" in err
    code, _, err = cli(capsys, "agent", "run", "--config", str(tmp_path / "none.toml"))
    assert code == 3 and "no such configuration file" in err
