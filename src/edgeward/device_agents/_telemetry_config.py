"""The telemetry client's configuration (the agent's ``[telemetry]`` table)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeward.device_agents._spool import SpoolConfig
from edgeward.errors import ConfigError
from edgeward.fleet.protocol import BrokerOptions, broker_options_from, check_device_id

__all__ = ["TelemetryConfig"]


@dataclass(frozen=True, kw_only=True)
class TelemetryConfig:
    """The telemetry client's settings (the agent's ``[telemetry]`` table).

    Attributes:
        device_id: this device's id (its topics and its MQTT client id).
        broker: the broker's URL, TLS and credentials.
        spool: the outbox file and its bounds.
        health_interval_s: seconds between health reports.
        reconnect_min_s / reconnect_max_s: the first reconnect delay and the cap of the
            exponential backoff (each delay is jittered down by up to half).
        inflight: messages published and not yet acknowledged, at most.
        drain_timeout_s: how long :meth:`TelemetryClient.stop` tries to deliver what is queued.
        fleet_acks: keep each message in the spool until the fleet manager acknowledges that
            it stored it (``edgeward/v1/devices/DEVICE/ack``), not just until the broker took
            it; ``False`` only for a broker without an edgeward fleet manager behind it.
        ack_timeout_s: send a message again when the fleet has not acknowledged it this long
            after the broker took it (doubled after each such timeout, up to 8 times).
        ack_window: messages sent and not yet acknowledged by the fleet, at most.
    """

    device_id: str
    broker: BrokerOptions
    spool: SpoolConfig
    health_interval_s: float = 30.0  # seconds
    reconnect_min_s: float = 1.0  # seconds
    reconnect_max_s: float = 60.0  # seconds
    inflight: int = 32  # messages
    drain_timeout_s: float = 5.0  # seconds
    fleet_acks: bool = True
    ack_timeout_s: float = 10.0  # seconds
    ack_window: int = 2000  # messages

    def __post_init__(self) -> None:
        check_device_id(self.device_id)
        if not 0.01 <= self.health_interval_s <= 86400:
            raise ConfigError(f"health_interval_s must be 0.01..86400 seconds, got "
                              f"{self.health_interval_s!r}")
        if not 0 < self.reconnect_min_s <= self.reconnect_max_s <= 3600:
            raise ConfigError(f"need 0 < reconnect_min_s <= reconnect_max_s <= 3600, got "
                              f"{self.reconnect_min_s!r} and {self.reconnect_max_s!r}")
        if not 1 <= self.inflight <= 65535:
            raise ConfigError(f"inflight must be 1..65535 messages, got {self.inflight!r}")
        if not 0.1 <= self.ack_timeout_s <= 3600 or not 1 <= self.ack_window <= 1_000_000:
            raise ConfigError(f"ack_timeout_s must be 0.1..3600 seconds and ack_window "
                              f"1..1000000 messages, got {self.ack_timeout_s!r} and "
                              f"{self.ack_window!r}")

    @classmethod
    def from_mapping(cls, d: Mapping[str, Any], *, device_id: str,
                     base_dir: Path) -> TelemetryConfig:
        """Build from a TOML table (``broker``, ``username``, ``password_env``, ``ca_file``,
        ``cert_file``, ``key_file``, ``mqtt_version``, ``spool``, ``spool_max_bytes``, and the
        fields above); relative paths are taken from ``base_dir``.

        Raises:
            ConfigError: an unknown key, a missing broker, a bad value.
        """
        rest = dict(d)
        broker = broker_options_from(rest, base_dir=base_dir, where="[telemetry]")
        spool_path = rest.pop("spool", "telemetry-spool.db")
        spool_opts = _typed(rest, {"spool_max_bytes": "max_bytes",
                                   "spool_max_messages": "max_messages"}, int)
        spool = SpoolConfig(path=base_dir / str(spool_path), **spool_opts)
        numbers = _typed(rest, {k: k for k in ("health_interval_s", "reconnect_min_s",
                                               "reconnect_max_s", "drain_timeout_s",
                                               "ack_timeout_s")}, float)
        ints = _typed(rest, {"inflight": "inflight", "ack_window": "ack_window"}, int)
        if "fleet_acks" in rest:
            flag = rest.pop("fleet_acks")
            if not isinstance(flag, bool):
                raise ConfigError(f"[telemetry]: fleet_acks = {flag!r} must be true or false")
            ints["fleet_acks"] = flag
        if rest:
            raise ConfigError(f"[telemetry]: unknown key(s) {sorted(rest)}")
        return cls(device_id=device_id, broker=broker, spool=spool, **numbers, **ints)


def _typed(table: dict[str, Any], names: Mapping[str, str], kind: type) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, name in names.items():
        if key in table:
            value = table.pop(key)
            ok = isinstance(value, int | float) if kind is float else isinstance(value, kind)
            if isinstance(value, bool) or not ok:
                raise ConfigError(f"[telemetry]: {key} = {value!r} must be a number")
            out[name] = kind(value)
    return out
