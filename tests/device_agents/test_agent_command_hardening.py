"""The agent's command path against hostile input (issue 18, breaks 7 and 9): a malformed
command (5,000-deep JSON, fuzzed envelopes and bodies) is refused ``malformed`` and counted,
never a traceback; a flood of forged commands cannot crowd out the operator's; a refusal tells
the fleet the device's last version; a deploy interrupted by a killed agent is reported
``command.failed`` (``interrupted``) as soon as the agent starts again."""

from __future__ import annotations

import base64
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeward.device_agents._commands import CommandGate
from edgeward.device_agents._updater import Updater
from edgeward.errors import RejectedMessageError
from edgeward.fleet.protocol import decode_command, encode_command, new_command
from edgeward.provenance import (
    PrivateKey,
    Role,
    TrustStore,
    canonical_json,
    generate_key,
    sign_payload,
)

TOPIC = "edgeward/v1/devices/pi-01/cmd"
CMD_TYPE = "application/vnd.edgeward.command+json"


class _Metrics:
    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str, str]] = Counter()

    def inc(self, name: str, value: float = 1.0, **labels: str) -> None:
        self.counts[(name, labels.get("result", ""), labels.get("reason", ""))] += int(value)


class _Agent:
    """What the updater needs of an agent: its config, metrics and events."""

    def __init__(self, state: Path, trust: Path, **config: Any) -> None:
        self.config = SimpleNamespace(state_dir=state, trust_store=trust, telemetry=None,
                                      artifact="model.gguf", **config)
        self.metrics = _Metrics()
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.telemetry = object()

    def report_event(self, event: str, data: dict[str, Any], severity: str) -> None:
        self.events.append((event, data))

    def of(self, event: str) -> list[dict[str, Any]]:
        return [d for e, d in self.events if e == event]


def _updater(tmp_path: Path, trust: Path) -> tuple[Updater, _Agent]:
    agent = _Agent(tmp_path / "state", trust)
    updater = Updater(agent)  # type: ignore[arg-type]
    updater.gate = CommandGate(tmp_path / "state", "pi-01", trust)
    return updater, agent


def _signed(body: bytes, key: PrivateKey) -> bytes:
    return canonical_json(sign_payload(body, CMD_TYPE, key).to_dict())


def test_a_5000_deep_command_is_refused_malformed_and_counted_without_a_traceback(
        tmp_path: Path, trust: Path, operator: PrivateKey,
        caplog: pytest.LogCaptureFixture) -> None:
    updater, agent = _updater(tmp_path, trust)
    deep = b"[" * 5000 + b"]" * 5000
    deep_body = _signed(b'{"a":' * 5000 + b"1" + b"}" * 5000, operator)  # signed, then deep
    with caplog.at_level(logging.DEBUG):
        for payload in (deep, deep_body):
            assert updater.handle(TOPIC, payload) is None  # the command thread's path
            updater.receive(TOPIC, payload)  # the network thread's path
    assert [d["reason"] for d in agent.of("command.refused")] == ["malformed"] * 4
    assert agent.metrics.counts[("edgeward_agent_commands_total", "refused", "malformed")] == 4
    assert updater._queue.empty()  # refused on arrival: never queued
    assert not [r for r in caplog.records if r.exc_info], "no traceback for outside input"


@pytest.mark.parametrize("body", [b"[" * 5000 + b"]" * 5000, b'{"x": NaN}', b'"\\ud800"',
                                  b"\xff\xfe", b"{" * 70 + b"}" * 70])
def test_decode_command_refuses_hostile_json_as_malformed(trust: Path, operator: PrivateKey,
                                                          body: bytes) -> None:
    store = TrustStore.open(trust)
    for payload in (body, _signed(body, operator)):
        with pytest.raises(RejectedMessageError) as e:
            decode_command(TOPIC, payload, store)
        assert e.value.reason == "malformed"


_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
                     lambda c: st.lists(c) | st.dictionaries(st.text(), c), max_leaves=15)
