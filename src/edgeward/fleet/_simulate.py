"""The fleet simulator: N simulated agents publishing signed health at a set aggregate rate.

No model and no spool: each simulated device is one paho-mqtt client (its own connection,
client id, signed birth and Last Will, and Ed25519 key), and many of them are multiplexed on one
``selectors`` loop per worker process. Device keys are derived from ``seed`` and the device id,
so a re-run reuses the keys ``--enroll-into`` enrolled; ``seq`` starts at the run's start time
in milliseconds, so it keeps increasing across runs (at most 1000 messages/s per device).
These keys are for load tests only: anyone who knows the seed can sign as the device.

With ``presign`` every message is signed before the clock starts, so the simulator's CPU goes to
publishing and the manager's ingest is what a benchmark measures; without it each message is
signed when it is due (its ``time`` is then the moment of publishing).
"""

from __future__ import annotations

import contextlib
import hashlib
import multiprocessing as mp
import queue
import selectors
import time
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from edgeward.errors import ChannelError, ConfigError
from edgeward.fleet._broker import raise_fd_limit
from edgeward.fleet.protocol import (
    BrokerOptions,
    DeviceState,
    HealthReport,
    HealthSample,
    StateMessage,
    WireMessage,
    connect,
    encode,
    tls_context,
)
from edgeward.provenance import PrivateKey

__all__ = ["SimulationConfig", "SimulationReport", "device_ids", "simulate", "simulated_key"]


@dataclass(frozen=True, kw_only=True)
class SimulationConfig:
    """A load to generate.

    Attributes:
        broker: where to publish.
        devices: simulated devices (one MQTT connection each).
        rate: aggregate health reports per second, spread evenly over the devices.
        duration_s: seconds of publishing.
        processes: worker processes (0: in this process, for tests).
        seed: derives the device keys.
        prefix: device ids are ``PREFIX-00000``...
        presign: sign every message before the clock starts.
        drain_s: after the last publish, how long to wait for the broker's acknowledgements.
        record: return each message's (device, seq, publish time) for latency measurements.
    """

    broker: BrokerOptions
    devices: int
    rate: float  # messages per second, all devices together
    duration_s: float  # seconds
    processes: int = 2
    seed: int = 0
    prefix: str = "sim"
    presign: bool = False
    drain_s: float = 10.0  # seconds
    record: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.devices <= 100_000 or not 0 < self.rate <= 1_000_000:
            raise ConfigError(f"devices must be 1..100000 and rate > 0, got {self.devices!r} "
                              f"and {self.rate!r}")
        if self.rate / self.devices > 1000:
            raise ConfigError(f"{self.rate / self.devices:g} messages/s per device: at most "
                              "1000 (seq numbers are milliseconds since the run started)")
        if not 0 < self.duration_s <= 86400 or not 0 <= self.processes <= 64:
            raise ConfigError(f"duration_s must be 0..86400 and processes 0..64, got "
                              f"{self.duration_s!r} and {self.processes!r}")


@dataclass(frozen=True)
class SimulationReport:
    """What was published.

    Attributes:
        devices: devices simulated; connected: how many connected.
        published / acked: health reports published and acknowledged by the broker (QoS 1).
        duration_s: seconds from the first to the last publish.
        offered_rate: the configured rate; achieved_rate: published / duration_s.
        late_p99_s: the 99th percentile of how late publishes were against the schedule.
        seq_base: every device's seqs in this run are ``seq_base + 1...``.
        records: (device id, seq, publish time) of every message, when asked for.
    """

    devices: int
    connected: int
    published: int
    acked: int
    duration_s: float
    offered_rate: float
    achieved_rate: float
    late_p99_s: float
    seq_base: int
    records: list[tuple[str, int, float]] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The ``edgeward fleet simulate --json`` object (without the records)."""
        return {k: v for k, v in self.__dict__.items() if k != "records"}


def device_ids(count: int, prefix: str = "sim") -> list[str]:
    """The simulated devices' ids."""
    return [f"{prefix}-{i:05d}" for i in range(count)]


def simulated_key(seed: int, device_id: str) -> PrivateKey:
    """The deterministic Ed25519 key of a simulated device (load tests only)."""
    raw = hashlib.sha256(f"edgeward-simulator:{seed}:{device_id}".encode()).digest()
    pem = ed25519.Ed25519PrivateKey.from_private_bytes(raw).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    return PrivateKey.from_pem(pem)


