"""A GGUF model in torch, for the calibration-time analyses (importance matrix, block influence).

llama-cpp-python exposes no hook into llama.cpp's matrix multiplications, so the analyses run on
the model's dequantized weights in torch: transformers reads a GGUF file itself
(``from_pretrained(folder, gguf_file=name)``). The calibration text is tokenized by llama.cpp
(vocabulary only), exactly as ``llama-imatrix`` does, so the statistics are gathered on the
tokens the quantized model will see; the ids index the same vocabulary as the torch model's
embedding. Everything is local: nothing is fetched from a hub.

torch and transformers come with the ``compress`` extra and are imported lazily, so importing
:mod:`edgeward.compress` works without them. ::

    model = load_hf_model(path)                  # float32, eval mode
    chunks = calibration_chunks(path, text, n_ctx=512, max_tokens=4096)
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeward.compress._llama import available_cores, capture_llama_log
from edgeward.errors import ArtifactError, ConfigError
from edgeward.runtimes import read_gguf_header

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "LLAMA_LAYOUT_MODEL_TYPES",
    "calibration_chunks",
    "decoder_layers",
    "hf_to_gguf_name",
    "load_hf_from_gguf",
    "load_hf_model",
    "require_torch",
    "torch_threads",
]

_INSTALL = "install the compression extra: pip install 'edgeward[compress]'"

# transformers model types whose linear layers carry llama's names (q_proj ... down_proj under
# model.layers.N) and whose GGUF tensors carry llama.cpp's llama names (attn_q ... ffn_down).
LLAMA_LAYOUT_MODEL_TYPES = frozenset({"llama", "mistral", "qwen2"})

_LAYER_LINEAR = re.compile(r"model\.layers\.(\d+)\.(self_attn|mlp)\.(\w+)")
_GGUF_SUFFIX = {
    ("self_attn", "q_proj"): "attn_q",
    ("self_attn", "k_proj"): "attn_k",
    ("self_attn", "v_proj"): "attn_v",
    ("self_attn", "o_proj"): "attn_output",
    ("mlp", "gate_proj"): "ffn_gate",
    ("mlp", "up_proj"): "ffn_up",
    ("mlp", "down_proj"): "ffn_down",
}


def hf_to_gguf_name(module_name: str) -> str | None:
    """The GGUF tensor name of a llama-layout linear layer's weight.

    ``model.layers.3.self_attn.q_proj`` -> ``blk.3.attn_q.weight``; the k/v/o projections map
    to ``attn_k``/``attn_v``/``attn_output``; ``mlp.gate_proj``/``up_proj``/``down_proj`` to
    ``ffn_gate``/``ffn_up``/``ffn_down``; ``lm_head`` to ``output.weight``. A model with tied
    embeddings (SmolLM2) has an ``lm_head`` module but no ``output.weight`` tensor in its
    GGUF (its weight is ``token_embd.weight``): callers check ``config.tie_word_embeddings``
    before using that name.

    Args:
        module_name: the dotted name from ``model.named_modules()``.

    Returns:
        The GGUF name, or None for any other module (norms, embeddings, containers).
    """
    if module_name == "lm_head":
        return "output.weight"
    m = _LAYER_LINEAR.fullmatch(module_name)
    if m is None:
        return None
    suffix = _GGUF_SUFFIX.get((m.group(2), m.group(3)))
    return None if suffix is None else f"blk.{int(m.group(1))}.{suffix}.weight"


def require_torch() -> None:
    """Check that torch and transformers can be imported.

    Raises:
        ConfigError: one is missing; the message says how to install the ``compress`` extra.
    """
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as e:
        raise ConfigError(f"this needs torch and transformers ({e.name} is missing); "
                          f"{_INSTALL}") from e


def _check_gguf(gguf_path: Path) -> str:
    """The architecture of a GGUF model file (ConfigError if absent, ArtifactError if bad)."""
    if not gguf_path.is_file():
        raise ConfigError(f"{gguf_path}: no such model file")
    header = read_gguf_header(gguf_path)  # ArtifactError: not a GGUF, truncated
    kind = header.metadata.get("general.type", "model")
    if kind != "model":
        raise ArtifactError(f"{gguf_path}: is a GGUF {kind!r} file, not a model")
    return header.architecture


def _dtype_kwarg() -> str:
    import transformers

    major, minor = (int(p) for p in transformers.__version__.split(".")[:2])
    # 4.56 renamed torch_dtype to dtype and deprecated the old name.
    return "dtype" if (major, minor) >= (4, 56) else "torch_dtype"


def load_hf_model(gguf_path: Path, *, dtype: torch.dtype | None = None) -> PreTrainedModel:
    """A GGUF model's dequantized weights as a transformers causal LM, in eval mode.

    Args:
        gguf_path: a local GGUF model file.
        dtype: the torch dtype to dequantize to; None means float32 (what CPU kernels are
            accurate and fast in).

    Returns:
        The model (``AutoModelForCausalLM``), on the CPU.

    Raises:
        ConfigError: the file does not exist, or torch/transformers are not installed.
        ArtifactError: the file is not a GGUF model, or transformers cannot read its
            architecture.
    """
    require_torch()
    import torch
    from transformers import AutoModelForCausalLM

    arch = _check_gguf(gguf_path)
    try:
        with _cached_tensor_name_maps(), _quiet_gguf_progress():
            model = AutoModelForCausalLM.from_pretrained(
                str(gguf_path.parent), gguf_file=gguf_path.name, local_files_only=True,
                **{_dtype_kwarg(): dtype or torch.float32})
    except ImportError as e:  # transformers' own optional needs (gguf, accelerate)
        raise ConfigError(f"loading a GGUF into torch needs {e.name or e}; {_INSTALL}") from e
    except (OSError, ValueError, KeyError, RuntimeError, NotImplementedError) as e:
        raise ArtifactError(
            f"{gguf_path}: transformers cannot load this GGUF (architecture {arch!r}): {e}"
        ) from e
    model.eval()  # type: ignore[no-untyped-call]
    return model


@contextlib.contextmanager
def _quiet_gguf_progress() -> Iterator[None]:
    """Silence transformers' own tqdm bar while it dequantizes a GGUF: edgeward draws its
    progress itself, and a second bar on stderr garbles it (and ``--json`` runs)."""
    import functools

    from transformers import modeling_gguf_pytorch_utils as gguf_utils

    original = getattr(gguf_utils, "tqdm", None)
    if original is None:  # a transformers without the bar: nothing to silence
        yield
        return
    setattr(gguf_utils, "tqdm", functools.partial(original, disable=True))  # noqa: B010
    try:
        yield
    finally:
        setattr(gguf_utils, "tqdm", original)  # noqa: B010


@contextlib.contextmanager
def _cached_tensor_name_maps() -> Iterator[None]:
    """Build gguf's tensor name map once per (architecture, block count) during a load.

    transformers looks the map up once per module of the model (~400 times for SmolLM2), and
    gguf builds it from scratch each time: ~9 s of a ~20 s load. The map is only read.
    """
    import gguf

    original = getattr(gguf, "get_tensor_name_map", None)
    if original is None:
        yield
        return
    gguf.get_tensor_name_map = functools.lru_cache(maxsize=4)(original)
    try:
        yield
    finally:
        gguf.get_tensor_name_map = original


def load_hf_from_gguf(gguf_path: Path, *, dtype: torch.dtype | None = None,
                      ) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A GGUF model and its tokenizer, both converted by transformers from the local file.

    The analyses in this package tokenize with llama.cpp instead (:func:`calibration_chunks`):
    transformers' converted tokenizer does not follow the GGUF's ``add_bos_token`` and takes
    seconds to build for a large vocabulary.

    Args:
        gguf_path: a local GGUF model file.
        dtype: as for :func:`load_hf_model`.

    Returns:
        ``(model, tokenizer)``.

    Raises:
        ConfigError: the file does not exist, or torch/transformers are not installed.
        ArtifactError: the file is not a GGUF model, or transformers cannot read it.
    """
    model = load_hf_model(gguf_path, dtype=dtype)
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(  # type: ignore[no-untyped-call]
            str(gguf_path.parent), gguf_file=gguf_path.name, local_files_only=True)
    except (OSError, ValueError, KeyError, RuntimeError, NotImplementedError) as e:
        raise ArtifactError(f"{gguf_path}: transformers cannot build its tokenizer: {e}") from e
    return model, tokenizer