_BODY = st.fixed_dictionaries({
    "_type": st.sampled_from(["https://edgeward.dev/fleet/cmd/v1", "x"]) | _JSON,
    "device_id": st.sampled_from(["pi-01", "pi-02", "a/b"]) | _JSON,
    "command_id": st.sampled_from(["ab" * 8]) | _JSON,
    "action": st.sampled_from(["deploy", "rollback", "set-config"]) | _JSON,
    "version": st.integers() | _JSON, "nonce": st.sampled_from(["cd" * 16]) | _JSON,
    "issued_at": st.floats() | _JSON, "expires_at": st.floats() | _JSON,
    "params": st.dictionaries(st.text(max_size=5), _JSON, max_size=4) | _JSON})


@pytest.fixture(scope="module")
def fuzz_keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[PrivateKey, TrustStore]:
    key = generate_key()
    path = tmp_path_factory.mktemp("fuzz") / "trust"
    TrustStore.open(path, create=True).add(key.public_key, [Role.OPERATOR], name="ops")
    return key, TrustStore.open(path)


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.one_of(
    st.binary(max_size=200).map(lambda b: ("raw", b)),
    _JSON.map(lambda v: ("raw", json.dumps(v).encode())),
    _JSON.map(lambda v: ("env", json.dumps(v).encode())),
    _BODY.map(lambda v: ("env", json.dumps(v).encode())),
    st.fixed_dictionaries({"payloadType": _JSON, "payload": _JSON | st.binary().map(
        lambda b: base64.b64encode(b).decode()), "signatures": _JSON}).map(
        lambda v: ("raw", json.dumps(v).encode()))))
def test_fuzzed_commands_never_end_in_an_internal_error(
        fuzz_keys: tuple[PrivateKey, TrustStore], case: tuple[str, bytes]) -> None:
    key, store = fuzz_keys
    kind, data = case
    payload = _signed(data, key) if kind == "env" else data
    try:
        decode_command(TOPIC, payload, store)
    except RejectedMessageError as e:
        assert e.reason in ("malformed", "oversize", "unsigned", "forged", "topic_mismatch")


