"""The Train pane against the real App: the form, the command, Start / Pause / Resume / Stop, detached runs, quitting."""

import json
import time
from pathlib import Path

import pytest
from textual.widgets import Input, Select, Static, Switch

from app.app import WorkbenchApp, Launch
from app.panes.train import TrainPane
from app.widgets.config_form import ConfigForm, FieldRow
from tests.conftest import ROOT


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A fresh working folder that sees the repository's configs/ and sample_data/ (as the README
    runs from the repository root) with an empty runs/: the same screen on every machine."""
    for name in ("configs", "sample_data"):
        (tmp_path / name).symlink_to(ROOT / name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def monitor_spy(monkeypatch):
    """What the App hands the Monitor: add_records calls (run_dir, records) and run_ended calls."""
    from app.panes import monitor

    calls = {"records": [], "ended": []}
    add, ended = monitor.MonitorPane.add_records, monitor.MonitorPane.run_ended

    def add_records(self, run_dir, records):
        calls["records"].append((run_dir, list(records)))
        return add(self, run_dir, records)

    def run_ended(self, run_dir, status, error=None):
        calls["ended"].append((run_dir, status, error))
        return ended(self, run_dir, status, error)

    monkeypatch.setattr(monitor.MonitorPane, "add_records", add_records)
    monkeypatch.setattr(monitor.MonitorPane, "run_ended", run_ended)
    return calls


def make_app():
    return WorkbenchApp(Launch(data=None, pane="train", runs_root="runs"))


def pane(app) -> TrainPane:
    return app.query_one("#train-pane", TrainPane)


def fill(app, **values):
    """Set form entries as a user would leave them (text for boxes, bools for switches)."""
    form = app.query_one(ConfigForm)
    for name, value in values.items():
        form.query_one(f"#cf-{name}").value = value


def help_text(app, name) -> str:
    return str(app.query_one(f"#row-{name}", FieldRow).query_one(".field-help", Static).render())


def tiny_sft(app, parent, **more):
    fill(app, **{"init_from": str(parent), "max_len": "192", "batch_size": "4", "eval_every": "0", "save_every": "0",
                 "eval_batches": "1", "tensorboard": False, **more})


async def until(pilot, condition, timeout=30.0, what="condition"):
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.05)


async def settle(pilot):
    """Wait until the pane has taken the last change into account (it coalesces bursts of changes)."""
    await pilot.pause()
    await until(pilot, lambda: not pane(pilot.app)._refresh_pending, timeout=5, what="the refresh")
    await pilot.pause()


async def back_to_train(pilot):
    pilot.app.action_pane("train")
    await pilot.pause()
    pilot.app.query_one("#train-start").focus()
    await pilot.pause()


def train_steps(calls, run_dir):
    return [r["step"] for d, recs in calls["records"] if d == run_dir for r in recs if r["event"] == "train"]


async def test_start_pause_resume_stop_from_the_form_then_resume_the_run(workdir, pretrained, monitor_spy):
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        train = pane(app)
        tiny_sft(app, pretrained)
        # max_steps typed into its box, the run dir into "out", as a user does
        app.query_one("#cf-max_steps", Input).focus()
        app.query_one("#cf-max_steps", Input).value = ""
        await pilot.press(*"5000")
        app.query_one("#train-out", Input).focus()
        await pilot.press(*"runs/sft-ui")
        await settle(pilot)
        assert "max_steps=5000" in str(app.query_one("#train-command", Static).render())
        await pilot.press("f5")
        await until(pilot, lambda: len(train_steps(monitor_spy, "runs/sft-ui")) >= 3, what="steps in the Monitor")
        job = train.current
        assert train.running_jobs() == ["runs/sft-ui"] and job.started
        first = monitor_spy["records"][0][1]  # setup's log lines, then the start, after RunStarted
        assert [r["event"] for r in first][:2] == ["log", "start"]
        assert next(r for r in first if r["event"] == "start")["max_steps"] == 5000
        await until(pilot, lambda: job.last.get("step", 0) >= 4, what="4 steps")
        assert app.query_one("#panes").active == "monitor"  # the App shows the run; back to Train:
        await back_to_train(pilot)

        await pilot.press("f6")  # pause: the step in progress ends, then nothing moves
        await pilot.pause(0.4)
        paused_at = job.last["step"]
        await pilot.pause(0.6)
        assert job.last["step"] == paused_at and job.paused
        assert "paused at step" in str(app.query_one("#train-status", Static).render())
        assert str(app.query_one("#train-pause").label) == "Resume"

        await pilot.press("f6")  # resume
        await until(pilot, lambda: job.last["step"] > paused_at + 2, what="steps after resume")
        await pilot.press("f7")  # stop: a checkpoint is saved
        await job.wait_async()
        await pilot.pause(0.3)
        assert job.status == "stopped" and job.error is None
        stopped_at = job.result["step"]
        run_dir = workdir / "runs" / "sft-ui"
        assert (run_dir / "checkpoints" / "latest").read_text().strip() == f"step-{stopped_at:06d}"
        assert ("runs/sft-ui", "stopped", None) in monitor_spy["ended"]
        steps = train_steps(monitor_spy, "runs/sft-ui")
        assert steps == list(range(1, stopped_at + 1))  # every step reached the Monitor, in order, once
        assert train.running_jobs() == []

        train.resume("runs/sft-ui")  # what the Runs pane's "resume" asks
        again = train.current
        await until(pilot, lambda: again.last.get("step", 0) >= stopped_at + 2, what="resumed steps")
        starts = [r for d, recs in monitor_spy["records"] for r in recs if r["event"] == "start"]
        assert starts[-1]["step"] == stopped_at and starts[-1]["resumed_from"].endswith(f"step-{stopped_at:06d}")

        await pilot.press("ctrl+q")  # quitting while it trains asks first
        await settle(pilot)
        assert "A run is training (runs/sft-ui)" in str(app.screen.query_one("Static").render())
        await pilot.press("y")  # then stops it (a checkpoint) before the App exits
        await until(pilot, lambda: again.done.is_set(), what="the stop on quit")
        await pilot.pause(0.3)
    assert again.status == "stopped" and again.result["step"] > stopped_at
    assert (run_dir / "checkpoints" / "latest").read_text().strip() == f"step-{again.result['step']:06d}"


async def test_invalid_fields_show_their_message_and_do_not_start(workdir, pretrained):
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        train = pane(app)
        assert "init_from: runs/tiny/pretrain: no such checkpoint" in help_text(app, "init_from")  # the tiny config's parent
        tiny_sft(app, pretrained, lr="-1", batch_size="0")
        await settle(pilot)
        assert help_text(app, "lr") == "✗ lr must be a positive number, got -1.0"
        assert help_text(app, "batch_size") == "✗ batch_size must be at least 1, got 0"
        assert help_text(app, "init_from").startswith("the model to fine-tune")  # fixed: its help is back
        optimisation = next(c for c in app.query(".field-group") if str(c.title).startswith("Optimisation"))
        assert "to fix" in str(optimisation.title)  # the collapsed group says so
        await pilot.press("f5")
        await settle(pilot)
        assert train.jobs == [] and not (workdir / "runs").exists()
        assert any("Not started: fix lr, batch_size" in n.message for n in app._notifications)
        assert optimisation.collapsed is False  # opened to show the refused value
        # the command follows every change
        fill(app, lr="0.0005", batch_size="4")
        await settle(pilot)
        command = str(app.query_one("#train-command", Static).render())
        assert "lr=0.0005" in command and "batch_size=4" in command and help_text(app, "lr").startswith("peak")
        await pilot.press("f8")
        assert any(n.message.startswith("Copied: workbench train sft") for n in app._notifications)
        commands = {title: callback for title, _, callback in train.commands()}  # the palette's entries
        assert set(commands) >= {"Train: start", "Train: stop", "Train: copy the command", "Train: save settings (YAML)"}
        commands["Train: toggle detached"]()
        assert app.query_one("#train-detached", Switch).value is True
        # another stage: its own fields, its own config file
        app.query_one("#train-stage").value = "dpo"
        await until(pilot, lambda: str(app.query_one("#train-command", Static).render()).startswith(
            "$ workbench train dpo --config configs/dpo/tiny.yaml"), timeout=5, what="the dpo command")
        assert app.query("#cf-beta") and not app.query("#cf-packing")
        # rm: score_logprob is a select of sum / mean whose blank (the file's null) reads "null" and is accepted
        app.query_one("#train-stage").value = "rm"
        await until(pilot, lambda: app.query("#cf-score_logprob"), timeout=5, what="the rm form")
        await settle(pilot)
        select = app.query_one("#cf-score_logprob", Select)
        assert select.value is Select.NULL and select.prompt == "null"
        assert app.query_one("#row-score_logprob", FieldRow).words == ["sum", "mean"]
        assert help_text(app, "score_logprob").startswith("sum | mean: the score adds")


async def test_save_then_load_yaml_round_trips_and_a_bad_file_is_named(workdir):
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        fill(app, lr="0.0005", packing=True, max_steps="33")
        await settle(pilot)
        await pilot.press("ctrl+s")  # asks where (with path completion)
        await settle(pilot)
        box = app.screen.query_one("#ask-path-input", Input)
        box.value = "mine.yaml"
        await pilot.press("enter")
        await settle(pilot)
        assert (workdir / "mine.yaml").read_text().startswith("# sft settings, saved from the workbench Train pane.")
        assert "settings from mine.yaml" in str(app.query_one("#train-config", Static).render())
        assert str(app.query_one("#train-command", Static).render()) == "$ workbench train sft --config mine.yaml"
        fill(app, lr="0.1", packing=False, max_steps="7")
        await settle(pilot)
        assert "(edited)" in str(app.query_one("#train-config", Static).render())
        pane(app).load_yaml("mine.yaml")
        await settle(pilot)
        assert app.query_one("#cf-lr", Input).value == "0.0005"
        assert app.query_one("#cf-max_steps", Input).value == "33"
        assert app.query_one("#cf-packing", Switch).value is True
        (workdir / "bad.yaml").write_text("lr: 3e-4\nbatch_sise: 8\n")
        pane(app).load_yaml("bad.yaml")
        await settle(pilot)
        assert any("bad.yaml: unknown setting 'batch_sise'" in n.message and "did you mean 'batch_size'" in n.message
                   for n in app._notifications)
        assert app.query_one("#cf-lr", Input).value == "0.0005"  # the form is left as it was


async def test_a_detached_run_is_a_child_process_writing_metrics(workdir, pretrained, monitor_spy):
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        train = pane(app)
        tiny_sft(app, pretrained, max_steps="12")
        app.query_one("#train-out", Input).value = "runs/sft-bg"
        app.query_one("#train-detached", Switch).value = True
        await pilot.press("f5")
        await settle(pilot)
        run = train.detached[0]
        assert run.proc.pid and train.running_jobs() == []  # not a thread of this process
        assert run.log.parent == Path("runs/.detached")
        await until(pilot, lambda: run.poll() is not None, timeout=90, what="the child to end")
        await pilot.pause(0.5)
        records = [json.loads(line) for line in (workdir / "runs/sft-bg/metrics.jsonl").read_text().splitlines()]
        assert [r["step"] for r in records if r["event"] == "train"] == list(range(1, 13))
        assert run.code == 0 and ("runs/sft-bg", "finished", None) in monitor_spy["ended"]
        assert "$ workbench train sft --config configs/sft/tiny.yaml" in run.log.read_text()
        # a child that fails: the end of its log is in the notification
        failed = train._launch(["train", "nosuchstage"], "runs/nothing-here")
        await until(pilot, lambda: failed.reported, timeout=60, what="the failing child")
        await pilot.pause(0.3)
        assert failed.code == 2
        assert any("exited with code 2" in n.message and "No such command 'nosuchstage'" in n.message
                   for n in app._notifications)


async def test_procs_start_a_detached_torchrun_job_that_stop_ends_on_every_rank(workdir, pretrained, monitor_spy):
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        train = pane(app)
        tiny_sft(app, pretrained, max_steps="100000")
        app.query_one("#train-out", Input).value = "runs/sft-2p"
        procs, switch = app.query_one("#train-nproc", Input), app.query_one("#train-detached", Switch)
        procs.value = "0"  # a count the CLI refuses: the box says so and Start does not start
        await settle(pilot)
        assert procs.has_class("-bad") and not switch.value
        await pilot.press("f5")
        await pilot.pause()
        assert train.detached == [] and any("procs must be at least 1, got 0" in n.message
                                            for n in app._notifications)
        assert str(app.query_one("#train-command", Static).render()).rstrip().endswith(" --nproc 0")  # as typed
        procs.value = "2"
        await settle(pilot)
        assert not procs.has_class("-bad") and switch.value and switch.disabled  # 2 processes run detached
        command = str(app.query_one("#train-command", Static).render())
        assert command.startswith("$ workbench train sft ") and command.rstrip().endswith(" --nproc 2"), command
        await pilot.press("f5")
        await settle(pilot)
        run = train.detached[0]
        try:
            await _two_ranks_then_stop(pilot, run, workdir, monitor_spy)
        finally:
            if run.poll() is None:  # torchrun passes SIGTERM on to its ranks
                run.proc.terminate()
                run.proc.wait(60)
        procs.value = "1"  # back to one process: the switch as the user had left it (off)
        await settle(pilot)
        assert not switch.disabled and not switch.value


async def _two_ranks_then_stop(pilot, run, workdir, monitor_spy):
    assert run.args[-2:] == ["--nproc", "2"] and pane(pilot.app).running_jobs() == []
    metrics = workdir / "runs/sft-2p/metrics.jsonl"

    def records():
        try:
            return [json.loads(line) for line in metrics.read_text().splitlines()]
        except (OSError, ValueError):
            return []

    await until(pilot, lambda: any(r["event"] == "train" for r in records()), timeout=120,
                what="the first step of 2 ranks")
    start = next(r for r in records() if r["event"] == "start")
    assert start["world_size"] == 2
    pilot.app.action_pane("monitor")  # f7 works from any pane (the App's binding)
    await pilot.pause()
    await pilot.press("f7")  # Ctrl-C for torchrun: it passes it on; every rank stops after a step
    await until(pilot, lambda: run.reported, timeout=120, what="the job to stop")
    await until(pilot, lambda: monitor_spy["ended"], timeout=10, what="the Monitor to hear of the end")  # a message
    lineage = json.loads((workdir / "runs/sft-2p/lineage.json").read_text())
    assert run.code == 0 and lineage["status"] == "stopped", run.tail(20)
    assert any(p.name.startswith("step-") for p in (workdir / "runs/sft-2p/checkpoints").iterdir())
    assert ("runs/sft-2p", "stopped", None) in monitor_spy["ended"]
    await back_to_train(pilot)


async def test_a_failing_or_crashing_run_is_a_notification_and_the_app_keeps_running(workdir, pretrained, monkeypatch):
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        train = pane(app)
        tiny_sft(app, pretrained, data="nowhere.jsonl")  # a user error found when the data is loaded
        app.query_one("#train-out", Input).value = "runs/bad"
        await pilot.press("f5")
        job = train.current
        await job.wait_async()
        await pilot.pause(0.3)
        assert job.status == "failed" and "nowhere.jsonl" in job.error
        assert any("runs/bad: failed" in n.message for n in app._notifications)

        import workbench.train.engine as engine

        def bug(self):
            self.files.open()
            raise ZeroDivisionError("a bug")

        monkeypatch.setattr(engine.Engine, "run", bug)
        app.query_one("#train-out", Input).value = "runs/crash"
        await pilot.press("f5")
        job = train.current
        await job.wait_async()
        await pilot.pause(0.3)
        assert job.status == "crashed" and job.error.startswith("ZeroDivisionError: a bug (traceback in runs/crash/train.log")
        assert "Traceback (most recent call last)" in (workdir / "runs/crash/train.log").read_text()
        assert app.is_running and app.query_one("#train-start")  # still there, still usable


class Recorder:
    """Stands for the pane: what a TrainJob posts, with the time it was posted."""

    def __init__(self):
        self.posted = []

    def post_message(self, message):
        self.posted.append((time.monotonic(), message))


def test_engine_events_are_coalesced_into_one_message_per_flush_interval():
    from app import messages as M
    from app.worker import TrainJob
    from workbench.train.config import load_config

    node = Recorder()
    job = TrainJob(node, load_config("pretrain", None, {}), "runs/x", flush_s=0.2)
    job._on_event({"event": "log", "message": "data loaded"})
    assert node.posted == []  # held until the start: RunStarted must come first
    job._on_event({"event": "start", "step": 0, "max_steps": 10_000})
    t0 = time.monotonic()
    step = 0
    while time.monotonic() - t0 < 1.0:  # steps of ~1 ms for one second
        step += 1
        job._on_event({"event": "train", "step": step, "loss": 1.0})
        time.sleep(0.001)
    job.flush()
    kinds = [type(m).__name__ for _, m in node.posted]
    assert kinds[0] == "RunStarted" and set(kinds[1:]) == {"RunEvents"}
    events = [m for _, m in node.posted if isinstance(m, M.RunEvents)]
    assert 4 <= len(events) <= 7 and step > 100  # ~5 messages a second, however many steps
    assert [r["step"] for m in events for r in m.records if r["event"] == "train"] == list(range(1, step + 1))
    times = [t for t, m in node.posted if isinstance(m, M.RunEvents)]
    assert all(b - a >= 0.19 for a, b in zip(times[1:-1], times[2:-1]))  # (the first and the last are forced)
    job.flush(force=False)  # the pane's timer: nothing new, nothing sent
    assert len(node.posted) == len(events) + 1


def _snapshot_app():
    return WorkbenchApp(Launch(data=None, pane="train", runs_root="runs"))


@pytest.mark.parametrize("size", [(80, 24), (200, 60)])
def test_snapshot(workdir, snap_compare, size):
    async def refuse_max_len(pilot):
        box = pilot.app.query_one("#cf-max_len", Input)
        box.value = "1"  # a refused value: its message beside it
        box.cursor_blink = False  # a blinking cursor would be on or off by chance
        box.focus()  # where the user typed it (and so no other widget's focus style depends on timing)
        await pilot.hover("#train-status")  # the mouse somewhere inert: no hover highlight on a button
        await settle(pilot)
        await pilot.pause(0.2)

    assert snap_compare(_snapshot_app(), terminal_size=size, run_before=refuse_max_len)