def decoder_layers(model: PreTrainedModel) -> list[torch.nn.Module]:
    """The transformer blocks of a llama-layout model, in order (index = GGUF block number).

    Raises:
        ArtifactError: the model's architecture does not have the llama layout.
    """
    model_type = getattr(model.config, "model_type", None)
    layers = getattr(getattr(model, "model", None), "layers", None)
    if model_type not in LLAMA_LAYOUT_MODEL_TYPES or layers is None:
        raise ArtifactError(
            f"unsupported architecture {model_type!r}: importance matrices and block "
            f"influence support {', '.join(sorted(LLAMA_LAYOUT_MODEL_TYPES))}"
        )
    return list(layers)


def calibration_chunks(gguf_path: Path, text: str, *, n_ctx: int,
                       max_tokens: int) -> list[list[int]]:
    """Tokenize calibration text with llama.cpp and cut it into chunks of ``n_ctx`` tokens.

    As in ``llama-imatrix``: each chunk is evaluated on its own, and when the vocabulary adds
    a BOS token its first token is replaced by BOS. The tail shorter than a chunk is dropped.

    Args:
        gguf_path: the model whose vocabulary tokenizes the text.
        text: the calibration text (never the evaluation text).
        n_ctx: tokens per chunk (>= 2).
        max_tokens: at most this many tokens are used (>= ``n_ctx``).

    Returns:
        ``min(len(tokens), max_tokens) // n_ctx`` chunks, each a list of ``n_ctx`` token ids.

    Raises:
        ConfigError: bad sizes, or the text has fewer than ``n_ctx`` tokens.
        ArtifactError: llama.cpp cannot load the file's vocabulary.
    """
    if n_ctx < 2:
        raise ConfigError(f"n_ctx must be at least 2 tokens, got {n_ctx}")
    if max_tokens < n_ctx:
        raise ConfigError(f"max_tokens ({max_tokens}) must be at least n_ctx ({n_ctx})")
    wanted = max_tokens // n_ctx * n_ctx
    tokens, add_bos, bos = _tokenize_prefix(gguf_path, text, wanted)
    n_chunks = min(len(tokens), wanted) // n_ctx
    if n_chunks == 0:
        raise ConfigError(
            f"the calibration text is {len(tokens)} tokens long; give at least n_ctx = "
            f"{n_ctx} tokens (a longer text, or a smaller n_ctx)"
        )
    chunks = [tokens[i * n_ctx:(i + 1) * n_ctx] for i in range(n_chunks)]
    if add_bos:
        for chunk in chunks:
            chunk[0] = bos
    return chunks


