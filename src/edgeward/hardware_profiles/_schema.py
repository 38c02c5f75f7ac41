"""The :class:`HardwareProfile` record: what a target can hold and how fast it reads memory."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from edgeward.errors import ProfileError
from edgeward.safeio import MAX_CONFIG_BYTES, parse_toml, read_text_capped

__all__ = [
    "KNOWN_CPU_FEATURES",
    "Backend",
    "HardwareProfile",
    "ModelFormat",
    "RuntimeName",
]

Backend = Literal["cpu", "cuda", "metal", "vulkan"]
RuntimeName = Literal["llama.cpp", "onnxruntime"]
ModelFormat = Literal["gguf", "onnx"]

#: CPU features a profile may name. x86: the SIMD levels llama.cpp and ONNX Runtime dispatch
#: on; ``amx`` stands for AMX-TILE with INT8/BF16. Arm: ``neon`` (ASIMD), ``dotprod``
#: (SDOT/UDOT), ``i8mm`` (int8 matrix multiply), ``sve``, ``fp16`` (half-precision arithmetic).
KNOWN_CPU_FEATURES: frozenset[str] = frozenset(
    {
        "sse4_2",
        "avx",
        "avx2",
        "fma",
        "f16c",
        "avx_vnni",
        "avx512f",
        "avx512bw",
        "avx512_vnni",
        "avx512_bf16",
        "amx",
        "neon",
        "dotprod",
        "i8mm",
        "sve",
        "fp16",
    }
)

_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
_COMPUTE_CAPABILITY = re.compile(r"^\d{1,2}\.\d$")
_MIN_CONTEXT = 128  # tokens; below this no chat template plus a question fits


@dataclass(frozen=True, kw_only=True)
class HardwareProfile:
    """What a deployment target can hold and run.

    Every figure carries its unit in its name. A profile is validated when it is built, and a
    bad value is quoted in the error.

    Attributes:
        name: slug used on the command line, e.g. ``"raspberry-pi-5-8gb"``.
        display_name: human name of the device.
        memory_bytes: memory available to hold weights, KV cache and compute buffers, in bytes
            (VRAM for a discrete GPU; RAM or unified memory otherwise).
        bandwidth_gbps: memory bandwidth of that memory in GB/s (10**9 bytes per second); decode
            speed of a memory-bound LLM is about bandwidth / bytes read per token.
        backend: compute backend the runtime should use.
        cpu_features: SIMD features of the host CPU (see :data:`KNOWN_CPU_FEATURES`).
        cores: physical CPU cores available to inference, if known.
        threads: threads the runtime should use; ``None`` means one per core.
        gpu_name: the GPU's marketing name, for GPU backends.
        gpu_compute_capability: CUDA compute capability such as ``"8.9"`` (cuda backend only).
        gpu_layers: layers to offload to the GPU; ``-1`` all, ``0`` none (the default for cpu).
        system_memory_bytes: host RAM when ``memory_bytes`` is a discrete GPU's VRAM; layers
            that do not fit in VRAM run from it (partial offload).
        system_bandwidth_gbps: that host RAM's bandwidth in GB/s (for partially offloaded
            models; None: a plan assumes the layers that spill run at 10 % of the GPU's).
        gpu_working_set_bytes: the most memory the GPU may use when it shares memory with the
            CPU (Metal's ``recommendedMaxWorkingSetSize``); None: all of ``memory_bytes``.
        compute_tflops: peak FP32 throughput of the backend's general cores in TFLOP/s
            (10**12 floating-point operations per second): CUDA cores or GPU ALUs for a GPU
            (llama.cpp's decode kernels run there, not on tensor cores), SIMD fused
            multiply-add units for a CPU. Predicted decode speed is the slower of the memory
            and the compute limit (a roofline); None: memory limit only.
        preferred_runtime: the runtime that serves this target best.
        preferred_format: the artifact format that runtime loads.
        default_context: context length in tokens a deployment reserves KV cache for.
        notes: free text: assumptions, variants, caveats.
    """

    name: str
    display_name: str
    memory_bytes: int
    bandwidth_gbps: float
    backend: Backend = "cpu"
    cpu_features: tuple[str, ...] = ()
    cores: int | None = None
    threads: int | None = None
    gpu_name: str | None = None
    gpu_compute_capability: str | None = None
    gpu_layers: int | None = None
    system_memory_bytes: int | None = None
    system_bandwidth_gbps: float | None = None
    gpu_working_set_bytes: int | None = None
    compute_tflops: float | None = None
    preferred_runtime: RuntimeName = "llama.cpp"
    preferred_format: ModelFormat = "gguf"
    default_context: int = 4096
    notes: str = ""
    # Where the profile came from (a catalog file or a user's file); not part of equality.
    source: str = field(default="", compare=False, repr=False)

    def __post_init__(self) -> None:
        self._check("name", isinstance(self.name, str) and bool(_SLUG.match(self.name)),
                    "a lowercase slug of letters, digits and '-' (e.g. 'raspberry-pi-5-8gb')")
        self._check("display_name", isinstance(self.display_name, str) and bool(self.display_name),
                    "a non-empty string")
        self._check("memory_bytes", _is_int(self.memory_bytes) and self.memory_bytes > 0,
                    "a positive integer number of bytes")
        self._check("bandwidth_gbps", _is_positive_number(self.bandwidth_gbps),
                    "a positive number of GB/s")
        self._check("backend", self.backend in get_args(Backend),
                    f"one of {', '.join(get_args(Backend))}")
        self._check("cpu_features", isinstance(self.cpu_features, tuple)
                    and all(f in KNOWN_CPU_FEATURES for f in self.cpu_features),
                    f"a list drawn from {', '.join(sorted(KNOWN_CPU_FEATURES))}")
        self._check("cores", self.cores is None or (_is_int(self.cores) and self.cores > 0),
                    "a positive integer")
        self._check("threads", self.threads is None or (_is_int(self.threads) and self.threads > 0),
                    "a positive integer")
        self._check("gpu_layers", self.gpu_layers is None
                    or (_is_int(self.gpu_layers) and self.gpu_layers >= -1),
                    "-1 (all layers), 0 (none) or a positive layer count")
        self._check("system_memory_bytes", self.system_memory_bytes is None
                    or (_is_int(self.system_memory_bytes) and self.system_memory_bytes > 0),
                    "a positive integer number of bytes")
        self._check("system_bandwidth_gbps", self.system_bandwidth_gbps is None
                    or _is_positive_number(self.system_bandwidth_gbps),
                    "a positive number of GB/s")
        self._check("gpu_working_set_bytes", self.gpu_working_set_bytes is None
                    or (_is_int(self.gpu_working_set_bytes)
                        and 0 < self.gpu_working_set_bytes <= self.memory_bytes),
                    "a positive integer number of bytes, at most memory_bytes")
        self._check("compute_tflops", self.compute_tflops is None
                    or _is_positive_number(self.compute_tflops),
                    "a positive number of TFLOP/s")
        self._check("gpu_compute_capability", self.gpu_compute_capability is None
                    or (isinstance(self.gpu_compute_capability, str)
                        and bool(_COMPUTE_CAPABILITY.match(self.gpu_compute_capability))),
                    "a 'major.minor' string such as '8.9'")
        self._check("gpu_compute_capability",
                    self.backend != "cuda" or self.gpu_compute_capability is not None,
                    "set for a cuda profile (see developer.nvidia.com/cuda-gpus)")
        self._check("preferred_runtime", self.preferred_runtime in get_args(RuntimeName),
                    f"one of {', '.join(get_args(RuntimeName))}")
        self._check("preferred_format", self.preferred_format in get_args(ModelFormat),
                    f"one of {', '.join(get_args(ModelFormat))}")
        self._check("default_context", _is_int(self.default_context)
                    and self.default_context >= _MIN_CONTEXT,
                    f"an integer number of tokens >= {_MIN_CONTEXT}")
        self._check("notes", isinstance(self.notes, str), "a string")

    def _check(self, field_name: str, ok: bool, expected: str) -> None:
        if not ok:
            value = getattr(self, field_name)
            where = f"{self.source}: " if self.source else ""
            raise ProfileError(
                f"{where}field {field_name!r} has bad value {value!r}; expected {expected}"
            )

    @property
    def effective_gpu_layers(self) -> int:
        """Layers to offload: the explicit setting, else all for a GPU backend, none for cpu."""
        if self.gpu_layers is not None:
            return self.gpu_layers
        return 0 if self.backend == "cpu" else -1

    @property
    def gpu_memory_bytes(self) -> int:
        """Memory the GPU may hold the model in: VRAM, or the working set of shared memory
        (0 for a cpu profile)."""
        if self.backend == "cpu":
            return 0
        return self.gpu_working_set_bytes or self.memory_bytes

    @property
    def discrete_gpu(self) -> bool:
        """A GPU with its own memory (host RAM given separately), not shared memory."""
        return self.backend != "cpu" and self.system_memory_bytes is not None

    @property
    def effective_threads(self) -> int | None:
        """Threads for the runtime: the explicit setting, else one per core (None if unknown)."""
        return self.threads if self.threads is not None else self.cores

    def to_dict(self) -> dict[str, Any]:
        """The profile as a JSON-ready dict (every field, ``None`` for unset ones)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name == "source":
                continue
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "") -> HardwareProfile:
        """Build a profile from parsed TOML/JSON, naming ``source`` in any error.

        Raises:
            ProfileError: an unknown or missing field, or a bad value.
        """
        where = f"{source}: " if source else ""
        names = {f.name for f in dataclasses.fields(cls)} - {"source"}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ProfileError(
                f"{where}unknown field {unknown[0]!r}; known fields are {', '.join(sorted(names))}"
            )
        required = [f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING and f.name != "source"]
        missing = [n for n in required if n not in data]
        if missing:
            raise ProfileError(f"{where}missing required field {missing[0]!r}")
        kwargs = dict(data)
        if "cpu_features" in kwargs:
            feats = kwargs["cpu_features"]
            if not isinstance(feats, list | tuple):
                raise ProfileError(
                    f"{where}field 'cpu_features' has bad value {feats!r}; expected a list"
                )
            kwargs["cpu_features"] = tuple(feats)
        return cls(**kwargs, source=source)

    def to_toml(self) -> str:
        """The profile as a TOML document that :meth:`from_dict` reads back."""
        lines = []
        for key, value in self.to_dict().items():
            if value is None:
                continue
            lines.append(f"{key} = {_toml_value(value)}")
        return "\n".join(lines) + "\n"


def load_profile_file(path: Path) -> HardwareProfile:
    """Read one profile from a TOML file.

    Raises:
        ProfileError: the file is missing, is not valid TOML, or holds a bad profile; the
            message names the file (and the field and value where one is at fault).
    """

    if not path.exists():
        raise ProfileError(f"{path}: no such profile file")
    text = read_text_capped(path, MAX_CONFIG_BYTES, what="profile file", error=ProfileError)
    data = parse_toml(text, what=str(path), error=ProfileError)
    return HardwareProfile.from_dict(data, source=str(path))


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_positive_number(value: object) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value) and value > 0)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{escaped}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")
