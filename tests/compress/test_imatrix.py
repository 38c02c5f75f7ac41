"""Importance matrices: computed in torch, saved as llama.cpp's GGUF imatrix, consumed by its
quantizer (unit tests on the tiny GGUF; integration tests on the real SmolLM2)."""

from __future__ import annotations

import ctypes
import gc
import re
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeward.compress._hf import (
    calibration_chunks,
    hf_to_gguf_name,
    load_hf_from_gguf,
    load_hf_model,
    require_torch,
)
from edgeward.compress._imatrix import ImportanceMatrix, compute_imatrix, quantize_imatrix_data
from edgeward.errors import ArtifactError, ConfigError
from edgeward.runtimes import read_gguf_header

MATMUL = re.compile(r"blk\.\d+\.(attn_(q|k|v|output)|ffn_(gate|up|down))\.weight")
IQ2_XXS = 19  # LLAMA_FTYPE_MOSTLY_IQ2_XXS: llama.cpp refuses it without an importance matrix
N_CTX, MAX_TOKENS = 64, 256  # tiny model: 4 chunks


def _text() -> str:
    from pydoc_data import topics  # every Python install has it (edgeward's default text)

    return "\n\n".join(topics.topics[k] for k in sorted(topics.topics)[:40])


@pytest.fixture(scope="module")
def torch_available() -> None:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def tiny_run(tiny_gguf: Path, torch_available: None) -> tuple[ImportanceMatrix, list[Any]]:
    calls: list[tuple[int, int]] = []
    im = compute_imatrix(tiny_gguf, _text(), text_name="pydoc-topics", n_ctx=N_CTX,
                         max_tokens=MAX_TOKENS, progress=lambda d, t: calls.append((d, t)))
    return im, calls


@pytest.fixture(scope="module")
def tiny_imatrix(tiny_run: tuple[ImportanceMatrix, list[Any]]) -> ImportanceMatrix:
    return tiny_run[0]


def _matmul_weights(model: Path) -> dict[str, int]:
    """GGUF name -> row size (input columns) of every block matmul weight in the model."""
    return {t.name: t.shape[0] for t in read_gguf_header(model).tensors if MATMUL.fullmatch(t.name)}


def _quantize(src: Path, dst: Path, ftype: int, imatrix: Any = None,
              q8_0_pattern: str | None = None) -> int:
    """``llama_model_quantize`` as a C caller fills it; returns llama.cpp's status (0 = ok).
    Tensors matching ``q8_0_pattern`` (a regex) are made Q8_0 (a tensor type override)."""
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.allow_requantize = True  # SmolLM2 ships as Q4_1
    params.nthread = 2
    if imatrix is not None:
        params.imatrix = ctypes.cast(imatrix, ctypes.POINTER(llama_cpp.llama_model_imatrix_data))
    overrides = (llama_cpp.llama_model_tensor_override * 2)()  # NULL-pattern terminated
    if q8_0_pattern:
        overrides[0].pattern, overrides[0].type = q8_0_pattern.encode(), 8  # GGML_TYPE_Q8_0
        params.tt_overrides = ctypes.cast(overrides,
                                          ctypes.POINTER(llama_cpp.llama_model_tensor_override))
    return int(llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(),
                                              ctypes.byref(params)))


# -- names ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("module", "expected"), [
    ("model.layers.0.self_attn.q_proj", "blk.0.attn_q.weight"),
    ("model.layers.7.self_attn.k_proj", "blk.7.attn_k.weight"),
    ("model.layers.12.self_attn.v_proj", "blk.12.attn_v.weight"),
    ("model.layers.3.self_attn.o_proj", "blk.3.attn_output.weight"),
    ("model.layers.29.mlp.gate_proj", "blk.29.ffn_gate.weight"),
    ("model.layers.1.mlp.up_proj", "blk.1.ffn_up.weight"),
    ("model.layers.1.mlp.down_proj", "blk.1.ffn_down.weight"),
    ("lm_head", "output.weight"),
    ("model.embed_tokens", None),
    ("model.layers.0.input_layernorm", None),
    ("model.layers.0.self_attn", None),
    ("model.layers.0.mlp.act_fn", None),
    ("model.layers.x.mlp.up_proj", None),
    ("model.norm", None),
], ids=str)
def test_hf_module_names_map_to_gguf_tensor_names(module: str, expected: str | None) -> None:
    assert hf_to_gguf_name(module) == expected


