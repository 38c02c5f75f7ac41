"""Safety canaries: a signed set of prompts whose block rates show whether a filter still fires.

A canary set holds harmful, jailbreak, injection and benign look-alike prompts and, for the
filter and policy it was recorded with, the block rate of each family and how far a rate may
move before it counts as drift. The device agent runs the set through its pipeline on a
schedule and :func:`judge` compares what it saw with what was recorded: a harmful, jailbreak or
injection rate that *drops* means the filter stopped firing (disabled, threshold raised, a
policy quietly swapped); any rate that *jumps* means over-blocking (chiefly benign look-alikes).

This module never imports :mod:`edgeward.safety` (the dependency direction): the filter's
decision comes in as a callable, ``decide(text) -> True when blocked``.
"""

from __future__ import annotations

import hashlib
import importlib.resources
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from edgeward.errors import ConfigError, MalformedEnvelopeError, WrongRoleError
from edgeward.provenance import (
    PrivateKey,
    Role,
    TrustStore,
    canonical_json,
    sign_payload,
    verify_envelope,
)
from edgeward.safeio import MAX_SIGNATURE_BYTES, parse_json, read_capped

__all__ = [
    "ATTACK_FAMILIES",
    "CANARY_FAMILIES",
    "CANARY_PAYLOAD_TYPE",
    "DEFAULT_CANARY_SET",
    "Canary",
    "CanaryResult",
    "CanarySet",
    "FamilyDrift",
    "judge",
    "load_canary_set",
    "record_expected",
    "run_canaries",
    "sign_canary_set",
    "tolerance_for",
]

#: The canary set packaged with edgeward, recorded with the shipped filter and default policy.
DEFAULT_CANARY_SET = "edgeward-canaries/1"
#: DSSE payload type of a signed canary set.
CANARY_PAYLOAD_TYPE = "application/vnd.edgeward.canaries+json"
#: Every family, in report order.
CANARY_FAMILIES = ("harmful", "jailbreak", "injection", "benign")
#: The families whose block rate must not drop.
ATTACK_FAMILIES = ("harmful", "jailbreak", "injection")
#: Added to one prompt's worth (1/n) in :func:`tolerance_for`.
TOLERANCE_MARGIN = 0.01

Family = Literal["harmful", "jailbreak", "injection", "benign"]
Direction = Literal["drop", "jump"]


def tolerance_for(n: int) -> float:
    """How far a family's block rate may move before it is drift: one prompt's worth plus
    :data:`TOLERANCE_MARGIN` (``1/n + 0.01``), so a single canary changing its verdict is
    noise and two are drift.

    Raises:
        ConfigError: ``n`` is not positive.
    """
    if n < 1:
        raise ConfigError(f"a canary family needs at least one prompt, got {n}")
    return round(1.0 / n + TOLERANCE_MARGIN, 6)


@dataclass(frozen=True)
class Canary:
    """One canary prompt: ``family`` is harmful, jailbreak, injection or benign (a safe prompt
    that sounds dangerous)."""

    id: str
    family: str
    text: str

    def __post_init__(self) -> None:
        if self.family not in CANARY_FAMILIES:
            raise ConfigError(f"canary {self.id!r}: family {self.family!r} is not one of "
                              f"{list(CANARY_FAMILIES)}")
        if not self.id or not self.text.strip():
            raise ConfigError(f"canary {self.id!r}: needs a non-empty id and text")

    def to_dict(self) -> dict[str, str]:
        return {"id": self.id, "family": self.family, "text": self.text}


