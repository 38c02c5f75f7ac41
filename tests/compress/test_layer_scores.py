"""Block influence (ShortGPT) scores and llama.cpp's layer pruning (unit tests on tiny generated
GGUFs; an integration test on the real SmolLM2)."""

from __future__ import annotations

import ctypes
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from _models import TinyLlamaSpec, write_tiny_gguf
from edgeward.compress._hf import calibration_chunks, load_hf_model
from edgeward.compress._imatrix import compute_imatrix, quantize_imatrix_data
from edgeward.compress._layer_scores import (
    block_influence,
    block_influence_of_model,
    least_influential,
)
from edgeward.errors import ConfigError
from edgeward.runtimes import read_gguf_header

N_CTX, MAX_TOKENS = 64, 192  # tiny models: 3 chunks
ALL_F32 = 0  # LLAMA_FTYPE_ALL_F32: F32 in, F32 out: pruned tensors are copied byte for byte


def _text() -> str:
    from pydoc_data import topics

    return "\n\n".join(topics.topics[k] for k in sorted(topics.topics)[40:80])


@pytest.fixture(scope="module")
def torch_available() -> None:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def four_blocks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tiny4") / "tiny-4-blocks.gguf"
    return write_tiny_gguf(path, TinyLlamaSpec(n_layer=4, seed=3))


# -- choosing blocks ------------------------------------------------------------------------

@pytest.mark.parametrize(("scores", "k", "expected"), [
    ([0.9, 0.1, 0.3, 0.2, 0.5], 1, [1]),
    ([0.9, 0.1, 0.3, 0.2, 0.5], 2, [1, 3]),
    ([0.9, 0.1, 0.3, 0.2, 0.5], 4, [1, 2, 3, 4]),
    ([0.9, 0.2, 0.2, 0.2, 0.5], 2, [1, 2]),  # ties: the lower block number
    ([0.1, 0.5], 1, [0]),                     # no block is exempt
], ids=["one", "two-sorted", "all-but-one", "ties", "first-block"])
def test_least_influential_blocks_are_chosen(scores: list[float], k: int,
                                             expected: list[int]) -> None:
    assert least_influential(scores, k) == expected


@pytest.mark.parametrize(("scores", "k", "message"), [
    ([0.5, 0.2, 0.1], 0, "in [1, 2]"),
    ([0.5, 0.2, 0.1], 3, "got 3"),
    ([0.5, 0.2, 0.1], True, "got True"),
    ([0.5], 1, "in [1, 0]"),
    ([0.5, math.nan, 0.1], 1, "block 1 is not a finite number: nan"),
], ids=["zero", "every-block", "bool", "one-block-model", "nan-score"])
def test_impossible_choices_are_refused(scores: list[float], k: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        least_influential(scores, k)


# -- scoring --------------------------------------------------------------------------------

def test_scores_are_one_minus_mean_cosine_per_block(four_blocks: Path,
                                                    torch_available: None) -> None:
    import torch

    chunks = calibration_chunks(four_blocks, _text(), n_ctx=N_CTX, max_tokens=MAX_TOKENS)
    model = load_hf_model(four_blocks)
    calls: list[tuple[int, int]] = []
    scores = block_influence_of_model(model, chunks, progress=lambda d, t: calls.append((d, t)))
    assert len(scores) == 4
    assert all(0.0 <= s <= 2.0 and math.isfinite(s) for s in scores), scores
    assert calls == [(0, 3), (1, 3), (2, 3), (3, 3)]
    # Independently, from transformers' hidden states (valid for every block but the last:
    # transformers puts the final-normed state in the last slot).
    total = np.zeros(3)
    with torch.no_grad():
        for chunk in chunks:
            hs = model(torch.tensor([chunk]), output_hidden_states=True).hidden_states
            for i in range(3):
                cos = torch.nn.functional.cosine_similarity(hs[i].double(), hs[i + 1].double(),
                                                            dim=-1)
                total[i] += float((1 - cos).sum())
    np.testing.assert_allclose(scores[:3], total / (3 * N_CTX), rtol=1e-9)


def test_scores_are_deterministic_from_the_file(tiny_gguf: Path, torch_available: None) -> None:
    a = block_influence(tiny_gguf, _text(), n_ctx=N_CTX, max_tokens=MAX_TOKENS)
    b = block_influence(tiny_gguf, _text(), n_ctx=N_CTX, max_tokens=MAX_TOKENS)
    assert a == b and len(a) == 2


def test_block_influence_refuses_too_little_text(tiny_gguf: Path) -> None:
    with pytest.raises(ConfigError, match="tokens long"):
        block_influence(tiny_gguf, "a few words", n_ctx=N_CTX, max_tokens=MAX_TOKENS)


# -- pruning with llama.cpp -----------------------------------------------------------------

def _prune(src: Path, dst: Path, layers: list[int], *, ftype: int = ALL_F32,
           imatrix: Any = None) -> int:
    """``llama_model_quantize`` with ``prune_layers``: an int32 array ended by -1 (llama-quant.cpp
    reads ``for (p = params->prune_layers; *p != -1; p++)``), sorted as it assumes."""
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = 2
    array = (ctypes.c_int32 * (len(layers) + 1))(*layers, -1)
    params.prune_layers = ctypes.cast(array, ctypes.POINTER(ctypes.c_int32))
    if imatrix is not None:
        params.imatrix = ctypes.cast(imatrix, ctypes.POINTER(llama_cpp.llama_model_imatrix_data))
    return int(llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(),
                                              ctypes.byref(params)))


