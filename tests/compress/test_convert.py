"""Hugging Face -> GGUF conversion, fast: installing the converter from a fake sdist, finding it,
checking checkpoint directories, and running a fake converter script through the real
subprocess, error and cache plumbing (the real converter runs in test_convert_smollm2.py)."""

from __future__ import annotations

import io
import json
import sys
import tarfile
from pathlib import Path

import pytest

from edgeward.compress import (
    ConversionInfo,
    check_hf_checkpoint,
    convert_checkpoint,
    converted_gguf,
    find_converter,
    install_converter,
    is_hf_checkpoint,
)
from edgeward.compress._convert import resolve_outtype, source_digest
from edgeward.compress._converter import CONVERTER_ENV, STAMP_NAME, supported_architectures
from edgeward.errors import ArtifactError, ConfigError
from edgeward.runtimes import llama_cpp_version, read_gguf_header

VERSION = llama_cpp_version()

# A stand-in for convert_hf_to_gguf.py: records its arguments and environment, draws a tqdm-like
# bar with "\r", then copies $FAKE_GGUF to --outfile, or fails the way the real one does.
FAKE_SCRIPT = r'''
import json, os, shutil, sys
args = sys.argv[1:]
out = args[args.index("--outfile") + 1]
log = os.environ.get("FAKE_LOG")
if log:
    with open(log, "a") as f:
        f.write(json.dumps({"args": args, "hf_offline": os.environ.get("HF_HUB_OFFLINE"),
                            "tf_offline": os.environ.get("TRANSFORMERS_OFFLINE"),
                            "pythonpath": os.environ.get("PYTHONPATH", "")}) + "\n")
mode = os.environ.get("FAKE_MODE", "ok")
print("INFO:hf-to-gguf:Loading model: x", file=sys.stderr)
if mode == "crash":
    raise KeyError("model.embed_tokens.weight")
if mode == "nomodule":
    import sentencepiece_is_not_here
if mode == "unsupported":
    print("ERROR:hf-to-gguf:Model FooForCausalLM is not supported", file=sys.stderr)
    sys.exit(1)
for pct in (0, 50, 100):
    sys.stderr.write(f"\rWriting: {pct:3d}%|#####| 1M/2M")
    sys.stderr.flush()
if mode == "garbage":
    open(out, "wb").write(b"not a gguf")
else:
    shutil.copyfile(os.environ["FAKE_GGUF"], out)
print("\nINFO:hf-to-gguf:Model successfully exported to " + out, file=sys.stderr)
'''


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def fake_sdist(path: Path, *, version: str = VERSION, script: str = FAKE_SCRIPT,
               with_gguf: bool = True) -> Path:
    """A llama-cpp-python-shaped sdist: PKG-INFO, the converter, conversion/, gguf-py/, and
    files the installer must leave alone (llama.cpp sources, a path escaping the tree)."""
    top = f"llama_cpp_python-{version}"
    vendor = f"{top}/vendor/llama.cpp"
    with tarfile.open(path, "w:gz") as tar:
        _add(tar, f"{top}/PKG-INFO", f"Metadata-Version: 2.1\nName: llama_cpp_python\n"
                                     f"Version: {version}\n".encode())
        _add(tar, f"{vendor}/convert_hf_to_gguf.py", script.encode())
        _add(tar, f"{vendor}/conversion/__init__.py",
             b'TEXT_MODEL_MAP: dict[str, str] = {\n    "LlamaForCausalLM": "llama",\n'
             b'    "BertModel": "bert",\n}\n')
        if with_gguf:
            _add(tar, f"{vendor}/gguf-py/gguf/__init__.py", b"")
        _add(tar, f"{vendor}/LICENSE", b"MIT License\n")
        _add(tar, f"{vendor}/requirements/requirements-convert_hf_to_gguf.txt", b"torch\n")
        _add(tar, f"{vendor}/ggml/src/ggml.c", b"int main;\n")
        _add(tar, f"{top}/vendor/../../escape.txt", b"no\n")
    return path