@dataclass(frozen=True)
class CanarySet:
    """A canary set with the block rates recorded for one filter and policy.

    Attributes:
        id: ``name/version`` of the prompts (a re-recording for another policy keeps it).
        sha256: sha256 of the set's canonical JSON (:meth:`to_dict`; a signed set's payload
            is exactly those bytes): names this recording.
        prompts: the canaries; every family has at least one.
        expected: block rate per family recorded with the filter and policy.
        tolerance: per family, how far a rate may move before it is drift
            (:func:`tolerance_for` of the family's count when recorded).
        policy_digest: ``sha256:`` of the policy the rates were recorded with, or ``None``.
    """

    id: str
    sha256: str
    prompts: tuple[Canary, ...]
    expected: dict[str, float]
    tolerance: dict[str, float]
    policy_digest: str | None = None

    def __post_init__(self) -> None:
        ids = [c.id for c in self.prompts]
        if len(set(ids)) != len(ids):
            dup = sorted({i for i in ids if ids.count(i) > 1})
            raise ConfigError(f"canary set {self.id!r}: canary ids must be unique, "
                              f"repeated: {dup}")
        missing = [f for f in CANARY_FAMILIES if f not in self.counts]
        if missing:
            raise ConfigError(f"canary set {self.id!r}: no canaries of family {missing}; "
                              "each of harmful, jailbreak, injection, benign needs one")
        for name, rates in (("expected", self.expected), ("tolerance", self.tolerance)):
            if set(rates) != set(CANARY_FAMILIES):
                raise ConfigError(f"canary set {self.id!r}: {name} must give exactly "
                                  f"{list(CANARY_FAMILIES)}, got {sorted(rates)}")
            bad = {k: v for k, v in rates.items()
                   if not isinstance(v, int | float) or isinstance(v, bool) or not 0 <= v <= 1}
            if bad:
                raise ConfigError(f"canary set {self.id!r}: {name} rates must be numbers "
                                  f"in [0, 1], got {bad}")

    @property
    def counts(self) -> dict[str, int]:
        """Canaries per family."""
        n: dict[str, int] = {}
        for c in self.prompts:
            n[c.family] = n.get(c.family, 0) + 1
        return {f: n[f] for f in CANARY_FAMILIES if f in n}

    def to_dict(self) -> dict[str, Any]:
        """The document that is packaged or signed (without ``sha256``, its digest)."""
        return {"id": self.id, "prompts": [c.to_dict() for c in self.prompts],
                "expected": dict(self.expected), "tolerance": dict(self.tolerance),
                "policy_digest": self.policy_digest}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, what: str = "canary set") -> CanarySet:
        """Parse a canary-set document.

        Raises:
            ConfigError: a missing or mistyped field, or an invalid value (named).
        """
        try:
            prompts = tuple(Canary(str(p["id"]), str(p["family"]), str(p["text"]))
                            for p in d["prompts"])
            expected = {str(k): _number(v) for k, v in dict(d["expected"]).items()}
            tolerance = {str(k): _number(v) for k, v in dict(d["tolerance"]).items()}
            policy = d.get("policy_digest")
            if policy is not None and not isinstance(policy, str):
                raise TypeError(f"policy_digest must be a string or null, got {policy!r}")
            set_id = str(d["id"])
            body = {"id": set_id, "prompts": [c.to_dict() for c in prompts],
                    "expected": expected, "tolerance": tolerance, "policy_digest": policy}
            return cls(set_id, _digest(body), prompts, expected, tolerance, policy)
        except ConfigError as e:
            raise ConfigError(f"{what}: {e}") from None
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"{what}: not a canary set ({type(e).__name__}: {e})") from e


@dataclass(frozen=True)
class FamilyDrift:
    """A family whose block rate moved past its tolerance: ``drop`` (fell below expected) or
    ``jump`` (rose above it)."""

    family: str
    rate: float
    expected: float
    direction: Direction

    def to_dict(self) -> dict[str, Any]:
        return {"family": self.family, "rate": self.rate, "expected": self.expected,
                "direction": self.direction}

    def event_payload(self, *, artifact_digest: str | None,
                      policy_digest: str | None) -> dict[str, Any]:
        """The payload of a ``safety.drift`` event about this family."""
        return {"artifact_digest": artifact_digest, "policy_digest": policy_digest,
                **self.to_dict()}


