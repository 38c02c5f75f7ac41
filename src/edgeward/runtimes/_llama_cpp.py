"""The llama.cpp backend (llama-cpp-python) for GGUF artifacts."""

from __future__ import annotations

import codecs
import ctypes
import os
import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from edgeward.errors import ArtifactError, ConfigError, RuntimeBackendError
from edgeward.hardware_profiles import HardwareProfile
from edgeward.runtimes._base import (
    ChatMessage,
    Embeddings,
    FinishReason,
    PositionScores,
    Runtime,
    SamplingParams,
    stop_and_budget,
)
from edgeward.runtimes._gguf_header import read_gguf_header
from edgeward.runtimes._offload import fit_gpu_layers

__all__ = ["LlamaCppRuntime", "check_backend", "llama_backends", "llama_cpp_version"]

_DEFAULT_CONTEXT = 4096  # tokens, when neither the request nor the profile says


def llama_cpp_version() -> str:
    """The installed llama-cpp-python version (it pins the llama.cpp it was built from)."""
    import llama_cpp

    return str(llama_cpp.__version__)


#: How llama.cpp's system information names each backend it was built with.
_BACKEND_MARKERS = {"cuda": ("CUDA",), "metal": ("METAL", "Metal", "MTL"),
                    "vulkan": ("Vulkan", "VULKAN")}


def llama_backends() -> frozenset[str]:
    """The compute backends the installed llama.cpp build has: ``cpu`` and any of ``cuda``,
    ``metal`` and ``vulkan`` (read from ``llama_print_system_info``)."""
    import llama_cpp

    info = llama_cpp.llama_print_system_info()
    text = info.decode("utf-8", "replace") if isinstance(info, bytes) else str(info)
    found = {"cpu"}
    if llama_cpp.llama_supports_gpu_offload():
        for name, markers in _BACKEND_MARKERS.items():
            if any(m in text for m in markers):
                found.add(name)
    return frozenset(found)


def check_backend(profile: HardwareProfile | None, *, allow_cpu_fallback: bool = False,
                  backends: frozenset[str] | None = None) -> str | None:
    """Whether this llama.cpp build can run ``profile``'s backend.

    Returns:
        None when it can (or there is no profile); with ``allow_cpu_fallback``, the warning
        to show when it cannot (the model then runs on the CPU).

    Raises:
        RuntimeBackendError: it cannot, and the fallback is not allowed.
    """
    if profile is None or profile.backend == "cpu" or profile.gpu_layers == 0:
        return None  # nothing is offloaded: the CPU backend is all it needs
    have = backends if backends is not None else llama_backends()
    if profile.backend in have:
        return None
    flag = {"cuda": "-DGGML_CUDA=on", "metal": "-DGGML_METAL=on",
            "vulkan": "-DGGML_VULKAN=on"}.get(profile.backend, "")
    problem = (f"profile {profile.name} needs llama.cpp's {profile.backend} backend, but the "
               f"installed llama-cpp-python {llama_cpp_version()} has only "
               f"{', '.join(sorted(have))}")
    if not allow_cpu_fallback:
        raise RuntimeBackendError(
            f"{problem}; rebuild it with CMAKE_ARGS=\"{flag}\" pip install --force-reinstall "
            "--no-cache-dir llama-cpp-python, or allow the (much slower) CPU fallback "
            "(--allow-cpu-fallback; agent.toml: allow_cpu_fallback = true)")
    return f"{problem}: running on the CPU instead, far slower than the profile predicts"


