"""The ONNX Runtime backend: encoders embed, causal LMs generate with a KV cache.

An ONNX artifact is a directory (or a ``.onnx`` file inside one) as optimum exports it:
``model.onnx`` (plus external data for large models), ``tokenizer.json``, and for causal LMs
``config.json``/``generation_config.json`` and a chat template. Causal LMs must be exported
with past key values (optimum's ``text-generation-with-past``): the decode loop here feeds the
cache back in, one token per step, and samples in numpy.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeward.errors import ArtifactError, ConfigError, RuntimeBackendError
from edgeward.hardware_profiles import HardwareProfile
from edgeward.runtimes._base import (
    ChatMessage,
    Embeddings,
    FinishReason,
    Runtime,
    SamplingParams,
    stop_and_budget,
)
from edgeward.safeio import MAX_MANIFEST_BYTES, parse_json, read_capped

__all__ = ["OnnxRuntime", "choose_providers"]

_PAST = re.compile(r"^past_key_values\.(\d+)\.(key|value)$")
_DEFAULT_CONTEXT = 2048  # tokens, when neither request, profile nor config says
_PENALTY_LAST_N = 64  # tokens the repeat penalty looks back over, as llama.cpp's default
_PREFERRED = {
    "cuda": ("TensorrtExecutionProvider", "CUDAExecutionProvider"),
    "metal": ("CoreMLExecutionProvider",),
    "vulkan": (),
    "cpu": (),
}


def choose_providers(profile: HardwareProfile | None, available: Sequence[str]) -> list[str]:
    """Execution providers for ``profile``, in preference order, among those installed.

    The CPU provider is always last, so an accelerator that fails to take a node falls back.
    """
    wanted = _PREFERRED.get(profile.backend, ()) if profile else ()
    chosen = [p for p in wanted if p in available]
    return [*chosen, "CPUExecutionProvider"]


class OnnxRuntime(Runtime):
    """Runs ONNX models with ONNX Runtime (see the module docstring for the layout)."""

    format = "onnx"

    def __init__(self) -> None:
        super().__init__()
        self.capabilities = frozenset()
        self._session: Any = None
        self._tokenizer: Any = None
        self._dir = Path()
        self._kv: list[tuple[str, str, int, int]] = []  # (input name, output name, heads, dim)
        self._kv_dtype: Any = np.float32
        self._inputs: set[str] = set()
        self._eos: set[int] = set()
        self._n_ctx = _DEFAULT_CONTEXT
        self._chat_template: str | None = None
        self._special: dict[str, str] = {}

    @property
    def providers(self) -> list[str]:
        """The execution providers the session runs on."""
        self._require_loaded()
        return list(self._session.get_providers())

    @property
    def context_length(self) -> int:
        """Tokens of context a generation may use."""
        return self._n_ctx

    # -- lifecycle -------------------------------------------------------------------------

    def _load(self, artifact: Path, profile: HardwareProfile | None,
              context_length: int | None) -> None:
        import onnxruntime as ort

        model_path = _model_file(artifact)
        self._dir = model_path.parent
        options = ort.SessionOptions()
        threads = (profile.effective_threads if profile else None) or _cores()
        options.intra_op_num_threads = threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = choose_providers(profile, ort.get_available_providers())
        self._session = ort.InferenceSession(str(model_path), options, providers=providers)
        self._tokenizer = _tokenizer(self._dir)
        self._inputs = {i.name for i in self._session.get_inputs()}
        outputs = [o.name for o in self._session.get_outputs()]
        self._kv = []
        for i in self._session.get_inputs():
            m = _PAST.match(i.name)
            if m:
                heads, dim = i.shape[1], i.shape[3]
                if not isinstance(heads, int) or not isinstance(dim, int):
                    raise ArtifactError(f"{model_path}: past key value {i.name} has symbolic "
                                        f"shape {i.shape}")
                self._kv.append((i.name, f"present.{m.group(1)}.{m.group(2)}", heads, dim))
                self._kv_dtype = np.float16 if "float16" in i.type else np.float32
        config = _json(self._dir / "config.json")
        if self._kv:
            self.capabilities = frozenset({"generate", "chat"})
            self._eos = _eos_ids(config, _json(self._dir / "generation_config.json"))
            self._chat_template, self._special = _chat_template(self._dir)
        elif "logits" in outputs:
            raise ArtifactError(f"{model_path}: a causal LM exported without past key values; "
                                "export it with the task text-generation-with-past")
        else:
            self.capabilities = frozenset({"embed"})
        limit = int(config.get("max_position_embeddings") or _DEFAULT_CONTEXT)
        wanted = context_length or (profile.default_context if profile else _DEFAULT_CONTEXT)
        self._n_ctx = min(wanted, limit)

    def _unload(self) -> None:
        self._session = None
        self._tokenizer = None

    # -- hooks -----------------------------------------------------------------------------

    def _tokenize(self, text: str, add_special: bool) -> list[int]:
        return list(self._tokenizer.encode(text, add_special_tokens=add_special).ids)

    def _embed(self, texts: list[str]) -> Embeddings:
        tok = self._tokenizer
        tok.enable_truncation(max_length=min(self._n_ctx, 512))
        tok.enable_padding()
        encodings = tok.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = self._session.run(None, feeds)[0]
        weights = mask[..., None].astype(np.float64)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1.0)
        pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return Embeddings([v.tolist() for v in pooled], int(mask.sum()))

    def _generate(self, prompt: str, params: SamplingParams, *,
                  added_special: bool) -> tuple[int, Iterator[tuple[str, FinishReason | None]]]:
        if "generate" not in self.capabilities:
            raise ConfigError(f"{self._dir}: an encoder; it embeds, it does not generate")
        ids = self._tokenizer.encode(prompt, add_special_tokens=not added_special).ids
        if len(ids) >= self._n_ctx:
            raise ConfigError(f"the prompt is {len(ids)} tokens but the context holds "
                              f"{self._n_ctx}; shorten it or load with a longer context")
        budget = min(params.max_tokens, self._n_ctx - len(ids))
        text = _IncrementalText(self._tokenizer, ids[-1:])
        return len(ids), stop_and_budget(self._texts(list(ids), params, budget, text), budget,
                                         params.stop, final=text.tail)

    def _texts(self, prompt_ids: list[int], params: SamplingParams, budget: int,
               text: _IncrementalText) -> Iterator[str | None]:
        """The decode loop: new text per generated token, None at end of sequence."""
        rng = np.random.default_rng(params.seed)
        past = {name: np.zeros((1, heads, 0, dim), dtype=self._kv_dtype)
                for name, _, heads, dim in self._kv}
        history = list(prompt_ids)
        step_ids = list(prompt_ids)
        for _ in range(budget):
            n_past = len(history) - len(step_ids)
            feeds: dict[str, Any] = {
                "input_ids": np.array([step_ids], dtype=np.int64),
                "attention_mask": np.ones((1, len(history)), dtype=np.int64), **past}
            if "position_ids" in self._inputs:
                feeds["position_ids"] = np.arange(n_past, len(history), dtype=np.int64)[None]
            outputs = dict(zip([o.name for o in self._session.get_outputs()],
                               self._session.run(None, feeds), strict=True))
            token = sample(outputs["logits"][0, -1], params, rng, history)
            past = {name: outputs[present] for name, present, _, _ in self._kv}
            if token in self._eos:
                yield None
                return
            history.append(token)
            step_ids = [token]
            yield text.add(token)

    def sequence_logits(self, token_ids: Sequence[int]) -> np.ndarray:
        """The logits at every position of ``token_ids`` (one pass, empty KV cache): shape
        ``(len(token_ids), vocab)``, float32. For quality evaluation of causal LMs.

        Raises:
            RuntimeBackendError: not a causal LM, or ONNX Runtime failed.
        """
        self._require_loaded()
        if "generate" not in self.capabilities:
            raise RuntimeBackendError("sequence_logits needs a causal LM (an encoder has none)")
        n = len(token_ids)
        feeds: dict[str, Any] = {
            "input_ids": np.array([list(token_ids)], dtype=np.int64),
            "attention_mask": np.ones((1, n), dtype=np.int64),
            **{name: np.zeros((1, heads, 0, dim), dtype=self._kv_dtype)
               for name, _, heads, dim in self._kv}}
        if "position_ids" in self._inputs:
            feeds["position_ids"] = np.arange(n, dtype=np.int64)[None]
        with self._translating("evaluating"):
            names = [o.name for o in self._session.get_outputs()]
            logits = self._session.run([names[names.index("logits")]], feeds)[0]
        return np.asarray(logits[0], dtype=np.float32)

    def _format_chat(self, messages: Sequence[ChatMessage]) -> tuple[str, tuple[str, ...]]:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        if not self._chat_template:
            raise ConfigError(f"{self._dir}: the model has no chat template; use generate()")
        formatter = Jinja2ChatFormatter(template=self._chat_template,
                                        eos_token=self._special.get("eos_token", ""),
                                        bos_token=self._special.get("bos_token", ""))
        result = formatter(messages=[dict(m) for m in messages])  # type: ignore[misc]
        stop = result.stop
        return result.prompt, ((stop,) if isinstance(stop, str) else tuple(stop or ()))


class _IncrementalText:
    """Decodes a growing list of token ids, returning only the new text each time and holding
    back a trailing incomplete multi-byte character until it completes (or generation ends).

    Decoding starts from the last prompt token, so a leading space of the first generated
    token survives (SentencePiece decoders strip it at the start of a text).
    """

    def __init__(self, tokenizer: Any, prefix: list[int]) -> None:
        self._tokenizer = tokenizer
        self._ids: list[int] = list(prefix)
        self._shown = str(tokenizer.decode(self._ids, skip_special_tokens=True))

    def add(self, token: int) -> str:
        self._ids.append(token)
        text = str(self._tokenizer.decode(self._ids, skip_special_tokens=True))
        if text.endswith("\ufffd"):
            return ""
        new, self._shown = text[len(self._shown):], text
        return new

    def tail(self) -> str:
        text = str(self._tokenizer.decode(self._ids, skip_special_tokens=True))
        new, self._shown = text[len(self._shown):], text
        return new


def sample(logits: np.ndarray, params: SamplingParams, rng: np.random.Generator,
           history: Sequence[int]) -> int:
    """Pick the next token as llama.cpp's default chain does: repeat penalty, top-k, top-p,
    min-p, temperature, then a draw (or the most likely token at temperature 0)."""
    x = np.asarray(logits, dtype=np.float64).copy()
    if params.repeat_penalty != 1.0 and history:
        recent = np.unique(np.asarray(history[-_PENALTY_LAST_N:]))
        vals = x[recent]
        x[recent] = np.where(vals > 0, vals / params.repeat_penalty,
                             vals * params.repeat_penalty)
    if params.temperature == 0.0:
        return int(np.argmax(x))
    order = np.argsort(-x, kind="stable")
    if params.top_k > 0:
        order = order[:params.top_k]
    logits_kept = x[order]
    probs = np.exp(logits_kept - logits_kept.max())
    probs /= probs.sum()
    if params.top_p < 1.0:
        keep = int(np.searchsorted(np.cumsum(probs), params.top_p) + 1)
        order, logits_kept = order[:keep], logits_kept[:keep]
        probs = probs[:keep] / probs[:keep].sum()
    if params.min_p > 0.0:
        keep_mask = probs >= params.min_p * probs[0]
        order, logits_kept = order[keep_mask], logits_kept[keep_mask]
    scaled = logits_kept / params.temperature
    probs = np.exp(scaled - scaled.max())
    probs /= probs.sum()
    return int(order[rng.choice(len(order), p=probs)])


def _model_file(artifact: Path) -> Path:
    if artifact.is_file():
        return artifact
    candidates = sorted(artifact.glob("*.onnx"))
    preferred = [c for c in candidates if c.name == "model.onnx"]
    if preferred:
        return preferred[0]
    if len(candidates) == 1:
        return candidates[0]
    raise ArtifactError(f"{artifact}: expected one model.onnx, found "
                        f"{[c.name for c in candidates] or 'none'}")


def _tokenizer(model_dir: Path) -> Any:
    try:
        from tokenizers import Tokenizer
    except ImportError as e:
        raise ConfigError("ONNX models need the tokenizers package: pip install tokenizers") \
            from e
    path = model_dir / "tokenizer.json"
    if not path.is_file():
        raise ArtifactError(f"{model_dir}: no tokenizer.json beside the ONNX model")
    return Tokenizer.from_file(str(path))


def _json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    data = parse_json(read_capped(path, MAX_MANIFEST_BYTES, what="model config",
                                  error=ArtifactError), what=f"{path}", error=ArtifactError)
    return data if isinstance(data, dict) else {}


def _eos_ids(config: dict[str, Any], generation: dict[str, Any]) -> set[int]:
    ids: set[int] = set()
    for source in (generation, config):
        value = source.get("eos_token_id")
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, list):
            ids.update(v for v in value if isinstance(v, int))
    return ids


def _chat_template(model_dir: Path) -> tuple[str | None, dict[str, str]]:
    tok_config = _json(model_dir / "tokenizer_config.json")
    special = {k: v for k in ("bos_token", "eos_token")
               if isinstance(v := tok_config.get(k), str)}
    jinja = model_dir / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8"), special
    template = tok_config.get("chat_template")
    return (template if isinstance(template, str) else None), special


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1
