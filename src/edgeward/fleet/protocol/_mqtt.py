"""Connecting to the broker with paho-mqtt: URL, TLS, credentials, MQTT 5 with a 3.1.1 fallback.

Shared by the device agent, the fleet manager and the simulator, so that every side speaks to the
broker the same way. paho's exceptions and reason codes are translated into
:class:`~edgeward.errors.ChannelError` here; nothing outside this module sees them.
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edgeward.errors import ChannelError, ConfigError
from edgeward.fleet.protocol._codec import WireMessage

__all__ = ["BrokerOptions", "Connection", "MqttVersion", "client_id_for", "connect", "tls_context"]

MqttVersion = Literal["auto", "5", "3.1.1"]
_DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
_UNSUPPORTED_PROTOCOL = 132  # CONNACK reason code "Unsupported protocol version"


@dataclass(frozen=True, kw_only=True)
class BrokerOptions:
    """How to reach and authenticate to the broker.

    Attributes:
        url: ``mqtt://HOST[:PORT]`` (plain, default port 1883) or ``mqtts://HOST[:PORT]`` (TLS
            with server verification, default port 8883). A user and password in the URL are
            taken as credentials.
        username / password: MQTT credentials (the password is never shown in a repr).
        ca_file: PEM CA bundle that verifies the broker's certificate (``mqtts``); ``None``
            uses the system's CAs. The broker's host name must match its certificate.
        cert_file / key_file: a client certificate and its key, for brokers that authenticate
            clients by certificate (``mqtts``).
        version: ``auto`` tries MQTT 5 and falls back to 3.1.1 when the broker refuses it.
        keepalive_s: MQTT keep-alive; a silent connection is declared dead after 1.5 times it.
        connect_timeout_s: time allowed for TCP, TLS and the CONNACK.
    """

    url: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    version: MqttVersion = "auto"
    keepalive_s: int = 30  # seconds
    connect_timeout_s: float = 10.0  # seconds

    def __post_init__(self) -> None:
        try:  # urlsplit raises ValueError for a bracketed host that is not an IP address
            parts = urlsplit(self.url) if isinstance(self.url, str) else None
        except ValueError:
            parts = None
        if parts is None or parts.scheme not in _DEFAULT_PORTS or not parts.hostname \
                or parts.path not in ("", "/"):
            raise ConfigError(f"broker URL {self.url!r} is not mqtt://HOST[:PORT] or "
                              "mqtts://HOST[:PORT]")
        try:
            parts.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError as e:
            raise ConfigError(f"broker URL {self.url!r}: {e}") from None
        if parts.username is not None:  # credentials in the URL: keep them out of it (logs)
            if self.username is None:
                object.__setattr__(self, "username", unquote(parts.username))
                object.__setattr__(self, "password", unquote(parts.password or "") or None)
            netloc = parts.netloc.rsplit("@", 1)[1]
            object.__setattr__(self, "url", f"{parts.scheme}://{netloc}")
        if self.version not in ("auto", "5", "3.1.1"):
            raise ConfigError(f"MQTT version must be auto, 5 or 3.1.1, got {self.version!r}")
        if (self.cert_file is None) != (self.key_file is None):
            raise ConfigError("a client certificate needs both cert_file and key_file")
        if not self.tls and (self.ca_file or self.cert_file):
            raise ConfigError(f"{self.url}: ca_file/cert_file need an mqtts:// URL")
        if not 1 <= self.keepalive_s <= 65535 or not 0 < self.connect_timeout_s <= 600:
            raise ConfigError(f"keepalive_s must be 1..65535 and connect_timeout_s 0..600, got "
                              f"{self.keepalive_s!r} and {self.connect_timeout_s!r}")

    @property
    def tls(self) -> bool:
        """Whether the URL asks for TLS (``mqtts://``)."""
        return urlsplit(self.url).scheme == "mqtts"

    @property
    def host(self) -> str:
        """The broker's host name or address."""
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        """The broker's port (the scheme's default when the URL has none)."""
        parts = urlsplit(self.url)
        return parts.port or _DEFAULT_PORTS[parts.scheme]

    @property
    def display_url(self) -> str:
        """The URL without credentials, for logs."""
        return f"{urlsplit(self.url).scheme}://{self.host}:{self.port}"


def tls_context(options: BrokerOptions) -> ssl.SSLContext:
    """A client TLS context that verifies the broker (and presents a client certificate).

    Raises:
        ConfigError: a CA, certificate or key file is missing or unreadable.
    """
    try:
        ctx = ssl.create_default_context(
            cafile=str(options.ca_file) if options.ca_file else None)
        if options.cert_file and options.key_file:
            ctx.load_cert_chain(str(options.cert_file), str(options.key_file))
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(f"TLS files for {options.display_url}: {e}") from e
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


@dataclass
class Connection:
    """A connected paho client and the MQTT version the broker accepted.

    Attributes:
        client: the paho client, connected; the caller runs its network loop.
        version: ``"5"`` or ``"3.1.1"``.
        session_present: the broker resumed a stored session.
    """

    client: mqtt.Client
    version: Literal["5", "3.1.1"]
    session_present: bool = False

    def close(self) -> None:
        """Disconnect cleanly (no Last Will) and stop paho's thread if it runs."""
        try:
            self.client.disconnect()
            self.client.loop_stop()
        except (OSError, ValueError, RuntimeError):
            pass  # closing a dead connection: nothing left to do


def connect(options: BrokerOptions, *, client_id: str, will: WireMessage | None = None,
            clean_start: bool = True, session_expiry_s: int = 0, manual_ack: bool = False,
            receive_maximum: int | None = None,
            setup: Callable[[mqtt.Client], None] | None = None) -> Connection:
    """Open one MQTT connection and wait for the broker's CONNACK.

    With ``version="auto"`` it offers MQTT 5 and, if the broker refuses that version (or hangs up
    before answering), 3.1.1. The caller then runs the client's network loop
    (``loop_start()``, or ``loop()`` calls on its own thread).

    Args:
        options: where and how.
        client_id: the MQTT client id.
        will: the Last Will (published by the broker if the connection dies).
        clean_start: start a fresh session (``False`` resumes a stored one).
        session_expiry_s: how long the broker keeps the session after a disconnect (MQTT 5;
            with 3.1.1 a non-clean session never expires).
        manual_ack: acknowledge received QoS 1 messages only by ``client.ack()``.
        receive_maximum: at most this many unacknowledged QoS 1 messages in flight to us
            (MQTT 5).
        setup: called with each new client before it connects (callbacks, options).

    Returns:
        The connection.

    Raises:
        ChannelError: the broker cannot be reached, the TLS handshake failed, the CONNACK did
            not come in time, or the broker refused the client (the message says why).
        ConfigError: bad TLS files.
    """
    versions: list[Literal["5", "3.1.1"]] = (["5", "3.1.1"] if options.version == "auto"
                                             else [options.version])
    last: ChannelError | None = None
    for version in versions:
        try:
            return _connect_once(options, version, client_id=client_id, will=will,
                                 clean_start=clean_start, session_expiry_s=session_expiry_s,
                                 manual_ack=manual_ack, receive_maximum=receive_maximum,
                                 setup=setup)
        except _VersionRefusedError as e:
            last = ChannelError(f"{options.display_url}: {e}")
    assert last is not None
    raise last


class _VersionRefusedError(ChannelError):
    """The broker did not accept this MQTT version (try the next one)."""


def _new_client(options: BrokerOptions, v5: bool, *, client_id: str, will: WireMessage | None,
                clean_start: bool, manual_ack: bool) -> mqtt.Client:
    proto = MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=proto,
                         clean_session=None if v5 else clean_start,
                         reconnect_on_failure=False, manual_ack=manual_ack)
    client.connect_timeout = options.connect_timeout_s
    client.suppress_exceptions = False
    if options.tls:
        client.tls_set_context(tls_context(options))
    if options.username is not None:
        client.username_pw_set(options.username, options.password)
    if will is not None:
        client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
    return client


