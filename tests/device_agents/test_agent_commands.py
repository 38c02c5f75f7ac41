"""Operator commands at the device: only a fresh, operator-signed command with a new nonce and a
higher version is admitted; replays, rollbacks, forgeries and expired commands are refused with
their reason, before and after a restart."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from edgeward.device_agents._commands import CLOCK_SKEW_S, CommandGate
from edgeward.errors import CommandRefusedError, ConfigError
from edgeward.fleet.protocol import Command, encode_command, new_command
from edgeward.provenance import PrivateKey, Role, TrustStore, canonical_json, generate_key

NOW = 1_790_000_000.0
DIGEST_1, DIGEST_2 = "11" * 32, "22" * 32


def _gate(tmp_path: Path, trust: Path, now: float = NOW) -> CommandGate:
    return CommandGate(tmp_path / "state", "pi-01", trust, clock=lambda: now)


def _cmd(version: int, action: str = "deploy", digest: str = DIGEST_1, **kw: object) -> Command:
    return new_command("pi-01", action, version, params={"artifact_digest": digest},
                       now=NOW - 10, **kw)  # type: ignore[arg-type]


def _refused(gate: CommandGate, topic: str, payload: bytes) -> str:
    with pytest.raises(CommandRefusedError) as e:
        gate.admit(topic, payload)
    return e.value.reason


def test_a_fresh_operator_command_is_admitted_and_its_replay_is_not(
        tmp_path: Path, trust: Path, operator: PrivateKey) -> None:
    gate = _gate(tmp_path, trust)
    wire = encode_command(_cmd(1), operator)
    assert wire.topic == "edgeward/v1/devices/pi-01/cmd" and not wire.retain
    cmd = gate.admit(wire.topic, wire.payload)
    assert (cmd.action, cmd.version, gate.last_version) == ("deploy", 1, 1)
    assert _refused(gate, wire.topic, wire.payload) == "replayed"
    # ... also after a restart: the state is on disk before the command is acted on
    assert _refused(_gate(tmp_path, trust), wire.topic, wire.payload) == "replayed"


def test_versions_must_increase(tmp_path: Path, trust: Path, operator: PrivateKey) -> None:
    gate = _gate(tmp_path, trust)
    gate.admit(*_wire(_cmd(5), operator))
    assert _refused(gate, *_wire(_cmd(5), operator)) == "stale_version"  # new nonce, same version
    assert _refused(gate, *_wire(_cmd(3), operator)) == "stale_version"
    assert gate.admit(*_wire(_cmd(6), operator)).version == 6


def _wire(cmd: Command, key: PrivateKey) -> tuple[str, bytes]:
    w = encode_command(cmd, key)
    return w.topic, w.payload


@pytest.mark.chaos
def test_time_limits(tmp_path: Path, trust: Path, operator: PrivateKey) -> None:
    expired = _cmd(1, lifetime_s=5)  # issued NOW-10, expired NOW-5
    assert _refused(_gate(tmp_path, trust), *_wire(expired, operator)) == "expired"
    future = new_command("pi-01", "deploy", 2, now=NOW + CLOCK_SKEW_S + 60)
    assert _refused(_gate(tmp_path, trust), *_wire(future, operator)) == "not_yet_valid"
    # a small clock skew is tolerated
    skewed = new_command("pi-01", "deploy", 3, now=NOW + 30)
    assert _gate(tmp_path, trust).admit(*_wire(skewed, operator)).version == 3


def test_a_downgrade_needs_a_signed_rollback(tmp_path: Path, trust: Path,
                                            operator: PrivateKey) -> None:
    gate = _gate(tmp_path, trust)
    gate.admit(*_wire(_cmd(1, digest=DIGEST_1), operator))
    gate.deployed(DIGEST_1)
    gate.admit(*_wire(_cmd(2, digest=DIGEST_2), operator))
    gate.deployed(DIGEST_2)
    assert _refused(gate, *_wire(_cmd(3, digest=DIGEST_1), operator)) == "downgrade"
    back = gate.admit(*_wire(_cmd(4, action="rollback", digest=DIGEST_1), operator))
    assert back.action == "rollback"
    gate.deployed(DIGEST_1)
    # after going back, the newer artifact is the one moved on from
    assert _refused(gate, *_wire(_cmd(5, digest=DIGEST_2), operator)) == "downgrade"


def test_only_an_operator_key_of_the_trust_store_may_command(
        tmp_path: Path, trust: Path, operator: PrivateKey) -> None:
    gate = _gate(tmp_path, trust)
    stranger = generate_key()
    assert _refused(gate, *_wire(_cmd(1), stranger)) == "forged"  # unknown key
    publisher = generate_key()
    TrustStore.open(trust).add(publisher.public_key, [Role.PUBLISHER], name="pub")
    assert _refused(gate, *_wire(_cmd(1), publisher)) == "forged"  # not an operator
    TrustStore.open(trust).revoke(operator.key_id, operator, reason="test")
    assert _refused(_gate(tmp_path, trust), *_wire(_cmd(1), operator)) == "forged"  # revoked
    assert gate.last_version == 0  # nothing refused was recorded


def test_tampered_misaddressed_and_malformed_commands(tmp_path: Path, trust: Path,
                                                      operator: PrivateKey) -> None:
    gate = _gate(tmp_path, trust)
    topic, payload = _wire(_cmd(1), operator)
    env = json.loads(payload)
    body = json.loads(__import__("base64").b64decode(env["payload"]))
    body["version"] = 99  # change the signed body
    env["payload"] = __import__("base64").b64encode(canonical_json(body)).decode()
    assert _refused(gate, topic, canonical_json(env)) == "forged"
    assert _refused(gate, "edgeward/v1/devices/pi-02/cmd", payload) == "topic_mismatch"
    other = dataclasses.replace(_cmd(1), device_id="pi-02")
    assert _refused(gate, *_wire(other, operator)) == "wrong_device"
    assert _refused(gate, topic, b"not json") == "malformed"
    assert _refused(gate, topic, b"{}") == "malformed"
    unsigned = json.loads(payload) | {"signatures": []}
    assert _refused(gate, topic, canonical_json(unsigned)) in ("unsigned", "malformed")
    assert _refused(gate, "edgeward/v1/devices/pi-01/health", payload) == "bad_topic"
    assert _refused(gate, topic, b"x" * 70_000) == "oversize"


def test_command_fields_are_validated() -> None:
    with pytest.raises(ConfigError, match="action"):
        new_command("pi-01", "format-disk", 1)
    with pytest.raises(ConfigError, match="expires_at"):
        new_command("pi-01", "deploy", 1, lifetime_s=30 * 86400)
    with pytest.raises(ConfigError, match="version"):
        new_command("pi-01", "deploy", 0)


def test_a_damaged_state_file_is_not_silently_reset(tmp_path: Path, trust: Path) -> None:
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "commands.json").write_text("{not json")
    with pytest.raises(ConfigError, match="restore it"):
        _gate(tmp_path, trust)
