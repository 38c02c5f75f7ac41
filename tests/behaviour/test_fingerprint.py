"""Behavioural fingerprints on the tiny generated model: made, calibrated, checked; a changed
model drifts, the unchanged one never does, and a changed fingerprint file is refused."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from _models import scaled_copy
from edgeward.behaviour import (
    FINGERPRINT_FORMAT,
    MIN_THRESHOLD,
    Fingerprint,
    ProbeSet,
    Tolerance,
    check_artifact,
    check_behaviour,
    compare,
    fingerprint_artifact,
    fingerprint_path_for,
    load_probe_set,
    observe,
)
from edgeward.behaviour._fingerprint import _loaded
from edgeward.errors import ConfigError, DigestMismatchError, RuntimeBackendError


@pytest.fixture(scope="module")
def made(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    art = tmp_path_factory.mktemp("fp") / "tiny.gguf"
    shutil.copyfile(tiny_gguf, art)
    return fingerprint_artifact(art)


def test_a_fingerprint_records_the_probe_set_and_is_calibrated(made) -> None:  # type: ignore[no-untyped-def]
    fp = made.fingerprint
    assert made.path == fingerprint_path_for(made.path.with_name("tiny.gguf"))
    assert fp.kind == "logprobs" and fp.probe_set == "edgeward-probes/1"
    assert fp.probes == len(load_probe_set().texts) + len(load_probe_set().prompts)
    assert all(len(row) == fp.top_k for t in fp.texts for row in t.top)
    tol = fp.tolerance
    assert tol is not None and len(tol.runs) >= 5
    assert tol.threshold >= MIN_THRESHOLD["logprobs"]
    assert tol.threshold >= tol.noise_floor * tol.margin
    doc = json.loads(made.path.read_bytes())
    assert doc["format"] == FINGERPRINT_FORMAT and doc["artifact_sha256"]
    assert Fingerprint.from_dict(doc).to_bytes() == made.path.read_bytes()  # round trip


def test_the_unchanged_artifact_is_ok_under_other_settings(made) -> None:  # type: ignore[no-untyped-def]
    artifact = made.path.with_name("tiny.gguf")
    for threads, batch, ctx in ((1, 512, 256), (2, 3, 512), (1, 16, 384)):
        with _loaded(artifact, None, threads=threads, batch_size=batch, context=ctx) as rt:
            result = check_behaviour(rt, made.fingerprint)
        assert result.status == "ok", (threads, batch, ctx, result)
        assert result.top1_agreement == 1.0 and result.tokenizer_match


@pytest.mark.parametrize(("tensor", "factor"), [
    ("blk.1.ffn_down.weight", 1.01), ("blk.0.ffn_up.weight", 0.99), ("output.weight", 1.01)])
def test_a_changed_tensor_is_drift(made, tmp_path: Path, tensor: str, factor: float) -> None:  # type: ignore[no-untyped-def]
    changed = scaled_copy(made.path.with_name("tiny.gguf"), tmp_path / "changed.gguf", tensor,
                          factor)
    result = check_artifact(changed, made.path)
    assert result.status == "drift", result
    assert result.distance > result.threshold
    assert any("distance" in r for r in result.reasons)


def test_another_model_is_drift(made, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from _models import TinyLlamaSpec, write_tiny_gguf

    other = write_tiny_gguf(tmp_path / "other.gguf", TinyLlamaSpec(seed=7))
    result = check_artifact(other, made.path)
    assert result.status == "drift" and result.top1_agreement < 0.9


def test_tokenizer_changes_are_reported(made) -> None:  # type: ignore[no-untyped-def]
    fp = made.fingerprint
    first = fp.texts[0]
    bent = dataclasses.replace(first, tokens=(*first.tokens[:-1], first.tokens[-1] + 1))
    changed = dataclasses.replace(fp, texts=(bent, *fp.texts[1:]))
    with _loaded(made.path.with_name("tiny.gguf"), None, threads=1, batch_size=512,
                 context=512) as rt:
        result = compare(changed, observe(rt, changed))
    assert result.status == "drift" and not result.tokenizer_match
    assert any("tokenizer" in r for r in result.reasons)


def test_a_sampling_chain_change_is_drift(made, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    from edgeward.runtimes import LlamaCppRuntime

    original = LlamaCppRuntime._generate

    def greedy_always(self, prompt, params, *, added_special):  # type: ignore[no-untyped-def]
        return original(self, prompt, dataclasses.replace(params, temperature=0.0),
                        added_special=added_special)

    monkeypatch.setattr(LlamaCppRuntime, "_generate", greedy_always)
    result = check_artifact(made.path.with_name("tiny.gguf"), made.path)
    assert result.status == "drift" and result.continuation_agreement < 1.0
    assert result.distance <= result.threshold  # the weights are the same: only sampling moved


def test_the_signed_digest_refuses_a_changed_file(made, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    raw = bytearray(made.path.read_bytes())
    i = raw.index(b'"top_k":')
    raw[i + 8] = ord("6") if raw[i + 8] != ord("6") else ord("7")
    bad = tmp_path / "changed.behaviour.json"
    bad.write_bytes(bytes(raw))
    with pytest.raises(DigestMismatchError, match="changed after signing"):
        Fingerprint.load(bad, sha256=made.sha256)
    assert Fingerprint.load(made.path, sha256=made.sha256).to_bytes() == made.path.read_bytes()


@pytest.mark.parametrize("content", [b"", b"[]", b'{"format": "other/1"}',
                                     b'{"format": "edgeward-behaviour-fingerprint/1"}',
                                     b"\xff\xfe", b'{"format": "edgeward-behaviour-'
                                     b'fingerprint/1", "kind": "logprobs", "texts": 5}'])
def test_malformed_fingerprints_are_config_errors(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "x.behaviour.json"
    path.write_bytes(content)
    with pytest.raises(ConfigError):
        Fingerprint.load(path)


def test_another_probe_set_is_refused(made) -> None:  # type: ignore[no-untyped-def]
    probes = load_probe_set()
    other = dataclasses.replace(probes, sha256="0" * 64)
    with _loaded(made.path.with_name("tiny.gguf"), None, threads=1, batch_size=512,
                 context=512) as rt, pytest.raises(ConfigError, match="not the one"):
        observe(rt, made.fingerprint, other)


def test_probe_sets_are_validated(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no packaged probe set"):
        load_probe_set("edgeward-probes/999")
    bad = tmp_path / "p.json"
    bad.write_text(json.dumps({"id": "x/1", "skip_first": 0, "top_k": 5,
                               "texts": [{"id": "a", "text": "hi"}, {"id": "a", "text": "ho"}]}))
    with pytest.raises(ConfigError, match="unique"):
        load_probe_set(bad)
    assert isinstance(load_probe_set(), ProbeSet)


def test_an_uncalibrated_tolerance_is_the_floor(made, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    art = tmp_path / "tiny.gguf"
    shutil.copyfile(made.path.with_name("tiny.gguf"), art)
    quick = fingerprint_artifact(art, calibrated=False)
    assert quick.fingerprint.tolerance == Tolerance(MIN_THRESHOLD["logprobs"],
                                                    floor=MIN_THRESHOLD["logprobs"])


def test_a_missing_artifact_and_an_encoder_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such model file"):
        fingerprint_artifact(tmp_path / "nope.gguf")

    class Nothing:
        capabilities = frozenset({"generate"})
        artifact = tmp_path / "x"

    from edgeward.behaviour import make_fingerprint

    with pytest.raises(RuntimeBackendError, match="cannot be fingerprinted"):
        make_fingerprint(Nothing())  # type: ignore[arg-type]
