"""``edgeward keys generate|list|trust|revoke|rotate``, ``sign``, ``verify``, ``card``,
``verify-log``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click
from rich import box
from rich.table import Table

from edgeward._cli._output import emit, err, json_option, out, state, write_new
from edgeward.errors import ConfigError, EdgewardError, LogTamperedError

if TYPE_CHECKING:
    from edgeward.provenance import TrustStore

__all__ = ["card", "keys", "sign", "verify", "verify_log"]

_TRUST = click.option("--trust", "trust_dir", required=True,
                      type=click.Path(file_okay=False, path_type=Path),
                      help="The trust store directory.")
_PASSPHRASE = click.option(
    "--passphrase-env", metavar="VAR",
    help="Name of an environment variable holding the private key's passphrase.")


def _passphrase(var: str | None) -> bytes | None:
    if var is None:
        return None
    value = os.environ.get(var)
    if value is None:
        raise ConfigError(f"--passphrase-env {var}: that environment variable is not set")
    return value.encode("utf-8")


def _reraise_after_result(e: EdgewardError) -> NoReturn:
    """Re-raise ``e`` for the top-level handler once the result JSON is printed: the handler
    prints the one-line error on stderr and exits with ``e``'s code, without a second JSON
    object on stdout."""
    state.result_printed = True
    raise e


@click.group()
def keys() -> None:
    """Signing keys and trust stores."""


@keys.command("generate")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory for NAME.key (0600) and NAME.pub.")
@click.option("--type", "key_type", type=click.Choice(["ed25519", "ecdsa-p256"]),
              default="ed25519", show_default=True,
              help="ecdsa-p256 for OpenSSF model-signing (--format oms).")
@click.option("--name", help="File stem (default edgeward-TYPE-KEYID16).")
@_PASSPHRASE
@json_option
def keys_generate(*, out_dir: Path, key_type: str, name: str | None, passphrase_env: str | None,
                  as_json: bool) -> None:
    """Generate a key pair; the private key never leaves this machine."""
    from edgeward.provenance import generate_key, write_key_pair

    files = write_key_pair(generate_key(key_type), out_dir, name=name,
                           passphrase=_passphrase(passphrase_env))

    def human() -> None:
        out.print(f"key id      {files.key_id}\npublic key  {files.public_key_path}\n"
                  f"private key {files.private_key_path} (mode 0600; keep it here)")

    emit(as_json, files.to_dict(), human)


@keys.command("list")
@_TRUST
@json_option
def keys_list(*, trust_dir: Path, as_json: bool) -> None:
    """List the keys of a trust store with their roles and status."""
    from edgeward.provenance import TrustStore

    store = TrustStore.open(trust_dir)
    rows = [k.to_dict() for k in store.list_keys()]

    def human() -> None:
        table = Table(title=f"Trust store {trust_dir}", title_justify="left", box=box.SIMPLE_HEAD)
        for col in ("key id", "type", "roles", "name", "status", "added"):
            table.add_column(col, no_wrap=col != "name")
        for r in rows:
            status = "revoked" if r["revoked"] else (
                f"rotated from {r['rotated_from'][:12]}" if r["rotated_from"] else "trusted")
            table.add_row(r["key_id"][:16], r["key_type"], ",".join(r["roles"]), r["name"],
                          status, r["added_at"])
        out.print(table)

    emit(as_json, rows, human)


@keys.command("trust")
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@_TRUST
@click.option("--role", "roles", multiple=True,
              type=click.Choice(["publisher", "operator", "device"]),
              help="What the key may sign (repeatable). Needed for a public key.")
@click.option("--name", default="", help="A label for people.")
@json_option
def keys_trust(*, file: Path, trust_dir: Path, roles: tuple[str, ...], name: str,
               as_json: bool) -> None:
    """Add a public key (FILE.pub) to a trust store, creating the store if needed; or apply
    a signed revocation or rotation statement (FILE.json) made elsewhere."""
    from edgeward.provenance import Envelope, TrustStore, load_public_key

    store = TrustStore.open(trust_dir, create=True)
    result: dict[str, Any]
    from edgeward.safeio import MAX_SIGNATURE_BYTES, read_capped

    raw = read_capped(file, MAX_SIGNATURE_BYTES, what="key or statement file")
    if raw.lstrip().startswith(b"{"):
        applied = store.apply(Envelope.from_json(raw, source=str(file)))
        result = applied.to_dict()
    else:
        if not roles:
            raise ConfigError("keys trust: give at least one --role (publisher, operator, "
                              "device)")
        result = store.add(load_public_key(file), roles, name=name).to_dict()
    emit(as_json, result, lambda: out.print(f"trusted {result['key_id']}"))


def _resolve_key_id(store: TrustStore, key_id: str) -> str:
    matches = [k.key_id for k in store.list_keys() if k.key_id.startswith(key_id.lower())]
    if len(key_id) < 8 or len(matches) != 1:
        raise ConfigError(f"{key_id!r}: {'no key' if not matches else 'ambiguous'} in the "
                          "trust store; give the key id (at least 8 hex digits, unique)")
    return matches[0]


@keys.command("revoke")
@click.argument("key_id")
@_TRUST
@click.option("--key", "key_path", required=True,
              type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Private key that signs the revocation: the revoked key or an operator key.")
@click.option("--reason", default="", help="Why (recorded in the signed revocation).")
@_PASSPHRASE
@json_option
def keys_revoke(*, key_id: str, trust_dir: Path, key_path: Path, reason: str,
                passphrase_env: str | None, as_json: bool) -> None:
    """Revoke KEY_ID (full id or a unique prefix) with a signed revocation."""
    from edgeward.provenance import TrustStore, load_private_key

    store = TrustStore.open(trust_dir)
    full = _resolve_key_id(store, key_id)
    signer = load_private_key(key_path, passphrase=_passphrase(passphrase_env))
    store.revoke(full, signer, reason=reason)
    result = {"key_id": full, "revoked": True, "signed_by": signer.key_id,
              "revocation_path": str(trust_dir / "revocations" / f"{full}.json")}
    emit(as_json, result, lambda: out.print(f"revoked {full}"))


@keys.command("rotate")
@_TRUST
@click.option("--key", "key_path", required=True,
              type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="The old private key, which signs the rotation.")
@click.option("--new", "new_pub", required=True,
              type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="The new public key (.pub), which takes over the old key's roles.")
@click.option("--name", default="", help="A label for the new key.")
@_PASSPHRASE
@json_option
def keys_rotate(*, trust_dir: Path, key_path: Path, new_pub: Path, name: str,
                passphrase_env: str | None, as_json: bool) -> None:
    """Introduce a new key with a statement signed by the old one."""
    from edgeward.provenance import TrustStore, load_private_key, load_public_key

    store = TrustStore.open(trust_dir)
    old = load_private_key(key_path, passphrase=_passphrase(passphrase_env))
    new = load_public_key(new_pub)
    store.rotate(old, new, name=name)
    introduced = store.get(new.key_id)
    result = {"old_key_id": old.key_id, "new_key_id": new.key_id,
              "roles": [r.value for r in introduced.roles] if introduced else [],
              "rotation_path": str(trust_dir / "rotations" / f"{new.key_id}.json")}
    emit(as_json, result, lambda: out.print(f"{old.key_id[:16]} -> {new.key_id[:16]} "
                                            f"({', '.join(result['roles'])})"))


@click.command("sign")
@click.argument("artifact", type=click.Path(exists=True, path_type=Path))
@click.option("--key", "key_path", required=True,
              type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="The publisher's private key (0600).")
@click.option("--format", "fmt", type=click.Choice(["dsse", "oms"]), default="dsse",
              show_default=True,
              help="dsse: edgeward's statement in ARTIFACT.edgeward.json; oms: an OpenSSF "
                   "model-signing signature in ARTIFACT.oms.sig (ECDSA P-256 keys).")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the signature here instead.")
@click.option("--force", is_flag=True, help="Replace an existing signature.")
@click.option("--report", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Compression report (default ARTIFACT.report.json if present).")
@click.option("--source", type=click.Path(exists=True, path_type=Path),
              help="The source model file/directory (its digest is recorded).")
@click.option("--source-name", help="The source model's name.")
@click.option("--licence", help="The source model's licence (SPDX id).")
@click.option("--intended-use", help="What the model is for.")
@click.option("--limitation", "limitations", multiple=True, help="A known limitation "
              "(repeatable).")
@click.option("--safety-policy", help="The safety-filter policy it runs behind.")
@click.option("--profile", "profile_name", help="Target hardware profile (name or .toml).")
@click.option("--builder", help="Builder identity (default user@host).")
@click.option("--fingerprint", "fingerprint_path", type=click.Path(dir_okay=False, exists=True,
                                                                   path_type=Path),
              help="The behavioural fingerprint to sign (default ARTIFACT.behaviour.json if "
                   "it was made from these bytes, else one is made now).")
@click.option("--no-fingerprint", is_flag=True,
              help="Sign without a behavioural fingerprint.")
@_PASSPHRASE
@json_option
def sign(*, artifact: Path, key_path: Path, fmt: str, out_path: Path | None, force: bool,
         report: Path | None, source: Path | None, source_name: str | None,
         licence: str | None, intended_use: str | None, limitations: tuple[str, ...],
         safety_policy: str | None, profile_name: str | None, builder: str | None,
         fingerprint_path: Path | None, no_fingerprint: bool,
         passphrase_env: str | None, as_json: bool) -> None:
    """Sign ARTIFACT (a model file or directory) with a provenance statement.

    The statement also signs the artifact's behavioural fingerprint (made now unless one made
    from these bytes is beside it), so a device can check that the model it loaded still
    behaves as signed; --no-fingerprint leaves it out."""
    from edgeward import provenance as p

    passphrase = _passphrase(passphrase_env)
    dsse_only = {"--report": report, "--source": source, "--source-name": source_name,
                 "--licence": licence, "--intended-use": intended_use,
                 "--limitation": limitations, "--safety-policy": safety_policy,
                 "--profile": profile_name, "--builder": builder}
    if fingerprint_path is not None and no_fingerprint:
        raise ConfigError("--fingerprint and --no-fingerprint contradict each other")
    dsse_only["--fingerprint"] = fingerprint_path
    given = [opt for opt, value in dsse_only.items() if value]
    if fmt == "oms" and given:
        raise ConfigError(f"{', '.join(given)}: provenance fields go into edgeward's statement "
                          "(--format dsse); an OMS signature records file digests only")
    if fmt == "oms":
        signed = p.sign_oms(artifact, key_path, passphrase=passphrase, signature_path=out_path,
                            overwrite=force)
    else:
        from edgeward.provenance import read_report

        key = p.load_private_key(key_path, passphrase=passphrase)
        rep = read_report(artifact, path=report)
        profile = None
        if profile_name:
            from edgeward.hardware_profiles import resolve_profile

            profile = resolve_profile(profile_name).to_dict()
        src = (p.source_model_from(source, name=source_name, licence=licence) if source
               else p.SourceModel(name=source_name, licence=licence) if source_name else None)
        card_info = (p.CardInfo(intended_use=intended_use, limitations=limitations,
                                safety_policy=safety_policy)
                     if intended_use or limitations or safety_policy else None)
        fp_file, fp_record, fp_note = (None, None, None) if no_fingerprint else \
            _fingerprint_to_sign(artifact, fingerprint_path, as_json)
        statement = p.build_statement(artifact, builder=builder, source_model=src,
                                      hardware_profile=profile, model_card=card_info, report=rep,
                                      fingerprint=fp_file, behaviour=fp_record)
        signed = p.sign_artifact(artifact, key, statement=statement, envelope_path=out_path,
                                 overwrite=force)

    result = signed.to_dict()
    if fmt != "oms":
        result["fingerprint"] = str(fp_file) if fp_file else None
        result["fingerprint_note"] = fp_note

    def human() -> None:
        out.print(f"signed {len(signed.subjects)} file(s) with key {signed.key_id[:16]}… -> "
                  f"{signed.envelope_path}")
        if fmt != "oms":
            out.print(f"  fingerprint: {fp_note}")

    emit(as_json, result, human)


def _fingerprint_to_sign(artifact: Path, given: Path | None, as_json: bool
                         ) -> tuple[Path | None, dict[str, Any] | None, str]:
    """The fingerprint file, its statement record and a note for the user. An artifact that
    cannot be fingerprinted is signed without one (a warning, not an error)."""
    from edgeward.errors import ArtifactError, RuntimeBackendError

    try:
        from edgeward.behaviour import fingerprint_for_signing, statement_record
        from edgeward.runtimes import artifact_format
    except ImportError as e:  # a runtime this install lacks
        return None, None, f"none (cannot fingerprint here: {e})"
    try:
        artifact_format(artifact)
    except EdgewardError:
        if given is not None:
            raise
        return None, None, "none (not a model: a policy or another file)"

    def progress(done: int, total: int) -> None:
        if not as_json:
            err.print(f"fingerprint: calibration replay {done}/{total}")

    try:
        made, fresh = fingerprint_for_signing(artifact, given=given, progress=progress)
    except (RuntimeBackendError, ArtifactError) as e:
        if given is not None:
            raise
        err.print(f"warning: signing without a behavioural fingerprint: {e}")
        return None, None, f"none ({e})"
    note = f"{made.path.name} ({'made now' if fresh else 'reused'})"
    return made.path, statement_record(made, made.path.name), note


def _default_signature(artifact: Path) -> Path:
    from edgeward.provenance import envelope_path_for, oms_signature_path_for

    dsse, oms = envelope_path_for(artifact), oms_signature_path_for(artifact)
    return oms if oms.exists() and not dsse.exists() else dsse


@click.command("verify")
@click.argument("artifact", type=click.Path(path_type=Path))
@_TRUST
@click.option("--signature", type=click.Path(dir_okay=False, path_type=Path),
              help="Envelope or OMS signature (default ARTIFACT.edgeward.json, else "
                   "ARTIFACT.oms.sig).")
@click.option("--role", type=click.Choice(["publisher", "operator", "device"]),
              default="publisher", show_default=True, help="The role the signer must hold.")
@json_option
def verify(*, artifact: Path, trust_dir: Path, signature: Path | None, role: str,
           as_json: bool) -> None:
    """Verify ARTIFACT against its signed statement and a trust store, offline."""
    from edgeward.provenance import TrustStore, verify_artifact

    try:
        store = TrustStore.open(trust_dir)
        verified = verify_artifact(artifact, signature or _default_signature(artifact), store,
                                   role=role)
        fp_state = _fingerprint_state(artifact, verified)
    except EdgewardError as e:
        emit(as_json, {"verified": False, "error": e.kind, "detail": str(e)}, lambda: None)
        _reraise_after_result(e)

    def human() -> None:
        out.print(f"verified: {len(verified.subjects)} file(s) of {artifact}, signed by key "
                  f"{verified.key_id[:16]}… ({verified.signer.name or 'unnamed'}, {role})")
        out.print(f"  fingerprint: {fp_state}")

    emit(as_json, {**verified.to_dict(), "fingerprint_state": fp_state}, human)


def _fingerprint_state(artifact: Path, verified: Any) -> str:
    """``verified`` (beside the artifact, the signed bytes), ``absent`` (signed but not
    here), ``unsigned`` (the statement signs none). A changed one raises."""
    from edgeward.provenance import check_fingerprint_file

    subject = verified.fingerprint
    if subject is None:
        return "unsigned"
    path = artifact.parent / subject.name
    if not path.is_file():
        return "absent"
    check_fingerprint_file(verified.statement, path)
    return "verified"


@click.command("card")
@click.argument("artifact", type=click.Path(exists=True, path_type=Path))
@click.option("--signature", type=click.Path(dir_okay=False, path_type=Path),
              help="The envelope (default ARTIFACT.edgeward.json).")
@click.option("--trust", "trust_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Verify the artifact against this trust store first.")
@click.option("--report", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Compression report (default ARTIFACT.report.json if present).")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the Markdown here (refuses to overwrite).")
@json_option
def card(*, artifact: Path, signature: Path | None, trust_dir: Path | None, report: Path | None,
         out_path: Path | None, as_json: bool) -> None:
    """Render ARTIFACT's model card (Markdown) and its documentation-completeness score."""
    from edgeward.provenance import TrustStore, model_card

    store = TrustStore.open(trust_dir) if trust_dir else None
    mc = model_card(artifact, envelope=signature, trust_store=store, report=report)
    if out_path is not None:
        write_new(out_path, mc.markdown)
    result = mc.to_dict() | {"out": str(out_path) if out_path else None}
    emit(as_json, result, lambda: click.echo(mc.markdown))


@click.command("verify-log")
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--trust", "trust_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Trust store to verify the checkpoint signatures (device keys).")
@json_option
def verify_log(*, file: Path, trust_dir: Path | None, as_json: bool) -> None:
    """Check a tamper-evident log: names any modified, removed, inserted or reordered entry,
    a torn last line, or a checkpoint that does not verify."""
    from edgeward.provenance import TrustStore
    from edgeward.provenance import verify_log as check

    report = check(file, TrustStore.open(trust_dir) if trust_dir else None)

    def human() -> None:
        signed = (f"{report.verified_checkpoints}/{report.checkpoints} checkpoints verified"
                  if report.signatures_checked else
                  f"{report.checkpoints} checkpoints (signatures not checked: pass --trust)")
        out.print(f"{file}: {report.entries} entries, {signed}, "
                  f"{report.unattested_tail} after the last verified checkpoint")
        for p in report.problems:
            out.print(f"  line {p.line}: {p.kind}: {p.detail}")
        if report.ok:
            out.print("intact")

    emit(as_json, report.to_dict(), human)
    try:
        report.raise_if_tampered()
    except LogTamperedError as e:
        _reraise_after_result(e)
