"""Shared pieces of the fleet tests: fixed keys, fixed messages, waiting."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from edgeward.fleet.protocol import (
    Attestation,
    DeviceState,
    EventMessage,
    HealthReport,
    HealthSample,
    ProvenanceReport,
    StateMessage,
)
from edgeward.provenance import (
    IN_TOTO_PAYLOAD_TYPE,
    Envelope,
    PrivateKey,
    canonical_json,
    sign_payload,
)

T0 = 1_750_000_000.0  # a fixed device time (2025-06-15)
DIGEST = "ab" * 32


def sample(**kw: object) -> HealthSample:
    base: dict[str, object] = dict(
        uptime_s=3600.0, cpu_percent=37.5, load_1m=0.75, memory_used_bytes=2_147_483_648,
        memory_total_bytes=8_589_934_592, temperature_c=51.5, decode_tokens_per_s=21.25,
        queue_depth=2, safety_decisions={"allow": 120, "S1": 2}, artifact_digest=DIGEST,
        slot="a")
    base.update(kw)
    return HealthSample(**base)  # type: ignore[arg-type]


def health(device: str = "pi-01", seq: int = 1, **kw: object) -> HealthReport:
    return HealthReport(device_id=device, seq=seq, time=T0 + seq % 1000, metrics=sample(**kw))


def event(device: str = "pi-01", seq: int = 2) -> EventMessage:
    return EventMessage(device_id=device, seq=seq, time=T0 + seq, event="update.progress",
                        severity="info", data={"percent": 40, "slot": "b"})


def statement_envelope(publisher: PrivateKey, digest: str = DIGEST) -> Envelope:
    body = {"_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": "model.gguf", "digest": {"sha256": digest}}],
            "predicateType": "https://edgeward.dev/provenance/v1", "predicate": {}}
    return sign_payload(canonical_json(body), IN_TOTO_PAYLOAD_TYPE, publisher)


def provenance(publisher: PrivateKey, device: str = "pi-01", seq: int = 3) -> ProvenanceReport:
    return ProvenanceReport(
        device_id=device, seq=seq, time=T0 + seq, artifact_digest=DIGEST, slot="a",
        statement=statement_envelope(publisher),
        attestation=Attestation(publisher_key_id=publisher.key_id, verified_at=T0,
                                loaded_at=T0 + 1))


def state(device: str = "pi-01", st: str = "online", session: int = 1) -> StateMessage:
    return StateMessage(device_id=device, state=DeviceState(st), session=session, time=T0,
                        agent_version="0.1.0")


def wait_until(pred: Callable[[], bool], timeout: float = 10.0, step: float = 0.02) -> bool:
    """Poll ``pred`` until it holds or ``timeout`` passes (bounded)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(step)
    return pred()


def write_fleet_toml(path: Path, broker: str, store: str, **extra: str) -> Path:
    lines = [f'broker = "{broker}"', f'store = "{store}"']
    lines += [f'{k} = "{v}"' for k, v in extra.items()]
    path.write_text("\n".join(lines) + "\n")
    return path
