"""DataBar: the Data pane's controls, two compact lines and a line of notes under them.

    data [path, → completes]                 [format: auto: ultrachat ▾]
    tokenizer [cl100k_base]    mode [all ▾]  max len [none]
    (notes: the tokenizer loading or failing, a bad max length, a mode that does not apply)

It posts `DataBar.Changed(what, value)` for what the person changed: "path" (submitted),
"format" (None = detect), "tokenizer" (submitted), "mode", "max_len" (only valid values: a bad
one is named on the notes line, the input turns red, and nothing changes).
"""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Input, Label, Select, Static

from app import messages as M
from app.widgets.path_input import PathSuggester
from workbench.chat import MODES
from workbench.data.formats import FORMATS
from workbench.data.loading import BUILDERS
from workbench.data.record_view import parse_max_len
from workbench.errors import WorkbenchError

AUTO = "auto"


class DataBar(Vertical):
    class Changed(Message):
        def __init__(self, what: str, value):
            super().__init__()
            self.what, self.value = what, value

    def __init__(self, path: str | None, **kw):
        super().__init__(**kw)
        self.path = path
        self._notes: dict[str, tuple[str, bool]] = {}

    def compose(self) -> ComposeResult:
        with Horizontal(id="data-bar"):
            yield Label(M.DATA_PATH_LABEL)
            yield Input(self.path or "", placeholder=M.DATA_PATH_PLACEHOLDER, id="data-path", compact=True,
                        suggester=PathSuggester(tuple(BUILDERS)))
            yield Select(self._format_options(None), value=AUTO, allow_blank=False, id="data-format", compact=True)
        with Horizontal(id="data-bar2"):
            yield Label(M.DATA_TOKENIZER_LABEL)
            yield Input("cl100k_base", placeholder=M.DATA_TOKENIZER_PLACEHOLDER, id="data-tokenizer",
                        compact=True, suggester=PathSuggester((".tiktoken",)))
            yield Label(M.DATA_MODE_LABEL)
            yield Select([(m, m) for m in MODES], value="all", allow_blank=False, id="data-mode", compact=True)
            yield Label(M.DATA_MAX_LEN_LABEL)
            yield Input("", placeholder=M.DATA_MAX_LEN_PLACEHOLDER, id="data-max-len", compact=True)
        yield Static(id="data-bar-msg", markup=False)

    # ------------------------------------------------------------------ set from the pane
    def set_path(self, path: str) -> None:
        self.query_one("#data-path", Input).value = path
        self.set_format(None, None)

    def set_format(self, fmt: str | None, detected: str | None) -> None:
        """Show the override (None: auto), and what was detected, without reporting a change."""
        select = self.query_one("#data-format", Select)
        with self.prevent(Select.Changed):
            select.set_options(self._format_options(detected if fmt is None else None))
            select.value = next(iter(FORMATS))  # a value that changes, so that the shown label follows
            select.value = fmt or AUTO

    @staticmethod
    def _format_options(detected: str | None) -> list[tuple[str, str]]:
        auto = M.DATA_FORMAT_DETECTED.format(format=detected) if detected else M.DATA_FORMAT_AUTO
        return [(auto, AUTO)] + [(f, f) for f in FORMATS]

    def set_mode(self, mode: str) -> None:
        self.query_one("#data-mode", Select).value = mode  # reported like a choice made by hand

    def note(self, topic: str, text: str, error: bool = False) -> None:
        """Say (or, with "", stop saying) something about one control, on the notes line."""
        self._notes.pop(topic, None)
        if text:
            self._notes[topic] = (text, error)
        line = self.query_one("#data-bar-msg", Static)
        line.update(" · ".join(t for t, _ in self._notes.values()))
        line.display = bool(self._notes)
        line.set_class(any(e for _, e in self._notes.values()), "-error")
        if topic == "tok":
            self.query_one("#data-tokenizer").set_class(error, "-invalid")

    # ------------------------------------------------------------------ what the person changed
    @on(Input.Submitted, "#data-path")
    def _path(self, event: Input.Submitted) -> None:
        event.stop()
        if event.value.strip():
            self.post_message(self.Changed("path", event.value.strip()))

    @on(Input.Submitted, "#data-tokenizer")
    def _tokenizer(self, event: Input.Submitted) -> None:
        event.stop()
        self.post_message(self.Changed("tokenizer", event.value.strip()))

    @on(Select.Changed, "#data-format")
    def _format(self, event: Select.Changed) -> None:
        event.stop()
        self.post_message(self.Changed("format", None if event.value == AUTO else event.value))

    @on(Select.Changed, "#data-mode")
    def _mode(self, event: Select.Changed) -> None:
        event.stop()
        self.post_message(self.Changed("mode", str(event.value)))

    @on(Input.Changed, "#data-max-len")
    def _max_len(self, event: Input.Changed) -> None:
        event.stop()
        try:
            value = parse_max_len(event.value)
        except WorkbenchError as e:
            event.input.add_class("-invalid")
            self.note("max_len", str(e), error=True)
            return
        event.input.remove_class("-invalid")
        self.note("max_len", "")
        self.post_message(self.Changed("max_len", value))
