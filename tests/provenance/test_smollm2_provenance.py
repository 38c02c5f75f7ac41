"""The real SmolLM2-135M-Instruct GGUF signs and verifies end to end; one flipped byte fails."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from edgeward.errors import DigestMismatchError
from edgeward.provenance import (
    PrivateKey,
    TrustStore,
    model_card,
    sign_artifact,
    verify_artifact,
)

pytestmark = pytest.mark.integration


def test_real_model_signs_verifies_and_refuses_a_flipped_byte(
        smollm2_gguf: Path, tmp_path: Path, publisher_key: PrivateKey,
        store: TrustStore) -> None:
    envelope = tmp_path / "smollm2.edgeward.json"  # never write into site-packages
    signed = sign_artifact(smollm2_gguf, publisher_key, envelope_path=envelope)
    verified = verify_artifact(smollm2_gguf, envelope, store)
    assert verified.subjects == signed.subjects
    assert verified.subjects[0].name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    card = model_card(smollm2_gguf, envelope=envelope, trust_store=store)
    assert card.verified and "SmolLM2-135M-Instruct.Q4_1.gguf" in card.markdown

    copy = tmp_path / smollm2_gguf.name
    shutil.copyfile(smollm2_gguf, copy)
    with copy.open("r+b") as f:
        f.seek(50 * 2**20)
        b = f.read(1)
        f.seek(50 * 2**20)
        f.write(bytes([b[0] ^ 0xFF]))
    with pytest.raises(DigestMismatchError) as info:
        verify_artifact(copy, envelope, store)
    assert info.value.file == smollm2_gguf.name
