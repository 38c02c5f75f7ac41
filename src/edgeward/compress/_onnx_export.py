"""Export to ONNX with optimum, offline, from local paths.

Two steps, each usable alone:

- :func:`gguf_to_hf_dir`: a GGUF model to a Hugging Face directory (transformers dequantizes
  the GGUF through ``gguf_file=``; the tokenizer and chat template come along);
- :func:`export_onnx`: a Hugging Face directory to an ONNX directory with optimum's exporter
  (``feature-extraction`` for encoders, ``text-generation-with-past`` for causal LMs, whose
  graph takes and returns the KV cache). Models over 2 GB are written with external data, as
  the ONNX format requires; optimum does that by itself.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from edgeward.errors import ArtifactError, ConfigError

__all__ = ["OnnxTask", "export_onnx", "gguf_to_hf_dir", "quiet_third_party", "staged_dir"]

OnnxTask = Literal["feature-extraction", "text-generation-with-past"]
_INSTALL = "pip install 'edgeward[compress]'"


@contextlib.contextmanager
def _offline() -> Iterator[None]:
    """No hub access while exporting: everything comes from local paths."""
    saved = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    os.environ["HF_HUB_OFFLINE"] = os.environ["TRANSFORMERS_OFFLINE"] = "1"
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# Loggers of the libraries the ONNX path drives ("" is the root logger: ONNX Runtime's
# quantizers log through it).
_NOISY_LOGGERS = ("", "transformers", "optimum", "torch", "onnx", "onnxruntime", "onnxscript",
                  "onnx_ir", "huggingface_hub", "tokenizers")
_ORT_ERROR, _ORT_WARNING = 3, 2  # ONNX Runtime's log severities (2 is its default)
_quiet = {"depth": 0}  # nested quiet blocks: only the outermost sets and restores


@contextlib.contextmanager
def quiet_third_party(quiet: bool = True) -> Iterator[None]:
    """While the block runs, keep the warnings and logging of torch, transformers, optimum,
    onnx and ONNX Runtime (Python ``warnings``, their loggers, ONNX Runtime's C++ log) out of
    the output: they are for developers, and ``edgeward --debug`` shows them (``quiet``
    False: nothing is changed). Errors are still logged, and raised as before."""
    if not quiet or _quiet["depth"]:  # an enclosing block already keeps them out
        yield
        return
    loggers = [logging.getLogger(name) for name in _NOISY_LOGGERS]
    levels = [lg.level for lg in loggers]
    saved_env = os.environ.get("TRANSFORMERS_VERBOSITY")
    # transformers sets its logger's level from this variable when it first configures it
    os.environ["TRANSFORMERS_VERBOSITY"] = "error"
    ort = _onnxruntime()
    try:
        _quiet["depth"] += 1
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        if ort is not None:
            ort.set_default_logger_severity(_ORT_ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        _quiet["depth"] -= 1
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
        if saved_env is None:
            os.environ.pop("TRANSFORMERS_VERBOSITY", None)
        else:
            os.environ["TRANSFORMERS_VERBOSITY"] = saved_env
        if ort is not None:
            ort.set_default_logger_severity(_ORT_WARNING)


def _onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        return None
    return onnxruntime


@contextlib.contextmanager
def staged_dir(out: Path) -> Iterator[Path]:
    """A temporary directory beside ``out`` to build it in; renamed to ``out`` (replacing it)
    when the block succeeds, removed when it fails — so ``out`` is never half-written."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        yield tmp
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def gguf_to_hf_dir(gguf_path: Path, out_dir: Path, *, force: bool = False) -> Path:
    """Write a GGUF model as a Hugging Face directory (float32 safetensors, tokenizer).

    Raises:
        ConfigError: ``out_dir`` exists without ``force``; torch/transformers missing.
        ArtifactError: transformers cannot read the GGUF.
    """
    from edgeward.compress._hf import load_hf_from_gguf

    _fresh_dir(out_dir, force)
    model, tokenizer = load_hf_from_gguf(Path(gguf_path))
    with staged_dir(out_dir) as tmp:
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
    return out_dir


def export_onnx(hf_dir: Path, out_dir: Path, *, task: OnnxTask, force: bool = False) -> Path:
    """Export a Hugging Face directory to ONNX with optimum.

    Returns:
        ``out_dir``, holding ``model.onnx`` (plus external data for large models), the
        tokenizer files and the model's config.

    Raises:
        ConfigError: ``out_dir`` exists without ``force``; optimum missing.
        ArtifactError: optimum cannot export the model.
    """
    try:
        from optimum.exporters.onnx import main_export
    except ImportError as e:
        raise ConfigError(f"ONNX export needs optimum-onnx: {_INSTALL}") from e
    if not (Path(hf_dir) / "config.json").is_file():
        raise ConfigError(f"{hf_dir}: not a Hugging Face model directory (no config.json)")
    _fresh_dir(out_dir, force)
    try:
        with staged_dir(out_dir) as tmp, _offline():
            main_export(model_name_or_path=str(hf_dir), output=tmp, task=task,
                        do_validation=False, library_name="transformers")
    except (OSError, ValueError, RuntimeError, KeyError) as e:
        raise ArtifactError(f"{hf_dir}: optimum could not export it for {task}: {e}") from e
    return out_dir


def _fresh_dir(path: Path, force: bool) -> None:
    if path.exists() and not force:
        raise ConfigError(f"{path}: already exists; pass --force to replace it")
    if not path.parent.is_dir():
        raise ConfigError(f"{path.parent}: no such directory; create it first")
