"""Verified loading: each attack is refused with its own error and one log line; the bytes
that run are a private read-only copy that later edits of the original cannot reach."""

from __future__ import annotations

import hashlib
import logging
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from _agent_helpers import Signed, flip_byte, sign_copy

from edgeward.device_agents import Agent, ModelStore, config_from_dict
from edgeward.errors import (
    BadSignatureError,
    DigestMismatchError,
    ResourceError,
    RevokedKeyError,
    SignatureError,
    UnknownKeyError,
    UnsignedArtifactError,
    WrongRoleError,
)
from edgeward.provenance import (
    Role,
    TrustStore,
    envelope_path_for,
    generate_key,
    sign_artifact,
)
from edgeward.runtimes import SamplingParams


def _unsigned(s: Signed) -> None:
    envelope_path_for(s.artifact).unlink()


def _tampered(s: Signed) -> None:
    flip_byte(s.artifact)


def _unknown_key(s: Signed) -> None:
    sign_artifact(s.artifact, generate_key(), overwrite=True)  # a key the store never saw


def _revoked_key(s: Signed) -> None:
    TrustStore.open(s.trust).revoke(s.key.key_id, s.key, reason="leaked in a test")


def _device_key(s: Signed) -> None:
    device = generate_key()
    TrustStore.open(s.trust).add(device.public_key, [Role.DEVICE], name="a device")
    sign_artifact(s.artifact, device, overwrite=True)


def _edited_envelope(s: Signed) -> None:
    env = envelope_path_for(s.artifact)
    text = env.read_text()
    sig_at = text.index('"sig"') + 12
    env.write_text(text[:sig_at] + ("A" if text[sig_at] != "A" else "B") + text[sig_at + 1:])


ATTACKS: dict[str, tuple[Callable[[Signed], None], type[SignatureError]]] = {
    "unsigned": (_unsigned, UnsignedArtifactError),
    "tampered-byte": (_tampered, DigestMismatchError),
    "unknown-key": (_unknown_key, UnknownKeyError),
    "revoked-key": (_revoked_key, RevokedKeyError),
    "device-key": (_device_key, WrongRoleError),
    "edited-signature": (_edited_envelope, BadSignatureError),
}


def _agent(signed: Signed, state: Path, **keys: object) -> Agent:
    data = {"artifact": str(signed.artifact), "trust_store": str(signed.trust),
            "state_dir": str(state), "listen": "127.0.0.1:0", **keys}
    return Agent(config_from_dict(data))


@pytest.mark.parametrize("attack", sorted(ATTACKS))
@pytest.mark.chaos
def test_refused_at_start_with_the_precise_error_and_one_log_line(
        attack: str, tmp_path: Path, tiny_gguf: Path, caplog: pytest.LogCaptureFixture) -> None:
    signed = sign_copy(tiny_gguf, tmp_path / "work")
    mutate, error = ATTACKS[attack]
    mutate(signed)
    agent = _agent(signed, tmp_path / "state")
    with caplog.at_level(logging.INFO, logger="edgeward.agent"), pytest.raises(error) as e:
        agent.start()
    assert type(e.value) is error
    refusals = [r for r in caplog.records if getattr(r, "edgeward_event", "") == "artifact_refused"]
    assert len(refusals) == 1
    fields = refusals[0].edgeward_fields  # type: ignore[attr-defined]
    assert fields["reason"] == e.value.kind and fields["artifact"] == str(signed.artifact)
    assert agent.metrics.value("edgeward_agent_artifact_refusals_total", reason=e.value.kind) == 1
    assert list((tmp_path / "state" / "models").iterdir()) == []  # the refused copy is gone
    # the lock was released: another agent may use the state directory now
    ModelStore(tmp_path / "state").open()


def test_allow_unsigned_loads_loudly(tmp_path: Path, tiny_gguf: Path,
                                     caplog: pytest.LogCaptureFixture) -> None:
    signed = sign_copy(tiny_gguf, tmp_path / "work")
    _tampered(signed)
    agent = _agent(signed, tmp_path / "state", allow_unsigned=True)
    with caplog.at_level(logging.INFO, logger="edgeward.agent"):
        info = agent.start()
    try:
        assert info.verified is False and info.key_id is None
        assert info.unverified_reason.startswith("digest_mismatch_error")
        assert info.sha256 == hashlib.sha256(signed.artifact.read_bytes()).hexdigest()
        loud = [r for r in caplog.records if r.levelno == logging.WARNING
                and getattr(r, "edgeward_event", "") == "UNVERIFIED_ARTIFACT_LOADED"]
        assert len(loud) == 1
    finally:
        agent.close()


def test_the_running_bytes_are_a_private_read_only_verified_copy(tmp_path: Path,
                                                                 tiny_gguf: Path) -> None:
    signed = sign_copy(tiny_gguf, tmp_path / "work")
    original_digest = hashlib.sha256(signed.artifact.read_bytes()).hexdigest()
    agent = _agent(signed, tmp_path / "state")
    info = agent.start()
    try:
        assert info.verified and info.key_id == signed.key.key_id
        assert info.sha256 == original_digest
        assert info.path.is_relative_to(tmp_path / "state" / "models")
        assert info.path.name == signed.artifact.name
        assert stat.S_IMODE(info.path.stat().st_mode) == 0o400
        assert stat.S_IMODE(info.path.parent.stat().st_mode) == 0o500
        params = SamplingParams(max_tokens=12, temperature=0, seed=1)
        before = agent.engine.model.runtime.generate("hello world", params).text()
        flip_byte(signed.artifact, 4096)  # an in-place rewrite of the original file ...
        flip_byte(signed.artifact, -4096)
        # ... reaches neither the copy nor the loaded model
        assert hashlib.sha256(info.path.read_bytes()).hexdigest() == original_digest
        assert agent.engine.model.runtime.generate("hello world", params).text() == before
    finally:
        agent.close()
    assert not info.path.exists()  # closing removes the copy


def test_one_agent_per_state_dir_and_stale_copies_are_swept(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = ModelStore(state)
    first.open()
    stale = state / "models" / "left-by-a-crash"
    stale.mkdir()
    (stale / "model.gguf").write_bytes(b"x")
    stale.chmod(0o500)
    with pytest.raises(ResourceError, match="another agent is using it"):
        ModelStore(state).open()
    first.close()
    second = ModelStore(state)
    second.open()
    assert not stale.exists()
    second.close()
