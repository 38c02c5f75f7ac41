"""Air-gap bundles: export on the publisher's side, import on a device with every socket
blocked, then the agent serves the imported slot (``artifact = "@slots"``); damaged bundles
and bundles from an untrusted publisher install nothing."""

from __future__ import annotations

import hashlib
import json
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest
from _agent_helpers import Signed, flip_byte, sign_copy

from edgeward.cli import main
from edgeward.device_agents import Agent, SlotStore, load_agent_config
from edgeward.provenance import Role, TrustStore, generate_key


def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every new connection fail, as on an air-gapped device."""
    def refuse(*_a: Any, **_k: Any) -> None:
        raise OSError("network unreachable (blocked by the test: air-gapped)")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _device(tmp: Path, publisher_trust: Path, *, trusted: bool = True) -> Path:
    """A device: its own trust store (trusting the publisher, or not) and an agent config."""
    device_trust = tmp / "device" / "trust"
    store = TrustStore.open(device_trust, create=True)
    if trusted:
        for k in TrustStore.open(publisher_trust).list_keys():
            store.add(k.key, k.roles, name=k.name)
    else:
        store.add(generate_key().public_key, [Role.PUBLISHER], name="someone else")
    config = tmp / "device" / "agent.toml"
    config.write_text(f'artifact = "@slots"\ntrust_store = "{device_trust}"\n'
                      f'state_dir = "{tmp / "device" / "state"}"\nlisten = "127.0.0.1:0"\n'
                      'safety_policy = "default"\n')
    return config


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, Any]:
    capsys.readouterr()
    code = main(argv)
    text = capsys.readouterr().out
    return code, json.loads(text) if text.strip() else None


def test_export_then_import_offline_and_serve_the_slot(
        tmp_path: Path, signed_tiny: Signed, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    code, exported = _run(["bundle", "export", str(signed_tiny.artifact), "--to",
                           str(tmp_path / "stick"), "--trust", str(signed_tiny.trust),
                           "--json"], capsys)
    assert code == 0 and exported["artifact"] == signed_tiny.artifact.name
    manifest = json.loads((tmp_path / "stick" / "MANIFEST.json").read_text())
    assert {"agent.toml", f"artifact/{signed_tiny.artifact.name}"} <= set(manifest["files"])
    config = _device(tmp_path, signed_tiny.trust)
    _no_network(monkeypatch)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", 9))  # the block is in force
    code, imported = _run(["bundle", "import", str(tmp_path / "stick"), "--agent-config",
                           str(config), "--json"], capsys)
    monkeypatch.undo()
    digest = hashlib.sha256(signed_tiny.artifact.read_bytes()).hexdigest()
    assert code == 0, imported
    assert imported["slot"] == "a" and imported["verified"] is True
    assert imported["artifact_digest"] == digest and imported["committed"] is True
    assert imported["bundle_trust"] == "matches"
    # the agent serves what the slot holds, verified again from its private copy
    agent = Agent(load_agent_config(config))
    info = agent.start()
    with agent.serve_in_thread() as running, httpx.Client(base_url=running.url,
                                                           timeout=30) as c:
        models = c.get("/v1/models").json()
    assert info.sha256 == digest and info.verified
    assert models["data"][0]["id"] == signed_tiny.artifact.name.removesuffix(".gguf")


def test_a_damaged_bundle_installs_nothing(tmp_path: Path, signed_tiny: Signed,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bundle", "export", str(signed_tiny.artifact), "--to",
                 str(tmp_path / "stick"), "--trust", str(signed_tiny.trust)]) == 0
    flip_byte(tmp_path / "stick" / "artifact" / signed_tiny.artifact.name)
    config = _device(tmp_path, signed_tiny.trust)
    code, out = _run(["bundle", "import", str(tmp_path / "stick"), "--agent-config",
                      str(config), "--json"], capsys)
    assert code == 5 and out["error"] == "digest_mismatch_error"
    assert "differs from the bundle's manifest" in out["detail"]
    assert SlotStore(tmp_path / "device" / "state").active() is None


def test_a_bundle_from_a_publisher_the_device_does_not_trust_is_refused(
        tmp_path: Path, signed_tiny: Signed, capsys: pytest.CaptureFixture[str]) -> None:
    # The bundle carries its publisher's trust root; the device must not take it on trust.
    assert main(["bundle", "export", str(signed_tiny.artifact), "--to",
                 str(tmp_path / "stick"), "--trust", str(signed_tiny.trust)]) == 0
    config = _device(tmp_path, signed_tiny.trust, trusted=False)
    code, out = _run(["bundle", "import", str(tmp_path / "stick"), "--agent-config",
                      str(config), "--json"], capsys)
    assert code == 5 and out["error"] == "unknown_key_error"
    slots = SlotStore(tmp_path / "device" / "state")
    assert slots.active() is None and not (slots.root / "a").exists()


def test_export_refuses_what_it_cannot_vouch_for(tmp_path: Path, signed_tiny: Signed,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    unsigned = tmp_path / "u" / "m.gguf"
    unsigned.parent.mkdir()
    unsigned.write_bytes(signed_tiny.artifact.read_bytes())
    code, out = _run(["bundle", "export", str(unsigned), "--to", str(tmp_path / "b1"),
                      "--trust", str(signed_tiny.trust), "--json"], capsys)
    assert code == 5 and out["error"] == "unsigned_artifact_error"
    assert not (tmp_path / "b1").exists()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    code, out = _run(["bundle", "export", str(signed_tiny.artifact), "--to",
                      str(tmp_path / "full"), "--trust", str(signed_tiny.trust), "--json"],
                     capsys)
    assert code == 3 and "not empty" in out["detail"]
    # an artifact changed after signing is not exported either
    changed = sign_copy(signed_tiny.artifact, tmp_path / "c", key=signed_tiny.key,
                        trust=signed_tiny.trust)
    flip_byte(changed.artifact)
    code, out = _run(["bundle", "export", str(changed.artifact), "--to", str(tmp_path / "b2"),
                      "--trust", str(signed_tiny.trust), "--json"], capsys)
    assert code == 5 and not (tmp_path / "b2").exists()
