"""Compression: quantize, prune and evaluate a model for a hardware profile.

GGUF models go through llama.cpp's own quantizer (``llama_model_quantize``); edgeward adds what
no single tool does: it measures every candidate's quality against the unquantized reference
(perplexity, KL divergence, top-1 agreement, as ``llama-perplexity --kl-divergence`` defines
them), predicts the memory it needs on a profile, and picks the best candidate that fits::

    from edgeward.compress import QuantRecipe, compress_gguf, compress_auto
    from edgeward.hardware_profiles import get_profile

    report = compress_gguf(src, out, QuantRecipe(type="Q4_K_M"))
    print(report.to_dict()["quality"]["kld_mean"])
    report = compress_auto(src, out2, get_profile("raspberry-pi-5-8gb"))

Every artifact is written atomically (a temporary file in the target directory, renamed into
place) with ``ARTIFACT.report.json`` and a model-card stub ``ARTIFACT.card.md`` beside it.
Importance matrices (:func:`make_imatrix`) and layer-pruning scores (:func:`prune_plan`) need
torch and transformers: ``pip install 'edgeward[compress]'``.

May import: :mod:`edgeward.hardware_profiles`, :mod:`edgeward.provenance`,
:mod:`edgeward.runtimes`, :mod:`edgeward.errors`.
"""

from edgeward.compress._chart import ChartPoint, render_text
from edgeward.compress._compress import (
    compress_auto,
    compress_gguf,
    default_candidates,
    make_imatrix,
    plan_gguf,
    prune_plan,
)
from edgeward.compress._convert import (
    ConversionInfo,
    check_hf_checkpoint,
    convert_checkpoint,
    converted_gguf,
    default_converter_dir,
    find_converter,
    install_converter,
    is_hf_checkpoint,
)
from edgeward.compress._eval import EvalConfig, QualityReport, compute_reference, evaluate
from edgeward.compress._front import (
    CompressBackend,
    CompressRequest,
    CompressResult,
    backends,
    compress,
    register_backend,
)
from edgeward.compress._memory import MemoryPrediction, measure_allocation, predict_memory
from edgeward.compress._onnx_export import export_onnx
from edgeward.compress._onnx_pipeline import (
    ONNX_TYPES,
    OnnxOptions,
    compress_onnx,
    default_calibration_texts,
    plan_onnx,
)
from edgeward.compress._onnx_quant import quantize_onnx
from edgeward.compress._pipeline import (
    DEFAULT_CANDIDATES,
    Candidate,
    CompressOptions,
    Plan,
    Reporter,
    choose,
    default_cache_dir,
    sha256_file,
)
from edgeward.compress._quantize import FallbackTensor, QuantizeResult, QuantRecipe, quantize
from edgeward.compress._report import CompressionReport, output_paths
from edgeward.compress._target import Placement, SpeedEstimate, estimate_decode, place
from edgeward.compress._text import Text, calibration_text, evaluation_text
from edgeward.compress._types import QUANT_TYPES, QuantType, quant_type

__all__ = [
    "DEFAULT_CANDIDATES",
    "ONNX_TYPES",
    "QUANT_TYPES",
    "Candidate",
    "ChartPoint",
    "CompressBackend",
    "CompressOptions",
    "CompressRequest",
    "CompressResult",
    "CompressionReport",
    "ConversionInfo",
    "EvalConfig",
    "FallbackTensor",
    "MemoryPrediction",
    "OnnxOptions",
    "Placement",
    "Plan",
    "QualityReport",
    "QuantRecipe",
    "QuantType",
    "QuantizeResult",
    "Reporter",
    "SpeedEstimate",
    "Text",
    "backends",
    "calibration_text",
    "check_hf_checkpoint",
    "choose",
    "compress",
    "compress_auto",
    "compress_gguf",
    "compress_onnx",
    "compute_reference",
    "convert_checkpoint",
    "converted_gguf",
    "default_cache_dir",
    "default_calibration_texts",
    "default_candidates",
    "default_converter_dir",
    "estimate_decode",
    "evaluate",
    "evaluation_text",
    "export_onnx",
    "find_converter",
    "install_converter",
    "is_hf_checkpoint",
    "make_imatrix",
    "measure_allocation",
    "output_paths",
    "place",
    "plan_gguf",
    "plan_onnx",
    "predict_memory",
    "prune_plan",
    "quant_type",
    "quantize",
    "quantize_onnx",
    "register_backend",
    "render_text",
    "sha256_file",
]