def _connect_once(options: BrokerOptions, version: Literal["5", "3.1.1"], *, client_id: str,
                  will: WireMessage | None, clean_start: bool, session_expiry_s: int,
                  manual_ack: bool, receive_maximum: int | None,
                  setup: Callable[[mqtt.Client], None] | None) -> Connection:
    v5 = version == "5"
    client = _new_client(options, v5, client_id=client_id, will=will, clean_start=clean_start,
                         manual_ack=manual_ack)
    answer: dict[str, Any] = {}

    def on_connect(_c: mqtt.Client, _u: object, flags: Any, reason: Any, _p: object) -> None:
        answer["reason"] = reason
        answer["session_present"] = bool(getattr(flags, "session_present", False))

    client.on_connect = on_connect
    if setup is not None:
        setup(client)
    props: Properties | None = None
    if v5:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = session_expiry_s
        if receive_maximum:
            props.ReceiveMaximum = receive_maximum
    where = options.display_url
    try:
        client.connect(options.host, options.port, keepalive=options.keepalive_s,
                       clean_start=clean_start if v5 else mqtt.MQTT_CLEAN_START_FIRST_ONLY,
                       properties=props)
        deadline = time.monotonic() + options.connect_timeout_s
        while "reason" not in answer and time.monotonic() < deadline:
            rc = client.loop(timeout=0.05)
            if rc != mqtt.MQTT_ERR_SUCCESS and "reason" not in answer:
                raise (_VersionRefusedError if v5 else ChannelError)(
                    f"the broker closed the connection before accepting it "
                    f"({mqtt.error_string(rc)}) with MQTT {version}")
    except ssl.SSLError as e:
        _quiet_close(client)
        raise ChannelError(f"{where}: TLS handshake failed ({e.reason or e}); check ca_file "
                           "and that the broker's certificate names this host") from e
    except OSError as e:  # refused, unreachable, DNS, timeout
        _quiet_close(client)
        raise ChannelError(f"{where}: cannot connect ({e.strerror or e})") from e
    except ChannelError:
        _quiet_close(client)
        raise
    if "reason" not in answer:
        _quiet_close(client)
        raise ChannelError(f"{where}: no CONNACK within {options.connect_timeout_s:g} s")
    reason = answer["reason"]
    if reason.is_failure:
        _quiet_close(client)
        if v5 and reason.value == _UNSUPPORTED_PROTOCOL:
            raise _VersionRefusedError(f"the broker does not speak MQTT 5 ({reason})")
        raise ChannelError(f"{where}: the broker refused the connection: {reason}")
    return Connection(client, version, answer["session_present"])


def _quiet_close(client: mqtt.Client) -> None:
    client.disconnect()  # returns an error code, never raises, when not connected
    sock = client.socket()
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.close()


def client_id_for(prefix: str) -> str:
    """A client id unique to this host and process: ``PREFIX-HOST-PID``."""
    host = socket.gethostname().split(".")[0][:24] or "host"
    return f"{prefix}-{host}-{os.getpid()}"
