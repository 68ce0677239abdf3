"""The Runs pane against the real App: statuses, the lineage tree, open / overlay / resume / copy / delete.

    python -m pytest -q tests/app/test_runs_pane.py

The runs are the fake pipeline of tests/workbench/train/test_runs.py (fixed names and dates; ppo
holds a live lock of this test process, one sft run a stale lock), under ./runs of a temporary
working folder, plus a real tiny pretrain run from the trainer fixtures.
"""

import json
import time

import pytest
from textual.widgets import Input, Static

from app import messages as M
from app.app import Launch, WorkbenchApp
from app.panes.runs import RunsPane
from app.widgets.confirm import Confirm
from app.widgets.run_list import RunTable, RunTree
from tests.conftest import SAMPLE
from tests.workbench.train.conftest import run
from tests.workbench.train.test_runs import make_run, make_runs
from workbench.train.lock import RunLock

NAMES = ["pipeline/ppo", "lr-sweep/sft-lr1e-2", "lr-sweep/sft-lr3e-4", "pipeline/dpo", "pipeline/rm", "pipeline/sft",
         "pipeline/pretrain", "broken"]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    make_runs(tmp_path / "runs")
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def spy(monkeypatch):
    """What the App hands the Monitor (show_runs) and the Train pane (resume)."""
    from app.panes.monitor import MonitorPane
    from app.panes.train import TrainPane

    calls = {"show": [], "resume": []}
    monkeypatch.setattr(MonitorPane, "show_runs", lambda self, dirs, add=False: calls["show"].append((dirs, add)))
    monkeypatch.setattr(TrainPane, "resume", lambda self, run_dir, detached=False: calls["resume"].append(run_dir))
    return calls


def make_app(root="runs"):
    return WorkbenchApp(Launch(data=None, runs_root=root, pane="runs"))


async def scanned(pilot) -> RunsPane:
    """Wait until the pane shows the newest scan it asked for."""
    pane = pilot.app.query_one(RunsPane)
    for _ in range(200):
        await pilot.pause(0.02)
        if pane.shown_generation and pane.shown_generation == pane._generation:
            await pilot.pause()
            return pane
    raise AssertionError("the scan never showed")


def rows(app) -> list[list[str]]:
    table = app.query_one(RunTable)
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


async def select(pilot, name: str) -> None:
    table = pilot.app.query_one(RunTable)
    table.focus()
    table.move_cursor(row=[r[0] for r in rows(pilot.app)].index(name))
    await pilot.pause()


def notes(app) -> str:
    return " | ".join(str(n.message) for n in app._notifications)


async def test_runs_of_every_stage_with_their_statuses_and_the_lineage_tree(workdir, small_tok):
    run("pretrain", workdir / "runs" / "real" / "pretrain", f"tokenizer={small_tok}", f"data={SAMPLE / 'text.jsonl'}",
        "model={n_layers: 2}", "seq_len=32", "batch_size=2", "max_steps=3", "eval_every=0", "save_every=0",
        "tensorboard=false")  # a real tiny run, finished
    async with make_app().run_test(size=(120, 40)) as pilot:
        await scanned(pilot)
        table = rows(pilot.app)
        by_name = {r[0]: r for r in table}
        assert [r[0] for r in table][1:] == NAMES  # the real run is the newest
        assert [r[0] for r in table][0] == "real/pretrain" and by_name["real/pretrain"][1:4] == \
            ["pretrain", "finished", "3/3"]
        assert by_name["real/pretrain"][4].startswith("loss ")
        assert {n: by_name[n][2] for n in NAMES} == {
            "pipeline/ppo": "running", "lr-sweep/sft-lr1e-2": "failed", "lr-sweep/sft-lr3e-4": "crashed",
            "pipeline/dpo": "stopped", "pipeline/rm": "finished", "pipeline/sft": "finished",
            "pipeline/pretrain": "finished", "broken": "unknown"}
        assert by_name["pipeline/rm"][3:6] == ["60/60", "loss 2.5  accuracy 0.75", "2025-01-02 11:00"]
        tree = pilot.app.query_one(RunTree)

        def children(node):
            return [str(c.label).split("  ")[0] for c in node.children]

        assert children(tree.root) == ["pretrain pipeline/pretrain", "pretrain real/pretrain", "? broken"]  # oldest first
        pretrain = tree.root.children[0]
        assert children(pretrain) == ["sft pipeline/sft", "sft lr-sweep/sft-lr3e-4", "sft lr-sweep/sft-lr1e-2"]
        assert children(pretrain.children[0]) == ["rm pipeline/rm", "dpo pipeline/dpo", "ppo pipeline/ppo"]
        assert str(pretrain.children[0].children[2].label).endswith("← scored by pipeline/rm")
        summary = str(pilot.app.query_one("#runs-summary", Static).render())
        assert summary.startswith("9 runs: 1 running, 1 crashed, 1 failed, 1 stopped, 4 finished, 1 unknown")

        # Picking a run in the tree selects it in the table, and the detail line follows.
        tree.focus()
        tree.move_cursor(pretrain.children[0].children[1])
        await pilot.pause()
        assert pilot.app.query_one(RunsPane).selected().name == "pipeline/dpo"
        detail = str(pilot.app.query_one("#runs-detail", Static).render())
        assert "pipeline/dpo  dpo  stopped  step 40/100  2025-01-02 12:00 → 12:45" in detail
        assert "$ workbench train dpo --resume runs/pipeline/dpo" in detail and "from pipeline/sft" in detail


