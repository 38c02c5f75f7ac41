"""The fleet manager and the MQTT wire protocol (``edgeward/v1/...``).

Verified ingest of device telemetry, the device registry and store, rollouts.

Not implemented yet (later issues). May import :mod:`edgeward.provenance` and
:mod:`edgeward.errors`; never a runtime.
"""

__all__: list[str] = []
