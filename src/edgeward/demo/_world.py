"""The demo's world on disk: keys, trust stores, the fleet's and each device's configuration.

Everything lives under one working directory, laid out as a small real deployment::

    WORK/keys/            publisher, operator and one key pair per device
    WORK/fleet/           fleet.toml, the fleet store, its trust store, the artifact store
    WORK/devices/ID/      agent.toml, the device's trust store and state (A/B slots, spool)
    WORK/models/          the compressed, signed artifacts
    WORK/logs/            one log per process
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from edgeward.fleet import free_port
from edgeward.hardware_profiles import HardwareProfile
from edgeward.provenance import PrivateKey, Role, TrustStore, generate_key, write_key_pair

__all__ = ["DemoDevice", "World", "gateway_profile"]


def gateway_profile() -> HardwareProfile:
    """A small CPU box: an x86 gateway that leaves the model 320 MiB next to its other work.

    Its budget is chosen so that the largest candidates do not fit and the auto-recipe has to
    pick a smaller one; the figures are those of a 2-core Atom-class box with DDR4-2400.
    """
    return HardwareProfile(
        name="demo-gateway-320mb", display_name="Small CPU gateway (320 MiB for the model)",
        backend="cpu", memory_bytes=320 * 2**20, bandwidth_gbps=19.2,
        cpu_features=("sse4_2", "avx", "avx2", "fma"), cores=2,
        preferred_runtime="llama.cpp", preferred_format="gguf", default_context=2048,
        notes="edgeward demo: a small box whose other services leave 320 MiB for the model.")


@dataclass
class DemoDevice:
    """One simulated device: its id, hardware profile, port and files."""

    device_id: str
    role: str  # what it stands for, in words
    profile: HardwareProfile
    profile_ref: str | None  # what the agent's ``profile`` key says (None: this machine)
    port: int
    dir: Path
    key: PrivateKey

    @property
    def url(self) -> str:
        """Its OpenAI-compatible API."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def config(self) -> Path:
        """Its agent.toml."""
        return self.dir / "agent.toml"

    @property
    def trust(self) -> Path:
        """Its trust store (the publisher and the operator)."""
        return self.dir / "trust"

    @property
    def state(self) -> Path:
        """Its state directory (slots, spool, audit log)."""
        return self.dir / "state"


class World:
    """Creates the demo's keys, trust stores and configuration under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.keys = root / "keys"
        self.fleet_dir = root / "fleet"
        self.models = root / "models"
        self.logs = root / "logs"
        self.publisher = generate_key()
        self.operator = generate_key()
        self.devices: list[DemoDevice] = []

    @property
    def fleet_toml(self) -> Path:
        """The fleet's configuration."""
        return self.fleet_dir / "fleet.toml"

    @property
    def artifacts(self) -> Path:
        """The artifact server's store."""
        return self.fleet_dir / "artifacts"

    @property
    def fleet_trust(self) -> Path:
        """The fleet manager's trust store: it verifies the devices' provenance."""
        return self.fleet_dir / "trust"

    @property
    def operator_key(self) -> Path:
        """The operator's private key file (for `edgeward tui --operator-key`)."""
        return self.keys / "operator"

    def create(self, broker_url: str,
               devices: list[tuple[str, str, HardwareProfile, str | None]]) -> None:
        """Write every key, trust store and configuration file.

        Args:
            broker_url: the broker's ``mqtt://`` URL.
            devices: ``(device_id, role, profile, profile_ref)`` for each device.
        """
        for folder in (self.keys, self.fleet_dir, self.models, self.logs, self.artifacts):
            folder.mkdir(parents=True, exist_ok=True)
        write_key_pair(self.publisher, self.keys / "publisher")
        write_key_pair(self.operator, self.operator_key)
        fleet_trust = TrustStore.open(self.fleet_trust, create=True)
        fleet_trust.add(self.publisher.public_key, [Role.PUBLISHER], name="publisher")
        self.fleet_toml.write_text(f'broker = "{broker_url}"\nstore = "fleet.db"\n'
                                   f'trust_store = "trust"\n')
        for device_id, role, profile, ref in devices:
            d = DemoDevice(device_id, role, profile, ref, free_port(),
                           self.root / "devices" / device_id, generate_key())
            d.dir.mkdir(parents=True, exist_ok=True)
            files = write_key_pair(d.key, self.keys / device_id)
            trust = TrustStore.open(d.trust, create=True)
            trust.add(self.publisher.public_key, [Role.PUBLISHER], name="publisher")
            trust.add(self.operator.public_key, [Role.OPERATOR], name="operator")
            agent_profile = ref
            if ref is not None and ref.endswith(".toml"):  # a profile of our own: its file
                (d.dir / ref).write_text(profile.to_toml())
                agent_profile = str(d.dir / ref)
            profile_line = f'profile = "{agent_profile}"\n' if agent_profile else ""
            d.config.write_text(
                f'# edgeward demo device {device_id}: {role}\n'
                f'artifact = "@slots"\n'
                f'trust_store = "trust"\n'
                f'state_dir = "state"\n'
                f'listen = "127.0.0.1:{d.port}"\n'
                f'{profile_line}'
                f'context_length = 2048\n'
                f'safety_policy = "default"\n'
                f'device_id = "{device_id}"\n'
                f'device_key = "{files.private_key_path}"\n'
                f'log_format = "json"\n'
                f'\n[telemetry]\n'
                f'broker = "{broker_url}"\n'
                f'health_interval_s = 2\n'
                f'reconnect_min_s = 0.5\n'
                f'reconnect_max_s = 2\n')
            self.devices.append(d)

    def remove(self) -> None:
        """Delete the working directory."""
        shutil.rmtree(self.root, ignore_errors=True)
