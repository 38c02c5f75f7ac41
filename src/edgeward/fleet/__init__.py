"""The fleet manager and the MQTT wire protocol (``edgeward/v1/...``).

- :mod:`edgeward.fleet.protocol`: topics, signed messages, strict parsing, the paho-mqtt
  connection (shared with the device agent, which may import it and nothing else from here);
- :class:`FleetManager` (``edgeward fleet run``): verified ingest of device telemetry into a
  :class:`Store` (SQLite, or PostgreSQL with the ``postgres`` extra), exactly once per
  ``(device, seq)``, on an MQTT 5 shared subscription so several managers split the load;
- :func:`enroll_devices` (``edgeward fleet enroll``): the device registry;
- :func:`simulate` (``edgeward fleet simulate``): load tests with many simulated devices;
- :class:`MosquittoBroker`: a Mosquitto that edgeward starts on a free port (tests, demo).

Example::

    from pathlib import Path
    from edgeward.fleet import FleetManager, load_fleet_config

    manager = FleetManager(load_fleet_config(Path("fleet.toml")))
    report = manager.run(duration_s=60)
    print(report.counters)           # received, stored, rejected.forged, ...

The names here are loaded on first use, so importing :mod:`edgeward.fleet.protocol` (as the
agent does) does not load the manager. May import :mod:`edgeward.provenance` and
:mod:`edgeward.errors`; never a runtime. See docs/fleet.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgeward.fleet._alerts import AlertRules, behaviour_overview
    from edgeward.fleet._artifacts import ArtifactServer
    from edgeward.fleet._broker import (
        BrokerSpec,
        Listener,
        MosquittoBroker,
        find_mosquitto,
        free_port,
    )
    from edgeward.fleet._config import FleetConfig, load_fleet_config
    from edgeward.fleet._enroll import enroll_devices
    from edgeward.fleet._manager import FleetManager, ManagerReport
    from edgeward.fleet._operator import Operator
    from edgeward.fleet._rollout import parse_fraction, parse_stages, summarize
    from edgeward.fleet._simulate import (
        SimulationConfig,
        SimulationReport,
        device_ids,
        simulate,
        simulated_key,
    )
    from edgeward.fleet._store import Alert, DeviceRecord, Store, open_store

__all__ = [
    "Alert",
    "AlertRules",
    "ArtifactServer",
    "BrokerSpec",
    "DeviceRecord",
    "FleetConfig",
    "FleetManager",
    "Listener",
    "ManagerReport",
    "MosquittoBroker",
    "Operator",
    "SimulationConfig",
    "SimulationReport",
    "Store",
    "behaviour_overview",
    "device_ids",
    "enroll_devices",
    "find_mosquitto",
    "free_port",
    "load_fleet_config",
    "open_store",
    "parse_fraction",
    "parse_stages",
    "simulate",
    "simulated_key",
    "summarize",
]

_WHERE = {
    "AlertRules": "_alerts", "behaviour_overview": "_alerts", "BrokerSpec": "_broker",
    "Listener": "_broker",
    "MosquittoBroker": "_broker", "FleetConfig": "_config", "load_fleet_config": "_config",
    "enroll_devices": "_enroll", "FleetManager": "_manager", "ManagerReport": "_manager",
    "SimulationConfig": "_simulate", "SimulationReport": "_simulate", "simulate": "_simulate",
    "Alert": "_store", "DeviceRecord": "_store", "Store": "_store", "open_store": "_store",
    "ArtifactServer": "_artifacts", "find_mosquitto": "_broker", "free_port": "_broker",
    "Operator": "_operator", "parse_fraction": "_rollout", "parse_stages": "_rollout",
    "summarize": "_rollout", "device_ids": "_simulate", "simulated_key": "_simulate",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'edgeward.fleet' has no attribute {name!r}")
    return getattr(importlib.import_module(f"edgeward.fleet.{module}"), name)
