"""The ``[behaviour]`` table of agent.toml (see :mod:`._behaviour`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from edgeward.errors import ConfigError

__all__ = ["BehaviourConfig"]

OnDrift = Literal["alert", "stop", "rollback"]
_KEYS = {"check_on_load": (bool,), "check_interval_s": (int, float), "cpu_budget": (int, float),
         "on_drift": (str,), "canary_interval_s": (int, float), "canaries": (str,)}


@dataclass(frozen=True)
class BehaviourConfig:
    """The ``[behaviour]`` table of agent.toml.

    Attributes:
        check_on_load: replay the fingerprint before serving a newly loaded artifact.
        check_interval_s: seconds between scheduled checks (0 = no schedule); stretched so
            checks use at most ``cpu_budget`` of the time.
        cpu_budget: the largest fraction of wall time the checks may take (0 < b <= 0.5).
        on_drift: ``alert``, ``stop`` or ``rollback``.
        canary_interval_s: seconds between runs of the safety canaries through the filter
            (0 = never; the first run is 5 s after start).
        canaries: a signed canary-set file (verified with the agent's trust store); None: the
            packaged ``edgeward-canaries/1``.
    """

    check_on_load: bool = True
    check_interval_s: float = 3600.0
    cpu_budget: float = 0.01
    on_drift: OnDrift = "alert"
    canary_interval_s: float = 900.0
    canaries: str | None = None

    def __post_init__(self) -> None:
        if not (self.check_interval_s == 0 or 10 <= self.check_interval_s <= 7 * 86400):
            raise ConfigError(f"[behaviour] check_interval_s must be 0 (off) or between 10 and "
                              f"604800 seconds, got {self.check_interval_s!r}")
        if not 0 < self.cpu_budget <= 0.5:
            raise ConfigError(f"[behaviour] cpu_budget must be in (0, 0.5] (a fraction of the "
                              f"time), got {self.cpu_budget!r}")
        if not (self.canary_interval_s == 0 or 10 <= self.canary_interval_s <= 7 * 86400):
            raise ConfigError(f"[behaviour] canary_interval_s must be 0 (off) or between 10 and "
                              f"604800 seconds, got {self.canary_interval_s!r}")
        if self.on_drift not in ("alert", "stop", "rollback"):
            raise ConfigError(f"[behaviour] on_drift must be 'alert', 'stop' or 'rollback', "
                              f"got {self.on_drift!r}")

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any], where: str = "") -> BehaviourConfig:
        """Parse the table, naming any unknown or mistyped key."""
        for key, value in table.items():
            types = _KEYS.get(key)
            if types is None:
                raise ConfigError(f"{where}[behaviour] unknown key {key!r}; known keys are "
                                  f"{', '.join(sorted(_KEYS))}")
            if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
                raise ConfigError(f"{where}[behaviour] key {key!r} has bad value {value!r}")
        values: dict[str, Any] = {
            k: (float(v) if k in ("check_interval_s", "cpu_budget", "canary_interval_s") else v)
            for k, v in table.items()}
        try:
            return cls(**values)
        except ConfigError as e:
            raise ConfigError(f"{where}{e}") from e

    def next_interval(self, last_check_s: float) -> float:
        """Seconds to the next scheduled check: the interval, stretched to the CPU budget."""
        return max(self.check_interval_s, last_check_s / self.cpu_budget)


