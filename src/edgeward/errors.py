"""The one exception tree of edgeward, split by whose fault an error is.

Every error edgeward raises on purpose is an :class:`EdgewardError`. Third-party exceptions
(llama.cpp, onnxruntime, paho-mqtt, cryptography) are translated into one of these at the
boundary where edgeward calls them (``raise RuntimeBackendError(...) from e``), so the rest of
the code and every caller catches edgeward's types only.

Each class carries the process exit code the CLI uses for it, so scripts can tell a bad
configuration (fix your input) from a failed signature (do not run this) from a broken backend
(report a bug or check the installation)::

    try:
        profile = load_profile_file(path)
    except ConfigError as e:
        print(e)            # one line: what was wrong and what to do

Messages are written for the person who has to act on them: they name the file, field or value
that was wrong and, where it is not obvious, what to do next.
"""

from __future__ import annotations

__all__ = [
    "ArtifactError",
    "BadSignatureError",
    "BehaviourDrift",
    "ChannelError",
    "CommandRefusedError",
    "ConfigError",
    "DigestMismatchError",
    "EdgewardError",
    "ExtraFileError",
    "LogTamperedError",
    "MalformedEnvelopeError",
    "MissingFileError",
    "PolicyError",
    "ProfileError",
    "RejectedMessageError",
    "ResourceError",
    "RevokedKeyError",
    "RuntimeBackendError",
    "SafetyBlocked",
    "SignatureError",
    "StoreError",
    "SubjectMismatchError",
    "UnknownKeyError",
    "UnsignedArtifactError",
    "UnsupportedPredicateError",
    "WrongRoleError",
]


class EdgewardError(Exception):
    """Base of every error edgeward raises on purpose.

    Attributes:
        exit_code: the exit status the ``edgeward`` command uses for this kind of error.
    """

    exit_code: int = 1

    @property
    def kind(self) -> str:
        """A stable, machine-readable name of the error kind (for ``--json`` output)."""
        name = type(self).__name__
        out = [name[0].lower()]
        for ch in name[1:]:
            if ch.isupper():
                out.append("_")
            out.append(ch.lower())
        return "".join(out)


class ConfigError(EdgewardError):
    """The user's input is wrong: a configuration file, a command-line value, a missing path.

    The fix is on the caller's side; the message names what was wrong.
    """

    exit_code = 3


class ProfileError(ConfigError):
    """A hardware profile is malformed or unknown (names the file, the field and the value)."""


class PolicyError(ConfigError):
    """A safety policy file is malformed: not TOML, an unknown key, a wrong type or an
    out-of-range value (the message names the file, the key and the value)."""


class ArtifactError(EdgewardError):
    """A model or artifact file is unusable: not the expected format, truncated, unsupported."""

    exit_code = 4


class SignatureError(EdgewardError):
    """A signature, digest or provenance check failed. What failed must not be used.

    Never raised as, or replaced by, a bare ``ValueError``: a caller must be able to tell
    "this artifact was tampered with" from any other problem.
    """

    exit_code = 5


class UnsignedArtifactError(SignatureError):
    """No signature at all: no envelope next to the artifact, or an envelope with no signatures."""


class MalformedEnvelopeError(SignatureError):
    """A DSSE envelope, Sigstore bundle or in-toto statement is not what the format says.

    Not JSON, a missing or mistyped field, bad base64, a truncated file, an unexpected
    ``payloadType`` or ``_type``. Nothing in it can be trusted, so nothing in it is used.
    """


class UnsupportedPredicateError(SignatureError):
    """The statement's predicate type or version is not one this edgeward understands.

    A newer edgeward may have written it (upgrade), or it is some other tool's predicate.
    """


class UnknownKeyError(SignatureError):
    """The signing key is not in the trust store.

    Attributes:
        key_id: the key id the signature names (sha256 of the public key's DER), or ``""``.
    """

    def __init__(self, message: str, *, key_id: str = "") -> None:
        super().__init__(message)
        self.key_id = key_id


class RevokedKeyError(SignatureError):
    """The signing key is in the trust store but has been revoked.

    Attributes:
        key_id: the revoked key's id.
    """

    def __init__(self, message: str, *, key_id: str = "") -> None:
        super().__init__(message)
        self.key_id = key_id


