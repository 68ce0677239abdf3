"""Train pane: set up a stage with a form generated from its config, see the command, start it here
or detached, pause, resume, stop.

    Stage [sft]  settings from configs/sft/tiny.yaml        [Load] [Save]
    ▼ Where from and to
      init_from   [runs/tiny/pretrain      ]  the model to fine-tune: ...
                  [pick a run under runs  ▼]
      ...
    $ workbench train sft --config configs/sft/tiny.yaml --from runs/pretrain max_steps=50
    [Start] [Pause] [Stop] [Copy]  detached [ ]  procs [1]  out [runs/sft-DATE-TIME (new)]
    ● runs/sft-20250101-120000  step 12/200  loss 2.31  8,000 tok/s

Every decision is the schema's (workbench/train/schema.py): fields, parsing, validation, the
command line, the parents on offer. A run started here is a TrainJob (app/worker.py) in a thread
worker; a detached one a `workbench train` child process, and with procs N > 1 a `workbench train
... --nproc N` child (torchrun's launcher and its N ranks; Stop is its Ctrl-C, passed on to every
rank). The App routes their messages to the Monitor and the Runs pane.
"""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.css.query import NoMatches
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Input, Label, Select, Static, Switch

from app import messages as M
from app.widgets.config_form import ConfigForm
from app.widgets.path_input import AskPath, PathSuggester
from app.worker import DetachedRun, TrainJob
from workbench.errors import WorkbenchError
from workbench.train import schema
from workbench.train.config import STAGES

TICK_S = 0.25  # status line, stragglers of the event buffers, detached children
REFRESH_S = 0.05  # a change is checked (validation, command line) this long after the last burst
WARM_S = 1.0


def _import_engine() -> None:
    import workbench.train.engine  # noqa: F401


