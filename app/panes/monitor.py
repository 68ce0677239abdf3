"""The Monitor pane: live charts of one or several runs, read from their run directories.

    MonitorPane(["runs/sft"])           # follow a run (finished, or being written by any process)
    pane.show_runs(["runs/dpo"], add=True)   # overlay another run on the same charts
    pane.add_records(run_dir, records)  # events from the TUI's own training worker (low latency)

Everything comes from RUN/metrics.jsonl, followed by a thread worker every 0.5 s (only new bytes are
read; workbench.train.follow decides about partial lines, late files and resumes), so closing and
reopening the TUI loses nothing and a headless `workbench train` in another terminal shows live.
Records that also arrive through `add_records` are kept once (RunHistory dedups). Charts are
redrawn on a 0.2 s timer, only when something they show changed (at most 5 redraws a second), and
paced by what redrawing costs, so that charts never take more than a quarter of the UI thread.
Layout: one column of charts at 80 columns (scroll for the rest), two from 120, three from 170.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Static
from textual.worker import get_current_worker

from app import messages as M
from app.widgets.charts import ChartPanel, Line
from app.widgets.path_input import AskPath
from app.widgets.run_header import run_lines
from workbench.errors import WorkbenchError
from workbench.train.follow import RunHistory
from workbench.train.watch import (HeaderRead, Loaded, Records, RunHeader, RunWatcher, follow_target, panels_for,
                                   run_names)

POLL_S, REDRAW_S = 0.5, 0.2
# Charts may take at most this share of the UI thread (a redraw costing c waits c / DUTY). Kept low:
# the UI thread holding the GIL slows a run training in this process (measured: at 0.25 an in-TUI
# run trained at ~0.5x its headless speed).
DUTY = 0.08
LIVE_S = 1.0  # new points of a live run are drawn at most this often; a key (toggle, resize) at once
URGENT_S = 0.25  # after a toggle, the charts wait at most this long since their last redraw
SMOOTHING = (0.0, 0.6, 0.9, 0.99)
# Series colours: mid-luminance, readable on the dark and the light theme, fixed (deterministic snapshots).
PALETTE = ("#3b8eea", "#e5a50a", "#2aa876", "#d9534f", "#a06bd6", "#17a2b8", "#c0707a", "#8a9a2a")


@dataclass
class Run:
    """What the pane knows about one followed run (main thread only)."""

    path: Path
    token: int  # which show_runs call it belongs to: messages from an older follower are dropped
    name: str = ""
    history: RunHistory = field(default_factory=RunHistory)
    header: RunHeader | None = None
    loaded: bool = False  # the worker's first full read has arrived
    pending: list = field(default_factory=list)  # add_records received before that
    log: list[str] = field(default_factory=list)
    bad: int = 0


@dataclass
class _Event(Message):
    """A watcher event (Loaded | Records | HeaderRead) from the follow worker (post_message is thread-safe)."""

    event: object


@dataclass
class _FollowFailed(Message):
    """The follow worker's poll raised: shown once per distinct error; the worker keeps polling."""

    error: str


