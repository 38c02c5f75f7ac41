"""A small, fixed world for the TUI tests: a models directory (a tiny GGUF, signed and
unsigned, with a trust store) and a fleet store holding three devices with health history,
provenance, alerts and a halted rollout. Fixed times and keys, so snapshots are stable."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _models import fixed_key
from edgeward.fleet import Alert, open_store
from edgeward.fleet._store import Accepted
from edgeward.fleet.protocol import (
    Attestation,
    DeviceState,
    EventMessage,
    HealthReport,
    HealthSample,
    ProvenanceReport,
    StateMessage,
)
from edgeward.hardware_profiles import HardwareProfile
from edgeward.provenance import (
    IN_TOTO_PAYLOAD_TYPE,
    TrustStore,
    canonical_json,
    sign_payload,
)

T0 = 1_750_000_000.0  # 2025-06-15, the fixed "now" of the fleet world
DIGEST = "ab" * 32


def write_keys(root: Path) -> tuple[Path, Path]:
    """A publisher key file and a trust store that trusts it (and the key as operator)."""
    key = fixed_key(7)
    key_path = root / "publisher.key"
    key_path.write_bytes(key.to_pem())
    key_path.chmod(0o600)
    trust = root / "trust"
    TrustStore.open(trust, create=True).add(key.public_key, roles=("publisher", "operator"),
                                 name="test publisher")
    return key_path, trust


def _health(device: str, seq: int, cpu: float, tps: float,
            safety: dict[str, int]) -> HealthReport:
    return HealthReport(device_id=device, seq=seq, time=T0 - 60 + seq, metrics=HealthSample(
        uptime_s=3600.0 + seq, cpu_percent=cpu, load_1m=0.5, memory_used_bytes=2 << 30,
        memory_total_bytes=8 << 30, temperature_c=50.0, decode_tokens_per_s=tps,
        queue_depth=0, safety_decisions=safety, artifact_digest=DIGEST, slot="a"))


def populate_fleet(root: Path) -> Path:
    """A fleet.toml and its SQLite store with three devices; returns the config path."""
    publisher = fixed_key(7)
    devices = {"pi-01": fixed_key(11), "pi-02": fixed_key(12), "nuc-01": fixed_key(13)}
    config = root / "fleet.toml"
    config.write_text('broker = "mqtt://127.0.0.1:1"\nstore = "fleet.db"\n')
    with open_store(str(root / "fleet.db")) as store:
        store.enroll_many([(d, k.public_key) for d, k in devices.items()], now=T0 - 3600)
        batch = []
        for i, device in enumerate(sorted(devices)):
            state = "offline" if device == "pi-02" else "online"
            batch.append(Accepted(StateMessage(device_id=device, state=DeviceState(state),
                                               session=1, time=T0 - 50, agent_version="0.1"),
                                  b"", T0 - 50))
            for seq in range(1, 9):
                batch.append(Accepted(_health(device, seq, cpu=10.0 * ((seq + i) % 5),
                                              tps=20.0 + seq + i,
                                              safety={"allow": 10 * seq, "S1": i}),
                                      b"", T0 - 60 + seq))
            envelope = sign_payload(canonical_json(
                {"_type": "https://in-toto.io/Statement/v1",
                 "subject": [{"name": "smol.gguf", "digest": {"sha256": DIGEST}}],
                 "predicateType": "https://edgeward.dev/provenance/v1", "predicate": {}}),
                IN_TOTO_PAYLOAD_TYPE, publisher)
            batch.append(Accepted(ProvenanceReport(
                device_id=device, seq=20, time=T0 - 30, artifact_digest=DIGEST, slot="a",
                statement=envelope, attestation=Attestation(
                    publisher_key_id=publisher.key_id, verified_at=T0 - 31,
                    loaded_at=T0 - 30)), b"", T0 - 30, statement_verified=device != "nuc-01"))
            batch.append(Accepted(EventMessage(
                device_id=device, seq=21, time=T0 - 20, event="update.committed",
                severity="info", data={"slot": "a"}), b"", T0 - 20))
        store.write(batch, manager="test", now=T0 - 10)
        store.add_alert(Alert("pi-02", "lost", "no message for 45 s", T0 - 15), manager="test")
        store.put_doc("rollouts", "smol-abababab", {
            "name": "smol-abababab", "group": "lab", "state": "halted", "wave": 1,
            "halt_reason": "2 of 2 devices failed in wave 2", "params": {},
            "waves": [["pi-01"], ["pi-02", "nuc-01"]],
            "devices": {"pi-01": {"wave": 0, "status": "committed", "attempts": 1},
                        "pi-02": {"wave": 1, "status": "rolled_back", "attempts": 1},
                        "nuc-01": {"wave": 1, "status": "failed", "attempts": 2}}}, now=T0)
    return config


def models_dir(root: Path, tiny_gguf: Path, key_path: Path) -> Path:
    """A models directory: the tiny GGUF unsigned, and a signed copy with a report."""
    from edgeward.provenance import build_statement, load_private_key, sign_artifact

    d = root / "models"
    d.mkdir()
    shutil.copy(tiny_gguf, d / "tiny-unsigned.gguf")
    signed = d / "tiny-signed.gguf"
    shutil.copy(tiny_gguf, signed)
    (d / "tiny-signed.gguf.report.json").write_text(
        '{"type": "Q8_0", "quality": {"kld_mean": 0.0123, "ppl": 12.5, '
        '"top1_agreement": 0.97}}\n')
    sign_artifact(signed, load_private_key(key_path), statement=build_statement(signed))
    return d


LOCAL = HardwareProfile(name="local", display_name="this test machine", memory_bytes=16 << 30,
                        bandwidth_gbps=25.0, cpu_features=("avx2",), cores=2,
                        default_context=2048)


@dataclass
class World:
    root: Path
    models: Path
    key: Path
    trust: Path
    fleet_config: Path

    def ctx(self, **kw: object) -> Any:
        """A TUI context on this world (fixed clock and profile; ``kw`` overrides)."""
        from edgeward.tui import TuiContext

        base: dict[str, object] = dict(
            model_dirs=[self.models], trust_store=self.trust, signing_key=self.key,
            fleet_config=self.fleet_config, clock=lambda: T0, detect=lambda: LOCAL,
            sources=list, refresh_s=0.3)
        base.update(kw)
        return TuiContext(**base)  # type: ignore[arg-type]
