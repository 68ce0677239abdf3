"""Typing a path: a Suggester that completes file and folder names, and a modal that asks for one.

    Input(suggester=PathSuggester())                   # → (right arrow) accepts the grey completion
    app.push_screen(AskPath("Save as", "x.yaml"), callback)   # callback(path | None)
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.suggester import Suggester
from textual.widgets import Button, Input, Static

from workbench.data.record_view import complete_path


class PathSuggester(Suggester):
    """Completes a typed path with the first matching folder or file of its folder (folders get a /);
    `suffixes`: only files ending so (None: any file). The logic is the core's `complete_path`."""

    def __init__(self, suffixes: tuple[str, ...] | None = None):
        # No cache: a folder's contents change (a run that finishes, a config just saved).
        super().__init__(use_cache=False, case_sensitive=True)
        self.suffixes = suffixes

    async def get_suggestion(self, value: str) -> str | None:
        return complete_path(value, self.suffixes)


class AskPath(ModalScreen[str | None]):
    """Asks for a path (with completion); dismisses with the path, or None on Escape / Cancel."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, value: str = "", ok: str = "OK"):
        super().__init__(classes="ask-path")
        self.title_text, self.value, self.ok = title, value, ok

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.title_text, markup=False)
            yield Input(self.value, suggester=PathSuggester(), id="ask-path-input")
            with Horizontal():
                yield Button("Cancel", id="ask-path-cancel")
                yield Button(self.ok, id="ask-path-ok", variant="primary")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(event.value.strip() or None)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(self.query_one(Input).value.strip() or None if event.button.id == "ask-path-ok" else None)

    def action_cancel(self) -> None:
        self.dismiss(None)
