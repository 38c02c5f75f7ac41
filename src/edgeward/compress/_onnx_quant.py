"""Quantize an ONNX model directory with ONNX Runtime, the way the target wants it.

``quantize_onnx(SRC_DIR, OUT_DIR, kind)`` writes a new directory (the tokenizer and config files
copied along) with ``model.onnx`` quantized as:

- ``int8-dynamic``: weights int8 per channel, activations quantized at run time
  (``quantize_dynamic``). On CPUs without VNNI the weights use a reduced range (7 bits): the
  u8×s8 multiply-add of AVX2/AVX-512F can saturate otherwise — ONNX Runtime's own advice,
  and what optimum's ``avx2``/``avx512`` presets set;
- ``int8-static``: QDQ int8 of the MatMul/Gemm nodes with activation ranges calibrated on text
  (MinMax over the calibration batches), so nothing is computed at run time to quantize
  activations; MatMuls that read a GELU's output stay in float (outliers); embedding tables
  int8 per row (below);
- ``int8-weight``: 8-bit weight-only ``MatMulNBits``, block-wise like int4: what causal LMs
  want — dynamic int8 quantizes each activation tensor with one range, and an LM's activation
  outliers make that costly (SmolLM2: mean KLD 0.44 with int8-dynamic, 0.004 with this);
- ``int4``: 4-bit weight-only ``MatMulNBits`` (block size 32 by default, symmetric,
  ``accuracy_level=4``: int8 compute on CPU), for the MatMul weights; a causal LM's head (the
  MatMul producing ``logits``) stays in float unless ``lm_head=True``;
- for the weight-only kinds and int8-static, the embedding tables that ``Gather`` reads (which
  those quantizers leave fp32: half of MiniLM) are stored int8 with a scale per row
  (:mod:`edgeward.compress._onnx_tensors`); a table a tied LM head reads too stays float;
- ``fp16``: every float tensor in half precision (GPU profiles), inputs and outputs kept fp32.

The source model must be a graph with shape information (optimum's exports are).
:func:`optimize_onnx` then applies ONNX Runtime's offline graph optimisations (``basic``:
constant folding and redundant-node removal, portable; ``extended``: operator fusions such as
attention and GELU into ONNX Runtime's contrib ops, for ONNX Runtime's CPU provider).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from edgeward.compress._onnx_export import staged_dir
from edgeward.compress._onnx_tensors import quantize_gather_tables
from edgeward.errors import ArtifactError, ConfigError, RuntimeBackendError
from edgeward.hardware_profiles import HardwareProfile

__all__ = ["ONNX_KINDS", "OPTIMIZATION_LEVELS", "OnnxKind", "optimize_onnx", "quantize_onnx",
           "reduce_range_for"]

OnnxKind = Literal["int8-dynamic", "int8-static", "int8-weight", "int4", "fp16"]
ONNX_KINDS: tuple[OnnxKind, ...] = ("int8-dynamic", "int8-static", "int8-weight", "int4", "fp16")
_MODEL = "model.onnx"
_CALIBRATION_BATCHES = 16
OPTIMIZATION_LEVELS = ("basic", "extended")


def reduce_range_for(profile: HardwareProfile | None) -> bool:
    """7-bit weights unless the CPU has VNNI (AVX-512 VNNI or AVX-VNNI) or is ARM."""
    if profile is None:
        return True
    feats = set(profile.cpu_features)
    return not ({"avx512_vnni", "avx_vnni", "neon", "dotprod"} & feats)


def _copy_side_files(src: Path, out: Path) -> None:
    for p in src.iterdir():
        if p.is_file() and not p.name.endswith((".onnx", ".onnx_data", ".onnx.data")):
            shutil.copy2(p, out / p.name)


def _calibration(src: Path, texts: Sequence[str], session_inputs: list[Any]
                 ) -> Iterator[dict[str, Any]]:
    """Tokenized calibration batches in the model's input names (``input_ids``,
    ``attention_mask``, ``token_type_ids``)."""
    import numpy as np
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(src / "tokenizer.json"))
    tok.enable_truncation(max_length=128)
    names = {i.name for i in session_inputs}
    for text in list(texts)[:_CALIBRATION_BATCHES]:
        enc = tok.encode(text)
        feed = {"input_ids": np.array([enc.ids], dtype=np.int64),
                "attention_mask": np.array([enc.attention_mask], dtype=np.int64),
                "token_type_ids": np.array([enc.type_ids], dtype=np.int64)}
        yield {k: v for k, v in feed.items() if k in names}


def quantize_onnx(src: Path, out: Path, kind: OnnxKind, *,
                  profile: HardwareProfile | None = None,
                  calibration_texts: Sequence[str] | None = None, block_size: int = 32,
                  lm_head: bool = False, optimize: str | None = None,
                  force: bool = False) -> Path:
    """Quantize ``src/model.onnx`` into the directory ``out`` (see the module docstring).

    Args:
        src: an ONNX model directory (``model.onnx`` and its tokenizer/config files).
        out: the new directory (written to a temporary one, renamed into place when done).
        kind: ``int8-dynamic``, ``int8-static``, ``int4`` or ``fp16``.
        profile: the target; decides ``reduce_range`` for int8-dynamic.
        calibration_texts: texts for int8-static (a few dozen sentences are enough).
        block_size: int4/int8-weight: weights per quantization block (a power of two, >= 16).
        lm_head: int4/int8-weight: quantize the LM head too.
        optimize: afterwards, ONNX Runtime's graph optimisation level (``basic`` or
            ``extended``; None: none).
        force: replace an existing ``out``.

    Returns:
        ``out``.

    Raises:
        ConfigError: a bad kind, missing calibration text, ``out`` exists, the compress
            extra is not installed; ArtifactError: ``src`` is not an ONNX model directory;
        RuntimeBackendError: ONNX Runtime's quantizer failed.
    """
    if kind not in ONNX_KINDS:
        raise ConfigError(f"--type {kind!r} is not an ONNX type; use one of "
                          f"{', '.join(ONNX_KINDS)}")
    model = Path(src) / _MODEL
    if not model.is_file():
        raise ArtifactError(f"{src}: no {_MODEL}; give an ONNX model directory (as "
                            "`edgeward compress ... --format onnx` or optimum export it)")
    if out.exists() and not force:
        raise ConfigError(f"{out}: exists; pass --force to replace it")
    if kind == "int8-static" and not calibration_texts:
        raise ConfigError("int8-static needs calibration text (--calibration-text FILE)")
    if block_size < 16 or block_size & (block_size - 1):
        raise ConfigError(f"--block-size {block_size}: use a power of two, at least 16")
    if optimize is not None and optimize not in OPTIMIZATION_LEVELS:
        raise ConfigError(f"--optimize {optimize!r}: use one of {', '.join(OPTIMIZATION_LEVELS)}")
    with staged_dir(out) as tmp:
        _copy_side_files(Path(src), tmp)
        try:
            _quantize(model, tmp / _MODEL, kind, profile=profile, texts=calibration_texts,
                      src=Path(src), block_size=block_size, lm_head=lm_head)
            if optimize is not None:
                optimize_onnx(tmp / _MODEL, optimize)
        except (ConfigError, ArtifactError):
            raise
        except ImportError as e:
            raise ConfigError(f"ONNX quantization needs the compress extra ({e}); "
                              "pip install 'edgeward[compress]'") from e
        except Exception as e:  # ORT raises plain exceptions
            raise RuntimeBackendError(f"ONNX Runtime could not quantize {model} to {kind}: "
                                      f"{e}") from e
    return out


_GELU_OPS = frozenset({"Erf", "Gelu", "FastGelu", "BiasGelu", "Tanh"})


def _after_gelu(model: Any, depth: int = 4) -> list[str]:
    """Names of the MatMul/Gemm nodes whose input comes from a GELU (within ``depth`` ops)."""
    producer = {out: n for n in model.graph.node for out in n.output}

    def reads_gelu(start: str) -> bool:
        frontier, seen = [start], set()
        for _ in range(depth):
            nxt = []
            for name in frontier:
                p = producer.get(name)
                if p is None or id(p) in seen:
                    continue
                seen.add(id(p))
                if p.op_type in _GELU_OPS:
                    return True
                nxt.extend(p.input)
            frontier = nxt
        return False

    return [n.name for n in model.graph.node
            if n.op_type in ("MatMul", "Gemm") and n.input and reads_gelu(n.input[0])]


def _lm_head_nodes(model: Any) -> list[str]:
    """The MatMul(s) whose output is the ``logits`` graph output."""
    outputs = {o.name for o in model.graph.output if o.name == "logits"}
    return [n.name for n in model.graph.node if n.op_type == "MatMul" and outputs & set(n.output)]


def _fold_weight_transposes(model: Any, nodes: list[str]) -> None:
    """Give the MatMuls ``nodes`` constant weights where the exporter transposes an
    initializer at run time (a tied LM head reuses the embedding that way), so that the
    4-bit quantizer, which only takes constant weights, can quantize them."""
    import numpy as np
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    producer = {out: n for n in model.graph.node for out in n.output}
    for node in [n for n in model.graph.node if n.name in nodes]:
        t = producer.get(node.input[1])
        if t is None or t.op_type != "Transpose" or t.input[0] not in inits:
            continue
        perm = next((list(a.ints) for a in t.attribute if a.name == "perm"), None)
        weight = np.transpose(numpy_helper.to_array(inits[t.input[0]]), perm)
        model.graph.initializer.append(numpy_helper.from_array(
            np.ascontiguousarray(weight), name=t.output[0]))
        model.graph.node.remove(t)


def _int8_tables(path: Path) -> None:
    """Rewrite ``path`` with its embedding tables in int8 (the static quantizer here takes
    MatMul/Gemm only)."""
    import onnx

    model = onnx.load(str(path))
    if quantize_gather_tables(model).quantized:
        onnx.save(model, str(path))


def optimize_onnx(path: Path, level: str) -> None:
    """Rewrite ``path`` with ONNX Runtime's offline graph optimisations at ``level``."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
                                     if level == "basic"
                                     else ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED)
    optimized = path.with_name(path.stem + ".opt.onnx")
    opts.optimized_model_filepath = str(optimized)
    ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    optimized.replace(path)


