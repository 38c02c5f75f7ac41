"""Air-gap bundles: everything a device needs to take an update with no network at all.

``export_bundle`` (on the publisher's side) writes a directory::

    DIR/MANIFEST.json                 format, artifact name and digest, every file's sha256
    DIR/artifact/NAME                 the artifact (file or directory)
    DIR/artifact/NAME.edgeward.json   its signed statement (DSSE envelope)
    DIR/artifact/NAME.behaviour.json  its behavioural fingerprint, when the statement signs one
    DIR/trust/                        the publisher's trust root (public keys only)
    DIR/policy/POLICY.toml(.edgeward.json)   the signed safety policy, if given
    DIR/agent.toml                    an agent configuration that serves the imported slot

``import_bundle`` (on the device) checks every file against the manifest, verifies the artifact
against the **device's** trust store (a bundle cannot bring its own trust: its trust root is
only reported as matching the device's, differing in a revocation, or not used), and runs the
slot flow: install into the inactive slot, switch, health-check, commit or roll back. It opens
no socket.

What an import refuses, before anything is installed:

- a bundle that does not contain what it installs: the manifest's artifact must be a plain
  name inside ``artifact/`` (no ``..``, no separator, not absolute), and the manifest must list
  it and its signature;
- anything in the bundle that is not a regular file or a directory (a symlink, listed or
  not, a FIFO, a device), named in the error;
- a manifest that is not a regular file, is over ``MAX_MANIFEST_BYTES``, nests too deep or is
  not of the documented shape (a ``ConfigError``, exit 3);
- an artifact this device moved on from (a downgrade, exit 8, reason ``downgrade``) unless an
  operator signed an authorisation for it (:func:`authorise_downgrade`);
- a state directory an agent is running on (its ``agent.lock`` is held): stop the agent, or
  send the update over the air.
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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from edgeward.device_agents._config import AgentConfig
from edgeward.device_agents._policy import safety_filter_for
from edgeward.device_agents._probe import probe_artifact
from edgeward.device_agents._slots import SlotPointer, SlotStore, _manifest_digest
from edgeward.device_agents._superseded import read_downgrade_authorisation
from edgeward.device_agents._verified import default_signature
from edgeward.errors import (
    ConfigError,
    DigestMismatchError,
    EdgewardError,
    ResourceError,
)
from edgeward.hardware_profiles import resolve_profile
from edgeward.provenance import TrustStore, read_signature, verify_artifact
from edgeward.safeio import MAX_MANIFEST_BYTES, open_regular, parse_json, read_capped

__all__ = ["BUNDLE_FORMAT", "ImportResult", "bundle_artifact_digest", "export_bundle",
           "import_bundle"]

BUNDLE_FORMAT = 1
_MANIFEST = "MANIFEST.json"
_SIGNATURE_SUFFIXES = (".edgeward.json", ".oms.sig")
_HEX64 = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class ImportResult:
    """What ``edgeward bundle import`` did.

    Attributes:
        slot: the slot that serves now.
        artifact_digest: the artifact's sha256.
        verified: always true when an import returns (a failure raises).
        committed: the health check passed and the slot was committed (false: rolled back).
        bundle_trust: ``matches`` (every key of the bundle's trust root is trusted by the
            device with the same roles and the same revocation status),
            ``revocation_differs`` (a key is revoked in one of the two stores and not in the
            other: carry the newer trust store), or ``not_used``; the device's trust store
            decides in every case.
        detail: why it was rolled back, when it was.
        downgrade: the import brought back a superseded artifact under a signed
            authorisation.
    """

    slot: str | None
    artifact_digest: str
    verified: bool
    committed: bool
    bundle_trust: str
    detail: str = ""
    downgrade: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` object."""
        return {"slot": self.slot, "artifact_digest": self.artifact_digest,
                "verified": self.verified, "committed": self.committed,
                "bundle_trust": self.bundle_trust, "detail": self.detail or None,
                "downgrade": self.downgrade}


