"""What an ONNX graph's weights are stored as, and int8 embedding tables for the weight-only
kinds.

ONNX Runtime's weight-only quantizer (``MatMulNBits``) takes MatMul weights only, and its static
quantizer here takes MatMul/Gemm only: an embedding table, which a ``Gather`` reads row by row,
stays fp32. For MiniLM that table is half the model (30,522 x 384 floats, 44.7 MiB), which made
int4 (52.9 MiB) larger than int8-dynamic (22.8 MiB, whose quantizer does take ``Gather``).

:func:`quantize_gather_tables` stores such tables as int8 with one scale per row (symmetric,
``scale = max|row| / 127``) and reads them back with standard ONNX operators only —
``Gather`` of the int8 rows and of their scales, ``Cast``, ``Mul`` — so every ONNX Runtime
version and execution provider runs the result (the contrib ``GatherBlockQuantized`` needs a
recent ONNX Runtime on the device). A table that something other than a row ``Gather`` reads
too (a tied LM head transposes the embedding) stays float: quantizing it would change the head.

:func:`float_tensors` says what stays float in a finished model, so the report can say it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["FloatTensors", "GatherTables", "float_tensors", "quantize_gather_tables"]

_MIN_TABLE = 1 << 16  # elements: smaller tables (token types, ~3 KiB) are not worth a scale
_FLOAT_TYPES = {1: 4, 10: 2, 16: 2}  # TensorProto FLOAT, FLOAT16, BFLOAT16 -> bytes per value
_LISTED = 3  # how many of the largest float tensors the note names
_NAMED = 2**20 // 10  # bytes: smaller float tensors are counted, not named


@dataclass(frozen=True)
class GatherTables:
    """What :func:`quantize_gather_tables` did.

    Attributes:
        quantized: the tables now stored as int8 (initializer names).
        shared: tables that stay float because another operator reads them too.
        bytes_saved: how much smaller the initializers are, in bytes.
    """

    quantized: tuple[str, ...]
    shared: tuple[str, ...]
    bytes_saved: int


@dataclass(frozen=True)
class FloatTensors:
    """The float initializers of a model (see :func:`float_tensors`).

    Attributes:
        count: how many initializers are float (fp32, fp16 or bf16).
        bytes: their size in all, in bytes.
        largest: the largest few, ``(name, bytes)``, largest first.
        shared_tables: embedding tables kept float because another operator reads them too.
        scale_bytes: the float quantization scales (part of the quantized weights, not
            counted in ``count`` and ``bytes``), in bytes.
    """

    count: int
    bytes: int
    largest: tuple[tuple[str, int], ...]
    shared_tables: tuple[str, ...] = ()
    scale_bytes: int = 0

    def note(self, reason: str = "") -> str:
        """One sentence: which tensors stay float, how many MiB, and ``reason`` (why they
        do); empty when none."""
        if not self.count:
            return ""
        big = [(n, b) for n, b in self.largest if b >= _NAMED]
        named = ", ".join(f"{n} ({_size(b)})" for n, b in big)
        more = self.count - len(big)
        text = f"{self.count} tensor(s) stay float, {_size(self.bytes)} in all"
        if big:
            text += f" (largest: {named}{f', and {more} more' if more > 0 else ''})"
        if reason:
            text += f": {reason}"
        if self.shared_tables:
            text += (f"; the embedding table {', '.join(self.shared_tables)} stays float "
                     "because another operator reads it too (a tied LM head: --lm-head "
                     "quantizes both)")
        if self.scale_bytes:
            text += f"; the quantization scales add {_size(self.scale_bytes)}"
        return text + "."

    def to_dict(self, reason: str = "") -> dict[str, Any]:
        """The report's ``float_tensors`` entry (``note``: :meth:`note` with ``reason``)."""
        return {"count": self.count, "bytes": self.bytes,
                "largest": [{"name": n, "bytes": b} for n, b in self.largest],
                "shared_tables": list(self.shared_tables), "scale_bytes": self.scale_bytes,
                "note": self.note(reason)}


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 // 10 else f"{n / 2**10:.0f} KiB"


def _consumers(graph: Any) -> dict[str, list[Any]]:
    """Per tensor name, the nodes that read it — in subgraphs too (an ``If`` branch may read
    an outer initializer by name: such a reader counts as a non-``Gather`` one)."""
    readers: dict[str, list[Any]] = {}

    def walk(g: Any, top: bool) -> None:
        for node in g.node:
            for name in node.input:
                readers.setdefault(name, []).append(node if top else None)
            for attr in node.attribute:
                for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
                    walk(sub, False)

    walk(graph, True)
    return readers


def _row_gather(node: Any, name: str) -> bool:
    if node is None or node.op_type != "Gather" or node.domain not in ("", "ai.onnx"):
        return False
    axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
    return bool(node.input[0] == name and name not in node.input[1:] and axis == 0)


