"""What an operator does to the fleet: sign and send commands, deploy an artifact to a device,
start and drive a staged rollout. The CLI (``edgeward fleet deploy|set-config|set-policy|
rollout``) and the terminal UI both call this, so the two cannot drift apart.

Example::

    with Operator(cfg, load_private_key(key_path)) as op, open_store(cfg.store) as store:
        op.deploy(store, Path("smol.gguf"), "pi-07", artifacts_dir=Path("artifacts"))
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeward.errors import ConfigError

if TYPE_CHECKING:
    from edgeward.fleet._config import FleetConfig
    from edgeward.fleet._store import Store
    from edgeward.fleet.protocol import Command, Connection

__all__ = ["Operator", "publish_artifact"]


def publish_artifact(artifact: Path, artifacts_dir: Path, cfg: FleetConfig, *,
                     delta: bool = True) -> dict[str, Any]:
    """Put a signed artifact (and, for delta updates, its chunk map) in the artifact server's
    store, after verifying it against the fleet's trust store when it has one.

    Returns:
        The deploy command's parameters: ``artifact_digest``, ``statement_digest``, ``name``,
        ``size``, ``fingerprint_digest`` when the signed statement names a behavioural
        fingerprint (``ARTIFACT.behaviour.json`` beside it, checked against the signed digest;
        the device checks it again) and, with ``delta``, ``map_digest``.

    Raises:
        ConfigError: the artifact or its signature is missing, or the signed fingerprint is
            not beside it; SignatureError: it does not verify against the fleet's trust
            store; DigestMismatchError: the fingerprint beside it is not the signed one.
    """
    from edgeward.fleet._artifacts import ArtifactServer
    from edgeward.provenance import TrustStore, verify_artifact

    artifact = Path(artifact)
    signature = artifact.with_name(artifact.name + ".edgeward.json")
    if cfg.trust_store is not None and signature.is_file():
        verify_artifact(artifact, signature.read_bytes(), TrustStore.open(cfg.trust_store))
    server = ArtifactServer(artifacts_dir, cfg.broker)
    digest, statement = server.add_signed(artifact)
    params: dict[str, Any] = {"artifact_digest": digest, "statement_digest": statement,
                              "name": artifact.name, "size": artifact.stat().st_size}
    fingerprint = _signed_fingerprint(artifact, signature)
    if fingerprint is not None:  # the signed behavioural fingerprint travels with the artifact
        params["fingerprint_digest"] = server.add(fingerprint)
    if delta:  # the content-defined chunk map lets the device reuse what it already holds
        params["map_digest"] = server.add_chunk_map(artifact, digest)
    return params


def _signed_fingerprint(artifact: Path, signature: Path) -> Path | None:
    """``ARTIFACT.behaviour.json`` when the artifact's signed statement names it (checked
    against the signed digest), else None (no fingerprint signed, or an OMS signature).

    Raises:
        ConfigError: the statement names a fingerprint that is not beside the artifact;
            DigestMismatchError: the file beside it is not the signed one.
    """
    from edgeward.errors import EdgewardError
    from edgeward.provenance import (
        IN_TOTO_PAYLOAD_TYPE,
        Envelope,
        Statement,
        check_fingerprint_file,
    )
    from edgeward.safeio import parse_json

    try:
        env = Envelope.from_json(signature.read_bytes(), source=str(signature))
        if env.payload_type != IN_TOTO_PAYLOAD_TYPE:
            return None
        statement = Statement.from_dict(parse_json(env.payload, what=str(signature)))
    except (OSError, EdgewardError):
        return None  # not a DSSE statement (e.g. OMS): nothing names a fingerprint
    if statement.fingerprint_subject is None:
        return None
    name = statement.fingerprint_subject.name
    if Path(name).name != name or name in {"", ".", ".."}:
        raise ConfigError(f"{signature}: the signed fingerprint's name {name!r:.80} is not a "
                          "file name; re-sign the artifact")
    path = artifact.with_name(name)
    check_fingerprint_file(statement, path)
    return path


class Operator:
    """An operator's signing key and one MQTT connection to publish signed commands on.

    Args:
        cfg: the fleet configuration (its broker).
        key: the operator's private key (its public key has the operator role in the
            devices' trust stores).
        client_id: the MQTT client id (default: unique per process).
    """

    def __init__(self, cfg: FleetConfig, key: Any, *, client_id: str | None = None) -> None:
        self.cfg, self.key = cfg, key
        self._client_id = client_id or f"edgeward-operator-{os.getpid()}-{id(self):x}"
        self._conn: Connection | None = None

    def __enter__(self) -> Operator:
        from edgeward.fleet.protocol import connect

        self._conn = connect(self.cfg.broker, client_id=self._client_id)
        self._conn.client.loop_start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Disconnect (idempotent)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def send(self, cmd: Command) -> None:
        """Sign ``cmd`` and publish it at QoS 1, waiting (up to 30 s) for the broker."""
        from edgeward.fleet.protocol import encode_command

        if self._conn is None:
            raise ConfigError("the operator is not connected (use it as a context manager)")
        wire = encode_command(cmd, self.key)
        self._conn.client.publish(wire.topic, wire.payload, qos=1).wait_for_publish(30)

    def command(self, store: Store, device_id: str, action: str, params: dict[str, Any],
                *, lifetime_s: float = 3600.0) -> Command:
        """Record the device's next command in the store, sign and send it. Its version is
        above both the store's last and the highest the device reported in its events (see
        :func:`edgeward.fleet._rollout.reported_version`), so commands another operator sent
        meanwhile do not make it ``stale_version``."""
        from edgeward.fleet._rollout import issue_command

        cmd = issue_command(store, device_id, action, params, lifetime_s=lifetime_s)
        self.send(cmd)
        return cmd

    def deploy(self, store: Store, artifact: Path, device_id: str, *, artifacts_dir: Path,
               delta: bool = True, lifetime_s: float = 3600.0) -> dict[str, Any]:
        """Publish ``artifact`` and send ``device_id`` a signed deploy command for it.

        Returns:
            ``command_id``, ``version``, ``device_id``, the digests and ``expires_at``.
        """
        if store.device(device_id) is None:
            raise ConfigError(f"device {device_id!r} is not enrolled in this fleet")
        params = publish_artifact(artifact, artifacts_dir, self.cfg, delta=delta)
        cmd = self.command(store, device_id, "deploy", params, lifetime_s=lifetime_s)
        return {"command_id": cmd.command_id, "version": cmd.version, "device_id": device_id,
                "artifact_digest": params["artifact_digest"],
                "statement_digest": params["statement_digest"],
                "map_digest": params.get("map_digest"),
                "fingerprint_digest": params.get("fingerprint_digest"),
                "expires_at": cmd.expires_at}

    def create_rollout(self, store: Store, artifact: Path, group: str, *, artifacts_dir: Path,
                       stages: Sequence[float], max_failure: float, name: str | None = None,
                       wave_timeout_s: float = 600.0) -> str:
        """Publish ``artifact`` and store a new rollout of it to ``group``; returns its name
        (nothing is sent until :meth:`run_rollout`).

        Raises:
            ConfigError: no such group, an empty group, or the name is taken.
        """
        from edgeward.fleet._rollout import RolloutDriver

        members = store.get_doc("device_groups", group)
        if members is None:
            raise ConfigError(f"no group {group!r} (make it with `fleet group set`)")
        params = publish_artifact(artifact, artifacts_dir, self.cfg, delta=True)
        rollout = name or f"{Path(artifact).stem}-{params['artifact_digest'][:8]}"
        RolloutDriver(store, self.send).create(
            rollout, group=group, devices=members["devices"], params=params, stages=stages,
            max_failure=max_failure, wave_timeout_s=wave_timeout_s)
        return rollout

    def run_rollout(self, store: Store, name: str, *, poll_s: float = 1.0,
                    should_stop: Callable[[], bool] = lambda: False) -> dict[str, Any]:
        """Drive rollout ``name`` until it is done, halted, or ``should_stop()``; returns its
        document. Its state is in the store: calling this again resumes it."""
        from edgeward.fleet._rollout import RolloutDriver

        driver = RolloutDriver(store, self.send)
        driver.get(name)
        return driver.run(name, poll_s=poll_s, should_stop=should_stop)
