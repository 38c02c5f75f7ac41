"""Behavioural fingerprints: what a loaded model computes on a fixed probe set, and the check
that a device's model still computes it.

A fingerprint records, for each teacher-forced probe text, the ``top_k`` next-token
log-probabilities at every scored position, and for each probe prompt the continuation the
runtime generates (greedy, or with a fixed seeded sampler, so the sampling chain is covered
too). For a model that only embeds (an ONNX encoder) it records the probe texts' embeddings.
The check replays the same token ids through the *loaded* model and measures:

- ``distance``: the mean absolute difference, in nats, between the device's log-probabilities
  of the fingerprint's top-k tokens and the recorded ones (for embeddings: the largest
  ``1 - cosine``);
- ``top1_agreement``: the fraction of scored positions whose most likely token is unchanged;
- ``continuation_agreement``: the mean shared-prefix fraction of the generated continuations;
- whether the tokenizer still turns each probe text into the recorded ids.

The tolerance is calibrated, not guessed: :func:`calibrate` re-runs the artifact with other
thread counts, batch sizes and context sizes on the same build; the threshold is that noise
floor times a margin, and never below an absolute floor.
"""

from __future__ import annotations

import dataclasses
import math
import os
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from edgeward.behaviour._probes import DEFAULT_PROBE_SET, ProbeSet, load_probe_set
from edgeward.errors import ConfigError, DigestMismatchError, RuntimeBackendError
from edgeward.hardware_profiles import HardwareProfile
from edgeward.provenance import canonical_json
from edgeward.runtimes import LlamaCppRuntime, Runtime, llama_cpp_version, open_runtime
from edgeward.safeio import MAX_MANIFEST_BYTES, parse_json, read_capped

__all__ = [
    "FINGERPRINT_FORMAT",
    "CalibrationRun",
    "CheckResult",
    "Fingerprint",
    "Tolerance",
    "calibrate",
    "check_behaviour",
    "compare",
    "fingerprint_path_for",
    "observe",
    "runtime_build",
]

FINGERPRINT_FORMAT = "edgeward-behaviour-fingerprint/1"
Kind = Literal["logprobs", "embeddings"]
Status = Literal["ok", "drift"]

#: Thresholds never sit below these, even where the calibrated noise floor is exactly zero
#: (llama.cpp's CPU kernels give bit-identical results across threads and batch sizes).
#: A 1 % change to one block's weights moves SmolLM2's distance by well over ten times this.
MIN_THRESHOLD: dict[str, float] = {"logprobs": 2e-4, "embeddings": 1e-5}
DEFAULT_MARGIN = 4.0

# The settings a calibration re-runs the artifact with: (threads, batch size, context).
# Batch sizes stay at 64 and above: a check scores each probe text in one batch (the agent's
# runtime uses 512), and llama.cpp computes batches of a few tokens with other kernels for
# k-quants (SmolLM2 Q4_K_M at batch 7: distance 0.096, a noise no check ever sees).
_CALIBRATION_SETTINGS: tuple[tuple[int, int, int], ...] = (
    (1, 512, 512), (2, 512, 2048), (1, 64, 1024), (2, 128, 4096), (2, 256, 768), (1, 96, 3072),
)


