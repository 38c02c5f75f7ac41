"""``edgeward tui``: the terminal UI."""

from __future__ import annotations

from pathlib import Path

import click

from edgeward.errors import ConfigError

__all__ = ["tui"]

_FILE = click.Path(dir_okay=False, exists=True, path_type=Path)
_DIR = click.Path(file_okay=False, exists=True, path_type=Path)


@click.command()
@click.option("--models", "model_dirs", multiple=True, type=_DIR,
              help="A directory of GGUF files and ONNX model directories (repeatable) "
                   "[default: the current directory].")
@click.option("--out-dir", type=_DIR, help="Where Compress writes [default: the first --models].")
@click.option("--trust-store", type=_DIR, help="Verifies signatures (Models) and goes into "
              "air-gap bundles (Flash).")
@click.option("--signing-key", type=_FILE, help="The publisher's private key (Compress → Sign).")
@click.option("--fleet-config", type=_FILE, help="The fleet's TOML (Fleet, Flash).")
@click.option("--operator-key", type=_FILE, help="The operator's private key (Flash).")
@click.option("--artifacts-dir", type=click.Path(file_okay=False, path_type=Path),
              help="The artifact server's store, as `fleet serve-artifacts --dir` (Flash).")
@click.option("--refresh", type=click.FloatRange(0.2, 600), default=2.0, show_default=True,
              help="Seconds between fleet refreshes.")
@click.option("--screen", type=click.Choice(["models", "profiles", "compress", "flash",
                                            "fleet"]), default="models", show_default=True,
              help="The screen to open on.")
def tui(*, model_dirs: tuple[Path, ...], out_dir: Path | None, trust_store: Path | None,
        signing_key: Path | None, fleet_config: Path | None, operator_key: Path | None,
        artifacts_dir: Path | None, refresh: float, screen: str) -> None:
    """The terminal UI: models, profiles, compress, flash, fleet. Press ? inside for keys."""
    try:
        from edgeward.tui import EdgewardApp, TuiContext
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ConfigError("the terminal UI needs Textual: pip install 'edgeward[tui]'") from e
    ctx = TuiContext(model_dirs=list(model_dirs) or [Path.cwd()], out_dir=out_dir,
                     trust_store=trust_store, signing_key=signing_key,
                     fleet_config=fleet_config, operator_key=operator_key,
                     artifacts_dir=artifacts_dir, refresh_s=refresh)
    EdgewardApp(ctx, initial=screen).run()
