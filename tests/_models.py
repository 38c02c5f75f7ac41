"""Tiny models generated for fast tests: a llama-architecture GGUF and an encoder-like ONNX.

Both are written from scratch with seeded random weights in well under a second, so unit tests
exercise the real llama.cpp and ONNX Runtime code paths without shipping any weights.

The GGUF has a small but real SentencePiece-style vocabulary: control tokens, the 256 byte
fallback tokens, the characters and every prefix of ~100 common English words (so llama.cpp's
SPM merges reach whole words), and ChatML special tokens with a chat template.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeward.provenance import PrivateKey

__all__ = ["TinyLlamaSpec", "scaled_copy", "tiny_vocab", "write_tiny_gguf", "write_tiny_onnx"]

_WORD_TEXT = (
    "the of and to in is you that it he was for on are as with his they at be this have from "
    "or one had by word but not what all were we when your can said there use an each which "
    "she do how their if will up other about out many then them these so some her would make "
    "like him into time has look two more write go see number no way could people my than "
    "first water been call who oil its now find long down day did get come made may part "
    "model device edge hello world answer question small fast"
)
_WORDS = _WORD_TEXT.split()
_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# llama.cpp token types (gguf.TokenType): NORMAL=1, UNKNOWN=2, CONTROL=3, BYTE=6.
_NORMAL, _UNKNOWN, _CONTROL, _BYTE = 1, 2, 3, 6


@dataclass(frozen=True)
class TinyLlamaSpec:
    """Shape of the generated model. Row sizes are multiples of 256 by default, so every
    k-quant applies without falling back."""

    n_embd: int = 256
    n_ff: int = 512
    n_layer: int = 2
    n_head: int = 4
    n_head_kv: int = 2
    context_length: int = 512
    seed: int = 0


def tiny_vocab() -> tuple[list[str], list[float], list[int]]:
    """Tokens, scores and token types of the tiny SPM vocabulary."""
    tokens = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]
    types = [_UNKNOWN, _CONTROL, _CONTROL, _CONTROL, _CONTROL]
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [_BYTE] * 256
    pieces: list[str] = ["▁"]
    for ch in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,?!'\n":
        pieces.append(ch)
    for word in _WORDS:
        full = "▁" + word
        for i in range(2, len(full) + 1):
            pieces.append(full[:i])
    seen: set[str] = set()
    for piece in pieces:
        if piece not in seen:
            seen.add(piece)
            tokens.append(piece)
            types.append(_NORMAL)
    # Longer pieces score higher, so SPM's merge order prefers whole words.
    scores = [0.0] * 261 + [float(len(t)) - 10.0 for t in tokens[261:]]
    return tokens, scores, types


def write_tiny_gguf(path: Path, spec: TinyLlamaSpec = TinyLlamaSpec()) -> Path:
    """Write a llama-architecture GGUF with random F32 weights that llama.cpp loads and runs."""
    import gguf

    tokens, scores, types = tiny_vocab()
    n_vocab = len(tokens)
    head_dim = spec.n_embd // spec.n_head
    kv_dim = head_dim * spec.n_head_kv
    rng = np.random.default_rng(spec.seed)

    def w(rows: int, cols: int) -> np.ndarray:
        return (rng.standard_normal((rows, cols)) * 0.02).astype(np.float32)

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("edgeward-tiny-llama")
    writer.add_context_length(spec.context_length)
    writer.add_embedding_length(spec.n_embd)
    writer.add_block_count(spec.n_layer)
    writer.add_feed_forward_length(spec.n_ff)
    writer.add_head_count(spec.n_head)
    writer.add_head_count_kv(spec.n_head_kv)
    writer.add_rope_dimension_count(head_dim)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(0)  # ALL_F32
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(4)  # <|im_end|> ends a chat turn, as in ChatML models
    writer.add_add_bos_token(True)
    writer.add_chat_template(_CHAT_TEMPLATE)

    writer.add_tensor("token_embd.weight", w(n_vocab, spec.n_embd))
    for i in range(spec.n_layer):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(spec.n_embd, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.attn_q.weight", w(spec.n_embd, spec.n_embd))
        writer.add_tensor(f"blk.{i}.attn_k.weight", w(kv_dim, spec.n_embd))
        writer.add_tensor(f"blk.{i}.attn_v.weight", w(kv_dim, spec.n_embd))
        writer.add_tensor(f"blk.{i}.attn_output.weight", w(spec.n_embd, spec.n_embd))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(spec.n_embd, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", w(spec.n_ff, spec.n_embd))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", w(spec.n_ff, spec.n_embd))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", w(spec.n_embd, spec.n_ff))
    writer.add_tensor("output_norm.weight", np.ones(spec.n_embd, dtype=np.float32))
    writer.add_tensor("output.weight", w(n_vocab, spec.n_embd))

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def write_tiny_onnx(path: Path, *, vocab: int = 128, dim: int = 32, seed: int = 0) -> Path:
    """Write an encoder-shaped ONNX model: ``input_ids``/``attention_mask`` [batch, seq] ->
    ``last_hidden_state`` [batch, seq, dim] = tanh(embedding[input_ids] @ W) * mask.

    The embedding and W are stored as initializers named ``embedding`` and ``proj``, so tests
    can recompute the output with numpy.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    emb = rng.standard_normal((vocab, dim)).astype(np.float32)
    proj = (rng.standard_normal((dim, dim)) / np.sqrt(dim)).astype(np.float32)
    nodes = [
        helper.make_node("Gather", ["embedding", "input_ids"], ["embedded"], axis=0),
        helper.make_node("MatMul", ["embedded", "proj"], ["projected"]),
        helper.make_node("Tanh", ["projected"], ["activated"]),
        helper.make_node("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["mask_f", "last_axis"], ["mask_3d"]),
        helper.make_node("Mul", ["activated", "mask_3d"], ["last_hidden_state"]),
    ]
    graph = helper.make_graph(
        nodes,
        "edgeward-tiny-encoder",
        inputs=[
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"]),
        ],
        outputs=[helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT,
                                               ["batch", "seq", dim])],
        initializer=[
            numpy_helper.from_array(emb, "embedding"),
            numpy_helper.from_array(proj, "proj"),
            numpy_helper.from_array(np.array([-1], dtype=np.int64), "last_axis"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="edgeward-tests")
    model.ir_version = 8  # readable by every onnxruntime >= 1.14
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def write_tiny_onnx_encoder_dir(directory: Path, *, vocab: int = 128, dim: int = 32) -> Path:
    """The tiny encoder of :func:`write_tiny_onnx` as an artifact directory with a word-level
    ``tokenizer.json`` ([PAD]=0, [UNK]=1, then ``w2``..``w127``), as ONNX Runtime serves it."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    directory.mkdir(parents=True, exist_ok=True)
    write_tiny_onnx(directory / "model.onnx", vocab=vocab, dim=dim)
    words = {"[PAD]": 0, "[UNK]": 1} | {f"w{i}": i for i in range(2, vocab)}
    tokenizer = Tokenizer(models.WordLevel(vocab=words, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(directory / "tokenizer.json"))
    return directory


def export_tiny_onnx_lm(gguf: Path, directory: Path) -> Path:
    """The tiny GGUF as a Hugging Face model, exported by optimum with past key values
    (needs the compress extra: torch, transformers, optimum)."""
    from edgeward.compress._onnx_export import export_onnx, gguf_to_hf_dir

    hf = gguf_to_hf_dir(gguf, directory.parent / f"{directory.name}-hf")
    return export_onnx(hf, directory, task="text-generation-with-past")


def fixed_key(seed: int) -> PrivateKey:
    """A deterministic Ed25519 key (deterministic signatures: goldens and snapshots are
    stable)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    raw = ed25519.Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32)
    return PrivateKey.from_pem(raw.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))


def scaled_copy(src: Path, dst: Path, tensor: str, factor: float) -> Path:
    """A copy of an F32 GGUF with one tensor's weights multiplied by ``factor``."""
    import shutil

    import gguf

    shutil.copyfile(src, dst)
    reader = gguf.GGUFReader(dst, "r+")
    (t,) = [t for t in reader.tensors if t.name == tensor]
    t.data[...] = (np.asarray(t.data) * np.float32(factor)).astype(np.float32)
    reader.data.flush()
    del reader
    return dst
