"""The built-in catalog of hardware profiles (TOML files shipped as package data)."""

from __future__ import annotations

import difflib
import functools
from importlib import resources
from pathlib import Path

from edgeward.errors import ProfileError
from edgeward.hardware_profiles._schema import HardwareProfile, load_profile_file

__all__ = ["catalog", "get_profile", "resolve_profile"]


@functools.cache
def catalog() -> tuple[HardwareProfile, ...]:
    """Every profile in the built-in catalog, sorted by name.

    Raises:
        ProfileError: a catalog file is malformed (a packaging bug; the message names the file).
    """
    root = resources.files("edgeward.hardware_profiles") / "catalog"
    profiles = []
    for entry in root.iterdir():
        if entry.name.endswith(".toml"):
            with resources.as_file(entry) as path:
                profile = load_profile_file(Path(path))
            expected = entry.name.removesuffix(".toml")
            if profile.name != expected:
                raise ProfileError(
                    f"{entry.name}: field 'name' has bad value {profile.name!r}; "
                    f"expected the file's stem {expected!r}"
                )
            profiles.append(profile)
    return tuple(sorted(profiles, key=lambda p: p.name))


def get_profile(name: str) -> HardwareProfile:
    """The catalog profile called ``name``.

    Raises:
        ProfileError: no such profile (the message suggests the closest names).
    """
    by_name = {p.name: p for p in catalog()}
    try:
        return by_name[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(by_name), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ProfileError(
            f"unknown hardware profile {name!r}{hint} "
            "(`edgeward profile list` shows the catalog; a path to a .toml file also works)"
        ) from None


def resolve_profile(name_or_path: str) -> HardwareProfile:
    """A catalog name, or a path to a profile TOML file (anything ending in ``.toml``).

    Raises:
        ProfileError: unknown name, or a missing or malformed file.
    """
    if name_or_path.endswith(".toml") or "/" in name_or_path:
        return load_profile_file(Path(name_or_path))
    return get_profile(name_or_path)
