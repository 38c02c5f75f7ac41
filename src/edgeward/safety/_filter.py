"""The bundled safety filter: the policy's pipeline of checks behind one ``check`` call.

Pipeline, in order: the normaliser (always); the harm score of the text and of every hidden
payload decoded from it (classifier and rules, :mod:`._score`); the guard model for uncertain
prompts, if one is supplied; PII detection; the policy's plug-ins. The policy then maps every
category found to an action, and the strictest wins (block > redact > allow). Each decision
other than ``allow`` is counted and handed to the audit sink.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from edgeward.safety._audit import AuditSink, audit_record
from edgeward.safety._classifier import LinearModel, default_model
from edgeward.safety._encoder import Encoder, default_encoder
from edgeward.safety._normalise import Normalised, normalise
from edgeward.safety._pii import find_pii, redact
from edgeward.safety._plugins import Check, GuardModel, load_plugin
from edgeward.safety._policy import Policy, default_policy, load_policy, resolve_policy
from edgeward.safety._pseudonyms import Pseudonyms, redact_pseudonymous
from edgeward.safety._scan import Scan
from edgeward.safety._score import Cascade, HarmScore, score_views
from edgeward.safety._verdict import Action, OutputStream, Span, Stage, Verdict

__all__ = ["BundledFilter", "load_filter"]

_SEVERITY = {"allow": 0, "redact": 1, "block": 2}
_FALLBACK_HAZARD = "S2"  # a harmful request whose category the lexicon cannot name


class BundledFilter:
    """The safety filter edgeward ships (implements :class:`~edgeward.safety.SafetyFilter`).

    Example::

        f = BundledFilter()                       # default policy and shipped classifier
        v = f.check("Email me at ana@example.org")
        v.action, v.redacted_text                 # ('redact', 'Email me at [EMAIL]')

    Args:
        policy: the policy (default: the shipped ``policies/default.toml``).
        model: the classifier (default: the shipped one).
        encoder: the encoder stage (default: the shipped one, when the policy enables the
            ``encoder`` check and this build ships one).
        audit: where records of non-allow decisions go (default: nowhere).
        hmac_key: key for the text HMAC in audit records; pass a persistent device secret so
            records stay linkable across restarts (default: a random per-process key).
        guard: a guard model for prompts whose unsafe score falls in the policy's band.
        checks: plug-in checks by name (default: loaded from entry points as the policy
            names them).
        clock: the time source of audit records (tests).

    Raises:
        ConfigError: a plug-in the policy names cannot be loaded.
    """

    def __init__(self, policy: Policy | None = None, *, model: LinearModel | None = None,
                 encoder: Encoder | None = None, audit: AuditSink | None = None,
                 hmac_key: bytes | None = None,
                 guard: GuardModel | None = None, checks: Mapping[str, Check] | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.policy = policy or default_policy()
        use_model = "classifier" in self.policy.checks
        self.model = (model or default_model()) if use_model else None
        self.encoder = (encoder or default_encoder()) if "encoder" in self.policy.checks \
            else None
        self._cascade = None if self.encoder is None else Cascade(
            self.encoder, low=self.policy.encoder_band[0], high=self.policy.encoder_band[1],
            encoder_weight=self.policy.encoder_weight)
        self.audit = audit
        self.guard = guard
        self._key = hmac_key if hmac_key is not None else os.urandom(32)
        self._clock = clock
        given = dict(checks or {})
        self.plugins: dict[str, Check] = {
            name: given[name] if name in given
            else load_plugin(name, self.policy.plugin_options.get(name))
            for name in self.policy.checks
            if name not in ("rules", "classifier", "encoder", "pii")}
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    @classmethod
    def from_policy_file(cls, path: Path, **kwargs: Any) -> BundledFilter:
        """A filter for the policy in ``path`` (see :func:`load_policy`).

        Raises:
            PolicyError: the policy file is malformed.
        """
        return cls(load_policy(path), **kwargs)

    @property
    def threshold(self) -> float:
        """The prompt threshold in force (the policy's, else the model's recorded one)."""
        if self.policy.threshold is not None:
            return self.policy.threshold
        return self.model.threshold if self.model is not None else 0.5

    def refusal(self, verdict: Verdict | None = None) -> str:
        """What to answer instead of a blocked prompt or output (the policy's text)."""
        return self.policy.refusal

    def counts(self) -> dict[str, int]:
        """Decisions so far: ``checked``, per action, and per category of non-allow decisions
        (for the agent's health telemetry)."""
        with self._lock:
            return dict(self._counts)

    def harm(self, norm: Normalised, scan: Scan | None = None, *,
             stage: Stage = "prompt") -> HarmScore:
        """The harm score of a normalised text (all views), without policy or PII.

        The encoder stage reads prompts only: it was trained on requests, not on model
        output, and on benign output (code, HTML) it stopped streams the fast stage let pass.
        """
        return score_views(norm.text, self.model, rules="rules" in self.policy.checks,
                           decode=self.policy.decode_payloads, scan=scan, hidden=norm.hidden,
                           cascade=self._cascade if stage == "prompt" else None)[0]

    def check(self, text: str, *, stage: Stage = "prompt",
              context: Mapping[str, Any] | None = None,
              pseudonyms: Pseudonyms | None = None) -> Verdict:
        """Check a whole text (a prompt, or a finished output) against the policy.

        Args:
            text: the text.
            stage: ``prompt`` or ``output`` (outputs use ``output_threshold``).
            context: the caller's context, passed to plug-ins (and, for a few known keys,
                to the audit record).
            pseudonyms: the conversation's placeholders; used when the policy sets
                ``[pii] pseudonyms`` (redactions then write ``[NAME_1]``, not ``[NAME]``).

        Returns:
            The verdict; ``redacted_text`` is set when the action is ``redact``.
        """
        t0 = time.perf_counter()
        norm = normalise(text)
        scan = Scan(norm.text)
        found: dict[str, float] = {}  # category -> score
        scores: dict[str, float] = {}
        if "rules" in self.policy.checks or self.model is not None:
            harm = self.harm(norm, scan, stage=stage)
            scores.update(unsafe=round(harm.unsafe, 4),
                          **{k: round(v, 4) for k, v in harm.probs.items() if k != "benign"})
            if harm.encoder is not None:
                scores["encoder_unsafe"] = round(1.0 - harm.encoder["benign"], 4)
            found.update(self._harm_categories(harm, text, stage, scores))
        spans: list[Span] = []
        if "pii" in self.policy.checks and stage in self.policy.pii_stages:
            spans += [_to_original(norm, s) for s in find_pii(
                scan, self.policy.pii_types, patterns=self.policy.pii_patterns,
                names=self.policy.pii_names, age_over=self.policy.pii_age_over)]
        for name, plugin in self.plugins.items():
            result = plugin.run(norm.text, stage=stage, context=context)
            scores.update({f"{name}.{k}": float(v) for k, v in result.scores.items()})
            found.update(dict.fromkeys(result.categories, 1.0))
            spans += [_to_original(norm, s) for s in result.spans]
        for s in spans:
            found.setdefault(s.type, 1.0)
        verdict = self._decide(text, found, scores, spans, t0, pseudonyms=pseudonyms)
        self._record(verdict, text, stage, context)
        return verdict

    def _harm_categories(self, harm: HarmScore, text: str, stage: Stage,
                         scores: dict[str, float], *, use_guard: bool = True
                         ) -> dict[str, float]:
        """Categories the harm score flags under the policy's threshold for ``stage``."""
        threshold = self.threshold if stage == "prompt" else self.policy.output_threshold
        low, high = self.policy.guard_band
        if use_guard and self.guard is not None and low <= harm.unsafe < high:
            result = self.guard(text, stage=stage)
            scores["guard"] = 1.0 if result.unsafe else 0.0
            if not result.unsafe:
                return {}
            if result.categories:
                return dict.fromkeys(result.categories, max(harm.unsafe, threshold))
        elif harm.unsafe < threshold:
            return {}
        label = harm.label
        if label != "harmful":
            found = {label: harm.probs[label]}
            if harm.probs["harmful"] >= threshold / 2 and harm.hazards:
                found.update(dict.fromkeys(_top_hazards(harm), harm.probs["harmful"]))
            return found
        cats = _top_hazards(harm) or (_FALLBACK_HAZARD,)
        return dict.fromkeys(cats, harm.probs["harmful"])

    def _decide(self, text: str, found: Mapping[str, float], scores: dict[str, float],
                spans: list[Span], t0: float, *, pseudonyms: Pseudonyms | None = None
                ) -> Verdict:
        actions = {cat: self.policy.action_for(cat) for cat in found}
        action = cast(Action, max(actions.values(), key=_SEVERITY.__getitem__, default="allow"))
        deciding = tuple(c for c, a in actions.items() if a != "allow")
        kept = tuple(s for s in spans if actions.get(s.type) == "redact")
        redacted = None
        if action == "redact":
            redacted = (redact_pseudonymous(text, kept, pseudonyms)
                        if pseudonyms is not None and self.policy.pseudonyms
                        else redact(text, kept))
        for cat in (c for c in found if c not in scores):
            scores[cat] = round(float(found[cat]), 4)
        return Verdict(action=action, categories=deciding, scores=scores,
                       spans=kept if action != "allow" else (), redacted_text=redacted,
                       latency_ms=(time.perf_counter() - t0) * 1000)

    def _record(self, verdict: Verdict, text: str, stage: Stage,
                context: Mapping[str, Any] | None) -> None:
        with self._lock:
            self._counts["checked"] += 1
            self._counts[verdict.action] += 1
            for cat in verdict.categories:
                self._counts[cat] += 1
        if verdict.action != "allow" and self.audit is not None:
            self.audit.append(audit_record(
                verdict, text=text, stage=stage, key=self._key, policy_name=self.policy.name,
                policy_digest=self.policy.digest, log_text=self.policy.log_text,
                log_redacted_text=self.policy.log_redacted_text, now=self._clock(),
                context=dict(context) if context else None))

    def output_stream(self, *, context: Mapping[str, Any] | None = None,
                      pseudonyms: Pseudonyms | None = None) -> OutputStream:
        """A checker for one streamed response (:class:`~edgeward.safety._stream.FilterStream`).

        Args:
            context: the caller's context (audit records).
            pseudonyms: the conversation's placeholders (as for :meth:`check`): pass the
                one the request's prompt was checked with, so a person keeps their number.
        """
        from edgeward.safety._stream import FilterStream

        return FilterStream(self, context=context, pseudonyms=pseudonyms)


def load_filter(policy: str | Path = "default", **kwargs: Any) -> BundledFilter:
    """The bundled filter for a policy: a preset's name (``"default"``, ``"phi"``; see
    :data:`~edgeward.safety.POLICY_PRESETS`) or a policy file.

    This is what the device agent calls with its ``safety_policy`` setting. The agent verifies
    the policy file's signature (provenance) before handing it here; a preset is part of the
    installed package. A file whose path is a preset's name is given as ``./phi``.

    Args:
        policy: a preset's name or the path of a policy TOML.
        **kwargs: passed to :class:`BundledFilter` (``audit``, ``hmac_key``, ``guard`` ...).

    Raises:
        PolicyError: no such preset, or the policy file is missing or malformed.
    """
    return BundledFilter(resolve_policy(policy), **kwargs)


def _top_hazards(harm: HarmScore) -> tuple[str, ...]:
    """The hazard categories with the strongest lexicon evidence (at most two)."""
    ranked = sorted(harm.hazards.items(), key=lambda kv: (-kv[1], int(kv[0][1:])))
    return tuple(cat for cat, _ in ranked[:2])


def _to_original(norm: Normalised, span: Span) -> Span:
    start, end = norm.original_span(span.start, span.end)
    return Span(start, end, span.type)
