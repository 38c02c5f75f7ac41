"""The dependency direction of DESIGN.md holds: each package imports only what it may."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "edgeward"

# package -> the edgeward packages it may import (besides itself).
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    # Reading outside input safely (regular files, caps, JSON limits): a foundation like errors.
    "safeio": {"errors"},
    "packaged_models": {"errors"},
    "hardware_profiles": {"errors"},
    "provenance": {"errors"},
    "safety": {"errors"},
    # A runtime is loaded *for* a profile; the profile type is its input.
    "runtimes": {"errors", "hardware_profiles"},
    "compress": {"errors", "hardware_profiles", "provenance", "runtimes"},
    "fleet": {"errors", "provenance"},
    # Behavioural fingerprints run a loaded model (runtimes) and sign nothing themselves.
    "behaviour": {"errors", "runtimes", "hardware_profiles", "provenance"},
    "device_agents": {"errors", "runtimes", "safety", "provenance", "fleet.protocol",
                      "hardware_profiles", "behaviour"},
}
for _name, _allowed in ALLOWED.items():
    if _name not in ("errors", "safeio"):
        _allowed.add("safeio")
TOP = {"cli", "_cli", "tui", "demo", "__main__"}  # may import everything


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            if name.startswith("edgeward."):
                found.add(name.removeprefix("edgeward."))
    return found


def _package_of(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".py")


@pytest.mark.parametrize("path", sorted(SRC.rglob("*.py")), ids=lambda p: str(p.relative_to(SRC)))
def test_imports_follow_the_dependency_direction(path: Path) -> None:
    package = _package_of(path)
    if package in TOP or package == "__init__":
        return
    allowed = ALLOWED[package] | {package}
    for target in _imports(path):
        top = target.split(".")[0]
        ok = top in allowed or target in allowed or any(
            target == a or target.startswith(a + ".") for a in allowed)
        assert ok, f"{path.relative_to(SRC)} imports edgeward.{target}; {package} may import " \
                   f"only {sorted(allowed)}"


def test_every_subpackage_of_the_design_exists_with_a_docstring() -> None:
    for name in ("hardware_profiles", "compress", "runtimes", "provenance", "safety",
                 "device_agents", "fleet", "tui"):
        init = SRC / name / "__init__.py"
        assert init.is_file(), name
        assert ast.get_docstring(ast.parse(init.read_text())), f"{name} lacks a docstring"
    assert (SRC / "py.typed").is_file()
    assert (SRC / "errors.py").is_file() and (SRC / "cli.py").is_file()


_FACES = sorted(p for p in SRC.rglob("*.py") if _package_of(p) in TOP)


@pytest.mark.parametrize("path", _FACES, ids=lambda p: str(p.relative_to(SRC)))
def test_faces_use_front_doors_only(path: Path) -> None:
    """The CLI, the TUI and the demo import a library package's front door (``edgeward.fleet``,
    ``edgeward.fleet.protocol``), never one of its private modules (``edgeward.fleet._store``):
    what a face needs, the front door exports."""
    for target in _imports(path):
        parts = target.split(".")
        if parts[0] in TOP:
            continue  # a face's own modules
        private = [p for p in parts[1:] if p.startswith("_")]
        assert not private, (f"{path.relative_to(SRC)} imports edgeward.{target}, a private "
                             f"module; export what it needs from edgeward.{parts[0]}")


def test_the_face_check_catches_a_private_import(tmp_path: Path) -> None:
    face = tmp_path / "face.py"
    face.write_text("def f():\n    from edgeward.fleet._store import open_store\n")
    assert "fleet._store" in _imports(face)
