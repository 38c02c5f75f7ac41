"""The safety filter a ``safety_policy`` names, with its policy file verified like a model.

A policy decides what is blocked, so a policy file is treated like an artifact: it must be
signed (``edgeward sign policy.toml --key publisher.key`` writes ``policy.toml.edgeward.json``)
by a publisher key of the agent's trust store, and the filter is built from a private copy of
the bytes that verified. A preset's name (``"default"``, ``"phi"``) is a policy shipped inside
the installed package, trusted like its code.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

from edgeward import safety
from edgeward.device_agents._log import log_event
from edgeward.device_agents._verified import default_signature
from edgeward.errors import ConfigError, SignatureError, UnsignedArtifactError
from edgeward.provenance import TrustStore, read_signature, verify_artifact
from edgeward.safety import PassThroughFilter, SafetyFilter

__all__ = ["safety_filter_for", "verify_guard"]


def safety_filter_for(policy: str | None, *, trust_store: Path | None = None,
                      allow_unsigned: bool = False, **filter_kwargs: Any) -> SafetyFilter:
    """The safety filter for a ``safety_policy`` value.

    Args:
        policy: ``None`` (pass-through), a preset's name (``"default"``, ``"phi"``: a policy
            shipped in the package), or the path of a policy TOML file, which must be signed.
        trust_store: the trust store that verifies a policy file.
        allow_unsigned: load a policy file whose signature is missing or fails (loudly).
        **filter_kwargs: passed to ``load_filter`` (``audit``, ``hmac_key``).

    Returns:
        The filter (``edgeward.safety.load_filter(...)``), or the pass-through filter.

    Raises:
        ConfigError: the policy file is missing or malformed, or this edgeward has no
            safety filter to load it with.
        SignatureError: the policy file's signature is missing or does not verify.
    """
    if policy is None:
        return PassThroughFilter()
    load = getattr(safety, "load_filter", None)
    if load is None:
        raise ConfigError(f"safety_policy {policy!r}: this edgeward has no safety filter to "
                          "load it with; remove the key or set it to 'passthrough'")
    if policy in safety.POLICY_PRESETS:
        flt: SafetyFilter = load(policy, **filter_kwargs)
        return flt
    path = Path(policy)
    if not path.is_file():
        raise ConfigError(f"safety_policy {policy!r}: no such policy file (or use a preset: "
                          f"{', '.join(repr(p) for p in safety.POLICY_PRESETS)}, or "
                          "'passthrough')")
    with tempfile.TemporaryDirectory(prefix="edgeward-policy-") as tmp:
        copy = Path(tmp) / path.name
        shutil.copyfile(path, copy)  # verify and load the same bytes
        try:
            _verify(path, copy, trust_store)
        except SignatureError as e:
            if not allow_unsigned:
                log_event(logging.ERROR, "safety_policy_refused", policy=str(path),
                          reason=e.kind, detail=str(e))
                raise
            log_event(logging.WARNING, "UNVERIFIED_SAFETY_POLICY_LOADED", policy=str(path),
                      reason=e.kind, detail="allow_unsigned = true: the safety policy's "
                      "provenance is NOT verified")
        flt = load(copy, **filter_kwargs)
    log_event(logging.INFO, "safety_policy_loaded", policy=str(path))
    return flt


def _verify(path: Path, copy: Path, trust_store: Path | None, what: str = "safety_policy"
            ) -> None:
    signature = default_signature(path)
    envelope = read_signature(signature, missing=f"{what} {path}: no signature at "
                              f"{signature}; sign it with `edgeward sign`")
    if trust_store is None:
        raise UnsignedArtifactError(f"{what} {path}: no trust_store to check its "
                                    "signature against")
    verify_artifact(copy, envelope, TrustStore.open(trust_store))


def verify_guard(path: Path, trust_store: Path | None, *, allow_unsigned: bool = False) -> None:
    """Check the guard GGUF's signature (``PATH.edgeward.json``) against the trust store.

    Raises:
        ConfigError: the file is missing.
        SignatureError: its signature is missing or does not verify (unless
            ``allow_unsigned``, which logs it loudly instead).
    """
    if not path.is_file():
        raise ConfigError(f"safety_guard {path}: no such guard model file")
    try:
        _verify(path, path, trust_store, "safety_guard")
    except SignatureError as e:
        if not allow_unsigned:
            log_event(logging.ERROR, "safety_guard_refused", guard=str(path), reason=e.kind,
                      detail=str(e))
            raise
        log_event(logging.WARNING, "UNVERIFIED_SAFETY_GUARD_LOADED", guard=str(path),
                  reason=e.kind, detail="allow_unsigned = true: the guard model's provenance "
                  "is NOT verified")
