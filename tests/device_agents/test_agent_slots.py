"""A/B slots: install into the inactive slot, switch, health-check, commit or roll back; and
crash safety: the updater is killed with SIGKILL at 20 random points of an update, and after
each restart the slots recover to a verified artifact, old or new (20 of 20)."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _agent_helpers import Signed, flip_byte, sign_copy

from _models import TinyLlamaSpec, write_tiny_gguf
from edgeward.device_agents import Agent, config_from_dict
from edgeward.device_agents._commands import CommandGate
from edgeward.device_agents._probe import probe_artifact
from edgeward.device_agents._slots import SlotStore
from edgeward.errors import (
    CommandRefusedError,
    DigestMismatchError,
    RuntimeBackendError,
    UnsignedArtifactError,
)
from edgeward.fleet.protocol import encode_command, new_command
from edgeward.provenance import Role, TrustStore, generate_key, verify_artifact
from edgeward.safety import load_filter

ROOT = Path(__file__).resolve().parents[2]

# Kill points per run: 20 in `make test` (bounded), more in `make bench` (the long run).
CHAOS_ROUNDS = int(os.environ.get("EDGEWARD_CHAOS_ROUNDS", "20"))


@pytest.fixture(scope="module")
def two_models(tmp_path_factory: pytest.TempPathFactory, signed_tiny: Signed
               ) -> tuple[Signed, Signed]:
    """The signed tiny GGUF and a second, different one signed with the same key."""
    work = tmp_path_factory.mktemp("second")
    (work / "src").mkdir()
    other = write_tiny_gguf(work / "src" / "tiny-v2.gguf", TinyLlamaSpec(seed=7))
    second = sign_copy(other, work / "signed", key=signed_tiny.key, trust=signed_tiny.trust)
    return signed_tiny, second


def _verifies(slots: SlotStore, trust: Path) -> str | None:
    """The active artifact's digest after checking it against its signature (None: empty)."""
    pointer = slots.active()
    if pointer is None:
        return None
    path = slots.artifact_path(pointer)
    envelope = path.with_name(path.name + ".edgeward.json").read_bytes()
    verify_artifact(path, envelope, TrustStore.open(trust))
    return pointer.sha256


def test_updates_alternate_slots_and_commit(tmp_path: Path, two_models: tuple[Signed, Signed]
                                            ) -> None:
    first, second = two_models
    slots = SlotStore(tmp_path / "state")
    checked: list[Path] = []
    r1 = slots.update(first.artifact, first.trust, health=checked.append)
    assert r1.ok and r1.pointer is not None and r1.pointer.slot == "a"
    r2 = slots.update(second.artifact, second.trust, health=checked.append)
    assert r2.ok and r2.pointer is not None and r2.pointer.slot == "b"
    assert not r2.pointer.trial and r2.pointer.previous is None
    assert checked == [slots.root / "a" / first.artifact.name,
                       slots.root / "b" / second.artifact.name]
    assert _verifies(slots, second.trust) == r2.pointer.sha256
    assert slots.journal() is None and not list(slots.root.glob(".staging-*"))
    # the installed copy is read-only, and independent of the source
    assert stat.S_IMODE(slots.artifact_path(r2.pointer).stat().st_mode) == 0o400
    # going back to the first artifact is a downgrade: refused, nothing changes
    with pytest.raises(CommandRefusedError) as refused:
        slots.update(first.artifact, first.trust, health=lambda _p: None)
    assert refused.value.reason == "downgrade" and slots.active() == r2.pointer
    # a third artifact goes into slot a, replacing the first one
    (tmp_path / "src").mkdir()
    other = write_tiny_gguf(tmp_path / "src" / "tiny-v3.gguf", TinyLlamaSpec(seed=11))
    third = sign_copy(other, tmp_path / "v3", key=first.key, trust=first.trust)
    r3 = slots.update(third.artifact, first.trust, health=lambda _p: None)
    assert r3.pointer is not None and r3.pointer.slot == "a"


def test_a_failed_health_check_rolls_back(tmp_path: Path, two_models: tuple[Signed, Signed]
                                          ) -> None:
    first, second = two_models
    slots = SlotStore(tmp_path / "state")
    good = slots.update(first.artifact, first.trust, health=lambda _p: None).pointer

    def sick(_path: Path) -> None:
        raise RuntimeBackendError("the model generated nothing for the probe prompt")

    result = slots.update(second.artifact, second.trust, health=sick)
    assert not result.ok and result.error == "runtime_backend_error"
    assert result.pointer == good and slots.active() == good
    assert slots.journal() is None


