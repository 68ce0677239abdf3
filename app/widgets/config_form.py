"""The settings form of the Train pane, generated from a stage's config (workbench.train.schema).

    form = ConfigForm("sft", schema.file_values("sft", "configs/sft/tiny.yaml"))
    form.values()              # {"lr": "0.001", "packing": False, "mode": "all", ...} as entered
    form.show_errors(schema.validate("sft", form.values()))

One row per setting, grouped in collapsibles as in configs/STAGE/tiny.yaml: the name (as in the
YAML and on the command line), the input its type calls for (a switch for true/false, a select for
a fixed set of words, a number box, a text box that completes paths), and the comment of the YAML
as help beside it, which a validation message replaces (in red) while the value is refused. The
form decides nothing: parsing and checks are the schema's; it posts `ConfigForm.Changed`.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Collapsible, Input, Label, Select, Static, Switch

from app import messages as M
from app.widgets.path_input import PathSuggester
from workbench.train import schema


def _title(group: str) -> str:
    return group[:1].upper() + group[1:]


class FieldRow(Horizontal):
    """One setting: its name, its input, its help (or the message saying why its value is refused)."""

    def __init__(self, field: schema.Field, value, picks: list[tuple[str, str]] | None = None, note: str = ""):
        super().__init__(classes="field-row", id=f"row-{field.name}")
        self.field, self.value, self.picks, self.note = field, value, picks, note
        self.error: str | None = None  # the message shown instead of the help
        words = list(field.choices or field.suggest or ())
        # A value outside the set (from a file) is shown as it is, and the schema flags it.
        self.words = words + ([value] if words and value is not None and value not in words else [])

    def compose(self) -> ComposeResult:
        f = self.field
        yield Label(f.name, classes="field-name")
        with Vertical(classes="field-input"):
            yield self._input()
            if self.picks is not None:  # runs that can be this parent: choosing one fills the box
                yield Select(self.picks, prompt=self.note, compact=True, id=f"pick-{f.name}",
                             classes="field-pick", disabled=not self.picks)
        help_line = Static(f.help, classes="field-help", markup=False)
        help_line.tooltip = f.help or None  # the whole comment, where the line is cut short
        yield help_line

    def _input(self):
        f, value, wid = self.field, self.value, f"cf-{self.field.name}"
        if f.kind == "bool":
            return Switch(bool(value), animate=False, id=wid, classes="field-switch")
        if self.words:
            return Select([(w, w) for w in self.words], value=value if value is not None else Select.NULL,
                          allow_blank=f.optional, prompt="null", compact=True, id=wid)  # blank = null, as in a box
        kind = {"int": "integer", "float": "number"}.get(f.kind, "text")
        return Input(schema.form_text(value), placeholder="null" if f.optional else "", type=kind, compact=True,
                     suggester=PathSuggester() if f.path else None, id=wid, select_on_focus=False)

    def show_error(self, message: str | None) -> None:
        if message == self.error:
            return
        self.error = message
        help_line = self.query_one(".field-help", Static)
        help_line.update(f"✗ {message}" if message else self.field.help)
        help_line.set_class(bool(message), "-error")
        self.set_class(bool(message), "-invalid")


class ConfigForm(VerticalScroll):
    """Every setting of one stage, in groups; `values()` reads them back as the user entered them."""

    @dataclass
    class Changed(Message):
        """A setting changed (typed, switched, selected, or a parent picked)."""

        form: "ConfigForm"
        name: str

    def __init__(self, stage: str, values: dict, picks: dict[str, tuple[list, str]] | None = None, **kw):
        super().__init__(**kw)
        self.stage, self._values = stage, dict(values)
        self.picks = picks or {}  # setting -> ([(label, path)], prompt)

    def compose(self) -> ComposeResult:
        # A tall screen shows every group open; a small one an overview with the first group open.
        tall = self.app.size.height >= 40
        for i, (group, members) in enumerate(schema.groups(self.stage)):
            with Collapsible(title=_title(group), collapsed=i > 0 and not tall, id=f"group-{i}", classes="field-group"):
                for f in members:
                    options, note = self.picks.get(f.name, (None, ""))
                    yield FieldRow(f, self._values.get(f.name, f.default), options, note)

    async def set_stage(self, stage: str, values: dict, picks: dict | None = None) -> None:
        """Show another stage's settings (rebuilds the rows)."""
        self.stage, self._values, self.picks = stage, dict(values), picks or {}
        await self.recompose()
        self.post_message(self.Changed(self, ""))

    def set_values(self, values: dict) -> None:
        """Put typed values (a loaded file) into the inputs."""
        with self.prevent(Input.Changed, Switch.Changed, Select.Changed):
            for row in self.query(FieldRow):
                if row.field.name in values:
                    self._put(row, values[row.field.name])
        self.post_message(self.Changed(self, ""))

    def _put(self, row: FieldRow, value) -> None:
        widget = self.query_one(f"#cf-{row.field.name}")
        if isinstance(widget, Switch):
            widget.value = bool(value)
        elif isinstance(widget, Select):
            if value is not None and value not in row.words:
                row.words.append(value)
                widget.set_options([(w, w) for w in row.words])
            widget.value = Select.NULL if value is None else value
        else:
            widget.value = schema.form_text(value)

    def values(self) -> dict:
        """{setting: entry}: text for boxes (parsed by the schema as the CLI would), bool, word or None."""
        out = {}
        for row in self.query(FieldRow):
            widget = self.query_one(f"#cf-{row.field.name}")
            value = widget.value
            out[row.field.name] = None if value is Select.NULL else value
        return out

    def show_errors(self, errors: dict[str, str]) -> None:
        """Each refused setting's message beside it; a group title counts its problems."""
        for row in self.query(FieldRow):
            row.show_error(errors.get(row.field.name))
        for i, (group, members) in enumerate(schema.groups(self.stage)):
            n = sum(f.name in errors for f in members)
            box = self.query_one(f"#group-{i}", Collapsible)
            title = M.TRAIN_GROUP_INVALID.format(group=_title(group), n=n) if n else _title(group)
            if box.title != title:
                box.title = title
                box.set_class(bool(n), "-invalid")

    def reveal(self, name: str) -> None:
        """Open the group of `name` and scroll its row into view (a refused setting on Start)."""
        row = self.query_one(f"#row-{name}", FieldRow)
        for box in row.ancestors:
            if isinstance(box, Collapsible):
                box.collapsed = False
        self.call_after_refresh(row.scroll_visible)

    def set_picks(self, name: str, options: list[tuple[str, str]], prompt: str) -> None:
        self.picks[name] = (options, prompt)
        for pick in self.query(f"#pick-{name}").results(Select):
            pick.set_options(options)
            pick.prompt = prompt
            pick.disabled = not options

    # ------------------------------------------------------------------ events from the inputs
    def on_input_changed(self, event: Input.Changed) -> None:
        self._changed(event)

    def on_switch_changed(self, event: Switch.Changed) -> None:
        self._changed(event)

    def on_select_changed(self, event: Select.Changed) -> None:
        wid = event.select.id or ""
        if wid.startswith("pick-"):
            event.stop()
            if event.value is not Select.NULL:
                self.query_one(f"#cf-{wid[5:]}", Input).value = str(event.value)
            return
        self._changed(event)

    def _changed(self, event) -> None:
        wid = getattr(event.control, "id", "") or ""
        if wid.startswith("cf-"):
            event.stop()
            self.post_message(self.Changed(self, wid[3:]))
