"""What the terminal UI works on: where models are, the keys and stores it may use, and the
clock and machine detection (injectable, so tests and snapshots are deterministic)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeward.errors import ConfigError
from edgeward.hardware_profiles import HardwareProfile

__all__ = ["TuiContext"]


def _detect() -> HardwareProfile:
    from edgeward.hardware_profiles import detect_profile

    return detect_profile(measure_bandwidth=True).profile


def _packaged() -> list[Path]:
    from edgeward.packaged_models import minilm_dir, smollm2_gguf

    found = []
    for find in (smollm2_gguf, minilm_dir):
        try:
            found.append(find())
        except ConfigError:
            continue
    return found


@dataclass
class TuiContext:
    """The TUI's settings.

    Attributes:
        model_dirs: directories scanned for GGUF files and ONNX model directories.
        out_dir: where Compress writes artifacts (default: the first model directory).
        trust_store: verifies signatures shown on the Models screen and before a flash.
        signing_key: the publisher's private key, for Compress → Sign.
        fleet_config: the fleet's TOML (store, broker); the Fleet and Flash screens need it.
        operator_key: the operator's private key, for deploys and rollouts.
        artifacts_dir: the artifact server's store (`fleet serve-artifacts --dir`).
        refresh_s: seconds between fleet refreshes.
        clock: Unix seconds (tests pass a fixed clock).
        detect: detects this machine's profile (tests pass a fixed one).
        sources: source models listed beside the scanned ones (default: the packaged ones).
        compress_options: a :class:`edgeward.compress.CompressOptions` for GGUF compression
            (None: the defaults, with the reference-logits cache).
        candidates: the GGUF types Compress tries (None: the planner's defaults).
    """

    model_dirs: list[Path] = field(default_factory=lambda: [Path.cwd()])
    out_dir: Path | None = None
    trust_store: Path | None = None
    signing_key: Path | None = None
    fleet_config: Path | None = None
    operator_key: Path | None = None
    artifacts_dir: Path | None = None
    refresh_s: float = 2.0
    clock: Callable[[], float] = time.time
    detect: Callable[[], HardwareProfile] = _detect
    sources: Callable[[], list[Path]] = _packaged
    compress_options: Any = None
    candidates: tuple[str, ...] | None = None

    @property
    def output_dir(self) -> Path:
        """Where new artifacts go."""
        return self.out_dir or (self.model_dirs[0] if self.model_dirs else Path.cwd())

    def open_store(self) -> Any:
        """The fleet store named by ``fleet_config``.

        Raises:
            ConfigError: no fleet configuration was given, or it is invalid.
        """
        if self.fleet_config is None:
            raise ConfigError("no fleet configured: start `edgeward tui --fleet-config "
                              "FLEET.toml`")
        from edgeward.fleet import load_fleet_config, open_store

        cfg = load_fleet_config(self.fleet_config)
        return open_store(cfg.store, base_dir=cfg.base_dir,
                          sqlite_synchronous=cfg.sqlite_synchronous)

    def fleet(self, *, secrets: bool = False) -> Any:
        """The fleet configuration (``secrets``: with the broker password resolved)."""
        if self.fleet_config is None:
            raise ConfigError("no fleet configured: start `edgeward tui --fleet-config "
                              "FLEET.toml`")
        from edgeward.fleet import load_fleet_config

        return load_fleet_config(self.fleet_config, resolve_secrets=secrets)