def export_bundle(artifact: Path, out_dir: Path, *, trust_store: Path,
                  safety_policy: Path | None = None, profile: str | None = None
                  ) -> dict[str, Any]:
    """Write a bundle for ``artifact`` (see the module docstring); verifies it first.

    Args:
        artifact: the signed artifact (signature next to it).
        out_dir: a new (or empty) directory.
        trust_store: the publisher's trust store: it must verify the artifact; its public
            keys are copied as the bundle's trust root.
        safety_policy: a signed policy TOML to ship with it.
        profile: the hardware profile the agent config names.

    Returns:
        The manifest.

    Raises:
        ConfigError: missing files, ``out_dir`` not empty; SignatureError: the artifact (or
            policy) does not verify against ``trust_store``.
    """
    artifact = Path(artifact)
    if not artifact.exists():
        raise ConfigError(f"artifact {artifact}: no such file or directory")
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ConfigError(f"{out_dir}: not empty; give a new directory for the bundle")
    store = TrustStore.open(trust_store)
    _verify_signed(artifact, store)
    if safety_policy is not None:
        _verify_signed(Path(safety_policy), store)
    tmp = out_dir.with_name(f".{out_dir.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        (tmp / "artifact").mkdir(parents=True)
        _copy(artifact, tmp / "artifact" / artifact.name)
        shutil.copyfile(default_signature(artifact),
                        tmp / "artifact" / default_signature(artifact).name)
        fingerprint = artifact.with_name(artifact.name + ".behaviour.json")
        if fingerprint.is_file():  # the signed behavioural fingerprint travels with it
            shutil.copyfile(fingerprint, tmp / "artifact" / fingerprint.name)
        shutil.copytree(trust_store, tmp / "trust")
        policy_line = ""
        if safety_policy is not None:
            (tmp / "policy").mkdir()
            shutil.copyfile(safety_policy, tmp / "policy" / Path(safety_policy).name)
            sig = default_signature(Path(safety_policy))
            shutil.copyfile(sig, tmp / "policy" / sig.name)
            policy_line = f'safety_policy = "policy/{Path(safety_policy).name}"\n'
        (tmp / "agent.toml").write_text(
            "# Serves the artifact `edgeward bundle import` installed into this device's slots.\n"
            'artifact = "@slots"\n'
            'trust_store = "/etc/edgeward/trust"   # the DEVICE\'s trust store\n'
            'state_dir = "/var/lib/edgeward/agent"\n'
            + (f'profile = "{profile}"\n' if profile else "") + policy_line)
        manifest = {"format": BUNDLE_FORMAT, "artifact": artifact.name,
                    "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "files": _digests(tmp)}
        (tmp / _MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        if out_dir.exists():
            out_dir.rmdir()
        tmp.rename(out_dir)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ConfigError(f"{out_dir}: cannot write the bundle ({e.strerror})") from e
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def import_bundle(bundle: Path, config: AgentConfig, *,
                  min_decode_tokens_per_s: float | None = None,
                  allow_downgrade: Path | None = None) -> ImportResult:
    """Check, verify and install a bundle into the device's slots (see the module docstring).

    Args:
        bundle: the bundle directory.
        config: the device's agent configuration (its ``state_dir``, ``trust_store``,
            ``profile`` and ``safety_policy`` are used).
        min_decode_tokens_per_s: the health check's speed floor.
        allow_downgrade: a downgrade authorisation file signed by an operator key of the
            device's trust store (``edgeward bundle authorise-downgrade``), naming the
            bundle's artifact digest; without it a superseded artifact is refused.

    Raises:
        ConfigError: not a bundle, a missing, extra or non-regular file, an artifact outside
            ``artifact/``, no trust store configured;
        DigestMismatchError: a file differs from the manifest; SignatureError: the artifact
            (or the downgrade authorisation) does not verify against the device's trust store
            (nothing is installed);
        CommandRefusedError: a downgrade without a valid authorisation (``reason``
            ``downgrade``, or ``replayed`` for a used one);
        ResourceError: an agent is running on ``config.state_dir``.
    """
    manifest = _read_manifest(bundle)
    actual = _digests(bundle, skip={_MANIFEST})
    expected: dict[str, str] = manifest["files"]
    changed = sorted(n for n in expected.keys() & actual.keys() if expected[n] != actual[n])
    missing = sorted(expected.keys() - actual.keys())
    extra = sorted(actual.keys() - expected.keys())
    if changed:
        raise DigestMismatchError(f"{bundle}: {changed[0]} differs from the bundle's manifest"
                                  + (f" (and {len(changed) - 1} more)" if len(changed) > 1
                                     else "") + "; the bundle was damaged or altered")
    if missing or extra:
        raise ConfigError(f"{bundle}: files missing {missing[:3]} or not in the manifest "
                          f"{extra[:3]}; re-export the bundle")
    artifact = _contained_artifact(bundle, manifest)
    if config.trust_store is None:
        raise ConfigError("the agent config has no trust_store: a bundle is verified against "
                          "the device's own trust store")
    with _agent_lock(Path(config.state_dir)):
        device = TrustStore.open(config.trust_store)
        downgrade = (read_downgrade_authorisation(allow_downgrade, device)
                     if allow_downgrade is not None else None)
        profile = resolve_profile(config.profile) if config.profile else None
        flt = safety_filter_for(config.safety_policy, trust_store=config.trust_store)

        def health(path: Path) -> None:
            probe_artifact(path, profile=profile, context_length=config.context_length,
                           safety_filter=flt, min_decode_tokens_per_s=min_decode_tokens_per_s)

        slots = SlotStore(config.state_dir)
        result = slots.update(artifact, config.trust_store, health=health, downgrade=downgrade)
    pointer: SlotPointer | None = result.pointer
    digest = (pointer.sha256 if result.ok and pointer is not None
              else bundle_artifact_digest(bundle))
    return ImportResult(slot=pointer.slot if pointer else None, artifact_digest=digest,
                        verified=True, committed=result.ok,
                        bundle_trust=_trust_matches(bundle / "trust", device),
                        detail=result.detail,
                        downgrade=downgrade is not None and result.ok)


def bundle_artifact_digest(bundle: Path) -> str:
    """The slot digest of a bundle's artifact, from its manifest (the sha256 of a file, or
    of a directory's canonical ``{name: sha256}``): what a downgrade authorisation names.

    Raises:
        ConfigError: not a bundle, or its manifest does not list its artifact.
    """
    manifest = _read_manifest(bundle)
    _contained_artifact(bundle, manifest)
    name, files = manifest["artifact"], manifest["files"]
    if f"artifact/{name}" in files:
        return str(files[f"artifact/{name}"])
    prefix = f"artifact/{name}/"
    return _manifest_digest({k.removeprefix(prefix): v for k, v in files.items()
                             if k.startswith(prefix)})


@contextlib.contextmanager
def _agent_lock(state_dir: Path) -> Iterator[None]:
    """Hold the state directory's ``agent.lock`` (the one a running agent holds, see
    ``ModelStore.open``) for the import, so an import never changes the slots under an agent.

    Raises:
        ResourceError: an agent holds it.
        ConfigError: the state directory cannot be created.
    """
    lock = state_dir / "agent.lock"
    try:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    except OSError as e:
        raise ConfigError(f"state_dir {state_dir}: cannot use it ({e.strerror})") from e
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            raise ResourceError(
                f"state_dir {state_dir}: an agent is running on it (it holds {lock}), and an "
                "import must not change the slots under it; stop the agent (`systemctl stop "
                "edgeward-agent`) and import again, or send the update over the air "
                "(`edgeward fleet deploy`)") from e
        yield
    finally:
        os.close(fd)


def _contained_artifact(bundle: Path, manifest: dict[str, Any]) -> Path:
    """``bundle/artifact/NAME``, if NAME is a plain name and the manifest lists the artifact
    and its signature (a bundle must contain what it installs).

    Raises:
        ConfigError: it names something outside ``artifact/``, or does not list it.
    """
    name: str = manifest["artifact"]
    path = PurePosixPath(name)
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\x00" in name \
            or path.is_absolute() or path.name != name or name.startswith("."):
        raise ConfigError(f"{bundle / _MANIFEST}: the artifact must be a plain file or "
                          f"directory name inside artifact/, got {name!r:.200}; a bundle "
                          "installs only what it contains (re-export it)")
    files = manifest["files"]
    if f"artifact/{name}" not in files and not any(
            k.startswith(f"artifact/{name}/") for k in files):
        raise ConfigError(f"{bundle / _MANIFEST}: the manifest does not list the artifact "
                          f"artifact/{name}; re-export the bundle")
    if not any(f"artifact/{name}{suffix}" in files for suffix in _SIGNATURE_SUFFIXES):
        raise ConfigError(f"{bundle / _MANIFEST}: the manifest does not list the artifact's "
                          f"signature artifact/{name}{_SIGNATURE_SUFFIXES[0]}; re-export the "
                          "bundle")
    return bundle / "artifact" / name


def _verify_signed(path: Path, store: TrustStore) -> None:
    signature = default_signature(path)
    verify_artifact(path, read_signature(signature, missing=f"{path}: no signature at "
                                         f"{signature}; sign it with `edgeward sign` first"),
                    store)


def _trust_matches(bundle_trust: Path, device: TrustStore) -> str:
    """How the bundle's trust root compares with the device's (reported, never used)."""
    try:
        theirs = TrustStore.open(bundle_trust).list_keys()
    except EdgewardError:
        return "not_used"
    same = True
    for k in theirs:
        mine = device.get(k.key.key_id)
        if mine is None:
            same = False
        elif (mine.revocation is None) != (k.revocation is None):
            return "revocation_differs"
        elif set(mine.roles) != set(k.roles):
            same = False
    return "matches" if same else "not_used"


def _read_manifest(bundle: Path) -> dict[str, Any]:
    path = bundle / _MANIFEST
    if not os.path.lexists(path):
        raise ConfigError(f"{bundle}: no {_MANIFEST}; not an edgeward bundle (make one with "
                          "`edgeward bundle export`)")
    if path.is_symlink():
        raise ConfigError(f"{path}: the manifest is a symlink (to {str(path.readlink())!r:.200}); "
                          "a bundle holds regular files only (re-export it)")
    data = parse_json(read_capped(path, MAX_MANIFEST_BYTES, what="bundle manifest"),
                      what=f"bundle manifest {path}")
    if not isinstance(data, dict) or type(data.get("format")) is not int \
            or data["format"] != BUNDLE_FORMAT \
            or not isinstance(data.get("files"), dict) or not isinstance(data.get("artifact"), str):
        raise ConfigError(f"{path}: not a bundle manifest of format {BUNDLE_FORMAT} (an object "
                          "with format, artifact and files)")
    for rel, digest in data["files"].items():
        p = PurePosixPath(rel)
        if not rel or p.is_absolute() or ".." in p.parts or "\\" in rel or "\x00" in rel \
                or p.as_posix() != rel:
            raise ConfigError(f"{path}: {rel!r:.200} is not a path inside the bundle")
        if not isinstance(digest, str) or len(digest) != 64 or not set(digest) <= _HEX64:
            raise ConfigError(f"{path}: the sha256 of {rel!r:.200} must be 64 lowercase hex "
                              f"digits, got {digest!r:.80}")
    return data


def _digests(root: Path, skip: set[str] | None = None) -> dict[str, str]:
    """sha256 of every file under ``root``; never follows a link.

    Raises:
        ConfigError: an entry is a symlink (listed or not) or not a regular file (a FIFO, a
            socket, a device); it names the entry.
    """
    out = {}
    for dirpath, dirs, names in os.walk(root):
        for name in sorted([*dirs, *names]):
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            mode = os.lstat(p).st_mode
            if stat.S_ISDIR(mode) or rel in (skip or set()):
                continue
            if stat.S_ISLNK(mode):
                raise ConfigError(f"{root}: {rel} is a symlink (to {str(p.readlink())!r:.200}), "
                                  "not a file of the bundle; a bundle holds regular files only "
                                  "(remove it, or re-export the bundle)")
            if not stat.S_ISREG(mode):
                raise ConfigError(f"{root}: {rel} is not a regular file (a FIFO, socket or "
                                  "device); a bundle holds regular files only (remove it, or "
                                  "re-export the bundle)")
            h = hashlib.sha256()
            with open_regular(p, what=f"bundle file {rel}") as f:
                while block := f.read(1 << 20):
                    h.update(block)
            out[rel] = h.hexdigest()
    return dict(sorted(out.items()))


def _copy(src: Path, dst: Path) -> None:
    if src.is_dir():
        shutil.copytree(src, dst)
    else:
        shutil.copyfile(src, dst)
