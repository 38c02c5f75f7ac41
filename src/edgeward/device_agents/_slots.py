"""A/B slots: install into the inactive slot, switch atomically, health-check, commit or roll back.

Layout, under the agent's state directory::

    STATE/slots/a/NAME, NAME.edgeward.json    one verified artifact and its signature (read-only)
    STATE/slots/b/...                          the other slot
    STATE/slots/active.json                    the pointer: which slot serves, and whether on trial
    STATE/slots/journal.json                   the update in progress (absent when idle)
    STATE/slots/superseded.json                the digests this device moved on from
    STATE/slots/.staging-X                     an install being copied (never served)

An update is an explicit state machine whose state is on disk before each step acts, so a crash
or power loss anywhere leaves something :meth:`SlotStore.recover` can finish or undo:

``installing``  the artifact is being copied into ``.staging-X``. Recovery deletes the staging
                directory; the active slot is untouched.
``installed``   the copy was verified against its signature, made read-only, fsync'd and renamed
                to slot X; the pointer still names the old slot. Recovery leaves the installed
                slot for the next update and returns to idle.
``trial``       the pointer names slot X with ``trial: true`` and the old slot as ``previous``:
                the new artifact is loaded and health-checked. A crash here means it never
                passed its health check: recovery switches the pointer back.
commit          the pointer is rewritten with ``trial: false``, the artifact it replaced is
                recorded as superseded, then the journal is removed (a crash in between:
                recovery records it).

Downgrades: every install (an OTA ``deploy`` and an air-gap bundle alike) is checked against
the device's one record of superseded artifacts
(:class:`~edgeward.device_agents._superseded.SupersededRecord`) and refused (``downgrade``)
unless it carries a signed :class:`~edgeward.device_agents._superseded.DowngradeAuthorisation`;
:meth:`SlotStore.revert` (a signed ``rollback``) is the other way back.

Copies into a slot (the agent's one private-copy function) refuse a FIFO or a link to a
device and never take more bytes than the regular file held when it was opened, so
``/dev/zero`` or a growing file cannot fill the disk; signatures are read capped
(``read_signature``).

Every pointer and journal write is write-temp, fsync, rename, fsync the directory: a reader sees
the old file or the new one, never a torn one. Whatever the pointer names was verified before it
was named, and the agent verifies its private copy again before it loads it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from edgeward.device_agents._files import atomic_write, fsync_dir
from edgeward.device_agents._log import log_event
from edgeward.device_agents._superseded import DowngradeAuthorisation, SupersededRecord
from edgeward.device_agents._verified import (
    _make_read_only,
    _private_copy,
    _remove_tree,
    default_signature,
)
from edgeward.errors import ConfigError, EdgewardError
from edgeward.provenance import (
    TrustStore,
    canonical_json,
    check_fingerprint_file,
    read_signature,
    verify_artifact,
)

__all__ = ["SLOTS", "SlotPointer", "SlotStore", "UpdateResult"]

SLOTS = ("a", "b")
Step = Literal["installing", "installed", "trial", "committed", "rolled_back"]
_ENVELOPE_SUFFIX = ".edgeward.json"


@dataclass(frozen=True)
class SlotPointer:
    """What ``active.json`` says.

    Attributes:
        slot: ``a`` or ``b``.
        name: the artifact's file or directory name inside the slot.
        sha256: the artifact's digest (a directory: sha256 of its canonical ``{name: sha256}``).
        key_id: the publisher key its signature verified with.
        trial: the artifact is being health-checked (not yet committed).
        previous: the slot that served before (during a trial).
        since: Unix time of the switch.
    """

    slot: str
    name: str
    sha256: str
    key_id: str
    trial: bool = False
    previous: str | None = None
    since: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON fields (also the file's content)."""
        return {"slot": self.slot, "name": self.name, "sha256": self.sha256,
                "key_id": self.key_id, "trial": self.trial, "previous": self.previous,
                "since": self.since}

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str) -> SlotPointer:
        """Parse ``active.json``.

        Raises:
            ConfigError: a missing or mistyped field.
        """
        try:
            p = cls(slot=str(d["slot"]), name=str(d["name"]), sha256=str(d["sha256"]),
                    key_id=str(d["key_id"]), trial=bool(d.get("trial", False)),
                    previous=d.get("previous"), since=float(d.get("since", 0.0)))
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"{source}: not a slot pointer ({e})") from e
        if p.slot not in SLOTS or (p.previous is not None and p.previous not in SLOTS):
            raise ConfigError(f"{source}: unknown slot in {d!r:.200}")
        return p