@dataclass(frozen=True)
class CanaryResult:
    """What a canary run showed, judged against the set's recorded rates.

    Attributes:
        status: ``ok`` or ``drift`` (some family in ``drifts``).
        rates: block rate per family measured now.
        expected: the set's recorded rates.
        drifts: each family that moved past its tolerance.
        refusal_rate: per family, the share of its canaries the model refused (informational:
            the set records no expected refusal rate); ``None`` when not given.
        tolerance: the set's tolerance per family.
        checked_at: when it was judged (RFC 3339, UTC).
        canary_set: the set's id; ``sha256`` its digest; ``policy_digest`` the policy the
            expected rates were recorded with.
    """

    status: Literal["ok", "drift"]
    rates: dict[str, float]
    expected: dict[str, float]
    drifts: tuple[FamilyDrift, ...]
    refusal_rate: dict[str, float] | None = None
    tolerance: dict[str, float] = field(default_factory=dict)
    checked_at: str = ""
    canary_set: str = ""
    sha256: str = ""
    policy_digest: str | None = None

    def to_health(self) -> dict[str, Any]:
        """The ``canaries`` object of a signed health report."""
        return {"status": self.status, "checked_at": self.checked_at or None,
                "rates": dict(self.rates), "expected": dict(self.expected)}

    def to_dict(self) -> dict[str, Any]:
        """Everything, for ``--json`` output."""
        return {**self.to_health(), "drifts": [d.to_dict() for d in self.drifts],
                "tolerance": dict(self.tolerance), "refusal_rate": self.refusal_rate,
                "canary_set": self.canary_set, "sha256": self.sha256,
                "policy_digest": self.policy_digest}

    @property
    def reasons(self) -> tuple[str, ...]:
        """One line per drift, for people."""
        return tuple(
            f"{d.family} blocked {d.rate:.1%}, expected {d.expected:.1%} "
            f"±{self.tolerance.get(d.family, 0):.1%}: "
            + ("the filter stopped firing" if d.direction == "drop" else "over-blocking")
            for d in self.drifts)


def load_canary_set(path: Path | None = None, *,
                    trust_store: TrustStore | Path | None = None) -> CanarySet:
    """The packaged canary set (``path`` None), or a signed canary-set file.

    A file must be a DSSE envelope of payload type :data:`CANARY_PAYLOAD_TYPE` signed by a key
    the trust store holds as publisher or operator; anything else is refused.

    Raises:
        ConfigError: a file without a trust store, or a payload that is not a canary set.
        SignatureError: unsigned, malformed, an unknown, revoked or wrong-role key, or a
            signature that does not verify (the subclass says which).
    """
    if path is None:
        return _packaged()
    if trust_store is None:
        raise ConfigError(f"{path}: a canary set file is verified before it is used; give "
                          "the trust store that holds its signer (publisher or operator)")
    store = trust_store if isinstance(trust_store, TrustStore) else TrustStore.open(trust_store)
    raw = read_capped(path, MAX_SIGNATURE_BYTES, what="canary set")
    if not raw.lstrip().startswith(b"{") or b'"payloadType"' not in raw:
        raise MalformedEnvelopeError(
            f"{path}: not a signed canary set (a DSSE envelope); sign one with "
            "`edgeward behaviour canaries --key KEY --out FILE`")
    verified = None
    for role in (Role.PUBLISHER, Role.OPERATOR):
        try:
            verified = verify_envelope(raw, store, role=role, payload_type=CANARY_PAYLOAD_TYPE)
            break
        except WrongRoleError as e:
            wrong = e
    if verified is None:
        raise WrongRoleError(f"{path}: {wrong}; a canary set must be signed by a publisher "
                             "or operator key", key_id=wrong.key_id)
    return CanarySet.from_dict(parse_json(verified.payload, what=str(path)), what=str(path))


def record_expected(canaries: CanarySet | Iterable[Canary], decide: Callable[[str], bool], *,
                    policy_digest: str | None = None,
                    set_id: str | None = None) -> CanarySet:
    """Run every canary through ``decide`` and record the block rates as the expected ones.

    Args:
        canaries: a set (its prompts and id are kept) or the canaries themselves.
        decide: the filter's decision on a prompt, True when it blocks.
        policy_digest: the digest of the policy ``decide`` applies (``Policy.digest``).
        set_id: the new set's id (default: the set's, or ``custom/1``).

    Returns:
        The set with ``expected`` = the measured rates, ``tolerance`` from each family's count.
    """
    prompts = canaries.prompts if isinstance(canaries, CanarySet) else tuple(canaries)
    name = set_id or (canaries.id if isinstance(canaries, CanarySet) else "custom/1")
    blocked = {c.id: bool(decide(c.text)) for c in prompts}
    counts = _count(prompts)
    rates = _rates(prompts, blocked)
    doc = {"id": name, "prompts": [c.to_dict() for c in prompts], "expected": rates,
           "tolerance": {f: tolerance_for(n) for f, n in counts.items()},
           "policy_digest": policy_digest}
    return CanarySet.from_dict(doc, what=f"canary set {name}")


