"""The wire messages: one frozen dataclass each, with ``to_dict``/``from_dict`` and canonical bytes.

Every message body carries ``_type`` (``https://edgeward.dev/fleet/KIND/v1``), the device id and
the device's clock (``time``, seconds since the Unix epoch). Health, events and provenance carry
the device's ``seq``, one counter shared by the three kinds, increasing by one per message and
persisted across agent restarts; state messages carry the connection ``session`` instead (a Last
Will is fixed when the connection opens, so it cannot know a later ``seq``).

Values validate themselves (``ConfigError``, quoting the bad value); :func:`message_from_dict`
turns any problem of a received body into a counted rejection.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from edgeward.errors import ConfigError, MalformedEnvelopeError, RejectedMessageError
from edgeward.fleet.protocol._topics import Kind, check_device_id
from edgeward.fleet.protocol._values import (
    EVENT_KIND,
    HEX64,
    MAX_AGENT_VERSION,
    MAX_CATEGORIES,
    MAX_EVENT_DATA_BYTES,
    MAX_SEQ,
    MAX_TIME,
    NAME,
    SLOT,
    check_int,
    check_num,
    check_str,
    check_time,
    opt_int,
    opt_num,
    opt_str,
)
from edgeward.provenance import Envelope, canonical_json

__all__ = [
    "MAX_SEQ",
    "Attestation",
    "DeviceState",
    "EventMessage",
    "HealthReport",
    "HealthSample",
    "Message",
    "ProvenanceReport",
    "StateMessage",
    "message_from_dict",
    "type_uri",
]

def type_uri(kind: Kind, version: int = 1) -> str:
    """The ``_type`` of a message body of ``kind`` (``https://edgeward.dev/fleet/health/v1``)."""
    return f"https://edgeward.dev/fleet/{kind.value}/v{version}"


class DeviceState(enum.StrEnum):
    """A device's connection state as the state topic says it."""

    ONLINE = "online"  # the birth, published when a connection opens
    OFFLINE = "offline"  # published before a clean disconnect
    LOST = "lost"  # the Last Will: the broker publishes it when the connection dies

    @property
    def rank(self) -> int:
        """Order within one session: online comes first, offline or lost end it."""
        return 1 if self is DeviceState.ONLINE else 2


@dataclass(frozen=True, kw_only=True)
class HealthSample:
    """What the agent measured; every field it cannot read is ``None``.

    Attributes:
        uptime_s: seconds since the agent started.
        cpu_percent: CPU use of the whole machine, percent of one core times cores.
        load_1m: the one-minute load average.
        memory_used_bytes / memory_total_bytes: RAM in use and in total (bytes).
        temperature_c: the hottest readable sensor (degrees Celsius).
        decode_tokens_per_s: recent decode throughput of the runtime (tokens/s).
        queue_depth: requests waiting for the model.
        safety_decisions: decisions of the safety filter by category since start
            (``{"allow": 120, "S1": 2}``); counts only, never prompt text.
        artifact_digest: sha256 (hex) of the artifact being served, if any.
        slot: the A/B slot it was loaded from (``"a"``, ``"b"``).
        behaviour: the last check of the served model against its signed behavioural
            fingerprint (``status``: ok, drift, pending, unchecked, missing, error;
            ``distance``, ``threshold``, ``top1_agreement``, ``checked_at``, ``checks``,
            ``probe_set``, ``detail``); absent from agents older than the fingerprint.
        canaries: the last run of the signed safety canaries through the whole pipeline
            (``status``: ok, drift, unchecked; ``checked_at``; ``rates`` and ``expected``,
            block rate per family; optional ``policy_digest``, ``canary_set``,
            ``tolerance``, ``refusal_rate``, ``checks``, ``detail``); absent from agents
            without canaries.
    """

    uptime_s: float = 0.0  # seconds
    cpu_percent: float | None = None  # percent
    load_1m: float | None = None
    memory_used_bytes: int | None = None  # bytes
    memory_total_bytes: int | None = None  # bytes
    temperature_c: float | None = None  # degrees Celsius
    decode_tokens_per_s: float | None = None  # tokens per second
    queue_depth: int = 0  # requests
    safety_decisions: Mapping[str, int] = field(default_factory=dict)
    artifact_digest: str | None = None  # sha256 hex
    slot: str | None = None
    behaviour: Mapping[str, Any] | None = None
    canaries: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.behaviour is not None:
            object.__setattr__(self, "behaviour", check_behaviour_health(self.behaviour))
        if self.canaries is not None:
            object.__setattr__(self, "canaries", check_canaries_health(self.canaries))
        check_num(self.uptime_s, "uptime_s", 0, MAX_TIME)
        opt_num(self.cpu_percent, "cpu_percent", 0, 100 * 4096)
        opt_num(self.load_1m, "load_1m", 0, 1e6)
        opt_int(self.memory_used_bytes, "memory_used_bytes")
        opt_int(self.memory_total_bytes, "memory_total_bytes")
        opt_num(self.temperature_c, "temperature_c", -100, 300)
        opt_num(self.decode_tokens_per_s, "decode_tokens_per_s", 0, 1e9)
        check_int(self.queue_depth, "queue_depth", 0, 2**31)
        cats = self.safety_decisions
        if not isinstance(cats, Mapping) or len(cats) > MAX_CATEGORIES:
            raise ConfigError(f"safety_decisions must be a mapping of at most {MAX_CATEGORIES} "
                              f"categories, got {cats!r:.80}")
        for name, count in cats.items():
            check_str(name, "safety category", NAME)
            check_int(count, f"safety_decisions[{name!r}]")
        object.__setattr__(self, "safety_decisions", dict(sorted(cats.items())))
        opt_str(self.artifact_digest, "artifact_digest", HEX64)
        opt_str(self.slot, "slot", SLOT)

    def to_dict(self) -> dict[str, Any]:
        """All fields, ``None`` as JSON null."""
        return {"uptime_s": self.uptime_s, "cpu_percent": self.cpu_percent,
                "load_1m": self.load_1m, "memory_used_bytes": self.memory_used_bytes,
                "memory_total_bytes": self.memory_total_bytes,
                "temperature_c": self.temperature_c,
                "decode_tokens_per_s": self.decode_tokens_per_s,
                "queue_depth": self.queue_depth,
                "safety_decisions": dict(self.safety_decisions),
                "artifact_digest": self.artifact_digest, "slot": self.slot,
                **({"behaviour": dict(self.behaviour)} if self.behaviour is not None else {}),
                **({"canaries": dict(self.canaries)} if self.canaries is not None else {})}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> HealthSample:
        """Inverse of :meth:`to_dict`; unknown keys are refused (``behaviour`` and
        ``canaries`` may be absent).

        Raises:
            ConfigError: a missing, unknown or bad field.
        """
        extras = ("behaviour", "canaries")
        optional = {k: d[k] for k in extras if k in d} if isinstance(d, Mapping) else {}
        rest = {k: v for k, v in d.items() if k not in extras} if isinstance(d, Mapping) else d
        return cls(**_exact_fields(rest, cls._FIELDS, "metrics"), **optional)

    _FIELDS: ClassVar[tuple[str, ...]] = (
        "uptime_s", "cpu_percent", "load_1m", "memory_used_bytes", "memory_total_bytes",
        "temperature_c", "decode_tokens_per_s", "queue_depth", "safety_decisions",
        "artifact_digest", "slot")


BEHAVIOUR_STATUSES = ("ok", "drift", "pending", "unchecked", "missing", "error")
_BEHAVIOUR_NUMBERS = ("distance", "threshold", "top1_agreement")


def check_behaviour_health(b: object) -> dict[str, Any]:
    """A health report's ``behaviour`` object, checked field by field (bounded sizes)."""
    if not isinstance(b, Mapping):
        raise ConfigError(f"behaviour must be an object, got {type(b).__name__}")
    extra = sorted(set(b) - {"status", "checked_at", "checks", "probe_set", "detail",
                             *_BEHAVIOUR_NUMBERS})
    if extra:
        raise ConfigError(f"behaviour: unknown field(s) {extra!r:.80}")
    if b.get("status") not in BEHAVIOUR_STATUSES:
        raise ConfigError(f"behaviour.status must be one of {', '.join(BEHAVIOUR_STATUSES)}, "
                          f"got {b.get('status')!r:.40}")
    out: dict[str, Any] = {"status": b["status"]}
    for key in _BEHAVIOUR_NUMBERS:
        out[key] = opt_num(b.get(key), f"behaviour.{key}", 0, 1e9)
    out["checks"] = check_int(b.get("checks", 0), "behaviour.checks", 0, 2**53)
    for key, cap in (("checked_at", 40), ("probe_set", 64), ("detail", 300)):
        value = b.get(key)
        if value is not None and (not isinstance(value, str) or len(value) > cap):
            raise ConfigError(f"behaviour.{key} must be a string of at most {cap} characters")
        out[key] = value
    return out


CANARY_STATUSES = ("ok", "drift", "unchecked")


def check_canaries_health(c: object) -> dict[str, Any]:
    """A health report's ``canaries`` object, checked field by field (bounded sizes)."""
    if not isinstance(c, Mapping):
        raise ConfigError(f"canaries must be an object, got {type(c).__name__}")
    extra = sorted(set(c) - {"status", "checked_at", "rates", "expected", "policy_digest",
                             "canary_set", "tolerance", "refusal_rate", "checks", "detail"})
    if extra:
        raise ConfigError(f"canaries: unknown field(s) {extra!r:.80}")
    if c.get("status") not in CANARY_STATUSES:
        raise ConfigError(f"canaries.status must be one of {', '.join(CANARY_STATUSES)}, "
                          f"got {c.get('status')!r:.40}")
    out: dict[str, Any] = {"status": c["status"], "rates": _rates(c.get("rates", {}), "rates"),
                           "expected": _rates(c.get("expected", {}), "expected")}
    if "tolerance" in c:  # one number, or one per family
        tol = c["tolerance"]
        out["tolerance"] = (_rates(tol, "tolerance") if isinstance(tol, Mapping)
                            else opt_num(tol, "canaries.tolerance", 0, 1))
    if "refusal_rate" in c:
        out["refusal_rate"] = opt_num(c["refusal_rate"], "canaries.refusal_rate", 0, 1)
    if "checks" in c:
        out["checks"] = check_int(c["checks"], "canaries.checks", 0, 2**53)
    if "policy_digest" in c:
        out["policy_digest"] = opt_str(c["policy_digest"], "canaries.policy_digest", HEX64)
    for key, cap in (("checked_at", 40), ("canary_set", 64), ("detail", 300)):
        value = c.get(key)
        if value is not None and (not isinstance(value, str) or len(value) > cap):
            raise ConfigError(f"canaries.{key} must be a string of at most {cap} characters")
        if key in c or key == "checked_at":
            out[key] = value
    return out


def _rates(rates: object, key: str) -> dict[str, Any]:
    """A family -> fraction object of a ``canaries`` report."""
    if not isinstance(rates, Mapping) or len(rates) > MAX_CATEGORIES:
        raise ConfigError(f"canaries.{key} must be an object of at most {MAX_CATEGORIES} "
                          f"families, got {rates!r:.80}")
    for family, rate in rates.items():
        check_str(family, f"canaries.{key} family", NAME)
        check_num(rate, f"canaries.{key}[{family!r}]", 0, 1)
    return dict(sorted(rates.items()))


def _exact_fields(d: object, names: tuple[str, ...], what: str) -> dict[str, Any]:
    if not isinstance(d, Mapping):
        raise ConfigError(f"{what} must be a JSON object, got {type(d).__name__}")
    extra = sorted(set(d) - set(names))
    missing = sorted(set(names) - set(d))
    if extra or missing:
        raise ConfigError(f"{what}: unknown field(s) {extra!r:.80}, missing {missing!r:.80}")
    return {k: d[k] for k in names}


@dataclass(frozen=True, kw_only=True)
class _Signed:
    """Fields every sequenced message has."""

    device_id: str
    seq: int
    time: float  # seconds since the epoch, device clock

    kind: ClassVar[Kind]

    def _check_header(self) -> None:
        check_device_id(self.device_id)
        check_int(self.seq, "seq", 1, MAX_SEQ)
        check_time(self.time)

    def _header(self) -> dict[str, Any]:
        return {"_type": type_uri(self.kind), "device_id": self.device_id, "seq": self.seq,
                "time": self.time}

    def canonical_bytes(self) -> bytes:
        """The signed payload: canonical JSON of :meth:`to_dict`."""
        return canonical_json(self.to_dict())

    def to_dict(self) -> dict[str, Any]:  # pragma: no cover - every subclass overrides
        raise NotImplementedError


@dataclass(frozen=True, kw_only=True)
class HealthReport(_Signed):
    """A signed health report (``edgeward/v1/devices/D/health``).

    Attributes:
        metrics: what the agent measured.
        spool_dropped: health reports this device dropped so far under its spool's drop
            policy (so a gap in ``seq`` is explained, not mistaken for loss).
    """

    kind: ClassVar[Kind] = Kind.HEALTH
    metrics: HealthSample
    spool_dropped: int = 0

    def __post_init__(self) -> None:
        self._check_header()
        if not isinstance(self.metrics, HealthSample):
            raise ConfigError(f"metrics must be a HealthSample, got {self.metrics!r:.60}")
        check_int(self.spool_dropped, "spool_dropped")

    def to_dict(self) -> dict[str, Any]:
        """The body: header, ``metrics`` and ``spool_dropped``."""
        return self._header() | {"metrics": self.metrics.to_dict(),
                                 "spool_dropped": self.spool_dropped}


@dataclass(frozen=True, kw_only=True)
class EventMessage(_Signed):
    """A signed event (``edgeward/v1/devices/D/events``): update progress, safety, errors.

    Attributes:
        event: what happened, e.g. ``update.progress``, ``safety.block``, ``error``.
        severity: ``info``, ``warning``, ``error`` or ``critical``.
        data: a JSON object of at most 8 KiB (canonical); counts and categories for safety
            events, never the prompt text unless policy allows.
    """

    kind: ClassVar[Kind] = Kind.EVENTS
    event: str
    severity: str = "info"
    data: Mapping[str, Any] = field(default_factory=dict)

    SEVERITIES: ClassVar[tuple[str, ...]] = ("info", "warning", "error", "critical")

    def __post_init__(self) -> None:
        self._check_header()
        check_str(self.event, "event", EVENT_KIND)
        if self.severity not in self.SEVERITIES:
            raise ConfigError(f"severity must be one of {', '.join(self.SEVERITIES)}, "
                              f"got {self.severity!r:.40}")
        if not isinstance(self.data, Mapping):
            raise ConfigError(f"event data must be a JSON object, got {self.data!r:.60}")
        size = len(canonical_json(dict(self.data)))
        if size > MAX_EVENT_DATA_BYTES:
            raise ConfigError(f"event data is {size} bytes of canonical JSON; the limit is "
                              f"{MAX_EVENT_DATA_BYTES}")

    def to_dict(self) -> dict[str, Any]:
        """The body: header, ``event``, ``severity``, ``data``."""
        return self._header() | {"event": self.event, "severity": self.severity,
                                 "data": dict(self.data)}


@dataclass(frozen=True, kw_only=True)
class Attestation:
    """The device's claim, signed with the message, that it verified and loaded the artifact.

    Attributes:
        publisher_key_id: the key whose signature over the statement the device verified.
        verified_at: when it verified it (seconds since the epoch, device clock).
        loaded_at: when the runtime loaded it.
    """

    publisher_key_id: str
    verified_at: float
    loaded_at: float

    def __post_init__(self) -> None:
        check_str(self.publisher_key_id, "publisher_key_id", HEX64)
        check_num(self.verified_at, "verified_at", 0, MAX_TIME)
        check_num(self.loaded_at, "loaded_at", 0, MAX_TIME)

    def to_dict(self) -> dict[str, Any]:
        """``{"publisher_key_id", "verified": true, "verified_at", "loaded_at"}``."""
        return {"publisher_key_id": self.publisher_key_id, "verified": True,
                "verified_at": self.verified_at, "loaded_at": self.loaded_at}

    @classmethod
    def from_dict(cls, d: object) -> Attestation:
        """Inverse of :meth:`to_dict`; ``verified`` must be ``true``.

        Raises:
            ConfigError: a missing, unknown or bad field.
        """
        f = _exact_fields(d, ("publisher_key_id", "verified", "verified_at", "loaded_at"),
                          "attestation")
        if f.pop("verified") is not True:
            raise ConfigError("attestation: 'verified' must be true")
        return cls(**f)


@dataclass(frozen=True, kw_only=True)
class ProvenanceReport(_Signed):
    """What the device runs (``edgeward/v1/devices/D/provenance``, retained).

    Attributes:
        artifact_digest: sha256 (hex) of the running artifact (its file, or for a directory
            artifact the digest of its manifest).
        slot: the slot it runs from.
        statement: the publisher's DSSE envelope over the artifact's in-toto statement, as the
            device verified it.
        attestation: the device's claim that it verified and loaded it.
    """

    kind: ClassVar[Kind] = Kind.PROVENANCE
    artifact_digest: str
    slot: str | None
    statement: Envelope
    attestation: Attestation

    def __post_init__(self) -> None:
        self._check_header()
        check_str(self.artifact_digest, "artifact_digest", HEX64)
        opt_str(self.slot, "slot", SLOT)
        if not isinstance(self.statement, Envelope) \
                or not isinstance(self.attestation, Attestation):
            raise ConfigError("statement must be an Envelope and attestation an Attestation")

    def to_dict(self) -> dict[str, Any]:
        """The body: header, artifact digest, slot, the statement envelope, the attestation."""
        return self._header() | {"artifact_digest": self.artifact_digest, "slot": self.slot,
                                 "statement": self.statement.to_dict(),
                                 "attestation": self.attestation.to_dict()}


@dataclass(frozen=True, kw_only=True)
class StateMessage:
    """A device's connection state (``edgeward/v1/devices/D/state``, retained).

    Attributes:
        device_id: the device.
        state: online (birth), offline (clean exit) or lost (the Last Will).
        session: the connection counter, one more at each connection; persisted.
        time: when the message was made (the Last Will: when its connection opened).
        agent_version: the agent's edgeward version.
    """

    kind: ClassVar[Kind] = Kind.STATE
    device_id: str
    state: DeviceState
    session: int
    time: float
    agent_version: str = ""

    def __post_init__(self) -> None:
        check_device_id(self.device_id)
        try:
            object.__setattr__(self, "state", DeviceState(self.state))
        except ValueError:
            raise ConfigError(f"state must be online, offline or lost, got "
                              f"{self.state!r:.40}") from None
        check_int(self.session, "session", 1, MAX_SEQ)
        check_time(self.time)
        if not isinstance(self.agent_version, str) \
                or len(self.agent_version) > MAX_AGENT_VERSION:
            raise ConfigError(f"agent_version must be a string of at most {MAX_AGENT_VERSION} "
                              f"characters, got {self.agent_version!r:.80}")

    def to_dict(self) -> dict[str, Any]:
        """The body: ``_type``, device id, state, session, time, agent version."""
        return {"_type": type_uri(self.kind), "device_id": self.device_id,
                "state": self.state.value, "session": self.session, "time": self.time,
                "agent_version": self.agent_version}

    def canonical_bytes(self) -> bytes:
        """The signed payload: canonical JSON of :meth:`to_dict`."""
        return canonical_json(self.to_dict())


Message = StateMessage | HealthReport | EventMessage | ProvenanceReport

_HEADER = ("_type", "device_id", "seq", "time")
_FIELDS: dict[Kind, tuple[str, ...]] = {
    Kind.STATE: ("_type", "device_id", "state", "session", "time", "agent_version"),
    Kind.HEALTH: (*_HEADER, "metrics", "spool_dropped"),
    Kind.EVENTS: (*_HEADER, "event", "severity", "data"),
    Kind.PROVENANCE: (*_HEADER, "artifact_digest", "slot", "statement", "attestation"),
}


def message_from_dict(kind: Kind, d: object) -> Message:
    """Parse a received message body of ``kind`` (strict: no unknown or missing fields).

    Raises:
        RejectedMessageError: ``unsupported_version`` for a ``_type`` of another version of
            this kind; ``malformed`` for anything else wrong.
    """
    if kind not in _FIELDS:
        raise RejectedMessageError(f"{kind.value}: not a device message", reason="malformed")
    try:
        t = d.get("_type") if isinstance(d, Mapping) else None
        if t != type_uri(kind):
            prefix = type_uri(kind).rsplit("/", 1)[0] + "/v"
            reason = "unsupported_version" if isinstance(t, str) and t.startswith(prefix) \
                else "malformed"
            raise RejectedMessageError(f"{kind.value}: _type is {t!r:.80}, expected "
                                       f"{type_uri(kind)!r}", reason=reason)
        f = _exact_fields(d, _FIELDS[kind], kind.value)
        del f["_type"]
        if kind is Kind.STATE:
            return StateMessage(**f)
        if kind is Kind.HEALTH:
            return HealthReport(**f | {"metrics": HealthSample.from_dict(f["metrics"])})
        if kind is Kind.EVENTS:
            return EventMessage(**f)
        env = Envelope.from_dict(f["statement"])
        return ProvenanceReport(**f | {"statement": env,
                                       "attestation": Attestation.from_dict(f["attestation"])})
    except (ConfigError, MalformedEnvelopeError, TypeError) as e:
        raise RejectedMessageError(f"{kind.value}: {e}", reason="malformed") from e
