"""The bundled safety filter: normalisers, injection and harm classifiers, PII, policy, audit.

Runs offline in milliseconds on small CPUs, on prompts and on streamed outputs.

Not implemented yet (a later issue). May import :mod:`edgeward.errors` only.
"""

__all__: list[str] = []
