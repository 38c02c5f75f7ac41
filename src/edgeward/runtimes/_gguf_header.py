"""A fast, validating reader of a GGUF file's header: metadata and tensor table.

``gguf.GGUFReader`` builds numpy views of every field (seconds for a 49k-token vocabulary);
runtimes and the compressor need only the header, so this reader streams it with ``struct``,
skips arrays of numbers without decoding them, and checks that the tensor data the header
promises is really in the file (a truncated download is caught here, not inside llama.cpp).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeward.errors import ArtifactError
from edgeward.safeio import open_regular

__all__ = ["GGUFHeader", "GGUFTensorInfo", "parse_gguf_header", "read_gguf_header"]

_MAGIC = b"GGUF"
_DEFAULT_ALIGNMENT = 32
# GGUF value types -> struct format (None: variable size).
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
            10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
_MAX_COUNT = 1 << 32  # more keys, tensors or array items than this is a corrupt header
_MAX_NESTING = 4  # arrays of arrays: the spec allows them, no model nests them deeper

# (block size in elements, bytes per block) per ggml type, as in ggml.c / gguf-py.
GGML_BLOCK: dict[int, tuple[int, int]] = {
    0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34),
    9: (32, 36), 10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210),
    15: (256, 292), 16: (256, 66), 17: (256, 74), 18: (256, 98), 19: (256, 50), 20: (32, 18),
    21: (256, 110), 22: (256, 82), 23: (256, 136), 24: (1, 1), 25: (1, 2), 26: (1, 4),
    27: (1, 8), 28: (1, 8), 29: (256, 56), 30: (1, 2), 34: (256, 54), 35: (256, 66),
}
GGML_TYPE_NAMES: dict[int, str] = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 9: "Q8_1",
    10: "Q2_K", 11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 15: "Q8_K", 16: "IQ2_XXS",
    17: "IQ2_XS", 18: "IQ3_XXS", 19: "IQ1_S", 20: "IQ4_NL", 21: "IQ3_S", 22: "IQ2_S",
    23: "IQ4_XS", 24: "I8", 25: "I16", 26: "I32", 27: "I64", 28: "F64", 29: "IQ1_M",
    30: "BF16", 34: "TQ1_0", 35: "TQ2_0",
}


@dataclass(frozen=True)
class GGUFTensorInfo:
    """One tensor of the table: name, shape (ggml order: row size first), type and bytes."""

    name: str
    shape: tuple[int, ...]
    type: int
    offset: int  # from the start of the data section
    n_bytes: int

    @property
    def type_name(self) -> str:
        """The ggml type's name (``"Q4_K"``), or ``"type<N>"`` for one we do not know."""
        return GGML_TYPE_NAMES.get(self.type, f"type{self.type}")

    @property
    def n_elements(self) -> int:
        """Number of weights in the tensor."""
        n = 1
        for d in self.shape:
            n *= d
        return n


@dataclass(frozen=True)
class GGUFHeader:
    """The metadata and tensor table of a GGUF file.

    Attributes:
        path: the file.
        version: GGUF format version.
        metadata: key -> value; arrays (token lists, scores) are kept only as their length,
            ``("array", n)``: read them with gguf-py if needed.
        tensors: the tensor table in file order.
        data_offset: where tensor data starts.
        file_size: the file's size in bytes.
    """

    path: Path
    version: int
    metadata: dict[str, Any]
    tensors: tuple[GGUFTensorInfo, ...]
    data_offset: int
    file_size: int
    _by_name: dict[str, GGUFTensorInfo] = field(default_factory=dict, repr=False, compare=False)

    @property
    def architecture(self) -> str:
        """``general.architecture`` (e.g. ``"llama"``)."""
        return str(self.metadata.get("general.architecture", ""))

    def arch_value(self, key: str, default: Any = None) -> Any:
        """``<architecture>.<key>`` from the metadata (e.g. ``block_count``)."""
        return self.metadata.get(f"{self.architecture}.{key}", default)

    def tensor(self, name: str) -> GGUFTensorInfo | None:
        """The tensor called ``name``, if the file has it."""
        if not self._by_name:
            self._by_name.update({t.name: t for t in self.tensors})
        return self._by_name.get(name)

    @property
    def n_params(self) -> int:
        """Total number of weights."""
        return sum(t.n_elements for t in self.tensors)

    @property
    def tensor_bytes(self) -> int:
        """Total bytes of tensor data."""
        return sum(t.n_bytes for t in self.tensors)


