"""Behaviour: signed fingerprints of what a model computes, and the checks that it still does.

Signatures prove which bytes shipped; they say nothing about what a device computes once it has
loaded them (another runtime build, a patched tensor, a steering adapter, a mislabelled
quantization, failing hardware). A *behavioural fingerprint* records a loaded model's outputs
on a fixed, versioned probe set, with a tolerance calibrated on the same build; the device
agent replays the probes through the model it serves and reports drift. ::

    from edgeward.behaviour import fingerprint_artifact, check_artifact

    made = fingerprint_artifact(Path("model.gguf"))      # -> model.gguf.behaviour.json
    result = check_artifact(Path("model.gguf"), made.path)
    print(result.status, result.distance, result.threshold)

The file format and what a fingerprint does and does not prove are in docs/behaviour.md.
Depends on :mod:`edgeward.runtimes`, :mod:`edgeward.hardware_profiles`,
:mod:`edgeward.provenance` (canonical JSON) and the foundations.
"""

from edgeward.behaviour._api import (
    FingerprintMade,
    check_artifact,
    fingerprint_artifact,
    fingerprint_for_signing,
    statement_record,
)
from edgeward.behaviour._canaries import (
    ATTACK_FAMILIES,
    CANARY_FAMILIES,
    CANARY_PAYLOAD_TYPE,
    DEFAULT_CANARY_SET,
    Canary,
    CanaryResult,
    CanarySet,
    FamilyDrift,
    judge,
    load_canary_set,
    record_expected,
    run_canaries,
    sign_canary_set,
    tolerance_for,
)
from edgeward.behaviour._fingerprint import (
    FINGERPRINT_FORMAT,
    MIN_THRESHOLD,
    CalibrationRun,
    CheckResult,
    Fingerprint,
    Observation,
    Tolerance,
    calibrate,
    check_behaviour,
    compare,
    fingerprint_path_for,
    make_fingerprint,
    observe,
    runtime_build,
)
from edgeward.behaviour._probes import (
    DEFAULT_PROBE_SET,
    Probe,
    ProbePrompt,
    ProbeSet,
    load_probe_set,
)

__all__ = [
    "ATTACK_FAMILIES",
    "CANARY_FAMILIES",
    "CANARY_PAYLOAD_TYPE",
    "DEFAULT_CANARY_SET",
    "DEFAULT_PROBE_SET",
    "FINGERPRINT_FORMAT",
    "MIN_THRESHOLD",
    "CalibrationRun",
    "Canary",
    "CanaryResult",
    "CanarySet",
    "CheckResult",
    "FamilyDrift",
    "Fingerprint",
    "FingerprintMade",
    "Observation",
    "Probe",
    "ProbePrompt",
    "ProbeSet",
    "Tolerance",
    "calibrate",
    "check_artifact",
    "check_behaviour",
    "compare",
    "fingerprint_artifact",
    "fingerprint_for_signing",
    "fingerprint_path_for",
    "judge",
    "load_canary_set",
    "load_probe_set",
    "make_fingerprint",
    "observe",
    "record_expected",
    "run_canaries",
    "runtime_build",
    "sign_canary_set",
    "statement_record",
    "tolerance_for",
]
