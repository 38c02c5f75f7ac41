"""The :class:`Runtime` base class: one interface over every inference backend.

Each public method wraps one private hook (``generate`` -> ``_generate``), so argument checks,
timing, statistics and the translation of third-party errors live here, once.
"""

from __future__ import annotations

import abc
import dataclasses
import itertools
import resource
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NotRequired, TypedDict

from edgeward.errors import ConfigError, EdgewardError, RuntimeBackendError
from edgeward.hardware_profiles import HardwareProfile

__all__ = [
    "ChatMessage",
    "Completion",
    "Embeddings",
    "GenerationStats",
    "Piece",
    "PositionScores",
    "Runtime",
    "SamplingParams",
    "TokenStream",
]

FinishReason = Literal["stop", "length"]


class ChatMessage(TypedDict):
    """One chat turn, in the shape every chat template and the OpenAI API use (``name``:
    the OpenAI API's optional participant name)."""

    role: str
    content: str
    name: NotRequired[str]


@dataclass(frozen=True, kw_only=True)
class SamplingParams:
    """How to pick the next token.

    Attributes:
        max_tokens: most tokens to generate (the completion, not counting the prompt).
        temperature: 0 picks the most likely token every time (greedy, deterministic).
        top_p: nucleus sampling mass in (0, 1].
        top_k: keep the k most likely tokens; 0 keeps all.
        min_p: drop tokens below this fraction of the top token's probability.
        repeat_penalty: 1.0 turns it off.
        seed: fixes the random sampler; ``None`` picks a fresh one.
        stop: generation ends before any of these strings; they are not returned.
    """

    max_tokens: int = 256
    temperature: float = 0.8
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        checks = [
            ("max_tokens", self.max_tokens >= 1, "an integer >= 1"),
            ("temperature", 0.0 <= self.temperature <= 10.0, "between 0 and 10"),
            ("top_p", 0.0 < self.top_p <= 1.0, "in (0, 1]"),
            ("top_k", self.top_k >= 0, "an integer >= 0"),
            ("min_p", 0.0 <= self.min_p < 1.0, "in [0, 1)"),
            ("repeat_penalty", 0.0 < self.repeat_penalty <= 10.0, "in (0, 10]"),
            ("seed", self.seed is None or 0 <= self.seed < 2**32, "an integer in [0, 2**32)"),
            ("stop", all(isinstance(s, str) and s for s in self.stop), "non-empty strings"),
        ]
        for name, ok, expected in checks:
            if not ok:
                raise ConfigError(
                    f"sampling parameter {name!r} has bad value {getattr(self, name)!r}; "
                    f"expected {expected}"
                )


@dataclass(frozen=True)
class Piece:
    """One step of a backend's output: the text of one token (possibly empty while a
    multi-byte character or a possible stop string is held back)."""

    text: str


