"""The terminal UI (Textual): pick a model and a target, compress, flash, watch the fleet.

``edgeward tui`` runs :class:`EdgewardApp` with a :class:`TuiContext` (model directories, keys,
trust store, fleet configuration). It drives the real pipeline and the real fleet: the
compression pipeline, signing, :class:`edgeward.fleet._operator.Operator` for deploys and
rollouts, air-gap bundles, and the fleet store the manager fills. Installed with the ``tui``
extra. ::

    from edgeward.tui import EdgewardApp, TuiContext

    EdgewardApp(TuiContext(model_dirs=[Path("models")], fleet_config=Path("fleet.toml"))).run()
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgeward.tui._context import TuiContext
    from edgeward.tui.app import EdgewardApp

__all__ = ["EdgewardApp", "TuiContext"]


def __getattr__(name: str) -> Any:
    # Textual is imported on first use, so `import edgeward.tui` works without the extra.
    if name == "EdgewardApp":
        from edgeward.tui.app import EdgewardApp

        return EdgewardApp
    if name == "TuiContext":
        from edgeward.tui._context import TuiContext

        return TuiContext
    raise AttributeError(f"module 'edgeward.tui' has no attribute {name!r}")
