"""Report pane: a pipeline root's report card, its curves, the answers side by side, and Chinchilla.

    ReportPane("runs/cpu-demo")                 # what `workbench pipeline --out runs/cpu-demo` wrote
    pane.open("runs/sft runs/dpo")              # or picked run directories (no report card: stages, curves)

Four sections in inner tabs (usable at 80x24, where one table already fills the screen):
Card (policies, reward model, stages: the CLI's print_report tables, from the same functions),
Curves (what plots.py draws as PNGs, as terminal charts), Answers (the report's held-out prompts,
every row's answer with ✓/✗) and Chinchilla (a calculator and each run's standing).
What a root holds is read by workbench.pipeline.view in a thread worker (run_standing loads every
checkpoint's meta); a newer open wins. A root without report.json yet shows its stages and curves.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.css.query import NoMatches
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import DataTable, Input, Label, Static, TabbedContent, TabPane

from app import messages as M
from app.panes.monitor import PALETTE
from app.widgets.charts import ChartPanel, Line
from app.widgets.chinchilla import ChinchillaCalc
from app.widgets.path_input import PathSuggester
from workbench.errors import WorkbenchError
from workbench.pipeline import report as R
from workbench.pipeline.view import View, open_view

SECTIONS = ("card", "curves", "answers", "chinchilla")
WIDE_ANSWERS = 140  # from this width the answers are columns side by side; below, one under another


@dataclass
class _Opened(Message):
    """The open worker's result (post_message is thread-safe); `token` tells a stale one."""

    token: int
    text: str  # what was opened, as the path bar had it
    view: View | None
    error: str | None = None


def _table(table: DataTable, head: list[str], body: list[list[str]]) -> None:
    """Fill a DataTable like print_report's rich tables: the first two columns left, the figures right."""
    table.clear(columns=True)
    for i, h in enumerate(head):
        table.add_column(Text(h, justify="left" if i < 2 else "right"), key=str(i))
    for row in body:
        table.add_row(*(Text(c, justify="left" if i < 2 else "right") for i, c in enumerate(row)))


