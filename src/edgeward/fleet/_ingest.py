"""Verified ingest: every received message is checked against the device registry, or counted.

:class:`Ingestor` takes what the broker delivered (topic, payload, retain flag) and returns an
:class:`~edgeward.fleet._store.Accepted` message or ``None``; every refusal is counted under its
:class:`~edgeward.fleet.protocol.Rejection` reason and never raises. Order of checks: the
protocol's (topic, size, envelope, payload type), the device registry (unknown device, revoked
key), the signature under the device's registered key, then the body. Replays are found by the
store, which keeps each ``(device, seq)`` once: after a batch is written,
:meth:`Ingestor.settle` counts what it found already stored as ``replayed`` (or ``duplicate``
for a retained or re-delivered copy). A ``seq`` below one already stored is accepted when it
is itself new: it is genuine (signed), and arrives late when an agent re-sends a message that
no manager took (MQTT 5 "no matching subscribers", e.g. right after a broker restart).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from edgeward.errors import EdgewardError, RejectedMessageError, SignatureError
from edgeward.fleet._store import Accepted, Store, WriteOutcome
from edgeward.fleet.protocol import (
    Message,
    ProvenanceReport,
    Rejection,
    open_message,
    verify_opened,
)
from edgeward.provenance import (
    IN_TOTO_PAYLOAD_TYPE,
    PublicKey,
    Role,
    TrustStore,
    canonical_json,
    verify_envelope,
)

__all__ = ["Ingestor", "Registry"]

log = logging.getLogger("edgeward.fleet")


@dataclass
class _Device:
    key_id: str
    revoked: bool


class Registry:
    """The device registry as the ingest sees it: device id -> key, and the keys to verify with.

    The registry lives in the store (``edgeward fleet enroll``); this is a cache of it that
    re-reads the store when an unknown device shows up and every ``max_age_s``, so devices
    enrolled while the manager runs are picked up. A device id not seen before triggers a
    re-read at once, however fresh the cache (such re-reads at most one per ``first_sight_s``,
    so a flood of made-up ids cannot turn into a flood of store reads); an id already missed,
    at most once per ``refresh_s``. The
    first message of a newly enrolled device is usually its retained "online" state, which the
    broker will not send again: it must not be lost to a cache that is a moment old. Keys
    revoked in the configured trust store are refused (``revoked_key``).

    Args:
        store: the fleet store.
        load_trust: (re)loads the configured trust store, or returns None when there is none.
        clock: monotonic seconds.
        refresh_s: the least time between two re-reads caused by unknown devices.
        first_sight_s: the least time between two re-reads caused by device ids not seen
            before.
        max_age_s: re-read at least this often (picks up revocations).
    """

    _MAX_MISSES = 10_000  # unknown ids remembered (then forgotten all at once)

    def __init__(self, store: Store, *, load_trust: Callable[[], TrustStore | None] = lambda: None,
                 clock: Callable[[], float] = time.monotonic, refresh_s: float = 1.0,
                 first_sight_s: float = 0.2, max_age_s: float = 30.0) -> None:
        self._store = store
        self._first_sight_s = first_sight_s
        self._missed: set[str] = set()
        self._first_sight_at = -1e9
        self._load_trust = load_trust
        self._clock = clock
        self._refresh_s = refresh_s
        self._max_age_s = max_age_s
        self._loaded_at = -1e9
        self.devices: dict[str, _Device] = {}
        self.keys = TrustStore()
        self.trust: TrustStore | None = None
        self.refresh()

    def refresh(self) -> None:
        """Re-read the registry (and the trust store) now.

        Raises:
            StoreError: the store cannot be read; ConfigError/SignatureError: the trust store.
        """
        self._loaded_at = self._clock()
        trust = self._load_trust()
        keys = TrustStore()
        devices: dict[str, _Device] = {}
        for rec in self._store.devices():
            revoked = False
            if trust is not None:
                tk = trust.get(rec.key_id)
                revoked = tk is not None and tk.revocation is not None
            if not revoked:
                keys.add(PublicKey.from_pem(rec.public_key.encode("ascii")), [Role.DEVICE],
                         name=rec.device_id)
            devices[rec.device_id] = _Device(rec.key_id, revoked)
        self.devices, self.keys, self.trust = devices, keys, trust

    def lookup(self, device_id: str) -> _Device | None:
        """The device's registry entry, re-reading the registry on a miss (rate-limited)."""
        now = self._clock()
        dev = self.devices.get(device_id)
        age = now - self._loaded_at
        first_sight = dev is None and device_id not in self._missed
        if dev is None:
            if len(self._missed) >= self._MAX_MISSES:
                self._missed.clear()
            self._missed.add(device_id)
        first_sight = first_sight and now - self._first_sight_at >= self._first_sight_s
        if first_sight:
            self._first_sight_at = now
        if (dev is None and age >= self._refresh_s) or age >= self._max_age_s or first_sight:
            try:
                self.refresh()
            except EdgewardError as e:
                log.warning("cannot re-read the device registry: %s", e)
            dev = self.devices.get(device_id)
        return dev


