"""Settings an operator changed by signed command (``set-config``, ``set-policy``).

They are kept in ``STATE/remote.json`` and laid over the configuration file at every start and
reload, so a device keeps what the fleet told it across restarts, until the next command says
otherwise (editing the file's own keys does not undo them: the command is the later word).
Only the operational limits below may be set remotely; what decides trust (the artifact, the
trust store, keys, ``allow_unsigned``) never can.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgeward.device_agents._config import AgentConfig, check_types
from edgeward.device_agents._files import atomic_write
from edgeward.errors import ConfigError

__all__ = ["SETTABLE", "apply_remote", "load_remote", "save_remote", "with_settings"]

SETTABLE = ("max_queue", "max_body_bytes", "max_tokens_cap", "default_max_tokens",
            "shutdown_deadline_s", "model_name")


def _path(state_dir: Path) -> Path:
    return Path(state_dir) / "remote.json"


def load_remote(state_dir: Path) -> dict[str, Any]:
    """``{"config": {...}, "safety_policy": PATH | None}`` (empty when nothing was set).

    Raises:
        ConfigError: the file is unreadable.
    """
    try:
        doc = json.loads(_path(state_dir).read_bytes())
    except FileNotFoundError:
        return {"config": {}, "safety_policy": None}
    except (OSError, ValueError) as e:
        raise ConfigError(f"{_path(state_dir)}: unreadable ({e}); restore or remove it") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("config", {}), dict):
        raise ConfigError(f"{_path(state_dir)}: not a remote-settings file")
    return {"config": dict(doc.get("config", {})), "safety_policy": doc.get("safety_policy")}


def save_remote(state_dir: Path, doc: dict[str, Any]) -> None:
    """Write the remote settings atomically (fsync'd).

    Raises:
        ConfigError: the file cannot be written.
    """
    atomic_write(_path(state_dir), json.dumps(doc, sort_keys=True).encode())


def with_settings(cfg: AgentConfig, changes: Mapping[str, Any], *,
                  source: str = "set-config") -> AgentConfig:
    """``cfg`` with the remotely settable ``changes``, validated exactly as the configuration
    file is (the same types, the same ranges: :class:`AgentConfig` checks itself).

    Raises:
        ConfigError: a key that cannot be set remotely, or a bad value; the message names
            ``source``, the key, the value and what is expected.
    """
    refused = sorted(set(changes) - set(SETTABLE))
    if refused:
        raise ConfigError(f"{source}: {', '.join(map(repr, refused))} cannot be set remotely; "
                          f"only {', '.join(SETTABLE)}")
    check_types(changes, f"{source}: ")
    dataclasses.replace(cfg, **changes, source=source)  # raises, naming the source
    return dataclasses.replace(cfg, **changes)


def apply_remote(cfg: AgentConfig) -> AgentConfig:
    """``cfg`` with the remote settings of its state directory laid over it.

    Raises:
        ConfigError: a stored setting is no longer valid for this configuration.
    """
    doc = load_remote(cfg.state_dir)
    changes: dict[str, Any] = {k: v for k, v in doc["config"].items() if k in SETTABLE}
    if changes:
        cfg = with_settings(cfg, changes, source=str(_path(cfg.state_dir)))
    policy = doc.get("safety_policy")
    if isinstance(policy, str) and policy and Path(policy).is_file():
        cfg = dataclasses.replace(cfg, safety_policy=policy)
    return cfg
