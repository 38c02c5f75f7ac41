"""``edgeward profile list|show|detect``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import click
from rich import box
from rich.table import Table

from edgeward._cli._output import emit, err, gib, json_option, out, print_fields, write_new
from edgeward.errors import ConfigError

__all__ = ["profile"]


@click.group()
def profile() -> None:
    """Hardware profiles: the catalog and this machine."""


@profile.command("list")
@json_option
def profile_list(as_json: bool) -> None:
    """List the catalog of hardware profiles."""
    from edgeward.hardware_profiles import catalog

    profiles = catalog()

    def human() -> None:
        table = Table(title="Hardware profiles", title_justify="left", box=box.SIMPLE_HEAD,
                      pad_edge=False, collapse_padding=True)
        table.add_column("name", no_wrap=True)
        table.add_column("memory", justify="right", no_wrap=True)
        table.add_column("GB/s", justify="right", no_wrap=True)
        table.add_column("backend", no_wrap=True)
        table.add_column("format", no_wrap=True)
        table.add_column("ctx", justify="right", no_wrap=True)
        table.add_column("SIMD", no_wrap=True)
        for p in profiles:
            table.add_row(p.name, gib(p.memory_bytes), f"{p.bandwidth_gbps:g}", p.backend,
                          p.preferred_format, str(p.default_context), _best_simd(p.cpu_features))
        out.print(table)

    emit(as_json, [p.to_dict() for p in profiles], human)


@profile.command("show")
@click.argument("name")
@json_option
def profile_show(name: str, as_json: bool) -> None:
    """Show one profile: a catalog NAME or a path to a profile .toml file."""
    from edgeward.hardware_profiles import resolve_profile

    p = resolve_profile(name)
    from edgeward.errors import RuntimeBackendError
    from edgeward.runtimes import check_backend

    try:
        check_backend(p)
        runs_here = "yes" if p.backend == "cpu" else f"yes (llama.cpp has {p.backend})"
    except RuntimeBackendError:
        runs_here = (f"no: this llama-cpp-python lacks the {p.backend} backend "
                     "(docs/install.md)")
    except ImportError:
        runs_here = "unknown (llama-cpp-python is not installed)"
    # the JSON is the profile as it is; the table adds whether this machine's build runs it
    emit(as_json, p.to_dict(), lambda: print_fields(p.to_dict() | {"llama.cpp here": runs_here},
                                                    title=p.display_name))


@profile.command("detect")
@click.option("--no-bandwidth", is_flag=True,
              help="Skip the ~2 s memory-bandwidth measurement.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the profile as TOML to this file (refuses to overwrite).")
@click.option("--name", default="local", show_default=True, help="Slug for the profile.")
@json_option
def profile_detect(no_bandwidth: bool, out_path: Path | None, name: str, as_json: bool) -> None:
    """Detect this machine: CPU features, cores, memory, GPUs, memory bandwidth."""
    from edgeward.hardware_profiles import detect_profile

    if out_path is not None and out_path.exists():
        raise ConfigError(f"{out_path}: already exists; choose another path or remove it first")
    if as_json:
        detected = detect_profile(measure_bandwidth=not no_bandwidth, name=name)
    else:
        with err.status("measuring this machine…"):
            detected = detect_profile(measure_bandwidth=not no_bandwidth, name=name)
    if out_path is not None:
        write_new(out_path, detected.profile.to_toml())

    def human() -> None:
        print_fields(detected.to_dict(), title="This machine", measured=detected.measured,
                     from_spec=detected.from_spec)
        if out_path is not None:
            out.print(f"written to {out_path}")

    emit(as_json, detected.to_dict(), human)


def _best_simd(features: Sequence[str]) -> str:
    for level in ("amx", "avx512_vnni", "avx512f", "avx2", "avx", "i8mm", "dotprod", "neon"):
        if level in features:
            return level
    return "-"
