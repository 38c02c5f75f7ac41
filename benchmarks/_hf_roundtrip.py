"""Benchmark helper: a GGUF -> Hugging Face directory -> GGUF round trip through llama.cpp's own
converter (``edgeward.compress.convert_checkpoint``), and how close the result is.

The GGUF is written as a Hugging Face directory by ``gguf_to_hf_dir`` (transformers
dequantizes it to float32 safetensors), converted back to F16 by ``convert_hf_to_gguf.py``, and
compared with the GGUF's own F16 form (llama.cpp's quantizer dequantizing it: the quality
reference of the GGUF path) and with the GGUF itself: greedy text on three prompts, mean KLD,
sizes and the conversion time. Not a benchmark script of its own (the leading underscore keeps
``make bench`` from running it); ``benchmarks/compress_gguf.py`` calls :func:`measure_roundtrip`.

transformers' reading of a byte-level BPE GGUF vocabulary (SmolLM2's) yields a
``LlamaTokenizer`` with byte fallback and ``<|im_start|>`` as EOS, from which the converter writes
a SentencePiece vocabulary that llama.cpp cannot load; :func:`restore_byte_level_tokenizer`
rewrites the directory's tokenizer files to the GPT-2 byte-level layout such a model's own
checkpoint ships (for a GGUF whose ``tokenizer.ggml.model`` is ``gpt2``).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

from edgeward.compress import (
    EvalConfig,
    QuantRecipe,
    compute_reference,
    convert_checkpoint,
    evaluate,
    evaluation_text,
    quantize,
)
from edgeward.compress._onnx_export import gguf_to_hf_dir
from edgeward.runtimes import LlamaCppRuntime, SamplingParams, read_gguf_header

PROMPTS = ("The capital of France is", "Here is a short poem about the sea:",
           "def fibonacci(n):")
GREEDY = SamplingParams(temperature=0.0, max_tokens=32, seed=0)

# The pre-tokenizer of SmolLM2's own tokenizer.json (digits split one by one, then GPT-2's
# byte-level regex); llama.cpp's converter recognises it by its token ids as "smollm".
_DIGITS_BYTE_LEVEL = {"type": "Sequence", "pretokenizers": [
    {"type": "Digits", "individual_digits": True},
    {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}]}


def restore_byte_level_tokenizer(hf_dir: Path, gguf: Path) -> None:
    """Rewrite ``hf_dir``'s tokenizer files (written by ``gguf_to_hf_dir`` from ``gguf``) as a
    GPT-2 byte-level BPE tokenizer, with the GGUF's special tokens. No-op for another kind."""
    meta = _gguf_strings(gguf)
    if meta.get("tokenizer.ggml.model") != "gpt2":
        return
    # A SentencePiece file written beside it (transformers' slow LlamaTokenizer) is not this
    # tokenizer's, and the converter would try it first.
    (hf_dir / "tokenizer.model").unlink(missing_ok=True)
    tok = json.loads((hf_dir / "tokenizer.json").read_text(encoding="utf-8"))
    tok["model"]["byte_fallback"] = False
    tok["normalizer"] = None
    tok["pre_tokenizer"] = _DIGITS_BYTE_LEVEL
    tok["decoder"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                      "use_regex": True}
    tok["post_processor"] = {"type": "ByteLevel", "add_prefix_space": True,
                             "trim_offsets": False, "use_regex": True}
    (hf_dir / "tokenizer.json").write_text(json.dumps(tok), encoding="utf-8")
    vocab = {t["id"]: t["content"] for t in tok.get("added_tokens", [])}
    special = {name: vocab[int(meta[f"tokenizer.ggml.{key}_token_id"])]
               for name, key in (("bos_token", "bos"), ("eos_token", "eos"),
                                 ("unk_token", "unknown"), ("pad_token", "padding"))
               if f"tokenizer.ggml.{key}_token_id" in meta
               and int(meta[f"tokenizer.ggml.{key}_token_id"]) in vocab}
    cfg_path = hf_dir / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    for key in ("bos_token_id", "eos_token_id", "unk_token_id", "pad_token_id", "legacy",
                "add_prefix_space", "model_type"):
        cfg.pop(key, None)
    cfg.update(special, tokenizer_class="GPT2Tokenizer",
               add_bos_token=meta.get("tokenizer.ggml.add_bos_token") == "True")
    cfg_path.write_text(json.dumps(cfg, indent=2), encoding="utf-8")
    (hf_dir / "special_tokens_map.json").write_text(json.dumps(special), encoding="utf-8")


