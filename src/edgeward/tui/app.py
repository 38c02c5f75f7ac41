"""The edgeward terminal UI: five screens in tabs (Models, Profiles, Compress, Flash, Fleet).

Messages go up, data goes down: each pane posts what happened (a scan finished, a model was
chosen, a device opened) and the app hands the data to the panes that show it. Long work
(scans, compression, signing, deploys, store reads) runs in thread workers, so the screen
never freezes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar, TypeVar

from textual import on
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer, Header, Input, TabbedContent, TabPane

from edgeward.tui._compress import CompressPane
from edgeward.tui._context import TuiContext
from edgeward.tui._flash import FlashPane
from edgeward.tui._fleet import DeviceScreen, FleetPane
from edgeward.tui._help import HelpScreen
from edgeward.tui._models import ModelsPane
from edgeward.tui._profiles import ProfilesPane

__all__ = ["EdgewardApp"]

_P = TypeVar("_P", bound=Widget)

TABS = (("models", "Models"), ("profiles", "Profiles"), ("compress", "Compress"),
        ("flash", "Flash"), ("fleet", "Fleet"))


class EdgewardApp(App[None]):
    """``edgeward tui``."""

    TITLE = "edgeward"
    CSS_PATH = "edgeward.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        *[Binding(str(i), f"show_tab('{tab}')", label, show=True)
          for i, (tab, label) in enumerate(TABS, start=1)],
        Binding("question_mark", "help", "Help"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, ctx: TuiContext | None = None, *, initial: str = "models") -> None:
        super().__init__()
        self.ctx = ctx or TuiContext()
        self.initial = initial

    def compose(self) -> ComposeResult:
        yield Header()
        with TabbedContent(initial=self.initial, id="tabs"):
            with TabPane("Models", id="models"):
                yield ModelsPane(id="models-pane")
            with TabPane("Profiles", id="profiles"):
                yield ProfilesPane(id="profiles-pane")
            with TabPane("Compress", id="compress"):
                yield CompressPane(id="compress-pane")
            with TabPane("Flash", id="flash"):
                yield FlashPane(id="flash-pane")
            with TabPane("Fleet", id="fleet"):
                yield FleetPane(id="fleet-pane")
        yield Footer()

    def _pane(self, cls: type[_P]) -> _P:
        """A pane of the main screen (whatever screen is on top, e.g. a device's)."""
        return self.screen_stack[0].query_one(cls)

    def on_mount(self) -> None:
        self.sub_title = str(self.ctx.fleet_config or "no fleet configured")
        self._pane(FleetPane).refresh_fleet()
        if self.ctx.fleet_config is not None:
            self.set_interval(self.ctx.refresh_s, self._tick)

    def _tick(self) -> None:
        try:
            self._pane(FleetPane).refresh_fleet()
            self._pane(FlashPane).poll()
        except NoMatches:  # the app is closing: its widgets are gone
            return

    @on(TabbedContent.TabActivated, "#tabs")
    def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        # focus the screen's first widget, so its keys show in the footer
        pane = self.query_one(f"#{event.pane.id}-pane")
        for widget in pane.query("*"):
            if widget.focusable and not isinstance(widget, Input):
                widget.focus()
                break

    # --- actions -------------------------------------------------------------------------

    def action_show_tab(self, tab: str) -> None:
        """Switch to a screen's tab (closing a device view or help on top)."""
        while len(self.screen_stack) > 1:
            self.pop_screen()
        self.screen_stack[0].query_one("#tabs", TabbedContent).active = tab

    def action_help(self) -> None:
        """Show keys and what each screen does."""
        self.push_screen(HelpScreen())

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:  # type: ignore[type-arg]
        """The command palette: the built-in commands plus every screen and action."""
        yield from super().get_system_commands(screen)
        for tab, label in TABS:
            yield SystemCommand(f"Go to {label}", f"Show the {label} screen",
                                lambda t=tab: self.action_show_tab(t))
        yield SystemCommand("Rescan models", "Scan the model directories and verify "
                            "signatures again", lambda: self._pane(ModelsPane).action_rescan())
        yield SystemCommand("Plan compression", "Measure every candidate for the chosen "
                            "profile", lambda: self._on_compress("plan"))
        yield SystemCommand("Compress", "Compress the chosen model for the chosen profile",
                            lambda: self._on_compress("compress"))
        yield SystemCommand("Sign artifact", "Sign the artifact just compressed",
                            lambda: self._on_compress("sign"))
        yield SystemCommand("Flash", "Flash the chosen artifact to the chosen target",
                            lambda: self._pane(FlashPane).action_flash())
        yield SystemCommand("Refresh fleet", "Read the fleet store now",
                            lambda: self._pane(FleetPane).action_refresh())
        yield SystemCommand("Help", "Keys and screens", self.action_help)

    def _on_compress(self, what: str) -> None:
        self.action_show_tab("compress")
        getattr(self._pane(CompressPane), f"action_{what}")()

    # --- messages up, data down ----------------------------------------------------------

    @on(ModelsPane.Loaded)
    def _models_loaded(self, message: ModelsPane.Loaded) -> None:
        try:
            self._pane(CompressPane).set_models(message.entries)
            self._pane(FlashPane).set_models(message.entries)
        except NoMatches:  # a scan that finished as the app closed
            return

    @on(ModelsPane.Chosen)
    def _model_chosen(self, message: ModelsPane.Chosen) -> None:
        e = message.entry
        if e.role == "source" or e.format != "gguf" or e.quantization in ("F32", "F16", "BF16"):
            self._pane(CompressPane).choose_model(e)
        self._pane(FlashPane).choose_model(e)
        self.notify(f"{e.name} chosen: press 3 to compress it or 4 to flash it.")

    @on(ProfilesPane.Loaded)
    def _profiles_loaded(self, message: ProfilesPane.Loaded) -> None:
        try:
            self._pane(CompressPane).set_profiles(message.profiles)
        except NoMatches:  # detection that finished as the app closed
            return

    @on(CompressPane.Signed)
    def _signed(self, message: CompressPane.Signed) -> None:
        self.notify(f"Signed {message.artifact.name}.")
        self._pane(ModelsPane).action_rescan()

    @on(CompressPane.Finished)
    def _compressed(self, message: CompressPane.Finished) -> None:
        if message.artifact is not None:
            self._pane(ModelsPane).action_rescan()

    @on(FleetPane.Open)
    def _open_device(self, message: FleetPane.Open) -> None:
        self.push_screen(DeviceScreen(message.device_id))