async def test_open_overlay_resume_and_copy_act_on_the_selected_run(workdir, spy):
    async with make_app().run_test(size=(120, 40)) as pilot:
        await scanned(pilot)
        # resume: only stopped, crashed or failed runs; otherwise a word saying why
        for name in ("pipeline/dpo", "lr-sweep/sft-lr3e-4", "lr-sweep/sft-lr1e-2"):
            await select(pilot, name)
            await pilot.press("r")
            assert spy["resume"][-1] == f"runs/{name}"
        for name in ("pipeline/sft", "pipeline/ppo"):
            await select(pilot, name)
            await pilot.press("r")
        await pilot.pause()
        assert len(spy["resume"]) == 3
        assert "pipeline/sft finished (step 60 of 60); to train it further: workbench train sft --resume " \
               "runs/pipeline/sft max_steps=120" in notes(pilot.app)
        assert "pipeline/ppo is training right now (pid " in notes(pilot.app)

        await select(pilot, "lr-sweep/sft-lr3e-4")
        await pilot.press("c")
        assert pilot.app.clipboard == "workbench train sft --resume runs/lr-sweep/sft-lr3e-4"
        assert "Copied: workbench train sft --resume runs/lr-sweep/sft-lr3e-4" in notes(pilot.app)

        await select(pilot, "pipeline/dpo")
        await pilot.press("o")
        await pilot.pause()
        assert spy["show"] == [(["runs/pipeline/dpo"], False)]
        assert pilot.app.query_one("#panes").active == "monitor"
        await pilot.press("4")
        await pilot.pause()
        assert pilot.app.focused is pilot.app.query_one(RunTable)  # back on the pane: its keys work at once
        await select(pilot, "pipeline/rm")
        await pilot.press("a")
        assert spy["show"][-1] == (["runs/pipeline/rm"], True)
        await pilot.press("4", "enter")  # Enter on a row opens it too
        assert spy["show"][-1] == (["runs/pipeline/rm"], False)