class ReportPane(Vertical):
    BINDINGS = [
        Binding("o", "open", M.REPORT_KEYS["open"]),
        Binding("s", "section", M.REPORT_KEYS["section"]),
        Binding("n", "next", M.REPORT_KEYS["next"]),
        Binding("f5,ctrl+r", "reload", "Reload", key_display="f5", show=False),
    ]

    def __init__(self, root: str | None = None, **kw):
        kw["classes"] = " ".join(filter(None, ["pane", kw.get("classes")]))
        super().__init__(**kw)
        self.root = root
        self.view: View | None = None
        self.error: str | None = None  # why the last open showed nothing
        self.section = "greedy"  # which answers the policy table measures: greedy | sampled
        self._token = 0  # the newest open asked for; older results are dropped
        self.shown_token = 0  # the open on screen (tests wait for it to reach _token)
        self.charts: list[ChartPanel] = []
        self._redraw = None  # the one pending timer that draws the charts once laid out (never more)

    def compose(self) -> ComposeResult:
        with Horizontal(id="rep-bar"):
            yield Label(M.REPORT_PATH_LABEL, id="rep-path-label")
            yield Input(self.root or "", placeholder=M.REPORT_PATH_PLACEHOLDER, id="rep-path", compact=True,
                        suggester=PathSuggester(), tooltip=M.REPORT_PATH_HELP)
            yield Static(id="rep-summary", markup=False)
        yield Static(id="rep-note", markup=False)
        yield Static(M.REPORT_EMPTY, id="rep-empty", markup=False)
        with TabbedContent(id="rep-tabs"):
            with TabPane(M.REPORT_TABS["card"], id="rep-card"):
                with VerticalScroll(id="rep-card-scroll"):
                    yield Static(id="rep-policies-title", classes="rep-title")
                    yield DataTable(id="rep-policies", cursor_type="row", zebra_stripes=True, fixed_columns=1)
                    yield Static(M.REPORT_RM, id="rep-rm-title", classes="rep-title", markup=False)
                    yield DataTable(id="rep-rm", cursor_type="row", fixed_columns=1)
                    yield Static(M.REPORT_STAGES, id="rep-stages-title", classes="rep-title", markup=False)
                    yield DataTable(id="rep-stages", cursor_type="row", zebra_stripes=True, fixed_columns=1)
                    yield Static(id="rep-footnote", markup=False)
            with TabPane(M.REPORT_TABS["curves"], id="rep-curves"):
                with VerticalScroll(id="rep-curves-scroll"):
                    yield Static(M.REPORT_NO_CURVES, id="rep-no-curves", markup=False)
                    yield Grid(id="rep-grid")
            with TabPane(M.REPORT_TABS["answers"], id="rep-answers"):
                with VerticalScroll(id="rep-answers-scroll"):
                    yield Static(id="rep-answers-text")
            with TabPane(M.REPORT_TABS["chinchilla"], id="rep-chinchilla"):
                yield ChinchillaCalc(id="rep-calc")

    def on_mount(self) -> None:
        self._layout_classes()
        self.set_class(True, "-empty")
        if self.root:
            try:
                self.open(self.root)
            except NoMatches:  # mounted lazily as the app quits: its children are already gone
                pass

    def focus_default(self):
        """What the App focuses when this tab is shown: the section's table, or the path bar when empty."""
        if self.view is None:
            return self.query_one("#rep-path", Input)
        active = self.query_one("#rep-tabs", TabbedContent).active
        if active == "rep-chinchilla":
            return self.query_one(ChinchillaCalc).focus_default()
        return {"rep-card": self.query_one("#rep-policies" if self.view.report else "#rep-stages", DataTable),
                "rep-curves": self.query_one("#rep-curves-scroll"),
                "rep-answers": self.query_one("#rep-answers-scroll")}[active]

    def commands(self) -> list[tuple[str, str, callable]]:
        out = [(*M.REPORT_COMMANDS[name], getattr(self, f"action_{name}")) for name in ("open", "reload", "section", "next")]
        return out + [(*M.REPORT_COMMANDS[f"show('{s}')"], lambda s=s: self.action_show(s)) for s in SECTIONS]

    def on_resize(self) -> None:
        if self._layout_classes() and self.view is not None:
            self._show_answers()
        self.call_after_refresh(self._draw_charts)

    @on(TabbedContent.TabActivated, "#rep-tabs")
    def _section_shown(self, event: TabbedContent.TabActivated) -> None:
        event.stop()  # the App's handler is for its own tabs
        if event.pane.id == "rep-curves":
            self.call_after_refresh(self._draw_charts)

    def _layout_classes(self) -> bool:
        """Columns of charts follow the width (the numbers are in report.tcss); True when the answers' layout flips."""
        w, h = self.size
        cols = 1 if w < 120 else (2 if w < 170 else 3)
        for n in (1, 2, 3):
            self.set_class(cols == n, f"-cols-{n}")
        self.set_class(h >= 40, "-tall")
        wide = w >= WIDE_ANSWERS
        flipped = wide != self.has_class("-wide")
        self.set_class(wide, "-wide")
        return flipped

    # ------------------------------------------------------------------ opening (a thread worker)
    def open(self, path: str | list[str]) -> None:
        """Open a pipeline root, or run directories (a list, or one string of them); a newer open wins."""
        text = path if isinstance(path, str) else " ".join(path)
        self.root = text
        self.query_one("#rep-path", Input).value = text
        self._token += 1
        self._note(M.REPORT_OPENING.format(source=text))
        self._load(path, text, self._token)

    @work(thread=True, exclusive=True, group="report-open")
    def _load(self, path, text: str, token: int) -> None:
        try:
            view, error = open_view(path), None
        except WorkbenchError as e:
            view, error = None, str(e)
        except Exception as e:  # noqa: BLE001 — a bug in reading must not take the app down
            view, error = None, M.WORKER_ERROR.format(what=f"Reading {path}", error=f"{type(e).__name__}: {e}")
        self.post_message(_Opened(token, text, view, error))

    @on(_Opened)
    async def _opened(self, message: _Opened) -> None:
        if message.token != self._token:
            return  # a newer open was asked for meanwhile
        self.error = message.error
        self.refresh_bindings()  # `s` only with a report card
        if message.error:
            self.view = None
            self.set_class(True, "-empty")
            self.set_class(True, "-error")
            self._note(Text("✗ " + message.error, style="bold"))
            self.query_one(ChinchillaCalc).show_standings([])
            self.shown_token = message.token
            return
        again = self.view is not None and self.view.source == message.view.source  # F5: keep the places
        places = self._places() if again else {}
        self.view = view = message.view
        self.set_class(False, "-empty")
        self.set_class(False, "-error")
        self._note("" if view.report else M.REPORT_NOT_WRITTEN if view.root else M.REPORT_RUNS_ONLY)
        self.set_class(view.report is None, "-partial")
        self._show_summary()
        self._show_card()
        await self._show_curves()
        self._show_answers()
        self.query_one(ChinchillaCalc).show_standings(view.standings)
        self._restore(places)
        self.shown_token = message.token  # the charts are mounted: tests (and _draw_charts) may look now
        bar = self.query_one("#rep-path", Input)
        # To the table only if the user is not typing another path meanwhile.
        if self.app.focused is None or (self.app.focused is bar and bar.value.strip() == message.text.strip()):
            target = self.focus_default()
            if self.is_on_screen and target is not None:
                target.focus(scroll_visible=False)  # the card keeps its first title in view

    def _places(self) -> dict:
        """Where each table's cursor and each scroller is (F5 reads the root again and puts them back)."""
        out = {}
        for table in self.query(DataTable):
            out[table.id] = (table.cursor_coordinate, table.scroll_offset)
        for scroll in self.query(VerticalScroll):
            out[scroll.id] = scroll.scroll_offset
        return out

    def _restore(self, places: dict) -> None:
        def put_back() -> None:
            for table in self.query(DataTable):
                if table.id in places and table.row_count:
                    coord, offset = places[table.id]
                    table.move_cursor(row=min(coord.row, table.row_count - 1), column=coord.column, scroll=False)
                    table.scroll_to(offset.x, offset.y, animate=False)
            for scroll in self.query(VerticalScroll):
                if scroll.id in places:
                    scroll.scroll_to(*places[scroll.id], animate=False)

        if places:
            self.call_after_refresh(put_back)  # once the refilled tables are laid out (their height known)

    def _note(self, text) -> None:
        note = self.query_one("#rep-note", Static)
        note.update(text)
        note.display = bool(str(text))

    # ------------------------------------------------------------------ the sections
    def _show_summary(self) -> None:
        view, report = self.view, self.view.report
        if view.root is None:
            text = M.REPORT_SUMMARY_RUNS.format(n=len(view.stages))
        elif report is None:
            text = M.REPORT_SUMMARY_PARTIAL.format(name=view.root.name, stages=len(view.stages))
        else:
            text = M.REPORT_SUMMARY.format(name=Path(str(report.get("recipe") or view.root)).stem,
                                           stages=len(view.stages), wall=R.duration(report.get("wall_s")),
                                           written=str(report.get("written") or "?").replace("T", " ")[:16])
        self.query_one("#rep-summary", Static).update(text)

    def _show_card(self) -> None:
        report = self.view.report
        if report is not None:
            other = "sampled" if self.section == "greedy" else "greedy"
            self.query_one("#rep-policies-title", Static).update(
                M.REPORT_POLICIES.format(section=self.section, other=other))
            _table(self.query_one("#rep-policies", DataTable), *R.policy_table(report, self.section))
            _table(self.query_one("#rep-rm", DataTable), *R.rm_table(report))
        self.set_class(bool(report and report["reward_models"]), "-rm")
        _table(self.query_one("#rep-stages", DataTable), *R.stage_table({"stages": self.view.stages}))
        lines = []
        if report is not None:  # every field here was checked by view.read_report
            lines.append(M.REPORT_WHOLE.format(wall=R.duration(report["wall_s"]), eval=R.duration(report["eval_s"])))
            lines.append(R.pretraining_line(report))
            t = report["tokenizer"]
            if t:
                lines.append(M.REPORT_TOKENIZER.format(path=t["path"], vocab=t["vocab_size"] or 0,
                                                       wall=R.duration(t["wall_s"])))
        self.query_one("#rep-footnote", Static).update("\n".join(line for line in lines if line))

    async def _show_curves(self) -> None:
        grid = self.query_one("#rep-grid", Grid)
        await grid.remove_children()
        self.charts = []
        for figure in self.view.figures:
            for panel in figure.panels:
                title = f"loss · {panel.title}" if panel.key == "loss" else panel.title
                chart = ChartPanel(title, M.REPORT_CURVE_HINTS.get(panel.key, ""), panel=panel)
                self.charts.append(chart)
        self.query_one("#rep-no-curves").display = not self.charts
        if self.charts:
            await grid.mount_all(self.charts)
            self.call_after_refresh(self._draw_charts)

    def _draw_charts(self) -> None:
        """Draw the charts at their size on screen (a chart drawn while its tab is hidden, at size 0,
        would spill past its axes when shown): when the Curves tab is shown, and after a resize."""
        if self.query_one("#rep-tabs", TabbedContent).active != "rep-curves":
            return
        for chart in self.charts:
            if not chart.is_mounted or not chart.size.area:
                if self._redraw is None:  # not laid out yet: soon (one timer for them all, however often called)
                    self._redraw = self.set_timer(0.1, self._draw_again)
                continue
            if chart.drawn_state == (self.shown_token, chart.size):
                continue
            chart.drawn_state = (self.shown_token, chart.size)
            lines, legend = [], Text()
            for i, curve in enumerate(chart.panel.curves):
                color = PALETTE[i % len(PALETTE)]
                lines.append(Line(np.asarray(curve.steps, float), np.asarray(curve.values, float), color, curve.points))
                legend.append(("• " if curve.points else "━ ") + curve.label + "  ", style=color)
            chart.draw(lines, legend=legend)

    def _draw_again(self) -> None:
        self._redraw = None
        self._draw_charts()

    def _show_answers(self) -> None:
        out = self.query_one("#rep-answers-text", Static)
        examples = (self.view.report or {}).get("examples") or []
        if not examples:
            out.update(Text(M.REPORT_NO_EXAMPLES, style="dim"))
            return
        labels = list(examples[0]["answers"])
        if self.has_class("-wide"):  # the CLI's table: a column per row
            t = Table(show_lines=True, expand=True)
            t.add_column(M.REPORT_EXAMPLE_PROMPT, overflow="fold", ratio=2)
            for label in labels:
                t.add_column(label, overflow="fold", ratio=3)
            for ex in examples:
                prompt = Text(ex["prompt"] or "")
                if ex.get("reference"):
                    prompt.append(f"\n→ {ex['reference']}", style="dim")
                t.add_row(prompt, *(Text.from_markup(R.answer_cell(ex["answers"].get(label))) for label in labels))
            out.update(t)
            return
        parts = []
        for i, ex in enumerate(examples, 1):  # narrow: one prompt after another, a line per row
            head = Text(M.REPORT_EXAMPLE_HEAD.format(i=i, prompt=ex["prompt"] or ""), style="bold")
            if ex.get("reference"):
                head.append(M.REPORT_EXAMPLE_REF.format(reference=ex["reference"]), style="dim")
            t = Table(show_header=False, box=None, padding=(0, 1), expand=True)
            t.add_column(style="bold", no_wrap=True)
            t.add_column(overflow="fold", ratio=1)
            for label in labels:
                t.add_row(label, Text.from_markup(R.answer_cell(ex["answers"].get(label))))
            parts += [head, t, Text("")]
        out.update(Group(*parts))

    # ------------------------------------------------------------------ actions
    @on(Input.Submitted, "#rep-path")
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.open(event.value.strip())

    def action_open(self) -> None:
        self.query_one("#rep-path", Input).focus()

    def action_reload(self) -> None:
        if self.root:
            self.open(self.root)

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        if action == "section":  # greedy / sampled: only a report card has them
            return self.view is not None and self.view.report is not None
        return True

    def action_section(self) -> None:
        self.section = "sampled" if self.section == "greedy" else "greedy"
        if self.view is not None and self.view.report is not None:
            self._show_card()

    def action_show(self, section: str) -> None:
        self.query_one("#rep-tabs", TabbedContent).active = f"rep-{section}"
        target = self.focus_default()
        if target is not None:
            target.focus()

    def action_next(self) -> None:
        active = self.query_one("#rep-tabs", TabbedContent).active.removeprefix("rep-")
        self.action_show(SECTIONS[(SECTIONS.index(active) + 1) % len(SECTIONS)])
