"""``edgeward bundle export|import``: updates for air-gapped devices."""

from __future__ import annotations

from pathlib import Path

import click

from edgeward._cli._output import emit, json_option, out, state

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
@json_option
def import_(*, bundle_dir: Path, config_path: Path, min_tokens_per_s: float | None,
            as_json: bool) -> None:
    """Verify a bundle against this device's trust store and install it into the inactive
    slot: switch, health-check, commit or roll back. Uses no network.

    Stop the agent first (or reload it afterwards) when its config says artifact = "@slots".
    """
    from edgeward.device_agents import import_bundle, load_agent_config
    from edgeward.errors import RuntimeBackendError

    result = import_bundle(bundle_dir, load_agent_config(config_path),
                           min_decode_tokens_per_s=min_tokens_per_s)
    emit(as_json, result.to_dict(), lambda: out.print(
        f"installed and committed in slot {result.slot}: sha256 {result.artifact_digest}"
        if result.committed else
        f"verified, but its health check failed and slot {result.slot} serves again: "
        f"{result.detail}"))
    if not result.committed:
        state.result_printed = True
        raise RuntimeBackendError(f"the update was rolled back: {result.detail}")
