"""Block influence: how much each transformer block changes the hidden state (ShortGPT).

A block whose output is nearly parallel to its input does little; dropping it costs little.
The score of block ``i`` is ``1 - mean cos(h_in, h_out)`` over every token position of the
calibration text (Men et al., "ShortGPT: Layers in Large Language Models are More Redundant
Than You Expect", 2024). Scores lie in [0, 2]; low means redundant.

Pruning is opt-in and never chosen silently: these scores only rank the blocks; the quantizer
drops the blocks the user asked for (llama.cpp's ``prune_layers``) and the quality report
shows what that cost. ::

    scores = block_influence(path, text, max_tokens=4096)
    drop = least_influential(scores, 2)        # e.g. [21, 24]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeward.compress._hf import calibration_chunks, decoder_layers, load_hf_model, run_chunks
from edgeward.errors import ConfigError

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel

__all__ = ["block_influence", "block_influence_of_model", "least_influential"]

Progress = Callable[[int, int], None]


def block_influence(model_path: Path, text: str, *, n_ctx: int = 512, max_tokens: int = 4096,
                    progress: Progress | None = None) -> list[float]:
    """Score every block of a GGUF model by its influence on the hidden state.

    Args:
        model_path: the GGUF model.
        text: calibration text (never the evaluation text).
        n_ctx: tokens per chunk; each chunk is evaluated on its own.
        max_tokens: at most this many tokens are used (whole chunks only).
        progress: called with ``(chunks_done, chunks_total)``, first with 0 done.

    Returns:
        One score per block, index = block number (``blk.N`` in the GGUF): 1 - the mean
        cosine similarity between the block's input and output over all token positions of
        all chunks; in [0, 2].

    Raises:
        ConfigError: bad sizes, too little text, torch/transformers missing, model not found.
        ArtifactError: the model is not a GGUF, or its architecture is not supported.
    """
    chunks = calibration_chunks(model_path, text, n_ctx=n_ctx, max_tokens=max_tokens)
    model = load_hf_model(model_path)
    return block_influence_of_model(model, chunks, progress=progress)


def block_influence_of_model(model: PreTrainedModel, chunks: Sequence[Sequence[int]], *,
                             progress: Progress | None = None) -> list[float]:
    """:func:`block_influence` on a model loaded with
    :func:`~edgeward.compress._hf.load_hf_model` and chunks from
    :func:`~edgeward.compress._hf.calibration_chunks`.

    Each block's own input and output are captured with forward hooks rather than taken from
    ``output_hidden_states``: transformers replaces the last entry of that tuple by the
    final-normed state, which would misjudge the last block.

    Raises:
        ConfigError: no chunks.
        ArtifactError: the architecture is not supported.
    """
    import torch

    if not chunks or not all(chunks):
        raise ConfigError("block influence: give one or more non-empty chunks")
    layers = decoder_layers(model)
    distance = [0.0] * len(layers)  # sum over tokens of 1 - cos, in float64
    handles = []

    def hook_for(i: int) -> Callable[..., None]:
        def hook(module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any],
                 output: Any) -> None:
            h_in = args[0] if args else kwargs["hidden_states"]
            h_out = output[0] if isinstance(output, tuple) else output
            cos = torch.nn.functional.cosine_similarity(
                h_in.detach().to(torch.float64), h_out.detach().to(torch.float64), dim=-1)
            distance[i] += float((1.0 - cos.clamp(-1.0, 1.0)).sum())
        return hook

    for i, layer in enumerate(layers):
        handles.append(layer.register_forward_hook(hook_for(i), with_kwargs=True))
    decoder = model.get_decoder()  # type: ignore[no-untyped-call]  # no logits needed
    tokens = sum(len(c) for c in chunks)
    try:
        run_chunks(decoder, chunks, progress)
    finally:
        for handle in handles:
            handle.remove()
    return [d / tokens for d in distance]


def least_influential(scores: Sequence[float], k: int) -> list[int]:
    """The ``k`` blocks with the lowest influence: the ones to prune.

    No block is exempt: the scores alone decide. The first and last blocks, which ShortGPT
    found indispensable, score far above the rest in practice (SmolLM2-135M on English
    prose: block 0 about 1.0, block 29 about 0.3, the middle blocks 0.02 to 0.2), so they
    are not chosen unless ``k`` is nearly the whole model. Ties go to the lower block
    number, so the answer is deterministic.

    Args:
        scores: one score per block, as :func:`block_influence` returns.
        k: how many blocks to prune; at least 1, and at least one block must remain.

    Returns:
        The block numbers, sorted ascending (the order llama.cpp's ``prune_layers`` needs).

    Raises:
        ConfigError: ``k`` out of range, or a score that is not a finite number.
    """
    n = len(scores)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k < n:
        raise ConfigError(f"number of blocks to prune must be in [1, {n - 1}] for a model with "
                          f"{n} blocks, got {k!r}")
    for i, s in enumerate(scores):
        if not isinstance(s, int | float) or not math.isfinite(s):
            raise ConfigError(f"block influence score of block {i} is not a finite number: "
                              f"{s!r}")
    ranked = sorted(range(n), key=lambda i: (scores[i], i))
    return sorted(ranked[:k])
