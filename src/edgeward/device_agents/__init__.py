"""The device agent: verified loading, the local OpenAI-compatible API, telemetry, updates, slots.

Not implemented yet (later issues). May import :mod:`edgeward.runtimes`,
:mod:`edgeward.safety`, :mod:`edgeward.provenance`, :mod:`edgeward.fleet.protocol`,
:mod:`edgeward.hardware_profiles` and :mod:`edgeward.errors`; never the fleet manager.
"""

__all__: list[str] = []
