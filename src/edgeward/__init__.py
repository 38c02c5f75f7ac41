"""edgeward: compress, sign, ship and run open-weights models on devices people own.

The package is laid out as the architecture (see the project's DESIGN.md):

- :mod:`edgeward.hardware_profiles` - what a target can hold and run; the catalog; detection.
- :mod:`edgeward.compress` - quantize, prune and evaluate models for a profile.
- :mod:`edgeward.provenance` - digests, signed statements, trust stores, verification.
- :mod:`edgeward.runtimes` - one Runtime interface over llama.cpp and ONNX Runtime.
- :mod:`edgeward.safety` - the bundled safety filter.
- :mod:`edgeward.device_agents` - the agent that runs on each device.
- :mod:`edgeward.fleet` - the fleet manager and the MQTT wire protocol.
- :mod:`edgeward.tui` - the terminal UI.
- :mod:`edgeward.errors` - the one exception tree.
- :mod:`edgeward.cli` - the ``edgeward`` command, a thin layer over the packages above.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