def test_unsigned_or_tampered_artifacts_never_reach_a_slot(
        tmp_path: Path, two_models: tuple[Signed, Signed]) -> None:
    first, _ = two_models
    slots = SlotStore(tmp_path / "state")
    slots.update(first.artifact, first.trust, health=lambda _p: None)
    before = slots.active()
    bad = sign_copy(first.artifact, tmp_path / "bad", key=first.key, trust=first.trust)
    flip_byte(bad.artifact)
    with pytest.raises(DigestMismatchError):
        slots.update(bad.artifact, bad.trust, health=lambda _p: None)
    unsigned = tmp_path / "unsigned" / "m.gguf"
    unsigned.parent.mkdir()
    unsigned.write_bytes(first.artifact.read_bytes())
    with pytest.raises(UnsignedArtifactError):
        slots.update(unsigned, first.trust, health=lambda _p: None)
    assert slots.active() == before and slots.journal() is None
    assert not list(slots.root.glob(".staging-*"))
    assert not (slots.root / "b").exists()  # nothing half-installed in the other slot


def test_the_probe_loads_generates_and_checks_the_filter(signed_tiny: Signed) -> None:
    report = probe_artifact(signed_tiny.artifact, safety_filter=load_filter("default"))
    assert report.completion_tokens >= 1 and "generate" in report.capabilities
    assert report.safety_probes == 3
    with pytest.raises(RuntimeBackendError, match="tokens/s"):
        probe_artifact(signed_tiny.artifact, min_decode_tokens_per_s=1e9)


_UPDATER = """
import sys, time
from pathlib import Path
from edgeward.device_agents._slots import SlotStore
from edgeward.device_agents import Agent, config_from_dict
from edgeward.device_agents._commands import CommandGate
from edgeward.device_agents._probe import probe_artifact
state, artifact, trust = map(Path, sys.argv[1:4])
slots = SlotStore(state, on_step=lambda step: time.sleep(0.05))
print("ready", flush=True)
r = slots.update(artifact, trust, health=lambda p: probe_artifact(p))
print("done", r.ok, flush=True)
"""


@pytest.mark.integration
@pytest.mark.chaos
def test_kill_9_at_random_points_of_an_update_leaves_a_verified_artifact(
        tmp_path: Path, two_models: tuple[Signed, Signed]) -> None:
    first, second = two_models
    state = tmp_path / "state"
    SlotStore(state).update(first.artifact, first.trust, health=lambda _p: None)
    digests = {first.artifact.name: None, second.artifact.name: None}
    rng = random.Random(20261128)
    outcomes: dict[str, int] = {}
    env = os.environ | {"PYTHONPATH": str(ROOT / "src")}
    for i in range(CHAOS_ROUNDS):
        target = second if i % 2 == 0 else first  # alternate, so both slots get hit
        proc = subprocess.Popen([sys.executable, "-c", _UPDATER, str(state),
                                 str(target.artifact), str(target.trust)],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(rng.uniform(0.0, 0.6))  # the update takes about 0.3-0.5 s
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        slots = SlotStore(state)
        journal = slots.journal()
        step = journal["step"] if journal else "idle-or-done"
        outcomes[step] = outcomes.get(step, 0) + 1
        slots.recover()
        assert slots.journal() is None and not list(slots.root.glob(".staging-*"))
        pointer = slots.active()
        assert pointer is not None and not pointer.trial, f"kill {i} at {step}"
        assert pointer.name in digests
        assert _verifies(slots, target.trust) == pointer.sha256, f"kill {i} at {step}"
    # the kills landed in different phases of the update, not all before or after it
    assert len(outcomes) >= 3, outcomes
    (state / "outcomes.json").write_text(json.dumps(outcomes))


def test_a_signed_rollback_command_serves_the_other_slot_again(
        tmp_path: Path, two_models: tuple[Signed, Signed]) -> None:
    first, second = two_models
    trust = tmp_path / "trust"
    shutil.copytree(first.trust, trust)
    operator = generate_key()
    TrustStore.open(trust).add(operator.public_key, [Role.OPERATOR], name="ops")
    state = tmp_path / "state"
    slots = SlotStore(state)
    old = slots.update(first.artifact, trust, health=lambda _p: None).pointer
    new = slots.update(second.artifact, trust, health=lambda _p: None).pointer
    assert old is not None and new is not None
    agent = Agent(config_from_dict({"artifact": "@slots", "trust_store": str(trust),
                                    "state_dir": str(state), "listen": "127.0.0.1:0"}))
    assert agent.start().sha256 == new.sha256
    try:
        assert agent.health_figures()["slot"] == new.slot == "b"  # health says where from
        agent.commands = CommandGate(state, "pi-01", trust)
        agent.commands.deployed(new.sha256)
        wire = encode_command(new_command("pi-01", "rollback", 1), operator)
        cmd = agent.handle_command(wire.topic, wire.payload)
        assert cmd is not None and cmd.action == "rollback"
        assert agent.engine.model.info.sha256 == old.sha256  # serving the old slot again
        now = slots.active()
        assert now is not None and (now.slot, now.sha256, now.trial) == ("a", old.sha256, False)
        assert agent.health_figures()["slot"] == "a"
        # the newer artifact was moved on from: only another signed rollback brings it back
        again = encode_command(new_command("pi-01", "deploy", 2, params={
            "artifact_digest": new.sha256}), operator)
        assert agent.handle_command(again.topic, again.payload) is None
        assert agent.metrics.value("edgeward_agent_commands_total", result="refused",
                                   reason="downgrade") == 1
    finally:
        agent.close()
