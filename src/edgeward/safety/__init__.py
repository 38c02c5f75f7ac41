"""The bundled safety filter: normalisers, injection and harm classifiers, PII, policy, audit.

Runs offline in milliseconds on small CPUs, on prompts and on streamed outputs. The device
agent uses only the interface below: :meth:`SafetyFilter.check` on each prompt, and a
per-response :class:`OutputStream` on generated text::

    from edgeward.safety import PassThroughFilter

    f = PassThroughFilter()
    assert f.check("hello").action == "allow"

May import :mod:`edgeward.errors` only.
"""

from edgeward.safety._verdict import (
    Action,
    OutputStream,
    PassThroughFilter,
    SafetyFilter,
    Span,
    Stage,
    StreamStep,
    Verdict,
)

__all__ = [
    "Action",
    "OutputStream",
    "PassThroughFilter",
    "SafetyFilter",
    "Span",
    "Stage",
    "StreamStep",
    "Verdict",
]
