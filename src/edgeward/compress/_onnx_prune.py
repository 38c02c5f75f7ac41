"""Structured pruning of feed-forward neurons: a smaller dense model, so inference is faster.

Unstructured sparsity (zeroed weights scattered through a matrix) makes nothing faster on ONNX
Runtime's CPU kernels or llama.cpp: the matrices keep their shapes. Removing whole neurons of
each feed-forward block does: the two matrices around the activation lose rows and columns,
and the model is re-exported dense and smaller.

Importance of a neuron (per layer) is measured on calibration text: the mean absolute value of
its activation — the input of the down projection (BERT's ``output.dense``, Llama's
``down_proj``) — times the L2 norm of its column in that projection, i.e. how much it adds to
the block's output on typical input. The least important ``fraction`` of each layer's neurons
go; the count kept is rounded up to a multiple of 16 (what the matrix kernels tile by) and is
the same in every layer (the Hugging Face configs have one ``intermediate_size``).

Supported: BERT-family encoders (``bert``, e.g. MiniLM) and Llama-layout causal LMs (``llama``,
``mistral``, ``qwen2``; e.g. SmolLM2). No fine-tuning follows: the quality cost is what the
report measures, not hidden.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgeward.compress._onnx_export import staged_dir
from edgeward.errors import ArtifactError, ConfigError

__all__ = ["PRUNABLE_MODEL_TYPES", "prune_ffn"]

PRUNABLE_MODEL_TYPES = ("bert", "llama", "mistral", "qwen2")
_WEIGHTS = (".safetensors", ".bin", ".pt", ".h5", ".msgpack", ".onnx", ".onnx_data")
_TILE = 16


def _ffn_blocks(model: Any, model_type: str) -> list[tuple[list[Any], Any]]:
    """Per layer: (the projections producing the intermediate activation, the down
    projection)."""
    if model_type == "bert":
        return [([layer.intermediate.dense], layer.output.dense)
                for layer in model.encoder.layer]
    return [([layer.mlp.gate_proj, layer.mlp.up_proj], layer.mlp.down_proj)
            for layer in model.model.layers]


def kept_neurons(n: int, fraction: float) -> int:
    """How many of ``n`` neurons stay when ``fraction`` is pruned (rounded up to a tile)."""
    keep = max(_TILE, math.ceil(n * (1.0 - fraction) / _TILE) * _TILE)
    return min(n, keep)


def _load(hf_dir: Path, model_type: str) -> Any:
    from transformers import AutoModel, AutoModelForCausalLM

    cls = AutoModel if model_type == "bert" else AutoModelForCausalLM
    try:
        return cls.from_pretrained(str(hf_dir), local_files_only=True).eval()
    except (OSError, ValueError) as e:
        raise ArtifactError(f"{hf_dir}: transformers cannot load it: {e}") from e


def _importance(model: Any, blocks: list[tuple[list[Any], Any]], hf_dir: Path,
                texts: Sequence[str], max_tokens: int) -> list[Any]:
    import torch
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(  # type: ignore[no-untyped-call]
        str(hf_dir), local_files_only=True)
    sums = [torch.zeros(down.in_features, dtype=torch.float64) for _, down in blocks]
    count = [0]

    def hook(i: int) -> Any:
        def pre(_mod: Any, args: tuple[Any, ...]) -> None:
            x = args[0].detach().reshape(-1, args[0].shape[-1])
            sums[i] += x.abs().sum(dim=0, dtype=torch.float64)
            if i == 0:
                count[0] += x.shape[0]
        return pre

    handles = [down.register_forward_pre_hook(hook(i)) for i, (_, down) in enumerate(blocks)]
    try:
        with torch.inference_mode():
            for text in texts:
                enc = tok(text, return_tensors="pt", truncation=True, max_length=max_tokens)
                model(**{k: v for k, v in enc.items()
                         if k in ("input_ids", "attention_mask", "token_type_ids")})
    finally:
        for h in handles:
            h.remove()
    if count[0] == 0:
        raise ConfigError("pruning needs calibration text: none of it tokenized")
    return [s / count[0] * down.weight.detach().double().norm(dim=0)
            for s, (_, down) in zip(sums, blocks, strict=True)]


def torch_topk(score: Any, k: int) -> Any:
    """Indices of the ``k`` most important neurons (a seam for tests)."""
    import torch

    return torch.topk(score, k).indices


def _shrink(blocks: list[tuple[list[Any], Any]], scores: list[Any], keep: int) -> None:
    import torch

    for (ups, down), score in zip(blocks, scores, strict=True):
        idx = torch.sort(torch_topk(score, keep)).values
        for lin in ups:
            lin.weight = torch.nn.Parameter(lin.weight.detach()[idx].clone())
            if lin.bias is not None:
                lin.bias = torch.nn.Parameter(lin.bias.detach()[idx].clone())
            lin.out_features = keep
        down.weight = torch.nn.Parameter(down.weight.detach()[:, idx].clone())
        down.in_features = keep


def prune_ffn(hf_dir: Path, out_dir: Path, fraction: float, *, texts: Sequence[str],
              max_tokens: int = 256, force: bool = False) -> dict[str, Any]:
    """Remove the least important ``fraction`` of every feed-forward block's neurons.

    Args:
        hf_dir: a Hugging Face model directory (a supported model type).
        out_dir: the pruned Hugging Face directory to write (tokenizer files copied along).
        fraction: share of neurons to remove, 0 < fraction < 1.
        texts: calibration texts (each truncated to ``max_tokens`` tokens).

    Returns:
        What was done: model type, neurons per layer before and after, parameters before and
        after.

    Raises:
        ConfigError: a bad fraction, an unsupported model type, ``out_dir`` exists without
            ``force``, torch/transformers missing; ArtifactError: the model does not load.
    """
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"--prune-ffn {fraction}: give the share of neurons to remove, "
                          "between 0 and 1 (e.g. 0.25)")
    if out_dir.exists() and not force:
        raise ConfigError(f"{out_dir}: already exists; pass --force to replace it")
    try:
        config = json.loads((hf_dir / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"{hf_dir}: no readable config.json ({e})") from e
    model_type = str(config.get("model_type"))
    if model_type not in PRUNABLE_MODEL_TYPES:
        raise ConfigError(f"{hf_dir}: structured pruning supports model types "
                          f"{', '.join(PRUNABLE_MODEL_TYPES)}, not {model_type!r}")
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as e:
        raise ConfigError("pruning needs torch and transformers: pip install "
                          "'edgeward[compress]'") from e
    model = _load(hf_dir, model_type)
    blocks = _ffn_blocks(model, model_type)
    before_n = blocks[0][1].in_features
    keep = kept_neurons(before_n, fraction)
    params_before = sum(p.numel() for p in model.parameters())
    scores = _importance(model, blocks, hf_dir, texts, max_tokens)
    _shrink(blocks, scores, keep)
    model.config.intermediate_size = keep
    with staged_dir(out_dir) as tmp:
        model.save_pretrained(str(tmp))
        for p in hf_dir.iterdir():
            if p.is_file() and not p.name.endswith(_WEIGHTS) and not (tmp / p.name).exists():
                shutil.copy2(p, tmp / p.name)
    return {"method": "ffn-neurons", "model_type": model_type, "fraction": fraction,
            "layers": len(blocks), "ffn_neurons_before": before_n, "ffn_neurons_after": keep,
            "parameters_before": params_before,
            "parameters_after": sum(p.numel() for p in model.parameters())}
