"""The fleet manager's configuration (``fleet.toml``): one frozen, validated record.

Example::

    broker = "mqtts://broker.example:8883"
    username = "fleet"
    password_env = "EDGEWARD_FLEET_PASSWORD"
    ca_file = "ca.pem"
    store = "fleet.db"                       # or "postgresql://fleet@db/fleet"
    trust_store = "trust"                    # device keys' revocations; publisher keys

    [alerts]
    max_temperature_c = 80

Relative paths are taken from the file's directory. docs/fleet.md lists every key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeward.errors import ConfigError
from edgeward.fleet._alerts import AlertRules
from edgeward.fleet.protocol import BrokerOptions, broker_options_from
from edgeward.safeio import MAX_CONFIG_BYTES, parse_toml, read_text_capped

__all__ = ["FleetConfig", "load_fleet_config"]


@dataclass(frozen=True, kw_only=True)
class FleetConfig:
    """What ``edgeward fleet run`` does.

    Attributes:
        broker: the broker's URL, TLS and credentials.
        store: a SQLite path (relative to ``base_dir``), ``postgresql://...`` or ``memory:``.
        trust_store: a trust store directory: revocations of device keys are honoured, and
            publisher keys verify the statements in provenance reports.
        base_dir: the config file's directory.
        client_id: a fixed MQTT client id makes the broker session (and what it queued for
            this manager) survive a restart of the manager; default ``edgeward-fleet-HOST-PID``.
        share_group: the MQTT 5 shared-subscription group; ``""`` subscribes plainly.
        session_expiry_s: how long the broker keeps this manager's session while it is away.
        batch_size: messages per store transaction at most.
        batch_wait_s: the longest a received message waits for its batch.
        receive_maximum: unacknowledged messages the broker may send at once (MQTT 5); a
            message is acknowledged only once its batch is committed.
        sqlite_synchronous: ``FULL`` (fsync each commit) or ``NORMAL``.
        stats_interval_s: how often the counters are saved to the store.
        alerts: the alert rules.
    """

    broker: BrokerOptions
    store: str
    trust_store: Path | None = None
    base_dir: Path = field(default_factory=Path.cwd)
    client_id: str | None = None
    share_group: str = "fleet"
    session_expiry_s: int = 300  # seconds
    batch_size: int = 500  # messages
    batch_wait_s: float = 0.02  # seconds
    receive_maximum: int = 2000  # messages
    sqlite_synchronous: str = "FULL"
    stats_interval_s: float = 1.0  # seconds
    alerts: AlertRules = field(default_factory=AlertRules)

    def __post_init__(self) -> None:
        if not 1 <= self.batch_size <= 100_000 or not 0 < self.batch_wait_s <= 10:
            raise ConfigError(f"batch_size must be 1..100000 and batch_wait_ms 1..10000, got "
                              f"{self.batch_size!r} and {self.batch_wait_s * 1000:g}")
        if not 1 <= self.receive_maximum <= 65535:
            raise ConfigError(f"receive_maximum must be 1..65535, got {self.receive_maximum!r}")
        if self.sqlite_synchronous not in ("FULL", "NORMAL"):
            raise ConfigError(f"sqlite_synchronous must be FULL or NORMAL, got "
                              f"{self.sqlite_synchronous!r}")
        if any(c in self.share_group for c in "/+#$"):
            raise ConfigError(f"share_group {self.share_group!r}: one topic level")


_TYPES: dict[str, tuple[type, ...]] = {
    "store": (str,), "trust_store": (str,), "client_id": (str,), "share_group": (str,),
    "session_expiry_s": (int,), "batch_size": (int,), "batch_wait_ms": (int, float),
    "receive_maximum": (int,), "sqlite_synchronous": (str,), "stats_interval_s": (int, float),
    "alerts": (dict,),
}


def load_fleet_config(path: Path, *, resolve_secrets: bool = True) -> FleetConfig:
    """Read and validate ``fleet.toml``.

    Args:
        path: the file.
        resolve_secrets: read the broker password from ``password_env`` (off for commands
            that only query the store).

    Raises:
        ConfigError: missing or unreadable file, bad TOML, an unknown key, a bad value (the
            message names the file, the key and the value).
    """
    text = read_text_capped(path, MAX_CONFIG_BYTES, what="fleet config")
    data: dict[str, Any] = parse_toml(text, what=str(path))
    return fleet_config_from(data, base_dir=path.resolve().parent, where=str(path),
                             resolve_secrets=resolve_secrets)


def fleet_config_from(data: dict[str, Any], *, base_dir: Path, where: str,
                      resolve_secrets: bool = True) -> FleetConfig:
    """Build a :class:`FleetConfig` from a parsed TOML table (see :func:`load_fleet_config`).

    Raises:
        ConfigError: an unknown key or a bad value.
    """
    rest = dict(data)
    broker = broker_options_from(rest, base_dir=base_dir, where=where,
                                 resolve_secrets=resolve_secrets)
    for key, value in rest.items():
        kinds = _TYPES.get(key)
        if kinds is None:
            raise ConfigError(f"{where}: unknown key {key!r}")
        if isinstance(value, bool) or not isinstance(value, kinds):
            raise ConfigError(f"{where}: {key} = {value!r} has the wrong type")
    if "store" not in rest:
        raise ConfigError(f"{where}: 'store' (a SQLite path or postgresql:// URL) is required")
    kw: dict[str, Any] = {k: rest[k] for k in ("store", "client_id", "share_group",
                                               "session_expiry_s", "batch_size",
                                               "receive_maximum", "sqlite_synchronous",
                                               "stats_interval_s") if k in rest}
    if "batch_wait_ms" in rest:
        kw["batch_wait_s"] = float(rest["batch_wait_ms"]) / 1000
    if "trust_store" in rest:
        kw["trust_store"] = base_dir / rest["trust_store"]
    if "alerts" in rest:
        try:
            kw["alerts"] = AlertRules(**rest["alerts"])
        except TypeError as e:
            raise ConfigError(f"{where}: [alerts]: {e}") from e
    return FleetConfig(broker=broker, base_dir=base_dir, **kw)
