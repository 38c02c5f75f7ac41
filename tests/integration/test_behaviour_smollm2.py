"""Behavioural fingerprints on the real SmolLM2: the agent checks the model it serves; a copy
with one block's weights scaled by 1 % and the Q4_1 file put where another type was signed are
drift; an encoder (MiniLM via ONNX Runtime) gets an embeddings fingerprint."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from edgeward.behaviour import check_artifact, fingerprint_artifact, statement_record
from edgeward.device_agents import Agent, config_from_dict
from edgeward.provenance import Role, TrustStore, generate_key, sign_artifact

pytestmark = pytest.mark.integration


def _scale_block(src: Path, dst: Path, block: int) -> Path:
    import gguf

    shutil.copyfile(src, dst)
    reader = gguf.GGUFReader(dst, "r+")
    for t in reader.tensors:
        if t.name.startswith(f"blk.{block}.") and t.tensor_type.name == "Q4_1":
            blocks = t.data.view(np.uint8).reshape(-1, 20)  # f16 d, f16 m, 16 bytes of nibbles
            dm = blocks[:, :4].copy().view(np.float16) * np.float16(1.01)
            blocks[:, :4] = dm.astype(np.float16).view(np.uint8)
    reader.data.flush()
    del reader
    return dst


@pytest.fixture(scope="module")
def smol(smollm2_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    work = tmp_path_factory.mktemp("behaviour-smol")
    art = work / "smol.gguf"
    shutil.copyfile(smollm2_gguf, art)
    made = fingerprint_artifact(art, calibrated=False)
    return art, made.path


def test_smollm2_is_ok_and_a_1pct_block_change_is_drift(smol: tuple[Path, Path],
                                                        tmp_path: Path) -> None:
    art, fp = smol
    ok = check_artifact(art, fp)
    assert ok.status == "ok" and ok.top1_agreement == 1.0
    changed = check_artifact(_scale_block(art, tmp_path / "scaled.gguf", 11), fp)
    assert changed.status == "drift"
    assert changed.distance > 10 * changed.threshold


def test_the_agent_checks_smollm2_before_serving(smol: tuple[Path, Path],
                                                 tmp_path: Path) -> None:
    art, fp = smol
    key = generate_key()
    TrustStore.open(tmp_path / "trust", create=True).add(key.public_key, [Role.PUBLISHER])
    from edgeward.behaviour import Fingerprint, FingerprintMade

    fingerprint = Fingerprint.load(fp)
    import hashlib

    made = FingerprintMade(fp, fingerprint, hashlib.sha256(fp.read_bytes()).hexdigest(), 0.0)
    sign_artifact(art, key, overwrite=True, fingerprint=fp,
                  behaviour=statement_record(made, fp.name))
    agent = Agent(config_from_dict({"artifact": str(art), "trust_store": str(tmp_path / "trust"),
                                    "listen": "127.0.0.1:0",
                                    "state_dir": str(tmp_path / "state")}))
    agent.start()
    try:
        with agent.serve_in_thread() as running:
            end = time.monotonic() + 60
            while agent.behaviour.health()["status"] == "pending" and time.monotonic() < end:
                time.sleep(0.05)
            health = agent.behaviour.health()
            assert health["status"] == "ok", health
            r = httpx.post(running.base_url + "/chat/completions", timeout=60, json={
                "model": "smol", "messages": [{"role": "user", "content": "Hi"}],
                "max_tokens": 8, "temperature": 0})
            assert r.status_code == 200
    finally:
        agent.close()


def test_an_encoder_gets_an_embeddings_fingerprint(minilm_onnx: Path, tmp_path: Path) -> None:
    art = tmp_path / "minilm"
    shutil.copytree(minilm_onnx if minilm_onnx.is_dir() else minilm_onnx.parent, art)
    made = fingerprint_artifact(art, calibrated=False)
    assert made.fingerprint.kind == "embeddings"
    result = check_artifact(art, made.path)
    assert result.status == "ok" and result.distance < 1e-5