def test_pruning_the_least_influential_blocks_renumbers_the_rest(
        four_blocks: Path, tmp_path: Path, torch_available: None) -> None:
    import gguf
    from llama_cpp import Llama

    scores = block_influence(four_blocks, _text(), n_ctx=N_CTX, max_tokens=MAX_TOKENS)
    drop = least_influential(scores, 2)
    keep = [i for i in range(4) if i not in drop]
    out = tmp_path / "pruned.gguf"
    assert _prune(four_blocks, out, drop) == 0
    header = read_gguf_header(out)
    assert header.arch_value("block_count") == 2
    assert {t.name.split(".")[1] for t in header.tensors if t.name.startswith("blk.")} == {"0", "1"}
    src = {t.name: np.array(t.data) for t in gguf.GGUFReader(str(four_blocks)).tensors}
    dst = {t.name: np.array(t.data) for t in gguf.GGUFReader(str(out)).tensors}
    for new, old in enumerate(keep):  # block `old` is now block `new`, weights unchanged
        for part in ("attn_q", "attn_output", "ffn_down", "attn_norm"):
            np.testing.assert_array_equal(dst[f"blk.{new}.{part}.weight"],
                                          src[f"blk.{old}.{part}.weight"])
    llm = Llama(str(out), n_ctx=64, logits_all=True, verbose=False)  # else scores stay unset
    try:
        llm.eval(llm.tokenize(b"the model", add_bos=True))
        assert np.all(np.isfinite(llm.scores[llm.n_tokens - 1]))
    finally:
        llm.close()


def test_the_unpruned_models_imatrix_serves_the_pruned_one(
        four_blocks: Path, tmp_path: Path, torch_available: None) -> None:
    # llama.cpp renumbers the kept blocks and looks their matrix entries up under the old
    # numbers (remap_imatrix), so one matrix serves every pruning of the model. IQ2_XXS
    # refuses any tensor without an entry, so success means every lookup was found.
    matrix = compute_imatrix(four_blocks, _text(), text_name="t", n_ctx=N_CTX, max_tokens=N_CTX)
    out = tmp_path / "pruned-iq2.gguf"
    assert _prune(four_blocks, out, [1, 2], ftype=19, imatrix=quantize_imatrix_data(matrix)) == 0
    header = read_gguf_header(out)
    assert header.arch_value("block_count") == 2
    assert header.tensor("blk.1.ffn_up.weight").type_name == "IQ2_XXS"


# -- the real model -------------------------------------------------------------------------

@pytest.mark.integration
def test_smollm2_block_influence(smollm2_gguf: Path, shared_data: Path,
                                 torch_available: None) -> None:
    text_path = shared_data / "text" / "calibration" / "darwin-origin-of-species.txt"
    if not text_path.is_file():
        pytest.skip(f"{text_path} is absent")
    t0 = time.perf_counter()
    scores = block_influence(smollm2_gguf, text_path.read_text(encoding="utf-8"),
                             n_ctx=512, max_tokens=1024)
    elapsed = time.perf_counter() - t0
    assert len(scores) == read_gguf_header(smollm2_gguf).arch_value("block_count") == 30
    assert all(0.0 <= s <= 2.0 and math.isfinite(s) for s in scores), scores
    # ShortGPT's finding holds for SmolLM2: the first block changes the state most, and the
    # first and last blocks are not among the least influential.
    assert scores[0] == max(scores)
    drop = least_influential(scores, 4)
    assert 0 not in drop and 29 not in drop
    print(f"block_influence(SmolLM2, 1024 tokens): {elapsed:.1f} s; drop {drop}")