@dataclass
class GenerationStats:
    """Figures for one generate/chat call.

    Attributes:
        prompt_tokens: tokens in the prompt as the model saw it.
        completion_tokens: tokens generated.
        time_to_first_token_s: from the call to the first generated token.
        decode_tokens_per_s: generated tokens after the first, per second of decoding.
        total_s: wall time of the whole call.
        peak_memory_bytes: the process's peak resident set size so far.
        finish_reason: ``"stop"`` (end of sequence or a stop string) or ``"length"``.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    time_to_first_token_s: float | None = None
    decode_tokens_per_s: float | None = None
    total_s: float = 0.0
    peak_memory_bytes: int = 0
    finish_reason: FinishReason = "stop"


@dataclass(frozen=True)
class PositionScores:
    """The model's next-token distribution after one position of a teacher-forced text.

    Attributes:
        position: the index in the token list whose logits these are (they predict the token
            at ``position + 1``).
        top: the ``top_k`` most likely next tokens as ``(token id, log-probability)``, most
            likely first.
        looked_up: the log-probabilities of the tokens asked for at this position, in order.
    """

    position: int
    top: tuple[tuple[int, float], ...]
    looked_up: tuple[float, ...] = ()


@dataclass
class Completion:
    """A finished generation: its text and its figures."""

    text: str
    stats: GenerationStats


@dataclass
class Embeddings:
    """Vectors for a batch of texts, L2-normalised, with the tokens they took."""

    vectors: list[list[float]]
    prompt_tokens: int


@dataclass
class TokenStream:
    """An iterator over generated text pieces; :attr:`stats` is complete once it is exhausted.

    Closing it early (``close()``, or leaving a ``for`` loop over it and dropping it) stops
    generation: that is how a disconnected client frees the model.
    """

    _pieces: Iterator[str]
    stats: GenerationStats = field(default_factory=GenerationStats)

    def __iter__(self) -> Iterator[str]:
        return self._pieces

    def __next__(self) -> str:
        return next(self._pieces)

    def close(self) -> None:
        """Stop generating."""
        close = getattr(self._pieces, "close", None)
        if close is not None:
            close()

    def text(self) -> str:
        """Consume the rest of the stream and return it joined."""
        return "".join(self._pieces)


class Runtime(abc.ABC):
    """A loaded model that generates, chats, embeds and tokenizes.

    Subclasses implement the private hooks; callers use the public methods, which check state
    and arguments, time the call and turn any backend exception into
    :class:`~edgeward.errors.RuntimeBackendError`.
    """

    #: the artifact format this backend loads (``"gguf"`` or ``"onnx"``).
    format: str = ""
    #: what a loaded model can do: a subset of ``{"generate", "chat", "embed"}``.
    capabilities: frozenset[str] = frozenset()

    def __init__(self) -> None:
        self._artifact: Path | None = None
        self._profile: HardwareProfile | None = None

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        """Whether a model is loaded."""
        return self._artifact is not None

    @property
    def artifact(self) -> Path | None:
        """The artifact that is loaded, if any."""
        return self._artifact

    def load(self, artifact: Path, profile: HardwareProfile | None = None, *,
             context_length: int | None = None) -> None:
        """Load an artifact for a profile.

        Args:
            artifact: the model file (or directory, for multi-file formats).
            profile: threads, GPU layers and default context come from it; ``None`` means the
                backend's defaults for this machine.
            context_length: tokens of context to reserve; overrides the profile's default.

        Raises:
            ConfigError: the artifact path does not exist.
            RuntimeBackendError: the backend could not load it.
        """
        artifact = Path(artifact)
        if not artifact.exists():
            raise ConfigError(f"{artifact}: no such model file")
        if context_length is not None and context_length < 16:
            raise ConfigError(f"context length {context_length} is too small; use >= 16 tokens")
        if self.loaded:
            self.unload()
        with self._translating(f"loading {artifact}"):
            self._load(artifact, profile, context_length)
        self._artifact = artifact
        self._profile = profile

    def unload(self) -> None:
        """Free the model. Safe to call when nothing is loaded."""
        if self.loaded:
            with self._translating("unloading the model"):
                self._unload()
        self._artifact = None

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.unload()

    # -- inference -------------------------------------------------------------------------

    def tokenize(self, text: str, *, add_special: bool = True) -> list[int]:
        """Token ids of ``text`` in the loaded model's vocabulary."""
        self._require_loaded()
        with self._translating("tokenizing"):
            return self._tokenize(text, add_special)

    def generate(self, prompt: str, params: SamplingParams | None = None) -> TokenStream:
        """Generate a continuation of ``prompt``, yielding text as tokens come.

        Returns:
            A :class:`TokenStream`; its ``stats`` are filled in as it is consumed.

        Raises:
            RuntimeBackendError: the backend failed (also while iterating).
        """
        self._require_loaded()
        params = params or SamplingParams()
        stats = GenerationStats()
        return TokenStream(self._timed(prompt, params, stats, added_special=False), stats)

    def chat(self, messages: Sequence[ChatMessage],
             params: SamplingParams | None = None) -> TokenStream:
        """Continue a conversation, formatted with the model's own chat template.

        Raises:
            ConfigError: a message lacks ``role``/``content``.
            RuntimeBackendError: the model has no usable chat template, or the backend failed.
        """
        self._require_loaded()
        for i, m in enumerate(messages):
            if not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
                raise ConfigError(f"chat message {i} needs string 'role' and 'content': {m!r}")
        if not messages:
            raise ConfigError("chat needs at least one message")
        params = params or SamplingParams()
        with self._translating("applying the chat template"):
            prompt, extra_stop = self._format_chat(messages)
        params = dataclasses.replace(params, stop=(*params.stop, *extra_stop))
        stats = GenerationStats()
        return TokenStream(self._timed(prompt, params, stats, added_special=True), stats)

    def embed(self, texts: Sequence[str]) -> Embeddings:
        """Embed each text (mean-pooled, L2-normalised).

        Raises:
            ConfigError: no texts, or a text that is not a string.
            RuntimeBackendError: the model cannot embed, or the backend failed.
        """
        self._require_loaded()
        if not texts or not all(isinstance(t, str) for t in texts):
            raise ConfigError("embed needs one or more strings")
        if "embed" not in self.capabilities:
            raise RuntimeBackendError(f"{self._artifact}: this model does not produce embeddings")
        with self._translating("embedding"):
            return self._embed(list(texts))

    def score(self, tokens: Sequence[int], positions: Sequence[int], *, top_k: int = 5,
              lookup: Sequence[Sequence[int]] | None = None) -> list[PositionScores]:
        """Teacher-force ``tokens`` and read the next-token log-probabilities at ``positions``.

        This runs the loaded model itself (with whatever adapters, patches and build it has),
        so it is what a behavioural fingerprint measures. The model's cache is cleared before
        and after; the next ``generate`` starts from an empty context.

        Args:
            tokens: token ids of the text, as the model's tokenizer gives them.
            positions: indices into ``tokens`` whose logits to read (ascending, unique).
            top_k: how many of the most likely next tokens to return per position (1-64).
            lookup: per position, token ids whose log-probabilities to return as well.

        Raises:
            ConfigError: empty tokens, positions out of range or not ascending, a bad top_k,
                a lookup list of the wrong length, or a text longer than the context.
            RuntimeBackendError: the model cannot score (an encoder), or the backend failed.
        """
        self._require_loaded()
        tokens, positions = [int(t) for t in tokens], [int(p) for p in positions]
        if not tokens or not positions:
            raise ConfigError("score needs at least one token and one position")
        if any(b <= a for a, b in itertools.pairwise(positions)) \
                or positions[0] < 0 or positions[-1] >= len(tokens):
            raise ConfigError(f"score positions must be ascending indices into the "
                              f"{len(tokens)} tokens, got {positions[:8]}...")
        if not 1 <= top_k <= 64:
            raise ConfigError(f"top_k must be between 1 and 64, got {top_k}")
        if lookup is not None and len(lookup) != len(positions):
            raise ConfigError(f"lookup needs one list per position ({len(positions)}), "
                              f"got {len(lookup)}")
        if "score" not in self.capabilities:
            raise RuntimeBackendError(f"{self._artifact}: this model does not give next-token "
                                      "log-probabilities")
        with self._translating("scoring"):
            return self._score(tokens, positions, top_k,
                               [list(x) for x in lookup] if lookup is not None else None)

    def complete(self, prompt: str, params: SamplingParams | None = None) -> Completion:
        """Generate to the end and return the text with its figures."""
        stream = self.generate(prompt, params)
        text = stream.text()
        return Completion(text, stream.stats)

    # -- hooks for backends ----------------------------------------------------------------

    @abc.abstractmethod
    def _load(self, artifact: Path, profile: HardwareProfile | None,
              context_length: int | None) -> None: ...

    @abc.abstractmethod
    def _unload(self) -> None: ...

    @abc.abstractmethod
    def _tokenize(self, text: str, add_special: bool) -> list[int]: ...

    @abc.abstractmethod
    def _generate(self, prompt: str, params: SamplingParams, *,
                  added_special: bool) -> tuple[int, Iterator[tuple[str, FinishReason | None]]]:
        """Start generating. Returns the prompt's token count and an iterator of
        ``(text, finish_reason)``: one item per generated token, ``finish_reason`` set on the
        last one."""

    @abc.abstractmethod
    def _format_chat(self, messages: Sequence[ChatMessage]) -> tuple[str, tuple[str, ...]]:
        """The prompt for ``messages`` under the model's chat template, and extra stop strings."""

    def _embed(self, texts: list[str]) -> Embeddings:
        raise RuntimeBackendError(f"{type(self).__name__} does not produce embeddings")

    def _score(self, tokens: list[int], positions: list[int], top_k: int,
               lookup: list[list[int]] | None) -> list[PositionScores]:
        raise RuntimeBackendError(f"{type(self).__name__} does not give log-probabilities")

    # -- internals -------------------------------------------------------------------------

    def _require_loaded(self) -> None:
        if not self.loaded:
            raise RuntimeBackendError("no model is loaded; call load() first")

    def _timed(self, prompt: str, params: SamplingParams, stats: GenerationStats, *,
               added_special: bool) -> Iterator[str]:
        t0 = time.perf_counter()
        with self._translating("generating"):
            stats.prompt_tokens, pieces = self._generate(prompt, params,
                                                         added_special=added_special)
        t_first: float | None = None
        try:
            while True:
                with self._translating("generating"):
                    try:
                        text, finish = next(pieces)
                    except StopIteration:
                        break
                stats.completion_tokens += 1
                if t_first is None:
                    t_first = time.perf_counter()
                    stats.time_to_first_token_s = t_first - t0
                if finish is not None:
                    stats.finish_reason = finish
                if text:
                    yield text
        finally:
            close = getattr(pieces, "close", None)
            if close is not None:
                close()
            t_end = time.perf_counter()
            stats.total_s = t_end - t0
            if t_first is not None and stats.completion_tokens > 1 and t_end > t_first:
                stats.decode_tokens_per_s = (stats.completion_tokens - 1) / (t_end - t_first)
            stats.peak_memory_bytes = peak_rss_bytes()

    class _translating:  # noqa: N801 - used as a lowercase context manager
        """Turn any non-edgeward exception into a RuntimeBackendError, chained."""

        def __init__(self, doing: str) -> None:
            self.doing = doing

        def __enter__(self) -> None:
            return None

        def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                     tb: object) -> None:
            if exc is None or isinstance(exc, EdgewardError | GeneratorExit | KeyboardInterrupt):
                return
            if isinstance(exc, Exception):
                raise RuntimeBackendError(f"backend failed while {self.doing}: {exc}") from exc


