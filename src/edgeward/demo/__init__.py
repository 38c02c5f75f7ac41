"""The end-to-end demo behind ``make demo`` and ``edgeward demo``.

It runs a whole deployment on loopback, every part real: an embedded Mosquitto, a fleet
manager, an artifact server and three device agents in their own processes, SmolLM2
compressed per hardware profile, signed, rolled out over MQTT, served behind the safety
filter, audited, and attacked with a tampered artifact. See :mod:`edgeward.demo._mission`::

    from edgeward.demo import run_demo, DemoOptions

    result = run_demo(DemoOptions(), on_step=print)
    print(result.to_dict()["tamper"])

Like :mod:`edgeward.cli`, this package sits on top and may import every package.
"""

from edgeward.demo._mission import DEFAULT_QUESTION, DemoOptions, DemoResult, run_demo

__all__ = ["DEFAULT_QUESTION", "DemoOptions", "DemoResult", "run_demo"]
