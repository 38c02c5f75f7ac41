"""The channel against a real Mosquitto (started by the test on a free loopback port): agents,
managers, the Last Will, shared subscriptions, an outage, TLS with per-device ACLs, the MQTT
3.1.1 fallback, and the CLI."""

from __future__ import annotations

import json
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from _fleet_helpers import health, statement_envelope, wait_until, write_fleet_toml

from edgeward.cli import main
from edgeward.device_agents._spool import SpoolConfig
from edgeward.device_agents._telemetry import TelemetryClient, TelemetryConfig
from edgeward.errors import ChannelError
from edgeward.fleet import FleetManager, enroll_devices, load_fleet_config
from edgeward.fleet._broker import BrokerSpec, Listener, MosquittoBroker
from edgeward.fleet._certs import issue, make_ca
from edgeward.fleet._simulate import SimulationConfig, device_ids, simulate, simulated_key
from edgeward.fleet._store import open_store
from edgeward.fleet.protocol import BrokerOptions, HealthSample, connect, encode
from edgeward.provenance import PrivateKey, generate_key

pytestmark = pytest.mark.integration


@contextmanager
def running(manager: FleetManager) -> Iterator[FleetManager]:
    """Run a manager on a thread until the block ends."""
    stop, ready = threading.Event(), threading.Event()
    t = threading.Thread(target=lambda: manager.run(stop=stop, on_ready=ready.set), daemon=True)
    t.start()
    assert ready.wait(15), "the manager did not subscribe"
    try:
        yield manager
    finally:
        stop.set()
        t.join(30)
        assert not t.is_alive()


def _agent(tmp: Path, url: str, device: str, key: PrivateKey, **kw: object) -> TelemetryClient:
    cfg = TelemetryConfig(device_id=device, broker=BrokerOptions(url=url),
                          spool=SpoolConfig(path=tmp / f"{device}.spool", durable=False),
                          health_interval_s=kw.pop("interval", 3600.0),  # type: ignore[arg-type]
                          reconnect_min_s=0.2, reconnect_max_s=1.0)
    return TelemetryClient(cfg, key, health=lambda: HealthSample(uptime_s=1.0, **kw))  # type: ignore[arg-type]


def _fleet(tmp: Path, url: str, **extra: str) -> Path:
    return write_fleet_toml(tmp / "fleet.toml", url, "fleet.db", **extra)


def _seqs(db_path: Path) -> dict[str, list[int]]:
    with open_store(str(db_path)) as s:
        return {d.device_id: sorted(r["seq"] for r in s.health(d.device_id, limit=100_000))
                for d in s.devices()}


def _stats(db_path: Path) -> bool:
    if not db_path.exists():
        return False
    with open_store(str(db_path)) as s:
        return bool(s.stats())