def fingerprint_path_for(artifact: Path) -> Path:
    """Where an artifact's fingerprint lives by default: ``ARTIFACT.behaviour.json``."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + ".behaviour.json")


def runtime_build(runtime: Runtime) -> dict[str, Any]:
    """The runtime and build a fingerprint was made (or checked) with."""
    build: dict[str, Any] = {"backend": runtime.format, "machine": platform.machine()}
    if isinstance(runtime, LlamaCppRuntime):
        import llama_cpp

        build["llama_cpp_python"] = llama_cpp_version()
        info = llama_cpp.llama_print_system_info()
        build["system_info"] = info.decode("utf-8", "replace") if isinstance(info, bytes) \
            else str(info)
        build["gpu_offload"] = bool(llama_cpp.llama_supports_gpu_offload())
    else:
        try:
            import onnxruntime

            build["onnxruntime"] = onnxruntime.__version__
        except ImportError:  # pragma: no cover - the ONNX runtime imported it to load
            pass
    return build


def _build_key(build: Mapping[str, Any]) -> tuple[Any, ...]:
    """What must match for two runs to be 'the same build' (not the machine's load)."""
    return tuple(build.get(k) for k in ("backend", "llama_cpp_python", "onnxruntime",
                                        "gpu_offload", "machine"))


@dataclass(frozen=True)
class TextRecord:
    """One teacher-forced probe text: its token ids and, per scored position, the top-k."""

    id: str
    tokens: tuple[int, ...]
    positions: tuple[int, ...]
    top: tuple[tuple[tuple[int, float], ...], ...] = ()
    embedding: tuple[float, ...] = ()


@dataclass(frozen=True)
class ContinuationRecord:
    """One probe prompt and the continuation the runtime generated for it."""

    id: str
    text: str


@dataclass(frozen=True)
class CalibrationRun:
    """One re-run of the artifact during calibration, against the fingerprint."""

    threads: int
    batch_size: int
    context: int
    distance: float
    top1_agreement: float
    continuation_agreement: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Tolerance:
    """When a check says drift.

    Attributes:
        threshold: drift when the distance exceeds this.
        top1_min: drift when top-1 agreement falls below this.
        continuation_min: drift when continuation agreement falls below this.
        noise_floor: the largest distance seen across the calibration runs.
        margin: threshold = max(noise_floor * margin, floor).
        floor: the absolute minimum threshold for this kind of fingerprint.
        runs: the calibration runs (settings and what each measured).
    """

    threshold: float
    top1_min: float = 1.0
    continuation_min: float = 1.0
    noise_floor: float = 0.0
    margin: float = DEFAULT_MARGIN
    floor: float = 0.0
    runs: tuple[CalibrationRun, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "top1_min": self.top1_min,
                "continuation_min": self.continuation_min, "noise_floor": self.noise_floor,
                "margin": self.margin, "floor": self.floor,
                "runs": [r.to_dict() for r in self.runs]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Tolerance:
        runs = tuple(CalibrationRun(**{k: r[k] for k in (
            "threads", "batch_size", "context", "distance", "top1_agreement",
            "continuation_agreement")}) for r in d.get("runs", ()))
        return cls(float(d["threshold"]), float(d.get("top1_min", 1.0)),
                   float(d.get("continuation_min", 1.0)), float(d.get("noise_floor", 0.0)),
                   float(d.get("margin", DEFAULT_MARGIN)), float(d.get("floor", 0.0)), runs)


@dataclass(frozen=True)
class Fingerprint:
    """A behavioural fingerprint (format ``edgeward-behaviour-fingerprint/1``).

    Attributes:
        kind: ``logprobs`` (a generative model) or ``embeddings`` (an encoder).
        probe_set: the probe set's id; ``probe_set_sha256`` its digest.
        top_k: next tokens recorded per position.
        texts: per probe text, its token ids and what the model gave.
        continuations: per probe prompt, the generated text.
        runtime: the runtime and build that produced it (:func:`runtime_build`).
        settings: threads, batch size and context it was made with.
        tolerance: the calibrated tolerance (``None`` until calibrated).
        artifact: the artifact's file name, when known.
        created_at: RFC 3339 UTC.
        artifact_sha256: the artifact file's sha256 (a directory artifact: None).
    """

    kind: Kind
    probe_set: str
    probe_set_sha256: str
    top_k: int
    texts: tuple[TextRecord, ...]
    continuations: tuple[ContinuationRecord, ...]
    runtime: Mapping[str, Any]
    settings: Mapping[str, Any] = field(default_factory=dict)
    tolerance: Tolerance | None = None
    artifact: str | None = None
    created_at: str = ""
    artifact_sha256: str | None = None

    @property
    def positions(self) -> int:
        """Scored positions (or embedded texts) in all."""
        if self.kind == "embeddings":
            return len(self.texts)
        return sum(len(t.positions) for t in self.texts)

    @property
    def probes(self) -> int:
        """Probe texts and prompts in all."""
        return len(self.texts) + len(self.continuations)

    def to_dict(self) -> dict[str, Any]:
        texts = []
        for t in self.texts:
            rec: dict[str, Any] = {"id": t.id, "tokens": list(t.tokens)}
            if self.kind == "logprobs":
                rec["positions"] = list(t.positions)
                rec["top"] = [[[i, round(lp, 7)] for i, lp in row] for row in t.top]
            else:
                rec["embedding"] = [round(x, 8) for x in t.embedding]
            texts.append(rec)
        return {
            "format": FINGERPRINT_FORMAT, "kind": self.kind,
            "probe_set": {"id": self.probe_set, "sha256": self.probe_set_sha256},
            "top_k": self.top_k, "artifact": self.artifact, "created_at": self.created_at,
            "artifact_sha256": self.artifact_sha256,
            "runtime": dict(self.runtime), "settings": dict(self.settings),
            "tolerance": self.tolerance.to_dict() if self.tolerance else None,
            "texts": texts,
            "continuations": [{"id": c.id, "text": c.text} for c in self.continuations],
        }

    def to_bytes(self) -> bytes:
        """Canonical JSON: the same fingerprint always gives the same bytes (and digest)."""
        return canonical_json(self.to_dict())

    @classmethod
    def from_dict(cls, d: Any, *, what: str = "fingerprint") -> Fingerprint:
        """Parse a fingerprint document.

        Raises:
            ConfigError: not a fingerprint of a format this edgeward reads.
        """
        if not isinstance(d, Mapping) or d.get("format") != FINGERPRINT_FORMAT:
            got = d.get("format") if isinstance(d, Mapping) else type(d).__name__
            raise ConfigError(f"{what}: not an edgeward behavioural fingerprint (format "
                              f"{got!r}; expected {FINGERPRINT_FORMAT})")
        try:
            kind = d["kind"]
            if kind not in ("logprobs", "embeddings"):
                raise ValueError(f"unknown kind {kind!r}")
            texts = tuple(TextRecord(
                str(t["id"]), tuple(int(x) for x in t["tokens"]),
                tuple(int(x) for x in t.get("positions", ())),
                tuple(tuple((int(i), float(lp)) for i, lp in row) for row in t.get("top", ())),
                tuple(float(x) for x in t.get("embedding", ()))) for t in d["texts"])
            for t in texts:
                if len(t.top) != len(t.positions) or any(
                        not 0 <= p < len(t.tokens) for p in t.positions):
                    raise ValueError(f"text {t.id!r}: positions and top-k rows disagree")
            tol = d.get("tolerance")
            return cls(kind, str(d["probe_set"]["id"]), str(d["probe_set"]["sha256"]),
                       int(d["top_k"]), texts,
                       tuple(ContinuationRecord(str(c["id"]), str(c["text"]))
                             for c in d.get("continuations", ())),
                       dict(d.get("runtime") or {}), dict(d.get("settings") or {}),
                       Tolerance.from_dict(tol) if tol else None, d.get("artifact"),
                       str(d.get("created_at") or ""), d.get("artifact_sha256"))
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"{what}: malformed fingerprint ({type(e).__name__}: {e})") from e

    def save(self, path: Path) -> Path:
        """Write it atomically (temp file + rename); returns the path.

        Raises:
            ConfigError: it cannot be written.
        """
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            tmp.write_bytes(self.to_bytes())
            tmp.replace(path)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise ConfigError(f"{path}: cannot write the fingerprint ({e.strerror})") from e
        return path

    @classmethod
    def load(cls, path: Path, *, sha256: str | None = None) -> Fingerprint:
        """Read a fingerprint file; with ``sha256``, only if its bytes have that digest (the
        digest the signed statement names).

        Raises:
            ConfigError: missing, too large or malformed.
            DigestMismatchError: the file is not the signed fingerprint.
        """
        import hashlib

        path = Path(path)
        raw = read_capped(path, MAX_MANIFEST_BYTES, what="fingerprint")
        if sha256 is not None:
            actual = hashlib.sha256(raw).hexdigest()
            if actual != sha256:
                raise DigestMismatchError(
                    f"{path}: the fingerprint's sha256 is {actual[:16]}…, but the signed "
                    f"statement names {sha256[:16]}…; it was changed after signing. Restore "
                    "it from the signed bundle or re-sign the artifact")
        return cls.from_dict(parse_json(raw, what=str(path)), what=str(path))

    def with_tolerance(self, tolerance: Tolerance) -> Fingerprint:
        return dataclasses.replace(self, tolerance=tolerance)


@dataclass(frozen=True)
class Observation:
    """What a loaded model gave on a fingerprint's probes (compared by :func:`compare`)."""

    kind: Kind
    # per text: (device log-probs of the fingerprint's top-k ids, device top-1 id) per position
    texts: tuple[tuple[tuple[tuple[float, ...], int], ...], ...]
    embeddings: tuple[tuple[float, ...], ...]
    tokenizer_match: tuple[bool, ...]
    continuations: tuple[str, ...]
    runtime: Mapping[str, Any]
    elapsed_s: float


@dataclass(frozen=True)
class CheckResult:
    """The verdict of one check.

    Attributes:
        status: ``ok`` or ``drift``.
        distance: see the module docstring; ``threshold`` the tolerance's.
        top1_agreement, continuation_agreement: fractions in [0, 1].
        tokenizer_match: every probe text still tokenizes to the recorded ids.
        runtime_match: the runtime and build are the ones the fingerprint was made with.
        reasons: why it is drift (empty when ok).
        worst_probe: the probe text with the largest distance.
        elapsed_s: how long the replay took.
    """

    status: Status
    distance: float
    threshold: float
    top1_agreement: float
    continuation_agreement: float
    tokenizer_match: bool
    runtime_match: bool
    reasons: tuple[str, ...] = ()
    worst_probe: str | None = None
    elapsed_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["reasons"] = list(self.reasons)
        for k in ("distance", "threshold", "top1_agreement", "continuation_agreement",
                  "elapsed_s"):
            d[k] = float(f"{d[k]:.6g}")
        return d


def _text_positions(n_tokens: int, skip_first: int) -> list[int]:
    # Position i's logits predict token i + 1; the last token predicts nothing recorded.
    return list(range(min(skip_first, max(n_tokens - 2, 0)), n_tokens - 1))


def make_fingerprint(runtime: Runtime, probe_set: ProbeSet | None = None, *,
                     artifact: str | None = None,
                     settings: Mapping[str, Any] | None = None) -> Fingerprint:
    """Record a loaded model's behaviour on a probe set (uncalibrated: no tolerance yet).

    Raises:
        RuntimeBackendError: the model can neither score nor embed.
    """
    probe_set = probe_set or load_probe_set(DEFAULT_PROBE_SET)
    kind = _kind_of(runtime)
    texts: list[TextRecord] = []
    if kind == "logprobs":
        for probe in probe_set.texts:
            tokens = runtime.tokenize(probe.text)
            positions = _text_positions(len(tokens), probe_set.skip_first)
            if not positions:
                continue
            scores = runtime.score(tokens, positions, top_k=probe_set.top_k)
            texts.append(TextRecord(probe.id, tuple(tokens), tuple(positions),
                                    tuple(s.top for s in scores)))
    else:
        vectors = runtime.embed([p.text for p in probe_set.texts]).vectors
        for probe, vector in zip(probe_set.texts, vectors, strict=True):
            texts.append(TextRecord(probe.id, tuple(runtime.tokenize(probe.text)), (), (),
                                    tuple(vector)))
    continuations = tuple(ContinuationRecord(p.id, _continue(runtime, p.prompt, p.sampling))
                          for p in probe_set.prompts) if kind == "logprobs" else ()
    return Fingerprint(kind, probe_set.id, probe_set.sha256, probe_set.top_k, tuple(texts),
                       continuations, runtime_build(runtime), dict(settings or {}),
                       None, artifact, _utc_now())


def observe(runtime: Runtime, fingerprint: Fingerprint, probe_set: ProbeSet | None = None, *,
            between: Callable[[], None] | None = None) -> Observation:
    """Replay a fingerprint's probes through a loaded model.

    Args:
        runtime: the loaded model to check (the one that serves).
        fingerprint: what to replay (its token ids are fed as recorded).
        probe_set: the probe set; default the packaged one the fingerprint names.
        between: called between probes (the agent waits there while requests are served, or
            raises to abandon the check).

    Raises:
        ConfigError: the probe set is not the one the fingerprint was made with.
        RuntimeBackendError: the model failed.
    """
    probe_set = probe_set or load_probe_set(fingerprint.probe_set)
    if probe_set.sha256 != fingerprint.probe_set_sha256:
        raise ConfigError(f"probe set {probe_set.id} (sha256 {probe_set.sha256[:12]}…) is not "
                          f"the one the fingerprint was made with "
                          f"({fingerprint.probe_set_sha256[:12]}…)")
    t0 = time.perf_counter()
    by_id = {p.id: p for p in probe_set.texts}
    texts, matches, embeddings = [], [], []
    if fingerprint.kind == "embeddings" and fingerprint.texts:
        ordered = [by_id[t.id].text for t in fingerprint.texts]
        embeddings = [tuple(v) for v in runtime.embed(ordered).vectors]
    for record in fingerprint.texts:
        probe = by_id.get(record.id)
        if probe is None:
            raise ConfigError(f"fingerprint probe {record.id!r} is not in {probe_set.id}")
        matches.append(tuple(runtime.tokenize(probe.text)) == record.tokens)
        if fingerprint.kind == "logprobs":
            lookup = [[i for i, _ in row] for row in record.top]
            scores = runtime.score(record.tokens, record.positions, top_k=1, lookup=lookup)
            texts.append(tuple((s.looked_up, s.top[0][0]) for s in scores))
        if between is not None:
            between()
    continuations = []
    prompts = {p.id: p for p in probe_set.prompts}
    for c in fingerprint.continuations:
        p = prompts.get(c.id)
        if p is None:
            raise ConfigError(f"fingerprint prompt {c.id!r} is not in {probe_set.id}")
        continuations.append(_continue(runtime, p.prompt, p.sampling))
        if between is not None:
            between()
    return Observation(fingerprint.kind, tuple(texts), tuple(embeddings), tuple(matches),
                       tuple(continuations), runtime_build(runtime),
                       time.perf_counter() - t0)


def compare(fingerprint: Fingerprint, observation: Observation, *,
            tolerance: Tolerance | None = None) -> CheckResult:
    """Judge an observation against a fingerprint and its (or the given) tolerance."""
    tol = tolerance or fingerprint.tolerance or Tolerance(MIN_THRESHOLD[fingerprint.kind],
                                                         floor=MIN_THRESHOLD[fingerprint.kind])
    per_text: dict[str, float] = {}
    agree = total = 0
    deltas_sum, deltas_n = 0.0, 0
    if fingerprint.kind == "logprobs":
        for record, observed in zip(fingerprint.texts, observation.texts, strict=True):
            s, n = 0.0, 0
            for row, (looked_up, dev_top1) in zip(record.top, observed, strict=True):
                for (_, ref), dev in zip(row, looked_up, strict=True):
                    s += abs(_finite(dev) - ref)
                    n += 1
                agree += int(dev_top1 == row[0][0])
                total += 1
            per_text[record.id] = s / max(n, 1)
            deltas_sum, deltas_n = deltas_sum + s, deltas_n + n
        distance = deltas_sum / max(deltas_n, 1)
    else:
        for record, vector in zip(fingerprint.texts, observation.embeddings, strict=True):
            per_text[record.id] = 1.0 - _cosine(record.embedding, vector)
        distance = max(per_text.values(), default=0.0)
        agree = total = 1
    top1 = agree / max(total, 1)
    cont = _continuation_agreement([c.text for c in fingerprint.continuations],
                                   observation.continuations)
    tokenizer_ok = all(observation.tokenizer_match)
    runtime_ok = _build_key(fingerprint.runtime) == _build_key(observation.runtime)
    reasons = []
    if distance > tol.threshold:
        reasons.append(f"distance {distance:.3g} > threshold {tol.threshold:.3g}")
    if top1 < tol.top1_min:
        reasons.append(f"top-1 agreement {top1:.3f} < {tol.top1_min:.3f}")
    if cont < tol.continuation_min:
        reasons.append(f"continuation agreement {cont:.3f} < {tol.continuation_min:.3f}")
    if not tokenizer_ok:
        reasons.append("the tokenizer no longer gives the recorded token ids")
    if reasons and not runtime_ok:
        reasons.append("the runtime build differs from the one the fingerprint was made with")
    worst = max(per_text, key=lambda k: per_text[k]) if per_text else None
    return CheckResult("drift" if reasons else "ok", distance, tol.threshold, top1, cont,
                       tokenizer_ok, runtime_ok, tuple(reasons), worst, observation.elapsed_s)


def check_behaviour(runtime: Runtime, fingerprint: Fingerprint, *,
                    between: Callable[[], None] | None = None) -> CheckResult:
    """Replay the probes through the loaded model and judge the result."""
    return compare(fingerprint, observe(runtime, fingerprint, between=between))


def calibrate(artifact: Path, fingerprint: Fingerprint, *,
              profile: HardwareProfile | None = None,
              settings: Sequence[tuple[int, int, int]] = _CALIBRATION_SETTINGS,
              margin: float = DEFAULT_MARGIN,
              progress: Callable[[int, int], None] | None = None) -> Tolerance:
    """Measure the noise floor of ``fingerprint`` and derive its tolerance.

    The artifact is re-loaded with each ``(threads, batch size, context)`` setting (context
    capped at what the model was trained for; threads at the cores there are) and replayed;
    the threshold is ``max(largest distance * margin, floor)``; top-1 and continuation limits
    sit one position / one character below the lowest agreement seen.
    """
    if margin < 1.0:
        raise ConfigError(f"margin must be >= 1, got {margin}")
    runs: list[CalibrationRun] = []
    cores = _cores()
    for i, (wanted, batch, ctx) in enumerate(settings):
        threads = min(wanted, cores)
        with _loaded(artifact, profile, threads=threads, batch_size=batch, context=ctx) as rt:
            obs = observe(rt, fingerprint)
            ctx_used = int(getattr(rt, "context_length", ctx))
        result = compare(fingerprint, obs, tolerance=Tolerance(math.inf, 0.0, 0.0))
        runs.append(CalibrationRun(threads, batch, ctx_used, result.distance,
                                   result.top1_agreement, result.continuation_agreement))
        if progress is not None:
            progress(i + 1, len(settings))
    floor = MIN_THRESHOLD[fingerprint.kind]
    noise = max((r.distance for r in runs), default=0.0)
    n_positions = max(fingerprint.positions, 1)
    top1_min = max(0.0, min((r.top1_agreement for r in runs), default=1.0) - 1 / n_positions)
    cont_min = max(0.0, min((r.continuation_agreement for r in runs), default=1.0) - 0.02)
    return Tolerance(max(noise * margin, floor), round(top1_min, 6), round(cont_min, 6),
                     noise, margin, floor, tuple(runs))


class _loaded:  # noqa: N801 - a lowercase context manager
    """An artifact loaded with explicit threads, batch size and context."""

    def __init__(self, artifact: Path, profile: HardwareProfile | None, *, threads: int,
                 batch_size: int, context: int) -> None:
        self.artifact, self.profile = Path(artifact), profile
        self.threads, self.batch_size, self.context = threads, batch_size, context
        self.rt: Runtime | None = None

    def __enter__(self) -> Runtime:
        from edgeward.runtimes import artifact_format

        if artifact_format(self.artifact) == "gguf":
            rt: Runtime = LlamaCppRuntime(batch_size=self.batch_size)
            profile = _with_threads(self.profile, self.threads)
            rt.load(self.artifact, profile, context_length=_capped_context(self.artifact,
                                                                           self.context))
        else:
            rt = open_runtime(self.artifact, _with_threads(self.profile, self.threads))
        self.rt = rt
        return rt

    def __exit__(self, *exc: object) -> None:
        if self.rt is not None:
            self.rt.unload()


def _with_threads(profile: HardwareProfile | None, threads: int) -> HardwareProfile:
    from edgeward.hardware_profiles import detect_profile

    base = profile if profile is not None else detect_profile(measure_bandwidth=False).profile
    return dataclasses.replace(base, threads=threads)


def _capped_context(artifact: Path, context: int) -> int:
    from edgeward.runtimes import read_gguf_header

    try:
        trained = read_gguf_header(artifact).arch_value("context_length")
    except Exception:  # noqa: BLE001 - llama.cpp will say what is wrong on load
        trained = None
    return min(context, int(trained)) if isinstance(trained, int) and trained > 0 else context


def _kind_of(runtime: Runtime) -> Kind:
    if "score" in runtime.capabilities:
        return "logprobs"
    if "embed" in runtime.capabilities:
        return "embeddings"
    raise RuntimeBackendError(f"{runtime.artifact}: the model can neither give next-token "
                              "log-probabilities nor embeddings; it cannot be fingerprinted")


def _continue(runtime: Runtime, prompt: str, sampling: Any) -> str:
    return runtime.complete(prompt, sampling).text


def _continuation_agreement(expected: Sequence[str], got: Sequence[str]) -> float:
    if not expected:
        return 1.0
    fractions = []
    for a, b in zip(expected, got, strict=True):
        if not a and not b:
            fractions.append(1.0)
            continue
        n = 0
        for x, y in zip(a, b, strict=False):
            if x != y:
                break
            n += 1
        fractions.append(n / max(len(a), len(b)))
    return sum(fractions) / len(fractions)


def _finite(x: float) -> float:
    return x if math.isfinite(x) else -1e4


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    if len(a) != len(b):
        return -1.0
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(y * y for y in b))
    return dot / (na * nb) if na and nb else -1.0


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

