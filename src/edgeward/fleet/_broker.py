"""A Mosquitto broker that edgeward starts and stops itself, on a free loopback port.

The embedded default for the demo, the integration tests and the benchmarks: a real Mosquitto
process (Debian package ``mosquitto``) with a generated configuration, rather than an in-process
Python broker, because the fleet relies on MQTT 5 (shared subscriptions, PUBACK reason codes)
and on the broker's TLS and ACLs, which Mosquitto has and the pure-Python brokers lack or do
slowly. Example::

    with MosquittoBroker(BrokerSpec(directory=tmp)) as broker:
        print(broker.url)            # mqtt://127.0.0.1:PORT
        broker.stop(); broker.start()  # an outage; same port, persistence kept
        broker.kill(); broker.start()  # a crash: what was not saved is gone

docs/fleet.md shows the production configuration these files are modelled on.
"""

from __future__ import annotations

import base64
import contextlib
import getpass
import hashlib
import os
import resource
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from edgeward.errors import ConfigError, ResourceError

__all__ = ["BrokerSpec", "Listener", "MosquittoBroker", "find_mosquitto", "free_port",
           "password_line", "raise_fd_limit"]

_START_TIMEOUT_S = 10.0  # seconds for the listener to accept connections
_STOP_TIMEOUT_S = 10.0  # seconds before SIGKILL


def find_mosquitto() -> Path | None:
    """The ``mosquitto`` executable (PATH, then /usr/sbin), or None when it is not installed."""
    found = shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).is_file()),
        None)
    return Path(found) if found else None


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def password_line(user: str, password: str, *, iterations: int = 101) -> str:
    """One line of a Mosquitto 2 password file (``user:$7$ITER$SALT$HASH``, PBKDF2-SHA512)."""
    salt = os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, 64)
    return (f"{user}:$7${iterations}${base64.b64encode(salt).decode()}$"
            f"{base64.b64encode(digest).decode()}")


@dataclass(frozen=True, kw_only=True)
class Listener:
    """One listener of the broker.

    Attributes:
        port: 0 picks a free port when the broker first starts (then kept across restarts).
        tls: serve TLS with the spec's ``tls_cert``/``tls_key``.
        require_certificate: clients must present a certificate signed by ``tls_ca``.
        identity_as_username: a client certificate's common name is its MQTT user name
            (per-device identity without passwords).
    """

    port: int = 0
    tls: bool = False
    require_certificate: bool = False
    identity_as_username: bool = False


@dataclass(frozen=True, kw_only=True)
class BrokerSpec:
    """What to generate.

    Attributes:
        directory: where the configuration, password file, ACL, log and persistence go.
        host: the address to listen on (loopback).
        listeners: at least one.
        tls_ca / tls_cert / tls_key: PEM files for TLS listeners.
        passwords: user -> password (written hashed); with any, anonymous clients are refused.
        acl: the ACL file's text (``pattern write edgeward/v1/devices/%u/#`` ...).
        allow_anonymous: accept clients without credentials (only without passwords/certs).
        max_inflight: QoS 1 messages in flight to each client (MQTT 3.1.1 clients; MQTT 5
            clients set their own Receive Maximum).
        max_queued: QoS 1 messages queued per client beyond those in flight. Mosquitto's
            default of 1000 silently drops the rest, which loses telemetry under load.
        persistence: keep retained messages and sessions across restarts (on-disk).
    """

    directory: Path
    host: str = "127.0.0.1"
    listeners: tuple[Listener, ...] = (Listener(),)
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    passwords: Mapping[str, str] = field(default_factory=dict, repr=False)
    acl: str | None = None
    allow_anonymous: bool = True
    max_inflight: int = 1000  # messages
    max_queued: int = 1_000_000  # messages
    persistence: bool = True

    def __post_init__(self) -> None:
        if not self.listeners:
            raise ConfigError("a broker needs at least one listener")
        if any(li.tls for li in self.listeners) and not (
                self.tls_ca and self.tls_cert and self.tls_key):
            raise ConfigError("a TLS listener needs tls_ca, tls_cert and tls_key")


