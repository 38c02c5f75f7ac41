"""llama.cpp's own converter on real models: SmolLM2-135M-Instruct round-tripped GGUF -> Hugging
Face directory -> F16 GGUF generates and scores as its F16 reference does; MiniLM (BERT)
converts and embeds as transformers does.

The converter is the one ``make setup`` installs into ``.venv/share/edgeward/llama.cpp`` (from
the same llama-cpp-python sdist llama.cpp was built from); ``EDGEWARD_LLAMA_SDIST=<sdist>``
installs one for the session instead. Without either the tests skip, except under CI, where
they fail.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from edgeward.compress import (
    EvalConfig,
    QuantRecipe,
    check_hf_checkpoint,
    compute_reference,
    convert_checkpoint,
    evaluate,
    evaluation_text,
    find_converter,
    install_converter,
    quantize,
)
from edgeward.compress._converter import CONVERTER_ENV
from edgeward.errors import ArtifactError, ConfigError
from edgeward.runtimes import LlamaCppRuntime, SamplingParams, read_gguf_header

pytestmark = pytest.mark.integration

PROMPTS = ("The capital of France is", "Here is a short poem about the sea:",
           "def fibonacci(n):")
GREEDY = SamplingParams(temperature=0.0, max_tokens=32, seed=0)


@pytest.fixture(scope="session")
def hf_converter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The installed converter (see the module docstring)."""
    try:
        yield find_converter()
        return
    except ConfigError as e:
        missing = str(e)
    sdist = os.environ.get("EDGEWARD_LLAMA_SDIST")
    if not sdist:
        if os.environ.get("CI"):
            pytest.fail(f"CI must have llama.cpp's converter (make setup installs it): {missing}")
        pytest.skip(f"llama.cpp's converter is not installed ({missing}); run make setup or "
                    "set EDGEWARD_LLAMA_SDIST=llama_cpp_python-<version>.tar.gz")
    dest = install_converter(tmp_path_factory.mktemp("converter") / "llama.cpp",
                             sdist=Path(sdist))
    saved = os.environ.get(CONVERTER_ENV)
    os.environ[CONVERTER_ENV] = str(dest)
    yield find_converter()
    if saved is None:
        os.environ.pop(CONVERTER_ENV, None)
    else:
        os.environ[CONVERTER_ENV] = saved


# gguf_to_hf_dir's tokenizer is transformers' reading of the GGUF vocabulary: for SmolLM2's
# byte-level BPE it writes a LlamaTokenizer with byte fallback and <|im_start|> as EOS, which
# the converter turns into a SentencePiece vocabulary llama.cpp cannot load (see
# test_a_tokenizer_llama_cpp_cannot_load_is_refused). The real SmolLM2 checkpoint ships a GPT-2
# byte-level tokenizer; these are its settings.
_SMOLLM2_TOKENIZER = {
    "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": True},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
         "use_regex": True}]},
    "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                "use_regex": True},
    "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False,
                       "use_regex": True},
    "normalizer": None,
}
_SMOLLM2_SPECIAL = {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>",
                    "unk_token": "<|endoftext|>", "pad_token": "<|im_end|>"}


def _linked_copy(src: Path, dst: Path) -> Path:
    """A copy of a model directory whose weight files are hard links (the session fixture's
    directory stays untouched; nothing large is copied)."""
    dst.mkdir()
    for p in src.iterdir():
        if p.name == "tokenizer.model":
            continue  # transformers' SentencePiece rendering of a BPE vocabulary: not its own
        if p.suffix == ".safetensors":
            os.link(p, dst / p.name)
        else:
            shutil.copy2(p, dst / p.name)
    return dst


