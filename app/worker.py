"""The bridge from the TUI to the headless engine: a run in a Textual thread worker, or a detached process.

    job = TrainJob(pane, cfg, "runs/sft-1").start()      # engine.train in a thread worker
    job.pause(); job.resume(); job.stop()                # engine.Control: between steps; stop saves
    await job.wait_async()                               # from the App's loop (job.wait() from a thread)
    job = TrainJob(pane, None, "runs/sft-1", resume=True).start()      # continue a stopped run

    run = DetachedRun.launch(["train", "sft", ...], "runs/sft-2", "runs")   # `workbench train` child
    run.poll()                                           # None while it trains, else its exit code

The engine calls `_on_event` after every step from the worker thread. It only appends the record
to a buffer; at most every FLUSH_S seconds the buffer goes to the UI as one `RunEvents` message
(post_message is thread-safe and does not wait), and `flush()` (the pane's timer, the end of the
run) sends what is left. So training never waits for the screen. The worker posts `RunStarted`
once the engine has set the run up (its "start" event: the run dir exists, the data is loaded) and
always ends with `RunEnded(status, error)`: an exception becomes status failed (a WorkbenchError,
the user's to fix) or crashed (a bug: its traceback goes to the run's train.log); never a crash
of the app.

A detached run is `python -m workbench.cli train ...` in a new session (start_new_session), so it
survives the TUI; its output goes to RUNS_ROOT/.detached/NAME-TIME.log (outside the run dir,
which the engine wants empty); the Monitor follows its metrics.jsonl like any other run.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

from app import messages as M
from workbench.errors import WorkbenchError

FLUSH_S = 0.2  # the newest records reach the UI at most this often (5 redraws a second)
ROOT = Path(__file__).resolve().parent.parent


class TrainJob:
    """One run inside the TUI. `node` is the widget its messages are posted to (they bubble to the App)."""

    def __init__(self, node, cfg, run_dir: str | os.PathLike, *, resume: bool = False,
                 overrides: list[str] | None = None, flush_s: float = FLUSH_S):
        from workbench.train.engine import Control
        from workbench.train.schema import run_stage

        self.node, self.cfg, self.run_dir = node, cfg, str(run_dir)
        self.resume_run, self.overrides, self.flush_s = resume, overrides, flush_s
        self.stage = cfg.stage if cfg is not None else run_stage(run_dir)
        self.control = Control()
        self.max_steps = cfg.max_steps if cfg is not None else 0
        self.last: dict = {}  # the newest train record (the pane's status line reads it)
        self.posted = 0  # records sent to the UI
        self.started = False  # the engine's "start" event came (RunStarted was posted)
        self.status: str | None = None
        self.error: str | None = None
        self.result: dict | None = None
        self.done = threading.Event()
        self.worker = None
        self._buffer: list[dict] = []
        self._lock = threading.Lock()
        self._last_post = 0.0

    # ------------------------------------------------------------------ control (any thread)
    def start(self) -> "TrainJob":
        self.worker = self.node.run_worker(self._run, name=f"train {self.run_dir}", group="train",
                                           thread=True, exit_on_error=False)
        return self

    def pause(self) -> None:
        self.control.pause()

    def resume(self) -> None:
        self.control.resume()

    def stop(self) -> None:
        self.control.stop()

    @property
    def paused(self) -> bool:
        return self.control.paused

    @property
    def running(self) -> bool:
        return not self.done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block (another thread, not the App's) until the run has ended; False on timeout."""
        return self.done.wait(timeout)

    async def wait_async(self, poll: float = 0.05) -> None:
        """Wait in the App's event loop (a Pilot test, the benchmark) until the run has ended."""
        while not self.done.is_set():
            await asyncio.sleep(poll)

    # ------------------------------------------------------------------ the worker thread
    def _on_event(self, record: dict) -> None:
        """The engine's callback: buffer the record; post the buffer when FLUSH_S has passed."""
        kind = record.get("event")
        if kind == "start":
            self.max_steps = int(record.get("max_steps", self.max_steps))
            if not self.started:
                self.started = True
                self.node.post_message(M.RunStarted(self.run_dir, self.stage))
        elif kind == "train":
            self.last = record
        with self._lock:
            self._buffer.append(record)
        # Setup's log lines wait for "start" so that RunStarted (the Monitor opens the run) comes first.
        if self.started and time.monotonic() - self._last_post >= self.flush_s:
            self.flush()

    def flush(self, force: bool = True) -> None:
        """Send the buffered records as one RunEvents (from any thread; records stay in order).
        `force=False` (the pane's timer): only records older than FLUSH_S, e.g. those of a paused run."""
        with self._lock:  # posting inside the lock keeps two flushes (worker, timer) in order
            if not self._buffer or (not force and time.monotonic() - self._last_post < self.flush_s):
                return
            self._last_post = time.monotonic()
            records, self._buffer = self._buffer, []
            self.posted += len(records)
            self.node.post_message(M.RunEvents(self.run_dir, records))

    def _run(self) -> None:
        from workbench.train.engine import train

        try:
            self.result = train(self.cfg, self.run_dir, resume=self.resume_run, control=self.control,
                                callbacks=[self._on_event], overrides=self.overrides)
            self.status = self.result["status"]
        except WorkbenchError as e:
            self.status, self.error = "failed", str(e)
        except Exception as e:  # a bug: the message to the user, the traceback to the run's log
            self.status, self.error = "crashed", f"{type(e).__name__}: {e}"
            log = self._log_traceback()
            if log:
                self.error = M.TRAIN_BUG_LOGGED.format(error=self.error, log=log)
        finally:
            self.flush()
            self.node.post_message(M.RunEnded(self.run_dir, self.status or "crashed", self.error))
            self.done.set()

    def _log_traceback(self) -> str | None:
        path = Path(self.run_dir) / "train.log"
        if not path.parent.is_dir():
            return None
        try:
            with open(path, "a", encoding="utf-8") as f:  # train.log is append-only, like the engine's
                f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} traceback of the crash:\n{traceback.format_exc()}")
        except OSError:
            return None
        return str(path)