def test_a_flood_of_forged_commands_does_not_crowd_out_the_operators(
        tmp_path: Path, trust: Path, operator: PrivateKey) -> None:
    updater, agent = _updater(tmp_path, trust)
    forger = generate_key()
    legit = [encode_command(new_command("pi-01", "set-config", v, params={}), operator)
             for v in (1, 2, 3)]
    # the command thread is busy (a deploy): nothing is taken from the queue meanwhile
    for i in range(300):
        forged = encode_command(new_command("pi-01", "set-config", 100 + i, params={}), forger)
        updater.receive(forged.topic, forged.payload)
        if i in (99, 199, 299):
            updater.receive(legit[i // 100].topic, legit[i // 100].payload)
    queued = []
    while not updater._queue.empty():
        item = updater._queue.get_nowait()
        assert item is not None
        queued.append(item)
    assert len(queued) == 3
    for topic, payload, _nonce in queued:
        updater.handle(topic, payload)
    assert [d["version"] for d in agent.of("command.accepted")] == [1, 2, 3]
    assert agent.metrics.counts[("edgeward_agent_commands_total", "refused", "forged")] == 300
    assert agent.metrics.counts[("edgeward_agent_commands_total", "dropped", "")] == 0
    assert len(agent.of("command.refused")) <= 20  # the flood is counted, not all reported


def test_replays_of_a_genuine_command_do_not_crowd_out_the_next_ones(
        tmp_path: Path, trust: Path, operator: PrivateKey) -> None:
    # A genuine command recorded off the wire and sent 300 times: its copies verify, so only
    # the nonce (queued already) or the gate's record (applied already) can tell them apart.
    updater, agent = _updater(tmp_path, trust)
    first = encode_command(new_command("pi-01", "set-config", 1, params={}), operator)
    later = [encode_command(new_command("pi-01", "set-config", v, params={}), operator)
             for v in (2, 3)]
    for _ in range(150):  # while the command thread is busy: copies of a queued command
        updater.receive(first.topic, first.payload)
    (item,) = [updater._queue.get_nowait()]
    assert updater._queue.empty()
    updater.handle(item[0], item[1])
    updater._queued.discard(item[2])
    for i in range(150):  # after it was applied: copies the gate has seen
        updater.receive(first.topic, first.payload)
        if i in (49, 99):
            nxt = later[0 if i == 49 else 1]
            updater.receive(nxt.topic, nxt.payload)
    queued = [updater._queue.get_nowait() for _ in range(updater._queue.qsize())]
    for topic, payload, _nonce in queued:
        updater.handle(topic, payload)
    assert [d["version"] for d in agent.of("command.accepted")] == [1, 2, 3]
    assert agent.metrics.counts[("edgeward_agent_commands_total", "refused", "replayed")] == 299
    assert agent.metrics.counts[("edgeward_agent_commands_total", "dropped", "")] == 0


def test_a_refusal_carries_the_devices_last_version(tmp_path: Path, trust: Path,
                                                     operator: PrivateKey) -> None:
    updater, agent = _updater(tmp_path, trust)
    first = encode_command(new_command("pi-01", "set-config", 7, params={}), operator)
    stale = new_command("pi-01", "set-config", 3, params={})
    assert updater.handle(first.topic, first.payload) is not None
    wire = encode_command(stale, operator)
    assert updater.handle(wire.topic, wire.payload) is None
    (refused,) = agent.of("command.refused")
    assert refused["reason"] == "stale_version" and refused["last_version"] == 7
    assert (refused["command_id"], refused["version"]) == (stale.command_id, 3)


_KILLED_MID_DEPLOY = """
import sys
from pathlib import Path
from types import SimpleNamespace
from edgeward.device_agents._commands import CommandGate
from edgeward.device_agents._updater import Updater
from edgeward.fleet.protocol import BrokerOptions

state, trust, port = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
telemetry = SimpleNamespace(broker=BrokerOptions(url=f"mqtt://127.0.0.1:{port}",
                                                 connect_timeout_s=0.5), device_id="pi-01")
agent = SimpleNamespace(config=SimpleNamespace(state_dir=state, trust_store=trust,
                                               artifact=Path("@slots"), telemetry=telemetry),
                        metrics=SimpleNamespace(inc=lambda *a, **k: None),
                        report_event=lambda *a: print(a[0], a[1], flush=True),
                        health_check=None, telemetry=object())
u = Updater(agent)
u.gate = CommandGate(state, "pi-01", trust)
u.handle(sys.argv[4], bytes.fromhex(sys.argv[5]))  # the fetch never completes: no broker
"""


@pytest.mark.chaos
def test_a_deploy_interrupted_by_a_killed_agent_is_reported_failed_on_restart(
        tmp_path: Path, trust: Path, operator: PrivateKey) -> None:
    from edgeward.fleet import free_port

    state = tmp_path / "state"
    cmd = new_command("pi-01", "deploy", 1, params={
        "artifact_digest": "ab" * 32, "statement_digest": "cd" * 32, "name": "m.gguf"})
    wire = encode_command(cmd, operator)
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_MID_DEPLOY, str(state), str(trust),
                             str(free_port()), wire.topic, wire.payload.hex()],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("command.accepted")
        deadline = time.monotonic() + 20
        while not (state / "command-inflight.json").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        journaled = (state / "command-inflight.json").exists()
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGKILL, out + err
    assert journaled, "the deploy in flight is journaled"
    agent = _Agent(state, trust)
    updater = Updater(agent)  # type: ignore[arg-type]
    updater.start(CommandGate(state, "pi-01", trust), "ef" * 32)  # the old artifact serves
    try:
        deadline = time.monotonic() + 10
        while not agent.of("command.failed") and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        updater.stop()
    (failed,) = agent.of("command.failed")
    assert (failed["command_id"], failed["reason"]) == (cmd.command_id, "interrupted")
    assert not (state / "command-inflight.json").exists()
    # a deploy whose artifact the slots had committed before the kill is reported done
    (state / "command-inflight.json").write_text(json.dumps(
        {"command_id": cmd.command_id, "action": "deploy", "version": 1,
         "artifact_digest": "ab" * 32}))
    agent2 = _Agent(state, trust)
    updater2 = Updater(agent2)  # type: ignore[arg-type]
    updater2.start(CommandGate(state, "pi-01", trust), "ab" * 32)
    updater2.stop()
    assert [d.get("recovered") for d in agent2.of("command.done")] == [True]
