"""``edgeward bundle export|import|authorise-downgrade``: updates for air-gapped devices."""

from __future__ import annotations

from pathlib import Path

import click

from edgeward._cli._output import emit, err, json_option, out, state, write_new
from edgeward._cli.provenance import _passphrase

__all__ = ["bundle"]


@click.group()
def bundle() -> None:
    """Air-gap bundles: carry a signed update to a device with no network."""


@bundle.command("export")
@click.argument("artifact", type=click.Path(exists=True, path_type=Path))
@click.option("--to", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="A new directory for the bundle (e.g. on a USB stick).")
@click.option("--trust", "trust_dir", required=True,
              type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="The publisher's trust store: it must verify ARTIFACT; its public keys go "
                   "into the bundle as its trust root.")
@click.option("--safety-policy", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="A signed safety policy TOML to ship with the artifact.")
@click.option("--profile", help="The hardware profile the bundle's agent.toml names.")
@json_option
def export(*, artifact: Path, out_dir: Path, trust_dir: Path, safety_policy: Path | None,
           profile: str | None, as_json: bool) -> None:
    """Write a bundle: ARTIFACT, its signed statement, the trust root, the signed policy, an
    agent config, and a manifest of every file's sha256."""
    from edgeward.device_agents import export_bundle

    manifest = export_bundle(artifact, out_dir, trust_store=trust_dir,
                             safety_policy=safety_policy, profile=profile)
    result = {"bundle": str(out_dir), "artifact": manifest["artifact"],
              "files": len(manifest["files"])}
    emit(as_json, result, lambda: out.print(
        f"bundle written to {out_dir}: {manifest['artifact']} and "
        f"{len(manifest['files']) - 1} more files; carry the directory to the device and run "
        "`edgeward bundle import`"))


@bundle.command("import")
@click.argument("bundle_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--agent-config", "config_path", required=True,
              type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="The device's agent configuration (state_dir, trust_store, profile, "
                   "safety_policy).")
@click.option("--min-tokens-per-s", type=click.FloatRange(0, min_open=True),
              help="Fail the health check (and roll back) below this decode speed.")
@click.option("--allow-downgrade", "authorisation", metavar="SIGNED_FILE",
              type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="A downgrade authorisation (from `edgeward bundle authorise-downgrade`) "
                   "signed by an operator key of this device's trust store, naming the "
                   "bundle's artifact digest: needed to install an artifact this device "
                   "moved on from. Good for one import, until it expires.")
@json_option
def import_(*, bundle_dir: Path, config_path: Path, min_tokens_per_s: float | None,
            authorisation: Path | None, as_json: bool) -> None:
    """Verify a bundle against this device's trust store and install it into the inactive
    slot: switch, health-check, commit or roll back. Uses no network.

    Stop the agent first: an import into the state_dir of a running agent is refused (exit
    9); reload or start the agent afterwards when its config says artifact = "@slots" (or send
    the update over the air instead).

    An artifact this device moved on from (one a later update or bundle replaced) is a
    downgrade and is refused (exit 8, reason downgrade). To go back deliberately, an operator
    signs an authorisation offline with an operator key of the device's trust store:

      edgeward bundle authorise-downgrade BUNDLE --key ops.key --out allow.json

    and the import names it: --allow-downgrade allow.json.
    """
    from edgeward.device_agents import import_bundle, load_agent_config
    from edgeward.errors import RuntimeBackendError

    result = import_bundle(bundle_dir, load_agent_config(config_path),
                           min_decode_tokens_per_s=min_tokens_per_s,
                           allow_downgrade=authorisation)
    if result.bundle_trust == "revocation_differs" and not as_json:
        err.print("warning: the bundle's trust root and this device's differ in a key "
                  "revocation; the device's trust store decided. Carry the newer trust store "
                  "to the device (see docs/airgap.md).")
    emit(as_json, result.to_dict(), lambda: out.print(
        f"installed and committed in slot {result.slot}: sha256 {result.artifact_digest}"
        + (" (an authorised downgrade)" if result.downgrade else "")
        if result.committed else
        f"verified, but its health check failed and slot {result.slot} serves again: "
        f"{result.detail}"))
    if not result.committed:
        state.result_printed = True
        raise RuntimeBackendError(f"the update was rolled back: {result.detail}")


@bundle.command("authorise-downgrade")
@click.argument("target", metavar="BUNDLE_DIR|SHA256")
@click.option("--key", "key_path", required=True,
              type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="An operator private key; the device's trust store must hold its public key "
                   "with the operator role.")
@click.option("--out", "out_path", required=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="The authorisation file to write (a new file; carry it with the bundle).")
@click.option("--valid-for-hours", type=click.FloatRange(0, 720, min_open=True), default=24.0,
              show_default=True, help="How long it may be used (at most 30 days).")
@click.option("--reason", default="", help="Why (recorded in the signed authorisation).")
@click.option("--passphrase-env", metavar="VAR",
              help="Name of an environment variable holding the private key's passphrase.")
@json_option
def authorise_downgrade_(*, target: str, key_path: Path, out_path: Path,
                         valid_for_hours: float, reason: str, passphrase_env: str | None,
                         as_json: bool) -> None:
    """Sign, offline, a single-use permission for a device to install a superseded artifact
    again (a deliberate downgrade of an air-gapped device).

    TARGET is the bundle to go back to (its artifact digest is read from its manifest) or the
    artifact's sha256. The device checks the signature against the operator keys of its own
    trust store, that the digest is the bundle's, the expiry, and that it was not used before;
    then `edgeward bundle import BUNDLE --allow-downgrade FILE` installs it.
    """
    import re

    from edgeward.device_agents import authorise_downgrade, bundle_artifact_digest
    from edgeward.errors import ConfigError
    from edgeward.provenance import load_private_key

    digest = target if re.fullmatch(r"[0-9a-f]{64}", target) else None
    if digest is None:
        if not Path(target).is_dir():
            raise ConfigError(f"{target}: neither a bundle directory nor a sha256 (64 lowercase "
                              "hex digits)")
        digest = bundle_artifact_digest(Path(target))
    key = load_private_key(key_path, passphrase=_passphrase(passphrase_env))
    env = authorise_downgrade(digest, key, lifetime_s=valid_for_hours * 3600, reason=reason)
    write_new(out_path, env.to_json().decode("utf-8"))
    result = {"authorisation": str(out_path), "artifact_digest": digest, "key_id": key.key_id,
              "valid_for_hours": valid_for_hours}
    emit(as_json, result, lambda: out.print(
        f"downgrade to {digest[:16]}… authorised in {out_path} (key {key.key_id[:16]}…, valid "
        f"{valid_for_hours:g} h, once); import with `edgeward bundle import BUNDLE "
        f"--allow-downgrade {out_path}`"))