def read_gguf_header(path: Path) -> GGUFHeader:
    """Read and validate a GGUF file's header.

    Raises:
        ArtifactError: the file is missing, is not GGUF, has an unsupported version, a
            corrupt header, or is shorter than its tensor table says (truncated).
    """
    path = Path(path)
    if path.is_dir():
        raise ArtifactError(f"{path}: is a directory, not a GGUF file")
    try:
        with open_regular(path, what="GGUF file", error=ArtifactError) as f:
            size = os.fstat(f.fileno()).st_size
            want = min(size, _FIRST_READ)
            while True:
                f.seek(0)
                data = f.read(want)
                try:
                    return _parse(_Reader(data), path, size)
                except _NeedMore:
                    if want >= size:
                        raise EOFError("unexpected end of file in the header") from None
                    want = min(size, want * 4)
    except OSError as e:
        raise ArtifactError(f"{path}: cannot read ({e.strerror})") from e
    except (struct.error, UnicodeDecodeError, EOFError) as e:
        raise ArtifactError(f"{path}: corrupt or truncated GGUF header ({e})") from e


def parse_gguf_header(data: bytes, *, path: Path, file_size: int) -> GGUFHeader:
    """Parse a GGUF header from its bytes (at least up to the tensor data), as if read from
    ``path``, a file of ``file_size`` bytes: a header kept apart from its file (a cache).

    Raises:
        ArtifactError: the bytes are not a whole, valid GGUF header.
    """
    try:
        return _parse(_Reader(data), Path(path), file_size)
    except _NeedMore:
        raise ArtifactError(f"{path}: the header bytes end before the header does") from None
    except (struct.error, UnicodeDecodeError, EOFError) as e:
        raise ArtifactError(f"{path}: corrupt GGUF header ({e})") from e


_FIRST_READ = 8 << 20  # bytes; headers with a 150k-token vocabulary are ~4 MB


class _NeedMore(Exception):  # noqa: N818 - control flow, not an error
    """The header continues past the bytes read so far."""


