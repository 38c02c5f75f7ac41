"""Hugging Face checkpoints into GGUF, with llama.cpp's own converter.

A Hugging Face causal-LM directory (``config.json``, ``*.safetensors``, tokenizer files) becomes
an F16/BF16/F32 GGUF that the rest of the GGUF path quantizes. edgeward does not reimplement the
conversion: it runs ``convert_hf_to_gguf.py`` (with its ``conversion/`` package and ``gguf-py``)
from the very llama.cpp that the installed llama-cpp-python was built from, so the tensor names,
metadata and tokenizer handling match the llama.cpp that will load the result. The converter is
not on PyPI by itself; it comes out of the llama-cpp-python sdist::

    install_converter(sdist=Path("llama_cpp_python-0.3.36.tar.gz"))   # once (make setup does it)
    gguf, info = converted_gguf(hf_dir, cache_dir=cache, work_dir=tmp)
    print(info.to_dict())

The converter runs as a subprocess of the current interpreter, offline (``HF_HUB_OFFLINE=1``),
writing to a temporary file that is renamed into place only when it succeeded. Installing and
finding the converter is :mod:`edgeward.compress._converter`'s part.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

from edgeward.compress._converter import (
    CONVERTER_ENV,
    CONVERTER_SCRIPT,
    default_converter_dir,
    find_converter,
    install_converter,
    supported_architectures,
)
from edgeward.compress._pipeline import sha256_file
from edgeward.errors import ArtifactError, ConfigError, EdgewardError
from edgeward.runtimes import llama_cpp_version, read_gguf_header
from edgeward.safeio import parse_json, read_text_capped

__all__ = [
    "CONVERTER_ENV",
    "ConversionInfo",
    "OutType",
    "check_hf_checkpoint",
    "convert_checkpoint",
    "converted_gguf",
    "default_converter_dir",
    "find_converter",
    "install_converter",
    "is_hf_checkpoint",
    "resolve_outtype",
    "source_digest",
    "supported_architectures",
]

OutType = Literal["auto", "f16", "bf16", "f32"]
#: Called with (percent written, 100).
Progress = Callable[[int, int], None]

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "spiece.model",
                    "sentencepiece.bpe.model", "tekken.json", "tokenizer.tiktoken")
# Files of a checkpoint the converter reads (config, weights, tokenizer, chat template);
# README, images and licences do not change the GGUF and are left out of the digest.
_SOURCE_SUFFIXES = (".json", ".safetensors", ".bin", ".model", ".txt", ".jinja", ".tiktoken")
_SOURCE_SKIP = re.compile(r"^(README|LICEN[CS]E|NOTICE|USE_POLICY)", re.IGNORECASE)
_WRITING = re.compile(r"Writing:\s+(\d{1,3})%")
_TRACEBACK = re.compile(r"^(Traceback \(most recent call last\)|\s+File \"|\s{2,}\S|\s*\^+\s*$)")


# --- checkpoints ----------------------------------------------------------------------------


def _weight_files(path: Path) -> list[Path]:
    return sorted([*path.glob("*.safetensors"), *path.glob("pytorch_model*.bin")])


def is_hf_checkpoint(path: Path) -> bool:
    """A directory with ``config.json`` and at least one ``*.safetensors`` or
    ``pytorch_model*.bin`` file (what :func:`check_hf_checkpoint` examines further)."""
    path = Path(path)
    return path.is_dir() and (path / "config.json").is_file() and bool(_weight_files(path))


def _read_config(path: Path) -> dict[str, Any]:
    config = parse_json(read_text_capped(path / "config.json", what="config.json"),
                        what=f"{path / 'config.json'}")
    if not isinstance(config, dict):
        raise ConfigError(f"{path / 'config.json'}: not a JSON object")
    return config


def _architecture(config: dict[str, Any]) -> str | None:
    # As the converter's get_model_architecture: a text_config's architectures win.
    for cfg in (config.get("text_config"), config):
        arches = cfg.get("architectures") if isinstance(cfg, dict) else None
        if isinstance(arches, list) and arches and isinstance(arches[0], str):
            return arches[0]
    return None


def check_hf_checkpoint(path: Path, *, converter: Path | None = None) -> str:
    """Check that ``path`` is a Hugging Face checkpoint the converter can convert.

    Args:
        path: the model directory.
        converter: the converter directory (None: :func:`find_converter`).

    Returns:
        The model's architecture (``config.json``'s ``architectures[0]``).

    Raises:
        ConfigError: not a directory, no or a bad ``config.json``, no weights, a missing shard,
            no tokenizer, no or an unsupported architecture, or no converter installed.
    """
    path = Path(path)
    if not path.is_dir():
        raise ConfigError(f"{path}: not a directory (a Hugging Face checkpoint is a directory "
                          "with config.json, *.safetensors and tokenizer files)")
    if not (path / "config.json").is_file():
        raise ConfigError(f"{path}: no config.json, so not a Hugging Face model directory")
    config = _read_config(path)
    if not _weight_files(path):
        raise ConfigError(f"{path}: no weights (no *.safetensors or pytorch_model*.bin file); "
                          "copy the model's weight files into the directory")
    index = path / "model.safetensors.index.json"
    if index.is_file():
        weight_map = parse_json(read_text_capped(index, 16 << 20, what="index"),
                                what=str(index)).get("weight_map", {})
        missing = sorted({str(s) for s in weight_map.values()} - {p.name for p in
                                                                   path.glob("*.safetensors")})
        if missing:
            raise ConfigError(f"{path}: shards named by model.safetensors.index.json are "
                              f"missing: {', '.join(missing[:5])}")
    if not any((path / name).is_file() for name in _TOKENIZER_FILES):
        raise ConfigError(f"{path}: no tokenizer (none of {', '.join(_TOKENIZER_FILES)}); copy "
                          "the model's tokenizer files into the directory")
    arch = _architecture(config)
    if arch is None:
        raise ConfigError(f"{path / 'config.json'}: no \"architectures\" entry, so the model "
                          "class is unknown")
    supported = supported_architectures(converter if converter is not None else find_converter())
    if arch not in supported:
        raise ConfigError(f"{path}: architecture {arch!r} is not supported by llama.cpp's "
                          f"converter (llama-cpp-python {llama_cpp_version()}, "
                          f"{len(supported)} architectures)")
    return arch


def source_digest(path: Path) -> str:
    """sha256 (hex) over the sorted (relative name, sha256) of the checkpoint files the
    converter reads: config, weights, tokenizer and chat-template files, and the
    sentence-transformers module configs in subdirectories (``1_Pooling/config.json``).
    Hidden files, READMEs and licences are left out."""
    root = Path(path)
    files: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            p = Path(dirpath) / name
            if (not name.startswith(".") and p.suffix in _SOURCE_SUFFIXES
                    and not _SOURCE_SKIP.match(name) and p.is_file()):
                files[p.relative_to(root).as_posix()] = p
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(f"{name}\0{sha256_file(files[name])}\n".encode())
    return h.hexdigest()


def resolve_outtype(path: Path, outtype: str) -> str:
    """``f16``/``bf16``/``f32`` as given; ``auto``: ``bf16`` if ``config.json``'s
    ``torch_dtype`` (or ``dtype``) is ``bfloat16``, else ``f16``.

    Raises:
        ConfigError: an unknown outtype.
    """
    if outtype not in ("auto", "f16", "bf16", "f32"):
        raise ConfigError(f"outtype {outtype!r} is not one of auto, f16, bf16, f32")
    if outtype != "auto":
        return outtype
    config = _read_config(Path(path))
    dtype = config.get("torch_dtype") or config.get("dtype")
    return "bf16" if dtype == "bfloat16" else "f16"


# --- converting -----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ConversionInfo:
    """What a conversion read, ran and wrote.

    Attributes:
        source: the Hugging Face directory.
        source_digest: sha256 over the sorted (name, sha256) of the files the converter reads.
        architecture: ``config.json``'s architecture.
        converter_version: the llama-cpp-python version the converter came from.
        outtype: ``f16``, ``bf16`` or ``f32`` (``auto`` resolved).
        output: the GGUF written.
        size_bytes: its size.
        seconds: how long the conversion took (when it was made, if reused from the cache).
        reused: the GGUF came from the cache.
    """

    source: Path
    source_digest: str
    architecture: str
    converter_version: str
    outtype: str
    output: Path
    size_bytes: int
    seconds: float
    reused: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        out = asdict(self)
        out.update(source=str(self.source), output=str(self.output))
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ConversionInfo:
        """Read what :meth:`to_dict` wrote.

        Raises:
            ConfigError: a missing or mistyped field.
        """
        try:
            return cls(source=Path(data["source"]), source_digest=str(data["source_digest"]),
                       architecture=str(data["architecture"]),
                       converter_version=str(data["converter_version"]),
                       outtype=str(data["outtype"]), output=Path(data["output"]),
                       size_bytes=int(data["size_bytes"]), seconds=float(data["seconds"]),
                       reused=bool(data.get("reused", False)))
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"not a conversion record: {e}") from None


def convert_checkpoint(src_dir: Path, out: Path, *, outtype: str = "auto",
                       progress: Progress | None = None) -> ConversionInfo:
    """Convert a Hugging Face directory to a GGUF file with llama.cpp's converter.

    Args:
        src_dir: the checkpoint directory (see :func:`check_hf_checkpoint`).
        out: the GGUF to write (replaced if present; written to a temporary file beside it
            and renamed into place on success).
        outtype: ``auto`` (``bf16`` for a bfloat16 checkpoint, else ``f16``), ``f16``,
            ``bf16`` or ``f32``.
        progress: called with (percent written, 100); (0, 100) at the start, (100, 100) at
            the end.

    Raises:
        ConfigError: a bad checkpoint or outtype, ``out``'s directory is missing, no converter
            installed, or the converter rejected the model.
        ArtifactError: the converter failed (the message holds its last lines).
    """
    src_dir, out = Path(src_dir), Path(out)
    converter = find_converter()
    arch = check_hf_checkpoint(src_dir, converter=converter)
    resolved = resolve_outtype(src_dir, outtype)
    return _convert(src_dir, out, converter=converter, architecture=arch, outtype=resolved,
                    digest=source_digest(src_dir), progress=progress)


def _convert(src_dir: Path, out: Path, *, converter: Path, architecture: str, outtype: str,
             digest: str, progress: Progress | None) -> ConversionInfo:
    if not out.parent.is_dir():
        raise ConfigError(f"{out.parent}: no such directory; create it first")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    # Absolute paths: the converter runs in out's directory (its stray files stay there).
    cmd = [sys.executable, str((converter / CONVERTER_SCRIPT).absolute()),
           str(src_dir.absolute()), "--outfile", str(tmp.absolute()), "--outtype", outtype]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str((converter / "gguf-py").absolute()),
                                                        os.environ.get("PYTHONPATH")])))
    started = time.monotonic()
    if progress is not None:
        progress(0, 100)
    try:
        code, tail = _run_converter(cmd, env, cwd=out.parent, progress=progress)
        if code != 0:
            raise _failure(src_dir, code, tail)
        _check_gguf(tmp, what="the converter's output")
        _check_vocab_loads(tmp, src_dir)
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o666 & ~umask)  # mkstemp made it 0600; the GGUF is an ordinary file
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    if progress is not None:
        progress(100, 100)
    return ConversionInfo(source=src_dir, source_digest=digest, architecture=architecture,
                          converter_version=llama_cpp_version(), outtype=outtype, output=out,
                          size_bytes=out.stat().st_size,
                          seconds=round(time.monotonic() - started, 3))


def _run_converter(cmd: list[str], env: dict[str, str], *, cwd: Path,
                   progress: Progress | None) -> tuple[int, list[str]]:
    """Run the converter; returns its exit status and its last lines (progress bars aside)."""
    tail: collections.deque[str] = collections.deque(maxlen=60)
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                cwd=cwd, stdin=subprocess.DEVNULL)
    except OSError as e:
        raise ArtifactError(f"cannot start llama.cpp's converter: {e}") from e
    assert proc.stdout is not None
    try:
        last = 0  # (0, 100) was reported before the start
        for line in _lines(proc.stdout):
            m = _WRITING.search(line)
            if m is None:
                tail.append(line)
            elif progress is not None and (pct := min(int(m.group(1)), 99)) != last:
                last = pct
                progress(pct, 100)
        return proc.wait(), list(tail)
    finally:
        if proc.poll() is None:  # interrupted: do not leave it writing
            proc.kill()
            proc.wait()
        proc.stdout.close()


def _lines(stream: Any) -> Iterator[str]:
    """Lines split on ``\\n`` and ``\\r`` (tqdm redraws its bar with ``\\r``)."""
    buf = b""
    while chunk := stream.read1(1 << 16):
        buf += chunk
        *done, buf = re.split(rb"[\r\n]", buf)
        for raw in done:
            if line := raw.decode("utf-8", "replace").rstrip():
                yield line
    if line := buf.decode("utf-8", "replace").rstrip():
        yield line


def _failure(src_dir: Path, code: int, tail: list[str]) -> EdgewardError:
    lines = [ln for ln in tail if not _TRACEBACK.match(ln)][-6:]
    text = " | ".join(ln.strip() for ln in lines) or "no output"
    missing = next((m for ln in lines if (m := re.search(r"No module named '([\w.]+)'", ln))),
                   None)
    if missing is not None:
        name = missing.group(1).split(".")[0]
        return ConfigError(f"{src_dir}: llama.cpp's converter needs the Python package "
                           f"{name!r} for this model: pip install {name} ({text})")
    if any("is not supported" in ln or "Failed to detect model architecture" in ln
           for ln in lines):
        return ConfigError(f"{src_dir}: llama.cpp's converter does not support this model: {text}")
    return ArtifactError(f"{src_dir}: llama.cpp's converter failed (exit status {code}): {text}")


def _check_gguf(path: Path, *, what: str, size: int | None = None) -> None:
    """Raise ArtifactError unless ``path`` is a complete-looking GGUF (of ``size`` bytes)."""
    try:
        actual = path.stat().st_size
        if size is not None and actual != size:
            raise ArtifactError(f"{path}: {what} is {actual:,} bytes, expected {size:,}")
        with path.open("rb") as f:
            if f.read(4) != b"GGUF":
                raise ArtifactError(f"{path}: {what} is not a GGUF file")
        header = read_gguf_header(path)
    except OSError as e:
        raise ArtifactError(f"{path}: cannot read {what} ({e.strerror})") from e
    if not header.tensors:
        raise ArtifactError(f"{path}: {what} holds no tensors")


def _check_vocab_loads(path: Path, src_dir: Path) -> None:
    """Load the GGUF's vocabulary in a child llama.cpp and tokenize a probe text: a tokenizer
    llama.cpp cannot use (a SentencePiece vocabulary the converter wrote for byte-level BPE
    tokens, say) aborts the process on its first tokenization, so it is caught here, in a
    child, instead of in the caller."""
    code = ("import sys, llama_cpp\n"
            "m = llama_cpp.Llama(sys.argv[1], vocab_only=True, verbose=False)\n"
            "m.detokenize(m.tokenize('Hello, world!\\n\\t123 caf\u00e9 <|x|>'.encode(), "
            "add_bos=True, special=True))\n")
    env = dict(os.environ, GGML_NO_BACKTRACE="1")  # no gdb backtrace of the expected abort
    try:
        proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                              text=True, check=False, stdin=subprocess.DEVNULL, timeout=600,
                              env=env)
    except subprocess.TimeoutExpired:
        raise ArtifactError(f"{src_dir}: llama.cpp took over 10 minutes to load the converted "
                            "GGUF's vocabulary; the tokenizer files look wrong") from None
    if proc.returncode != 0:
        lines = [ln.strip() for ln in (proc.stderr or "").splitlines()
                 if re.search(r"terminate called|what\(\)|Error", ln)]
        raise ArtifactError(
            f"{src_dir}: llama.cpp cannot load or use the vocabulary of the converted GGUF "
            f"({' | '.join(lines[-2:]) or f'exit status {proc.returncode}'}); the tokenizer "
            "files do not match the model's tokenizer (check tokenizer_config.json's "
            "tokenizer_class and tokenizer.json)")


def converted_gguf(src_dir: Path, *, cache_dir: Path | None, work_dir: Path,
                   outtype: str = "auto", progress: Progress | None = None
                   ) -> tuple[Path, ConversionInfo]:
    """The checkpoint as a GGUF, converted once.

    With ``cache_dir`` the GGUF is kept as ``cache_dir/converted/<digest>-<outtype>.gguf``
    (with a ``.json`` record beside it) and reused while the source files, the converter's
    version and the file's size and header are unchanged; without it, it is written to
    ``work_dir``.

    Args:
        src_dir: the Hugging Face directory.
        cache_dir: the cache root, or None.
        work_dir: where the GGUF goes when there is no cache.
        outtype: as :func:`convert_checkpoint`.
        progress: as :func:`convert_checkpoint`.

    Raises:
        ConfigError, ArtifactError: as :func:`convert_checkpoint`.
    """
    src_dir = Path(src_dir)
    converter = find_converter()
    arch = check_hf_checkpoint(src_dir, converter=converter)
    resolved = resolve_outtype(src_dir, outtype)
    digest = source_digest(src_dir)
    if cache_dir is None:
        Path(work_dir).mkdir(parents=True, exist_ok=True)
        out = Path(work_dir) / f"{src_dir.name}-{resolved}.gguf"
        info = _convert(src_dir, out, converter=converter, architecture=arch, outtype=resolved,
                        digest=digest, progress=progress)
        return out, info
    folder = Path(cache_dir) / "converted"
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{digest}-{resolved}.gguf"
    record = out.with_suffix(".json")
    cached = _cached(out, record, version=llama_cpp_version())
    if cached is not None:
        # the same files may sit in another directory now: name the one given
        return out, replace(cached, source=src_dir)
    info = _convert(src_dir, out, converter=converter, architecture=arch, outtype=resolved,
                    digest=digest, progress=progress)
    partial = record.with_name(record.name + ".partial")
    partial.write_text(json.dumps(info.to_dict(), indent=2) + "\n", encoding="utf-8")
    partial.replace(record)
    return out, info


def _cached(out: Path, record: Path, *, version: str) -> ConversionInfo | None:
    """The cache entry's record if the entry is intact and from this converter, else None
    (a damaged or stale entry is removed, to be converted again)."""
    if not (out.is_file() and record.is_file()):
        return None
    try:
        info = ConversionInfo.from_dict(parse_json(read_text_capped(record, what="record")))
        if info.converter_version != version:
            raise ArtifactError(f"{out}: converted by llama-cpp-python {info.converter_version}")
        _check_gguf(out, what="the cached conversion", size=info.size_bytes)
    except EdgewardError:
        out.unlink(missing_ok=True)
        record.unlink(missing_ok=True)
        return None
    return replace(info, output=out, reused=True)