def _tokenize_prefix(gguf_path: Path, text: str, wanted: int) -> tuple[list[int], bool, int]:
    """Tokens of enough of ``text`` for ``wanted`` tokens, and the vocab's BOS rule and id.

    A long text is not tokenized whole: a prefix of ~8 characters per wanted token is, doubled
    until it gives more tokens than wanted (the last token of a cut prefix may be a partial
    word, so one spare token is required) or the whole text is used.
    """
    import llama_cpp

    _check_gguf(gguf_path)
    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    with capture_llama_log() as log:
        model = llama_cpp.llama_model_load_from_file(str(gguf_path).encode(), params)
    if not model:
        tail = " | ".join(line.strip() for line in log.lines()[-3:] if line.strip())
        raise ArtifactError(f"{gguf_path}: llama.cpp cannot load its vocabulary: {tail}")
    try:
        vocab = llama_cpp.llama_model_get_vocab(model)
        add_bos = bool(llama_cpp.llama_vocab_get_add_bos(vocab))
        bos = int(llama_cpp.llama_vocab_bos(vocab))
        n_chars = max(wanted * 8, 4096)
        while True:
            piece = text[:n_chars]
            tokens = _tokenize(llama_cpp, vocab, piece.encode("utf-8"), add_bos)
            if len(piece) == len(text):
                return tokens, add_bos, bos
            if len(tokens) > wanted:
                return tokens[:wanted], add_bos, bos
            n_chars *= 2
    finally:
        llama_cpp.llama_model_free(model)


def _tokenize(llama_cpp: Any, vocab: Any, data: bytes, add_bos: bool) -> list[int]:
    size = len(data) + 2  # never more tokens than bytes, plus BOS
    buf = (llama_cpp.llama_token * size)()
    n = llama_cpp.llama_tokenize(vocab, data, len(data), buf, size, add_bos, False)
    if n < 0:  # llama.cpp returns the negated count it needs
        size = -n
        buf = (llama_cpp.llama_token * size)()
        n = llama_cpp.llama_tokenize(vocab, data, len(data), buf, size, add_bos, False)
    if n < 0:
        raise ArtifactError(f"llama.cpp could not tokenize the text (code {n})")
    return [int(t) for t in buf[:n]]


@contextlib.contextmanager
def torch_threads() -> Iterator[None]:
    """Run the block with torch using every core this process may use, then restore."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(available_cores())
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_chunks(runner: Any, chunks: Sequence[Sequence[int]],
               progress: Callable[[int, int], None] | None) -> None:
    """Feed each chunk of token ids through ``runner`` (a model or its decoder stack) without
    gradients, on every available core; ``progress(done, total)`` before and after each."""
    import torch

    total = len(chunks)
    with torch_threads(), torch.no_grad():
        if progress:
            progress(0, total)
        for done, chunk in enumerate(chunks, 1):
            runner(input_ids=torch.tensor([list(chunk)], dtype=torch.long), use_cache=False)
            if progress:
                progress(done, total)
