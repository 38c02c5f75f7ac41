"""The ONNX path's tidy-ups: embedding tables in int8 for the kinds whose quantizer leaves them
fp32 (so MiniLM's int4 is no longer larger than its int8), a sentence on what stays float, the
fp32 reference announced (or deleted with --no-keep-reference), and no third-party warnings in
normal output."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from _models import write_tiny_onnx
from edgeward.compress._onnx_export import quiet_third_party
from edgeward.compress._onnx_tensors import float_tensors, quantize_gather_tables

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def _run(model: object, ids: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(),  # type: ignore[attr-defined]
                                providers=["CPUExecutionProvider"])
    out: np.ndarray = sess.run(None, {"input_ids": ids,
                                      "attention_mask": np.ones_like(ids)})[0]
    return out


def _tiny(tmp_path: Path, vocab: int = 4096) -> object:
    return onnx.load(str(write_tiny_onnx(tmp_path / "tiny.onnx", vocab=vocab, dim=32)))


def test_an_embedding_table_becomes_int8_rows_and_gives_the_same_output(tmp_path: Path) -> None:
    model = _tiny(tmp_path)
    ids = np.array([[0, 5, 4095, 17, 17]], dtype=np.int64)
    before = _run(model, ids)
    assert float_tensors(model).largest[0] == ("embedding", 4096 * 32 * 4)
    done = quantize_gather_tables(model)
    assert done.quantized == ("embedding",) and done.shared == ()
    assert done.bytes_saved == 4096 * 32 * 4 - 4096 * 32 - 4096 * 4
    inits = {i.name: i for i in model.graph.initializer}  # type: ignore[attr-defined]
    assert "embedding" not in inits
    assert inits["embedding_int8"].data_type == onnx.TensorProto.INT8
    onnx.checker.check_model(model)
    after = _run(model, ids)
    # per-row int8: each value within half a step (max|row| / 254) before the tanh
    assert np.abs(after - before).max() < 0.05, np.abs(after - before).max()
    left = float_tensors(model)
    # the MatMul weight stays float; the per-row scales are not counted as float weights
    assert [n for n, _ in left.largest] == ["proj"] and left.scale_bytes == 4096 * 4
    assert "1 tensor(s) stay float, 4 KiB in all" in left.note("why")
    assert left.note("why").endswith("why; the quantization scales add 16 KiB.")


def test_small_and_shared_tables_stay_float_and_the_note_says_why(tmp_path: Path) -> None:
    small = _tiny(tmp_path, vocab=128)  # 4096 values: not worth a scale per row
    assert quantize_gather_tables(small).quantized == ()
    from onnx import helper

    model = _tiny(tmp_path)
    graph = model.graph  # type: ignore[attr-defined]
    # a tied head: the table is also read, transposed, by a MatMul
    graph.node.extend([
        helper.make_node("Transpose", ["embedding"], ["table_t"], perm=[1, 0]),
        helper.make_node("MatMul", ["last_hidden_state", "table_t"], ["logits"])])
    graph.output.append(helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, None))
    done = quantize_gather_tables(model)
    assert done.quantized == () and done.shared == ("embedding",) and done.bytes_saved == 0
    left = float_tensors(model)
    assert left.shared_tables == ("embedding",)
    note = left.note()
    assert "embedding (0.5 MiB)" in note and "--lm-head quantizes both" in note, note


def test_third_party_warnings_and_logs_are_kept_out_and_restored() -> None:
    noisy = logging.getLogger("onnxruntime.quantization.test")
    root_level = logging.getLogger().level
    # a handler on each logger itself: transformers and optimum may stop propagation to the
    # root logger once they have configured themselves (earlier tests load them)
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if all(r is not record for r in records):  # once, though it propagates
                records.append(record)

    keep = Keep(level=logging.DEBUG)
    watched = [noisy, logging.getLogger("transformers"), logging.getLogger("optimum"),
               logging.getLogger()]
    for lg in watched:
        lg.addHandler(keep)
    try:
        _check_quiet(noisy, records, root_level)
    finally:
        for lg in watched:
            lg.removeHandler(keep)


def _check_quiet(noisy: logging.Logger, records: list[logging.LogRecord],
                 root_level: int) -> None:
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        with quiet_third_party():
            warnings.warn("Warning: from torch", UserWarning, stacklevel=1)
            noisy.warning("Warning: from onnxruntime")
            logging.getLogger("transformers").warning("Warning: from transformers")
            with quiet_third_party():  # nested: the outer block keeps control
                pass
            logging.warning("Warning: on the root logger")
            logging.getLogger("optimum").error("errors still show")
        assert shown == []
        assert {r.getMessage() for r in records} == {"errors still show"}
        assert logging.getLogger().level == root_level
        with quiet_third_party(False):  # --debug: untouched
            warnings.warn("shown", UserWarning, stacklevel=1)
            noisy.warning("also shown")
        assert [str(w.message) for w in shown] == ["shown"]
    noisy.warning("after the block")
    tail = [r.getMessage() for r in records if r.name == noisy.name]
    assert tail[-2:] == ["also shown", "after the block"]


@pytest.mark.integration
def test_minilm_int4_is_no_larger_than_int8_at_the_same_quality(minilm_onnx: Path,
                                                                 tmp_path: Path) -> None:
    from edgeward.compress import OnnxOptions, compress_onnx

    opts = OnnxOptions()
    q8 = compress_onnx(minilm_onnx, tmp_path / "q8", "int8-dynamic", options=opts)
    q4 = compress_onnx(minilm_onnx, tmp_path / "q4", "int4", options=opts)
    assert q4["size_bytes"] <= q8["size_bytes"], (q4["size_bytes"], q8["size_bytes"])
    # was 0.61 of fp32 with the fp32 word embeddings (44.7 MiB); quality unchanged (0.9698)
    assert q4["size_ratio"] < 0.25 and q4["quality"]["cosine_mean"] >= 0.96, q4
    floats = q4["float_tensors"]
    assert floats["bytes"] < 2**20 and floats["shared_tables"] == []
    assert "stay float" in floats["note"] and "MatMul weights and embedding tables" in \
        floats["note"]
    model = onnx.load(str(tmp_path / "q4" / "model.onnx"))
    types = {i.name: i.data_type for i in model.graph.initializer}
    assert types["embeddings.word_embeddings.weight_int8"] == onnx.TensorProto.INT8
    # an ONNX source is its own reference: nothing is made beside OUT
    assert q4["reference"] == str(minilm_onnx) and q4["reference_kept"] is True
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q4", "q8"]


def _edgeward(*args: str) -> subprocess.CompletedProcess[str]:
    """The real program in a fresh process: pytest's own warning and log capture would hide
    what a user sees."""
    return subprocess.run([sys.executable, "-m", "edgeward", *args], capture_output=True,
                          text=True, timeout=600, check=False)


def _noise(text: str) -> list[str]:
    return [ln for ln in text.splitlines()
            if any(k in ln for k in ("Warning", "warn(", "[W:onnxruntime", "[INFO]"))]


@pytest.mark.integration
def test_the_cli_is_quiet_and_says_where_the_reference_is(minilm_dir: Path,
                                                          tmp_path: Path) -> None:
    """A real export and int4 compression: no third-party warning reaches the output (it does
    with --debug); the reference is deleted with --no-keep-reference, and kept and announced
    by default."""
    pytest.importorskip("optimum.exporters.onnx", reason="the compress extra is not installed")
    done = _edgeward("compress", str(minilm_dir), "--format", "onnx", "--type", "int4",
                     "--out", str(tmp_path / "m4"), "--no-keep-reference", "--no-fingerprint")
    assert done.returncode == 0, done.stderr
    assert _noise(done.stdout + done.stderr) == [], done.stdout + done.stderr
    flat = " ".join(done.stdout.split())  # rich wraps long lines
    assert "fp32 reference not kept: deleted after measurement (--no-keep-reference)" in flat
    assert "stay float" in flat and "quantization scales add" in flat, flat
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m4"]  # no m4.fp32, no temp dir
    report = json.loads((tmp_path / "m4" / "compression-report.json").read_text())
    assert report["reference"] is None and report["reference_kept"] is False
    assert report["reference_size_bytes"] > 80 * 2**20 and report["size_ratio"] < 0.25
    assert report["quality"]["cosine_mean"] >= 0.96

    done = _edgeward("--debug", "compress", str(minilm_dir), "--format", "onnx", "--type",
                     "int8-dynamic", "--out", str(tmp_path / "m8"), "--no-eval",
                     "--no-fingerprint")
    assert done.returncode == 0, done.stderr
    # with --debug the libraries speak (torch's tracer, ONNX Runtime's quantizer): the check
    # above would have seen them
    assert _noise(done.stderr), done.stderr
    flat = " ".join(done.stdout.split())
    assert f"fp32 reference kept at {tmp_path / 'm8.fp32'}" in flat, flat
    assert "--no-keep-reference deletes it after measurement" in flat
    assert (tmp_path / "m8.fp32" / "model.onnx").is_file()


@pytest.mark.integration
def test_the_auto_recipe_measures_against_the_unpruned_export_and_can_drop_it(
        minilm_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("optimum.exporters.onnx", reason="the compress extra is not installed")
    from edgeward.compress import OnnxOptions, compress_onnx
    from edgeward.hardware_profiles import HardwareProfile

    pi = HardwareProfile(name="tight", display_name="test", memory_bytes=160 * 2**20,
                         bandwidth_gbps=10.0, cpu_features=("avx2",))
    report = compress_onnx(minilm_dir, tmp_path / "auto", None, profile=pi, options=OnnxOptions(
        prune_ffn=0.25, keep_reference=False, min_cosine=0.5,
        calibration_texts=["Edge devices run small models locally."] * 8))
    pruned_fp32 = report["plan"]["candidates"][0]["size_bytes"]
    # the reference is the unpruned export (87 MiB), not the pruned fp32 row (80 MiB)
    assert report["reference_size_bytes"] > pruned_fp32 * 1.05, report
    assert report["reference"] is None and report["reference_kept"] is False
    assert "not kept" in report["reference_note"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["auto"]


@pytest.mark.integration
def test_an_encoder_directory_plans_onnx_by_itself_at_80_columns(minilm_dir: Path) -> None:
    """No --format: a Hugging Face encoder goes to ONNX, and its plan reads at 80 columns
    with the one plan table every format shares."""
    pytest.importorskip("optimum.exporters.onnx", reason="the compress extra is not installed")
    env_cols = {"COLUMNS": "80"}
    done = subprocess.run([sys.executable, "-m", "edgeward", "compress", str(minilm_dir),
                           "--profile", "raspberry-pi-5-8gb", "--plan",
                           "--candidates", "int8-dynamic,int4"],
                          capture_output=True, text=True, timeout=600, check=False,
                          env={**os.environ, **env_cols})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert max(len(ln) for ln in lines) <= 80
    table = "\n".join(lines)
    assert "fp32" in table and "reference" in table and "cos 0." in table
    assert "◀" in table and "choice: int" in table
    assert "…" not in table  # nothing cut to fit
