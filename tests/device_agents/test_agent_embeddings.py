"""``/v1/embeddings`` returns what ``open_runtime`` computes on the artifact the config names,
for every backend that embeds.

Each case is a fixture that yields a model path; the agent serves a signed copy of it, and the
expected vectors come from ``open_runtime(<the artifact in the agent's config>).embed(...)``.
To add a model, add its fixture name here.
"""

from __future__ import annotations

import base64
import struct
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
from _agent_helpers import sign_copy
from test_agent_api import CHAT, assert_error

from _models import write_tiny_onnx_encoder_dir
from conftest import AgentFactory
from edgeward.runtimes import open_runtime

# case name -> (fixture giving the model path, two texts in its vocabulary)
EMBEDDING_CASES: dict[str, tuple[str, tuple[str, str]]] = {
    "tiny-gguf": ("tiny_gguf", ("the model answers", "hello small world")),
    "tiny-onnx-encoder": ("tiny_onnx_encoder_dir", ("w5 w6 w7", "w9 w10")),
    # the real MiniLM sentence encoder, exported to ONNX from its PyPI fixture package
    "minilm-onnx": ("minilm_onnx", ("A cat sits on the mat.", "Quarterly revenue grew 4%.")),
}


@pytest.fixture(scope="module")
def tiny_onnx_encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_onnx_encoder_dir(tmp_path_factory.mktemp("enc") / "tiny-encoder")


@pytest.mark.parametrize("case", sorted(EMBEDDING_CASES))
def test_embeddings_match_the_runtime(case: str, request: pytest.FixtureRequest,
                                      tmp_path: Path, make_agent: AgentFactory) -> None:
    fixture, texts = EMBEDDING_CASES[case]
    signed = sign_copy(request.getfixturevalue(fixture), tmp_path / "model")
    running = make_agent(artifact=signed.artifact, trust_store=signed.trust)
    expected = open_runtime(running.agent.config.artifact).embed(list(texts))
    body = {"model": "m", "input": list(texts)}
    with httpx.Client(base_url=running.url, timeout=60) as c:
        floats = c.post("/v1/embeddings", json=body).json()
        b64 = c.post("/v1/embeddings", json=body | {"encoding_format": "base64"}).json()
        single = c.post("/v1/embeddings", json=body | {"input": texts[0]}).json()
    assert floats["object"] == "list" and [d["index"] for d in floats["data"]] == [0, 1]
    assert all(d["object"] == "embedding" for d in floats["data"])
    got = np.array([d["embedding"] for d in floats["data"]])
    np.testing.assert_allclose(got, np.array(expected.vectors), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert floats["usage"] == {"prompt_tokens": expected.prompt_tokens,
                               "total_tokens": expected.prompt_tokens}
    decoded = [struct.unpack(f"<{got.shape[1]}f", base64.b64decode(d["embedding"]))
               for d in b64["data"]]
    np.testing.assert_allclose(np.array(decoded), got, atol=1e-6)
    np.testing.assert_allclose(single["data"][0]["embedding"], got[0], atol=1e-5)
    # the official client (which asks for base64 by default) decodes the same vectors
    client = openai.OpenAI(base_url=running.base_url, api_key="unused", max_retries=0)
    via_client = client.embeddings.create(model="m", input=list(texts))
    np.testing.assert_allclose([d.embedding for d in via_client.data], got, atol=1e-6)


def test_an_encoder_does_not_chat_and_bad_input_is_named(
        tiny_onnx_encoder_dir: Path, tmp_path: Path, make_agent: AgentFactory) -> None:
    signed = sign_copy(tiny_onnx_encoder_dir, tmp_path / "model")
    running = make_agent(artifact=signed.artifact, trust_store=signed.trust)
    with httpx.Client(base_url=running.url, timeout=30) as c:
        assert_error(c.post("/v1/chat/completions", json=CHAT), 400,
                     code="model_not_capable", param="model")
        assert_error(c.post("/v1/embeddings", json={"input": [1, 2, 3]}), 400, param="input")
        assert_error(c.post("/v1/embeddings", json={"input": ""}), 400, param="input")
        assert_error(c.post("/v1/embeddings", json={"input": "w2", "encoding_format": "hex"}),
                     400, param="encoding_format")
        models = c.get("/v1/models").json()
    assert models["data"][0]["edgeward"]["capabilities"] == ["embed"]
    assert models["data"][0]["edgeward"]["format"] == "onnx"
