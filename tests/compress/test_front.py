"""Compression's front door: a request that refuses contradictions, backends, one result."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from edgeward.compress import (
    CompressOptions,
    CompressRequest,
    CompressResult,
    EvalConfig,
    QuantRecipe,
    Reporter,
    backends,
    compress,
    register_backend,
)
from edgeward.errors import ArtifactError, ConfigError
from edgeward.hardware_profiles import HardwareProfile
from edgeward.provenance import BuildRecord, build_statement, read_report

_BOX = HardwareProfile(name="box", display_name="test box", memory_bytes=2**30,
                       bandwidth_gbps=10.0, cpu_features=("avx2",), default_context=256)
_FAST = CompressOptions(eval=EvalConfig(n_ctx=128, eval_tokens=256, top_k=64))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({}, "say what to make"),
    ({"type": "Q8_0"}, "--out PATH is required"),
    ({"type": "Q8_0", "plan_only": True}, "--plan needs --profile"),
    ({"profile": _BOX, "plan_only": True, "headroom": 1.0}, "headroom"),
    ({"type": "Q8_0", "out": Path("x"), "format": "tflite"}, "format 'tflite'"),
    ({"type": "int8-dynamic", "out": Path("x"), "format": "onnx", "imatrix": Path("m")},
     "--imatrix"),
    ({"type": "int4", "out": Path("x"), "format": "onnx", "prune_layers": 2},
     "--prune-layers"),
    ({"type": "int4", "out": Path("x"), "format": "onnx",
      "recipe": QuantRecipe(type="Q8_0", pure=True)}, "--override/--pure"),
    ({"type": "Q8_0", "out": Path("x"), "imatrix": Path("m"), "prune_layers": 1},
     "block numbers"),
])
def test_a_contradictory_request_is_refused_when_made(kwargs: dict[str, Any],
                                                      message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        CompressRequest(source=Path("m.gguf"), **kwargs)


def test_onnx_options_on_a_gguf_source_say_to_add_the_format(tiny_gguf: Path,
                                                              tmp_path: Path) -> None:
    from edgeward.compress import OnnxOptions

    req = CompressRequest(source=tiny_gguf, type="Q8_0", out=tmp_path / "x.gguf",
                          onnx=OnnxOptions(lm_head=True))
    with pytest.raises(ConfigError, match="--format onnx"):
        compress(req)
    assert not (tmp_path / "x.gguf").exists()


def test_the_backend_follows_the_source(tiny_gguf: Path, tmp_path: Path) -> None:
    gguf, onnx = backends()["gguf"], backends()["onnx"]
    assert gguf.accepts(tiny_gguf) and not onnx.accepts(tiny_gguf)
    onnx_dir = tmp_path / "enc"
    onnx_dir.mkdir()
    (onnx_dir / "model.onnx").write_bytes(b"\x08\x01")
    assert onnx.accepts(onnx_dir) and not gguf.accepts(onnx_dir)
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    (hf / "model.safetensors").write_bytes(b"\x00" * 16)
    assert gguf.accepts(hf)  # a causal LM checkpoint goes to llama.cpp's converter
    (hf / "config.json").write_text(json.dumps({"architectures": ["BertModel"]}))
    assert not gguf.accepts(hf) and onnx.accepts(hf)  # an encoder to ONNX


def test_an_unknown_type_names_the_backend_and_writes_nothing(tiny_gguf: Path,
                                                              tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown quantization type"):
        compress(CompressRequest(source=tiny_gguf, type="Q9_Z", out=tmp_path / "x.gguf"))
    with pytest.raises(ConfigError, match="not an ONNX type"):
        compress(CompressRequest(source=tiny_gguf, type="Q4_K_M", format="onnx",
                                 out=tmp_path / "x"))
    with pytest.raises(ConfigError, match="no such model"):
        compress(CompressRequest(source=tmp_path / "nope.gguf", type="Q8_0",
                                 out=tmp_path / "x.gguf"))
    assert list(tmp_path.iterdir()) == []


def test_a_fixed_type_gives_report_artifact_and_build_record(tiny_gguf: Path,
                                                             tmp_path: Path) -> None:
    out = tmp_path / "q8.gguf"
    result = compress(CompressRequest(source=tiny_gguf, type="Q8_0", out=out, options=_FAST))
    assert result.format == "gguf" and result.artifact == out and out.is_file()
    assert result.report is not None and result.report["type"] == "Q8_0"
    assert isinstance(result.build, BuildRecord)
    assert result.build.recipe["type"] == "Q8_0" and result.build.quality is not None
    assert result.build.source_model is not None
    # the report carries the record; provenance signs it as it is, no key guessing
    report = read_report(out)
    assert report is not None and report["build"] == result.build.to_dict()
    predicate = build_statement(out, report=report).predicate
    assert predicate["recipe"]["type"] == "Q8_0"
    assert predicate["quality"]["kld_mean"] == result.build.quality["kld_mean"]
    assert predicate["source_model"]["digest"]["sha256"] == result.build.source_model.sha256


def test_a_plan_gives_rows_in_one_shape(tiny_gguf: Path, tmp_path: Path) -> None:
    result = compress(CompressRequest(source=tiny_gguf, profile=_BOX, plan_only=True,
                                      candidates=("Q8_0", "Q4_0"), options=_FAST))
    assert result.artifact is None and result.report is None and result.build is None
    rows = result.rows()
    assert [r["type"] for r in rows] == ["Q8_0", "Q4_0"]
    assert sum(r["chosen"] for r in rows) == 1 and result.reason
    for r in rows:
        assert set(r) == {"type", "size_bytes", "bpw", "of_reference", "memory_bytes", "fits",
                          "gpu_layers", "n_layer", "tokens_per_s", "estimate", "kld", "top1",
                          "quality", "cached", "chosen"}
        assert r["estimate"] == "roofline" and r["gpu_layers"] is None
        assert r["kld"] is not None and r["fits"]
    assert result.to_dict()["candidates"][0]["type"] == "Q8_0"
    head = result.plan_summary()
    assert head["profile"] == "box" and head["backend"] == "cpu" and head["choice"]
    assert head["reference"].startswith("the unquantized source")


def test_a_new_backend_is_one_registration(tmp_path: Path) -> None:
    seen: list[CompressRequest] = []

    class Echo:
        name = "echo"
        types = ("copy",)

        def accepts(self, source: Path) -> bool:
            return source.suffix == ".echo"

        def check_type(self, name: str) -> None:
            if name != "copy":
                raise ConfigError(f"--type {name!r}: echo makes only copies")

        def run(self, request: CompressRequest, reporter: Reporter) -> CompressResult:
            seen.append(request)
            assert request.out is not None
            request.out.write_bytes(request.source.read_bytes())
            return CompressResult("echo", None, {"out": str(request.out)}, request.out, None)

    register_backend(Echo())
    try:
        src = tmp_path / "m.echo"
        src.write_bytes(b"weights")
        result = compress(CompressRequest(source=src, type="copy", out=tmp_path / "o"))
        assert result.format == "echo" and (tmp_path / "o").read_bytes() == b"weights"
        assert len(seen) == 1
    finally:
        from edgeward.compress import _front

        _front._BACKENDS.pop("echo", None)


def test_a_gguf_that_is_not_one_is_the_readers_error(tmp_path: Path) -> None:
    src = tmp_path / "m.bin"
    src.write_bytes(b"\x00" * 64)
    with pytest.raises(ArtifactError, match="not a GGUF"):
        compress(CompressRequest(source=src, type="Q8_0", out=tmp_path / "x.gguf"))


def test_an_old_report_without_a_build_record_still_gives_defaults(tmp_path: Path) -> None:
    from edgeward.provenance._report import defaults_from_report

    d = defaults_from_report({"recipe": {"type": "Q4_0"}, "quality": {"kld_mean": 0.1},
                              "source": {"name": "m", "path": "/m.gguf"}})
    assert d.recipe == {"type": "Q4_0"} and d.quality == {"kld_mean": 0.1}
    # a damaged record is refused, not guessed around
    with pytest.raises(ConfigError, match="build record is damaged"):
        defaults_from_report({"build": {"format": 3}, "recipe": {"type": "Q4_0"}})
    with pytest.raises(ConfigError, match="source_model"):
        defaults_from_report({"build": {"format": "gguf", "source_model": {"name": "m",
                                                                          "digest": "x"}}})


def test_a_build_record_reads_back_equal() -> None:
    from edgeward.provenance import SourceModel

    rec = BuildRecord(format="gguf", source_model=SourceModel(name="m", sha256="a" * 64),
                      recipe={"type": "Q8_0"}, started_at="2026-12-04T18:00:00+00:00")
    assert rec.started_at == "2026-12-04T18:00:00Z"
    assert BuildRecord.from_dict(rec.to_dict()) == rec


def test_an_onnx_directory_report_is_found_inside_it(tmp_path: Path) -> None:
    art = tmp_path / "enc-int8"
    art.mkdir()
    (art / "model.onnx").write_bytes(b"\x08\x01")
    record = BuildRecord(format="onnx", source_model=None, recipe={"type": "int8-dynamic"},
                         quality={"cosine_mean": 0.99})
    (art / "compression-report.json").write_text(json.dumps({"build": record.to_dict()}))
    report = read_report(art)
    assert report is not None
    predicate = build_statement(art, report=report).predicate
    assert predicate["recipe"] == {"type": "int8-dynamic"}
    assert predicate["quality"] == {"cosine_mean": 0.99}
