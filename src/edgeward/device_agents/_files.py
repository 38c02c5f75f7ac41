"""Durable small-file writes for the agent's state directory (slots, commands, settings)."""

from __future__ import annotations

import os
from pathlib import Path

from edgeward.errors import ConfigError

__all__ = ["atomic_write", "fsync_dir"]


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, *, consequence: str = "") -> None:
    """Write ``path`` all or nothing: a temporary file, fsync, rename, fsync the directory
    (creating the directory, mode 0700, if needed).

    Raises:
        ConfigError: it cannot be written (``consequence`` is appended to the message).
    """
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with tmp.open("wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
        fsync_dir(path.parent)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise ConfigError(f"{path}: cannot write ({e.strerror}){consequence}") from e