class _Reader:
    """Cursor over the header bytes; string arrays are skipped without decoding them."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def unpack(self, fmt: str) -> Any:
        n = struct.calcsize(fmt)
        if self.pos + n > len(self.data):
            raise _NeedMore
        value = struct.unpack_from(fmt, self.data, self.pos)[0]
        self.pos += n
        return value

    def string(self) -> str:
        n = self.unpack("<Q")
        if n > 1 << 30:
            raise EOFError(f"implausible string length {n}")
        if self.pos + n > len(self.data):
            raise _NeedMore
        text = self.data[self.pos:self.pos + n].decode("utf-8")
        self.pos += n
        return text

    def skip_strings(self, count: int) -> None:
        data, pos, end = self.data, self.pos, len(self.data)
        for _ in range(count):
            if pos + 8 > end:
                raise _NeedMore
            pos += 8 + struct.unpack_from("<Q", data, pos)[0]
        if pos > end:
            raise _NeedMore
        self.pos = pos

    def value(self, vtype: int, depth: int = 0) -> Any:
        if vtype in _SCALARS:
            return self.unpack(_SCALARS[vtype])
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            etype = self.unpack("<I")
            count = self.unpack("<Q")
            if count > _MAX_COUNT:
                raise EOFError(f"implausible array length {count}")
            if depth >= _MAX_NESTING:
                raise EOFError(f"arrays nested more than {_MAX_NESTING} deep")
            if etype in _SCALARS:
                self.pos += count * struct.calcsize(_SCALARS[etype])
                if self.pos > len(self.data):
                    raise _NeedMore
            elif etype == _STRING:
                self.skip_strings(count)
            else:
                for _ in range(count):
                    self.value(etype, depth + 1)
            return ("array", count)
        raise EOFError(f"unknown GGUF value type {vtype}")


def _parse(r: _Reader, path: Path, size: int) -> GGUFHeader:
    if len(r.data) < 4 or r.data[:4] != _MAGIC:
        raise ArtifactError(
            f"{path}: not a GGUF file (starts with {r.data[:4]!r}, expected b'GGUF'); "
            "convert the model to GGUF first (llama.cpp's convert_hf_to_gguf.py)"
        )
    r.pos = 4
    version = r.unpack("<I")
    if version not in (2, 3):
        raise ArtifactError(f"{path}: GGUF version {version} is not supported (2 or 3 are)")
    n_tensors = r.unpack("<Q")
    n_kv = r.unpack("<Q")
    if n_tensors > _MAX_COUNT or n_kv > _MAX_COUNT:
        raise ArtifactError(f"{path}: corrupt GGUF header ({n_tensors} tensors, {n_kv} keys)")
    metadata: dict[str, Any] = {}
    for _ in range(n_kv):
        key = r.string()
        metadata[key] = r.value(r.unpack("<I"))
    _check_types(metadata, path)
    raw = []
    for _ in range(n_tensors):
        name = r.string()
        n_dims = r.unpack("<I")
        if n_dims > 8:
            raise ArtifactError(f"{path}: tensor {name!r} claims {n_dims} dimensions")
        shape = tuple(r.unpack("<Q") for _ in range(n_dims))
        ggml_type = r.unpack("<I")
        offset = r.unpack("<Q")
        raw.append((name, shape, ggml_type, offset))
    alignment = metadata.get("general.alignment", _DEFAULT_ALIGNMENT)
    if isinstance(alignment, bool) or not isinstance(alignment, int) or alignment <= 0 \
            or alignment & (alignment - 1) or alignment > 1 << 20:
        raise ArtifactError(f"{path}: corrupt GGUF header (general.alignment is "
                            f"{alignment!r:.40}; it must be a power of two, default "
                            f"{_DEFAULT_ALIGNMENT})")
    pos = r.pos
    data_offset = pos + (-pos % alignment)
    tensors = []
    for name, shape, ggml_type, offset in raw:
        if offset % alignment:
            raise ArtifactError(f"{path}: corrupt GGUF header (tensor {name!r} at offset "
                                f"{offset} is not aligned to {alignment})")
        block = GGML_BLOCK.get(ggml_type)
        if block is None:
            raise ArtifactError(f"{path}: tensor {name!r} has unknown ggml type {ggml_type}")
        n = 1
        for d in shape:
            n *= d
        n_bytes = n // block[0] * block[1]
        end = data_offset + offset + n_bytes
        if end > size:
            raise ArtifactError(
                f"{path}: truncated: tensor {name!r} ends at byte {end} but the file has "
                f"{size} bytes; copy or download it again"
            )
        tensors.append(GGUFTensorInfo(name, shape, ggml_type, offset, n_bytes))
    return GGUFHeader(path, version, metadata, tuple(tensors), data_offset, size)


# Keys edgeward reads, with the types the GGUF spec gives them; a crafted header with, say,
# a string block count is refused here instead of failing deep in a plan.
_STRING_KEYS = ("general.architecture", "general.name", "general.license", "general.type",
                "tokenizer.chat_template")
_INT_KEYS = ("general.alignment", "general.file_type")
_INT_SUFFIXES = (".block_count", ".context_length", ".embedding_length", ".vocab_size",
                 ".attention.key_length", ".attention.value_length")
# Per-layer in some architectures (an array), a number in most.
_INT_OR_ARRAY_SUFFIXES = (".feed_forward_length", ".attention.head_count",
                          ".attention.head_count_kv")


def _check_types(metadata: dict[str, Any], path: Path) -> None:
    for key, value in metadata.items():
        if key in _STRING_KEYS:
            ok = isinstance(value, str)
            want = "a string"
        elif key in _INT_KEYS or key.endswith(_INT_SUFFIXES):
            ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
            want = "a non-negative integer"
        elif key.endswith(_INT_OR_ARRAY_SUFFIXES):
            ok = (isinstance(value, int) and not isinstance(value, bool) and value >= 0) \
                or (isinstance(value, tuple) and value[:1] == ("array",))
            want = "a non-negative integer or an array"
        else:
            continue
        if not ok:
            raise ArtifactError(f"{path}: corrupt GGUF header ({key} is {value!r:.40}; it "
                                f"must be {want})")
