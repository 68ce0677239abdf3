"""The workbench App: four panes in tabs — Data, Train, Monitor, Runs — over the headless core.

    from app.app import WorkbenchApp, plan_launch
    WorkbenchApp(plan_launch(["runs/sft"])).run()

The App only arranges panes and routes messages between them (app/messages.py); every decision
lives in workbench/ (masks, configs, the engine, run status). Training runs in a Textual thread
worker (app/worker.py) or as a detached `workbench train` child process that the Monitor follows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from textual import on
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.lazy import Lazy
from textual.widgets import Footer, Header, TabbedContent, TabPane

from app import messages as M
from workbench.errors import WorkbenchError
from workbench.pipeline.view import is_pipeline_root
from workbench.train import runs

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SAMPLE_CHAT = ROOT / "sample_data" / "chat.jsonl"
PANES = ("data", "train", "monitor", "runs", "playground", "report")
TABS = Binding.Group("Panes", compact=True)


# The Runs pane's run files, and what the engine writes before them (a run just starting is followed too).
RUN_FILES = (*runs.RUN_FILES, "train.log", "checkpoints")
DATA_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv", ".arrow", ".txt")


def is_run_dir(path: Path) -> bool:
    """A run directory: anything the engine writes first (train.log appears before metrics.jsonl)."""
    return path.is_dir() and any((path / f).exists() for f in RUN_FILES)


def _existing_ancestor(path: Path) -> Path:
    for parent in path.absolute().parents:
        if parent.exists():
            return parent
    return Path("/")


@dataclass
class Launch:
    """What the app opens with: the Data pane's file, the Monitor's runs, the Runs root, the first tab."""

    data: str | None = None
    runs: list[str] = field(default_factory=list)
    runs_root: str = "runs"
    pane: str = "data"
    checkpoint: str | None = None  # the Playground's checkpoint (default: the last run given)
    report: str | None = None  # a pipeline root the Report pane opens


def plan_launch(paths: list[str], runs_root: str = "runs") -> Launch:
    """`workbench tui [PATH...]`: run dirs go to the Monitor (overlaid) and the Playground, a pipeline root
    to the Report pane, one data path to the Data pane."""
    launch = Launch(runs_root=runs_root)
    data = []
    for p in paths:
        path = Path(p).expanduser()
        if is_pipeline_root(path):
            if launch.report:
                raise WorkbenchError(f"give one pipeline root to report on, got {launch.report} and {p}")
            launch.report = str(path)
        elif is_run_dir(path):
            launch.runs.append(str(path))
        elif path.exists():
            data.append(str(path))
        elif path.suffix.lower() not in DATA_SUFFIXES and _existing_ancestor(path).is_dir():
            launch.runs.append(str(path))  # a run about to start there: the Monitor waits for it
        else:
            raise WorkbenchError(f"no such file or folder: {p}")
    if len(data) > 1:
        raise WorkbenchError(f"give one data file or folder to browse, got {len(data)}: {', '.join(data)}")
    launch.data = data[0] if data else (str(SAMPLE_CHAT) if SAMPLE_CHAT.is_file() else None)
    launch.checkpoint = launch.runs[-1] if launch.runs else None
    launch.pane = "report" if launch.report else "monitor" if launch.runs else "data"
    return launch


class WorkbenchApp(App):
    # Absolute: Textual resolves relative CSS paths against the module of the class, which breaks subclasses.
    CSS_PATH = [HERE / "app.tcss", *(HERE / "panes" / f"{name}.tcss" for name in PANES)]
    TITLE = M.TITLE
    SUB_TITLE = M.SUB_TITLE
    BINDINGS = [
        Binding("1", "pane('data')", "Data", group=TABS),
        Binding("2", "pane('train')", "Train", group=TABS),
        Binding("3", "pane('monitor')", "Monitor", group=TABS),
        Binding("4", "pane('runs')", "Runs", group=TABS),
        Binding("5", "pane('playground')", "Play", group=TABS),
        Binding("6", "pane('report')", "Report", group=TABS),
        Binding("ctrl+q", "quit", "Quit", priority=True),
        # Pause and Stop the Train pane's run from any pane (the Monitor, where one watches it).
        Binding("f6", "train('pause')", "Pause run", show=False),
        Binding("f7", "train('stop')", "Stop run", show=False),
        Binding("f2", "toggle_dark", "Theme", show=False),  # in the palette; the footer's room is the panes''
    ]

    def __init__(self, launch: Launch | None = None, theme: str | None = None):
        super().__init__()
        self.launch = launch or plan_launch([])
        if theme:
            if theme not in self.available_themes:
                raise WorkbenchError(f"unknown theme {theme!r}; one of {', '.join(sorted(self.available_themes))}")
            self.theme = theme

    def compose(self) -> ComposeResult:
        from app.panes.data import DataPane
        from app.panes.monitor import MonitorPane
        from app.panes.playground import PlaygroundPane
        from app.panes.report import ReportPane
        from app.panes.runs import RunsPane
        from app.panes.train import TrainPane

        # The panes not shown first are mounted just after the first screen is drawn (Lazy): building
        # the Train pane's form alone takes seconds of CSS on a small CPU.
        first = self.launch.pane
        panes = {"data": DataPane(self.launch.data, id="data-pane"),
                 "train": TrainPane(runs_root=self.launch.runs_root, id="train-pane"),
                 "monitor": MonitorPane(self.launch.runs, id="monitor-pane"),
                 "runs": RunsPane(self.launch.runs_root, id="runs-pane"),
                 "playground": PlaygroundPane(self.launch.checkpoint, pipeline=self.launch.report, id="playground-pane"),
                 "report": ReportPane(self.launch.report, id="report-pane")}
        yield Header()
        with TabbedContent(initial=first, id="panes"):
            for name, pane in panes.items():
                with TabPane(name.title(), id=name):
                    yield pane if name == first else Lazy(pane)
        yield Footer()

    # ------------------------------------------------------------------ actions
    def action_pane(self, name: str) -> None:
        self.query_one("#panes", TabbedContent).active = name

    async def action_train(self, what: str) -> None:
        """f6 / f7 from any pane: pause or stop the Train pane's current run."""
        await self.query_one("#train-pane").run_action(what)

    def action_toggle_dark(self) -> None:
        self.theme = "textual-light" if self.current_theme.dark else "textual-dark"

    def get_system_commands(self, screen):
        yield from super().get_system_commands(screen)
        for name in PANES:
            yield SystemCommand(f"Show the {name.title()} pane", f"Switch to the {name} tab",
                                lambda n=name: self.action_pane(n))
        yield SystemCommand("Toggle dark / light", "Switch between the dark and the light theme", self.action_toggle_dark)
        # Each pane lists its own actions (a pane defines `commands()` -> [(title, help, callback)]).
        for pane in self.query(".pane"):
            for title, help_text, callback in getattr(pane, "commands", lambda: [])():
                yield SystemCommand(title, help_text, callback)

    @on(TabbedContent.TabActivated)
    def _focus_pane(self, event: TabbedContent.TabActivated) -> None:
        """The shown pane gets the focus (its keys work at once); a pane names its widget with focus_default()."""
        if event.pane.id in PANES:
            self._focus_active()

    def on_mount(self) -> None:
        self.call_after_refresh(self._focus_active)

    def _focus_active(self) -> None:
        # Checked when it runs, on the tab shown then: focusing a widget of another tab would switch to it.
        pane = self.query_one(f"#{self.query_one('#panes', TabbedContent).active}-pane")
        focused = self.screen.focused
        if focused is not None and pane in focused.ancestors_with_self:
            return  # the user is already working in this pane
        target = getattr(pane, "focus_default", lambda: None)()
        if target is not None and target.focusable:
            self.screen.set_focus(target)

    # ------------------------------------------------------------------ routing between panes
    @on(M.OpenData)
    def _open_data(self, message: M.OpenData) -> None:
        self.query_one("#data-pane").open(message.path)
        self.action_pane("data")

    @on(M.OpenRuns)
    def _open_runs(self, message: M.OpenRuns) -> None:
        self.query_one("#monitor-pane").show_runs(message.run_dirs, add=message.add)
        self.action_pane("monitor")

    @on(M.RunStarted)
    def _run_started(self, message: M.RunStarted) -> None:
        self.query_one("#monitor-pane").show_runs([message.run_dir], add=False)
        self.query_one("#runs-pane").refresh_runs()
        self.action_pane("monitor")

    @on(M.RunEvents)
    def _run_events(self, message: M.RunEvents) -> None:
        self.query_one("#monitor-pane").add_records(message.run_dir, message.records)

    @on(M.RunEnded)
    def _run_ended(self, message: M.RunEnded) -> None:
        self.query_one("#monitor-pane").run_ended(message.run_dir, message.status, message.error)
        self.query_one("#runs-pane").refresh_runs()
        severity = "information" if message.status in ("finished", "stopped") else "error"
        self.notify(f"{message.run_dir}: {message.status}" + (f" — {message.error}" if message.error else ""),
                    severity=severity, timeout=8)

    @on(M.OpenPlayground)
    def _open_playground(self, message: M.OpenPlayground) -> None:
        self.action_pane("playground")
        self.query_one("#playground-pane").open(message.run_dir, reward=message.reward)

    @on(M.ResumeRun)
    def _resume(self, message: M.ResumeRun) -> None:
        self.query_one("#train-pane").resume(message.run_dir, detached=message.detached)

    # ------------------------------------------------------------------ quitting during a run
    async def action_quit(self) -> None:
        train = self.query_one("#train-pane")
        running = train.running_jobs()
        if not running:
            self.exit()
            return
        from app.widgets.confirm import Confirm

        def answer(yes: bool | None) -> None:
            if yes:
                self.notify(M.STOPPING.format(run_dir=", ".join(running)), timeout=30)
                self.run_worker(self._stop_then_exit, thread=True, exclusive=True, group="quit")

        self.push_screen(Confirm(M.QUIT_RUNNING.format(runs=", ".join(running))), answer)

    def _stop_then_exit(self) -> None:
        self.query_one("#train-pane").stop_all(wait=True)
        self.call_from_thread(self.exit)