class LlamaCppRuntime(Runtime):
    """Runs GGUF models with llama.cpp.

    Threads and GPU layers come from the profile; weights are memory-mapped; the context
    length comes from the request, else the profile, else 4096 tokens (never more than the
    model was trained for).

    Args:
        batch_size: tokens per prompt-processing batch (llama.cpp's ``n_batch``; default 512,
            never more than the context). Results may differ in the last bits between batch
            sizes; behavioural fingerprints calibrate their tolerance over several.
    """

    format = "gguf"
    capabilities = frozenset({"generate", "chat", "embed", "score"})

    def __init__(self, *, batch_size: int | None = None,
                 allow_cpu_fallback: bool = False) -> None:
        super().__init__()
        self._allow_cpu_fallback = allow_cpu_fallback
        #: Why the last load did not run as the profile says (CPU fallback, fewer threads).
        self.load_warnings: list[str] = []
        if batch_size is not None and not 1 <= batch_size <= 65536:
            raise ConfigError(f"batch_size must be between 1 and 65536, got {batch_size}")
        self._llm: Any = None
        self._embedder: Any = None  # a second context in embedding mode, made on first use
        self._threads = 1
        self._batch_size = batch_size or 512

    # -- lifecycle -------------------------------------------------------------------------

    def _load(self, artifact: Path, profile: HardwareProfile | None,
              context_length: int | None) -> None:
        from llama_cpp import Llama

        if artifact.is_dir():
            raise ConfigError(
                f"{artifact}: is a directory; the llama.cpp runtime loads a .gguf file"
            )
        self.load_warnings = []
        fallback = check_backend(profile, allow_cpu_fallback=self._allow_cpu_fallback)
        if fallback:
            self.load_warnings.append(fallback)
        gpu_layers = profile.effective_gpu_layers if profile and not fallback else 0
        cores = _available_cores()
        threads = (profile.effective_threads if profile else None) or cores
        if threads > cores:
            # A profile describes its target, not this machine: more threads than cores
            # only make llama.cpp's workers wait for each other.
            self.load_warnings.append(f"profile {profile.name if profile else ''} asks for "
                                      f"{threads} threads; this machine has {cores} cores, "
                                      f"so {cores} are used")
            threads = cores
        n_ctx = context_length
        if n_ctx is None:
            n_ctx = profile.default_context if profile else _DEFAULT_CONTEXT
            trained = _trained_context(artifact)
            if trained:
                # A profile's default beyond what the model was trained for buys nothing.
                n_ctx = min(n_ctx, trained)
        if profile is not None and not fallback and profile.backend != "cpu" \
                and profile.gpu_layers is None:
            gpu_layers = self._fit(artifact, profile, n_ctx)
        self._threads = threads
        self._llm = Llama(
            model_path=str(artifact),
            n_ctx=n_ctx,
            n_batch=self._batch_size,
            n_threads=threads,
            n_threads_batch=threads,
            n_gpu_layers=gpu_layers,
            use_mmap=True,
            verbose=False,
        )

    def _fit(self, artifact: Path, profile: HardwareProfile, n_ctx: int) -> int:
        """All blocks (-1) when they fit in the profile's GPU memory, else as many as do (the
        plan's split; the rest runs from host memory), with a warning."""
        header = read_gguf_header(artifact)
        try:
            k = fit_gpu_layers(header, profile, n_ctx=n_ctx)
        except ArtifactError:
            return -1  # not a model whose blocks we can size: let llama.cpp try them all
        n_layer = int(header.arch_value("block_count", 0) or 0)
        if n_layer and k < n_layer:
            self.load_warnings.append(
                f"{artifact.name}: {k} of {n_layer} blocks fit in {profile.name}'s GPU memory "
                f"at {n_ctx} tokens; the other {n_layer - k} run from host memory (slower); "
                "set the profile's gpu_layers to choose")
            return k
        return -1

    def _unload(self) -> None:
        for llm in (self._llm, self._embedder):
            if llm is not None:
                llm.close()
        self._llm = self._embedder = None

    def _embed(self, texts: list[str]) -> Embeddings:
        import numpy as np
        from llama_cpp import LLAMA_POOLING_TYPE_MEAN, Llama

        if self._embedder is None:
            # Weights are memory-mapped: the second context shares them with the first.
            self._embedder = Llama(model_path=str(self._artifact), embedding=True,
                                   pooling_type=LLAMA_POOLING_TYPE_MEAN,
                                   n_ctx=min(int(self._llm.n_ctx()), 2048),
                                   n_threads=self._threads, n_threads_batch=self._threads,
                                   use_mmap=True, verbose=False)
        tokens = sum(len(self._embedder.tokenize(t.encode("utf-8"))) for t in texts)
        raw = self._embedder.embed(texts)
        vectors = np.asarray(raw, dtype=np.float64)
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return Embeddings([v.tolist() for v in vectors], tokens)

    @property
    def context_length(self) -> int:
        """Tokens of context the loaded model was given."""
        self._require_loaded()
        return int(self._llm.n_ctx())

    @property
    def metadata(self) -> dict[str, str]:
        """The GGUF metadata of the loaded model (string values, as llama.cpp reports them)."""
        self._require_loaded()
        return dict(self._llm.metadata)

    # -- hooks -----------------------------------------------------------------------------

    def _tokenize(self, text: str, add_special: bool) -> list[int]:
        return list(self._llm.tokenize(text.encode("utf-8"), add_bos=add_special, special=False))

    def _generate(self, prompt: str, params: SamplingParams, *,
                  added_special: bool) -> tuple[int, Iterator[tuple[str, FinishReason | None]]]:
        llm = self._llm
        tokens = llm.tokenize(prompt.encode("utf-8"), add_bos=not added_special, special=True)
        n_ctx = int(llm.n_ctx())
        if len(tokens) >= n_ctx:
            raise ConfigError(
                f"the prompt is {len(tokens)} tokens but the context holds {n_ctx}; "
                "shorten it or load with a longer context"
            )
        budget = min(params.max_tokens, n_ctx - len(tokens))
        llm.set_seed(params.seed if params.seed is not None else random.getrandbits(32))
        raw = llm.generate(
            tokens,
            top_k=params.top_k,
            top_p=params.top_p,
            min_p=params.min_p,
            temp=params.temperature,
            repeat_penalty=params.repeat_penalty,
            reset=True,
        )
        return len(tokens), self._pieces(raw, budget, params.stop)

    def _pieces(self, raw: Iterator[int], budget: int,
                stop: tuple[str, ...]) -> Iterator[tuple[str, FinishReason | None]]:
        import llama_cpp

        vocab = self._llm._model.vocab
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

        def texts() -> Iterator[str | None]:
            for token in raw:
                if llama_cpp.llama_vocab_is_eog(vocab, token):
                    yield None
                    return
                yield decoder.decode(_piece(vocab, token))

        try:
            yield from stop_and_budget(texts(), budget, stop,
                                       final=lambda: decoder.decode(b"", final=True))
        finally:
            close = getattr(raw, "close", None)
            if close is not None:
                close()

    def _score(self, tokens: list[int], positions: list[int], top_k: int,
               lookup: list[list[int]] | None) -> list[PositionScores]:
        import llama_cpp
        import numpy as np

        llm = self._llm
        n_ctx, n_vocab = int(llm.n_ctx()), int(llm.n_vocab())
        if len(tokens) > n_ctx:
            raise ConfigError(f"the text is {len(tokens)} tokens but the context holds {n_ctx}")
        if any(not 0 <= t < n_vocab for t in tokens) or (lookup is not None and any(
                not 0 <= t < n_vocab for row in lookup for t in row)):
            raise ConfigError(f"a token id is outside the model's vocabulary of {n_vocab}")
        wanted = {p: i for i, p in enumerate(positions)}
        step = max(1, int(llm.n_batch))
        batch = llama_cpp.llama_batch_init(step, 0, 1)
        out: list[PositionScores] = []
        llm._ctx.kv_cache_clear()
        llm.reset()  # llama-cpp-python must not think its cached prompt is still there
        try:
            for start in range(0, len(tokens), step):
                chunk = tokens[start:start + step]
                batch.n_tokens = len(chunk)
                for i, token in enumerate(chunk):
                    batch.token[i] = token
                    batch.pos[i] = start + i
                    batch.n_seq_id[i] = 1
                    batch.seq_id[i][0] = 0
                    batch.logits[i] = (start + i) in wanted
                rc = llama_cpp.llama_decode(llm._ctx.ctx, batch)
                if rc != 0:
                    raise RuntimeBackendError(f"llama_decode returned {rc} while scoring")
                for i in range(len(chunk)):
                    index = wanted.get(start + i)
                    if index is None:
                        continue
                    ptr = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, i)
                    logits = np.ctypeslib.as_array(ptr, shape=(n_vocab,)).astype(np.float64)
                    m = float(logits.max())
                    logp = logits - (m + float(np.log(np.exp(logits - m).sum())))
                    top = np.argpartition(-logp, top_k - 1)[:top_k]
                    top = top[np.argsort(-logp[top], kind="stable")]
                    extra = lookup[index] if lookup is not None else []
                    out.append(PositionScores(
                        start + i, tuple((int(t), float(logp[t])) for t in top),
                        tuple(float(logp[t]) for t in extra)))
        finally:
            llama_cpp.llama_batch_free(batch)
            llm._ctx.kv_cache_clear()
            llm.reset()
        return out

    def _format_chat(self, messages: Sequence[ChatMessage]) -> tuple[str, tuple[str, ...]]:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        template = self._llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise RuntimeBackendError(
                f"{self._artifact}: the model has no chat template "
                "(GGUF key tokenizer.chat_template); use generate() with a plain prompt"
            )
        model = self._llm._model
        formatter = Jinja2ChatFormatter(
            template=template,
            eos_token=model.token_get_text(model.token_eos()),
            bos_token=model.token_get_text(model.token_bos()),
        )
        result = formatter(messages=[dict(m) for m in messages])  # type: ignore[misc]
        stop = result.stop
        stops = (stop,) if isinstance(stop, str) else tuple(stop or ())
        return result.prompt, stops


def _piece(vocab: Any, token: int) -> bytes:
    """The bytes of one token, with its leading space (as a continuation needs)."""
    import llama_cpp

    size = 64
    while True:
        buf = ctypes.create_string_buffer(size)
        n = llama_cpp.llama_token_to_piece(vocab, token, buf, size, 0, False)
        if n >= 0:
            return buf.raw[:n]
        size = -n  # llama.cpp returns the negated size it needs


def _trained_context(artifact: Path) -> int | None:
    """``<arch>.context_length`` from the GGUF header, or None if it cannot be read."""
    try:
        value = read_gguf_header(artifact).arch_value("context_length")
    except ArtifactError:
        return None  # llama.cpp rejects the file with its own message on load
    return int(value) if isinstance(value, int) else None


def _available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1
