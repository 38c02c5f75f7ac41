"""Enrolling devices: their keys into the registry (the store) and the fleet's trust store."""

from __future__ import annotations

import time
from collections.abc import Sequence

from edgeward.fleet._config import FleetConfig
from edgeward.fleet._store import DeviceRecord, open_store
from edgeward.provenance import PublicKey, Role, TrustStore

__all__ = ["enroll_devices"]


def enroll_devices(config: FleetConfig, devices: Sequence[tuple[str, PublicKey]], *,
                   replace: bool = False) -> list[DeviceRecord]:
    """Enroll devices: each id with its device public key.

    The registry in the store maps the id to the key; when the fleet has a trust store, the key
    is also trusted there with the ``device`` role and the id as its name, so that revoking
    it (``edgeward keys revoke``) makes the manager refuse the device's messages.

    Args:
        config: the fleet (its store and trust store).
        devices: (device id, public key) pairs.
        replace: give already enrolled devices these new keys (their seq restarts).

    Returns:
        The registry records.

    Raises:
        ConfigError: a bad id, a device enrolled with another key (without ``replace``), a
            revoked key.
        StoreError: the store failed.
    """
    if config.trust_store is not None:  # first: a revoked key is refused before registering
        trust = TrustStore.open(config.trust_store, create=True)
        for device_id, key in devices:
            trust.add(key, [Role.DEVICE], name=device_id)
    with open_store(config.store, base_dir=config.base_dir,
                    sqlite_synchronous=config.sqlite_synchronous) as store:
        return store.enroll_many(devices, now=time.time(), replace=replace)