class MonitorPane(Vertical):
    BINDINGS = [
        Binding("s", "smooth", M.MONITOR_KEYS["smooth"]),
        Binding("l", "logy", M.MONITOR_KEYS["logy"]),
        Binding("x", "xaxis", M.MONITOR_KEYS["xaxis"]),
        Binding("o", "open", M.MONITOR_KEYS["open"]),
        Binding("a", "add", M.MONITOR_KEYS["add"]),
    ]

    def __init__(self, run_dirs=(), **kw):
        super().__init__(classes="pane", **kw)
        self.runs: dict[Path, Run] = {}
        self.smoothing, self.logy, self.x = 0.0, False, "step"
        self._token = 0
        self._wanted: dict[Path, int] = {}  # what the worker follows (replaced, never mutated: thread-safe)
        self._wake = threading.Event()
        self._dirty = True
        self._urgent = True  # a user action waits for no pacing
        self._text_dirty, self._text_at = False, 0.0  # the header's figures are due / were last drawn
        self._revision = 0  # bumped on every change of the data shown (a chart redraws when it moved)
        self._charts: dict[str, ChartPanel] = {}  # panel id -> its chart, in display order
        self._initial = list(run_dirs)
        self._header_lines = 0
        self._train_pane = None  # the App's Train pane, once found (see _training_here)
        self.last_redraw_s = 0.0
        self._last_redraw_at, self._cost = 0.0, 0.0  # when the charts were last redrawn, and what it cost

    def compose(self) -> ComposeResult:
        yield Static(M.MONITOR_EMPTY, id="mon-empty", markup=False)
        yield Static(id="mon-runs")
        yield Static(id="mon-options")
        with VerticalScroll(id="mon-charts"):
            yield Grid(id="mon-grid")
        yield Static(id="mon-log", markup=False)

    def on_mount(self) -> None:
        self._layout_classes()
        self.set_interval(REDRAW_S, self._redraw)
        self._follow()
        if self._initial:
            self.show_runs(self._initial)
        else:
            self._refresh_text()

    def focus_default(self):
        """What the App focuses when this tab is shown: the charts, so the pane's keys work at once."""
        return self.query_one("#mon-charts")

    def on_resize(self) -> None:
        self._layout_classes()
        self._dirty = self._urgent = True
        self.call_after_refresh(self._refresh_text)  # the run lines are cut to the new width

    def _layout_classes(self) -> None:
        """Columns and chart heights follow the pane's size (the numbers are in monitor.tcss)."""
        w, h = self.size
        cols = 1 if w < 120 else (2 if w < 170 else 3)
        for n in (1, 2, 3):
            self.set_class(cols == n, f"-cols-{n}")
        self.set_class(h >= 40, "-tall")

    # ------------------------------------------------------------------ the interface (app.py calls these)
    def show_runs(self, run_dirs, add: bool = False) -> None:
        """Follow these run directories (`add`: besides those shown, overlaid)."""
        self._token += 1
        self._urgent = True
        paths = [Path(d).expanduser().resolve() for d in run_dirs]
        if not add:
            self.runs = {}
        for p in paths:
            if p not in self.runs:
                self.runs[p] = Run(p, self._token)
        for run, name in zip(self.runs.values(), run_names(list(self.runs))):
            run.name = name
        self._wanted = {p: r.token for p, r in self.runs.items()}
        self._wake.set()
        self._revision += 1
        self._rebuild_charts()
        self._refresh_text()

    def add_records(self, run_dir, records) -> None:
        run = self.runs.get(Path(run_dir).expanduser().resolve())
        if run is None:
            return  # a run this pane does not show (the user opened another)
        if not run.loaded:
            run.pending.extend(records)
        elif run.history.add(records):
            self._changed()

    def run_ended(self, run_dir, status, error=None) -> None:
        """An in-TUI run ended (the App notifies the user): its end event is in the records; re-read
        lineage.json and train.log now rather than at the next header poll."""
        if Path(run_dir).expanduser().resolve() in self.runs:
            self._wake.set()

    def commands(self) -> list[tuple[str, str, callable]]:
        return [(*M.MONITOR_COMMANDS[name], getattr(self, f"action_{name}"))
                for name in ("smooth", "logy", "xaxis", "open", "add")]

    # ------------------------------------------------------------------ actions
    def action_smooth(self) -> None:
        self.smoothing = SMOOTHING[(SMOOTHING.index(self.smoothing) + 1) % len(SMOOTHING)]
        self._options_changed()

    def action_logy(self) -> None:
        self.logy = not self.logy
        self._options_changed()

    def action_xaxis(self) -> None:
        self.x = "tokens" if self.x == "step" else "step"
        self._options_changed()

    def action_open(self) -> None:
        self.app.push_screen(AskPath(M.MONITOR_OPEN_PROMPT, "runs/"), lambda p: self._ask(p, add=False))

    def action_add(self) -> None:
        self.app.push_screen(AskPath(M.MONITOR_ADD_PROMPT, "runs/"), lambda p: self._ask(p, add=True))

    def _ask(self, path: str | None, add: bool) -> None:
        if not path:
            return
        try:
            self.show_runs([follow_target(path)], add=add)
        except WorkbenchError as e:
            self.notify(str(e), severity="error", timeout=8)

    def _options_changed(self) -> None:
        """A toggle: its label is repainted at once, the charts right after that paint (not at the next
        tick), so the key shows on screen before the charts' redraw takes the UI thread."""
        self._dirty = self._urgent = True
        self._refresh_text()
        self.call_after_refresh(self._redraw)

    # ------------------------------------------------------------------ the follow worker (a thread)
    @work(thread=True, exclusive=True, group="monitor-follow")
    def _follow(self) -> None:
        """Poll the followed runs every POLL_S (workbench.train.watch decides what changed) and post
        what came back; the objects in those messages are never touched by this thread again."""
        worker = get_current_worker()
        watcher = RunWatcher()
        wake, failed = False, None
        while not worker.is_cancelled:
            try:
                events = watcher.poll(self._wanted, headers_now=wake)
            except Exception as e:  # a bug or an unforeseen OS error: say so once, keep following
                events, error = [], f"{type(e).__name__}: {e}"
                if error != failed:
                    self.post_message(_FollowFailed(error))
                failed = error
            for event in events:
                self.post_message(_Event(event))
            wake = self._wake.wait(POLL_S)
            self._wake.clear()

    @on(_FollowFailed)
    def _on_follow_failed(self, message: _FollowFailed) -> None:
        self.notify(M.MONITOR_FOLLOW_FAILED.format(error=message.error), severity="error", timeout=10, markup=False)

    @on(_Event)
    def _on_event(self, message: _Event) -> None:
        event = message.event
        run = self.runs.get(event.path)
        if run is None or run.token != event.token:
            return  # from a follower of a run no longer shown (or opened anew since)
        {Loaded: self._on_loaded, Records: self._on_records, HeaderRead: self._on_header}[type(event)](run, event)

    def _on_loaded(self, run: Run, message: Loaded) -> None:
        run.history, run.loaded, run.bad = message.history, True, message.bad
        run.history.add(run.pending)  # what the training worker sent meanwhile (kept once)
        run.pending = []
        if message.reset:
            self.notify(M.MONITOR_RELOADED.format(name=run.name), timeout=4)
        self._changed(structure=True)

    def _on_records(self, run: Run, message: Records) -> None:
        if not run.loaded:
            return
        run.bad += message.bad
        if run.history.add(message.records) or message.bad:
            self._changed()

    def _on_header(self, run: Run, message: HeaderRead) -> None:
        stage_changed = run.header is None or run.header.stage != message.header.stage
        run.header = message.header
        if message.log is not None:
            run.log = message.log
        if stage_changed:
            self._rebuild_charts()
            self._refresh_text()
        else:  # the figures of a live run: on the redraw tick, paced like the charts (every poll brings one)
            self._text_dirty = True

    def _changed(self, structure: bool = False) -> None:
        self._dirty = True
        self._revision += 1
        self._rebuild_charts()  # a new metric can add a panel (e.g. MoE balance); nothing when none did
        if structure:
            self._refresh_text()
        else:
            self._text_dirty = True  # new points: the header follows on the redraw tick, paced while training here

    # ------------------------------------------------------------------ charts
    def _stages(self) -> list[str]:
        out = []
        for run in self.runs.values():
            out.append((run.history.start or {}).get("stage") or (run.header.stage if run.header else None))
        return out

    def _rebuild_charts(self) -> None:
        """Mount the panels the shown runs need, in order; keep those already there (no DOM ids: a
        chart being removed may still be in the DOM when the same panel is mounted again)."""
        keys = set().union(*(r.history.series for r in self.runs.values())) if self.runs else set()
        panels = panels_for(self._stages(), keys) if self.runs else []
        if [p.id for p in panels] == list(self._charts):
            return
        grid = self.query_one("#mon-grid", Grid)
        keep = {p.id for p in panels}
        for pid in [pid for pid in self._charts if pid not in keep]:
            self._charts.pop(pid).remove()
        charts, prev = {}, None
        for panel in panels:
            chart = self._charts.get(panel.id)
            if chart is None:
                chart = ChartPanel(*M.MONITOR_PANELS[panel.id], panel=panel)
                if prev is None:
                    grid.mount(chart, before=0) if grid.children else grid.mount(chart)
                else:
                    grid.mount(chart, after=prev)
            charts[panel.id] = prev = chart
        self._charts = charts
        self._dirty = True

    def _training_here(self) -> bool:
        """A run trains in this process (the GIL is shared with it): live points are drawn less often.
        (The Train pane is looked up once: a query walks the whole DOM, measured at a quarter of this
        pane's UI time when it ran on every tick.)"""
        if self._train_pane is None or not self._train_pane.is_attached:
            panes = self.app.query("#train-pane")
            self._train_pane = panes.first() if panes else None
        return self._train_pane is not None and bool(self._train_pane.running_jobs())

    def _redraw(self) -> None:
        """Redraw the charts whose data or options changed (called at most every REDRAW_S)."""
        now = time.monotonic()
        if self._text_dirty and self.is_on_screen and (now >= self._text_at + LIVE_S or not self._training_here()):
            self._text_dirty, self._text_at = False, now
            self._refresh_text()
        if not self._dirty or not self.is_on_screen:  # a hidden Monitor costs nothing; it catches up when shown
            return
        # Pace: the last redraw's cost (preparing the series + textual-plot painting them, which
        # happens after this returns) decides the earliest next one, so a big or busy grid of charts
        # never crowds out keypresses. Small charts still redraw every REDRAW_S.
        self._cost += sum(c.take_paint_s() for c in self._charts.values() if c.is_mounted)
        # A user's toggle waits for no pacing beyond a short guard (keys held down still get through).
        if self._urgent:
            wait = min(self._cost / DUTY, URGENT_S)
        else:
            wait = self._cost / DUTY if not self._training_here() else max(LIVE_S, self._cost / DUTY)
        if time.monotonic() < self._last_redraw_at + wait:
            return
        self._dirty = self._urgent = False
        t0 = time.perf_counter()
        runs = list(self.runs.values())
        many = len(runs) > 1
        for chart in self._charts.values():
            panel = chart.panel
            if not chart.is_mounted:
                self._dirty = True  # mounted a moment ago: draw it on the next tick
                continue
            state = (self._revision, self.smoothing, self.logy, self.x, chart.size)
            if chart.drawn_state == state:
                continue
            chart.drawn_state = state
            lines, legend, seen = [], Text(), set()
            for ri, run in enumerate(runs):
                for ki, key in enumerate(panel.keys):
                    if key not in run.history:
                        continue
                    xs, ys = run.history.xy(key, x=self.x, smoothing=self.smoothing)
                    points = run.history.source.get(key) == "eval"
                    # One run: a colour per key. Several: a colour per run (the header's), and a
                    # second train key of the same panel (chosen / rejected) drawn dim.
                    color = PALETTE[(ri if many else ki) % len(PALETTE)]
                    dim = many and ki > 0 and not points
                    lines.append(Line(xs, ys, f"dim {color}" if dim else color, points))
                    if key not in seen:
                        seen.add(key)
                        glyph = "• " if points else "━ "
                        legend.append(glyph, style=color if not many else ("dim" if dim else ""))
                        legend.append(key + "  ", style=color if not many else "")
            chart.draw(lines, logy=self.logy, legend=legend)
        self.last_redraw_s = time.perf_counter() - t0  # for the tests and the benchmark
        self._last_redraw_at, self._cost = time.monotonic(), self.last_redraw_s

    # ------------------------------------------------------------------ header, options, log
    def _refresh_text(self) -> None:
        empty = not self.runs
        self.set_class(empty, "-empty")
        if empty:
            return
        colors = [PALETTE[i % len(PALETTE)] for i in range(len(self.runs))]
        header = self.query_one("#mon-runs", Static)
        width = header.content_size.width or max(20, (self.size.width or 80) - 2)  # inside its padding
        lines = run_lines(self.runs.values(), colors, width)
        # A full layout only when the header's height changes: the 1 Hz figures of a live run are
        # repainted in place (a layout of the whole screen costs more than the header itself).
        header.update(lines, layout=len(lines.plain.split("\n")) != self._header_lines)
        self._header_lines = len(lines.plain.split("\n"))
        smoothing = f"{self.smoothing:g}" if self.smoothing else "off"
        options = Text(M.MONITOR_OPTIONS.format(x=self.x, smoothing=smoothing, logy="on" if self.logy else "off"),
                       style="dim")
        for run in self.runs.values():
            if run.bad:
                options.append("  " + M.MONITOR_BAD_LINES.format(name=run.name, n=run.bad), style="bold #e5a50a")
        self.query_one("#mon-options", Static).update(options, layout=False)  # fixed heights: no layout
        first = next(iter(self.runs.values()))
        log = first.log or ([M.MONITOR_NO_LOG] if first.loaded else [])
        self.query_one("#mon-log", Static).update("\n".join(log[-5:]), layout=False)

