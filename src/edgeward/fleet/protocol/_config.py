"""Reading a broker's options from a TOML table (the agent's and the fleet's config files)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from edgeward.errors import ConfigError
from edgeward.fleet.protocol._mqtt import BrokerOptions

__all__ = ["BROKER_KEYS", "broker_options_from"]

BROKER_KEYS = ("broker", "username", "password", "password_env", "ca_file", "cert_file",
               "key_file", "mqtt_version", "keepalive_s", "connect_timeout_s")


def broker_options_from(table: dict[str, Any], *, base_dir: Path, where: str,
                        resolve_secrets: bool = True) -> BrokerOptions:
    """Take the broker keys out of ``table`` (it is modified) and build the options.

    Keys: ``broker`` (the URL, required), ``username``, ``password_env`` (the name of an
    environment variable holding the password; ``password`` itself is accepted but keeps a
    secret in a file), ``ca_file``, ``cert_file``, ``key_file`` (relative to ``base_dir``),
    ``mqtt_version`` (auto, 5, 3.1.1), ``keepalive_s``, ``connect_timeout_s``. With
    ``resolve_secrets`` off, an unset ``password_env`` is not an error (commands that only read
    the store do not need the broker's password).

    Raises:
        ConfigError: a missing URL, a wrong type, an unset environment variable.
    """
    def pop(key: str, kind: type | tuple[type, ...]) -> Any:
        value = table.pop(key, None)
        if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
            raise ConfigError(f"{where}: {key} = {value!r} has the wrong type")
        return value

    url = pop("broker", str)
    if url is None:
        raise ConfigError(f"{where}: 'broker' (mqtt://HOST:PORT or mqtts://HOST:PORT) is "
                          "required")
    password = pop("password", str)
    env = pop("password_env", str)
    if env is not None:
        password = os.environ.get(env)
        if password is None and resolve_secrets:
            raise ConfigError(f"{where}: password_env = {env!r}, but that environment "
                              "variable is not set")
    paths = {k: (base_dir / v if v is not None else None)
             for k in ("ca_file", "cert_file", "key_file") for v in [pop(k, str)]}
    version: Any = pop("mqtt_version", str) or "auto"  # BrokerOptions checks the value
    keepalive = pop("keepalive_s", int) or 30
    timeout = pop("connect_timeout_s", (int, float)) or 10.0
    return BrokerOptions(url=url, username=pop("username", str), password=password,
                         ca_file=paths["ca_file"], cert_file=paths["cert_file"],
                         key_file=paths["key_file"], version=version, keepalive_s=keepalive,
                         connect_timeout_s=float(timeout))