class MosquittoBroker:
    """A Mosquitto process with a generated configuration; a context manager.

    Attributes:
        spec: what was generated.
        ports: the port of each listener (known after the first start).
    """

    def __init__(self, spec: BrokerSpec, *, executable: Path | None = None) -> None:
        exe = executable or find_mosquitto()
        if exe is None:
            raise ResourceError("mosquitto is not installed (Debian: apt-get install "
                                "mosquitto); the fleet's broker helper starts it")
        self.spec = spec
        self.executable = exe
        self.ports: tuple[int, ...] = tuple(li.port or free_port(spec.host)
                                            for li in spec.listeners)
        self._proc: subprocess.Popen[bytes] | None = None
        spec.directory.mkdir(parents=True, exist_ok=True)
        self.config_path = spec.directory / "mosquitto.conf"
        self.log_path = spec.directory / "mosquitto.log"
        self.config_path.write_text(self._render(), encoding="utf-8")

    @property
    def port(self) -> int:
        """The first listener's port."""
        return self.ports[0]

    @property
    def url(self) -> str:
        """``mqtt://HOST:PORT`` (``mqtts://`` for a TLS listener) of the first listener."""
        scheme = "mqtts" if self.spec.listeners[0].tls else "mqtt"
        return f"{scheme}://{self.spec.host}:{self.port}"

    def url_of(self, index: int) -> str:
        """The URL of listener ``index``."""
        scheme = "mqtts" if self.spec.listeners[index].tls else "mqtt"
        return f"{scheme}://{self.spec.host}:{self.ports[index]}"

    def _render(self) -> str:
        s, d = self.spec, self.spec.directory
        lines = ["# generated by edgeward.fleet._broker; see docs/fleet.md",
                 "per_listener_settings false",
                 f"allow_anonymous {'true' if s.allow_anonymous else 'false'}",
                 f"max_inflight_messages {s.max_inflight}",
                 f"max_queued_messages {s.max_queued}",
                 "max_queued_bytes 0", "message_size_limit 0",
                 f"persistence {'true' if s.persistence else 'false'}",
                 f"persistence_location {d}/", "autosave_interval 0",
                 f"log_dest file {self.log_path}", "log_type error", "log_type warning",
                 "connection_messages false",
                 # Run as whoever started it: a broker started by root would otherwise drop to
                 # the `mosquitto` user and could not write its persistence here.
                 f"user {getpass.getuser()}"]
        if s.passwords:
            pw = d / "passwords"
            pw.write_text("".join(password_line(u, p) + "\n" for u, p in s.passwords.items()))
            pw.chmod(0o600)
            lines.append(f"password_file {pw}")
        if s.acl is not None:
            (d / "acl").write_text(s.acl)
            lines.append(f"acl_file {d / 'acl'}")
        for li, port in zip(s.listeners, self.ports, strict=True):
            lines.append(f"listener {port} {s.host}")
            if li.tls:
                lines += [f"cafile {s.tls_ca}", f"certfile {s.tls_cert}",
                          f"keyfile {s.tls_key}", "tls_version tlsv1.2"]
                if li.require_certificate:
                    lines.append("require_certificate true")
                if li.identity_as_username:
                    lines.append("use_identity_as_username true")
        return "\n".join(lines) + "\n"

    @property
    def pid(self) -> int | None:
        """The process id while it runs (None before the first start and after a stop)."""
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> MosquittoBroker:
        """Start the broker and wait until every listener accepts connections.

        Raises:
            ResourceError: it exited or did not listen within 10 s (the log's tail says why).
        """
        if self.running:
            return self
        raise_fd_limit()  # inherited by the broker
        log = self.log_path.open("ab")
        try:
            self._proc = subprocess.Popen(
                [str(self.executable), "-c", str(self.config_path)], stdin=subprocess.DEVNULL,
                stdout=log, stderr=log, start_new_session=True)
        finally:
            log.close()
        deadline = time.monotonic() + _START_TIMEOUT_S
        pending = list(self.ports)
        while pending and time.monotonic() < deadline:
            if self._proc.poll() is not None:
                break
            with contextlib.suppress(OSError), \
                    socket.create_connection((self.spec.host, pending[0]), timeout=0.5):
                pending.pop(0)
                continue
            time.sleep(0.02)
        if pending:
            self.stop()
            tail = self.log_path.read_text(errors="replace")[-600:] if \
                self.log_path.exists() else ""
            raise ResourceError(f"mosquitto did not start on port(s) {pending}: {tail.strip()}")
        return self

    def stop(self) -> None:
        """Stop the broker (SIGTERM, then SIGKILL after 10 s); it saves its persistence."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(_STOP_TIMEOUT_S)

    def kill(self) -> None:
        """Kill the broker (SIGKILL): a crash, so it saves nothing it had not saved before."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.kill()
        proc.wait(_STOP_TIMEOUT_S)

    def __enter__(self) -> MosquittoBroker:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def raise_fd_limit() -> None:
    """Lift this process's open-files soft limit to its hard limit (a thousand simulated
    devices are a thousand sockets, in the broker and in the simulator)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
