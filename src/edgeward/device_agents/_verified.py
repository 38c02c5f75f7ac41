"""Verified loading: the bytes that run are the bytes that were verified.

:meth:`ModelStore.load` checks the signer first (cheap: no copy of a refused artifact), copies
the artifact into the agent's private state directory (a copy-on-write clone where the file
system can, else a plain copy), verifies *that copy* against the signed statement, makes it
read-only and loads it. The runtime memory-maps the private copy, so rewriting the original
file in place later cannot change the model that serves, and nothing loads bytes that were
not hashed. A refused artifact is deleted from the state directory at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import stat
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeward.errors import (
    ArtifactError,
    ConfigError,
    EdgewardError,
    ResourceError,
    UnsignedArtifactError,
)
from edgeward.hardware_profiles import HardwareProfile
from edgeward.provenance import (
    IN_TOTO_PAYLOAD_TYPE,
    Role,
    TrustStore,
    canonical_json,
    envelope_path_for,
    oms_signature_path_for,
    read_signature,
    verify_artifact,
    verify_envelope,
)
from edgeward.runtimes import Runtime, open_runtime
from edgeward.safeio import open_regular

__all__ = ["LoadedModel", "ModelInfo", "ModelStore", "default_signature"]

_FICLONE = 0x40049409  # ioctl(2) FICLONE: reflink a whole file (btrfs, XFS, bcachefs)
_COPY_BLOCK = 8 * 1024 * 1024  # bytes


@dataclass(frozen=True)
class ModelInfo:
    """What is being served, and why it may be.

    Attributes:
        id: the model id the API reports.
        source: the artifact as configured.
        path: the private, read-only copy that is loaded.
        sha256: the file's sha256, or for a directory the sha256 of the canonical JSON of its
            ``{name: sha256}`` manifest.
        verified: whether its signature verified (``False`` only with ``allow_unsigned``).
        key_id: the signer's key id (``None`` when unverified).
        signer: the signer's name in the trust store.
        format: ``gguf`` or ``onnx``.
        capabilities: what the loaded model does (``generate``, ``chat``, ``embed``).
        loaded_at: Unix time of the load.
        unverified_reason: why verification failed, when it was loaded anyway
            (``allow_unsigned``); ``""`` when verified.
    """

    id: str
    source: Path
    path: Path
    sha256: str
    verified: bool
    key_id: str | None
    signer: str
    format: str
    capabilities: tuple[str, ...]
    loaded_at: float
    unverified_reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (``/healthz``, ``/v1/models``, the reload response)."""
        return {"id": self.id, "source": str(self.source), "sha256": self.sha256,
                "verified": self.verified, "key_id": self.key_id, "signer": self.signer,
                "format": self.format, "capabilities": list(self.capabilities),
                "loaded_at": self.loaded_at, "unverified_reason": self.unverified_reason}


@dataclass
class LoadedModel:
    """A verified model with its runtime; :meth:`close` unloads it and deletes its copy."""

    info: ModelInfo
    runtime: Runtime
    _copy_dir: Path = field(repr=False)
    envelope: bytes | None = field(default=None, repr=False)  # the signature it verified with

    def close(self) -> None:
        """Unload the model and remove its private copy. Safe to call twice."""
        self.runtime.unload()
        _remove_tree(self._copy_dir)


def default_signature(artifact: Path) -> Path:
    """``ARTIFACT.edgeward.json``, or ``ARTIFACT.oms.sig`` when only that exists."""
    dsse, oms = envelope_path_for(artifact), oms_signature_path_for(artifact)
    return oms if oms.exists() and not dsse.exists() else dsse