def _gguf_strings(gguf: Path) -> dict[str, str]:
    import gguf as gguf_py

    reader = gguf_py.GGUFReader(gguf)
    return {k: str(f.contents()) for k, f in reader.fields.items()
            if k.startswith("tokenizer.ggml.") and k not in (
                "tokenizer.ggml.tokens", "tokenizer.ggml.merges", "tokenizer.ggml.scores",
                "tokenizer.ggml.token_type")}


def greedy_texts(gguf: Path, prompts: tuple[str, ...] = PROMPTS) -> list[tuple[list[int], str]]:
    """(prompt token ids, greedy continuation) of each prompt, with llama.cpp."""
    with LlamaCppRuntime() as rt:
        rt.load(gguf, context_length=512)
        return [(rt.tokenize(p), rt.complete(p, GREEDY).text) for p in prompts]


def measure_roundtrip(gguf: Path, *, eval_cfg: EvalConfig | None = None) -> dict[str, Any]:
    """Round-trip ``gguf`` through a Hugging Face directory and llama.cpp's converter.

    Returns:
        JSON-ready figures: ``greedy_identical`` (against the F16 reference, 3 prompts) and
        ``greedy_identical_to_source``; ``kld_mean`` (against the F16 reference) and
        ``kld_mean_vs_source``; ``top1_agreement``; ``conversion_seconds``,
        ``hf_export_seconds``; sizes in bytes of the source, the Hugging Face directory, the
        converted GGUF and the reference; the ``conversion`` record.
    """
    cfg = eval_cfg or EvalConfig(n_ctx=512, eval_tokens=2048)
    with tempfile.TemporaryDirectory(prefix="edgeward-hf-roundtrip-") as tmp_name:
        tmp = Path(tmp_name)
        t0 = time.monotonic()
        hf = gguf_to_hf_dir(gguf, tmp / "hf")
        restore_byte_level_tokenizer(hf, gguf)
        export_s = time.monotonic() - t0
        info = convert_checkpoint(hf, tmp / "roundtrip-f16.gguf", outtype="f16")
        reference = tmp / "reference-f16.gguf"
        quantize(gguf, reference, QuantRecipe(type="F16"), force=True)
        text = evaluation_text()
        vs_ref = evaluate(info.output, compute_reference(reference, text, cfg), text, cfg)
        vs_src = evaluate(info.output, compute_reference(gguf, text, cfg), text, cfg)
        got, want, source = greedy_texts(info.output), greedy_texts(reference), greedy_texts(gguf)
        header = read_gguf_header(info.output)
        return {
            "source": gguf.name,
            "architecture": info.architecture,
            "outtype": info.outtype,
            "tensors": len(header.tensors),
            "greedy_identical": got == want,
            "greedy_identical_to_source": got == source,
            "greedy_prompts": len(PROMPTS),
            "kld_mean": round(vs_ref.kld_mean, 6),
            "top1_agreement": round(vs_ref.top1_agreement, 5),
            "kld_mean_vs_source": round(vs_src.kld_mean, 6),
            "eval_tokens": vs_ref.eval_tokens,
            "hf_export_seconds": round(export_s, 2),
            "conversion_seconds": round(info.seconds, 2),
            "source_bytes": gguf.stat().st_size,
            "hf_dir_bytes": sum(p.stat().st_size for p in hf.iterdir() if p.is_file()),
            "converted_bytes": info.size_bytes,
            "reference_bytes": reference.stat().st_size,
            "conversion": info.to_dict(),
        }


if __name__ == "__main__":
    from edgeward.packaged_models import smollm2_gguf

    print(json.dumps(measure_roundtrip(smollm2_gguf()), indent=2))