def simulate(config: SimulationConfig) -> SimulationReport:
    """Run the simulation and report what was published.

    Raises:
        ChannelError: the broker cannot be reached.
    """
    probe = connect(config.broker, client_id=f"{config.prefix}-probe-{time.time_ns()}")
    version = probe.version
    probe.close()
    ids = device_ids(config.devices, config.prefix)
    seq_base = int(time.time() * 1000)
    n = max(1, config.processes)
    shares = [ids[i::n] for i in range(n)]
    jobs = [_Job(config, share, config.rate * len(share) / len(ids), seq_base, version)
            for share in shares if share]
    if config.processes == 0:
        results = [_Devices(jobs[0]).run(time.time() + 0.2)]
    else:
        results = _in_processes(jobs, timeout_s=config.duration_s + config.drain_s + 300)
    published = sum(r["published"] for r in results)
    first = min((r["first"] for r in results if r["published"]), default=0.0)
    last = max((r["last"] for r in results if r["published"]), default=0.0)
    late = sorted(x for r in results for x in r["late"])
    duration = max(last - first, 1e-9)
    return SimulationReport(
        devices=config.devices, connected=sum(r["connected"] for r in results),
        published=published, acked=sum(r["acked"] for r in results),
        duration_s=round(duration, 3), offered_rate=config.rate,
        achieved_rate=round(published / duration, 1) if published > 1 else 0.0,
        late_p99_s=round(late[int(0.99 * (len(late) - 1))], 4) if late else 0.0,
        seq_base=seq_base, records=[x for r in results for x in r["records"]])


@dataclass(frozen=True)
class _Job:
    config: SimulationConfig
    ids: list[str]
    rate: float
    seq_base: int
    version: str


def _worker(job: _Job, ready: Any, go: Any, results: Any) -> None:
    try:
        raise_fd_limit()
        sim = _Devices(job)
        ready.put(None)
        results.put(sim.run(go.get(timeout=600)))
    except BaseException as e:
        ready.put(f"{type(e).__name__}: {e}")
        raise


def _in_processes(jobs: list[_Job], *, timeout_s: float) -> list[dict[str, Any]]:
    """Run each job in its own (spawned) process, start them together, collect the results.

    Raises:
        ChannelError: a worker failed (its error is in the message) or timed out.
    """
    ctx = mp.get_context("spawn")  # no fork: the caller may run threads (a manager, tests)
    ready, go, results = ctx.Queue(), ctx.Queue(), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(job, ready, go, results), daemon=True)
             for job in jobs]
    for p in procs:
        p.start()
    try:
        for _ in procs:
            try:
                problem = ready.get(timeout=300)
            except queue.Empty:
                raise ChannelError("a simulator worker did not get ready in 300 s") from None
            if problem is not None:
                raise ChannelError(f"a simulator worker failed: {problem}")
        start = time.time() + 0.5
        for _ in procs:
            go.put(start)
        try:
            return [results.get(timeout=timeout_s) for _ in procs]
        except queue.Empty:
            raise ChannelError(f"the simulation did not finish in {timeout_s:.0f} s") from None
    finally:
        for p in procs:
            p.join(5)
            if p.is_alive():
                p.kill()


