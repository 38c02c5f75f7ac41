"""Extra ``.git*`` files in a signed directory (issue 18, break 9): refused like any other
extra file, unless the signature itself declares them out of scope (an OpenSSF model-signing
signature's signed ``ignore_paths``, whose default lists the git paths). Interop is unchanged:
signatures made with model-signing's defaults still verify with a checkout's ``.git``."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from edgeward.errors import ExtraFileError
from edgeward.provenance import (
    Role,
    TrustStore,
    generate_key,
    load_public_key,
    sign_artifact,
    verify_artifact,
    write_key_pair,
)

GIT_FILES = [".git/HEAD", ".gitignore", ".gitattributes", ".github/workflows/x.yml"]


def _add(artifact: Path, rel: str) -> None:
    p = artifact / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("added after signing\n")


@pytest.mark.parametrize("rel", GIT_FILES)
def test_an_added_git_file_is_refused_by_the_dsse_verifier(artifact_dir: Path, rel: str) -> None:
    key = generate_key()
    store = TrustStore()
    store.add(key.public_key, [Role.PUBLISHER])
    signed = sign_artifact(artifact_dir, key)
    _add(artifact_dir, rel)
    with pytest.raises(ExtraFileError) as e:
        verify_artifact(artifact_dir, signed.envelope_path, store)
    assert e.value.file == rel


@pytest.mark.integration
@pytest.mark.parametrize("rel", GIT_FILES)
def test_the_oms_verifier_skips_only_what_the_signature_declares(
        artifact_dir: Path, tmp_path: Path, rel: str) -> None:
    model_signing = pytest.importorskip("model_signing",
                                        reason="the 'oms' extra is not installed")
    files = write_key_pair(generate_key("ecdsa-p256"), tmp_path / "keys", name="oms")
    store = TrustStore()
    store.add(load_public_key(files.public_key_path), [Role.PUBLISHER])
    signer = model_signing.signing.Config().use_elliptic_key_signer(
        private_key=files.private_key_path)
    # model-signing's defaults: the signed ignore_paths list the git paths; a checkout's
    # .git does not break verification (interop as before)
    signer.sign(artifact_dir, tmp_path / "default.sig")
    strict = model_signing.hashing.Config().set_ignored_paths(paths=[], ignore_git_paths=False)
    signer.set_hashing_config(strict).sign(artifact_dir, tmp_path / "strict.sig")
    _add(artifact_dir, rel)
    assert verify_artifact(artifact_dir, tmp_path / "default.sig", store).format == "oms"
    # a signature that did not leave the git paths out covers them: an added one is refused
    with pytest.raises(ExtraFileError) as e:
        verify_artifact(artifact_dir, tmp_path / "strict.sig", store)
    assert e.value.file == rel
    top = artifact_dir / rel.split("/", maxsplit=1)[0]
    if top.is_dir():
        shutil.rmtree(top)
    else:
        top.unlink()
    assert verify_artifact(artifact_dir, tmp_path / "strict.sig", store).format == "oms"