class Ingestor:
    """Checks received messages and counts every outcome (see the module docstring).

    Args:
        registry: the device registry.
        clock: epoch seconds, for ``received_at``.
    """

    def __init__(self, registry: Registry, *, clock: Callable[[], float] = time.time) -> None:
        self.registry = registry
        self._clock = clock
        self.counters: Counter[str] = Counter()  # updated by the thread that checks
        self.store_counters: Counter[str] = Counter()  # updated by the thread that writes

    def check(self, topic: str, payload: bytes, *, retained: bool = False,
              token: int = 0) -> Accepted | None:
        """Check one delivered message; ``None`` (and a counted reason) when refused.

        Never raises: whatever a sender does is a counted rejection.
        """
        self.counters["received"] += 1
        try:
            accepted = self._check(topic, payload, retained, token)
        except RejectedMessageError as e:
            self.counters[f"rejected.{e.reason}"] += 1
            log.debug("rejected (%s): %s", e.reason, e)
            return None
        except Exception as e:  # the manager must survive any input: count, log, go on
            self.counters["rejected.internal_error"] += 1
            log.exception("internal error checking a message on %r: %s", topic[:120], e)
            return None
        self.counters["accepted"] += 1
        return accepted

    def _check(self, topic: str, payload: bytes, retained: bool, token: int) -> Accepted:
        opened = open_message(topic, payload)
        dev = self.registry.lookup(opened.topic.device_id)
        if dev is None:
            raise RejectedMessageError(f"{topic}: device not enrolled",
                                       reason=Rejection.UNKNOWN_DEVICE.value)
        if dev.revoked:
            raise RejectedMessageError(f"{topic}: the device's key {dev.key_id[:16]}… is "
                                       "revoked", reason=Rejection.REVOKED_KEY.value)
        message = verify_opened(opened, self.registry.keys, key_id=dev.key_id)
        verified = self._statement_verified(message)
        return Accepted(message, payload, self._clock(), retained, token, verified)

    def _statement_verified(self, message: Message) -> bool | None:
        """For provenance: does the publisher's statement verify and name the artifact?"""
        trust = self.registry.trust
        if not isinstance(message, ProvenanceReport) or trust is None:
            return None
        try:
            v = verify_envelope(message.statement, trust, role=Role.PUBLISHER,
                                payload_type=IN_TOTO_PAYLOAD_TYPE)
            subjects = {s["name"]: s["digest"]["sha256"] for s in v.json()["subject"]}
        except (SignatureError, KeyError, TypeError) as e:
            log.warning("%s: the provenance statement does not verify: %s",
                        message.device_id, e)
            return False
        manifest = hashlib.sha256(canonical_json(subjects)).hexdigest()
        return message.artifact_digest in (*subjects.values(), manifest)

    def settle(self, outcome: WriteOutcome) -> None:
        """Count a committed batch's result."""
        c = self.store_counters
        c["stored"] += outcome.stored
        for a in outcome.duplicates:
            reason = Rejection.DUPLICATE if a.retained else Rejection.REPLAYED
            c[f"rejected.{reason.value}"] += 1
        for a in outcome.stale:
            reason = Rejection.DUPLICATE if a.retained else Rejection.STALE_STATE
            c[f"rejected.{reason.value}"] += 1

    def snapshot(self) -> dict[str, int]:
        """The counters as a plain dict (``received``, ``accepted``, ``stored``,
        ``rejected.REASON``, ``store_errors``)."""
        total = Counter(self.counters)
        total.update(self.store_counters)
        return dict(sorted(total.items()))