class DetachedRun:
    """A `workbench train` child process that outlives the TUI."""

    def __init__(self, proc: subprocess.Popen, run_dir: str, log: Path, args: list[str]):
        self.proc, self.run_dir, self.log, self.args = proc, run_dir, log, args
        self.started_at = time.monotonic()
        self.code: int | None = None
        self.reported = False  # its end was posted as RunEnded

    @classmethod
    def launch(cls, args: list[str], run_dir: str | os.PathLike, runs_root: str | os.PathLike) -> "DetachedRun":
        """Start `python -m workbench.cli ARGS` (ARGS = `train STAGE ... --out RUN`, or `--resume RUN`)."""
        run_dir = str(run_dir)
        log = Path(runs_root) / ".detached" / f"{Path(run_dir).name}-{time.strftime('%Y%m%d-%H%M%S')}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        # The child imports this checkout's workbench even where the package is not installed.
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
        with open(log, "ab") as out:
            out.write(f"$ workbench {' '.join(args)}\n".encode())
            out.flush()
            proc = subprocess.Popen([sys.executable, "-m", "workbench.cli", *args], stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        return cls(proc, run_dir, log, args)

    def poll(self) -> int | None:
        """The exit code once the child has ended (it is reaped), else None. Never blocks."""
        if self.code is None:
            self.code = self.proc.poll()
        return self.code

    def stop(self) -> None:
        """Ctrl-C for the child: it stops after the step and saves a checkpoint, as in a terminal."""
        if self.poll() is None:
            try:
                self.proc.send_signal(signal.SIGINT)
            except ProcessLookupError:
                pass

    def tail(self, lines: int = 8) -> str:
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.rstrip().splitlines()[-lines:])

    def ended(self) -> tuple[str, str | None]:
        """(status, error) of an ended child: its lineage's status, or failed with the end of its log."""
        import json

        if self.code == 0:
            try:
                status = json.loads((Path(self.run_dir) / "lineage.json").read_text(encoding="utf-8"))["status"]
            except (OSError, ValueError, KeyError):
                status = "finished"
            return status, None
        return "failed", M.TRAIN_DETACHED_FAILED.format(code=self.code, log=self.log, tail=self.tail())
