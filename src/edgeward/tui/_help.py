"""The help screen: what each screen is for and its keys (``?`` anywhere)."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

__all__ = ["HELP", "HelpScreen"]

HELP = """\
# edgeward — keys

| key | what |
|---|---|
| `1`…`5` | Models, Profiles, Compress, Flash, Fleet |
| `ctrl+p` | command palette: every action by name |
| `?` | this help; `escape` closes it |
| `q` | quit |

**Models** — source models and artifacts, their signature (verified / unsigned / INVALID)
and quality. `r` rescans; `enter` picks the model for Compress and Flash.

**Profiles** — the catalog and this machine (detected). `a` / `b` put the highlighted
profile in the comparison's A / B column.

**Compress** — choose a model and a profile. `p` plans (every candidate measured, nothing
written); `c` compresses (plans, installs the choice with its report and card); `s` signs
the result with `--signing-key`.

**Flash** — choose an artifact and a target: a device (signed deploy command over MQTT), a
group (staged rollout 5 % → 25 % → 100 %, halts and rolls the wave back on failures) or an
air-gap bundle directory. `ctrl+f` flashes; `x` stops driving a rollout (resume it with
`edgeward fleet rollout --resume NAME`).

**Fleet** — devices with state, running artifact, cpu and tokens/s sparklines and alerts;
safety decisions by category. `enter` opens a device (provenance, health, events); `r`
refreshes now (it refreshes by itself every few seconds).
"""


class HelpScreen(ModalScreen[None]):
    """Keys and screens."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark", "app.pop_screen", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help"):
            yield Markdown(HELP)
