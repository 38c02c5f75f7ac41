"""The safety policy: which checks run, thresholds, the action per category, what may be logged.

A policy is a TOML file shipped and signed with a deployment like any artifact
(``edgeward sign policy.toml --key publisher.key``; the agent verifies it with the provenance
package before loading it). Every key is checked: an unknown key, a wrong type or an
out-of-range value raises :class:`~edgeward.errors.PolicyError` naming the file, the key and the
value. See docs/safety.md for the reference; ``policies/default.toml`` is the default, and
:data:`POLICY_PRESETS` names every policy shipped in the package (``phi``: every HIPAA Safe
Harbor identifier redacted), which the agent and the CLI accept by name.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from edgeward.errors import PolicyError
from edgeward.safeio import MAX_CONFIG_BYTES, parse_toml, read_capped
from edgeward.safety._hazards import HAZARD_NAMES
from edgeward.safety._pii import NAME_MODES, PII_TYPES

__all__ = ["DEFAULT_PII_TYPES", "POLICY_PRESETS", "SPAN_CATEGORIES", "Policy", "default_policy",
           "load_policy", "policy_from_dict", "preset_policy", "resolve_policy"]

SPAN_CATEGORIES = frozenset(PII_TYPES)  # categories that can be redacted (they have spans)
_ACTIONS = ("allow", "redact", "block")
_CHECKS = ("rules", "classifier", "encoder", "pii")
_STAGES = ("prompt", "output")
# [pii] types when a policy leaves it out: the types every policy written before DATE, AGE,
# URL ... existed detected. Not PII_TYPES: a new type (every date!) must not start being
# redacted under an existing policy; a policy opts in by listing it (policies/phi.toml does).
DEFAULT_PII_TYPES = ("EMAIL", "PHONE", "CARD", "IBAN", "SSN", "IP", "DOB", "MRN", "ADDRESS",
                     "NAME")
# The policies shipped in policies/NAME.toml; trusted like the code that reads them.
POLICY_PRESETS = ("default", "phi")


def _default_actions() -> dict[str, str]:
    actions = dict.fromkeys((*HAZARD_NAMES, "jailbreak", "injection"), "block")
    actions.update(dict.fromkeys(PII_TYPES, "redact"))
    return actions


@dataclass(frozen=True)
class Policy:
    """A parsed, validated safety policy (all options keyword-only with documented defaults).

    Attributes:
        name: a label for people and audit records.
        version: the policy's own version number.
        refusal: what the agent answers instead of a blocked prompt or output.
        checks: the checks that run after the normaliser, in order: ``rules``, ``classifier``,
            ``pii`` and names of plug-ins (entry-point group ``edgeward.safety_checks``).
        decode_payloads: decode base64/hex/rot13/leetspeak payloads and check them too.
        threshold: unsafe score (1 - P(benign)) at or above which a prompt is flagged;
            ``None``: the threshold recorded with the shipped model (chosen on the dev split).
        output_threshold: the same for generated output (higher: outputs are not prompts).
        guard_band: unsafe scores in ``[low, high)`` go to the guard model, if one is supplied.
        encoder_band: fast-stage unsafe scores in ``[low, high)`` also go to the encoder
            stage (check ``encoder``), whose evidence is combined with the fast stage's.
        encoder_weight: the weight of the encoder's log-probabilities in that combination
            (the fast stage's is 1).
        pii_types: PII types detected (default :data:`DEFAULT_PII_TYPES`).
        pii_stages: stages PII detection runs on.
        pseudonyms: redactions write numbered placeholders (``[NAME_1]``), the same for the
            same value within one conversation, when the caller passes a
            :class:`~edgeward.safety.Pseudonyms`; off: ``[NAME]``.
        pii_names: ``[pii] names``: ``"cued"`` (default) finds person names only after a
            cue ("my name is", "Dr."); ``"model"`` also by the learned name model, which
            finds the names a prompt is about too (the ``phi`` preset).
        pii_age_over: ``[pii] age_over``: ages at or below it are not redacted (``phi``: 89,
            HIPAA's Safe Harbor); 0: every age.
        pii_patterns: ``[pii.patterns]``: extra regular expressions per PII type (of
            ``pii_types``), each match a span of that type (group 1 if the pattern has groups);
            at most :data:`MAX_PII_PATTERNS` in all, each at most
            :data:`MAX_PII_PATTERN_LENGTH` characters.
        actions: action per category (S1..S14, ``jailbreak``, ``injection``, PII types,
            plug-in categories); ``redact`` only for PII types.
        default_action: action for a category not in ``actions`` (plug-in categories).
        check_every: characters of new output between classifier runs on a stream.
        window: characters of output the stream classifier looks at.
        max_hold: most characters a stream holds back to see if they start a PII pattern.
        log_text: audit records may contain the text itself (off: patient data stays out).
        log_redacted_text: audit records may contain the redacted text.
        on_audit_failure: ``[audit] on_failure``: what a device agent does when an audit
            record cannot be written even in the disk space held back for it:
            ``"keep_serving"`` (default; alert, count, serve on) or ``"fail_closed"`` (the
            ``phi`` preset; stop serving: answer 503 ``audit_unavailable`` until the agent is
            reloaded or restarted with room on the disk).
        plugin_options: ``[plugins.NAME]`` tables, passed to each plug-in's factory.
        source: the file it came from (``<default>`` for the built-in one).
        digest: ``sha256:`` of the file's bytes (recorded in audit records).
    """

    name: str = "default"
    version: int = 1
    refusal: str = "I can't help with that request."
    checks: tuple[str, ...] = _CHECKS
    decode_payloads: bool = True
    threshold: float | None = None
    output_threshold: float = 0.9
    guard_band: tuple[float, float] = (0.3, 0.7)
    encoder_band: tuple[float, float] = (0.5, 0.95)
    encoder_weight: float = 0.5
    pii_types: tuple[str, ...] = DEFAULT_PII_TYPES
    pii_stages: tuple[str, ...] = _STAGES
    pseudonyms: bool = False
    pii_names: str = "cued"
    pii_age_over: int = 0
    pii_patterns: Mapping[str, tuple[re.Pattern[str], ...]] = field(default_factory=dict)
    actions: Mapping[str, str] = field(default_factory=_default_actions)
    default_action: str = "block"
    check_every: int = 96  # characters
    window: int = 1024  # characters
    max_hold: int = 48  # characters
    log_text: bool = False
    log_redacted_text: bool = False
    on_audit_failure: str = "keep_serving"
    plugin_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    source: str = "<default>"
    digest: str = ""

    def action_for(self, category: str) -> str:
        """The action this policy takes for ``category``."""
        return self.actions.get(category, self.default_action)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``edgeward safety policy show --json``)."""
        return {"name": self.name, "version": self.version, "refusal": self.refusal,
                "checks": list(self.checks), "decode_payloads": self.decode_payloads,
                "threshold": self.threshold, "output_threshold": self.output_threshold,
                "guard_band": list(self.guard_band), "encoder_band": list(self.encoder_band),
                "encoder_weight": self.encoder_weight, "pii_types": list(self.pii_types),
                "pii_stages": list(self.pii_stages), "pseudonyms": self.pseudonyms,
                "pii_names": self.pii_names, "pii_age_over": self.pii_age_over,
                "pii_patterns": {t: [p.pattern for p in ps] for t, ps in self.pii_patterns.items()},
                "actions": dict(self.actions),
                "default_action": self.default_action, "check_every": self.check_every,
                "window": self.window, "max_hold": self.max_hold, "log_text": self.log_text,
                "log_redacted_text": self.log_redacted_text,
                "on_audit_failure": self.on_audit_failure,
                "plugin_options": {k: dict(v) for k, v in self.plugin_options.items()},
                "source": self.source, "digest": self.digest}


class _Reader:
    """Typed access to one TOML table that names the file and key in every error."""

    def __init__(self, source: str, table: str, data: Mapping[str, Any]) -> None:
        self.source, self.table, self.data = source, table, data
        self.used: set[str] = set()

    def fail(self, key: str, value: Any, problem: str) -> PolicyError:
        where = f"[{self.table}] {key}" if self.table else key
        return PolicyError(f"{self.source}: {where} = {value!r}: {problem}")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any) -> Any:
        self.used.add(key)
        if key not in self.data:
            return default
        value = self.data[key]
        if not isinstance(value, kind) or (isinstance(value, bool) and bool not in (
                kind if isinstance(kind, tuple) else (kind,))):
            names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
            raise self.fail(key, value, f"expected {names}")
        return value

    def number(self, key: str, default: float | None, lo: float, hi: float) -> float | None:
        value = self.get(key, (int, float), default)
        if value is not None and not lo <= float(value) <= hi:
            raise self.fail(key, value, f"must be between {lo} and {hi}")
        return None if value is None else float(value)

    def strings(self, key: str, default: tuple[str, ...], allowed: tuple[str, ...] | None
                ) -> tuple[str, ...]:
        value = self.get(key, list, list(default))
        for item in value:
            if not isinstance(item, str) or (allowed is not None and item not in allowed):
                raise self.fail(key, value, f"{item!r} is not one of {list(allowed or ())}")
        return tuple(value)

    def finish(self) -> None:
        extra = sorted(set(self.data) - self.used)
        if extra:
            raise self.fail(extra[0], self.data[extra[0]], "unknown key")


def _band(k: _Reader, key: str, default: tuple[float, float]) -> tuple[float, float]:
    band = k.get(key, list, list(default))
    if len(band) != 2 or not all(isinstance(x, int | float) for x in band) \
            or not 0 <= band[0] <= band[1] <= 1:
        raise k.fail(key, band, "expected [low, high] with 0 <= low <= high <= 1")
    return float(band[0]), float(band[1])


MAX_PII_PATTERNS = 32  # [pii.patterns], all types together
MAX_PII_PATTERN_LENGTH = 256  # characters of one pattern


def _patterns(pii: _Reader, default_types: tuple[str, ...]
              ) -> dict[str, tuple[re.Pattern[str], ...]]:
    """``[pii.patterns]``: ``TYPE = ['regex', ...]``, compiled; every type must be one that
    the policy detects (``[pii] types``), every pattern must compile and match something."""
    table = pii.get("patterns", dict, {})
    r = _Reader(pii.source, "pii.patterns", table)
    types = pii.data.get("types", default_types)
    out: dict[str, tuple[re.Pattern[str], ...]] = {}
    count = 0
    for kind, value in table.items():
        if kind not in PII_TYPES:
            raise r.fail(kind, value, f"{kind!r} is not a PII type; expected one of "
                         f"{list(PII_TYPES)}")
        if kind not in types:
            raise r.fail(kind, value, f"{kind} is not in [pii] types, so it is not detected; "
                         "add it there")
        regexes = r.get(kind, list, [])
        if not all(isinstance(x, str) for x in regexes):
            raise r.fail(kind, value, "expected a list of regular expressions (strings)")
        count += len(regexes)
        if count > MAX_PII_PATTERNS:
            raise r.fail(kind, value, f"more than {MAX_PII_PATTERNS} patterns in all")
        compiled = []
        for regex in regexes:
            if not regex or len(regex) > MAX_PII_PATTERN_LENGTH:
                raise r.fail(kind, regex, f"a pattern must have 1 to {MAX_PII_PATTERN_LENGTH} "
                             "characters")
            try:
                pattern = re.compile(regex)
            except re.error as e:
                raise r.fail(kind, regex, f"not a valid regular expression: {e}") from e
            if pattern.fullmatch("") is not None:
                raise r.fail(kind, regex, "matches the empty string")
            compiled.append(pattern)
        out[kind] = tuple(compiled)
    return out


AUDIT_FAILURE_MODES = ("keep_serving", "fail_closed")


def _audit_failure(a: _Reader) -> str:
    mode = a.get("on_failure", str, "keep_serving")
    if mode not in AUDIT_FAILURE_MODES:
        raise a.fail("on_failure", mode, f"expected one of {list(AUDIT_FAILURE_MODES)}")
    return str(mode)


def _parse(data: Mapping[str, Any], source: str, digest: str) -> Policy:
    known = {"policy", "checks", "classifier", "pii", "actions", "stream", "audit", "plugins"}
    top = _Reader(source, "", data)
    for key in data:
        if key not in known:
            raise top.fail(key, data[key], f"unknown table; expected one of {sorted(known)}")
        if not isinstance(data[key], dict):
            raise top.fail(key, data[key], "expected a table")
    p = _Reader(source, "policy", data.get("policy", {}))
    c = _Reader(source, "checks", data.get("checks", {}))
    k = _Reader(source, "classifier", data.get("classifier", {}))
    pii = _Reader(source, "pii", data.get("pii", {}))
    s = _Reader(source, "stream", data.get("stream", {}))
    a = _Reader(source, "audit", data.get("audit", {}))
    plugins = data.get("plugins", {})
    checks = c.strings("enabled", _CHECKS, None)
    for name in checks:
        if name not in _CHECKS and name not in plugins and not name.replace("_", "").isalnum():
            raise c.fail("enabled", list(checks), f"{name!r} is not a check name")
    band = _band(k, "guard_band", Policy.guard_band)
    encoder_band = _band(k, "encoder_band", Policy.encoder_band)
    actions = _default_actions()
    act = _Reader(source, "actions", data.get("actions", {}))
    default_action = act.get("default", str, "block")
    if default_action not in _ACTIONS:
        raise act.fail("default", default_action, f"expected one of {list(_ACTIONS)}")
    for cat, value in data.get("actions", {}).items():
        if cat == "default":
            continue
        if value not in _ACTIONS:
            raise act.fail(cat, value, f"expected one of {list(_ACTIONS)}")
        if value == "redact" and cat not in SPAN_CATEGORIES and (
                cat in HAZARD_NAMES or cat in ("jailbreak", "injection")):
            raise act.fail(cat, value, "redact applies to PII types only (they have spans); "
                           "use allow or block")
        actions[cat] = value
    policy = Policy(
        name=p.get("name", str, "default"), version=p.get("version", int, 1),
        refusal=p.get("refusal", str, "I can't help with that request."),
        checks=checks, decode_payloads=c.get("decode_payloads", bool, True),
        threshold=k.number("threshold", None, 0.0, 1.0),
        output_threshold=k.number("output_threshold", 0.9, 0.0, 1.0) or 0.0,
        guard_band=band, encoder_band=encoder_band,
        encoder_weight=float(k.number("encoder_weight", Policy.encoder_weight, 0.0, 10.0)
                             or 0.0),
        pii_types=pii.strings("types", DEFAULT_PII_TYPES, PII_TYPES),
        pii_stages=pii.strings("stages", _STAGES, _STAGES),
        pseudonyms=pii.get("pseudonyms", bool, False), actions=actions,
        pii_names=_name_mode(pii), pii_age_over=int(pii.number("age_over", 0, 0, 150) or 0),
        pii_patterns=_patterns(pii, DEFAULT_PII_TYPES),
        default_action=default_action,
        check_every=int(s.number("check_every", 96, 1, 1 << 20) or 96),
        window=int(s.number("window", 1024, 64, 1 << 20) or 1024),
        max_hold=int(s.number("max_hold", 48, 0, 4096) or 0),
        log_text=a.get("log_text", bool, False),
        log_redacted_text=a.get("log_redacted_text", bool, False),
        on_audit_failure=_audit_failure(a),
        plugin_options={name: dict(opts) for name, opts in plugins.items()},
        source=source, digest=digest)
    for reader in (p, c, k, pii, s, a):
        reader.finish()
    return policy


def _name_mode(pii: _Reader) -> str:
    mode = pii.get("names", str, "cued")
    if mode not in NAME_MODES:
        raise pii.fail("names", mode, f"expected one of {list(NAME_MODES)}")
    return str(mode)


def load_policy(path: Path) -> Policy:
    """Read and validate a policy file.

    Args:
        path: a TOML policy file.

    Returns:
        The policy, with ``source`` and ``digest`` set.

    Raises:
        PolicyError: the file is missing, not TOML, or a key or value is wrong (the message
            names the file, the key and the value).
    """
    raw = read_capped(path, MAX_CONFIG_BYTES, what="safety policy", error=PolicyError)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise PolicyError(f"{path}: the policy is not UTF-8 text (byte {e.start})") from None
    data = parse_toml(text, what=str(path), error=PolicyError)
    return _parse(data, str(path), "sha256:" + hashlib.sha256(raw).hexdigest())


def policy_from_dict(data: Mapping[str, Any], *, source: str = "<dict>") -> Policy:
    """A policy from already-parsed TOML data (tests, programmatic use).

    Raises:
        PolicyError: as :func:`load_policy`.
    """
    canonical = json.dumps(data, sort_keys=True, default=str).encode()
    return _parse(data, source, "sha256:" + hashlib.sha256(canonical).hexdigest())


def default_policy() -> Policy:
    """The policy shipped in the package (``policies/default.toml``)."""
    return preset_policy("default")


def preset_policy(name: str) -> Policy:
    """A policy shipped in the package, by name (one of :data:`POLICY_PRESETS`).

    It is part of the installed package, so it is trusted like the package's code (no separate
    signature); its ``source`` is ``<NAME>`` and its ``digest`` the sha256 of the file.

    Raises:
        PolicyError: ``name`` is not a preset.
    """
    if name not in POLICY_PRESETS:
        raise PolicyError(f"no policy preset {name!r}; presets: {', '.join(POLICY_PRESETS)} "
                          "(or give the path of a policy file)")
    raw = (resources.files("edgeward.safety") / "policies" / f"{name}.toml").read_bytes()
    return _parse(tomllib.loads(raw.decode("utf-8")), f"<{name}>",
                  "sha256:" + hashlib.sha256(raw).hexdigest())


def resolve_policy(spec: str | Path) -> Policy:
    """A preset's name (a ``str`` in :data:`POLICY_PRESETS`) or a policy file's path.

    A file whose path is a preset's name is given as ``./phi``; a bare name that is neither a
    preset nor a file is reported as an unknown preset.

    Raises:
        PolicyError: no such preset or file, or the file is malformed.
    """
    if isinstance(spec, str) and spec in POLICY_PRESETS:
        return preset_policy(spec)
    path = Path(spec)
    if isinstance(spec, str) and not path.exists() and "/" not in spec and not path.suffix:
        return preset_policy(spec)  # raises, naming the presets
    return load_policy(path)
