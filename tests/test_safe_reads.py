"""Special files and unbounded reads (issue 18, break 6): one safe way to read outside input.

A FIFO in place of a signature hung ``run``, ``verify``, ``agent run`` and ``--safety-policy``;
a signature symlinked to ``/dev/zero`` ended in MemoryError; a 600 MB signature cost 872 MB of
RSS; an artifact symlinked to ``/dev/zero`` was copied until the disk was full; ``verify`` of
a symlinked artifact said "no such file or directory". Each case here runs the real command
in a subprocess with a timeout, so a hang fails the test instead of hanging the suite.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeward.errors import ConfigError, PolicyError
from edgeward.provenance import TrustStore
from edgeward.safeio import copy_capped, open_regular, parse_json, read_capped
from edgeward.safety import load_policy

sys.path.insert(0, str(Path(__file__).parent / "device_agents"))
from _agent_helpers import Signed, sign_copy

BIN = Path(sys.executable).with_name("edgeward")


def _returns_within(fn: Callable[[], Any], seconds: float = 10.0) -> Any:
    """Run ``fn`` in a thread; fail (instead of hanging the suite) if it blocks."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed back to the test
            out["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"blocked for more than {seconds} s"
    if "error" in out:
        raise out["error"]
    return out.get("value")


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN), *args], capture_output=True, text=True, timeout=timeout,
                          check=False, env={**os.environ, "COLUMNS": "80"})


@pytest.fixture
def signed(tmp_path: Path, tiny_gguf: Path) -> Signed:
    return sign_copy(tiny_gguf, tmp_path / "art")


# -- the module itself -------------------------------------------------------------------

def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "sig.json"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="a FIFO, not a regular file"):
        _returns_within(lambda: read_capped(fifo, 1024, what="signature"))


def test_devices_and_links_to_them_are_refused(tmp_path: Path) -> None:
    link = tmp_path / "sig.json"
    link.symlink_to("/dev/zero")
    with pytest.raises(ConfigError, match="character device"):
        _returns_within(lambda: read_capped(link, 1024))
    with pytest.raises(ConfigError, match="a directory"):
        open_regular(tmp_path)
    with pytest.raises(ConfigError, match="no such file"):
        open_regular(tmp_path / "absent")


def test_a_huge_file_is_refused_before_it_is_read(tmp_path: Path) -> None:
    big = tmp_path / "sig.json"
    with big.open("wb") as f:  # sparse: 600 MB on paper, nothing on disk
        f.truncate(600 << 20)
    with pytest.raises(ConfigError, match=r"629,145,600 bytes; at most 1,024"):
        read_capped(big, 1024, what="signature")


def test_copy_capped_stops_at_the_cap_and_leaves_nothing(tmp_path: Path) -> None:
    src = tmp_path / "a.bin"
    src.write_bytes(b"x" * 5000)
    assert copy_capped(src, tmp_path / "ok.bin", 5000) == 5000
    assert (tmp_path / "ok.bin").read_bytes() == b"x" * 5000
    with pytest.raises(ConfigError, match="more than the 4,999"):
        copy_capped(src, tmp_path / "no.bin", 4999)
    assert not (tmp_path / "no.bin").exists()
    zero = tmp_path / "zero"
    zero.symlink_to("/dev/zero")
    with pytest.raises(ConfigError, match="character device"):
        _returns_within(lambda: copy_capped(zero, tmp_path / "z.bin", 1 << 30))
    assert not (tmp_path / "z.bin").exists()


@pytest.mark.parametrize(("doc", "message"), [
    ("[" * 5000 + "]" * 5000, "nests deeper"),
    ("[" * 70 + "]" * 70, "nests deeper than 64"),
    ('{"a": "\\ud800"}', "lone UTF-16 surrogate"),
    ('{"\\udfff": 1}', "lone UTF-16 surrogate"),
    ('{"a": NaN}', "not valid JSON"),
    ('{"a": 1', "not valid JSON"),
])
def test_parse_json_refuses_hostile_documents(doc: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_json(doc)
    with pytest.raises(ConfigError, match="not UTF-8"):
        parse_json(b'{"a": "\xff"}')


def test_parse_json_keeps_what_is_valid() -> None:
    assert parse_json('{"a": [1, {"b": "\\ud83d\\ude00"}]}') == {"a": [1, {"b": "\U0001f600"}]}
    assert parse_json("[" * 64 + "]" * 64) is not None


@settings(max_examples=300, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(),
                    lambda kids: st.lists(kids) | st.dictionaries(st.text(), kids),
                    max_leaves=30))
