"""The terminal UI (Textual): pick a model and a target, compress, flash, watch the fleet.

Not implemented yet (a later issue). Installed with the ``tui`` extra.
"""

__all__: list[str] = []
