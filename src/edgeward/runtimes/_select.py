"""Choose the backend for an artifact: by its format, then the profile."""

from __future__ import annotations

from pathlib import Path

from edgeward.errors import ArtifactError, ConfigError
from edgeward.hardware_profiles import HardwareProfile
from edgeward.runtimes._base import Runtime

__all__ = ["artifact_format", "open_runtime"]


def artifact_format(artifact: Path) -> str:
    """``"gguf"`` for a GGUF file, ``"onnx"`` for an ``.onnx`` file or a directory holding one.

    Raises:
        ConfigError: the path does not exist.
        ArtifactError: neither format.
    """
    artifact = Path(artifact)
    if not artifact.exists():
        raise ConfigError(f"{artifact}: no such model file or directory")
    if artifact.is_dir():
        if any(artifact.glob("*.onnx")):
            return "onnx"
        raise ArtifactError(f"{artifact}: a directory without an .onnx model")
    with artifact.open("rb") as f:
        magic = f.read(4)
    if magic == b"GGUF":
        return "gguf"
    if artifact.suffix == ".onnx":
        return "onnx"
    raise ArtifactError(f"{artifact}: neither a GGUF file nor an ONNX model")


def open_runtime(artifact: Path, profile: HardwareProfile | None = None, *,
                 context_length: int | None = None,
                 allow_cpu_fallback: bool = False) -> Runtime:
    """A loaded runtime for ``artifact``: llama.cpp for GGUF, ONNX Runtime for ONNX.

    A GGUF artifact on a GPU profile needs a llama.cpp built with that backend; without it,
    loading fails (RuntimeBackendError) unless ``allow_cpu_fallback``, when it runs on the CPU
    and the runtime's ``load_warnings`` say so.

    Raises:
        ConfigError, ArtifactError: see :func:`artifact_format`.
        RuntimeBackendError: the backend could not load it.
    """
    fmt = artifact_format(artifact)
    runtime: Runtime
    if fmt == "gguf":
        from edgeward.runtimes._llama_cpp import LlamaCppRuntime

        runtime = LlamaCppRuntime(allow_cpu_fallback=allow_cpu_fallback)
    else:
        from edgeward.runtimes._onnx import OnnxRuntime

        runtime = OnnxRuntime()
    runtime.load(Path(artifact), profile, context_length=context_length)
    return runtime
