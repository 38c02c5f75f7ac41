"""llama.cpp's Hugging Face converter: installed from the llama-cpp-python sdist, found again.

``convert_hf_to_gguf.py`` is not on PyPI by itself. It ships, with its ``conversion/`` package
and ``gguf-py``, inside the llama-cpp-python sdist, under ``vendor/llama.cpp/``: exactly the
llama.cpp that the installed llama-cpp-python was built from. :func:`install_converter`
extracts those files (and nothing else) into ``<sys.prefix>/share/edgeward/llama.cpp`` with a
stamp naming the version and the sdist's sha256; :func:`find_converter` refuses an install of
another version, so the converter and the llama.cpp that loads its output never drift apart::

    install_converter(sdist=Path("llama_cpp_python-0.3.36.tar.gz"))   # make setup does this
    converter = find_converter()
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

from edgeward.compress._onnx_export import staged_dir
from edgeward.compress._pipeline import sha256_file
from edgeward.errors import ArtifactError, ConfigError
from edgeward.runtimes import llama_cpp_version
from edgeward.safeio import parse_json, read_text_capped

__all__ = [
    "CONVERTER_ENV",
    "CONVERTER_SCRIPT",
    "STAMP_NAME",
    "default_converter_dir",
    "find_converter",
    "install_converter",
    "supported_architectures",
]

#: Environment variable naming an installed converter directory (overrides the default).
CONVERTER_ENV = "EDGEWARD_LLAMA_CONVERTER"
CONVERTER_SCRIPT = "convert_hf_to_gguf.py"
STAMP_NAME = "edgeward-converter.json"

_SCRIPT = CONVERTER_SCRIPT
_VENDOR = PurePosixPath("vendor/llama.cpp")
# What the converter needs from vendor/llama.cpp (newer llama.cpp splits the converter into
# convert_hf_to_gguf.py and the conversion/ package; older ones have the script alone).
_KEEP_DIRS = ("conversion", "gguf-py")
_KEEP_FILES = ("convert_hf_to_gguf.py", "LICENSE",
               "requirements/requirements-convert_hf_to_gguf.txt",
               "requirements/requirements-convert_legacy_llama.txt")


def default_converter_dir() -> Path:
    """``<sys.prefix>/share/edgeward/llama.cpp``: where ``make setup`` installs the converter."""
    return Path(sys.prefix) / "share" / "edgeward" / "llama.cpp"


def _fix_hint(dest: Path | None = None) -> str:
    where = f" --dest {dest}" if dest is not None and dest != default_converter_dir() else ""
    return (f"run `python scripts/install_llama_converter.py{where}` in an edgeward checkout "
            "(it fetches the llama-cpp-python sdist from PyPI), or `python -c \"from "
            "edgeward.compress import install_converter; install_converter()\"`")


def install_converter(dest: Path | None = None, *, sdist: Path | None = None) -> Path:
    """Install llama.cpp's ``convert_hf_to_gguf.py`` (and ``gguf-py``) from the llama-cpp-python
    sdist of the installed version.

    Args:
        dest: the directory to install into (replaced if present); default
            :func:`default_converter_dir`.
        sdist: a local ``llama_cpp_python-<version>.tar.gz``; None downloads it with
            ``pip download --no-deps --no-binary :all: llama-cpp-python==<installed version>``.

    Returns:
        ``dest``, holding the converter, ``gguf-py/``, its requirements, llama.cpp's LICENSE
        and a stamp (``edgeward-converter.json``) with the version and the sdist's sha256.

    Raises:
        ConfigError: the sdist is missing, not a llama-cpp-python sdist, or of another version
            than the installed llama-cpp-python; pip could not download it.
    """
    dest = Path(dest) if dest is not None else default_converter_dir()
    version = llama_cpp_version()
    with contextlib.ExitStack() as stack:
        if sdist is None:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="edgeward-sdist-")))
            sdist = _download_sdist(version, tmp)
        sdist = Path(sdist)
        if not sdist.is_file():
            raise ConfigError(f"{sdist}: no such file (expected the llama-cpp-python {version} "
                              "sdist, llama_cpp_python-*.tar.gz)")
        digest = sha256_file(sdist)
        dest.parent.mkdir(parents=True, exist_ok=True)
        with staged_dir(dest) as staging:
            sdist_version, n_files = _extract_converter(sdist, staging)
            if sdist_version != version:
                raise ConfigError(
                    f"{sdist}: this is the llama-cpp-python {sdist_version} sdist, but "
                    f"llama-cpp-python {version} is installed; the converter must come from the "
                    f"same llama.cpp: use llama_cpp_python-{version}.tar.gz (pip download "
                    f"--no-deps --no-binary :all: llama-cpp-python=={version})")
            stamp = {"format": 1, "llama_cpp_python": version, "sdist": sdist.name,
                     "sdist_sha256": digest, "files": n_files}
            (staging / STAMP_NAME).write_text(json.dumps(stamp, indent=2) + "\n", encoding="utf-8")
    return dest


def _download_sdist(version: str, into: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
           "--progress-bar", "off", f"llama-cpp-python=={version}", "-d", str(into)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    found = sorted(into.glob("llama_cpp_python-*.tar.gz"))
    if proc.returncode != 0 or not found:
        tail = "; ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise ConfigError(f"could not download the llama-cpp-python {version} sdist with pip "
                          f"({tail or 'no file'}); download llama_cpp_python-{version}.tar.gz "
                          "elsewhere and pass it with --sdist")
    return found[0]


def _extract_converter(sdist: Path, into: Path) -> tuple[str, int]:
    """Extract the converter's files from the sdist into ``into``; returns (version, files)."""
    version, n_files, has_gguf = "", 0, False
    try:
        with tarfile.open(sdist, "r:*") as tar:
            for member in tar:
                parts = PurePosixPath(member.name).parts
                if len(parts) < 2 or ".." in parts or member.name.startswith("/"):
                    continue
                rel = PurePosixPath(*parts[1:])
                if rel == PurePosixPath("PKG-INFO") and member.isfile():
                    text = _read_member(tar, member).decode("utf-8", "replace")
                    version = _pkg_info_version(text)
                    continue
                if not member.isfile() or not rel.is_relative_to(_VENDOR):
                    continue
                inner = rel.relative_to(_VENDOR)
                if str(inner) not in _KEEP_FILES and inner.parts[0] not in _KEEP_DIRS:
                    continue
                if "__pycache__" in inner.parts:
                    continue
                target = into.joinpath(*inner.parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(_read_member(tar, member))
                n_files += 1
                has_gguf = has_gguf or inner == PurePosixPath("gguf-py/gguf/__init__.py")
    except (tarfile.TarError, OSError, EOFError) as e:
        raise ConfigError(f"{sdist}: not a readable .tar.gz sdist ({e})") from e
    if not (into / _SCRIPT).is_file() or not has_gguf or not version:
        raise ConfigError(f"{sdist}: not a llama-cpp-python sdist (no PKG-INFO version, "
                          f"vendor/llama.cpp/{_SCRIPT} or vendor/llama.cpp/gguf-py/gguf/)")
    return version, n_files


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    f = tar.extractfile(member)
    if f is None:
        raise ConfigError(f"{member.name}: unreadable member of the sdist")
    with f:
        return f.read()


def _pkg_info_version(text: str) -> str:
    m = re.search(r"^Version:\s*(\S+)\s*$", text, re.MULTILINE)
    return m.group(1) if m else ""


def find_converter() -> Path:
    """The installed converter's directory: ``$EDGEWARD_LLAMA_CONVERTER``, else
    :func:`default_converter_dir`.

    Raises:
        ConfigError: it is not installed there, or it comes from another llama-cpp-python
            version than the installed one (the message says what to run).
    """
    env = os.environ.get(CONVERTER_ENV)
    where = Path(env) if env else default_converter_dir()
    source = f"${CONVERTER_ENV}" if env else "the default location"
    if not (where / _SCRIPT).is_file() or not (where / "gguf-py" / "gguf").is_dir():
        raise ConfigError(f"llama.cpp's Hugging Face converter is not installed at {where} "
                          f"({source}); {_fix_hint(where)}")
    try:
        stamp = parse_json(read_text_capped(where / STAMP_NAME, what="converter stamp"),
                           what=f"converter stamp {where / STAMP_NAME}")
        found = str(stamp["llama_cpp_python"])
    except (ConfigError, KeyError, TypeError):
        raise ConfigError(f"{where / STAMP_NAME}: the converter's stamp is missing or "
                          "unreadable, so its llama.cpp version is unknown; reinstall it: "
                          f"{_fix_hint(where)}") from None
    installed = llama_cpp_version()
    if found != installed:
        raise ConfigError(f"the converter at {where} comes from llama-cpp-python {found}, but "
                          f"{installed} is installed; reinstall it: {_fix_hint(where)}")
    return where


def supported_architectures(converter: Path) -> frozenset[str]:
    """The Hugging Face ``architectures`` names the converter registers, read from its source
    (``TEXT_MODEL_MAP`` in ``conversion/__init__.py``; ``@ModelBase.register(...)`` in the
    older single-file converter) without importing it.

    Raises:
        ArtifactError: neither form is found.
    """
    names: set[str] = set()
    package = converter / "conversion" / "__init__.py"
    if package.is_file():
        tree = ast.parse(package.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            target = node.target if isinstance(node, ast.AnnAssign) else (
                node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1
                else None)
            if isinstance(target, ast.Name) and target.id == "TEXT_MODEL_MAP":
                value = getattr(node, "value", None)
                if isinstance(value, ast.Dict):
                    names |= {k.value for k in value.keys
                              if isinstance(k, ast.Constant) and isinstance(k.value, str)}
    if not names and (converter / _SCRIPT).is_file():
        text = (converter / _SCRIPT).read_text(encoding="utf-8")
        for args in re.findall(r"@ModelBase\.register\(([^)]*)\)", text):
            names |= set(re.findall(r"[\"']([A-Za-z0-9_]+)[\"']", args))
    if not names:
        raise ArtifactError(f"{converter}: cannot read the converter's supported architectures "
                            f"(no TEXT_MODEL_MAP nor @ModelBase.register); {_fix_hint(converter)}")
    return frozenset(names)