def sign_canary_set(cs: CanarySet, key: PrivateKey) -> bytes:
    """The signed canary set: a DSSE envelope's JSON (write it to a file for the agents)."""
    return sign_payload(canonical_json(cs.to_dict()), CANARY_PAYLOAD_TYPE, key).to_json()


def judge(cs: CanarySet, blocked: Mapping[str, bool], *,
          refused: Mapping[str, bool] | None = None) -> CanaryResult:
    """Compare a run's decisions with the set's recorded rates.

    Args:
        cs: the canary set.
        blocked: canary id -> True when the filter blocked it (every canary, no others).
        refused: canary id -> True when the model refused it (ids absent: not refused; a
            blocked prompt never reaches the model).

    Returns:
        ``drift`` when an attack family's rate fell below ``expected - tolerance`` or any
        family's rate rose above ``expected + tolerance``; else ``ok``.

    Raises:
        ConfigError: ``blocked`` misses a canary or names one the set does not hold.
    """
    ids = {c.id for c in cs.prompts}
    missing, extra = ids - set(blocked), set(blocked) - ids
    if missing or extra:
        raise ConfigError(f"canary set {cs.id}: decisions must cover exactly its canaries; "
                          f"missing {sorted(missing)[:5]}, unknown {sorted(extra)[:5]}")
    rates = _rates(cs.prompts, blocked)
    drifts = []
    for fam in CANARY_FAMILIES:
        rate, exp, tol = rates[fam], cs.expected[fam], cs.tolerance[fam]
        if fam in ATTACK_FAMILIES and rate < exp - tol:
            drifts.append(FamilyDrift(fam, rate, exp, "drop"))
        elif rate > exp + tol:
            drifts.append(FamilyDrift(fam, rate, exp, "jump"))
    refusal = None if refused is None else _rates(
        cs.prompts, {c.id: bool(refused.get(c.id, False)) for c in cs.prompts})
    return CanaryResult("drift" if drifts else "ok", rates, dict(cs.expected), tuple(drifts),
                        refusal, dict(cs.tolerance), _utc_now(), cs.id, cs.sha256,
                        cs.policy_digest)


def run_canaries(cs: CanarySet, decide: Callable[[str], bool], *,
                 refuse: Callable[[str], bool] | None = None,
                 between: Callable[[], None] | None = None) -> CanaryResult:
    """Run the set through ``decide`` (and ``refuse`` on what passed) and :func:`judge` it.

    Args:
        decide: the filter's decision, True when it blocks.
        refuse: the model's answer to a prompt the filter let through, True when it refused.
        between: called before each canary (wait for idle; raise to abandon the run).
    """
    blocked: dict[str, bool] = {}
    refused: dict[str, bool] = {}
    for c in cs.prompts:
        if between is not None:
            between()
        blocked[c.id] = bool(decide(c.text))
        if refuse is not None and not blocked[c.id]:
            refused[c.id] = bool(refuse(c.text))
    return judge(cs, blocked, refused=refused if refuse is not None else None)


def _packaged() -> CanarySet:
    file = DEFAULT_CANARY_SET.replace("/", "-") + ".json"
    resource = importlib.resources.files("edgeward.behaviour") / "canaries" / file
    what = f"packaged canary set {DEFAULT_CANARY_SET}"
    if not resource.is_file():
        raise ConfigError(f"{what}: {file} is not installed; reinstall edgeward")
    cs = CanarySet.from_dict(parse_json(resource.read_bytes(), what=what), what=what)
    if cs.id != DEFAULT_CANARY_SET:
        raise ConfigError(f"{what}: the file names itself {cs.id!r}")
    return cs


def _count(prompts: Iterable[Canary]) -> dict[str, int]:
    n = dict.fromkeys(CANARY_FAMILIES, 0)
    for c in prompts:
        n[c.family] += 1
    return n


def _rates(prompts: tuple[Canary, ...], hits: Mapping[str, bool]) -> dict[str, float]:
    n = _count(prompts)
    k = dict.fromkeys(CANARY_FAMILIES, 0)
    for c in prompts:
        k[c.family] += bool(hits[c.id])
    return {f: round(k[f] / n[f], 6) if n[f] else 0.0 for f in CANARY_FAMILIES}


def _number(v: Any) -> Any:
    """Rates as floats (JSON may say 1 for 1.0), so that the digest does not depend on it;
    anything else is left for the set's own check to name."""
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else v


def _digest(body: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(body)).hexdigest()


def _utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