@pytest.fixture()
def sdist(tmp_path: Path) -> Path:
    return fake_sdist(tmp_path / f"llama_cpp_python-{VERSION}.tar.gz")


@pytest.fixture()
def converter(sdist: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The fake converter installed from the fake sdist and named by the environment."""
    dest = install_converter(tmp_path / "conv", sdist=sdist)
    monkeypatch.setenv(CONVERTER_ENV, str(dest))
    return dest


def hf_dir(path: Path, *, arch: str = "LlamaForCausalLM", dtype: str = "float32",
           weights: str | None = "model.safetensors", tokenizer: str | None = "tokenizer.json"
           ) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"architectures": [arch], "torch_dtype": dtype}))
    if weights:
        (path / weights).write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    if tokenizer:
        (path / tokenizer).write_text("{}")
    return path


# --- installing and finding ------------------------------------------------------------------


def test_install_extracts_the_converter_and_stamps_it(sdist: Path, tmp_path: Path) -> None:
    import hashlib

    dest = install_converter(tmp_path / "share" / "llama.cpp", sdist=sdist)
    assert (dest / "convert_hf_to_gguf.py").read_text() == FAKE_SCRIPT
    assert (dest / "conversion" / "__init__.py").is_file()
    assert (dest / "gguf-py" / "gguf" / "__init__.py").is_file()
    assert (dest / "LICENSE").is_file()
    assert (dest / "requirements" / "requirements-convert_hf_to_gguf.txt").is_file()
    # Only the converter's files: no llama.cpp sources, nothing outside dest.
    assert not (dest / "ggml").exists()
    assert not list(tmp_path.rglob("escape.txt"))
    stamp = json.loads((dest / STAMP_NAME).read_text())
    assert stamp["llama_cpp_python"] == VERSION
    assert stamp["sdist_sha256"] == hashlib.sha256(sdist.read_bytes()).hexdigest()
    # Nothing left beside it (the staging directory was renamed into place).
    assert [p.name for p in dest.parent.iterdir()] == ["llama.cpp"]


def test_install_replaces_an_existing_converter(sdist: Path, tmp_path: Path) -> None:
    dest = tmp_path / "conv"
    dest.mkdir()
    (dest / "stale.py").write_text("old")
    install_converter(dest, sdist=sdist)
    assert not (dest / "stale.py").exists()
    assert (dest / "convert_hf_to_gguf.py").is_file()


def test_install_refuses_another_version_and_leaves_nothing(tmp_path: Path) -> None:
    other = fake_sdist(tmp_path / "llama_cpp_python-0.0.1.tar.gz", version="0.0.1")
    dest = tmp_path / "conv"
    with pytest.raises(ConfigError, match=rf"0\.0\.1 sdist.*{VERSION} is installed"):
        install_converter(dest, sdist=other)
    assert not dest.exists()
    assert list(tmp_path.iterdir()) == [other]


@pytest.mark.parametrize("case", ["not-a-tar", "no-gguf-py", "missing"])
def test_install_refuses_what_is_not_a_llama_cpp_python_sdist(case: str, tmp_path: Path) -> None:
    path = tmp_path / "x.tar.gz"
    if case == "not-a-tar":
        path.write_bytes(b"hello")
    elif case == "no-gguf-py":
        fake_sdist(path, with_gguf=False)
    with pytest.raises(ConfigError, match=r"sdist|no such file"):
        install_converter(tmp_path / "conv", sdist=path)
    assert not (tmp_path / "conv").exists()


def test_install_script_cli(sdist: Path, tmp_path: Path) -> None:
    import subprocess

    script = Path(__file__).resolve().parents[2] / "scripts" / "install_llama_converter.py"
    ok = subprocess.run([sys.executable, str(script), "--sdist", str(sdist), "--dest",
                         str(tmp_path / "c")], capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "c" / STAMP_NAME).is_file()
    bad = subprocess.run([sys.executable, str(script), "--sdist", str(tmp_path / "none.tar.gz"),
                          "--dest", str(tmp_path / "d")], capture_output=True, text=True,
                         check=False)
    assert bad.returncode == ConfigError.exit_code
    assert "no such file" in bad.stderr and "Traceback" not in bad.stderr


def test_find_converter_uses_the_environment(converter: Path) -> None:
    assert find_converter() == converter


def test_find_converter_says_what_to_run_when_missing(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONVERTER_ENV, str(tmp_path / "nothing"))
    with pytest.raises(ConfigError, match=r"not installed.*install_llama_converter\.py"):
        find_converter()


def test_find_converter_refuses_a_stamp_of_another_version(converter: Path) -> None:
    stamp = converter / STAMP_NAME
    stamp.write_text(json.dumps({"llama_cpp_python": "0.0.1"}))
    with pytest.raises(ConfigError, match=rf"0\.0\.1, but {VERSION} is installed.*"
                                          r"install_llama_converter\.py"):
        find_converter()
    stamp.unlink()
    with pytest.raises(ConfigError, match=r"stamp is missing.*install_llama_converter"):
        find_converter()


def test_supported_architectures_from_both_converter_layouts(converter: Path,
                                                             tmp_path: Path) -> None:
    assert supported_architectures(converter) == {"LlamaForCausalLM", "BertModel"}
    old = tmp_path / "old"
    old.mkdir()
    (old / "convert_hf_to_gguf.py").write_text(
        '@ModelBase.register("GPT2LMHeadModel")\nclass GPT2Model: pass\n'
        '@ModelBase.register("Qwen2ForCausalLM", "Qwen2Model")\nclass Qwen2: pass\n')
    assert supported_architectures(old) == {"GPT2LMHeadModel", "Qwen2ForCausalLM", "Qwen2Model"}
    (old / "convert_hf_to_gguf.py").write_text("print('no registry')\n")
    with pytest.raises(ArtifactError, match="supported architectures"):
        supported_architectures(old)


# --- checkpoints ------------------------------------------------------------------------------


@pytest.mark.parametrize(("weights", "expected"), [
    ("model.safetensors", True),
    ("model-00001-of-00002.safetensors", True),
    ("pytorch_model.bin", True),
    ("weights.gguf", False),
    (None, False),
])
def test_is_hf_checkpoint(weights: str | None, expected: bool, tmp_path: Path) -> None:
    assert is_hf_checkpoint(hf_dir(tmp_path / "m", weights=weights)) is expected


def test_is_hf_checkpoint_needs_a_directory_with_config(tmp_path: Path) -> None:
    d = hf_dir(tmp_path / "m")
    (d / "config.json").unlink()
    assert not is_hf_checkpoint(d)
    assert not is_hf_checkpoint(d / "model.safetensors")
    assert not is_hf_checkpoint(tmp_path / "absent")


def test_check_accepts_a_supported_checkpoint(converter: Path, tmp_path: Path) -> None:
    assert check_hf_checkpoint(hf_dir(tmp_path / "m")) == "LlamaForCausalLM"
    sp = hf_dir(tmp_path / "sp", tokenizer="tokenizer.model", weights="pytorch_model.bin")
    assert check_hf_checkpoint(sp, converter=converter) == "LlamaForCausalLM"


@pytest.mark.parametrize(("case", "message"), [
    ("not-a-dir", "not a directory"),
    ("no-config", "no config.json"),
    ("bad-config", "not valid JSON"),
    ("no-weights", r"no weights \(no \*\.safetensors"),
    ("missing-shard", "missing: model-00002-of-00002.safetensors"),
    ("no-tokenizer", "no tokenizer"),
    ("no-architecture", "no \"architectures\""),
    ("unsupported", "'MambaForCausalLM' is not supported by llama.cpp's converter"),
])
def test_check_says_what_is_wrong(case: str, message: str, converter: Path,
                                  tmp_path: Path) -> None:
    d = tmp_path / "m"
    if case == "not-a-dir":
        d.write_text("x")
    else:
        hf_dir(d, weights=None if case == "no-weights" else "model-00001-of-00002.safetensors",
               tokenizer=None if case == "no-tokenizer" else "tokenizer.json",
               arch="MambaForCausalLM" if case == "unsupported" else "LlamaForCausalLM")
    if case == "no-config":
        (d / "config.json").unlink()
    elif case == "bad-config":
        (d / "config.json").write_text("{not json")
    elif case == "missing-shard":
        (d / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {
            "a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}))
    elif case == "no-architecture":
        (d / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match=message):
        check_hf_checkpoint(d, converter=converter)


@pytest.mark.parametrize(("dtype", "outtype", "expected"), [
    ("bfloat16", "auto", "bf16"),
    ("float16", "auto", "f16"),
    ("float32", "auto", "f16"),
    ("bfloat16", "f32", "f32"),
])
def test_outtype_rule(dtype: str, outtype: str, expected: str, tmp_path: Path) -> None:
    assert resolve_outtype(hf_dir(tmp_path / "m", dtype=dtype), outtype) == expected


def test_outtype_reads_the_newer_dtype_key_and_refuses_unknown(tmp_path: Path) -> None:
    d = hf_dir(tmp_path / "m")
    (d / "config.json").write_text(json.dumps({"architectures": ["X"], "dtype": "bfloat16"}))
    assert resolve_outtype(d, "auto") == "bf16"
    with pytest.raises(ConfigError, match="q8_0"):
        resolve_outtype(d, "q8_0")


def test_source_digest_covers_what_the_converter_reads(tmp_path: Path) -> None:
    d = hf_dir(tmp_path / "m")
    (d / "1_Pooling").mkdir()
    (d / "1_Pooling" / "config.json").write_text('{"pooling_mode_mean_tokens": true}')
    base = source_digest(d)
    (d / "README.md").write_text("docs do not change the GGUF")
    (d / ".gitattributes").write_text("*.safetensors filter=lfs")
    assert source_digest(d) == base
    (d / "1_Pooling" / "config.json").write_text('{"pooling_mode_cls_token": true}')
    changed = source_digest(d)
    assert changed != base
    (d / "tokenizer.json").write_text('{"a": 1}')
    assert source_digest(d) not in (base, changed)


# --- converting (the fake converter through the real plumbing) --------------------------------


@pytest.fixture()
def fake_env(tiny_gguf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    log = tmp_path / "calls.jsonl"
    monkeypatch.setenv("FAKE_GGUF", str(tiny_gguf))
    monkeypatch.setenv("FAKE_LOG", str(log))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return log


def _calls(log: Path) -> list[dict[str, object]]:
    return [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []


def test_convert_runs_the_converter_offline_and_renames_into_place(
        converter: Path, fake_env: Path, tmp_path: Path) -> None:
    src = hf_dir(tmp_path / "m", dtype="bfloat16")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    seen: list[tuple[int, int]] = []
    info = convert_checkpoint(src, out_dir / "m.gguf", progress=lambda d, t: seen.append((d, t)))
    (call,) = _calls(fake_env)
    args = call["args"]
    assert isinstance(args, list)
    assert args[0] == str(src) and args[args.index("--outtype") + 1] == "bf16"
    assert args[args.index("--outfile") + 1] != str(out_dir / "m.gguf")  # a temporary file
    assert call["hf_offline"] == "1" and call["tf_offline"] == "1"
    assert str(call["pythonpath"]).startswith(str(converter / "gguf-py"))
    assert seen == [(0, 100), (50, 100), (99, 100), (100, 100)]
    assert [p.name for p in out_dir.iterdir()] == ["m.gguf"]
    assert read_gguf_header(out_dir / "m.gguf").tensors
    assert info.outtype == "bf16" and info.converter_version == VERSION
    assert info.source_digest == source_digest(src) and info.size_bytes > 0
    assert ConversionInfo.from_dict(json.loads(json.dumps(info.to_dict()))) == info


@pytest.mark.parametrize(("mode", "error", "message"), [
    ("crash", ArtifactError, r"exit status 1\): .*KeyError: 'model\.embed_tokens\.weight'"),
    ("unsupported", ConfigError, "does not support this model.*FooForCausalLM is not supported"),
    ("garbage", ArtifactError, "not a GGUF file"),
    ("nomodule", ConfigError, "needs the Python package 'sentencepiece_is_not_here'.*pip install"),
])
def test_a_failed_conversion_leaves_nothing_and_quotes_the_converter(
        mode: str, error: type[Exception], message: str, converter: Path, fake_env: Path,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_MODE", mode)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(error, match=message) as caught:
        convert_checkpoint(hf_dir(tmp_path / "m"), out_dir / "m.gguf")
    assert "Traceback" not in str(caught.value) and 'File "' not in str(caught.value)
    assert list(out_dir.iterdir()) == []


def test_convert_refuses_before_running_the_converter(converter: Path, fake_env: Path,
                                                      tmp_path: Path) -> None:
    src = hf_dir(tmp_path / "m", tokenizer=None)
    with pytest.raises(ConfigError, match="no tokenizer"):
        convert_checkpoint(src, tmp_path / "m.gguf")
    with pytest.raises(ConfigError, match="no such directory"):
        convert_checkpoint(hf_dir(tmp_path / "ok"), tmp_path / "absent" / "m.gguf")
    assert _calls(fake_env) == []


def test_converted_gguf_is_cached_by_digest_and_checked_before_reuse(
        converter: Path, fake_env: Path, tmp_path: Path) -> None:
    src = hf_dir(tmp_path / "m")
    cache, work = tmp_path / "cache", tmp_path / "work"
    first, info = converted_gguf(src, cache_dir=cache, work_dir=work)
    assert first == cache / "converted" / f"{info.source_digest}-f16.gguf"
    assert not info.reused
    again, info2 = converted_gguf(src, cache_dir=cache, work_dir=work)
    assert again == first and info2.reused and info2.source_digest == info.source_digest
    assert len(_calls(fake_env)) == 1
    # A truncated entry is converted again, not used.
    with first.open("r+b") as f:
        f.truncate(first.stat().st_size - 10)
    _, info3 = converted_gguf(src, cache_dir=cache, work_dir=work)
    assert not info3.reused and len(_calls(fake_env)) == 2
    # Another outtype is another entry.
    other, info4 = converted_gguf(src, cache_dir=cache, work_dir=work, outtype="f32")
    assert other.name.endswith("-f32.gguf") and info4.outtype == "f32"
    # Changed weights: another digest, another conversion.
    (src / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}  changed ")
    changed, _ = converted_gguf(src, cache_dir=cache, work_dir=work)
    assert changed != first and len(_calls(fake_env)) == 4


def test_converted_gguf_without_a_cache_writes_into_the_work_dir(
        converter: Path, fake_env: Path, tmp_path: Path) -> None:
    src = hf_dir(tmp_path / "m")
    path, info = converted_gguf(src, cache_dir=None, work_dir=tmp_path / "work")
    assert path == tmp_path / "work" / "m-f16.gguf" == info.output and path.is_file()


def test_the_converter_missing_is_a_config_error(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONVERTER_ENV, str(tmp_path / "none"))
    with pytest.raises(ConfigError, match="install_llama_converter"):
        convert_checkpoint(hf_dir(tmp_path / "m"), tmp_path / "m.gguf")


def test_relative_paths_work_though_the_converter_runs_elsewhere(
        converter: Path, fake_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hf_dir(tmp_path / "m")
    (tmp_path / "out").mkdir()
    monkeypatch.chdir(tmp_path)
    info = convert_checkpoint(Path("m"), Path("out") / "m.gguf")
    assert (tmp_path / "out" / "m.gguf").is_file() and info.size_bytes > 0
    (call,) = _calls(fake_env)
    assert call["args"][0] == str(tmp_path / "m")  # type: ignore[index]
