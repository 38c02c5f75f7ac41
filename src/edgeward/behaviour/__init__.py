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
from edgeward.behaviour._redteam import (
    REDTEAM_TRANSFORMS,
    AttackPrompt,
    AttackSet,
    RedteamConfig,
    load_attack_set,
    run_redteam,
)
from edgeward.behaviour._redteam_garak import GARAK_PROBES, parse_garak_report, run_garak
from edgeward.behaviour._redteam_records import (
    REDTEAM_FORMAT,
    Attempt,
    FamilySummary,
    ProbeRun,
    RedteamReport,
)
from edgeward.behaviour._redteam_report import (
    REDTEAM_PAYLOAD_TYPE,
    ReportFiles,
    VerifiedReport,
    render_markdown,
    verify_report,
    write_report,
)

__all__ = [
    "ATTACK_FAMILIES",
    "CANARY_FAMILIES",
    "CANARY_PAYLOAD_TYPE",
    "DEFAULT_CANARY_SET",
    "DEFAULT_PROBE_SET",
    "FINGERPRINT_FORMAT",
    "GARAK_PROBES",
    "MIN_THRESHOLD",
    "REDTEAM_FORMAT",
    "REDTEAM_PAYLOAD_TYPE",
    "REDTEAM_TRANSFORMS",
    "AttackPrompt",
    "AttackSet",
    "Attempt",
    "CalibrationRun",
    "Canary",
    "CanaryResult",
    "CanarySet",
    "CheckResult",
    "FamilyDrift",
    "FamilySummary",
    "Fingerprint",
    "FingerprintMade",
    "Observation",
    "Probe",
    "ProbePrompt",
    "ProbeRun",
    "ProbeSet",
    "RedteamConfig",
    "RedteamReport",
    "ReportFiles",
    "Tolerance",
    "VerifiedReport",
    "calibrate",
    "check_artifact",
    "check_behaviour",
    "compare",
    "fingerprint_artifact",
    "fingerprint_for_signing",
    "fingerprint_path_for",
    "judge",
    "load_attack_set",
    "load_canary_set",
    "load_probe_set",
    "make_fingerprint",
    "observe",
    "parse_garak_report",
    "record_expected",
    "render_markdown",
    "run_canaries",
    "run_garak",
    "run_redteam",
    "runtime_build",
    "sign_canary_set",
    "statement_record",
    "tolerance_for",
    "verify_report",
    "write_report",
]