def stop_and_budget(texts: Iterator[str | None], budget: int, stop: tuple[str, ...], *,
                    final: Callable[[], str] = str) -> Iterator[tuple[str, FinishReason | None]]:
    """Apply stop strings and the token budget to a backend's decoded output.

    Args:
        texts: the new text of each generated token, or None for an end-of-generation token.
        budget: most tokens to generate.
        stop: strings that end generation; they are not returned, and text that could be the
            start of one is held back until it is clear.
        final: returns text still buffered in the backend's decoder at the end.

    Yields:
        ``(text, finish_reason)`` per generated token, ``finish_reason`` on the last.
    """
    held = ""
    for produced, piece in enumerate(texts, 1):
        if piece is None:
            yield held + final(), "stop"
            return
        text = held + piece
        cut = find_stop(text, stop)
        if cut is not None:
            yield text[:cut], "stop"
            return
        keep = stop_prefix_len(text, stop)
        held = text[len(text) - keep:] if keep else ""
        out = text[: len(text) - keep]
        if produced >= budget:
            yield out + held + final(), "length"
            return
        yield out, None


def find_stop(text: str, stop: tuple[str, ...]) -> int | None:
    """Index of the earliest stop string in ``text``, or None."""
    hits = [i for i in (text.find(s) for s in stop) if i >= 0]
    return min(hits) if hits else None


def stop_prefix_len(text: str, stop: tuple[str, ...]) -> int:
    """Length of the longest suffix of ``text`` that begins some stop string."""
    best = 0
    for s in stop:
        for n in range(min(len(s) - 1, len(text)), best, -1):
            if text.endswith(s[:n]):
                best = n
                break
    return best


def peak_rss_bytes() -> int:
    """The process's peak resident set size in bytes (kilobytes on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)
