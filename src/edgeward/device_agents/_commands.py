"""The device's gate for operator commands: no replay, no rollback attack.

:meth:`CommandGate.admit` accepts a received command only if

1. it is signed by a key with the ``operator`` role in the device's trust store (unknown,
   revoked, non-operator keys and bad signatures are refused: ``forged``, ``unsigned``);
2. it is for this device (``topic_mismatch``, ``wrong_device``) and well formed (``malformed``);
3. it has not expired (``expired``) and was not issued in the future beyond the allowed clock
   skew (``not_yet_valid``);
4. its nonce was never seen (``replayed``);
5. its version is above the last admitted one (``stale_version``);
6. a ``deploy`` does not bring back an artifact the device already moved on from, unless it is
   an explicitly signed ``rollback`` (``downgrade``).

The state (last version, nonces until they expire) is in ``STATE/commands.json``, written
atomically **before** the command is acted on, so a replay sent while the first copy executes,
or after a restart, is refused. The artifacts moved on from are not the gate's alone: they are
the device's one :class:`~edgeward.device_agents._superseded.SupersededRecord`
(``STATE/slots/superseded.json``), which the slot layer also consults, so an air-gap bundle
cannot bring back what a ``deploy`` may not. A ``commands.json`` of an older edgeward (with its
own ``superseded`` list) is migrated into that record when the gate first opens it. Every
refusal is a :class:`~edgeward.errors.CommandRefusedError` with its reason, which the agent
reports as a signed event.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgeward.device_agents._files import atomic_write
from edgeward.device_agents._superseded import SupersededRecord
from edgeward.errors import CommandRefusedError, ConfigError, RejectedMessageError
from edgeward.fleet.protocol import MAX_COMMAND_LIFETIME_S, Command, decode_command
from edgeward.provenance import TrustStore
from edgeward.safeio import MAX_MANIFEST_BYTES, parse_json, read_capped

__all__ = ["CLOCK_SKEW_S", "CommandGate"]

CLOCK_SKEW_S = 300.0  # seconds a command's issued_at may be ahead of the device's clock


class CommandGate:
    """Admits operator commands for one device (thread-safe).

    Args:
        state_dir: the agent's state directory (``commands.json`` lives there).
        device_id: this device's id.
        trust_store: the device's trust store directory (operator keys).
        clock: Unix seconds.
    """

    def __init__(self, state_dir: Path, device_id: str, trust_store: Path, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.path = Path(state_dir) / "commands.json"
        self.device_id = device_id
        self._trust_path = trust_store
        self._clock = clock
        self._lock = threading.Lock()
        self.record = SupersededRecord(state_dir, clock=clock)
        self._state = self._load()

    @property
    def last_version(self) -> int:
        """The highest version admitted so far (0: none)."""
        return int(self._state["last_version"])

    def already_refused(self, cmd: Command) -> CommandRefusedError | None:
        """The refusal :meth:`admit` would give ``cmd`` for its nonce or version, checked
        without recording anything (the network thread uses it so that replays of a genuine
        command cannot fill the queue); ``None`` when only :meth:`admit` can tell."""
        with self._lock:
            if cmd.nonce in self._state["nonces"]:
                return CommandRefusedError(f"command {cmd.command_id}: nonce seen before (a "
                                           "replay)", reason="replayed")
            if cmd.version <= self._state["last_version"]:
                return CommandRefusedError(
                    f"command {cmd.command_id}: version {cmd.version} is not above the last "
                    f"applied {self._state['last_version']}", reason="stale_version")
        return None

    def admit(self, topic: str, payload: bytes) -> Command:
        """Check a received command (see the module docstring) and record it as admitted.

        Raises:
            CommandRefusedError: with ``reason``; nothing is recorded for a refused command.
            ConfigError: the state file cannot be written (the command is not admitted).
        """
        try:
            cmd = decode_command(topic, payload, TrustStore.open(self._trust_path))
        except RejectedMessageError as e:
            raise CommandRefusedError(str(e), reason=e.reason) from e
        now = self._clock()
        with self._lock:
            state = self._state
            self._expire(state, now)
            if cmd.device_id != self.device_id:
                raise CommandRefusedError(f"command {cmd.command_id} is for {cmd.device_id!r}, "
                                     f"not this device ({self.device_id!r})",
                                     reason="wrong_device")
            if now > cmd.expires_at:
                raise CommandRefusedError(f"command {cmd.command_id} expired "
                                     f"{now - cmd.expires_at:.0f} s ago", reason="expired")
            if cmd.issued_at > now + CLOCK_SKEW_S:
                raise CommandRefusedError(f"command {cmd.command_id} is issued "
                                     f"{cmd.issued_at - now:.0f} s in the future (more than "
                                     f"{CLOCK_SKEW_S:.0f} s of clock skew)",
                                     reason="not_yet_valid")
            if cmd.nonce in state["nonces"]:
                raise CommandRefusedError(f"command {cmd.command_id}: nonce seen before (a replay)",
                                     reason="replayed")
            if cmd.version <= state["last_version"]:
                raise CommandRefusedError(f"command {cmd.command_id}: version {cmd.version} is not "
                                     f"above the last applied {state['last_version']}",
                                     reason="stale_version")
            digest = cmd.params.get("artifact_digest")
            if cmd.action == "deploy" and isinstance(digest, str) \
                    and self.record.is_superseded(digest):
                raise CommandRefusedError(f"command {cmd.command_id}: deploys {digest[:16]}…, an "
                                     "artifact this device moved on from; send a signed "
                                     "'rollback' to go back to it", reason="downgrade")
            new = {"last_version": cmd.version,
                   "nonces": {**state["nonces"], cmd.nonce: cmd.expires_at}}
            self._save(new)
            self._state = new
        return cmd

    def deployed(self, artifact_digest: str) -> None:
        """Record that ``artifact_digest`` now runs (after a deploy or rollback committed): the
        one it replaced becomes a downgrade for later ``deploy`` commands and bundle imports.

        Raises:
            ConfigError: the superseded record cannot be read or written.
        """
        self.record.moved_to(artifact_digest)

    # -- files -----------------------------------------------------------------------------
    def _load(self) -> dict[str, Any]:
        if not self.path.exists() and not self.path.is_symlink():
            return {"last_version": 0, "nonces": {}}
        try:
            data = parse_json(read_capped(self.path, MAX_MANIFEST_BYTES, what="command-gate state"),
                              what=f"command-gate state {self.path}")
        except ConfigError as e:
            raise ConfigError(f"{e}; it guards against replayed commands, so restore it rather "
                              "than delete it") from e
        if not isinstance(data, dict) or type(data.get("last_version")) is not int \
                or not isinstance(data.get("nonces"), dict) \
                or not isinstance(data.get("superseded", []), list):
            raise ConfigError(f"{self.path}: not a command-gate state file")
        if "superseded" in data or "current" in data:  # an older edgeward's file: migrate it
            if not self.record.exists():
                self.record.absorb(list(data["superseded"] or []), data.get("current"))
            data = {"last_version": data["last_version"], "nonces": data["nonces"]}
            self._save(data)
        return data

    @staticmethod
    def _expire(state: dict[str, Any], now: float) -> None:
        # A nonce can be forgotten once its command has expired: it would be refused anyway.
        keep = now - CLOCK_SKEW_S
        state["nonces"] = {n: exp for n, exp in state["nonces"].items()
                           if exp >= keep and exp <= now + MAX_COMMAND_LIFETIME_S + CLOCK_SKEW_S}

    def _save(self, state: dict[str, Any]) -> None:
        atomic_write(self.path, json.dumps(state, sort_keys=True).encode("utf-8"),
                     consequence="; the command was not admitted")
