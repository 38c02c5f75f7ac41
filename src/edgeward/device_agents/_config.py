"""The agent's configuration: one frozen, validated record, read from a TOML file.

Every key is a field of :class:`AgentConfig` with its default and unit; docs/agent.md is the
reference. A bad file is refused with an error that names the file, the key and the value.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from edgeward.device_agents._behaviour_config import BehaviourConfig
from edgeward.device_agents._telemetry_config import TelemetryConfig
from edgeward.errors import ConfigError
from edgeward.safeio import MAX_CONFIG_BYTES, parse_toml, read_text_capped
from edgeward.safety import POLICY_PRESETS

__all__ = ["DEFAULT_LISTEN", "MAX_MODEL_NAME", "MAX_TOKENS_CAP", "SLOTS_ARTIFACT", "AgentConfig",
           "LogFormat", "check_types", "config_from_dict", "default_state_dir",
           "load_agent_config", "parse_listen"]

LogFormat = Literal["logfmt", "json"]
DEFAULT_LISTEN = "127.0.0.1:8088"
# ``artifact = "@slots"``: serve what the A/B slots of the state directory hold (installed by
# ``edgeward bundle import`` or an update), not a fixed path.
SLOTS_ARTIFACT = Path("@slots")

MAX_TOKENS_CAP = 131_072  # tokens: the longest context any supported model has
MAX_MODEL_NAME = 256      # characters

# Keys whose value is a path; relative paths are taken from the config file's directory.
_PATH_KEYS = ("artifact", "trust_store", "signature", "state_dir", "device_key", "audit_log",
              "safety_guard")
# The TOML type each key must have (bool is checked before int: TOML booleans are not ints).
_TOML_TYPES: dict[str, tuple[type, ...]] = {
    "artifact": (str,), "trust_store": (str,), "signature": (str,), "allow_unsigned": (bool,),
    "profile": (str,), "allow_cpu_fallback": (bool,), "context_length": (int,),
    "model_name": (str,), "listen": (str,),
    "api_key": (str,), "api_key_env": (str,), "max_queue": (int,), "max_body_bytes": (int,),
    "max_tokens_cap": (int,), "default_max_tokens": (int,), "state_dir": (str,),
    "shutdown_deadline_s": (int, float), "safety_policy": (str,), "log_format": (str,),
    "device_id": (str,), "device_key": (str,), "audit_log": (str,), "telemetry": (dict,),
    "safety_guard": (str,), "behaviour": (dict,),
}
_TYPE_NAMES = {str: "a string", bool: "true or false", int: "an integer", float: "a number",
               dict: "a table"}


def default_state_dir() -> Path:
    """``$XDG_STATE_HOME/edgeward/agent``, else ``~/.local/state/edgeward/agent``."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "edgeward" / "agent"


def parse_listen(listen: str) -> tuple[str, int]:
    """Split ``host:port`` (``[v6]:port`` for IPv6) into its host and port.

    Raises:
        ConfigError: not ``host:port`` with a port in 0..65535.
    """
    host, sep, port = listen.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isascii() or not port.isdigit() or len(port) > 5 \
            or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{listen!r:.80} is not host:port (e.g. 127.0.0.1:8088, [::1]:8088; "
                          "port 0 picks a free one)")
    return host, int(port)


