"""Quantization types: llama.cpp's file types (whole-model recipes) and tensor types."""

from __future__ import annotations

from dataclasses import dataclass

from edgeward.errors import ConfigError

__all__ = ["QUANT_TYPES", "TENSOR_TYPES", "QuantType", "quant_type", "tensor_type"]


@dataclass(frozen=True)
class QuantType:
    """One of llama.cpp's model file types (``llama_ftype``), as ``llama-quantize`` names it.

    Attributes:
        name: the name users type (``"Q4_K_M"``).
        ftype: llama.cpp's ``LLAMA_FTYPE_MOSTLY_*`` value.
        nominal_bpw: bits per weight llama.cpp quotes for a 7B llama model; only a first guess:
            the real figure depends on the model (fallbacks, 1-D tensors) and is measured.
        needs_imatrix: llama.cpp refuses (or produces garbage) without an importance matrix.
    """

    name: str
    ftype: int
    nominal_bpw: float
    needs_imatrix: bool = False


# Nominal bits per weight: llama.cpp's tools/quantize/quantize.cpp list (7B llama figures).
_TABLE = [
    QuantType("F32", 0, 32.0),
    QuantType("F16", 1, 16.0),
    QuantType("BF16", 32, 16.0),
    QuantType("Q8_0", 7, 8.50),
    QuantType("Q6_K", 18, 6.56),
    QuantType("Q5_K_M", 17, 5.67),
    QuantType("Q5_K_S", 16, 5.52),
    QuantType("Q5_1", 9, 6.00),
    QuantType("Q5_0", 8, 5.50),
    QuantType("Q4_K_M", 15, 4.83),
    QuantType("Q4_K_S", 14, 4.57),
    QuantType("Q4_1", 3, 5.00),
    QuantType("Q4_0", 2, 4.50),
    QuantType("IQ4_XS", 30, 4.25),
    QuantType("IQ4_NL", 25, 4.50),
    QuantType("Q3_K_L", 13, 4.27),
    QuantType("Q3_K_M", 12, 3.91),
    QuantType("Q3_K_S", 11, 3.50),
    QuantType("IQ3_M", 27, 3.66),
    QuantType("IQ3_S", 26, 3.44),
    QuantType("IQ3_XS", 22, 3.30, needs_imatrix=True),
    QuantType("IQ3_XXS", 23, 3.06, needs_imatrix=True),
    QuantType("Q2_K", 10, 2.96),
    QuantType("Q2_K_S", 21, 2.96, needs_imatrix=True),
    QuantType("IQ2_M", 29, 2.70, needs_imatrix=True),
    QuantType("IQ2_S", 28, 2.50, needs_imatrix=True),
    QuantType("IQ2_XS", 20, 2.31, needs_imatrix=True),
    QuantType("IQ2_XXS", 19, 2.06, needs_imatrix=True),
    QuantType("IQ1_M", 31, 1.75, needs_imatrix=True),
    QuantType("IQ1_S", 24, 1.56, needs_imatrix=True),
]
QUANT_TYPES: dict[str, QuantType] = {q.name: q for q in _TABLE}

#: ggml tensor types usable for per-tensor overrides and output/embedding types.
TENSOR_TYPES: dict[str, int] = {
    "F32": 0, "F16": 1, "Q4_0": 2, "Q4_1": 3, "Q5_0": 6, "Q5_1": 7, "Q8_0": 8, "Q2_K": 10,
    "Q3_K": 11, "Q4_K": 12, "Q5_K": 13, "Q6_K": 14, "IQ2_XXS": 16, "IQ2_XS": 17,
    "IQ3_XXS": 18, "IQ1_S": 19, "IQ4_NL": 20, "IQ3_S": 21, "IQ2_S": 22, "IQ4_XS": 23,
    "IQ1_M": 29, "BF16": 30,
}


def quant_type(name: str) -> QuantType:
    """The model file type called ``name`` (case-insensitive).

    Raises:
        ConfigError: unknown name (the message lists the known ones).
    """
    try:
        return QUANT_TYPES[name.upper()]
    except KeyError:
        raise ConfigError(
            f"unknown quantization type {name!r}; known types: {', '.join(QUANT_TYPES)}"
        ) from None


def tensor_type(name: str) -> int:
    """The ggml tensor type called ``name`` (case-insensitive).

    Raises:
        ConfigError: unknown name (the message lists the known ones).
    """
    try:
        return TENSOR_TYPES[name.upper()]
    except KeyError:
        raise ConfigError(
            f"unknown tensor type {name!r}; known types: {', '.join(TENSOR_TYPES)}"
        ) from None
