"""The built-in catalog: the stable slugs, valid files, a cited source for every figure."""

from __future__ import annotations

import re
from importlib import resources

import pytest

from edgeward.errors import ProfileError
from edgeward.hardware_profiles import catalog, get_profile, resolve_profile

STABLE_SLUGS = [
    "rtx-4090-24gb", "rtx-3060-12gb", "rtx-4060-laptop-8gb", "apple-m2-16gb",
    "apple-m3-max-64gb", "jetson-orin-nano-8gb", "jetson-agx-orin-64gb",
    "xeon-avx512-vnni-amx", "core-avx2-16gb", "ryzen-7000-avx512-32gb", "raspberry-pi-5-8gb",
]
CATALOG_DIR = resources.files("edgeward.hardware_profiles") / "catalog"


def test_catalog_has_at_least_the_stable_slugs() -> None:
    names = [p.name for p in catalog()]
    assert len(names) >= 11
    assert set(STABLE_SLUGS) <= set(names)
    assert names == sorted(names)


@pytest.mark.parametrize("slug", STABLE_SLUGS)
def test_every_figure_cites_its_source(slug: str) -> None:
    text = (CATALOG_DIR / f"{slug}.toml").read_text(encoding="utf-8")
    lines = text.splitlines()
    for key in ("memory_bytes", "bandwidth_gbps"):
        idx = next(i for i, line in enumerate(lines) if line.startswith(f"{key} ="))
        # One of the comments just above the figure says where it comes from.
        block = "\n".join(lines[max(0, idx - 3):idx])
        assert re.search(r"#\s*(Source|Assumption)", block), (slug, key)


@pytest.mark.parametrize("slug", STABLE_SLUGS)
def test_gpu_profiles_are_consistent(slug: str) -> None:
    p = get_profile(slug)
    if p.backend == "cuda":
        assert p.gpu_compute_capability is not None
        assert p.effective_gpu_layers == -1
    if p.backend == "cpu":
        assert p.effective_gpu_layers == 0
    # Decode of a 1 GB model at this bandwidth must be a plausible figure: 1-2000 tokens/s.
    assert 1 <= p.bandwidth_gbps <= 2000


def test_known_spec_figures() -> None:
    assert get_profile("rtx-4090-24gb").memory_bytes == 24 * 2**30
    assert get_profile("rtx-4090-24gb").bandwidth_gbps == 1008.0
    assert get_profile("raspberry-pi-5-8gb").memory_bytes == 8 * 2**30
    assert "amx" in get_profile("xeon-avx512-vnni-amx").cpu_features
    assert "avx512f" not in get_profile("core-avx2-16gb").cpu_features


def test_unknown_name_suggests_close_ones() -> None:
    with pytest.raises(ProfileError, match="did you mean raspberry-pi-5-8gb"):
        get_profile("raspberry-pi-5-8g")


def test_resolve_accepts_a_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "mine.toml"
    path.write_text(get_profile("raspberry-pi-5-8gb").to_toml().replace(
        'name = "raspberry-pi-5-8gb"', 'name = "my-pi"'))
    assert resolve_profile(str(path)).name == "my-pi"
    assert resolve_profile("rtx-3060-12gb").name == "rtx-3060-12gb"