@dataclass(frozen=True, kw_only=True)
class AgentConfig:
    """What ``edgeward agent run --config FILE`` serves, and its limits.

    Attributes:
        artifact: the model file or directory to serve (verified before it is loaded), or
            :data:`SLOTS_ARTIFACT` (``"@slots"``): what the state directory's active slot holds.
        trust_store: the trust store directory to verify it against; required unless
            ``allow_unsigned``.
        signature: the artifact's signature; default ``ARTIFACT.edgeward.json`` (or
            ``ARTIFACT.oms.sig`` when only that exists).
        allow_unsigned: serve an artifact without a valid signature (logged loudly at every
            load). For development only.
        profile: hardware profile (catalog name or ``.toml`` path) that sets threads, GPU
            layers and context; ``None`` uses the backend's defaults for this machine.
        allow_cpu_fallback: on a GPU profile whose backend the installed llama.cpp lacks,
            serve on the CPU (logged as a warning at every load) instead of refusing to load.
        context_length: tokens of context to reserve; ``None`` takes the profile's (or the
            backend's) default.
        model_name: the model id the API reports; default the artifact's name.
        listen: ``host:port`` to serve on; port 0 picks a free port.
        api_key: bearer key every ``/v1`` and ``/admin`` request must carry; ``None`` means
            no key (and no ``/admin`` endpoints).
        max_queue: requests that may wait for the model while one generates (requests);
            the next one gets 429 with ``Retry-After``.
        max_body_bytes: largest request body accepted (bytes); larger gets 413.
        max_tokens_cap: most tokens one request may generate (tokens); a larger
            ``max_tokens`` is lowered to it.
        default_max_tokens: tokens generated when a request does not say (tokens).
        state_dir: the agent's private directory (verified read-only model copies, lock).
        shutdown_deadline_s: on SIGTERM, time in-flight requests get to finish before they
            are cancelled (seconds).
        safety_policy: the safety filter's policy: ``None`` (or ``"passthrough"``) allows
            everything; a preset's name (``"default"``, ``"phi"``: see
            :data:`edgeward.safety.POLICY_PRESETS`) is that policy shipped in the package;
            otherwise the path of a policy TOML file, which must be signed like an artifact.
        log_format: ``logfmt`` (``key=value`` lines) or ``json`` (one object a line).
        device_id: this device's id in the fleet (needed by ``telemetry``).
        device_key: the device's private key (PEM): signs telemetry and the audit log's
            checkpoints. Never leaves the device.
        safety_guard: a signed guard GGUF (e.g. Llama Guard 3), verified against
            ``trust_store`` like the artifact: the safety filter's last stage for the prompts
            whose unsafe score falls in the policy's ``guard_band``; needs ``safety_policy``.
        audit_log: the tamper-evident log of the safety filter's non-allow decisions;
            default ``STATE/audit/safety.log``.
        behaviour: when the served model is checked against its signed fingerprint and what a
            drift does (the ``[behaviour]`` table).
        telemetry: MQTT telemetry settings (the ``[telemetry]`` table; needs ``device_id`` and
            ``device_key``); ``None``: no telemetry.
        source: the file this came from (for error messages); not part of equality.
    """

    artifact: Path
    trust_store: Path | None = None
    signature: Path | None = None
    allow_unsigned: bool = False
    profile: str | None = None
    allow_cpu_fallback: bool = False
    context_length: int | None = None  # tokens
    model_name: str | None = None
    listen: str = DEFAULT_LISTEN
    api_key: str | None = field(default=None, repr=False)
    max_queue: int = 8  # requests waiting, not counting the one generating
    max_body_bytes: int = 1024 * 1024  # bytes
    max_tokens_cap: int = 1024  # tokens
    default_max_tokens: int = 256  # tokens
    state_dir: Path = field(default_factory=default_state_dir)
    shutdown_deadline_s: float = 10.0  # seconds
    safety_policy: str | None = None
    safety_guard: Path | None = None
    log_format: LogFormat = "logfmt"
    device_id: str | None = None
    device_key: Path | None = None
    audit_log: Path | None = None
    telemetry: TelemetryConfig | None = None
    behaviour: BehaviourConfig = field(default_factory=BehaviourConfig)
    source: str = field(default="", compare=False, repr=False)

    def __post_init__(self) -> None:
        self._check("artifact", isinstance(self.artifact, Path), "a path")
        self._check("trust_store", self.trust_store is not None or self.allow_unsigned,
                    "set: the trust store to verify the artifact against (or set "
                    "allow_unsigned = true, for development only)")
        self._check("safety_guard", self.safety_guard is None or self.safety_policy is not None,
                    "used with a safety_policy (the guard is the filter's last stage)",
                    quote=False)
        self._check("context_length", self.context_length is None
                    or (_is_int(self.context_length) and self.context_length >= 16),
                    "an integer number of tokens >= 16")
        self._check("model_name", self.model_name is None or (
            isinstance(self.model_name, str) and len(self.model_name.strip()) > 0
            and len(self.model_name) <= MAX_MODEL_NAME and self.model_name.isprintable()),
                    f"a non-empty printable string of at most {MAX_MODEL_NAME} characters")
        try:
            parse_listen(self.listen)
        except ConfigError:
            self._check("listen", False, "host:port, e.g. 127.0.0.1:8088 or [::1]:8088")
        self._check("api_key", self.api_key is None or len(self.api_key) >= 8,
                    "at least 8 characters", quote=False)
        self._check("max_queue", _is_int(self.max_queue) and 0 <= self.max_queue <= 10_000,
                    "an integer number of requests in 0..10000")
        self._check("max_body_bytes", _is_int(self.max_body_bytes)
                    and 1024 <= self.max_body_bytes <= 1024**3, "bytes in 1024..2**30")
        self._check("max_tokens_cap", _is_int(self.max_tokens_cap)
                    and 1 <= self.max_tokens_cap <= MAX_TOKENS_CAP,
                    f"an integer number of tokens in 1..{MAX_TOKENS_CAP}")
        self._check("default_max_tokens", _is_int(self.default_max_tokens)
                    and 1 <= self.default_max_tokens <= self.max_tokens_cap,
                    f"tokens in 1..max_tokens_cap ({self.max_tokens_cap})")
        self._check("shutdown_deadline_s", isinstance(self.shutdown_deadline_s, int | float)
                    and not isinstance(self.shutdown_deadline_s, bool)
                    and 0 <= self.shutdown_deadline_s <= 3600, "seconds in 0..3600")
        self._check("log_format", self.log_format in get_args(LogFormat),
                    f"one of {', '.join(get_args(LogFormat))}")
        if self.telemetry is not None:
            self._check("device_key", self.device_key is not None,
                        "set: [telemetry] signs with the device's key", quote=False)

    def _check(self, key: str, ok: bool, expected: str, *, quote: bool = True) -> None:
        if not ok:
            where = f"{self.source}: " if self.source else ""
            value = repr(getattr(self, key)) if quote else "(hidden)"
            raise ConfigError(f"{where}key {key!r} has bad value {value}; expected {expected}")

    @property
    def audit_log_path(self) -> Path:
        """Where audit records go: ``audit_log``, else ``STATE/audit/safety.log``."""
        return self.audit_log or self.state_dir / "audit" / "safety.log"

    @property
    def host(self) -> str:
        """The host part of :attr:`listen`."""
        return parse_listen(self.listen)[0]

    @property
    def port(self) -> int:
        """The port part of :attr:`listen` (0: any free port)."""
        return parse_listen(self.listen)[1]

    @property
    def model_id(self) -> str:
        """The model id the API reports: ``model_name``, else the artifact's name."""
        if self.model_name:
            return self.model_name
        name = self.artifact.name
        return name[: -len(".gguf")] if name.endswith(".gguf") else name

    def to_dict(self) -> dict[str, Any]:
        """The configuration as JSON-ready values; the API key is never included."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name in ("source", "api_key"):
                continue
            value = getattr(self, f.name)
            if isinstance(value, TelemetryConfig):
                value = {"device_id": value.device_id, "broker": value.broker.url,
                         "health_interval_s": value.health_interval_s}
            elif isinstance(value, BehaviourConfig):
                value = dataclasses.asdict(value)
            out[f.name] = str(value) if isinstance(value, Path) else value
        out["api_key_set"] = self.api_key is not None
        return out


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def load_agent_config(path: Path) -> AgentConfig:
    """Read and validate an agent configuration file (TOML, keys at the top level).

    Relative paths in it are taken from the file's directory. ``api_key_env = "VAR"`` reads
    the key from that environment variable instead of the file.

    Args:
        path: the TOML file.

    Returns:
        The validated configuration.

    Raises:
        ConfigError: the file is missing or not TOML, a key is unknown, missing or of the wrong
            type, or a value is out of range (the message names the file, key and value).
    """
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such configuration file")
    data = parse_toml(read_text_capped(path, MAX_CONFIG_BYTES, what="agent config"),
                      what=str(path))
    return config_from_dict(data, source=str(path), base_dir=path.parent)


def config_from_dict(data: dict[str, Any], *, source: str = "",
                     base_dir: Path | None = None) -> AgentConfig:
    """Build an :class:`AgentConfig` from parsed TOML (see :func:`load_agent_config`).

    Raises:
        ConfigError: an unknown, missing or mistyped key, or a bad value.
    """
    where = f"{source}: " if source else ""
    unknown = sorted(set(data) - set(_TOML_TYPES))
    if unknown:
        raise ConfigError(f"{where}unknown key {unknown[0]!r}; known keys are "
                          f"{', '.join(sorted(_TOML_TYPES))}")
    if "artifact" not in data:
        raise ConfigError(f"{where}missing required key 'artifact' (the model to serve)")
    check_types(data, where)
    kwargs = dict(data)
    _resolve_paths(kwargs, base_dir)
    env = kwargs.pop("api_key_env", None)
    if env is not None:
        if "api_key" in kwargs:
            raise ConfigError(f"{where}set 'api_key' or 'api_key_env', not both")
        if env not in os.environ:
            raise ConfigError(f"{where}key 'api_key_env' names {env!r}, but that environment "
                              "variable is not set")
        kwargs["api_key"] = os.environ[env]
    policy = kwargs.get("safety_policy")
    if policy in ("", "passthrough", "none"):
        kwargs["safety_policy"] = None
    elif policy is not None and policy not in POLICY_PRESETS and base_dir is not None:
        p = Path(policy).expanduser()  # a policy file, relative to the config file
        kwargs["safety_policy"] = str(p if p.is_absolute() else base_dir / p)
    telemetry = kwargs.pop("telemetry", None)
    if telemetry is not None:
        kwargs["telemetry"] = _telemetry(telemetry, kwargs, where, base_dir)
    if "behaviour" in kwargs:
        kwargs["behaviour"] = BehaviourConfig.from_mapping(kwargs["behaviour"], where)
    return AgentConfig(**kwargs, source=source)


def check_types(data: Mapping[str, Any], where: str = "") -> None:
    """Each known key of ``data`` has its TOML type (``where`` prefixes the message).

    Raises:
        ConfigError: naming the key, the value and the type expected.
    """
    for key, value in data.items():
        types = _TOML_TYPES.get(key)
        if types is None:
            continue
        if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
            shown = "(hidden)" if key == "api_key" else repr(value)[:200]
            raise ConfigError(f"{where}key {key!r} has bad value {shown}; expected "
                              f"{' or '.join(_TYPE_NAMES[t] for t in types)}")


def _telemetry(table: dict[str, Any], kwargs: dict[str, Any], where: str,
               base_dir: Path | None) -> TelemetryConfig:
    """The ``[telemetry]`` table; the outbox defaults to ``STATE/telemetry-spool.db``."""
    device_id = kwargs.get("device_id")
    if device_id is None:
        raise ConfigError(f"{where}[telemetry] needs the top-level key 'device_id' (this "
                          "device's id in the fleet)")
    if "spool" not in table:  # the outbox lives in the agent's private directory
        state = kwargs.get("state_dir") or default_state_dir()
        table = {**table, "spool": str(Path(state) / "telemetry-spool.db")}
    try:
        return TelemetryConfig.from_mapping(table, device_id=device_id,
                                            base_dir=base_dir or Path.cwd())
    except ConfigError as e:
        raise ConfigError(f"{where}{e}") from e


def _resolve_paths(kwargs: dict[str, Any], base_dir: Path | None) -> None:
    """Path keys become Paths, relative ones taken from ``base_dir`` (``"@slots"`` stays)."""
    for key in _PATH_KEYS:
        if key == "artifact" and kwargs.get(key) == str(SLOTS_ARTIFACT):
            kwargs[key] = SLOTS_ARTIFACT
        elif key in kwargs:
            p = Path(kwargs[key]).expanduser()
            kwargs[key] = p if p.is_absolute() or base_dir is None else base_dir / p
