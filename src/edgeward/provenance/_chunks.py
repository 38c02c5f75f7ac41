"""Content-defined chunks of a file: the same bytes give the same chunks wherever they sit.

Delta updates need to find, in an artifact the device already holds, the parts of a new one
it does not need to download. Fixed-size chunks fail as soon as content moves (a GGUF whose
header grew shifts every tensor after it); content-defined chunks do not: a chunk boundary is
placed where a rolling hash of the last 32 bytes has 16 zero bits, so boundaries follow the
content, and identical regions of two files yield identical chunks.

The rolling hash is a polynomial hash of the last 32 bytes (mod 2**64), computed for every
position at once with numpy from prefix sums (a handful of vector operations per block), so a
100 MB file is chunked in about a second. Chunks are 16 KiB to 256 KiB, about 64 KiB on
average.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import numpy.typing as npt

from edgeward.errors import ConfigError

__all__ = ["CHUNK_MAX", "CHUNK_MIN", "content_chunks"]

CHUNK_MIN = 16 * 1024  # bytes
CHUNK_MAX = 256 * 1024  # bytes
_WINDOW = 32  # bytes the boundary test depends on
_BITS = 16  # zero bits for a boundary: one every 64 KiB on average
_BLOCK = 2 * 1024 * 1024  # bytes hashed per numpy pass
_P = 0x100000001B3  # odd: invertible mod 2**64
_U64 = np.uint64


def _powers(base: int, n: int) -> npt.NDArray[np.uint64]:
    steps = np.full(n, base, dtype=_U64)
    steps[0] = 1
    return np.cumprod(steps, dtype=_U64)


_POW = _powers(_P, _BLOCK + _WINDOW)
_POW_INV = _powers(pow(_P, -1, 2**64), _BLOCK + _WINDOW)


def _boundaries(data: npt.NDArray[np.uint8]) -> npt.NDArray[np.int64]:
    """Positions ``i`` (ends of windows) where the hash of the window ``data[i-31..i]`` has
    its top 16 bits zero; the first ``_WINDOW - 1`` positions of ``data`` are context only."""
    n = len(data)
    x = (data.astype(_U64) + _U64(1)) * _POW[:n]
    s = np.cumsum(x, dtype=_U64)
    window = s[_WINDOW - 1:].copy()
    window[1:] -= s[:n - _WINDOW]  # S_i - S_{i-w}: the window's terms, scaled by P^(i-w+1)
    h = window * _POW_INV[:n - _WINDOW + 1]  # normalised: independent of the position
    return np.flatnonzero((h >> _U64(64 - _BITS)) == 0) + (_WINDOW - 1)


def content_chunks(path: Path) -> list[tuple[int, int, str]]:
    """``(offset, length, sha256 hex)`` of each content-defined chunk of a file, in order.

    Raises:
        ConfigError: the file cannot be read.
    """
    try:
        size = path.stat().st_size
        f = path.open("rb")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read ({e.strerror})") from e
    cuts: list[int] = []
    with f:
        pos, tail = 0, b""
        while block := f.read(_BLOCK):
            data = np.frombuffer(tail + block, dtype=np.uint8)
            base = pos - len(tail)
            if len(data) >= _WINDOW:
                cuts.extend((_boundaries(data) + base + 1).tolist())  # cut after the window
            pos += len(block)
            tail = block[-(_WINDOW - 1):]
        f.seek(0)
        chunks: list[tuple[int, int, str]] = []
        start = 0
        for cut in [*cuts, size]:
            while cut - start > CHUNK_MAX:
                chunks.append(_chunk(f, start, CHUNK_MAX))
                start += CHUNK_MAX
            if cut - start >= CHUNK_MIN or (cut == size and cut > start):
                chunks.append(_chunk(f, start, cut - start))
                start = cut
    return chunks


def _chunk(f: object, offset: int, length: int) -> tuple[int, int, str]:
    f.seek(offset)  # type: ignore[attr-defined]
    return offset, length, hashlib.sha256(f.read(length)).hexdigest()  # type: ignore[attr-defined]