def test_agent_to_store_and_the_query_commands(tmp_path: Path, broker: MosquittoBroker,
                                               device_key: PrivateKey,
                                               publisher_key: PrivateKey,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    toml = _fleet(tmp_path, broker.url, trust_store="trust")
    pub = tmp_path / "pi-01.pub"
    pub.write_bytes(device_key.public_key.to_pem())
    assert main(["fleet", "enroll", "pi-01", str(pub), "--config", str(toml), "--json"]) == 0
    from edgeward.provenance import Role, TrustStore

    TrustStore.open(tmp_path / "trust").add(publisher_key.public_key, [Role.PUBLISHER])
    agent = _agent(tmp_path, broker.url, "pi-01", device_key)
    with running(FleetManager(load_fleet_config(toml))) as m:
        agent.start()
        agent.publish_health()
        agent.publish_event("update.progress", {"percent": 40})
        agent.publish_provenance(statement_envelope(publisher_key), artifact_digest="ab" * 32,
                                 slot="a", publisher_key_id=publisher_key.key_id,
                                 verified_at=time.time(), loaded_at=time.time())
        assert agent.flush(10)
        assert wait_until(lambda: m.counters().get("stored", 0) >= 5)  # + online
        agent.stop()
        assert wait_until(lambda: m.counters().get("stored", 0) >= 6)  # + offline
    capsys.readouterr()
    assert main(["fleet", "devices", "--config", str(toml), "--json"]) == 0
    (dev,) = json.loads(capsys.readouterr().out)
    assert set(dev) == {"device_id", "state", "last_seen", "artifact_digest", "last_seq"}
    # four messages: the health report the agent makes when it starts, and three from the test
    assert (dev["device_id"], dev["state"], dev["last_seq"]) == ("pi-01", "offline", 4)
    assert dev["artifact_digest"] == "ab" * 32
    seqs: dict[str, list[int]] = {}
    for cmd, n in (("health", 2), ("events", 1), ("provenance", 1)):
        assert main(["fleet", cmd, "pi-01", "--config", str(toml), "--json"]) == 0
        rows = json.loads(capsys.readouterr().out)
        assert len(rows) == n, rows
        seqs[cmd] = [r["seq"] for r in rows]
    # the start-up health report is made on the client's thread, so its seq may come after
    # the test's own messages: the four messages hold seqs 1-4, each once
    assert sorted(q for v in seqs.values() for q in v) == [1, 2, 3, 4]
    assert main(["fleet", "provenance", "pi-01", "--config", str(toml), "--json"]) == 0
    (prov,) = json.loads(capsys.readouterr().out)
    assert prov["statement_verified"] is True and prov["subjects"][0]["sha256"] == "ab" * 32
    assert main(["fleet", "health", "ghost", "--config", str(toml), "--json"]) == 3
    capsys.readouterr()
    assert main(["fleet", "device", "pi-01", "--config", str(toml), "--json"]) == 0
    one = json.loads(capsys.readouterr().out)
    assert (one["device_id"], one["state"], one["last_seq"]) == ("pi-01", "offline", 4)
    assert one["health"]["seq"] == max(seqs["health"])  # the newest health report
    assert one["provenance"]["statement_verified"] is True
    assert [t["state"] for t in one["transitions"]][:2] == ["offline", "online"]
    assert one["events"][0]["event"] == "update.progress"
    assert main(["fleet", "device", "ghost", "--config", str(toml)]) == 3
    # --since keeps the reports made in the window (both were made seconds ago)
    assert main(["fleet", "health", "pi-01", "--since", "1h", "--config", str(toml),
                 "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 2
    capsys.readouterr()
    assert main(["fleet", "health", "pi-01", "--since", "soon", "--config", str(toml)]) == 2


def test_the_last_will_marks_a_device_lost(tmp_path: Path, broker: MosquittoBroker,
                                           device_key: PrivateKey) -> None:
    toml = _fleet(tmp_path, broker.url)
    enroll_devices(load_fleet_config(toml), [("pi-01", device_key.public_key)])
    agent = _agent(tmp_path, broker.url, "pi-01", device_key)
    with running(FleetManager(load_fleet_config(toml))) as m:
        agent.start()
        assert wait_until(lambda: m.store.device("pi-01").state == "online")  # type: ignore[union-attr]
        link = agent._link
        assert link is not None
        sock = link.link._conn.client.socket()  # type: ignore[attr-defined]
        sock.shutdown(socket.SHUT_RDWR)  # the device dies: no DISCONNECT, the broker's will
        assert wait_until(lambda: any(a.kind == "lost" for a in m.store.alerts()))
        # The agent reconnects with a new session: online again, the old will is stale.
        assert wait_until(lambda: m.store.device("pi-01").session == 2, 15)  # type: ignore[union-attr]
        agent.stop()
    states = [(t["state"], t["session"]) for t in m.store.transitions("pi-01")][::-1]
    assert states[:3] == [("online", 1), ("lost", 1), ("online", 2)]


def test_a_shared_subscription_splits_the_load(tmp_path: Path, broker: MosquittoBroker) -> None:
    toml = _fleet(tmp_path, broker.url)
    cfg = load_fleet_config(toml)
    ids = device_ids(20, "split")
    enroll_devices(cfg, [(d, simulated_key(0, d).public_key) for d in ids])
    from dataclasses import replace

    m1 = FleetManager(replace(cfg, client_id="manager-1"))
    m2 = FleetManager(replace(cfg, client_id="manager-2"))
    with running(m1), running(m2):
        report = simulate(SimulationConfig(broker=BrokerOptions(url=broker.url), devices=20,
                                           rate=400, duration_s=2, processes=0,
                                           prefix="split", presign=True))
        stored = lambda: m1.counters().get("stored", 0) + m2.counters().get("stored", 0)  # noqa: E731
        assert wait_until(lambda: stored() >= report.published + 40, 20)  # + births, offlines
    a, b = m1.counters()["stored"], m2.counters()["stored"]
    assert a > 0.25 * (a + b) and b > 0.25 * (a + b), (a, b)
    seqs = _seqs(tmp_path / "fleet.db")
    assert sum(len(v) for v in seqs.values()) == report.published
    assert all(len(v) == len(set(v)) for v in seqs.values())


@pytest.mark.chaos
def test_store_and_forward_across_a_broker_restart(tmp_path: Path, broker: MosquittoBroker) -> None:
    toml = _fleet(tmp_path, broker.url)
    keys = {f"dev-{i}": generate_key() for i in range(3)}
    enroll_devices(load_fleet_config(toml), [(d, k.public_key) for d, k in keys.items()])
    agents = [_agent(tmp_path, broker.url, d, k, interval=0.05) for d, k in keys.items()]
    with running(FleetManager(load_fleet_config(toml))) as m:
        for a in agents:
            a.start()
        time.sleep(0.5)
        broker.stop()
        time.sleep(4.0)  # the agents keep producing into their spools
        assert all(a.status().queued > 10 for a in agents)
        broker.start()
        assert all(a.flush(30) for a in agents)
        for a in agents:
            a.stop()
        produced = {d: a.status().seq for d, a in zip(keys, agents, strict=True)}
        assert wait_until(lambda: sum(len(v) for v in _seqs(tmp_path / "fleet.db").values())
                          >= sum(produced.values()), 20)
        assert m.counters().get("rejected.forged", 0) == 0
    seqs = _seqs(tmp_path / "fleet.db")
    for d, n in produced.items():
        assert seqs[d] == list(range(1, n + 1)), d  # every message, each exactly once


def _tls_broker(tmp: Path) -> tuple[MosquittoBroker, dict[str, object]]:
    ca = make_ca(tmp / "pki")
    server = issue(ca, "broker", tmp / "pki", server=True)
    certs = {n: issue(ca, n, tmp / "pki") for n in ("dev-a", "dev-b", "fleet-manager")}
    # the ACL shipped for production (deploy/mosquitto/acl), as it is
    acl = (Path(__file__).resolve().parents[2] / "deploy" / "mosquitto" / "acl").read_text()
    spec = BrokerSpec(directory=tmp / "tls-broker", tls_ca=ca.cert, tls_cert=server.cert,
                      tls_key=server.key, allow_anonymous=False, acl=acl,
                      passwords={"fleet-manager": "fleet-pw", "artifact-server": "art-pw"},
                      listeners=(Listener(tls=True, require_certificate=True,
                                          identity_as_username=True),
                                 Listener(tls=True)))
    return MosquittoBroker(spec), {"ca": ca, **certs}


def test_tls_and_acls_confine_each_device_to_its_topics(tmp_path: Path) -> None:
    broker, pki = _tls_broker(tmp_path)
    ca = pki["ca"].cert  # type: ignore[attr-defined]
    with broker:
        def opts(name: str) -> BrokerOptions:
            c = pki[name]
            return BrokerOptions(url=broker.url, ca_file=ca, cert_file=c.cert,  # type: ignore[attr-defined]
                                 key_file=c.key)  # type: ignore[attr-defined]

        key_a = generate_key()
        got: list[str] = []
        watcher = connect(opts("fleet-manager"), client_id="watcher")
        watcher.client.on_message = lambda _c, _u, msg: got.append(msg.topic)
        watcher.client.subscribe("edgeward/#", qos=1)
        watcher.client.loop_start()
        dev_a = connect(opts("dev-a"), client_id="dev-a")
        acks: dict[int, object] = {}
        dev_a.client.on_publish = lambda _c, _u, mid, rc, _p: acks.update({mid: rc})
        dev_a.client.loop_start()
        own = encode(health("dev-a"), key_a)
        theirs = encode(health("dev-b"), key_a)
        m_own = dev_a.client.publish(own.topic, own.payload, qos=1).mid
        m_theirs = dev_a.client.publish(theirs.topic, theirs.payload, qos=1).mid
        assert wait_until(lambda: m_own in acks and m_theirs in acks)
        assert not acks[m_own].is_failure  # type: ignore[attr-defined]
        assert str(acks[m_theirs]) == "Not authorized"  # MQTT 5 PUBACK reason code 0x87
        time.sleep(0.3)
        assert got == ["edgeward/v1/devices/dev-a/health"]
        # artifact chunks: a device may ask for them, and reads only those sent to it
        chunks: list[str] = []
        dev_a.client.on_message = lambda _c, _u, msg: chunks.append(msg.topic)
        digest = "ab" * 32
        req = dev_a.client.publish(f"edgeward/v1/artifacts/{digest}/req/dev-a", b"{}",
                                   qos=1).mid
        # ... only on its own request topic: not as another device, not on the old topic
        other = [dev_a.client.publish(f"edgeward/v1/artifacts/{digest}/{t}", b"{}", qos=1).mid
                 for t in ("req/dev-b", "req")]
        dev_a.client.subscribe("edgeward/v1/artifacts/+/chunks/#", qos=1)
        assert wait_until(lambda: req in acks) and not acks[req].is_failure  # type: ignore[attr-defined]
        assert wait_until(lambda: all(m in acks for m in other))
        assert [str(acks[m]) for m in other] == ["Not authorized"] * 2
        server = connect(BrokerOptions(url=broker.url_of(1), ca_file=ca,
                                       username="artifact-server", password="art-pw"),
                         client_id="artifact-server")
        server.client.loop_start()
        for device in ("dev-b", "dev-a"):
            server.client.publish(f"edgeward/v1/artifacts/{digest}/chunks/{device}", b"x",
                                  qos=1).wait_for_publish(5)
        assert wait_until(lambda: len(chunks) >= 1)
        time.sleep(0.3)
        assert chunks == [f"edgeward/v1/artifacts/{digest}/chunks/dev-a"]
        server.close()
        # The manager's password login on the second listener: TLS with server verification.
        pw = BrokerOptions(url=broker.url_of(1), ca_file=ca, username="fleet-manager",
                           password="fleet-pw")
        connect(pw, client_id="fleet-pw").close()
        with pytest.raises(ChannelError, match="refused"):
            connect(BrokerOptions(url=broker.url_of(1), ca_file=ca, username="fleet-manager",
                                  password="wrong"), client_id="x")
        with pytest.raises(ChannelError, match="TLS"):  # a server we cannot verify
            connect(BrokerOptions(url=broker.url_of(1), ca_file=make_ca(
                tmp_path / "other-ca").cert, username="fleet-manager", password="fleet-pw"),
                client_id="y")
        for c in (dev_a, watcher):
            c.close()


class V311OnlyProxy:
    """A TCP proxy to the broker that answers an MQTT 5 CONNECT the way a 3.1.1-only broker
    does (CONNACK 'unacceptable protocol version') and relays everything else."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.refused = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        first = client.recv(4096)
        # CONNECT: fixed header, remaining length, "\0\4MQTT", then the protocol level byte.
        i = 1
        while first[i] & 0x80:
            i += 1
        if first[i + 7] == 5:
            self.refused += 1
            client.sendall(b"\x20\x02\x00\x01")
            client.close()
            return
        upstream = socket.create_connection(("127.0.0.1", self.target))
        upstream.sendall(first)

        def pipe(a: socket.socket, b: socket.socket) -> None:
            try:
                while data := a.recv(65536):
                    b.sendall(data)
            except OSError:
                pass
            finally:
                for s in (a, b):
                    s.close()

        threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()
        pipe(client, upstream)

    def close(self) -> None:
        self.server.close()


def test_a_311_only_broker_gets_311_and_a_plain_subscription(tmp_path: Path,
                                                             broker: MosquittoBroker,
                                                             device_key: PrivateKey) -> None:
    proxy = V311OnlyProxy(broker.port)
    url = f"mqtt://127.0.0.1:{proxy.port}"
    toml = _fleet(tmp_path, url)
    enroll_devices(load_fleet_config(toml), [("pi-01", device_key.public_key)])
    agent = _agent(tmp_path, url, "pi-01", device_key)
    with running(FleetManager(load_fleet_config(toml))) as m:
        agent.start()
        agent.publish_health()
        assert agent.flush(10)
        assert agent.status().mqtt_version == "3.1.1" and m._version == "3.1.1"
        assert not m._shared and proxy.refused >= 2
        assert wait_until(lambda: m.counters().get("stored", 0) >= 2)
        agent.stop()
    proxy.close()


def test_the_cli_runs_a_manager_and_a_simulation(tmp_path: Path,
                                                 broker: MosquittoBroker) -> None:
    toml = _fleet(tmp_path, broker.url)
    cli = [sys.executable, "-m", "edgeward.cli"]
    manager = subprocess.Popen([*cli, "fleet", "run", "--config", str(toml), "--json",
                                "--duration", "60"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    try:
        # The manager saves its counters once it is subscribed: then nothing is unrouted.
        assert wait_until(lambda: _stats(tmp_path / "fleet.db"), 60, step=0.2)
        sim = subprocess.run([*cli, "fleet", "simulate", "--devices", "10", "--rate", "50",
                              "--duration", "2", "--broker", broker.url, "--enroll-into",
                              str(toml), "--processes", "1", "--seed",
                              str(random.randrange(1000)), "--json"],
                             capture_output=True, timeout=120, check=True)
        published = json.loads(sim.stdout)["published"]
        assert published == 100
        assert wait_until(lambda: sum(len(v) for v in _seqs(tmp_path / "fleet.db").values())
                          == published, 20)
    finally:
        manager.terminate()
        out, err = manager.communicate(timeout=30)
    assert manager.returncode == 0, err.decode()[-2000:]
    report = json.loads(out)
    # Devices enrolled after the manager started are picked up; nothing is refused.
    assert report["counters"]["stored"] >= published
    assert not any(k.startswith("rejected.") and k != "rejected.duplicate"
                   for k in report["counters"])
