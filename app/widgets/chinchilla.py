"""The Chinchilla calculator: a budget in FLOPs, parameters or tokens → the compute-optimal split,
and where each run of the opened root stands.

    calc = ChinchillaCalc(id="rep-chinchilla")
    calc.show_standings(view.standings)     # workbench.pipeline.view.standings(...) rows

The arithmetic is workbench.eval.chinchilla's (parse_amount, compute_optimal; the standings come from
run_standing or a run's metrics.jsonl); this widget only reads the field and shows the numbers. A bad
amount is said under the field, never raised.
"""

from __future__ import annotations

import math

from rich.text import Text
from textual import on
from textual.binding import Binding
from textual.app import ComposeResult
from textual.css.query import NoMatches
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Input, Select, Static

from app import messages as M
from workbench.cli_eval import _amount as amount  # 6_800_000 -> 6.80M, as `workbench chinchilla` prints
from workbench.errors import WorkbenchError
from workbench.eval.chinchilla import compute_optimal, parse_amount


class ChinchillaCalc(Vertical):
    BINDINGS = [Binding("escape", "leave", show=False)]  # out of the field, so the pane's keys work again

    def __init__(self, **kw):
        super().__init__(**kw)
        self.result: dict | None = None  # compute_optimal's numbers for the field, None while it is empty or bad
        self.error: str | None = None

    def compose(self) -> ComposeResult:
        yield Static(M.CHIN_HELP, id="chin-help", markup=False)
        with Horizontal(id="chin-bar"):
            yield Select([(label, key) for key, label in M.CHIN_UNITS.items()], value="flops", allow_blank=False,
                         id="chin-unit", compact=True)
            yield Input(placeholder=M.CHIN_PLACEHOLDER, id="chin-amount", compact=True)
        yield Static(M.CHIN_WAITING, id="chin-result", markup=False)
        yield Static(M.CHIN_STANDING, id="chin-standing-title", markup=False)
        yield DataTable(id="chin-standing", cursor_type="row", zebra_stripes=True)
        yield Static(id="chin-note", markup=False)

    def on_mount(self) -> None:
        try:
            table = self.query_one("#chin-standing", DataTable)
        except NoMatches:  # mounted lazily as the app quits: its children are already gone
            return
        for i, name in enumerate(M.CHIN_COLUMNS):
            table.add_column(Text(name, justify="right" if 1 < i < 7 else "left"), key=name)
        self.show_standings([])

    def focus_default(self):
        return self.query_one("#chin-amount", Input)

    def action_leave(self) -> None:
        """Escape in the field: to the standings table (or the section tabs when there is none)."""
        table = self.query_one("#chin-standing", DataTable)
        if table.display:
            table.focus()
        else:
            self.screen.focus_next()  # out of the field (Tab's way): the pane's single-key bindings apply again

    def compute(self, unit: str, text: str) -> None:
        """Set the field (for the pane's commands and tests) and show the result."""
        self.query_one("#chin-unit", Select).value = unit
        self.query_one("#chin-amount", Input).value = text
        self._update()

    @on(Input.Changed, "#chin-amount")
    @on(Select.Changed, "#chin-unit")
    def _changed(self, event) -> None:
        event.stop()
        self._update()

    def _update(self) -> None:
        unit = self.query_one("#chin-unit", Select).value
        text = self.query_one("#chin-amount", Input).value
        out = self.query_one("#chin-result", Static)
        self.result = self.error = None
        if not text.strip():
            out.update(M.CHIN_WAITING)
        else:
            try:
                result = compute_optimal(**{unit: parse_amount(text, M.CHIN_UNITS[unit])})
                if not all(math.isfinite(result[k]) and result[k] > 0 for k in ("params", "tokens", "flops")):
                    raise WorkbenchError(M.CHIN_RANGE.format(what=M.CHIN_UNITS[unit], text=text.strip()))
                self.result = result
            except WorkbenchError as e:
                self.error = str(e)
        self.set_class(self.error is not None, "-error")
        if self.error:
            out.update(Text("✗ " + self.error))
        elif self.result:
            r = self.result
            out.update(M.CHIN_RESULT.format(params=amount(r["params"]), tokens=amount(r["tokens"]),
                                            flops=f"{r['flops']:.3g}"))

    def show_standings(self, rows: list[dict]) -> None:
        table = self.query_one("#chin-standing", DataTable)
        table.clear()
        for r in rows:
            if "error" in r:  # this run's numbers cannot stand (view.standings says why): the others still show
                cells = [r["name"], r["stage"] or "?", *["–"] * 5, M.CHIN_NO_STANDING.format(error=r["error"]),
                         r["source"]]
            else:
                cells = [r["name"], r["stage"] or "?", amount(r["params"]), amount(r["tokens"]),
                         f"{r['tokens_per_param']:.2f}", f"{100 * r['fraction_of_optimal_tokens']:.2g}%",
                         amount(r["compute_optimal_params"]), r["verdict"].split(":")[0], r["source"]]
            table.add_row(*(Text(c, justify="right" if 1 < i < 7 else "left") for i, c in enumerate(cells)))
        table.display = bool(rows)
        first = next((r for r in rows if r["stage"] == "pretrain"), rows[0] if rows else None)
        note = (M.CHIN_VERDICT.format(name=first["name"], verdict=first.get("verdict") or
                                      M.CHIN_NO_STANDING.format(error=first["error"])) if first else M.CHIN_NO_RUNS)
        self.query_one("#chin-note", Static).update(note)