class TrainPane(Vertical):
    BINDINGS = [
        Binding("f5", "start", M.TRAIN_START),
        Binding("f6", "pause", M.TRAIN_PAUSE),
        Binding("f7", "stop", M.TRAIN_STOP),
        Binding("f8", "copy", M.TRAIN_COPY),
        Binding("ctrl+o", "load", M.TRAIN_LOAD),
        Binding("ctrl+s", "save", M.TRAIN_SAVE),
    ]

    def __init__(self, runs_root: str = "runs", stage: str = "sft", **kw):
        super().__init__(classes="pane", **kw)
        self.runs_root = runs_root
        self.stage = stage
        self.config = schema.default_config(stage)  # the file the form was filled from (--config)
        self.base = self._file_values(self.config)
        self.jobs: list[TrainJob] = []  # in-TUI runs, newest last
        self.detached: list[DetachedRun] = []
        self.current: TrainJob | DetachedRun | None = None  # what Pause / Stop act on
        self._ended: list[TrainJob] = []  # jobs whose end the pane has taken into account
        self._refresh_pending = False
        self._status_text = M.TRAIN_IDLE
        self._detached_choice = False  # the detached switch as the user left it (procs > 1 locks it on)

    def _file_values(self, path: str) -> dict:
        try:
            return schema.file_values(self.stage, path)
        except WorkbenchError as e:  # a broken configs/ file: start from the defaults, say why
            self.call_later(self.app.notify, str(e), severity="error", markup=False)
            return schema.defaults(self.stage)

    # ------------------------------------------------------------------ layout
    def compose(self) -> ComposeResult:
        with Horizontal(id="train-head"):
            yield Label(M.TRAIN_STAGE, classes="train-label")
            yield Select([(s, s) for s in STAGES], value=self.stage, allow_blank=False, compact=True, id="train-stage")
            yield Static(id="train-config", markup=False)
            yield Button(M.TRAIN_LOAD, id="train-load", compact=True)
            yield Button(M.TRAIN_SAVE, id="train-save", compact=True)
        yield ConfigForm(self.stage, self.base, self._picks(scan=False), id="train-form")
        yield Static(id="train-command", markup=False)
        with Horizontal(id="train-bar"):
            yield Button(M.TRAIN_START, id="train-start", variant="success", compact=True)
            yield Button(M.TRAIN_PAUSE, id="train-pause", compact=True, disabled=True)
            yield Button(M.TRAIN_STOP, id="train-stop", variant="error", compact=True, disabled=True)
            yield Button(M.TRAIN_COPY, id="train-copy", compact=True)
            yield Label(M.TRAIN_DETACHED, classes="train-label")
            yield Switch(False, animate=False, id="train-detached", tooltip=M.TRAIN_DETACHED_HELP)
            yield Label(M.TRAIN_PROCS, classes="train-label")
            yield Input("1", type="integer", compact=True, id="train-nproc", tooltip=M.TRAIN_PROCS_HELP,
                        valid_empty=True)
            yield Label(M.TRAIN_OUT, classes="train-label")
            yield Input(placeholder=self._out_placeholder(), compact=True, id="train-out", suggester=PathSuggester())
        yield Static(M.TRAIN_IDLE, id="train-status", markup=False)

    def on_mount(self) -> None:
        self.set_interval(TICK_S, self._tick)
        try:
            self._refresh()
        except NoMatches:  # mounted lazily as the app quits: its children are already gone
            return
        self.refresh_parents()
        # torch takes seconds to import: load it in the background once the screen is up, so that
        # Start does not freeze the UI while the first run imports it.
        self.set_timer(WARM_S, lambda: self.run_worker(_import_engine, thread=True, group="warm"))

    def focus_default(self):
        """What the App focuses when this tab is shown (so that f5 Start ... work at once)."""
        return self.query_one("#train-stage")

    def on_unmount(self) -> None:
        self.stop_all(wait=False)  # the App's thread pool waits for its workers at exit

    def _picks(self, scan: bool = True) -> dict:
        """setting -> (runs on offer, prompt). `scan=False`: none yet (the scan imports torch, which takes
        seconds: it runs in a worker once the pane is up, see refresh_parents)."""
        out = {}
        for setting, by_stage in schema.PARENT_STAGES.items():
            if self.stage in by_stage:
                options = schema.parent_runs(self.runs_root, self.stage, setting) if scan else []
                prompt = (M.TRAIN_PICK_PARENT.format(root=self.runs_root) if options else
                          M.TRAIN_NO_PARENTS.format(stages="/".join(by_stage[self.stage]), root=self.runs_root))
                out[setting] = (options, prompt)
        return out

    def _out_placeholder(self) -> str:
        return M.TRAIN_OUT_AUTO.format(root=self.runs_root, stage=self.stage)

    @property
    def form(self) -> ConfigForm:
        return self.query_one("#train-form", ConfigForm)

    # ------------------------------------------------------------------ the form and the command
    def _init_from(self, values: dict) -> str | None:
        try:
            return schema.parse_value(self.stage, "init_from", values.get("init_from"))
        except WorkbenchError:
            return values.get("init_from")

    def _out(self) -> str | None:
        return self.query_one("#train-out", Input).value.strip() or None

    def nproc(self) -> int:
        """The processes box (raises WorkbenchError for a value the CLI would refuse)."""
        return schema.parse_processes(self.query_one("#train-nproc", Input).value)

    def _nproc_arg(self) -> int | str:
        """For the command line: the count, or the box's text as typed when the CLI would refuse it."""
        try:
            return self.nproc()
        except WorkbenchError:
            return self.query_one("#train-nproc", Input).value.strip()

    def command_args(self, out: str | None = None) -> list[str]:
        values = self.form.values()
        return schema.command_args(self.stage, self.config, self._init_from(values), out or self._out(), values,
                                   base=self.base, nproc=self._nproc_arg())

    def command_line(self) -> str:
        values = self.form.values()
        return schema.command_line(self.stage, self.config, self._init_from(values), self._out(), values,
                                   base=self.base, nproc=self._nproc_arg())

    def _refresh_soon(self) -> None:
        """Coalesce a burst of changes (a loaded file, a new stage: one per field) into one refresh."""
        if not self._refresh_pending:
            self._refresh_pending = True
            self.set_timer(REFRESH_S, self._refresh)

    def _refresh(self) -> None:
        """After any change: the messages beside the fields, the command, the file label."""
        self._refresh_pending = False
        values = self.form.values()
        self.form.show_errors(schema.validate(self.stage, values))
        self.query_one("#train-command", Static).update(f"$ {self.command_line()}")
        self._show_nproc()
        edited = schema.differs(self.stage, values, self.base)
        self.query_one("#train-config", Static).update(
            M.TRAIN_FROM_FILE.format(path=self.config) + (M.TRAIN_EDITED if edited else ""))

    def _show_nproc(self) -> None:
        """More than one process runs detached (torchrun): the switch is on and locked; a value the
        CLI would refuse marks the box (Start says why)."""
        box, switch = self.query_one("#train-nproc", Input), self.query_one("#train-detached", Switch)
        try:
            n, error = self.nproc(), None
        except WorkbenchError as e:
            n, error = 1, e
        box.set_class(error is not None, "-bad")
        box.tooltip = f"{error}\n\n{M.TRAIN_PROCS_HELP}" if error else M.TRAIN_PROCS_HELP
        if n > 1 and not switch.disabled:  # lock it on; the user's own choice comes back at 1
            self._detached_choice = switch.value
            switch.value, switch.disabled = True, True
        elif n == 1 and switch.disabled:
            switch.value, switch.disabled = self._detached_choice, False

    @on(ConfigForm.Changed)
    @on(Input.Changed, "#train-out")
    @on(Input.Changed, "#train-nproc")
    def _changed(self, event) -> None:
        event.stop()
        self._refresh_soon()

    @on(Select.Changed, "#train-stage")
    async def _stage_changed(self, event: Select.Changed) -> None:
        event.stop()
        if event.value == self.stage or event.value is Select.NULL:
            return
        self.stage = str(event.value)
        self.config = schema.default_config(self.stage)
        self.base = self._file_values(self.config)
        self.query_one("#train-out", Input).placeholder = self._out_placeholder()
        await self.form.set_stage(self.stage, self.base, self._picks(scan=False))
        self.refresh_parents()

    def refresh_parents(self) -> None:
        """The runs on offer as parents, scanned in a worker (at start, on a stage change, after a run
        ends: it may be the next stage's parent); a newer scan replaces an older one."""
        stage = self.stage

        def scan() -> None:
            picks = self._picks()
            self.app.call_from_thread(apply, picks)

        def apply(picks: dict) -> None:
            if stage == self.stage:  # the user has not switched stage meanwhile
                for setting, (options, prompt) in picks.items():
                    self.form.set_picks(setting, options, prompt)

        self.run_worker(scan, thread=True, exclusive=True, group="parents")

    # ------------------------------------------------------------------ actions
    def commands(self) -> list[tuple[str, str, object]]:
        return [(*M.TRAIN_COMMANDS[name], getattr(self, f"action_{name}"))
                for name in ("start", "pause", "stop", "copy", "load", "save", "detached")]

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        name = (event.button.id or "").removeprefix("train-")
        getattr(self, f"action_{name}")()

    def action_detached(self) -> None:
        switch = self.query_one("#train-detached", Switch)
        if switch.disabled:
            self.app.notify(M.TRAIN_PROCS_DETACHED.format(n=self._nproc_arg()), severity="warning")
            return
        switch.value = not switch.value

    def action_start(self) -> None:
        values = self.form.values()
        errors = schema.validate(self.stage, values)
        self.form.show_errors(errors)
        if errors:
            if "" in errors:
                self.app.notify(M.TRAIN_GENERAL_ERROR.format(error=errors[""]), severity="error")
            else:
                self.form.reveal(next(iter(errors)))
                self.app.notify(M.TRAIN_INVALID.format(names=", ".join(errors)), severity="error")
            return
        try:
            nproc = self.nproc()
            cfg = schema.build_config(self.stage, values)
            from workbench.cli_train import new_run_dir

            out = self._out() or str(new_run_dir(self.stage, self.runs_root))
            if nproc > 1 or self.query_one("#train-detached", Switch).value:
                self._launch(self.command_args(out), out, nproc)
            else:
                self._start_job(TrainJob(self, cfg, out))
        except (WorkbenchError, OSError) as e:
            self.app.notify(M.TRAIN_GENERAL_ERROR.format(error=e), severity="error")

    def _start_job(self, job: TrainJob) -> TrainJob:
        if any(j.run_dir == job.run_dir and j.running for j in self.jobs):
            raise WorkbenchError(M.TRAIN_ALREADY.format(run_dir=job.run_dir))
        self.jobs.append(job)
        self.current = job
        job.start()
        self._tick()
        return job

    def _launch(self, args: list[str], run_dir: str, nproc: int = 1) -> DetachedRun:
        run = DetachedRun.launch(args, run_dir, self.runs_root)
        self.detached.append(run)
        self.current = run
        self.post_message(M.RunStarted(run_dir, args[1], detached=True))
        started = M.TRAIN_DETACHED_RANKS if nproc > 1 else M.TRAIN_DETACHED_STARTED
        self.app.notify(started.format(run_dir=run_dir, pid=run.proc.pid, log=run.log, n=nproc))
        self._tick()
        return run

    def start_run(self, cfg, run_dir: str) -> TrainJob:
        """Start `cfg` (a TrainConfig) into `run_dir` in a thread worker, as Start does (bench, tests)."""
        return self._start_job(TrainJob(self, cfg, run_dir))

    def resume(self, run_dir: str, detached: bool = False) -> None:
        """Continue a stopped or crashed run where its last checkpoint left it (Runs pane: resume)."""
        try:
            if detached:
                self._launch(schema.resume_args(run_dir), run_dir)
            else:
                self._start_job(TrainJob(self, None, run_dir, resume=True))
        except (WorkbenchError, OSError) as e:
            self.app.notify(str(e), severity="error")

    def action_pause(self) -> None:
        job = self.current
        if not isinstance(job, TrainJob) or not job.running:
            self.app.notify(M.TRAIN_NOTHING, severity="warning")
            return
        job.resume() if job.paused else job.pause()
        self._tick()

    def action_stop(self) -> None:
        job = self.current
        if job is None or (job.poll() is not None if isinstance(job, DetachedRun) else not job.running):
            self.app.notify(M.TRAIN_NOTHING, severity="warning")
            return
        job.stop()
        self._tick()

    def action_copy(self) -> None:
        command = self.command_line()
        self.app.copy_to_clipboard(command)
        self.app.notify(M.TRAIN_COPIED.format(command=command), markup=False)

    def action_load(self) -> None:
        self.app.push_screen(AskPath(M.TRAIN_LOAD_TITLE, self.config, M.TRAIN_LOAD), self.load_yaml)

    def action_save(self) -> None:
        self.app.push_screen(AskPath(M.TRAIN_SAVE_TITLE, self.config, M.TRAIN_SAVE), self.save_yaml)

    def load_yaml(self, path: str | None) -> None:
        if not path:
            return
        try:
            values = schema.file_values(self.stage, path)
        except WorkbenchError as e:
            self.app.notify(str(e), severity="error", markup=False)
            return
        self.config, self.base = path, values
        self.form.set_values(values)
        self.app.notify(M.TRAIN_LOADED.format(path=path), markup=False)

    def save_yaml(self, path: str | None) -> None:
        if not path:
            return
        from workbench.io import atomic_write_text

        try:
            atomic_write_text(path, schema.to_yaml(self.stage, self.form.values()))
        except (WorkbenchError, OSError) as e:
            self.app.notify(str(e), severity="error", markup=False)
            return
        self.config, self.base = path, schema.file_values(self.stage, path)
        self._refresh()
        self.app.notify(M.TRAIN_SAVED.format(path=path), markup=False)

    # ------------------------------------------------------------------ runs
    def running_jobs(self) -> list[str]:
        return [j.run_dir for j in self.jobs if j.running]

    def stop_all(self, wait: bool = True) -> None:
        """Ask every in-TUI run to stop (each saves a checkpoint); with `wait`, block until they have
        ended (call it from a thread: the runs post their last messages to the App's loop)."""
        live = [j for j in self.jobs if j.running]
        for job in live:
            job.stop()
        for job in live if wait else ():
            job.wait()

    def _tick(self) -> None:
        ended = False
        for job in self.jobs:
            if job.running and job.started:
                job.flush(force=False)  # the last records before a pause still reach the Monitor
            elif job not in self._ended:
                self._ended.append(job)
                ended = True
        for run in self.detached:
            if not run.reported and run.poll() is not None:
                run.reported = True
                self.post_message(M.RunEnded(run.run_dir, *run.ended()))
                ended = True
        if ended:  # a run that just finished may be the next stage's parent
            self.refresh_parents()
        self._show_status()

    def _show_status(self) -> None:
        job = self.current
        live = [j for j in self.jobs if j.running] + [r for r in self.detached if r.code is None]
        pause, stop = self.query_one("#train-pause", Button), self.query_one("#train-stop", Button)
        if job is None:
            text = M.TRAIN_IDLE
        elif isinstance(job, DetachedRun):
            text = (M.TRAIN_DETACHED_STARTED.format(run_dir=job.run_dir, pid=job.proc.pid, log=job.log)
                    if job.code is None else M.TRAIN_ENDED.format(status=job.ended()[0], run_dir=job.run_dir))
        elif not job.running:
            text = M.TRAIN_ENDED.format(status=job.status, run_dir=job.run_dir) + (f" — {job.error}" if job.error else "")
        elif job.control.stopped:
            text = M.TRAIN_STOPPING.format(run_dir=job.run_dir)
        elif job.paused:
            text = M.TRAIN_PAUSED.format(run_dir=job.run_dir, step=job.last.get("step", 0))
        elif job.last:
            loss = job.last.get("loss")
            text = M.TRAIN_RUNNING.format(run_dir=job.run_dir, step=job.last["step"], max_steps=job.max_steps,
                                          loss="nan" if loss is None else f"{loss:.4f}",
                                          speed=job.last.get("tokens_per_s") or 0.0)
        else:
            text = M.TRAIN_STARTING.format(run_dir=job.run_dir)
        others = len(live) - (job in live)
        text += M.TRAIN_MORE.format(n=others) if others > 0 else ""
        if text != self._status_text:  # a fixed one-line box: no layout pass (it runs while training)
            self._status_text = text
            self.query_one("#train-status", Static).update(text, layout=False)
        in_tui = isinstance(job, TrainJob) and job.running
        label = M.TRAIN_RESUME if in_tui and job.paused else M.TRAIN_PAUSE
        if (pause.disabled, str(pause.label), stop.disabled) != (not in_tui, label, job is None or job not in live):
            pause.disabled, pause.label = not in_tui, label
            stop.disabled = job is None or job not in live
