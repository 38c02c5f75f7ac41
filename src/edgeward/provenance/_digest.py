"""Streaming sha256 of an artifact's files (a single file, or every file under a directory).

Files are read in large blocks into one reused buffer (``hashlib`` releases the GIL on large
updates, so the files of a multi-file artifact are hashed on several threads at once). Memory
use is one block per worker whatever the file size, so multi-GB weights hash fine.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from edgeward.errors import ArtifactError, ConfigError
from edgeward.safeio import open_regular

__all__ = ["HashConfig", "artifact_files", "file_sha256", "hash_files"]


@dataclass(frozen=True, kw_only=True)
class HashConfig:
    """How artifact files are hashed.

    Attributes:
        block_size: bytes read per ``readinto`` call (default 4 MiB).
        workers: threads hashing files in parallel (default: the usable CPUs, at most 8).
    """

    block_size: int = 4 * 1024 * 1024  # bytes
    workers: int = 0  # 0 = min(usable CPUs, 8)

    def __post_init__(self) -> None:
        if self.block_size < 4096:
            raise ConfigError(f"block_size must be at least 4096 bytes, got {self.block_size!r}")
        if self.workers < 0:
            raise ConfigError(f"workers must be >= 0, got {self.workers!r}")

    def worker_count(self, n_files: int) -> int:
        """Threads to use for ``n_files`` files."""
        usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
            os.cpu_count() or 1)
        return max(1, min(n_files, self.workers or min(usable, 8)))


def file_sha256(path: Path, *, block_size: int = HashConfig.block_size) -> str:
    """sha256 (hex) of one file, streamed.

    Raises:
        ArtifactError: the file cannot be read.
    """
    h = hashlib.sha256()
    buf = bytearray(block_size)
    view = memoryview(buf)
    try:
        with open_regular(path, what="artifact file", error=ArtifactError) as f:
            left = os.fstat(f.fileno()).st_size  # a file that grows meanwhile is not followed
            while left > 0 and (n := f.readinto(view[:min(block_size, left)])):
                h.update(view[:n])
                left -= n
    except OSError as e:
        raise ArtifactError(f"{path}: cannot read ({e.strerror})") from e
    return h.hexdigest()


def artifact_files(artifact: Path, *, ignore: Iterable[str] = ()) -> dict[str, Path]:
    """The files an artifact consists of, by subject name.

    A file is one subject named by its file name; a directory gives one subject per regular
    file under it, named by its POSIX path relative to the directory. Symbolic links and other
    non-regular files are listed under their name too, mapped to their path, so that a verifier
    reports them as unexpected rather than following them out of the artifact.

    Args:
        artifact: a file or a directory.
        ignore: relative paths (files or directories) left out, as model-signing's
            ``ignore_paths`` are.

    Raises:
        ConfigError: the artifact does not exist.
    """
    # The artifact named itself may be a symlink (a Hugging Face cache's snapshot entries
    # are): it is followed, and the subject keeps the link's name. Links *inside* a directory
    # artifact are never followed.
    if artifact.is_file():
        return {artifact.name: artifact.resolve() if artifact.is_symlink() else artifact}
    if artifact.is_dir() and artifact.is_symlink():
        artifact = artifact.resolve()
    if not artifact.is_dir():
        if artifact.exists() or artifact.is_symlink():
            what = ("a broken symbolic link" if not artifact.exists()
                    else "not a regular file or a directory")
            raise ConfigError(f"{artifact}: {what} (an artifact is a model file or a model "
                              "directory)")
        raise ConfigError(f"{artifact}: no such file or directory (an artifact is a model file "
                          "or a model directory)")
    ignored = {PurePosixPath(p) for p in ignore}
    found: dict[str, Path] = {}
    for root, dirs, files in os.walk(artifact):
        rel_root = PurePosixPath(Path(root).relative_to(artifact).as_posix())
        keep = []
        for d in sorted(dirs):
            rel = rel_root / d
            if rel in ignored:
                continue
            if (Path(root) / d).is_symlink():
                found[str(rel)] = Path(root) / d  # never followed
            else:
                keep.append(d)
        dirs[:] = keep
        for name in files:
            rel = rel_root / name
            if rel not in ignored:
                found[str(rel)] = Path(root) / name
    return dict(sorted(found.items()))


def is_regular(path: Path) -> bool:
    """A regular file, not a symlink."""
    return path.is_file() and not path.is_symlink()


def hash_files(files: dict[str, Path], *, config: HashConfig | None = None) -> dict[str, str]:
    """sha256 of each file, keyed like ``files``; several files are hashed in parallel.

    Raises:
        ArtifactError: a file is not a regular file or cannot be read.
    """
    cfg = config or HashConfig()
    for name, path in files.items():
        if not is_regular(path):
            raise ArtifactError(f"{path}: {name!r} is not a regular file (a symlink or a "
                                "device); an artifact holds regular files only")
    names = list(files)
    workers = cfg.worker_count(len(names))
    if workers == 1:
        return {n: file_sha256(files[n], block_size=cfg.block_size) for n in names}
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sha256") as pool:
        digests = pool.map(lambda n: file_sha256(files[n], block_size=cfg.block_size), names)
        return dict(zip(names, digests, strict=True))
