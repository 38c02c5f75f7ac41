"""Air-gap bundles: everything a device needs to take an update with no network at all.

``export_bundle`` (on the publisher's side) writes a directory::

    DIR/MANIFEST.json                 format, artifact name and digest, every file's sha256
    DIR/artifact/NAME                 the artifact (file or directory)
    DIR/artifact/NAME.edgeward.json   its signed statement (DSSE envelope)
    DIR/trust/                        the publisher's trust root (public keys only)
    DIR/policy/POLICY.toml(.edgeward.json)   the signed safety policy, if given
    DIR/agent.toml                    an agent configuration that serves the imported slot

``import_bundle`` (on the device) checks every file against the manifest, verifies the artifact
against the **device's** trust store (a bundle cannot bring its own trust: its trust root is
only reported as matching the device's or not), and runs the slot flow: install into the
inactive slot, switch, health-check, commit or roll back. It opens no socket.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeward.device_agents._config import AgentConfig
from edgeward.device_agents._policy import safety_filter_for
from edgeward.device_agents._probe import probe_artifact
from edgeward.device_agents._slots import SlotPointer, SlotStore
from edgeward.device_agents._verified import default_signature
from edgeward.errors import ConfigError, DigestMismatchError
from edgeward.hardware_profiles import resolve_profile
from edgeward.provenance import TrustStore, verify_artifact

__all__ = ["BUNDLE_FORMAT", "ImportResult", "export_bundle", "import_bundle"]

BUNDLE_FORMAT = 1
_MANIFEST = "MANIFEST.json"


@dataclass(frozen=True)
class ImportResult:
    """What ``edgeward bundle import`` did.

    Attributes:
        slot: the slot that serves now.
        artifact_digest: the artifact's sha256.
        verified: always true when an import returns (a failure raises).
        committed: the health check passed and the slot was committed (false: rolled back).
        bundle_trust: ``matches`` (every key of the bundle's trust root is trusted by the
            device with the same roles) or ``not_used`` (the device's trust store decided).
        detail: why it was rolled back, when it was.
    """

    slot: str | None
    artifact_digest: str
    verified: bool
    committed: bool
    bundle_trust: str
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` object."""
        return {"slot": self.slot, "artifact_digest": self.artifact_digest,
                "verified": self.verified, "committed": self.committed,
                "bundle_trust": self.bundle_trust, "detail": self.detail or None}


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
                  min_decode_tokens_per_s: float | None = None) -> ImportResult:
    """Check, verify and install a bundle into the device's slots (see the module docstring).

    Args:
        bundle: the bundle directory.
        config: the device's agent configuration (its ``state_dir``, ``trust_store``,
            ``profile`` and ``safety_policy`` are used).
        min_decode_tokens_per_s: the health check's speed floor.

    Raises:
        ConfigError: not a bundle, a missing or extra file, no trust store configured;
        DigestMismatchError: a file differs from the manifest; SignatureError: the artifact
            does not verify against the device's trust store (nothing is installed).
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
    if config.trust_store is None:
        raise ConfigError("the agent config has no trust_store: a bundle is verified against "
                          "the device's own trust store")
    device = TrustStore.open(config.trust_store)
    artifact = bundle / "artifact" / str(manifest["artifact"])
    profile = resolve_profile(config.profile) if config.profile else None
    flt = safety_filter_for(config.safety_policy, trust_store=config.trust_store)

    def health(path: Path) -> None:
        probe_artifact(path, profile=profile, context_length=config.context_length,
                       safety_filter=flt, min_decode_tokens_per_s=min_decode_tokens_per_s)

    slots = SlotStore(config.state_dir)
    result = slots.update(artifact, config.trust_store, health=health)
    pointer: SlotPointer | None = result.pointer
    digest = (pointer.sha256 if result.ok and pointer is not None
              else _artifact_digest(artifact, device))
    return ImportResult(slot=pointer.slot if pointer else None, artifact_digest=digest,
                        verified=True, committed=result.ok,
                        bundle_trust=_trust_matches(bundle / "trust", device),
                        detail=result.detail)


def _verify_signed(path: Path, store: TrustStore) -> None:
    try:
        envelope = default_signature(path).read_bytes()
    except FileNotFoundError:
        from edgeward.errors import UnsignedArtifactError

        raise UnsignedArtifactError(f"{path}: no signature at {default_signature(path)}; sign "
                                    "it with `edgeward sign` first") from None
    verify_artifact(path, envelope, store)


def _artifact_digest(artifact: Path, store: TrustStore) -> str:
    verified = verify_artifact(artifact, default_signature(artifact).read_bytes(), store)
    return verified.subjects[0].sha256


def _trust_matches(bundle_trust: Path, device: TrustStore) -> str:
    try:
        theirs = TrustStore.open(bundle_trust).list_keys()
    except ConfigError:
        return "not_used"
    for k in theirs:
        mine = device.get(k.key.key_id)
        if mine is None or mine.revocation is not None or set(mine.roles) != set(k.roles):
            return "not_used"
    return "matches"


def _read_manifest(bundle: Path) -> dict[str, Any]:
    path = bundle / _MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{bundle}: no {_MANIFEST}; not an edgeward bundle (make one with "
                          "`edgeward bundle export`)") from None
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: unreadable ({e})") from e
    if not isinstance(data, dict) or data.get("format") != BUNDLE_FORMAT \
            or not isinstance(data.get("files"), dict) or not isinstance(data.get("artifact"), str):
        raise ConfigError(f"{path}: not a bundle manifest of format {BUNDLE_FORMAT}")
    return data


def _digests(root: Path, skip: set[str] | None = None) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and not p.is_symlink() and rel not in (skip or set()):
            h = hashlib.sha256()
            with p.open("rb") as f:
                while block := f.read(1 << 20):
                    h.update(block)
            out[rel] = h.hexdigest()
    return out


def _copy(src: Path, dst: Path) -> None:
    if src.is_dir():
        shutil.copytree(src, dst)
    else:
        shutil.copyfile(src, dst)