# -- computing ------------------------------------------------------------------------------

def test_every_block_matmul_weight_gets_an_entry_of_its_row_size(
        tiny_gguf: Path, tiny_imatrix: ImportanceMatrix) -> None:
    weights = _matmul_weights(tiny_gguf)
    assert set(tiny_imatrix.names) == set(weights)
    assert "output.weight" not in tiny_imatrix.names  # as llama-imatrix without --process-output
    for name, cols in weights.items():
        assert tiny_imatrix.sums[name].shape == (cols,), name
        assert tiny_imatrix.counts[name] == 4 * N_CTX
    assert (tiny_imatrix.chunk_count, tiny_imatrix.chunk_size) == (4, N_CTX)
    assert tiny_imatrix.datasets == ("pydoc-topics",)


def test_values_are_positive_finite_means(tiny_imatrix: ImportanceMatrix) -> None:
    for name in tiny_imatrix.names:
        v = tiny_imatrix.values(name)
        assert v.dtype == np.float32
        assert np.all(np.isfinite(v)) and np.all(v > 0), name
        np.testing.assert_array_equal(v, tiny_imatrix.sums[name] / np.float32(4 * N_CTX))
    # q, k and v read the same normed input; ffn_down reads something else entirely.
    np.testing.assert_array_equal(tiny_imatrix.sums["blk.0.attn_q.weight"],
                                  tiny_imatrix.sums["blk.0.attn_v.weight"])
    with pytest.raises(ConfigError, match=r"no entry for 'output\.weight'"):
        tiny_imatrix.values("output.weight")


def test_process_output_adds_the_output_projection(tiny_gguf: Path,
                                                   tiny_imatrix: ImportanceMatrix) -> None:
    im = compute_imatrix(tiny_gguf, _text(), text_name="pydoc-topics", n_ctx=N_CTX,
                         max_tokens=MAX_TOKENS, process_output=True)
    assert set(im.names) == {*tiny_imatrix.names, "output.weight"}  # the tiny model is untied
    assert im.sums["output.weight"].shape == (256,) and im.counts["output.weight"] == 4 * N_CTX
    np.testing.assert_array_equal(im.sums["blk.1.ffn_up.weight"],
                                  tiny_imatrix.sums["blk.1.ffn_up.weight"])


def test_progress_is_reported_per_chunk(tiny_run: tuple[ImportanceMatrix, list[Any]]) -> None:
    assert tiny_run[1] == [(0, 4), (1, 4), (2, 4), (3, 4), (4, 4)]


def test_the_same_input_gives_the_same_matrix(tiny_gguf: Path,
                                              tiny_imatrix: ImportanceMatrix) -> None:
    again = compute_imatrix(tiny_gguf, _text(), text_name="pydoc-topics", n_ctx=N_CTX,
                            max_tokens=MAX_TOKENS)
    assert again == tiny_imatrix
    other = compute_imatrix(tiny_gguf, _text()[5000:], text_name="pydoc-topics", n_ctx=N_CTX,
                            max_tokens=MAX_TOKENS)
    assert other != tiny_imatrix  # and equality does look at the numbers


def test_chunks_start_with_bos_when_the_vocab_adds_one(tiny_gguf: Path) -> None:
    chunks = calibration_chunks(tiny_gguf, _text(), n_ctx=N_CTX, max_tokens=MAX_TOKENS + 10)
    assert len(chunks) == 4 and all(len(c) == N_CTX for c in chunks)
    assert all(c[0] == 1 for c in chunks)  # the tiny vocab's <s>, add_bos_token = true


