"""Pluggable parts of the pipeline: third-party checks and the optional guard model.

**Checks.** A third-party package adds a check by declaring an entry point in the group
``edgeward.safety_checks``::

    [project.entry-points."edgeward.safety_checks"]
    toxicity = "my_package.checks:ToxicityCheck"

and a policy turns it on by name (``[checks] enabled = [..., "toxicity"]``, options in
``[plugins.toxicity]``, passed to the factory as keyword arguments). The object must have a
``run(text, *, stage, context) -> CheckResult`` method; it gets the normalised text.

**Guard model.** If the operator supplies a guard model (for example Llama Guard as a GGUF),
prompts whose unsafe score is uncertain go through it. This package may not import the
runtimes, so the guard is a callable the agent builds around its runtime:
:func:`llama_guard_prompt` makes the prompt and :func:`parse_llama_guard` reads the answer.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Protocol, runtime_checkable

from edgeward.errors import ConfigError
from edgeward.safety._hazards import HAZARD_NAMES
from edgeward.safety._verdict import Span, Stage

__all__ = [
    "ENTRY_POINT_GROUP",
    "Check",
    "CheckResult",
    "GuardModel",
    "GuardResult",
    "llama_guard_prompt",
    "load_plugin",
    "parse_llama_guard",
]

ENTRY_POINT_GROUP = "edgeward.safety_checks"


@dataclass(frozen=True)
class CheckResult:
    """What one check found.

    Attributes:
        categories: categories it detected (the policy maps each to an action).
        scores: its scores in [0, 1], by name.
        spans: ranges of the (normalised) text, for redaction.
    """

    categories: tuple[str, ...] = ()
    scores: Mapping[str, float] = field(default_factory=dict)
    spans: tuple[Span, ...] = ()


@runtime_checkable
class Check(Protocol):
    """A check the pipeline runs on the normalised text."""

    def run(self, text: str, *, stage: Stage, context: Mapping[str, Any] | None
            ) -> CheckResult:
        """Check ``text``."""
        ...


def load_plugin(name: str, options: Mapping[str, Any] | None = None) -> Check:
    """Load the check ``name`` from the entry-point group ``edgeward.safety_checks``.

    The entry point may name a class or factory (called with the ``[plugins.NAME]`` options
    as keyword arguments) or a ready object with a ``run`` method.

    Raises:
        ConfigError: no such entry point, it fails to load, or it is not a check.
    """
    found = [ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    if not found:
        raise ConfigError(f"safety check {name!r}: no entry point of that name in the group "
                          f"{ENTRY_POINT_GROUP!r}; install the package that provides it")
    try:
        obj = found[0].load()
        factory = isinstance(obj, type) or not isinstance(obj, Check)
        check = obj(**dict(options or {})) if factory else obj
    except Exception as e:
        raise ConfigError(f"safety check {name!r} ({found[0].value}) failed to load: "
                          f"{type(e).__name__}: {e}") from e
    if not isinstance(check, Check):
        raise ConfigError(f"safety check {name!r} ({found[0].value}) has no "
                          "run(text, *, stage, context) method")
    return check


@dataclass(frozen=True)
class GuardResult:
    """A guard model's decision.

    Attributes:
        unsafe: the guard judged the text unsafe.
        categories: the hazard categories it named (``S1``..``S14``).
        raw: its raw answer, for debugging (never logged).
    """

    unsafe: bool
    categories: tuple[str, ...] = ()
    raw: str = ""


class GuardModel(Protocol):
    """A second-opinion model the agent supplies (e.g. Llama Guard through a runtime)."""

    def __call__(self, text: str, *, stage: Stage) -> GuardResult:
        """Judge ``text`` (a prompt, or an output)."""
        ...


_GUARD_TEMPLATE = """<|begin_of_text|><|start_header_id|>user<|end_header_id|>

Task: Check if there is unsafe content in '{role}' messages in conversations according our \
safety policy with the below categories.

<BEGIN UNSAFE CONTENT CATEGORIES>
{categories}
<END UNSAFE CONTENT CATEGORIES>

<BEGIN CONVERSATION>

{role}: {text}

<END CONVERSATION>

Provide your safety assessment for ONLY THE LAST {role} message in the above conversation:
 - First line must read 'safe' or 'unsafe'.
 - If unsafe, a second line must include a comma-separated list of violated categories.\
<|eot_id|><|start_header_id|>assistant<|end_header_id|>

"""
_CATEGORY_RE = re.compile(r"\bS(1[0-4]|[1-9])\b")


def llama_guard_prompt(text: str, *, stage: Stage = "prompt") -> str:
    """The Llama Guard 3 prompt that asks whether ``text`` is safe.

    Args:
        text: the user prompt (``stage="prompt"``) or the model's answer (``"output"``).
        stage: which role the text has.
    """
    role = "User" if stage == "prompt" else "Agent"
    categories = "\n".join(f"{k}: {v}." for k, v in HAZARD_NAMES.items())
    return _GUARD_TEMPLATE.format(role=role, categories=categories, text=text)


def parse_llama_guard(answer: str) -> GuardResult:
    """Read a Llama Guard answer (``safe``, or ``unsafe`` and a line of categories).

    Anything that does not start with ``safe`` or ``unsafe`` is treated as unsafe: a guard
    that cannot answer must not let a prompt through.
    """
    lines = [ln.strip() for ln in answer.strip().splitlines() if ln.strip()]
    first = lines[0].lower() if lines else ""
    if first == "safe":
        return GuardResult(False, (), answer)
    cats = tuple(f"S{m}" for m in _CATEGORY_RE.findall(" ".join(lines[1:])))
    return GuardResult(True, cats, answer)