def _quantize(model: Path, dst: Path, kind: OnnxKind, *, profile: HardwareProfile | None,
              texts: Sequence[str] | None, src: Path, block_size: int, lm_head: bool) -> None:
    if kind == "int8-dynamic":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(str(model), str(dst), weight_type=QuantType.QInt8, per_channel=True,
                         reduce_range=reduce_range_for(profile))
    elif kind == "int8-static":
        import onnxruntime as ort
        from onnxruntime.quantization import (
            CalibrationDataReader,
            QuantFormat,
            QuantType,
            quantize_static,
        )

        inputs = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).get_inputs()
        batches = _calibration(src, texts or [], inputs)

        class Reader(CalibrationDataReader):  # type: ignore[misc]
            def get_next(self) -> dict[str, Any] | None:
                return next(batches, None)

        # MatMul/Gemm only: quantizing the activations around LayerNorm, Softmax and the
        # residual Adds with calibrated ranges costs far more accuracy than it saves
        # (MiniLM: mean cosine 0.38 with every op, 0.93 with MatMuls only); and the MatMuls
        # that read a GELU's output stay in float: those activations have outliers that no
        # static 8-bit range covers (MiniLM: 0.990 with them excluded).
        import onnx

        graph = onnx.load(str(model), load_external_data=False)
        quantize_static(str(model), str(dst), Reader(), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        per_channel=True, reduce_range=reduce_range_for(profile),
                        op_types_to_quantize=["MatMul", "Gemm"],
                        nodes_to_exclude=_after_gelu(graph))
        _int8_tables(dst)
    elif kind in ("int4", "int8-weight"):
        import onnx
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

        graph = onnx.load(str(model))
        head = _lm_head_nodes(graph)
        if lm_head:
            _fold_weight_transposes(graph, head)
        q = MatMulNBitsQuantizer(graph, bits=4 if kind == "int4" else 8, block_size=block_size,
                                 is_symmetric=True, accuracy_level=4,
                                 nodes_to_exclude=[] if lm_head else head)
        q.process()
        quantize_gather_tables(q.model.model)  # MatMulNBits leaves the embeddings fp32
        q.model.save_model_to_file(str(dst), use_external_data_format=False)
    else:
        import onnx
        from onnxruntime.transformers.float16 import convert_float_to_float16

        half = convert_float_to_float16(onnx.load(str(model)), keep_io_types=True)
        onnx.save(half, str(dst))