def test_parse_json_round_trips_what_json_writes(value: Any) -> None:
    import json

    text = json.dumps(value)
    try:
        assert parse_json(text) == value
    except ConfigError as e:  # only for strings json.dumps escapes as lone surrogates
        assert "surrogate" in str(e)


# -- the commands ------------------------------------------------------------------------

def _fifo_signature(s: Signed) -> Path:
    sig = s.artifact.with_name(s.artifact.name + ".edgeward.json")
    sig.unlink()
    os.mkfifo(sig)
    return sig


def test_verify_and_run_refuse_a_fifo_signature_at_once(signed: Signed) -> None:
    _fifo_signature(signed)
    for args in (["verify", str(signed.artifact), "--trust", str(signed.trust)],
                 ["run", str(signed.artifact), "hi", "--trust", str(signed.trust),
                  "--max-tokens", "2"]):
        proc = _cli(*args, timeout=60)
        assert proc.returncode == 3, proc.stderr
        assert "a FIFO, not a regular file" in proc.stderr
        assert "Traceback" not in proc.stderr


def test_a_signature_linked_to_dev_zero_or_huge_is_refused(signed: Signed) -> None:
    sig = signed.artifact.with_name(signed.artifact.name + ".edgeward.json")
    sig.unlink()
    sig.symlink_to("/dev/zero")
    proc = _cli("verify", str(signed.artifact), "--trust", str(signed.trust))
    assert proc.returncode == 3 and "character device" in proc.stderr, proc.stderr
    sig.unlink()
    with sig.open("wb") as f:
        f.truncate(600 << 20)
    proc = _cli("verify", str(signed.artifact), "--trust", str(signed.trust))
    assert proc.returncode == 3 and "at most" in proc.stderr, proc.stderr


def test_verify_follows_a_symlinked_artifact_and_refuses_a_link_to_a_device(
        signed: Signed, tmp_path: Path) -> None:
    # the Hugging Face cache keeps models as symlinks to blobs: the named link is followed
    link_dir = tmp_path / "links"
    link_dir.mkdir()
    link = link_dir / signed.artifact.name
    link.symlink_to(signed.artifact)
    shutil.copyfile(signed.artifact.with_name(signed.artifact.name + ".edgeward.json"),
                    link_dir / (link.name + ".edgeward.json"))
    proc = _cli("verify", str(link), "--trust", str(signed.trust))
    assert proc.returncode == 0, proc.stderr
    link.unlink()
    link.symlink_to("/dev/zero")
    proc = _cli("verify", str(link), "--trust", str(signed.trust))
    assert proc.returncode == 3, proc.stderr
    assert "not a regular file or a directory" in proc.stderr


def test_the_agent_refuses_an_artifact_linked_to_dev_zero_without_copying(
        signed: Signed, tmp_path: Path) -> None:
    from edgeward.errors import EdgewardError

    zero = tmp_path / "zero.gguf"
    zero.symlink_to("/dev/zero")
    _load_refused_without_a_copy(zero, signed, tmp_path, EdgewardError, "character device")


def _load_refused_without_a_copy(artifact: Path, signed: Signed, tmp_path: Path,
                                 error: type[Exception], match: str) -> None:
    """Load ``artifact`` (with ``signed``'s signature beside it) into a fresh agent store:
    refused with ``error``, promptly, and no private copy left behind."""
    from edgeward.device_agents import ModelStore

    shutil.copyfile(signed.artifact.with_name(signed.artifact.name + ".edgeward.json"),
                    artifact.with_name(artifact.name + ".edgeward.json"))
    store = ModelStore(tmp_path / "state")
    store.open()
    with pytest.raises(error, match=match):
        _returns_within(lambda: store.load(artifact, trust_store=signed.trust))
    models = tmp_path / "state" / "models"
    assert not models.exists() or not any(models.iterdir())