@pytest.fixture(scope="module")
def smollm2_checkpoint(smollm2_hf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmolLM2 as a Hugging Face checkpoint: gguf_to_hf_dir's weights, SmolLM2's tokenizer."""
    d = _linked_copy(smollm2_hf, tmp_path_factory.mktemp("ckpt") / "SmolLM2-135M-Instruct")
    tok = json.loads((d / "tokenizer.json").read_text())
    tok.update(_SMOLLM2_TOKENIZER)
    tok["model"]["byte_fallback"] = False
    (d / "tokenizer.json").write_text(json.dumps(tok))
    cfg = json.loads((d / "tokenizer_config.json").read_text())
    for key in ("bos_token_id", "eos_token_id", "unk_token_id", "pad_token_id", "legacy"):
        cfg.pop(key, None)
    cfg.update(_SMOLLM2_SPECIAL, tokenizer_class="GPT2Tokenizer", add_bos_token=False)
    (d / "tokenizer_config.json").write_text(json.dumps(cfg))
    (d / "special_tokens_map.json").write_text(json.dumps(_SMOLLM2_SPECIAL))
    return d


@pytest.fixture(scope="module")
def roundtrip(hf_converter: Path, smollm2_checkpoint: Path,
              tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("converted") / "smollm2-f16.gguf"
    info = convert_checkpoint(smollm2_checkpoint, out)
    assert info.outtype == "f16"  # a float32 checkpoint: auto gives f16
    assert info.architecture == "LlamaForCausalLM" and info.output == out
    return out


@pytest.fixture(scope="module")
def reference_f16(smollm2_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The packaged Q4_1 GGUF dequantized to F16 by llama.cpp: the GGUF path's quality
    reference for it, and the same weights the round trip carries."""
    out = tmp_path_factory.mktemp("ref") / "smollm2-f16.gguf"
    quantize(smollm2_gguf, out, QuantRecipe(type="F16"))
    return out


def _greedy(path: Path) -> list[tuple[list[int], str]]:
    with LlamaCppRuntime() as rt:
        rt.load(path, context_length=512)
        return [(rt.tokenize(p), rt.complete(p, GREEDY).text) for p in PROMPTS]


def test_roundtrip_has_the_reference_tensors_in_f16(roundtrip: Path, reference_f16: Path) -> None:
    got, want = read_gguf_header(roundtrip), read_gguf_header(reference_f16)
    assert got.architecture == want.architecture == "llama"
    shapes = {t.name: (t.shape, t.type_name) for t in got.tensors}
    assert shapes == {t.name: (t.shape, t.type_name) for t in want.tensors}
    assert {t.type_name for t in got.tensors} == {"F16", "F32"}  # norms stay F32


def test_roundtrip_generates_the_same_greedy_text(roundtrip: Path, reference_f16: Path) -> None:
    got, want = _greedy(roundtrip), _greedy(reference_f16)
    for (ids, text), (want_ids, want_text) in zip(got, want, strict=True):
        assert ids == want_ids  # the same tokenizer
        assert text == want_text and len(text) > 10


def test_roundtrip_kld_against_the_reference(roundtrip: Path, reference_f16: Path) -> None:
    text, cfg = evaluation_text(), EvalConfig(n_ctx=256, eval_tokens=1024)
    quality = evaluate(roundtrip, compute_reference(reference_f16, text, cfg), text, cfg)
    assert quality.kld_mean <= 0.001, quality.to_dict()
    assert quality.top1_agreement >= 0.99
    assert abs(quality.ppl - quality.ppl_ref) / quality.ppl_ref < 0.01


def test_a_tokenizer_llama_cpp_cannot_load_is_refused(hf_converter: Path, smollm2_hf: Path,
                                                      tmp_path: Path) -> None:
    # gguf_to_hf_dir's tokenizer.json as it is: the converter succeeds, but llama.cpp would
    # abort the process loading the result. The check loads it in a child and refuses it.
    src = _linked_copy(smollm2_hf, tmp_path / "as-written")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ArtifactError, match="cannot load or use the vocabulary"):
        convert_checkpoint(src, out / "broken.gguf")
    assert list(out.iterdir()) == []


def test_minilm_bert_converts_and_embeds_like_transformers(hf_converter: Path, minilm_dir: Path,
                                                           tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from transformers import AutoModel, AutoTokenizer

    assert check_hf_checkpoint(minilm_dir) == "BertModel"
    info = convert_checkpoint(minilm_dir, tmp_path / "minilm-f16.gguf")
    assert read_gguf_header(info.output).architecture == "bert"
    sentences = ["A man is eating food.", "The weather is lovely today.",
                 "Edge devices run small models."]
    with LlamaCppRuntime() as rt:
        rt.load(info.output, context_length=512)
        ours = np.array(rt.embed(sentences).vectors)
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir)
    model = AutoModel.from_pretrained(minilm_dir).eval()
    batch = tokenizer(sentences, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    theirs = ((hidden * mask).sum(1) / mask.sum(1)).numpy()
    theirs /= np.linalg.norm(theirs, axis=1, keepdims=True)
    cosines = (ours * theirs).sum(axis=1)
    assert cosines.min() > 0.999, cosines


@pytest.mark.integration
def test_compress_takes_the_checkpoint_directory(hf_converter: Path, smollm2_checkpoint: Path,
                                                 tmp_path: Path) -> None:
    # the interface: `edgeward compress HF_DIR --type T --out X.gguf --json`
    from edgeward.compress import CompressOptions, CompressRequest, EvalConfig, compress
    from edgeward.provenance import build_statement, read_report

    options = CompressOptions(eval=EvalConfig(n_ctx=128, eval_tokens=256, top_k=64),
                              cache_dir=tmp_path / "cache")
    out = tmp_path / "smol-q8.gguf"
    result = compress(CompressRequest(source=smollm2_checkpoint, type="Q8_0", out=out,
                                      options=options))
    assert result.format == "gguf" and out.is_file()
    src = result.to_dict()["source"]
    assert src["format"] == "huggingface" and src["path"] == str(smollm2_checkpoint)
    assert src["conversion"]["outtype"] == "f16" and not src["conversion"]["reused"]
    assert len(src["sha256"]) == 64
    assert result.to_dict()["reference"].startswith("the unquantized source")
    assert result.build is not None and result.build.recipe["conversion"]["outtype"] == "f16"
    predicate = build_statement(out, report=read_report(out)).predicate
    assert predicate["source_model"]["digest"]["sha256"] == src["sha256"]
    # a plan from the same directory converts nothing and measures nothing again
    from edgeward.hardware_profiles import get_profile

    plan = compress(CompressRequest(source=smollm2_checkpoint, plan_only=True,
                                    profile=get_profile("rtx-4090-24gb"),
                                    candidates=("Q8_0",), options=options))
    assert plan.plan is not None and plan.plan["conversion"]["reused"]
    assert plan.rows()[0]["cached"] and plan.plan["backend"] == "cuda"