def quantize_gather_tables(model: Any, *, min_elements: int = _MIN_TABLE) -> GatherTables:
    """Store every fp32 2-D table that only row ``Gather`` nodes read as int8 with per-row
    scales, in place (see the module docstring).

    Args:
        model: an ``onnx.ModelProto``, changed in place.
        min_elements: smaller tables stay float.

    Returns:
        What was quantized, what stayed float because it is shared, and the bytes saved.
    """
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    readers = _consumers(graph)
    outputs = {o.name for o in graph.output}
    replace: dict[int, list[Any]] = {}
    quantized, shared, saved = [], [], 0
    for init in list(graph.initializer):
        users = readers.get(init.name, [])
        if (init.data_type != TensorProto.FLOAT or len(init.dims) != 2 or not users
                or int(np.prod(init.dims)) < min_elements):
            continue
        if init.name in outputs or not all(_row_gather(u, init.name) for u in users):
            if any(_row_gather(u, init.name) for u in users):
                shared.append(init.name)
            continue
        table = numpy_helper.to_array(init).astype(np.float32)
        scale = np.abs(table).max(axis=1, keepdims=True) / 127.0
        scale[scale == 0] = 1.0  # an all-zero row (padding) stays zero
        rows = np.clip(np.rint(table / scale), -127, 127).astype(np.int8)
        q_name, s_name = f"{init.name}_int8", f"{init.name}_scale"
        graph.initializer.remove(init)
        graph.initializer.extend([numpy_helper.from_array(rows, q_name),
                                  numpy_helper.from_array(scale.astype(np.float32), s_name)])
        for inp in [i for i in graph.input if i.name == init.name]:
            graph.input.remove(inp)  # old exports list initializers as inputs too
        saved += table.nbytes - rows.nbytes - scale.nbytes
        quantized.append(init.name)
        for node in users:
            out, idx = node.output[0], node.input[1]
            base = node.name or out
            replace[id(node)] = [
                helper.make_node("Gather", [q_name, idx], [f"{out}_int8"], name=f"{base}_int8",
                                 axis=0),
                helper.make_node("Gather", [s_name, idx], [f"{out}_scale"],
                                 name=f"{base}_scale", axis=0),
                helper.make_node("Cast", [f"{out}_int8"], [f"{out}_rows"], name=f"{base}_cast",
                                 to=TensorProto.FLOAT),
                helper.make_node("Mul", [f"{out}_rows", f"{out}_scale"], [out],
                                 name=f"{base}_dequant")]
    if replace:
        nodes = [n for node in graph.node for n in replace.get(id(node), [node])]
        del graph.node[:]
        graph.node.extend(nodes)
    return GatherTables(tuple(quantized), tuple(shared), int(saved))


# (op type, input index) of the inputs that are quantization scales, not weights
_SCALE_INPUTS = frozenset({("MatMulNBits", 2), ("DequantizeLinear", 1), ("QuantizeLinear", 1),
                           ("GatherBlockQuantized", 2), ("DynamicQuantizeMatMul", 2),
                           ("MatMulIntegerToFloat", 2), ("MatMulIntegerToFloat", 3)})


def _scales(model: Any) -> set[str]:
    """Initializers that are quantization scales (of ONNX Runtime's quantized operators, or
    the per-row scales of :func:`quantize_gather_tables`)."""
    names = {n.input[i] for n in model.graph.node for i in range(len(n.input))
             if (n.op_type, i) in _SCALE_INPUTS}
    int8 = {i.name for i in model.graph.initializer if i.name.endswith("_int8")}
    names |= {i.name for i in model.graph.initializer
              if i.name.endswith("_scale") and f"{i.name[:-len('_scale')]}_int8" in int8}
    return names


def float_tensors(model: Any | Path, *, min_elements: int = _MIN_TABLE) -> FloatTensors:
    """The float initializers of ``model`` (an ``onnx.ModelProto`` or a ``model.onnx`` path;
    external data is counted without being loaded) that are weights, not quantization
    scales, and the embedding tables among them that stay float because another operator
    reads them too."""
    import numpy as np

    if isinstance(model, Path):
        import onnx

        model = onnx.load(str(model), load_external_data=False)
    readers = _consumers(model.graph)
    scales = _scales(model)

    def nbytes(i: Any) -> int:
        return int(np.prod(i.dims)) * _FLOAT_TYPES[i.data_type]

    floats = [i for i in model.graph.initializer if i.data_type in _FLOAT_TYPES]
    weights = [i for i in floats if i.name not in scales]
    sizes = sorted(((i.name, nbytes(i)) for i in weights), key=lambda t: -t[1])
    shared = tuple(i.name for i in weights
                   if len(i.dims) == 2 and int(np.prod(i.dims)) >= min_elements
                   and any(_row_gather(u, i.name) for u in readers.get(i.name, []))
                   and not all(_row_gather(u, i.name) for u in readers[i.name]))
    return FloatTensors(count=len(sizes), bytes=sum(b for _, b in sizes),
                        largest=tuple(sizes[:_LISTED]), shared_tables=shared,
                        scale_bytes=sum(nbytes(i) for i in floats if i.name in scales))
