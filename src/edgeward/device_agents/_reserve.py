"""Space held back on the state disk for what must not be lost when the disk fills.

The audit log and the telemetry spool each keep a *reserve file* next to them: ``N`` bytes of
zeros, written (not sparse) when there is room. When a write of theirs fails because the disk
is full, the owner releases the reserve (deletes the file, giving its blocks back to the file
system) and writes again, so the record still lands; then it raises an alert. The reserve is
made again once the disk has room for it and a margin, so the next full disk finds it there.
What happens when even the reserve is used up is the owner's policy (the audit log: fail
closed or keep serving, by the safety policy's ``[audit] on_failure``).

Example::

    reserve = DiskReserve(log_path.with_name(log_path.name + ".reserve"), 1 << 20)
    reserve.ensure()
    try:
        write()
    except OSError as e:
        if not (is_disk_full(e) and reserve.release()):
            raise
        write()  # in the space the reserve gave back
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["DISK_FULL_ERRNOS", "DiskReserve", "is_disk_full"]

DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
_CHUNK = 64 * 1024  # bytes written at a time
_RETRY_S = 30.0  # seconds between attempts to make a missing reserve again


def is_disk_full(e: BaseException | None) -> bool:
    """Whether ``e`` (or what it was raised from) says the disk or quota is full."""
    seen = 0
    while e is not None and seen < 8:
        if isinstance(e, OSError) and e.errno in DISK_FULL_ERRNOS:
            return True
        text = str(e).lower()
        if "disk is full" in text or "no space left" in text:
            return True  # sqlite3 ("database or disk is full") and wrapped errors
        e = e.__cause__ or e.__context__
        seen += 1
    return False


class DiskReserve:
    """One reserve file (see the module docstring); not thread-safe (its owner locks).

    Args:
        path: the reserve file (next to what it protects: the same file system).
        size: bytes to hold back; 0 holds nothing.
        clock: monotonic seconds (tests).

    Attributes:
        released: how many times it was given back.
    """

    def __init__(self, path: Path, size: int, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if size < 0:
            raise ValueError(f"a reserve of {size!r} bytes")
        self.path = path
        self.size = size
        self.released = 0
        self._clock = clock
        self._next_try = 0.0
        self._held = self._on_disk()

    def _on_disk(self) -> bool:
        try:
            return self.size > 0 and self.path.stat().st_size >= self.size
        except OSError:
            return False

    @property
    def held(self) -> bool:
        """Whether the reserve file is there, whole (as this object last saw or made it)."""
        return self._held

    def ensure(self, *, force: bool = False) -> bool:
        """Make the reserve file if it is missing and the disk has room for it and half as
        much again (tried at most every 30 s unless ``force``).

        Returns:
            Whether the reserve is held now. Never raises: no reserve is not an error
            (the owner finds out when it would need it).
        """
        if self.size == 0:
            return False
        if self._held or self._on_disk():
            self._held = True
            return True
        now = self._clock()
        if not force and now < self._next_try:
            return False
        self._next_try = now + _RETRY_S
        try:
            st = os.statvfs(self.path.parent)
            if st.f_bavail * st.f_frsize < self.size + self.size // 2:
                return False
            tmp = self.path.with_name(self.path.name + ".new")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                zeros = bytes(_CHUNK)
                left = self.size
                while left > 0:
                    left -= os.write(fd, zeros[:min(left, _CHUNK)])
                os.fsync(fd)
            finally:
                os.close(fd)
            tmp.replace(self.path)
            self._held = True
            return True
        except OSError:
            with contextlib.suppress(OSError):
                self.path.with_name(self.path.name + ".new").unlink()
            return False

    def release(self) -> bool:
        """Give the reserve's space back (delete the file).

        Returns:
            Whether there was a reserve to give back.
        """
        if self.size == 0:
            return False
        self._held = False
        try:
            self.path.unlink()
        except OSError:
            return False
        self.released += 1
        self._next_try = self._clock() + _RETRY_S  # not straight back onto a full disk
        return True