class ModelStore:
    """The agent's state directory: an exclusive lock and the verified model copies.

    Layout: ``STATE/agent.lock`` (held while the agent runs), ``STATE/models/ID/NAME`` (one
    read-only copy per loaded model), ``STATE/active.json`` (what serves now).
    """

    def __init__(self, state_dir: Path, *, allow_cpu_fallback: bool = False) -> None:
        self.state_dir = Path(state_dir)
        self.allow_cpu_fallback = allow_cpu_fallback
        self._lock_fd: int | None = None

    def open(self) -> None:
        """Create the directory (0700), take the lock and delete copies a previous run left.

        Raises:
            ConfigError: the directory cannot be created.
            ResourceError: another agent holds the lock.
        """
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            (self.state_dir / "models").mkdir(exist_ok=True, mode=0o700)
            fd = os.open(self.state_dir / "agent.lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            raise ConfigError(f"state_dir {self.state_dir}: cannot use it ({e.strerror})") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            raise ResourceError(f"state_dir {self.state_dir}: another agent is using it; give "
                                "each agent its own state_dir") from e
        self._lock_fd = fd
        for stale in (self.state_dir / "models").iterdir():
            _remove_tree(stale)

    def close(self) -> None:
        """Release the lock."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def load(self, artifact: Path, *, trust_store: Path | None, signature: Path | None = None,
             allow_unsigned: bool = False, profile: HardwareProfile | None = None,
             context_length: int | None = None, model_id: str | None = None) -> LoadedModel:
        """Verify ``artifact`` and load it from a private read-only copy.

        Args:
            artifact: the model file or directory.
            trust_store: the trust store directory (may be ``None`` only with
                ``allow_unsigned``).
            signature: its signature (default :func:`default_signature`).
            allow_unsigned: load it even when it has no signature that verifies.
            profile: the hardware profile to load it for.
            context_length: tokens of context (default: the profile's).
            model_id: the id to report (default the artifact's name).

        Returns:
            The loaded model; the caller closes it.

        Raises:
            ConfigError: the artifact, signature or trust store is missing or unreadable.
            SignatureError: a subclass naming why it was refused (unsigned, tampered, unknown
                or revoked key ...), unless ``allow_unsigned``.
            ArtifactError, RuntimeBackendError: it verified but the runtime cannot load it.
            ResourceError: no disk space for the copy.
        """
        artifact = Path(artifact)
        if not artifact.exists():
            raise ConfigError(f"artifact {artifact}: no such file or directory")
        signature = signature or default_signature(artifact)
        envelope, store = self._signer_check(artifact, signature, trust_store, allow_unsigned)
        copy_dir = self.state_dir / "models" / uuid.uuid4().hex[:16]
        try:
            copy = _private_copy(artifact, copy_dir)
            key_id: str | None = None
            signer = reason = ""
            try:
                if envelope is None:
                    raise UnsignedArtifactError(f"{artifact}: no signature at {signature}")
                if store is None:
                    raise UnsignedArtifactError(f"{artifact}: no trust_store to check its "
                                                "signature against")
                verified = verify_artifact(copy, envelope, store)
                key_id, signer = verified.key_id, verified.signer.name
                digests = {s.name: s.sha256 for s in verified.subjects}
            except EdgewardError as e:
                if not allow_unsigned:
                    raise
                reason = f"{e.kind}: {e}"
                digests = _hash_tree(copy)
            _make_read_only(copy_dir)
            runtime = open_runtime(copy, profile, context_length=context_length,
                                   allow_cpu_fallback=self.allow_cpu_fallback)
        except BaseException:
            _remove_tree(copy_dir)
            raise
        digest = (next(iter(digests.values())) if copy.is_file()
                  else hashlib.sha256(canonical_json(digests)).hexdigest())
        info = ModelInfo(id=model_id or artifact.name, source=artifact, path=copy, sha256=digest,
                         verified=key_id is not None, key_id=key_id, signer=signer,
                         format=runtime.format, capabilities=tuple(sorted(runtime.capabilities)),
                         loaded_at=time.time(), unverified_reason=reason)
        self._write_active(info)
        return LoadedModel(info, runtime, copy_dir, envelope if info.verified else None)

    def _signer_check(self, artifact: Path, signature: Path, trust_store: Path | None,
                      allow_unsigned: bool) -> tuple[bytes | None, TrustStore | None]:
        """Read the signature and check its signer before anything is copied."""
        store = TrustStore.open(trust_store) if trust_store is not None else None
        if not signature.exists() and allow_unsigned:
            return None, store
        envelope = read_signature(signature, missing=(
            f"{artifact}: no signature at {signature}; sign it with `edgeward sign` (or set "
            "allow_unsigned = true, for development only)"))
        if store is None:
            return envelope, None
        if b'"dsseEnvelope"' not in envelope:  # an OMS bundle is checked whole, on the copy
            try:
                verify_envelope(envelope, store, role=Role.PUBLISHER,
                                payload_type=IN_TOTO_PAYLOAD_TYPE)
            except EdgewardError:
                if not allow_unsigned:
                    raise
        return envelope, store

    def _write_active(self, info: ModelInfo) -> None:
        tmp = self.state_dir / ".active.json.tmp"
        with contextlib.suppress(OSError):
            tmp.write_text(json.dumps(info.to_dict() | {"path": str(info.path)}, indent=2))
            tmp.replace(self.state_dir / "active.json")


def _private_copy(artifact: Path, copy_dir: Path) -> Path:
    """Copy ``artifact`` to ``copy_dir/NAME`` (same name: a signed single file is checked under
    its name) without following symlinks; the verifier refuses the symlinks it finds."""
    copy_dir.mkdir(mode=0o700)
    target = copy_dir / artifact.name
    try:
        if artifact.is_dir():
            shutil.copytree(artifact, target, symlinks=True, copy_function=_copy_file)
        else:
            _copy_file(artifact, target)
    except OSError as e:
        if e.errno == 28:  # ENOSPC
            raise ResourceError(f"state_dir {copy_dir.parent.parent}: no space left to copy "
                                f"{artifact} ({e.strerror})") from e
        raise ConfigError(f"{artifact}: cannot copy it into the state_dir ({e.strerror})") from e
    return target


def _copy_file(src: str | Path, dst: str | Path) -> None:
    # A regular file only (a FIFO or a link to /dev/zero is refused, never read forever), and
    # no more than its size when opened: a file that grows meanwhile is not followed.
    with open_regular(Path(src), what="artifact file", error=ArtifactError) as fin, \
            Path(dst).open("xb") as fout:
        try:
            fcntl.ioctl(fout.fileno(), _FICLONE, fin.fileno())
            return  # a copy-on-write clone: instant, and independent of later writes to src
        except OSError:
            pass
        left = os.fstat(fin.fileno()).st_size
        free = shutil.disk_usage(Path(dst).parent).free
        if left > free:  # refuse before filling the disk (a sparse "model" of a terabyte)
            raise ResourceError(f"{src}: {left:,} bytes to copy into the state_dir, which has "
                                f"{free:,} free; free space or use a smaller artifact")
        while left > 0 and (block := fin.read(min(_COPY_BLOCK, left))):
            fout.write(block)
            left -= len(block)


def _hash_tree(path: Path) -> dict[str, str]:
    """``{relative name: sha256}`` of the regular files under ``path`` (or of ``path``)."""
    files = ({path.name: path} if path.is_file() else
             {p.relative_to(path).as_posix(): p for p in sorted(path.rglob("*")) if p.is_file()})
    out = {}
    for name, p in files.items():
        h = hashlib.sha256()
        with p.open("rb") as f:
            while block := f.read(_COPY_BLOCK):
                h.update(block)
        out[name] = h.hexdigest()
    return out


def _make_read_only(root: Path) -> None:
    for dirpath, _dirs, files in os.walk(root, topdown=False):
        for name in files:
            p = Path(dirpath) / name
            if not p.is_symlink():
                p.chmod(stat.S_IRUSR)
        Path(dirpath).chmod(stat.S_IRUSR | stat.S_IXUSR)


def _remove_tree(root: Path) -> None:
    if not root.exists() and not root.is_symlink():
        return
    for dirpath, _dirs, _files in os.walk(root):
        with contextlib.suppress(OSError):
            Path(dirpath).chmod(stat.S_IRWXU)
    if root.is_dir() and not root.is_symlink():
        shutil.rmtree(root, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            root.unlink()
