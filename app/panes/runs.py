"""Runs pane: the run directories under a root, their status and lineage, and what to do with one.

    RunsPane("runs")      # the table of runs over (or, when wide, beside) the lineage tree

What a run is and how it stands (running / finished / stopped / failed / crashed, from lineage.json
and the run lock), its last metrics, its parent, the resume command and deletion are decided in
workbench/train/runs.py; this pane lists and reacts. Scans run in a thread worker (every few
seconds while the pane is on screen, and on demand); a scan older than the latest one is dropped.
Actions on the selected run: open it in the Monitor (or overlay it there), resume it (the Train
pane starts it), copy its `workbench train … --resume` command, delete it (after a confirmation).
"""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container, Horizontal, Vertical
from textual.widgets import DataTable, Input, Label, Static, Tree

from app import messages as M
from app.widgets.run_list import NARROW_COLUMNS, WIDE_COLUMNS, RunTable, RunTree, status_text
from workbench.errors import WorkbenchError
from workbench.train import runs as R

REFRESH_S = 3.0  # cheap: a scan of unchanged runs is a few stat() calls each (runs.py caches the reads)
NARROW = 110  # below this width the tree goes under the table and the Started column is dropped


class RunsPane(Vertical):
    BINDINGS = [
        Binding("o", "open", "Open"),
        Binding("a", "add", "Add"),
        Binding("r", "resume", "Resume"),
        Binding("d,delete", "delete", "Del"),
        # Kept out of the footer, which has ~37 columns for a pane at 80: the detail line shows the
        # command with "c copies", and the list refreshes by itself every few seconds.
        Binding("c", "copy", "Copy", show=False),
        Binding("p", "play", "Play", show=False),  # the Playground: chat with the run's latest checkpoint
        Binding("f5,ctrl+r", "refresh", "Reload", key_display="f5", show=False),
    ]

    def __init__(self, root: str = "runs", **kw):
        kw["classes"] = " ".join(filter(None, ["pane", kw.get("classes")]))
        super().__init__(**kw)
        self.root = root
        self.runs: list[R.RunInfo] = []
        self._generation = 0  # the newest scan asked for; older results are dropped
        self.shown_generation = 0  # the scan on screen (tests wait for it to reach _generation)

    def compose(self) -> ComposeResult:
        with Horizontal(id="runs-bar"):
            yield Label(M.RUNS_ROOT, id="runs-root-label")
            yield Input(self.root, id="runs-root", compact=True, tooltip=M.RUNS_ROOT_HELP)
            yield Static(id="runs-summary", markup=False)
        yield Static(id="runs-empty", markup=False)
        with Container(id="runs-body"):
            yield RunTable(id="runs-table")
            yield RunTree(id="runs-tree")
        yield Static(id="runs-detail")

    def on_mount(self) -> None:
        self.query_one(RunTree).auto_expand = False  # Enter / click picks a run; it does not fold the tree
        self.set_interval(REFRESH_S, self._tick)
        self.watch(self.app, "theme", lambda: self._draw(), init=False)  # statuses are drawn in theme colours
        self.refresh_runs()

    def focus_default(self):
        """What the App focuses when this tab is shown: the table, so the pane's keys work at once."""
        return self.query_one(RunTable)

    def on_resize(self) -> None:
        narrow = self.size.width < NARROW
        if narrow != self.has_class("-narrow"):
            self.set_class(narrow, "-narrow")
            self._draw()

    # ------------------------------------------------------------------ scanning
    def refresh_runs(self) -> None:
        """Scan the root again (in a worker); the lists update when it is done."""
        self._generation += 1
        self._scan(self.root, self._generation)

    def set_root(self, root: str) -> None:
        self.root = root
        self.query_one("#runs-root", Input).value = root
        self.refresh_runs()

    def _tick(self) -> None:
        if self.is_on_screen:  # a hidden tab costs nothing
            self.refresh_runs()

    @work(thread=True, exclusive=True, group="runs-scan")
    def _scan(self, root: str, generation: int) -> None:
        try:
            runs, exists, error = R.scan_runs(root), Path(root).expanduser().is_dir(), None
        except Exception as e:  # noqa: BLE001 — a bug in a scan must not take the app down
            runs, exists, error = [], True, e
        try:
            self.app.call_from_thread(self._scanned, root, generation, runs, exists, error)
        except RuntimeError:  # the app is closing
            pass

    def _scanned(self, root: str, generation: int, runs, exists: bool, error) -> None:
        if generation != self._generation or root != self.root:
            return  # a newer scan was asked for meanwhile
        if error is not None:
            self.notify(M.WORKER_ERROR.format(what=f"Scanning {root}", error=error), severity="error", markup=False)
        self.runs, self.shown_generation = runs, generation
        self.query_one("#runs-empty", Static).update(
            "" if runs else (M.RUNS_EMPTY if exists else M.RUNS_NO_ROOT).format(root=root.rstrip("/")))
        self.set_class(not runs, "-empty")
        counts = ", ".join(f"{n} {status}" for status, n in R.status_counts(runs).items())
        self.query_one("#runs-summary", Static).update(M.RUNS_SUMMARY.format(n=len(runs), counts=counts) if runs else "")
        self._draw()

    def _draw(self) -> None:
        table = self.query_one(RunTable)
        table.show_runs(self.runs, NARROW_COLUMNS if self.has_class("-narrow") else WIDE_COLUMNS)
        self.query_one(RunTree).show_runs(self.runs)
        self._show_detail()

    # ------------------------------------------------------------------ the selected run
    def selected(self) -> R.RunInfo | None:
        key = self.query_one(RunTable).selected_key()
        return next((r for r in self.runs if str(r.key) == key), None)

    def _run_name(self, key: Path | None) -> str:
        return next((r.name for r in self.runs if r.key == key), str(key))

    def _show_detail(self) -> None:
        run = self.selected()
        detail = self.query_one("#runs-detail", Static)
        if run is None:
            detail.update(M.RUNS_NONE_SELECTED if self.runs else "")
            return
        head, tail = M.RUNS_DETAIL
        lines = [Text.assemble(head.format(name=run.name, stage=run.stage or "?"),
                               status_text(run.status, self.app.current_theme),
                               tail.format(steps=R.steps_text(run) or "?", when=R.time_span(run.started, run.ended)))]
        facts = []
        if run.status == "running" and run.holder is not None:
            facts.append(M.RUNS_HELD.format(holder=run.holder.describe()))
        elif run.error:
            facts.append(run.error)
        if run.parent is not None or run.parent_checkpoint:
            facts.append(M.RUNS_PARENT.format(parent=self._run_name(run.parent) if run.parent else run.parent_checkpoint))
        if run.reward_model is not None:
            facts.append(M.RUNS_REWARD.format(rm=self._run_name(run.reward_model)))
        if run.stage:
            lines.append(Text.assemble(("$ " + R.resume_command(run), "italic"), (M.RUNS_COPY_HINT, "dim")))
        if facts:
            lines.append(Text("  ·  ".join(facts)))
        detail.update(Text("\n").join(lines))

    @on(DataTable.RowHighlighted)
    def _row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key is None or event.row_key.value is None:  # a table emptied under the cursor
            return
        self.query_one(RunTree).select_run(event.row_key.value)
        self._show_detail()

    @on(DataTable.RowSelected)
    def _row_selected(self) -> None:  # Enter, or a click on the highlighted row
        self.action_open()

    @on(Tree.NodeHighlighted)
    def _node_highlighted(self, event: Tree.NodeHighlighted) -> None:
        # Only the user moving in the tree moves the table (the table is the selection): a tree
        # rebuilt by a refresh highlights nodes by line too, and those must not move the selection.
        if self.query_one(RunTree).has_focus:
            self.query_one(RunTable).select_run(event.node.data)

    @on(Input.Submitted, "#runs-root")
    def _root_submitted(self, event: Input.Submitted) -> None:
        self.set_root(event.value.strip() or "runs")
        self.query_one(RunTable).focus()

    # ------------------------------------------------------------------ actions
    def _run_or_say(self) -> R.RunInfo | None:
        run = self.selected()
        if run is None:
            self.notify(M.RUNS_NONE_SELECTED, severity="warning")
        return run

    def action_open(self, add: bool = False) -> None:
        if run := self._run_or_say():
            self.post_message(M.OpenRuns([str(run.path)], add=add))

    def action_add(self) -> None:
        self.action_open(add=True)

    def action_play(self) -> None:
        if run := self._run_or_say():
            self.post_message(M.OpenPlayground(str(run.path), reward=run.stage == "rm"))

    def action_resume(self) -> None:
        if run := self._run_or_say():
            why = R.why_not_resumable(run)
            if why:
                self.notify(why, severity="warning", timeout=8, markup=False)
            else:
                self.post_message(M.ResumeRun(str(run.path)))

    def action_copy(self) -> None:
        if run := self._run_or_say():
            try:
                command = R.resume_command(run)
            except WorkbenchError as e:
                self.notify(str(e), severity="error", markup=False)
                return
            self.app.copy_to_clipboard(command)
            self.notify(M.RUNS_COPIED.format(command=command), markup=False)

    def action_refresh(self) -> None:
        self.refresh_runs()

    def action_root(self) -> None:
        self.query_one("#runs-root", Input).focus()

    def action_delete(self) -> None:
        run = self._run_or_say()
        if run is None:
            return
        if run.status == "running":
            self.notify(M.RUNS_CANNOT_DELETE.format(name=run.name), severity="warning", markup=False)
            return
        from app.widgets.confirm import Confirm

        question = M.RUNS_DELETE_ASK.format(name=run.name, stage=run.stage or "?", status=run.status,
                                            steps=R.steps_text(run) or "?")
        children = R.children_of(run, self.runs)
        if children:
            question += M.RUNS_DELETE_CHILDREN.format(children=", ".join(c.name for c in children))
        self.app.push_screen(Confirm(question, yes="Delete"), lambda yes: yes and self._delete(run))

    @work(thread=True, group="runs-delete")
    def _delete(self, run: R.RunInfo) -> None:
        try:
            R.delete_run(run.path)
        except WorkbenchError as e:
            self.app.call_from_thread(self.notify, str(e), severity="error", markup=False)
        except OSError as e:
            self.app.call_from_thread(self.notify, f"{run.path}: {e}", severity="error", markup=False)
        else:
            self.app.call_from_thread(self.notify, M.RUNS_DELETED.format(name=run.name), markup=False)
        self.app.call_from_thread(self.refresh_runs)

    def commands(self) -> list[tuple[str, str, callable]]:
        actions = {"open": self.action_open, "add": self.action_add, "resume": self.action_resume,
                   "copy": self.action_copy, "play": self.action_play, "delete": self.action_delete, "refresh": self.action_refresh,
                   "root": self.action_root}
        return [(*M.RUNS_COMMANDS[name], fn) for name, fn in actions.items()]
