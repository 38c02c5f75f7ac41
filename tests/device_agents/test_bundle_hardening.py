"""Air-gap bundles under attack (issue 18, breaks 1, 2, 6 and 7 for bundles): a re-imported
older bundle is a downgrade, refused unless an operator signed it; one record of superseded
artifacts guards the OTA gate and the bundle path alike; a bundle installs only what it
contains (no ``..``, no symlinks, no special files); a hostile manifest is a ConfigError and
never hangs; the bundle's own trust root is reported honestly; an import never changes the
slots under a running agent; slot copies are bounded."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _agent_helpers import Signed, sign_copy

from _models import TinyLlamaSpec, write_tiny_gguf
from edgeward.cli import main
from edgeward.device_agents import Agent, SlotStore, load_agent_config
from edgeward.device_agents._commands import CommandGate
from edgeward.errors import ArtifactError, CommandRefusedError, ConfigError
from edgeward.fleet.protocol import encode_command, new_command
from edgeward.provenance import PrivateKey, Role, TrustStore, generate_key, write_key_pair


@pytest.fixture(scope="module")
def v2(tmp_path_factory: pytest.TempPathFactory, signed_tiny: Signed) -> Signed:
    """A second, different model signed by the same publisher."""
    work = tmp_path_factory.mktemp("v2")
    (work / "src").mkdir()
    model = write_tiny_gguf(work / "src" / "tiny-v2.gguf", TinyLlamaSpec(seed=5))
    return sign_copy(model, work / "signed", key=signed_tiny.key, trust=signed_tiny.trust)


def _device(tmp: Path, publisher_trust: Path) -> Path:
    device_trust = tmp / "device" / "trust"
    store = TrustStore.open(device_trust, create=True)
    for k in TrustStore.open(publisher_trust).list_keys():
        store.add(k.key, k.roles, name=k.name)
    config = tmp / "device" / "agent.toml"
    config.write_text(f'artifact = "@slots"\ntrust_store = "{device_trust}"\n'
                      f'state_dir = "{tmp / "device" / "state"}"\nlisten = "127.0.0.1:0"\n')
    return config


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, Any]:
    capsys.readouterr()
    code = main(argv)
    text = capsys.readouterr().out
    return code, json.loads(text) if text.strip() else None


def _export(signed: Signed, to: Path) -> Path:
    assert main(["bundle", "export", str(signed.artifact), "--to", str(to), "--trust",
                 str(signed.trust)]) == 0
    return to


def _import(stick: Path, config: Path, capsys: pytest.CaptureFixture[str],
            *extra: str) -> tuple[int, Any]:
    return _run(["bundle", "import", str(stick), "--agent-config", str(config), "--json",
                 *extra], capsys)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _remanifest(stick: Path, **changes: Any) -> None:
    """Rewrite the manifest to match the bundle as it is now (an attacker's recomputation):
    every regular file and every symlink's target bytes."""
    manifest = json.loads((stick / "MANIFEST.json").read_text())
    files = {}
    for p in sorted(stick.rglob("*")):
        rel = p.relative_to(stick).as_posix()
        if rel != "MANIFEST.json" and p.is_file():
            files[rel] = _sha(p)
    manifest.update(files=files, **changes)
    (stick / "MANIFEST.json").write_text(json.dumps(manifest))


def _operator(config: Path, tmp: Path) -> tuple[PrivateKey, Path]:
    """An operator key in the device's trust store; returns it and its key file."""
    key = generate_key()
    TrustStore.open(config.parent / "trust").add(key.public_key, [Role.OPERATOR], name="ops")
    return key, write_key_pair(key, tmp / "ops").private_key_path


def _active_sha(config: Path) -> str | None:
    pointer = SlotStore(config.parent / "state").active()
    return pointer.sha256 if pointer else None


# -- break 1: downgrades ---------------------------------------------------------------------

def test_reimporting_an_older_bundle_is_a_downgrade_until_an_operator_signs_it(
        tmp_path: Path, signed_tiny: Signed, v2: Signed,
        capsys: pytest.CaptureFixture[str]) -> None:
    b1, b2 = _export(signed_tiny, tmp_path / "b1"), _export(v2, tmp_path / "b2")
    config = _device(tmp_path, signed_tiny.trust)
    assert _import(b1, config, capsys)[0] == 0
    assert _import(b2, config, capsys)[0] == 0
    code, out = _import(b1, config, capsys)
    assert code == 8 and out["error"] == "command_refused_error", out
    assert "downgrade" in out["detail"] and "--allow-downgrade" in out["detail"]
    assert _active_sha(config) == _sha(v2.artifact)
    # an authorisation signed by a key without the operator role is refused
    publisher_file = write_key_pair(signed_tiny.key, tmp_path / "pub").private_key_path
    code, _ = _run(["bundle", "authorise-downgrade", str(b1), "--key", str(publisher_file),
                    "--out", str(tmp_path / "by-publisher.json"), "--json"], capsys)
    assert code == 0  # anyone can sign; the device decides
    code, out = _import(b1, config, capsys, "--allow-downgrade",
                        str(tmp_path / "by-publisher.json"))
    assert code == 5 and out["error"] == "wrong_role_error", out
    # one for another artifact is refused
    _, ops_file = _operator(config, tmp_path)
    code, _ = _run(["bundle", "authorise-downgrade", _sha(v2.artifact), "--key", str(ops_file),
                    "--out", str(tmp_path / "other.json"), "--json"], capsys)
    assert code == 0
    code, out = _import(b1, config, capsys, "--allow-downgrade", str(tmp_path / "other.json"))
    assert code == 8 and "names" in out["detail"]
    assert _active_sha(config) == _sha(v2.artifact)
    # the operator's signed authorisation for this bundle: the deliberate downgrade
    code, made = _run(["bundle", "authorise-downgrade", str(b1), "--key", str(ops_file),
                       "--out", str(tmp_path / "allow.json"), "--reason", "v2 regressed",
                       "--json"], capsys)
    assert code == 0 and made["artifact_digest"] == _sha(signed_tiny.artifact)
    code, out = _import(b1, config, capsys, "--allow-downgrade", str(tmp_path / "allow.json"))
    assert code == 0 and out["committed"] and out["downgrade"] is True, out
    assert _active_sha(config) == _sha(signed_tiny.artifact)
    # v2 is now the artifact moved on from; the authorisation is good for one import only
    assert _import(b2, config, capsys)[1]["error"] == "command_refused_error"
    (tmp_path / "v3").mkdir()
    v3 = sign_copy(write_tiny_gguf(tmp_path / "v3" / "tiny-v3.gguf", TinyLlamaSpec(seed=9)),
                   tmp_path / "v3-signed", key=signed_tiny.key, trust=signed_tiny.trust)
    assert _import(_export(v3, tmp_path / "b3"), config, capsys)[0] == 0
    code, out = _import(b1, config, capsys, "--allow-downgrade", str(tmp_path / "allow.json"))
    assert code == 8 and "used before" in out["detail"], out
    assert _active_sha(config) == _sha(v3.artifact)


def test_one_record_guards_the_ota_gate_and_the_bundle_path(
        tmp_path: Path, signed_tiny: Signed, v2: Signed,
        capsys: pytest.CaptureFixture[str]) -> None:
    b1, b2 = _export(signed_tiny, tmp_path / "b1"), _export(v2, tmp_path / "b2")
    config = _device(tmp_path, signed_tiny.trust)
    state = config.parent / "state"
    operator, _ = _operator(config, tmp_path)
    gate = CommandGate(state, "pi-01", config.parent / "trust")
    # the OTA path moved on from v1: a bundle of v1 is a downgrade too
    gate.deployed(_sha(signed_tiny.artifact))
    gate.deployed(_sha(v2.artifact))
    code, out = _import(b1, config, capsys)
    assert code == 8 and "downgrade" in out["detail"]
    assert SlotStore(state).active() is None
    # ... and what bundles moved on from, a deploy may not bring back
    assert _import(b2, config, capsys)[0] == 0
    wire = encode_command(new_command("pi-01", "deploy", 1, params={
        "artifact_digest": _sha(signed_tiny.artifact)}), operator)
    with pytest.raises(CommandRefusedError) as refused:
        CommandGate(state, "pi-01", config.parent / "trust").admit(wire.topic, wire.payload)
    assert refused.value.reason == "downgrade"


def test_an_older_commands_json_is_migrated_into_the_record(
        tmp_path: Path, signed_tiny: Signed, capsys: pytest.CaptureFixture[str]) -> None:
    b1 = _export(signed_tiny, tmp_path / "b1")
    config = _device(tmp_path, signed_tiny.trust)
    state = config.parent / "state"
    state.mkdir(parents=True)
    old = {"last_version": 7, "nonces": {}, "superseded": [_sha(signed_tiny.artifact)],
           "current": "33" * 32}
    (state / "commands.json").write_text(json.dumps(old))
    gate = CommandGate(state, "pi-01", config.parent / "trust")
    assert gate.last_version == 7
    assert gate.record.superseded == (_sha(signed_tiny.artifact),)
    assert gate.record.current == "33" * 32
    assert "superseded" not in json.loads((state / "commands.json").read_text())
    code, out = _import(b1, config, capsys)
    assert code == 8 and "downgrade" in out["detail"]


# -- break 2: containment --------------------------------------------------------------------

@pytest.mark.parametrize("name", ["../../v3/tiny.gguf", "/tmp/tiny.gguf", "sub/../tiny.gguf",
                                  "..", ".", "a\\..\\b", ""])
def test_a_manifest_cannot_name_an_artifact_outside_the_bundle(
        tmp_path: Path, signed_tiny: Signed, name: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    stick = _export(signed_tiny, tmp_path / "stick")
    outside = tmp_path / "v3"
    outside.mkdir()
    shutil.copyfile(signed_tiny.artifact, outside / "tiny.gguf")
    shutil.copyfile(signed_tiny.artifact.with_name(signed_tiny.artifact.name + ".edgeward.json"),
                    outside / "tiny.gguf.edgeward.json")
    for p in (stick / "artifact").iterdir():
        p.unlink()
    _remanifest(stick, artifact=name)
    config = _device(tmp_path, signed_tiny.trust)
    code, out = _import(stick, config, capsys)
    assert code == 3 and out["error"] == "config_error", out
    assert _active_sha(config) is None


def test_a_manifest_must_list_the_artifact_and_its_signature(
        tmp_path: Path, signed_tiny: Signed, capsys: pytest.CaptureFixture[str]) -> None:
    stick = _export(signed_tiny, tmp_path / "stick")
    (stick / "artifact" / signed_tiny.artifact.name).unlink()
    _remanifest(stick)
    config = _device(tmp_path, signed_tiny.trust)
    code, out = _import(stick, config, capsys)
    assert code == 3 and "does not list the artifact" in out["detail"]


@pytest.mark.parametrize("which", ["artifact", "signature", "unlisted", "trust"])
def test_symlinks_anywhere_in_a_bundle_are_refused_and_named(
        tmp_path: Path, signed_tiny: Signed, which: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    stick = _export(signed_tiny, tmp_path / "stick")
    outside = tmp_path / "outside"
    shutil.copytree(stick / "artifact", outside)
    name = signed_tiny.artifact.name
    link = {"artifact": f"artifact/{name}", "signature": f"artifact/{name}.edgeward.json",
            "unlisted": "artifact/extra-link", "trust": "trust/extra-link"}[which]
    target = {"artifact": outside / name, "signature": outside / f"{name}.edgeward.json"
              }.get(which, Path("/etc/hostname"))
    (stick / link).unlink(missing_ok=True)
    (stick / link).symlink_to(target)
    if which in ("artifact", "signature"):
        _remanifest(stick)  # the attacker recomputes the manifest over the link's target
    config = _device(tmp_path, signed_tiny.trust)
    code, out = _import(stick, config, capsys)
    assert code == 3 and out["error"] == "config_error", out
    assert f"{link} is a symlink" in out["detail"]
    assert _active_sha(config) is None


def _bounded(fn: Callable[[], Any], fifo: Path, timeout: float = 30.0) -> Any:
    """Run ``fn`` in a thread; if it is still blocked after ``timeout`` (on the FIFO), open the
    FIFO's other end so it ends, and fail."""
    box: dict[str, Any] = {}
    t = threading.Thread(target=lambda: box.setdefault("v", fn()), daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        t.join(10)
        pytest.fail(f"blocked on the FIFO {fifo}")
    return box.get("v")


@pytest.mark.parametrize("where", ["MANIFEST.json", "artifact/extra-fifo"])
def test_a_fifo_in_a_bundle_is_refused_without_hanging(
        tmp_path: Path, signed_tiny: Signed, where: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    stick = _export(signed_tiny, tmp_path / "stick")
    (stick / where).unlink(missing_ok=True)
    os.mkfifo(stick / where)
    config = _device(tmp_path, signed_tiny.trust)
    code, out = _bounded(lambda: _import(stick, config, capsys), stick / where)
    assert code == 3 and out["error"] == "config_error", out
    assert "FIFO" in out["detail"] and where.rsplit("/", maxsplit=1)[-1] in out["detail"]


@pytest.mark.parametrize("manifest", [
    b"[" * 100_000 + b"]" * 100_000,
    b'{"format": 1, "artifact": "x", "files": ' + b'{"a":' * 5000 + b"1" + b"}" * 5001,
    b'{"format": 1, "artifact": "x", "files": {"a": 1}}',
    b'{"format": true, "artifact": "x", "files": {}}',
    b'{"format": 1, "artifact": "x", "files": {"../etc/passwd": "' + b"0" * 64 + b'"}}',
    b'{"format": 1, "artifact": "\\ud800", "files": {}}',
    b"\xff\xfe not utf-8",
    None,  # over MAX_MANIFEST_BYTES
], ids=["deep-array", "deep-object", "digest-not-text", "format-bool", "path-escape",
        "lone-surrogate", "not-utf8", "huge"])
def test_a_hostile_manifest_is_a_config_error(
        tmp_path: Path, signed_tiny: Signed, manifest: bytes | None,
        capsys: pytest.CaptureFixture[str]) -> None:
    stick = _export(signed_tiny, tmp_path / "stick")
    path = stick / "MANIFEST.json"
    if manifest is None:
        with path.open("wb") as f:
            f.truncate((16 << 20) + 1)  # sparse
    else:
        path.write_bytes(manifest)
    config = _device(tmp_path, signed_tiny.trust)
    code, out = _import(stick, config, capsys)
    assert code == 3 and out["error"] == "config_error", out
    assert "internal error" not in out["detail"]


def test_bundle_trust_reports_a_revocation_the_bundle_carries(
        tmp_path: Path, signed_tiny: Signed, capsys: pytest.CaptureFixture[str]) -> None:
    stick = _export(signed_tiny, tmp_path / "stick")
    TrustStore.open(stick / "trust").revoke(signed_tiny.key.key_id, signed_tiny.key,
                                            reason="leaked")
    _remanifest(stick)
    config = _device(tmp_path, signed_tiny.trust)
    code, out = _import(stick, config, capsys)
    # the device's store decides (it still trusts the key), but the report says they differ
    assert code == 0 and out["committed"], out
    assert out["bundle_trust"] == "revocation_differs"


def test_an_import_into_a_running_agents_state_dir_is_refused(
        tmp_path: Path, signed_tiny: Signed, v2: Signed,
        capsys: pytest.CaptureFixture[str]) -> None:
    config = _device(tmp_path, signed_tiny.trust)
    assert _import(_export(signed_tiny, tmp_path / "b1"), config, capsys)[0] == 0
    b2 = _export(v2, tmp_path / "b2")
    agent = Agent(load_agent_config(config))
    agent.start()
    try:
        code, out = _import(b2, config, capsys)
        assert code == 9 and out["error"] == "resource_error", out
        assert "agent is running" in out["detail"] and "stop the agent" in out["detail"]
        assert _active_sha(config) == _sha(signed_tiny.artifact)
    finally:
        agent.close()
    assert _import(b2, config, capsys)[0] == 0  # once it stopped


# -- item 4: bounded copies into a slot ------------------------------------------------------

@pytest.mark.parametrize("kind", ["dev-zero", "fifo", "signature-fifo"])
def test_a_slot_install_never_copies_a_device_or_a_fifo(
        tmp_path: Path, signed_tiny: Signed, kind: str) -> None:
    work = tmp_path / "in"
    work.mkdir()
    artifact = work / signed_tiny.artifact.name
    sig = work / f"{artifact.name}.edgeward.json"
    shutil.copyfile(signed_tiny.artifact.with_name(f"{artifact.name}.edgeward.json"), sig)
    fifo = artifact if kind == "fifo" else sig
    if kind == "dev-zero":
        artifact.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(artifact)
    else:
        shutil.copyfile(signed_tiny.artifact, artifact)
        sig.unlink()
        os.mkfifo(sig)
    slots = SlotStore(tmp_path / "state")

    def install() -> Exception | None:
        try:
            slots.install(artifact, signed_tiny.trust)
        except Exception as e:  # noqa: BLE001 - returned to the test thread
            return e
        return None

    error = _bounded(install, fifo)
    assert isinstance(error, ConfigError | ArtifactError), error  # exit 3 or 4, never a hang
    assert ("character device" if kind == "dev-zero" else "FIFO") in str(error)
    assert not list(slots.root.glob(".staging-*")) and slots.journal() is None
    assert slots.active() is None
