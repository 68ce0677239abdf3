"""PlayView: what the Playground's four views share — the pane's model cache and settings, one request at a
time in a thread worker, and a status line.

    class ChatView(PlayView):
        def ask(self):
            request = self.new_request()          # any output of an older request is dropped from now on
            self.start(request, lambda cancelled: ...)

The worker's function gets `cancelled()` (true once a newer request or `stop()` replaced it) and reports
with `self.send(request, kind, ...)`: a PlayOutput message, which is thread-safe. A view defines `focus_default()` (its text box) and
`output(message)` (what to draw). A WorkbenchError becomes
the status line's message; any other exception is shown as a bug, never a traceback that takes the app down.
"""

from __future__ import annotations

from textual import work
from textual.containers import Vertical
from textual.widgets import Static

from app import messages as M
from workbench.errors import WorkbenchError


class PlayView(Vertical):
    def __init__(self, **kw):
        super().__init__(**kw)
        self.request = 0
        self.in_flight: int | None = None  # the request whose worker has not reported done or an error yet

    @property
    def pane(self):
        return next(a for a in self.ancestors if hasattr(a, "cache"))

    def status(self, text: str = "", error: bool = False) -> None:
        line = self.query_one(".play-status", Static)
        line.update(text)
        line.set_class(error, "-error")

    def new_request(self) -> int:
        self.request += 1
        return self.request

    def stop(self) -> None:
        """Drop the request in flight: its worker stops at its next token, and its output is ignored."""
        self.request += 1
        self.in_flight = None
        self.stopped()

    def stop_or_leave(self) -> None:
        """esc: stop what is in flight; with nothing in flight, leave the text box for the tabs (where the
        digits switch panes again and ←/→ the Playground's tabs)."""
        if self.in_flight is not None:
            self.stop()
        else:
            self.pane.query_one("#play-modes Tabs").focus()

    def stopped(self) -> None:
        """A view's own clean-up after stop()."""

    def send(self, request: int, kind: str, index: int = 0, text: str = "", data=None) -> None:
        self.post_message(M.PlayOutput(request, kind, index, text, data))

    def start(self, request: int, job) -> None:
        self.in_flight = request
        self._run(request, job)

    @work(thread=True, group="play")
    def _run(self, request: int, job) -> None:
        try:
            job(lambda: request != self.request)
        except WorkbenchError as e:
            self.send(request, "error", text=M.PLAY_ERROR.format(error=e))
        except Exception as e:  # noqa: BLE001 — a bug in a request must not take the app down
            self.send(request, "error", text=M.PLAY_BUG.format(error=e))

    def on_play_output(self, message: M.PlayOutput) -> None:
        message.stop()
        if message.request != self.request:
            return  # a request that was replaced
        if message.kind in ("done", "error"):
            self.in_flight = None
        if message.kind == "error":
            self.status(message.text, error=True)
            self.failed(message.text)
            return
        self.output(message)

    def failed(self, error: str) -> None:
        """A view's own clean-up when its request failed (the status line already says why)."""