class _Devices:
    """One worker's devices on one selectors loop."""

    def __init__(self, job: _Job) -> None:
        self.job, cfg = job, job.config
        self.keys = [simulated_key(cfg.seed, d) for d in job.ids]
        self.total = int(job.rate * cfg.duration_s)
        self.sel = selectors.DefaultSelector()
        self.acked = 0
        self.connected = 0
        self.clients = [self._client(i) for i in range(len(job.ids))]
        self.signed: list[WireMessage] = ([self._health(k) for k in range(self.total)]
                                          if cfg.presign else [])

    def _health(self, k: int, now: float | None = None) -> WireMessage:
        i = k % len(self.job.ids)
        seq = self.job.seq_base + k // len(self.job.ids) + 1
        t = now if now is not None else time.time()
        sample = HealthSample(uptime_s=float(k // len(self.job.ids)), cpu_percent=12.5,
                              load_1m=0.4, memory_used_bytes=2**30, memory_total_bytes=2**33,
                              temperature_c=48.0, decode_tokens_per_s=25.0, queue_depth=0,
                              safety_decisions={"allow": k}, artifact_digest="ab" * 32,
                              slot="a")
        return encode(HealthReport(device_id=self.job.ids[i], seq=seq, time=t,
                                   metrics=sample), self.keys[i])

    def _state(self, i: int, state: DeviceState) -> WireMessage:
        return encode(StateMessage(device_id=self.job.ids[i], state=state,
                                   session=self.job.seq_base, time=time.time()), self.keys[i])

    def _client(self, i: int) -> mqtt.Client:
        b = self.job.config.broker
        proto = MQTTProtocolVersion.MQTTv5 if self.job.version == "5" else \
            MQTTProtocolVersion.MQTTv311
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.job.ids[i], protocol=proto,
                        reconnect_on_failure=False)
        if b.tls:
            c.tls_set_context(tls_context(b))
        if b.username is not None:
            c.username_pw_set(b.username, b.password)
        w = self._state(i, DeviceState.LOST)
        c.will_set(w.topic, w.payload, qos=1, retain=True)

        def on_connect(*_a: Any) -> None:
            self.connected += 1

        def on_publish(*_a: Any) -> None:
            self.acked += 1

        c.on_connect, c.on_publish = on_connect, on_publish
        c.on_socket_open = lambda cl, _u, s: self._open(s, cl)
        c.on_socket_close = lambda _c, _u, s: self._forget(s)
        c.on_socket_register_write = lambda cl, _u, s: self._watch(s, cl, write=True)
        c.on_socket_unregister_write = lambda cl, _u, s: self._watch(s, cl, write=False)
        try:
            c.connect(b.host, b.port, keepalive=b.keepalive_s)
        except OSError as e:
            raise ChannelError(f"{b.display_url}: simulated device {self.job.ids[i]} cannot "
                               f"connect ({e})") from e
        return c

    def _open(self, sock: Any, client: mqtt.Client) -> None:
        self.sel.register(sock, selectors.EVENT_READ, client)

    def _watch(self, sock: Any, client: mqtt.Client, *, write: bool) -> None:
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if write else 0)
        with contextlib.suppress(KeyError, ValueError):  # not registered (yet, or any more)
            self.sel.modify(sock, events, client)

    def _forget(self, sock: Any) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(sock)

    def _poll(self, timeout: float) -> None:
        for key, events in self.sel.select(timeout):
            c: mqtt.Client = key.data
            if events & selectors.EVENT_READ:
                c.loop_read()
            if events & selectors.EVENT_WRITE and c.want_write():
                c.loop_write()

    def _wait(self, done: Any, timeout: float) -> None:
        end = time.monotonic() + timeout
        next_misc = 0.0
        while not done() and time.monotonic() < end:
            self._poll(0.05)
            if time.monotonic() >= next_misc:
                for c in self.clients:
                    c.loop_misc()
                next_misc = time.monotonic() + 1.0

    def run(self, start: float) -> dict[str, Any]:
        cfg, n = self.job.config, len(self.clients)
        self._wait(lambda: self.connected >= n, 60.0)
        for i, c in enumerate(self.clients):
            w = self._state(i, DeviceState.ONLINE)
            c.publish(w.topic, w.payload, qos=1, retain=True)
        births = n
        self._wait(lambda: self.acked >= births, 30.0)
        self.acked -= births
        while time.time() < start:
            self._poll(min(0.05, max(0.0, start - time.time())))
        records: list[tuple[str, int, float]] = []
        late: list[float] = []
        t0 = time.monotonic() - (time.time() - start)
        first = last = 0.0
        k, next_misc = 0, 0.0
        while k < self.total:
            now = time.monotonic()
            due = t0 + k / self.job.rate
            while k < self.total and due <= now:
                wire = self.signed[k] if cfg.presign else self._health(k)
                c = self.clients[k % n]
                c.publish(wire.topic, wire.payload, qos=1)
                last = time.time()
                first = first or last
                if cfg.record:
                    records.append((self.job.ids[k % n],
                                    self.job.seq_base + k // n + 1, last))
                if k % 16 == 0:
                    late.append(max(0.0, time.monotonic() - due))
                k += 1
                due = t0 + k / self.job.rate
            self._poll(max(0.0, min(0.02, due - time.monotonic())))
            if now >= next_misc:
                for cl in self.clients:
                    cl.loop_misc()
                next_misc = now + 1.0
        self._wait(lambda: self.acked >= self.total, cfg.drain_s)
        acked = self.acked
        for i, c in enumerate(self.clients):
            w = self._state(i, DeviceState.OFFLINE)
            c.publish(w.topic, w.payload, qos=1, retain=True)
        self._wait(lambda: self.acked >= acked + n, 10.0)
        for c in self.clients:
            c.disconnect()
        self._poll(0.1)
        self.acked = acked
        return {"published": self.total, "acked": self.acked, "connected": self.connected,
                "first": first, "last": last, "late": late, "records": records}