@dataclass(frozen=True)
class UpdateResult:
    """How an update ended.

    Attributes:
        ok: the new artifact serves (committed).
        pointer: the pointer in force afterwards (the new slot, or the old one after a
            rollback; ``None`` when nothing was installed before and the update failed).
        error: the error kind when it failed.
        detail: the one-line reason.
    """

    ok: bool
    pointer: SlotPointer | None
    error: str = ""
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON fields."""
        return {"ok": self.ok, "pointer": self.pointer.to_dict() if self.pointer else None,
                "error": self.error or None, "detail": self.detail or None}


class SlotStore:
    """The A/B slots in a state directory (one updater at a time: the agent, or
    ``edgeward bundle import`` while the agent is stopped).

    Args:
        state_dir: the agent's state directory.
        on_step: called with each step's name right after its state is on disk (tests use it
            to crash at every step).
    """

    def __init__(self, state_dir: Path, *,
                 on_step: Callable[[str], None] | None = None) -> None:
        self.root = Path(state_dir) / "slots"
        self.record = SupersededRecord(state_dir)
        self._on_step = on_step or (lambda _step: None)

    # -- reading ---------------------------------------------------------------------------
    @property
    def pointer_path(self) -> Path:
        """``STATE/slots/active.json``."""
        return self.root / "active.json"

    @property
    def journal_path(self) -> Path:
        """``STATE/slots/journal.json``."""
        return self.root / "journal.json"

    def active(self) -> SlotPointer | None:
        """The pointer, or ``None`` when no artifact was ever installed.

        Raises:
            ConfigError: the pointer file is unreadable or malformed.
        """
        data = _read_json(self.pointer_path)
        return None if data is None else SlotPointer.from_dict(data, str(self.pointer_path))

    def artifact_path(self, pointer: SlotPointer) -> Path:
        """The artifact a pointer names."""
        return self.root / pointer.slot / pointer.name

    def journal(self) -> dict[str, Any] | None:
        """The update in progress, if any."""
        return _read_json(self.journal_path)

    # -- recovery --------------------------------------------------------------------------
    def recover(self) -> str:
        """Finish or undo an update a crash interrupted; call before serving.

        Returns:
            What was done: ``idle`` (nothing to do), ``discarded_install``,
            ``kept_installed``, ``rolled_back_trial`` or ``committed``.

        Raises:
            ConfigError: the files cannot be read or written.
        """
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        for stale in self.root.glob(".staging-*"):
            _remove_tree(stale)
        for tmp in self.root.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
        journal = self.journal()
        pointer = self.active()
        if journal is None:
            if pointer is not None and pointer.trial:  # the journal went first: finish it
                self._write_pointer(_replace(pointer, trial=False, previous=None))
                self.record.moved_to(pointer.sha256)
                return "committed"
            return "idle"
        step = journal.get("step")
        done = {"installing": "discarded_install", "installed": "kept_installed"}.get(
            str(step), "idle")
        if step == "trial" and pointer is not None and not pointer.trial \
                and pointer.sha256 == (journal.get("new") or {}).get("sha256"):
            self.record.moved_to(pointer.sha256)  # committed, not yet recorded: finish it
            done = "committed"
        if step == "trial" and pointer is not None and pointer.trial:
            previous = self._previous_pointer(journal)
            if previous is not None:
                self._write_pointer(previous)
            done = "rolled_back_trial"
            log_event(logging.WARNING, "update_rolled_back", reason="interrupted during its "
                      "health check", slot=pointer.slot, sha256=pointer.sha256)
        self._clear_journal()
        return done

    # -- the update ------------------------------------------------------------------------
    def install(self, artifact: Path, trust_store: Path, *, signature: Path | None = None,
                downgrade: DowngradeAuthorisation | None = None) -> SlotPointer:
        """Verify ``artifact``, copy it into the inactive slot and verify the copy.

        Args:
            artifact: the new artifact.
            trust_store: the device's trust store.
            signature: its signature (default next to it).
            downgrade: a verified authorisation to install a superseded artifact again.

        Returns:
            The pointer the slot would get (not yet in force).

        Raises:
            ConfigError: missing files; SignatureError (UnsignedArtifactError, ...): it does
                not verify (nothing of it is left in the slots); ResourceError: no space;
            CommandRefusedError: ``downgrade``, it is an artifact this device moved on from
                and ``downgrade`` does not authorise it.
        """
        artifact = Path(artifact)
        if not artifact.exists():
            raise ConfigError(f"artifact {artifact}: no such file or directory")
        signature = signature or default_signature(artifact)
        envelope = read_signature(signature, missing=f"{artifact}: no signature at {signature}; "
                                  "sign it with `edgeward sign`")
        store = TrustStore.open(trust_store)
        self.recover()
        current = self.active()
        target = "b" if current is not None and current.slot == "a" else "a"
        staging = self.root / f".staging-{target}-{uuid.uuid4().hex[:8]}"
        self._write_journal({"step": "installing", "target": target,
                             "previous": current.to_dict() if current else None})
        self._on_step("installing")
        try:
            copy = _private_copy(artifact, staging)
            (staging / (artifact.name + _ENVELOPE_SUFFIX)).write_bytes(envelope)
            verified = verify_artifact(copy, envelope, store)
            fingerprint = verified.fingerprint
            if fingerprint is not None and (artifact.parent / fingerprint.name).is_file():
                # The signed behavioural fingerprint travels with the artifact (checked here,
                # and again by the agent when it loads the slot).
                check_fingerprint_file(verified.statement, artifact.parent / fingerprint.name)
                shutil.copyfile(artifact.parent / fingerprint.name, staging / fingerprint.name)
            digests = {s.name: s.sha256 for s in verified.subjects}
            digest = (next(iter(digests.values())) if copy.is_file()
                      else _manifest_digest(digests))
            if self.record.check(digest, what=f"artifact {artifact}", authorisation=downgrade):
                assert downgrade is not None
                log_event(logging.WARNING, "downgrade_authorised", sha256=digest,
                          key_id=downgrade.key_id, reason=downgrade.reason)
            _fsync_tree(staging)
            _make_read_only(staging)
            slot_dir = self.root / target
            _remove_tree(slot_dir)
            staging.rename(slot_dir)
            fsync_dir(self.root)
        except BaseException:
            _remove_tree(staging)
            self._clear_journal()
            raise
        new = SlotPointer(slot=target, name=artifact.name, sha256=digest,
                          key_id=verified.key_id)
        self._write_journal({"step": "installed", "target": target, "new": new.to_dict(),
                             "previous": current.to_dict() if current else None})
        self._on_step("installed")
        log_event(logging.INFO, "update_installed", slot=target, sha256=digest,
                  key_id=verified.key_id)
        return new

    def switch(self, new: SlotPointer) -> SlotPointer:
        """Point at the installed slot, on trial (the old slot stays as ``previous``)."""
        journal = self.journal() or {}
        if journal.get("step") != "installed":
            raise ConfigError("switch: no installed update to switch to (install it first)")
        current = self.active()
        trial = _replace(new, trial=True, previous=current.slot if current else None,
                         since=time.time())
        self._write_journal({**journal, "step": "trial"})
        self._write_pointer(trial)
        self._on_step("trial")
        return trial

    def commit(self) -> SlotPointer:
        """The trial passed: the new slot serves for good."""
        pointer = self.active()
        if pointer is None or not pointer.trial:
            raise ConfigError("commit: no update on trial")
        done = _replace(pointer, trial=False, previous=None)
        self._write_pointer(done)
        self.record.moved_to(done.sha256)
        self._clear_journal()
        self._on_step("committed")
        log_event(logging.INFO, "update_committed", slot=done.slot, sha256=done.sha256)
        return done

    def rollback(self, reason: str) -> SlotPointer | None:
        """The trial failed: point back at the previous slot (or at nothing)."""
        journal = self.journal() or {}
        pointer = self.active()
        previous = self._previous_pointer(journal)
        if previous is not None:
            self._write_pointer(previous)
        elif pointer is not None and pointer.trial:
            self.pointer_path.unlink(missing_ok=True)
            fsync_dir(self.root)
        self._clear_journal()
        self._on_step("rolled_back")
        log_event(logging.WARNING, "update_rolled_back", reason=reason,
                  slot=pointer.slot if pointer else None)
        return previous

    def update(self, artifact: Path, trust_store: Path, *,
               health: Callable[[Path], object], signature: Path | None = None,
               downgrade: DowngradeAuthorisation | None = None) -> UpdateResult:
        """The whole flow: install, switch, health-check, then commit or roll back.

        Args:
            artifact: the new artifact (its signature next to it, or ``signature``).
            trust_store: the device's trust store.
            health: called with the new slot's artifact path; raises to fail the check.
            downgrade: a verified authorisation to install a superseded artifact again.

        Returns:
            The result; a failed health check is a result (rolled back), not an exception.

        Raises:
            ConfigError, SignatureError, ResourceError: the install itself failed (the active
                slot is untouched); CommandRefusedError: a downgrade (nothing installed).
        """
        new = self.install(artifact, trust_store, signature=signature, downgrade=downgrade)
        trial = self.switch(new)
        try:
            health(self.artifact_path(trial))
        except Exception as e:  # noqa: BLE001 - any failure of the new artifact rolls back
            kind = e.kind if isinstance(e, EdgewardError) else "health_check_failed"
            previous = self.rollback(f"health check failed: {e}")
            return UpdateResult(False, previous, kind, str(e) or type(e).__name__)
        return UpdateResult(True, self.commit())

    def revert(self, trust_store: Path, *, health: Callable[[Path], object]) -> UpdateResult:
        """Go back to the artifact in the other slot (a signed ``rollback``): verify it again,
        switch, health-check, commit or roll back, like an update.

        Raises:
            ConfigError: nothing is installed, or the other slot is empty;
            SignatureError: the other slot's artifact no longer verifies.
        """
        self.recover()
        current = self.active()
        if current is None:
            raise ConfigError(f"rollback: nothing is installed in {self.root}")
        other = "b" if current.slot == "a" else "a"
        names = [p for p in (self.root / other).glob("*")
                 if not p.name.endswith((_ENVELOPE_SUFFIX, ".behaviour.json"))]\
            if (self.root / other).is_dir() else []
        if len(names) != 1:
            raise ConfigError(f"rollback: slot {other} holds no previous artifact")
        artifact = names[0]
        sig = artifact.with_name(artifact.name + _ENVELOPE_SUFFIX)
        envelope = read_signature(sig, missing=f"rollback: slot {other} has no signature at "
                                  f"{sig}")
        verified = verify_artifact(artifact, envelope, TrustStore.open(trust_store))
        digests = {s.name: s.sha256 for s in verified.subjects}
        digest = (next(iter(digests.values())) if artifact.is_file()
                  else _manifest_digest(digests))
        new = SlotPointer(slot=other, name=artifact.name, sha256=digest, key_id=verified.key_id)
        self._write_journal({"step": "installed", "target": other, "new": new.to_dict(),
                             "previous": current.to_dict()})
        trial = self.switch(new)
        try:
            health(self.artifact_path(trial))
        except Exception as e:  # noqa: BLE001 - any failure of the old artifact rolls back
            kind = e.kind if isinstance(e, EdgewardError) else "health_check_failed"
            return UpdateResult(False, self.rollback(f"health check failed: {e}"), kind,
                                str(e) or type(e).__name__)
        return UpdateResult(True, self.commit())

    # -- files -----------------------------------------------------------------------------
    def _previous_pointer(self, journal: dict[str, Any]) -> SlotPointer | None:
        prev = journal.get("previous")
        return SlotPointer.from_dict(prev, str(self.journal_path)) if prev else None

    def _write_pointer(self, pointer: SlotPointer) -> None:
        _atomic_json(self.pointer_path, pointer.to_dict())

    def _write_journal(self, data: dict[str, Any]) -> None:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        _atomic_json(self.journal_path, data)

    def _clear_journal(self) -> None:
        try:
            self.journal_path.unlink(missing_ok=True)
            fsync_dir(self.root)
        except OSError as e:
            raise ConfigError(f"{self.journal_path}: cannot remove ({e.strerror})") from e


def _replace(p: SlotPointer, **changes: Any) -> SlotPointer:
    return SlotPointer(**{**p.to_dict(), **changes})


def _manifest_digest(digests: dict[str, str]) -> str:
    import hashlib

    return hashlib.sha256(canonical_json(digests)).hexdigest()


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: unreadable ({e}); restore it or remove the slots "
                          "directory and re-install") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: not a JSON object")
    return data


def _atomic_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write(path, json.dumps(data, sort_keys=True).encode("utf-8"))


def _fsync_tree(root: Path) -> None:
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            fd = os.open(Path(dirpath) / name, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(dirpath))