@pytest.mark.parametrize(("text", "n_ctx", "max_tokens", "message"), [
    ("too short", 64, 256, "tokens long; give at least n_ctx = 64"),
    ("x" * 5000, 1, 256, "n_ctx must be at least 2"),
    ("x" * 5000, 64, 32, r"max_tokens \(32\) must be at least n_ctx \(64\)"),
], ids=["short-text", "tiny-context", "budget-below-context"])
def test_bad_sizes_are_refused(tiny_gguf: Path, text: str, n_ctx: int, max_tokens: int,
                               message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        calibration_chunks(tiny_gguf, text, n_ctx=n_ctx, max_tokens=max_tokens)


def test_the_torch_model_computes_what_llama_cpp_computes(tiny_gguf: Path,
                                                          torch_available: None) -> None:
    import torch
    from llama_cpp import Llama

    chunk = calibration_chunks(tiny_gguf, _text(), n_ctx=N_CTX, max_tokens=N_CTX)[0]
    model = load_hf_model(tiny_gguf)
    with torch.no_grad():
        ours = model(torch.tensor([chunk])).logits[0].numpy()
    llm = Llama(str(tiny_gguf), n_ctx=N_CTX, logits_all=True, verbose=False)
    try:
        llm.eval(chunk)
        theirs = np.array(llm.scores[:N_CTX])
    finally:
        llm.close()
    # Same weights, same rope and head layout: llama.cpp's F32 path agrees to rounding.
    np.testing.assert_allclose(ours, theirs, atol=1e-3 * np.abs(theirs).max())
    assert (ours.argmax(-1) == theirs.argmax(-1)).mean() > 0.95


def test_transformers_tokenizer_comes_from_the_same_file(tiny_gguf: Path,
                                                        torch_available: None) -> None:
    model, tokenizer = load_hf_from_gguf(tiny_gguf)
    ids = tokenizer("the model", add_special_tokens=False).input_ids
    assert ids and all(0 <= i < model.config.vocab_size for i in ids)
    assert read_gguf_header(tiny_gguf).metadata["tokenizer.ggml.tokens"] == (
        "array", model.config.vocab_size)


def test_non_gguf_and_missing_models_are_refused(tmp_path: Path, torch_available: None) -> None:
    text_file = tmp_path / "notes.gguf"
    text_file.write_text("not a model\n" * 100)
    with pytest.raises(ArtifactError, match=r"notes\.gguf"):
        load_hf_model(text_file)
    alien = _write_gguf(tmp_path / "alien.gguf", {}, {"blk.0.w.weight": _SUM}, general_type=None,
                        arch="made-up-arch")
    with pytest.raises(ArtifactError, match="architecture 'made-up-arch'"):
        load_hf_model(alien)
    with pytest.raises(ArtifactError, match="is a GGUF 'imatrix' file, not a model"):
        load_hf_model(_write_gguf(tmp_path / "im.gguf", _KV, {}))
    with pytest.raises(ConfigError, match="no such model file"):
        compute_imatrix(tmp_path / "absent.gguf", _text(), text_name="t")


def test_missing_torch_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now fails
    with pytest.raises(ConfigError, match=r"pip install 'edgeward\[compress\]'"):
        require_torch()


# -- the file format ------------------------------------------------------------------------

def test_save_and_load_round_trip_exactly(tiny_imatrix: ImportanceMatrix, tmp_path: Path) -> None:
    path = tmp_path / "imatrix.gguf"
    tiny_imatrix.save(path)
    loaded = ImportanceMatrix.load(path)
    assert loaded == tiny_imatrix
    for name in tiny_imatrix.names:
        np.testing.assert_array_equal(loaded.values(name), tiny_imatrix.values(name))
    again = tmp_path / "again.gguf"
    loaded.save(again)
    assert again.read_bytes() == path.read_bytes()  # sorted names: a deterministic file
    assert not list(tmp_path.glob(".*.tmp"))


def test_llama_cpps_own_gguf_parser_reads_it_as_llama_quantize_does(
        tiny_imatrix: ImportanceMatrix, tmp_path: Path) -> None:
    path = tmp_path / "imatrix.gguf"
    tiny_imatrix.save(path)
    meta, values = _read_like_llama_quantize(path)
    assert meta == {"general.type": "imatrix", "imatrix.datasets": ["pydoc-topics"],
                    "imatrix.chunk_count": 4, "imatrix.chunk_size": N_CTX,
                    "general.architecture": None}
    assert set(values) == set(tiny_imatrix.names)
    for name, v in values.items():
        np.testing.assert_array_equal(v, tiny_imatrix.values(name))


def _read_like_llama_quantize(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read an imatrix with libggml's GGUF parser, as llama-quantize's load_imatrix() does:
    the three imatrix.* keys (u32 counts), ``<name>.in_sum2`` / ``<name>.counts`` F32 pairs,
    value = sum / count."""
    import llama_cpp

    libs = sorted((Path(llama_cpp.__file__).parent / "lib").glob("libggml-base.*"))
    if not libs:
        pytest.skip("llama-cpp-python ships no libggml-base library here")
    lib = ctypes.CDLL(str(libs[0]))
    vp, i64 = ctypes.c_void_p, ctypes.c_int64

    class InitParams(ctypes.Structure):
        _fields_ = [("no_alloc", ctypes.c_bool), ("ctx", ctypes.POINTER(vp))]

    for fn, res, args in [
        ("gguf_init_from_file", vp, [ctypes.c_char_p, InitParams]),
        ("gguf_find_key", i64, [vp, ctypes.c_char_p]),
        ("gguf_get_kv_type", ctypes.c_int, [vp, i64]),
        ("gguf_get_val_u32", ctypes.c_uint32, [vp, i64]),
        ("gguf_get_val_str", ctypes.c_char_p, [vp, i64]),
        ("gguf_get_arr_type", ctypes.c_int, [vp, i64]),
        ("gguf_get_arr_n", ctypes.c_size_t, [vp, i64]),
        ("gguf_get_arr_str", ctypes.c_char_p, [vp, i64, ctypes.c_size_t]),
        ("gguf_find_tensor", i64, [vp, ctypes.c_char_p]),
        ("gguf_get_tensor_type", ctypes.c_int, [vp, i64]),
        ("ggml_get_first_tensor", vp, [vp]), ("ggml_get_next_tensor", vp, [vp, vp]),
        ("ggml_get_name", ctypes.c_char_p, [vp]), ("ggml_nelements", i64, [vp]),
        ("ggml_get_data_f32", ctypes.POINTER(ctypes.c_float), [vp]),
        ("gguf_free", None, [vp]), ("ggml_free", None, [vp]),
    ]:
        getattr(lib, fn).restype, getattr(lib, fn).argtypes = res, args
    string, array, u32, f32 = 8, 9, 4, 0  # GGUF_TYPE_* and GGML_TYPE_F32

    ctx = vp()
    gctx = lib.gguf_init_from_file(str(path).encode(), InitParams(False, ctypes.pointer(ctx)))
    assert gctx, "libggml could not parse the file"
    try:
        meta: dict[str, Any] = {}
        for key in ("general.type", "general.architecture", "imatrix.datasets",
                    "imatrix.chunk_count", "imatrix.chunk_size"):
            k = lib.gguf_find_key(gctx, key.encode())
            kind = lib.gguf_get_kv_type(gctx, k) if k >= 0 else None
            if kind is None:
                meta[key] = None
            elif kind == string:
                meta[key] = lib.gguf_get_val_str(gctx, k).decode()
            elif kind == u32:  # gguf_get_val_u32 aborts on any other type
                meta[key] = lib.gguf_get_val_u32(gctx, k)
            else:
                assert kind == array and lib.gguf_get_arr_type(gctx, k) == string, key
                meta[key] = [lib.gguf_get_arr_str(gctx, k, i).decode()
                             for i in range(lib.gguf_get_arr_n(gctx, k))]
        pairs: dict[str, dict[str, np.ndarray]] = {}
        t = lib.ggml_get_first_tensor(ctx)
        while t:
            name = lib.ggml_get_name(t).decode()
            base, _, part = name.rpartition(".")
            if part in ("in_sum2", "counts"):  # others (the data blob ggml adds) are ignored
                tid = lib.gguf_find_tensor(gctx, name.encode())
                assert lib.gguf_get_tensor_type(gctx, tid) == f32, name
                data = np.ctypeslib.as_array(lib.ggml_get_data_f32(t), (lib.ggml_nelements(t),))
                pairs.setdefault(base, {})[part] = data.copy()
            t = lib.ggml_get_next_tensor(ctx, t)
        values = {}
        for base, p in pairs.items():
            assert set(p) == {"in_sum2", "counts"}, base
            assert p["counts"].size == 1 and p["counts"][0] > 0
            values[base] = p["in_sum2"] / p["counts"][0]
        return meta, values
    finally:
        lib.gguf_free(gctx)
        lib.ggml_free(ctx)


def _write_gguf(path: Path, kv: dict[str, Any], tensors: dict[str, np.ndarray],
                general_type: str | None = "imatrix", arch: str = "") -> Path:
    import gguf

    w = gguf.GGUFWriter(str(path), arch=arch)
    if general_type:
        w.add_type(general_type)
    for key, value in kv.items():
        if isinstance(value, list):
            w.add_array(key, value)
        else:
            w.add_uint32(key, value)
    for name, arr in tensors.items():
        w.add_tensor(name, arr)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


_KV = {"imatrix.datasets": ["x"], "imatrix.chunk_count": 1, "imatrix.chunk_size": 8}
_SUM = np.ones((1, 8), dtype=np.float32)
_ONE = np.array([[8.0]], dtype=np.float32)


@pytest.mark.parametrize(("case", "message"), [
    ("model-gguf", "is a GGUF 'model' file, not an importance matrix"),
    ("text-file", "not a GGUF importance matrix file"),
    ("no-counts", "mismatched sums and counts for 'blk.0.ffn_up.weight'"),
    ("no-chunk-size", "the key 'imatrix.chunk_size' is missing"),
    ("no-entries", "holds no importance entries"),
    ("per-expert", "per-expert"),
    ("negative", "must be finite and >= 0"),
])
def test_load_refuses_what_is_not_a_usable_imatrix(case: str, message: str, tmp_path: Path,
                                                    tiny_gguf: Path) -> None:
    path = tmp_path / f"{case}.gguf"
    entry = {"blk.0.ffn_up.weight.in_sum2": _SUM, "blk.0.ffn_up.weight.counts": _ONE}
    if case == "model-gguf":
        path = tiny_gguf
    elif case == "text-file":
        path.write_text("hello\n" * 50)
    elif case == "no-counts":
        _write_gguf(path, _KV, {"blk.0.ffn_up.weight.in_sum2": _SUM})
    elif case == "no-chunk-size":
        _write_gguf(path, {k: v for k, v in _KV.items() if k != "imatrix.chunk_size"}, entry)
    elif case == "no-entries":
        _write_gguf(path, _KV, {"something.else": _SUM})
    elif case == "per-expert":
        _write_gguf(path, _KV, {"blk.0.ffn_up.weight.in_sum2": np.ones((2, 8), np.float32),
                                "blk.0.ffn_up.weight.counts": np.ones((2, 1), np.float32)})
    elif case == "negative":
        _write_gguf(path, _KV, {**entry, "blk.0.ffn_up.weight.in_sum2": -_SUM})
    with pytest.raises(ArtifactError, match=re.escape(message)):
        ImportanceMatrix.load(path)


def test_load_of_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such importance matrix file"):
        ImportanceMatrix.load(tmp_path / "absent.gguf")


@pytest.mark.parametrize(("changes", "message"), [
    ({"sums": {"a": [1.0, float("nan")]}}, "column 1 is nan"),
    ({"sums": {"a": [1.0, -2.0]}}, "column 1 is -2.0"),
    ({"sums": {"a": [[1.0]]}}, "shape (1, 1)"),
    ({"counts": {"b": 3}}, "['a', 'b']"),
    ({"counts": {"a": -1}}, "got -1"),
    ({"datasets": ()}, "got ()"),
    ({"chunk_count": 2**32}, "got 4294967296"),
], ids=["nan", "negative", "2-d", "other-names", "negative-count", "no-dataset", "u32-overflow"])
def test_bad_values_are_refused_naming_them(changes: dict[str, Any], message: str) -> None:
    fields: dict[str, Any] = {"sums": {"a": [1.0, 2.0]}, "counts": {"a": 3},
                              "datasets": ("cal.txt",), "chunk_count": 1, "chunk_size": 3}
    with pytest.raises(ConfigError, match=re.escape(message)):
        ImportanceMatrix(**{**fields, **changes})


# -- the quantizer consumes it --------------------------------------------------------------

def test_quantizer_array_is_null_terminated_and_owns_its_buffers(
        tiny_imatrix: ImportanceMatrix) -> None:
    copy = ImportanceMatrix(sums=dict(tiny_imatrix.sums), counts=dict(tiny_imatrix.counts),
                            datasets=tiny_imatrix.datasets, chunk_count=4, chunk_size=N_CTX)
    array = quantize_imatrix_data(copy)
    del copy
    gc.collect()
    assert len(array) == len(tiny_imatrix.names) + 1
    assert array[len(array) - 1].name is None and not array[len(array) - 1].data
    for entry, name in zip(array[:-1], tiny_imatrix.names, strict=True):
        assert entry.name.decode() == name
        read = np.ctypeslib.as_array(entry.data, (entry.size,))
        np.testing.assert_array_equal(read, tiny_imatrix.values(name))


def test_iq2_xxs_is_refused_without_a_matrix_and_made_with_ours(
        tiny_gguf: Path, tiny_imatrix: ImportanceMatrix, tmp_path: Path) -> None:
    assert _quantize(tiny_gguf, tmp_path / "none.gguf", IQ2_XXS) != 0
    out = tmp_path / "iq2.gguf"
    assert _quantize(tiny_gguf, out, IQ2_XXS, quantize_imatrix_data(tiny_imatrix)) == 0
    types = Counter(t.type_name for t in read_gguf_header(out).tensors)
    assert types["IQ2_XXS"] >= 10, types  # the tiny model's rows are multiples of 256
    # The values are used, not only checked for: another matrix gives other weights.
    flat = ImportanceMatrix(sums={n: np.ones_like(s) for n, s in tiny_imatrix.sums.items()},
                            counts=dict(tiny_imatrix.counts), datasets=("ones",),
                            chunk_count=4, chunk_size=N_CTX)
    other = tmp_path / "iq2-flat.gguf"
    assert _quantize(tiny_gguf, other, IQ2_XXS, quantize_imatrix_data(flat)) == 0
    assert other.read_bytes() != out.read_bytes()
    from llama_cpp import Llama

    llm = Llama(str(out), n_ctx=64, logits_all=True, verbose=False)  # else scores stay unset
    try:
        llm.eval(llm.tokenize(b"the model", add_bos=True))
        assert np.all(np.isfinite(llm.scores[llm.n_tokens - 1]))
    finally:
        llm.close()


# -- the real model -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def smollm2_imatrix(smollm2_gguf: Path, shared_data: Path,
                    torch_available: None) -> Iterator[tuple[ImportanceMatrix, float]]:
    text_path = shared_data / "text" / "calibration" / "austen-pride-and-prejudice.txt"
    if not text_path.is_file():
        pytest.skip(f"{text_path} is absent")
    t0 = time.perf_counter()
    im = compute_imatrix(smollm2_gguf, text_path.read_text(encoding="utf-8"),
                         text_name=text_path.name, n_ctx=512, max_tokens=1024)
    yield im, time.perf_counter() - t0


@pytest.mark.integration
def test_smollm2_matrix_names_the_gguf_tensors(
        smollm2_gguf: Path, smollm2_imatrix: tuple[ImportanceMatrix, float]) -> None:
    im, _ = smollm2_imatrix
    weights = _matmul_weights(smollm2_gguf)
    assert len(weights) == 30 * 7
    assert set(im.names) == set(weights)
    # Tied embeddings: the GGUF has no output.weight, so neither may the matrix.
    assert read_gguf_header(smollm2_gguf).tensor("output.weight") is None
    for name, cols in weights.items():
        v = im.values(name)
        assert v.shape == (cols,) and np.all(np.isfinite(v)) and np.all(v > 0), name
        assert im.counts[name] == 1024
    assert im.datasets == ("austen-pride-and-prejudice.txt",)


@pytest.mark.integration
def test_smollm2_iq2_xxs_needs_and_takes_the_matrix(
        smollm2_gguf: Path, smollm2_imatrix: tuple[ImportanceMatrix, float],
        tmp_path: Path) -> None:
    im, _ = smollm2_imatrix
    path = tmp_path / "imatrix.gguf"
    im.save(path)
    # Only ffn_down has rows that are a multiple of 256 (1536 wide) and can take IQ2_XXS; the
    # 576-wide rows would fall back to IQ4_NL, which needs no matrix and takes two thirds of
    # the time, so the test makes them Q8_0.
    others = r"attn_|ffn_gate|ffn_up"
    assert _quantize(smollm2_gguf, tmp_path / "none.gguf", IQ2_XXS, q8_0_pattern=others) != 0
    out = tmp_path / "iq2.gguf"
    assert _quantize(smollm2_gguf, out, IQ2_XXS,
                     quantize_imatrix_data(ImportanceMatrix.load(path)), q8_0_pattern=others) == 0
    header = read_gguf_header(out)
    iq2 = {t.name for t in header.tensors if t.type_name == "IQ2_XXS"}
    assert len(iq2) >= 20 and all(n.endswith("ffn_down.weight") for n in iq2), sorted(iq2)
    assert header.tensor("blk.5.attn_q.weight").type_name == "Q8_0"
