"""The Runs pane's two views of the same runs: a table (one row per run) and the lineage tree.

Both are filled from `workbench.train.runs` (RunInfo, lineage_tree); they only draw. A refresh
that changes nothing redraws nothing, and one that changes only some cells (a running run's step
and loss) updates those cells, so the cursor and the scroll position stay where the user left them.
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable, Tree

from app import messages as M
from workbench.train import runs as R

# Status -> the theme colour it is drawn in (a theme attribute: right in dark and light themes).
STATUS_COLOUR = {"running": "primary", "finished": "success", "stopped": "warning", "crashed": "error",
                 "failed": "error", "interrupted": "warning"}
WIDE_COLUMNS = ("name", "stage", "status", "steps", "metrics", "started")
NARROW_COLUMNS = ("name", "stage", "status", "steps", "metrics")  # the detail line shows when it started


def status_text(status: str, theme) -> Text:
    if status not in STATUS_COLOUR:
        return Text(status, style="dim")
    colour = getattr(theme, STATUS_COLOUR[status], None)
    return Text(status, style=f"bold {colour}" if colour else "bold")


class RunTable(DataTable):
    """One row per run, keyed by the run's resolved path."""

    def __init__(self, **kw):
        super().__init__(cursor_type="row", zebra_stripes=True, **kw)
        self.columns_shown: tuple[str, ...] = ()
        self._rows: list[tuple[str, tuple]] = []

    def cells(self, run: R.RunInfo) -> tuple:
        values = {"name": Text(run.name), "stage": Text(run.stage or "?"),
                  "status": status_text(run.status, self.app.current_theme), "steps": Text(R.steps_text(run)),
                  "metrics": Text(R.metrics_text(run, short="started" not in self.columns_shown)), "started": Text(R.local_time(run.started))}
        return tuple(values[c] for c in self.columns_shown)

    def show_runs(self, runs: list[R.RunInfo], columns: tuple[str, ...]) -> None:
        if columns != self.columns_shown:
            self.clear(columns=True)
            self.columns_shown = columns
            for c in columns:
                self.add_column(M.RUNS_COLUMNS[c], key=c)
            self._rows = []
        rows = [(str(r.key), self.cells(r)) for r in runs]
        if [k for k, _ in rows] == [k for k, _ in self._rows]:
            for (key, new), (_, old) in zip(rows, self._rows):
                for c, a, b in zip(columns, new, old):
                    if a != b:
                        self.update_cell(key, c, a, update_width=True)
        else:
            selected = self.selected_key()
            self.clear()
            for key, cells in rows:
                self.add_row(*cells, key=key)
            self.select_run(selected)
        self._rows = rows

    def selected_key(self) -> str | None:
        if not self.row_count:
            return None
        return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value

    def select_run(self, key: str | None) -> None:
        if key is None:
            return
        try:
            self.move_cursor(row=self.get_row_index(key))
        except Exception:  # noqa: BLE001 — the run is gone (deleted): the cursor stays where it is
            pass


class RunTree(Tree):
    """The lineage: pretrain -> sft -> rm / dpo / ppo; node data is the run's key (resolved path)."""

    def __init__(self, **kw):
        super().__init__("runs", **kw)
        self.show_root = False
        self.guide_depth = 3
        self._shape: list = []
        self._by_key: dict[str, object] = {}

    def run_label(self, run: R.RunInfo, names: dict, outside: bool) -> Text:
        text = Text.assemble((f"{run.stage or '?'} ", "bold"), run.name, "  ",
                             status_text(run.status, self.app.current_theme), f" {R.steps_text(run)}")
        if run.reward_model is not None:
            text.append(M.RUNS_TREE_REWARD.format(rm=names.get(run.reward_model, str(run.reward_model))), "italic")
        if outside and run.parent is not None:
            text.append(M.RUNS_TREE_OUTSIDE.format(parent=run.parent), "dim")
        return text

    def show_runs(self, runs: list[R.RunInfo]) -> None:
        roots = R.lineage_tree(runs)
        names = {r.key: r.name for r in runs}
        flat: list[tuple[str, str | None, Text]] = []

        def walk(node: R.RunNode, parent: str | None) -> None:
            flat.append((str(node.info.key), parent, self.run_label(node.info, names, outside=parent is None)))
            for child in node.children:
                walk(child, str(node.info.key))

        for root in roots:
            walk(root, None)
        shape = [(k, p) for k, p, _ in flat]
        if shape == self._shape:
            for key, _, label in flat:
                if self._by_key[key].label != label:
                    self._by_key[key].set_label(label)
            return
        selected = self.cursor_node.data if self.cursor_node is not None else None
        self.clear()
        self._by_key = {}
        parents = {p for _, p in shape}
        for key, parent, label in flat:
            under = self.root if parent is None else self._by_key[parent]
            self._by_key[key] = (under.add(label, data=key, expand=True) if key in parents
                                else under.add_leaf(label, data=key))
        self._shape = shape
        self.select_run(selected)

    def select_run(self, key: str | None) -> None:
        node = self._by_key.get(key) if key else None
        if node is not None and node is not self.cursor_node:
            self.move_cursor(node)
