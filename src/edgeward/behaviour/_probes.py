"""Probe sets: the fixed, versioned texts and prompts a behavioural fingerprint is made from."""

from __future__ import annotations

import hashlib
import importlib.resources
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeward.errors import ConfigError
from edgeward.provenance import canonical_json
from edgeward.runtimes import SamplingParams
from edgeward.safeio import MAX_CONFIG_BYTES, parse_json, read_capped

__all__ = ["DEFAULT_PROBE_SET", "Probe", "ProbePrompt", "ProbeSet", "load_probe_set"]

#: The probe set a fingerprint uses unless told otherwise.
DEFAULT_PROBE_SET = "edgeward-probes/1"


@dataclass(frozen=True)
class Probe:
    """A teacher-forced text: its next-token distribution is recorded at every position
    after the first ``ProbeSet.skip_first``."""

    id: str
    text: str


@dataclass(frozen=True)
class ProbePrompt:
    """A prompt whose continuation (greedy, or with a fixed seeded sampler) is recorded."""

    id: str
    prompt: str
    max_tokens: int
    sampling: SamplingParams


@dataclass(frozen=True)
class ProbeSet:
    """A versioned probe set.

    Attributes:
        id: ``name/version``; a released id never changes its content.
        sha256: digest of the set's canonical JSON (a fingerprint records it).
        skip_first: positions at the start of each text that are not scored.
        top_k: next tokens recorded per scored position.
        texts: teacher-forced texts.
        prompts: prompts whose continuations are recorded.
    """

    id: str
    sha256: str
    skip_first: int
    top_k: int
    texts: tuple[Probe, ...]
    prompts: tuple[ProbePrompt, ...]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, what: str = "probe set") -> ProbeSet:
        """Parse a probe set document.

        Raises:
            ConfigError: a missing or mistyped field (named).
        """
        try:
            texts = tuple(Probe(str(t["id"]), str(t["text"])) for t in d["texts"])
            prompts = tuple(
                ProbePrompt(str(p["id"]), str(p["prompt"]), int(p["max_tokens"]),
                            SamplingParams(max_tokens=int(p["max_tokens"]),
                                           **{k: v for k, v in p["sampling"].items()}))
                for p in d.get("prompts", ()))
            probe_set = cls(str(d["id"]), _digest(canonical_json(dict(d))), int(d["skip_first"]),
                            int(d["top_k"]), texts, prompts)
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"{what}: not a probe set ({type(e).__name__}: {e})") from e
        if not texts or not all(t.text for t in texts) or not 1 <= probe_set.top_k <= 64 \
                or probe_set.skip_first < 0:
            raise ConfigError(f"{what}: needs at least one non-empty text, top_k in 1..64 "
                              "and skip_first >= 0")
        ids = [t.id for t in texts] + [p.id for p in prompts]
        if len(set(ids)) != len(ids):
            raise ConfigError(f"{what}: probe ids must be unique, got {ids}")
        return probe_set


def load_probe_set(name: str | Path = DEFAULT_PROBE_SET) -> ProbeSet:
    """A packaged probe set by id (``edgeward-probes/1``), or a probe-set JSON file.

    Raises:
        ConfigError: no such packaged set, or the file is not a probe set.
    """
    if isinstance(name, Path) or "/" not in str(name) or Path(str(name)).is_file():
        path = Path(name)
        raw = read_capped(path, MAX_CONFIG_BYTES, what="probe set")
        return ProbeSet.from_dict(parse_json(raw, what=str(path)), what=str(path))
    file = str(name).replace("/", "-") + ".json"
    resource = importlib.resources.files("edgeward.behaviour") / "probes" / file
    if not resource.is_file():
        raise ConfigError(f"no packaged probe set {name!r}; this edgeward has "
                          f"{DEFAULT_PROBE_SET!r}")
    doc = parse_json(resource.read_bytes(), what=f"probe set {name}")
    probe_set = ProbeSet.from_dict(doc, what=f"probe set {name}")
    if probe_set.id != name:
        raise ConfigError(f"packaged probe set {file} names itself {probe_set.id!r}")
    return probe_set


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