class WrongRoleError(SignatureError):
    """The signing key is trusted, but not for this role (e.g. a device key signed an artifact).

    Attributes:
        key_id: the key's id.
    """

    def __init__(self, message: str, *, key_id: str = "") -> None:
        super().__init__(message)
        self.key_id = key_id


class BadSignatureError(SignatureError):
    """A signature does not verify under the key it names: the signed bytes were changed, or
    the signature was swapped for another one.
    """


class SubjectMismatchError(SignatureError):
    """The artifact's files are not the statement's subjects (a renamed, missing or extra file).

    Attributes:
        file: the file name (relative to the artifact) the mismatch is about, or ``""``.
    """

    def __init__(self, message: str, *, file: str = "") -> None:
        super().__init__(message)
        self.file = file


class MissingFileError(SubjectMismatchError):
    """A file named by the statement is absent from the artifact (``file`` names it)."""


class ExtraFileError(SubjectMismatchError):
    """The artifact holds a file the statement does not name (``file`` names it)."""


class DigestMismatchError(SignatureError):
    """A file's sha256 differs from the one in the signed statement: its bytes were changed.

    Attributes:
        file: the file name (relative to the artifact).
        expected: the signed sha256 (hex).
        actual: the sha256 of the file on disk (hex).
    """

    def __init__(self, message: str, *, file: str = "", expected: str = "",
                 actual: str = "") -> None:
        super().__init__(message)
        self.file = file
        self.expected = expected
        self.actual = actual


class LogTamperedError(SignatureError):
    """A tamper-evident log failed verification: an entry modified, removed, inserted or
    reordered, a torn (incomplete) last line, or a checkpoint that does not verify.

    Attributes:
        problems: one line per problem found, each naming the entry.
    """

    def __init__(self, message: str, *, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = list(problems or [])


class RuntimeBackendError(EdgewardError):
    """An inference or compression backend (llama.cpp, ONNX Runtime) failed.

    Raised at the boundary with the backend's own exception chained as ``__cause__``.
    """

    exit_code = 6


class SafetyBlocked(EdgewardError):  # noqa: N818 - a verdict, not a malfunction
    """The safety filter blocked a prompt or an output.

    Attributes:
        categories: the hazard categories that caused the block (e.g. ``["S1"]``).
    """

    exit_code = 7

    def __init__(self, message: str, *, categories: list[str] | None = None) -> None:
        super().__init__(message)
        self.categories = list(categories or [])


class ChannelError(EdgewardError):
    """The device <-> fleet channel failed: broker unreachable, TLS, protocol, oversize message."""

    exit_code = 8


class RejectedMessageError(ChannelError):
    """A message on the device <-> fleet channel broke the wire protocol or failed its checks.

    Oversize, malformed, of an unknown protocol version, unsigned, forged, from an unknown
    device, or a replay. The fleet manager counts it under ``reason`` and drops it; it never
    stops the manager.

    Attributes:
        reason: the counted rejection reason (a value of ``edgeward.fleet.protocol.Rejection``,
            e.g. ``"forged"``).
    """

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class CommandRefusedError(RejectedMessageError):
    """A device refused an operator command: a bad or unknown signature, expired, a replayed
    nonce, a version not above the last applied one, a downgrade that is not a signed
    ``rollback``. ``reason`` names which; the agent reports it as a signed event."""


class StoreError(ChannelError):
    """The fleet manager's store (SQLite or PostgreSQL) failed: unreachable, locked beyond its
    timeout, a failed write, or a schema newer than this edgeward (upgrade it).

    Raised at the boundary with the driver's own exception chained as ``__cause__``.
    """


class ResourceError(EdgewardError):
    """The machine lacks a resource the operation needs: disk space, memory, a free port."""

    exit_code = 9


class BehaviourDrift(EdgewardError):  # noqa: N818 - a verdict, not a malfunction
    """A model no longer behaves as its signed fingerprint says: the loaded model's outputs on
    the probe set are further from the fingerprint than its calibrated tolerance (another
    runtime build, changed weights, an adapter, a different sampler, failing hardware).

    Attributes:
        distance: the measured distance; ``threshold`` the tolerance's.
        reasons: each limit that was crossed.
    """

    exit_code = 10

    def __init__(self, message: str, *, distance: float = 0.0, threshold: float = 0.0,
                 reasons: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.distance, self.threshold, self.reasons = distance, threshold, tuple(reasons)