def test_a_fifo_policy_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "policy.toml"
    os.mkfifo(fifo)
    with pytest.raises(PolicyError, match="a FIFO"):
        _returns_within(lambda: load_policy(fifo))


# -- trust stores ------------------------------------------------------------------------

@pytest.mark.parametrize("index", [
    'version = 1\nkeys = "abc"\n',
    "version = 1\nkeys = [1, 2]\n",
    'version = 1\n[[keys]]\nkey_id = "x"\npublic_key = "../../etc/passwd"\nroles = ["publisher"]\n',
    'version = 1\n[[keys]]\nkey_id = "x"\npublic_key = "/etc/passwd"\nroles = ["publisher"]\n',
    'version = 1\n[[keys]]\nkey_id = "x"\npublic_key = 7\nroles = ["publisher"]\n',
    'version = 1\n[[keys]]\nkey_id = "x"\npublic_key = "keys/x.pub"\nroles = "publisher"\n',
    "version = [1]\n",
    "not toml = = =\n",
    "version = 0x" + "9" * 5000 + "\n",  # a hex integer of any size parses in tomllib
    "x = " + "[" * 3000 + "]" * 3000 + "\n",
])
def test_hostile_trust_indexes_are_config_errors(index: str, tmp_path: Path) -> None:
    store = tmp_path / "trust"
    (store / "keys").mkdir(parents=True)
    (store / "keys" / "x.pub").write_text("not a key")
    (store / "index.toml").write_text(index)
    with pytest.raises(ConfigError):
        TrustStore.open(store)


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=300))
def test_generated_trust_indexes_never_raise_anything_else(
        text: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    store = tmp_path_factory.mktemp("t")
    (store / "index.toml").write_text("version = 1\n" + text, encoding="utf-8")
    with contextlib.suppress(ConfigError):
        TrustStore.open(store)


# -- the agent: a FIFO during a reload must not wedge it ---------------------------------

def test_a_fifo_signature_at_reload_is_refused_and_sigterm_still_stops_the_agent(
        signed: Signed, tmp_path: Path) -> None:
    """It was: every later reload 409, SIGTERM ignored, two SIGINTs and a traceback."""
    import signal

    import httpx
    from _agent_helpers import AgentProcess, toml_config

    config = toml_config(tmp_path / "agent.toml", artifact=signed.artifact,
                         trust_store=signed.trust, listen="127.0.0.1:0",
                         state_dir=tmp_path / "state", shutdown_deadline_s=2)
    proc = AgentProcess(config, timeout=60)
    try:
        sig = signed.artifact.with_name(signed.artifact.name + ".edgeward.json")
        saved = sig.read_bytes()
        sig.unlink()
        os.mkfifo(sig)
        proc.signal(signal.SIGHUP)
        line = proc.wait_line("event=reload_refused", 30)
        assert "FIFO" in line or "config_error" in line, line
        sig.unlink()
        sig.write_bytes(saved)
        proc.signal(signal.SIGHUP)  # a later reload is not stuck behind the first
        proc.wait_line("event=reloaded", 60)
        assert httpx.get(proc.url + "/healthz", timeout=10).json()["status"] == "ok"
        proc.signal(signal.SIGTERM)
        rc = proc.wait(30)
    finally:
        proc.stop()
    assert rc == 0, "".join(proc.lines)
    assert "Traceback" not in "".join(proc.lines)


def test_an_artifact_larger_than_the_free_space_is_refused_before_copying(
        signed: Signed, tmp_path: Path) -> None:
    from edgeward.errors import ResourceError

    big = tmp_path / "huge.gguf"
    with big.open("wb") as f:  # sparse: a size larger than any free space, nothing on disk
        f.truncate(shutil.disk_usage(tmp_path).free + (1 << 40))
    _load_refused_without_a_copy(big, signed, tmp_path, ResourceError, "free")
