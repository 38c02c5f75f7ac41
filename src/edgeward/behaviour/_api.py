"""The front door for files: fingerprint an artifact, check an artifact against a fingerprint."""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeward.behaviour._fingerprint import (
    DEFAULT_MARGIN,
    CheckResult,
    Fingerprint,
    _cores,
    _loaded,
    calibrate,
    compare,
    fingerprint_path_for,
    make_fingerprint,
    observe,
)
from edgeward.behaviour._probes import DEFAULT_PROBE_SET, load_probe_set
from edgeward.errors import ConfigError
from edgeward.hardware_profiles import HardwareProfile

__all__ = ["FingerprintMade", "check_artifact", "fingerprint_artifact", "fingerprint_for_signing",
           "statement_record"]

_MAKE_BATCH, _MAKE_CONTEXT = 512, 2048
METRIC = "mean_abs_logprob_delta"


@dataclass(frozen=True)
class FingerprintMade:
    """A fingerprint written to disk: its path, content, digest and what it took."""

    path: Path
    fingerprint: Fingerprint
    sha256: str
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        fp, tol = self.fingerprint, self.fingerprint.tolerance
        return {"fingerprint": str(self.path), "sha256": self.sha256, "kind": fp.kind,
                "probe_set": fp.probe_set, "probes": fp.probes, "positions": fp.positions,
                "threshold": tol.threshold if tol else None,
                "noise_floor": tol.noise_floor if tol else None,
                "calibration_runs": len(tol.runs) if tol else 0,
                "seconds": round(self.seconds, 3)}


def fingerprint_artifact(artifact: Path, *, out: Path | None = None,
                         profile: HardwareProfile | None = None,
                         probe_set: str | Path = DEFAULT_PROBE_SET, calibrated: bool = True,
                         margin: float = DEFAULT_MARGIN,
                         progress: Callable[[int, int], None] | None = None) -> FingerprintMade:
    """Make, calibrate and write an artifact's behavioural fingerprint.

    Args:
        artifact: a GGUF file or an ONNX directory.
        out: where to write it; default ``ARTIFACT.behaviour.json``.
        profile: the profile to load it for (threads come from it); default this machine.
        probe_set: a packaged probe-set id or a probe-set file.
        calibrated: re-run under other settings to set the tolerance (about six replays);
            off, the tolerance is the absolute floor.
        margin: threshold = noise floor x margin (never below the floor).
        progress: called with (done, total) replays.

    Raises:
        ConfigError: the artifact is missing, or the file cannot be written.
        RuntimeBackendError: the model cannot be loaded or cannot be fingerprinted.
    """
    artifact = Path(artifact)
    if not artifact.exists():
        raise ConfigError(f"{artifact}: no such model file")
    out = Path(out) if out is not None else fingerprint_path_for(artifact)
    if out.resolve() == artifact.resolve():
        raise ConfigError(f"{out}: the fingerprint would overwrite the artifact")
    t0 = time.perf_counter()
    probes = load_probe_set(probe_set)
    threads = _cores()
    with _loaded(artifact, profile, threads=threads, batch_size=_MAKE_BATCH,
                 context=_MAKE_CONTEXT) as rt:
        settings = {"threads": threads, "batch_size": _MAKE_BATCH,
                    "context": int(getattr(rt, "context_length", _MAKE_CONTEXT))}
        fp = make_fingerprint(rt, probes, artifact=artifact.name, settings=settings)
    fp = dataclasses.replace(fp, artifact_sha256=_file_sha256(artifact))
    if calibrated:
        fp = fp.with_tolerance(calibrate(artifact, fp, profile=profile, margin=margin,
                                         progress=progress))
    else:
        from edgeward.behaviour._fingerprint import MIN_THRESHOLD, Tolerance

        floor = MIN_THRESHOLD[fp.kind]
        fp = fp.with_tolerance(Tolerance(floor, floor=floor, margin=margin))
    fp.save(out)
    return FingerprintMade(out, fp, hashlib.sha256(fp.to_bytes()).hexdigest(),
                           time.perf_counter() - t0)


def check_artifact(artifact: Path, fingerprint: Path, *, profile: HardwareProfile | None = None,
                   sha256: str | None = None, threads: int | None = None) -> CheckResult:
    """Load an artifact and check it against a fingerprint file.

    Args:
        sha256: when given, the fingerprint file must have this digest (the signed one).
        threads: threads to load with (default: every core).

    Raises:
        ConfigError: a missing or malformed file.
        DigestMismatchError: the fingerprint is not the signed one.
        RuntimeBackendError: the model cannot be loaded.
    """
    artifact = Path(artifact)
    if not artifact.exists():
        raise ConfigError(f"{artifact}: no such model file")
    fp = Fingerprint.load(Path(fingerprint), sha256=sha256)
    with _loaded(artifact, profile, threads=threads or _cores(), batch_size=_MAKE_BATCH,
                 context=_MAKE_CONTEXT) as rt:
        return compare(fp, observe(rt, fp))


def statement_record(made: FingerprintMade, subject_name: str) -> dict[str, Any]:
    """The ``behaviour`` object a signed statement carries for this fingerprint."""
    fp, tol = made.fingerprint, made.fingerprint.tolerance
    return {"fingerprint": subject_name, "sha256": made.sha256, "kind": fp.kind,
            "probe_set": {"id": fp.probe_set, "sha256": fp.probe_set_sha256},
            "metric": METRIC if fp.kind == "logprobs" else "max_cosine_distance",
            "threshold": tol.threshold if tol else None,
            "top1_min": tol.top1_min if tol else None,
            "continuation_min": tol.continuation_min if tol else None}


def fingerprint_for_signing(artifact: Path, *, given: Path | None = None,
                            progress: Callable[[int, int], None] | None = None,
                            ) -> tuple[FingerprintMade, bool]:
    """The fingerprint to sign with an artifact: ``given``, else ``ARTIFACT.behaviour.json``
    when it exists and was made from these very bytes, else a new one (calibrated).

    Returns:
        The fingerprint and whether it was made now.

    Raises:
        ConfigError: ``given`` is missing or malformed, or was made from other bytes.
        RuntimeBackendError: the model cannot be fingerprinted.
    """
    artifact = Path(artifact)
    candidate = Path(given) if given is not None else fingerprint_path_for(artifact)
    if given is not None or candidate.is_file():
        try:
            fp = Fingerprint.load(candidate)
        except ConfigError:
            if given is not None:
                raise
        else:
            digest = _file_sha256(artifact)
            if fp.artifact_sha256 is None or digest is None or fp.artifact_sha256 == digest:
                return FingerprintMade(candidate, fp, hashlib.sha256(
                    candidate.read_bytes()).hexdigest(), 0.0), False
            if given is not None:
                raise ConfigError(f"{candidate}: this fingerprint was made from other bytes "
                                  f"(sha256 {fp.artifact_sha256[:16]}…, the artifact is "
                                  f"{digest[:16]}…); make a new one with edgeward behaviour "
                                  "fingerprint")
    return fingerprint_artifact(artifact, out=fingerprint_path_for(artifact),
                                progress=progress), True


def _file_sha256(artifact: Path) -> str | None:
    if not artifact.is_file():
        return None
    h = hashlib.sha256()
    with artifact.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
