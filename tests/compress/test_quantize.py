"""Quantization through llama.cpp on the tiny generated model: types, recipe options,
fallbacks, requantization and every bad-input case (nothing half-written)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from _models import TinyLlamaSpec, write_tiny_gguf
from edgeward.compress import QUANT_TYPES, QuantRecipe, quantize
from edgeward.errors import ArtifactError, ConfigError, ResourceError
from edgeward.runtimes import LlamaCppRuntime, SamplingParams, read_gguf_header

NO_IMATRIX = [name for name, q in QUANT_TYPES.items() if not q.needs_imatrix]
NEED_IMATRIX = [name for name, q in QUANT_TYPES.items() if q.needs_imatrix]


def _leftovers(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize("qtype", NO_IMATRIX)
def test_every_main_type_quantizes_and_loads(tiny_gguf: Path, out_dir: Path, qtype: str) -> None:
    out = out_dir / f"tiny-{qtype}.gguf"
    result = quantize(tiny_gguf, out, QuantRecipe(type=qtype))
    assert out.is_file() and result.size_bytes == out.stat().st_size
    assert not result.requantized
    assert not result.fallback_tensors  # the tiny model's rows are multiples of 256
    header = read_gguf_header(out)
    assert header.metadata["general.file_type"] == QUANT_TYPES[qtype].ftype
    src_bytes = read_gguf_header(tiny_gguf).tensor_bytes
    if qtype != "F32":
        assert header.tensor_bytes < src_bytes
    assert 1.0 < result.bpw <= 32.0
    with LlamaCppRuntime() as rt:
        rt.load(out, context_length=64)
        assert rt.complete("the", SamplingParams(max_tokens=2, temperature=0)).stats \
            .completion_tokens >= 1
    assert _leftovers(out_dir) == []


@pytest.mark.parametrize("qtype", NEED_IMATRIX)
def test_types_that_need_an_importance_matrix_say_so(tiny_gguf: Path, out_dir: Path,
                                                    qtype: str) -> None:
    with pytest.raises(ConfigError, match="needs an importance matrix"):
        quantize(tiny_gguf, out_dir / "x.gguf", QuantRecipe(type=qtype))
    assert list(out_dir.iterdir()) == []


def test_bpw_orders_the_types(tiny_gguf: Path, out_dir: Path) -> None:
    bpw = {t: quantize(tiny_gguf, out_dir / f"{t}.gguf", QuantRecipe(type=t)).bpw
           for t in ("Q8_0", "Q6_K", "Q4_K_M", "Q2_K")}
    assert bpw["Q8_0"] > bpw["Q6_K"] > bpw["Q4_K_M"] > bpw["Q2_K"]


def test_fallbacks_are_reported(tmp_path: Path, out_dir: Path) -> None:
    # 320-wide rows are not multiples of 256: k-quants must fall back, as with SmolLM2's 576.
    src = write_tiny_gguf(tmp_path / "odd.gguf", TinyLlamaSpec(n_embd=320, n_ff=640))
    result = quantize(src, out_dir / "odd-q4km.gguf", QuantRecipe(type="Q4_K_M"))
    assert result.fallback_tensors
    names = {f.name for f in result.fallback_tensors}
    assert "blk.0.attn_q.weight" in names
    for f in result.fallback_tensors:
        assert f.columns % 256 != 0
        assert f.got != f.wanted
        assert read_gguf_header(result.artifact).tensor(f.name).type_name == f.got  # type: ignore[union-attr]
    assert any("fell back" in w for w in result.warnings)


def test_requantizing_warns(tiny_gguf: Path, out_dir: Path) -> None:
    q8 = quantize(tiny_gguf, out_dir / "q8.gguf", QuantRecipe(type="Q8_0")).artifact
    seen: list[str] = []
    result = quantize(q8, out_dir / "q4.gguf", QuantRecipe(type="Q4_0"), on_warning=seen.append)
    assert result.requantized
    assert any("already quantized" in w for w in seen)


def test_output_embedding_types_and_overrides(tiny_gguf: Path, out_dir: Path) -> None:
    recipe = QuantRecipe(type="Q4_0", output_type="F16", embedding_type="Q8_0",
                         overrides=(("ffn_down", "Q8_0"),))
    header = read_gguf_header(quantize(tiny_gguf, out_dir / "c.gguf", recipe).artifact)
    assert header.tensor("output.weight").type_name == "F16"  # type: ignore[union-attr]
    assert header.tensor("token_embd.weight").type_name == "Q8_0"  # type: ignore[union-attr]
    assert header.tensor("blk.0.ffn_down.weight").type_name == "Q8_0"  # type: ignore[union-attr]
    assert header.tensor("blk.0.ffn_up.weight").type_name == "Q4_0"  # type: ignore[union-attr]
    assert recipe.label == "Q4_0+custom"


def test_prune_layers(tiny_gguf: Path, out_dir: Path) -> None:
    result = quantize(tiny_gguf, out_dir / "p.gguf", QuantRecipe(type="Q8_0", prune_layers=(1,)))
    header = read_gguf_header(result.artifact)
    assert header.arch_value("block_count") == 1
    assert header.tensor("blk.1.attn_q.weight") is None
    with LlamaCppRuntime() as rt:
        rt.load(result.artifact, context_length=64)
        assert rt.complete("the", SamplingParams(max_tokens=2)).stats.completion_tokens >= 1


def test_pruning_a_missing_or_every_block_is_refused(tiny_gguf: Path, out_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot prune block\(s\) \[5\]"):
        quantize(tiny_gguf, out_dir / "p.gguf", QuantRecipe(type="Q8_0", prune_layers=(5,)))
    with pytest.raises(ConfigError, match="cannot prune all 2 blocks"):
        quantize(tiny_gguf, out_dir / "p.gguf", QuantRecipe(type="Q8_0", prune_layers=(0, 1)))


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"type": "Q4_K_X"}, "unknown quantization type 'Q4_K_X'"),
    ({"type": "Q4_0", "output_type": "Q9"}, "unknown tensor type 'Q9'"),
    ({"type": "Q4_0", "overrides": (("(", "Q8_0"),)}, "not a regex"),
    ({"type": "Q4_0", "prune_layers": (1, 1)}, "distinct"),
])
def test_bad_recipes(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        QuantRecipe(**kwargs)  # type: ignore[arg-type]


def test_existing_output_needs_force_and_is_left_alone(tiny_gguf: Path, out_dir: Path) -> None:
    out = out_dir / "a.gguf"
    out.write_bytes(b"precious")
    with pytest.raises(ConfigError, match="already exists; pass --force"):
        quantize(tiny_gguf, out, QuantRecipe(type="Q8_0"))
    assert out.read_bytes() == b"precious"
    quantize(tiny_gguf, out, QuantRecipe(type="Q8_0"), force=True)
    assert read_gguf_header(out).architecture == "llama"


def test_not_gguf_and_truncated_sources(tiny_gguf: Path, tmp_path: Path, out_dir: Path) -> None:
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"PK\x03\x04 a zip file, not a model" * 10)
    with pytest.raises(ArtifactError, match="not a GGUF file"):
        quantize(junk, out_dir / "x.gguf", QuantRecipe(type="Q8_0"))
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(tiny_gguf.read_bytes()[:-1000])
    with pytest.raises(ArtifactError, match="truncated"):
        quantize(cut, out_dir / "x.gguf", QuantRecipe(type="Q8_0"))
    assert list(out_dir.iterdir()) == []


def test_unknown_architecture(tiny_gguf: Path, tmp_path: Path, out_dir: Path) -> None:
    data = tiny_gguf.read_bytes().replace(b"\x05\x00\x00\x00\x00\x00\x00\x00llama",
                                          b"\x05\x00\x00\x00\x00\x00\x00\x00zzzzz", 1)
    src = tmp_path / "alien.gguf"
    src.write_bytes(data)
    with pytest.raises(ArtifactError, match="does not know the architecture 'zzzzz'"):
        quantize(src, out_dir / "x.gguf", QuantRecipe(type="Q8_0"))
    assert list(out_dir.iterdir()) == []


def test_missing_directory_and_no_disk_space(tiny_gguf: Path, out_dir: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="no such directory"):
        quantize(tiny_gguf, out_dir / "nope" / "x.gguf", QuantRecipe(type="Q8_0"))

    class Tiny:
        free = 1000

    monkeypatch.setattr(shutil, "disk_usage", lambda p: Tiny())
    with pytest.raises(ResourceError, match="MiB free"):
        quantize(tiny_gguf, out_dir / "x.gguf", QuantRecipe(type="Q8_0"))
    assert list(out_dir.iterdir()) == []


def test_failure_inside_llama_cpp_leaves_no_partial_file(tiny_gguf: Path, out_dir: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeward.compress import _quantize
    from edgeward.errors import RuntimeBackendError

    def fail_after_writing(src: Path, dst: Path, call: object) -> None:
        dst.write_bytes(b"half a model")
        raise RuntimeBackendError("llama.cpp quantize failed (code 1): disk full")

    monkeypatch.setattr(_quantize, "run_quantize", fail_after_writing)
    with pytest.raises(RuntimeBackendError, match="disk full"):
        quantize(tiny_gguf, out_dir / "x.gguf", QuantRecipe(type="Q8_0"))
    assert list(out_dir.iterdir()) == []