async def test_delete_asks_first_removes_the_run_and_never_deletes_a_running_one(workdir):
    async with make_app().run_test(size=(120, 40)) as pilot:
        pane = await scanned(pilot)
        await select(pilot, "pipeline/ppo")
        await pilot.press("d")
        await pilot.pause()
        assert not isinstance(pilot.app.screen, Confirm)
        assert "pipeline/ppo is training: stop it before deleting it" in notes(pilot.app)

        await select(pilot, "pipeline/rm")
        await pilot.press("d")
        await pilot.pause()
        assert isinstance(pilot.app.screen, Confirm)
        assert pilot.app.screen.question.endswith("lose their parent): pipeline/ppo.")  # rm scores ppo
        await pilot.press("n")
        await pilot.pause()
        assert (workdir / "runs" / "pipeline" / "rm").is_dir()

        await select(pilot, "lr-sweep/sft-lr3e-4")  # crashed: a stale lock does not protect it
        await pilot.press("d")
        await pilot.pause()
        assert isinstance(pilot.app.screen, Confirm)
        assert pilot.app.screen.question.startswith("Delete lr-sweep/sft-lr3e-4 (sft, crashed, step 33/60)?")
        await pilot.press("y")
        for _ in range(100):
            await pilot.pause(0.02)
            if not (workdir / "runs" / "lr-sweep" / "sft-lr3e-4").exists() and \
                    "lr-sweep/sft-lr3e-4" not in [r[0] for r in rows(pilot.app)]:
                break
        assert not (workdir / "runs" / "lr-sweep" / "sft-lr3e-4").exists()
        await scanned(pilot)
        assert "lr-sweep/sft-lr3e-4" not in [r[0] for r in rows(pilot.app)]
        assert "Deleted lr-sweep/sft-lr3e-4" in notes(pilot.app)
        assert pane.selected() is not None  # the cursor moved to a neighbour, not into nothing


async def test_a_run_whose_trainer_starts_or_dies_changes_status_on_the_automatic_refresh(workdir, monkeypatch):
    monkeypatch.setattr("app.panes.runs.REFRESH_S", 0.2)
    async with make_app().run_test(size=(120, 40)) as pilot:
        pane = await scanned(pilot)
        table = pilot.app.query_one(RunTable)
        await select(pilot, "pipeline/sft")
        lock = RunLock(workdir / "runs" / "pipeline" / "dpo").acquire()  # a resume of dpo starts elsewhere
        try:
            first = pane._generation
            while pane.shown_generation < first + 2:
                await pilot.pause(0.05)
            assert {r[0]: r[2] for r in rows(pilot.app)}["pipeline/dpo"] == "running"
        finally:
            lock.release()
        lineage = workdir / "runs" / "pipeline" / "rm" / "lineage.json"
        data = json.loads(lineage.read_text())
        lineage.write_text(json.dumps({**data, "status": "running"}))  # ... and rm's trainer died (no lock)
        make_run(workdir / "runs", "later/dpo", "dpo", "stopped", "2025-01-04T09:00:00+00:00", step=5, max_steps=10,
                 parent="pipeline/sft")
        first = pane._generation
        while pane.shown_generation < first + 2:
            await pilot.pause(0.05)
        status = {r[0]: r[2] for r in rows(pilot.app)}
        assert status["pipeline/dpo"] == "stopped" and status["pipeline/rm"] == "crashed" and "later/dpo" in status
        assert pane.selected().name == "pipeline/sft" and table.has_focus  # the refresh kept the user's place


async def test_a_missing_or_empty_root_says_what_to_do_and_typing_a_root_lists_it(workdir):
    async with make_app("nowhere").run_test(size=(80, 24)) as pilot:
        pane = await scanned(pilot)
        empty = pilot.app.query_one("#runs-empty", Static)
        assert empty.display and str(empty.render()).startswith("nowhere does not exist yet.")
        assert not pilot.app.query_one("#runs-body").display
        await pilot.press("o", "r", "c", "d")  # no run selected: a word, never a crash
        await pilot.pause()
        assert notes(pilot.app).count(M.RUNS_NONE_SELECTED) == 4
        (workdir / "empty").mkdir()
        pane.set_root("empty")
        await scanned(pilot)
        assert str(empty.render()).startswith("No runs under empty.")
        box = pilot.app.query_one("#runs-root", Input)
        box.focus()
        box.value = ""
        await pilot.press(*"runs/pipeline", "enter")
        await scanned(pilot)
        assert not empty.display and [r[0] for r in rows(pilot.app)] == ["ppo", "dpo", "rm", "sft", "pretrain"]
        assert pilot.app.focused is pilot.app.query_one(RunTable)


@pytest.mark.parametrize("size", [(80, 24), (200, 60)])
def test_snapshot(workdir, snap_compare, size):
    async def run_before(pilot):
        await scanned(pilot)
        await select(pilot, "lr-sweep/sft-lr1e-2")  # the failed run: its detail line has its error (no pid)
        assert pilot.app.focused is pilot.app.query_one(RunTable)

    assert snap_compare(make_app(), terminal_size=size, run_before=run_before)
