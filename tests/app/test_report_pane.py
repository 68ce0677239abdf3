"""The Report pane against the real app: the report card's tables, the curves, the answers, the
Chinchilla calculator, a root whose report is not written yet, picked runs, bad input, and snapshots.

tests/app/report_root/ is a real finished `workbench pipeline` root (the cpu-demo recipe) made small:
report.json with its paths made relative, and per stage a metrics.jsonl thinned to <= 72 train
records (the dropped records' tokens added to the kept ones, so totals are exact), a lineage.json and
a two-line config.yaml. No checkpoints: each run's Chinchilla standing comes from its metrics.jsonl.
The tests run from tests/app/ so that paths on screen are relative (deterministic snapshots).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from textual.widgets import DataTable, Static, TabbedContent

from app import messages as M
from app.app import Launch, WorkbenchApp
from app.widgets.chinchilla import ChinchillaCalc
from workbench.cli_eval import _amount
from workbench.eval.chinchilla import compute_optimal, standing
from workbench.pipeline import report as R

HERE = Path(__file__).parent
ROOT = "report_root"
REPORT = json.loads((HERE / ROOT / "report.json").read_text())


@pytest.fixture(autouse=True)
def in_tests_app(monkeypatch):
    monkeypatch.chdir(HERE)


def app_on(root: str | None = ROOT) -> WorkbenchApp:
    return WorkbenchApp(Launch(data=None, report=root, pane="report"))


def pane(app):
    return app.query_one("#report-pane")


async def opened(pilot, timeout: float = 15.0):
    """Wait until the pane shows the newest open it asked for."""
    p = pane(pilot.app)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        await pilot.pause(0.05)
        if p.shown_token and p.shown_token == p._token:
            await pilot.pause()
            return p
    raise AssertionError("the open never showed")


def cells(app, table_id: str) -> list[list[str]]:
    table = app.query_one(table_id, DataTable)
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


def text(app, widget_id: str) -> str:
    """What a Static shows (its whole height, scrolled into view or not), its runs of whitespace as one space."""
    w = app.query_one(widget_id, Static)
    return " ".join(" ".join(strip.text for strip in w.render_lines(w.size.region)).split())


async def show(pilot, section: str) -> None:
    p = pane(pilot.app)
    p.action_show(section)
    await pilot.pause(0.3)
    end = time.monotonic() + 10
    while section == "curves" and not all(c.drawn_lines for c in p.charts) and time.monotonic() < end:
        await pilot.pause(0.1)  # the charts are drawn once laid out at their size


# ------------------------------------------------------------------------------------ the report card
async def test_card_tables_show_each_rows_numbers():
    app = app_on()
    async with app.run_test(size=(200, 60)) as pilot:
        await opened(pilot)
        rows = cells(app, "#rep-policies")
        assert [r[0] for r in rows] == ["base", "SFT", "DPO", "PPO", "PPO (no KL)"]
        assert rows == R.policy_table(REPORT, "greedy")[1]  # the CLI's own cells
        sft = REPORT["rows"][1]  # spot checks against the raw values: compliance, held-out accuracy, RM score
        assert rows[1][2] == R.fmt(sft["greedy"]["compliance"], "pct") == "99%"
        assert rows[1][5] == R.fmt(sft["heldout"]["eval_facts"], "pct") == "78%"
        assert rows[2][8] == R.fmt(REPORT["rows"][2]["greedy"]["rm_score"]) == "0.336"
        assert rows[1][9] == "–"  # SFT is the KL reference: no KL to itself
        head = [str(c.label) for c in app.query_one("#rep-policies", DataTable).columns.values()]
        assert head[:5] == ["row", "stage", "compliance", "EOS", "accuracy"] and "KL to sft" in head
        app.query_one("#rep-policies").focus()  # (a lazily mounted pane may have taken the focus meanwhile)
        await pilot.press("s")  # the sampled answers' metrics
        await pilot.pause()
        assert cells(app, "#rep-policies") == R.policy_table(REPORT, "sampled")[1] != rows
        assert "sampled answers" in text(app, "#rep-policies-title")
        assert cells(app, "#rep-rm") == [["rm", "100", "81%", "100%", "80%", "100%", "70%", "5.889"]]
        stages = cells(app, "#rep-stages")
        assert [s[:4] for s in stages] == [[s["name"], s["stage"], "finished", f"{s['step']}/{s['max_steps']}"]
                                           for s in REPORT["stages"]]
        assert stages[0][6] == "3,276,800" and stages[0][4] == "6m09s"
        assert "3.17 tokens per parameter" in text(app, "#rep-footnote")
        assert "cpu-demo · 6 stages · 10m52s" in text(app, "#rep-summary")


async def test_curves_have_the_points_of_the_metrics():
    from workbench.pipeline.report import read_metrics

    app = app_on()
    async with app.run_test(size=(200, 60)) as pilot:
        p = await opened(pilot)
        await show(pilot, "curves")
        titles = [c.title for c in p.charts]
        assert titles[:6] == [f"loss · {s['name']} ({s['stage']})" for s in REPORT["stages"]]
        assert titles[6:] == ["PPO: RM score", "DPO: implicit reward margin", "RM: pairwise accuracy (train)",
                              "PPO: KL to the policy it started from"]
        pre = read_metrics(HERE / ROOT / "pretrain")
        train = [r for r in pre if r.get("event") == "train"]
        val = [r for r in pre if r.get("event") == "eval" and "val/loss" in r]
        loss = p.charts[0]
        assert [len(line.xs) for line in loss.drawn_lines] == [len(train), len(val)]  # fewer than the thinning's buckets
        assert list(loss.drawn_lines[0].ys) == [r["loss"] for r in train]
        assert loss.drawn_lines[1].points and list(loss.drawn_lines[1].xs) == [r["step"] for r in val]
        score = p.charts[6]
        ppo = [r["objective/scores"] for r in read_metrics(HERE / ROOT / "ppo") if r.get("event") == "train"]
        assert len(score.drawn_lines) == 2 and list(score.drawn_lines[0].ys) == ppo  # ppo and ppo-nokl overlaid


async def test_answers_side_by_side():
    app = app_on()
    async with app.run_test(size=(80, 24)) as pilot:
        await opened(pilot)
        await show(pilot, "answers")
        shown = text(app, "#rep-answers-text")
        for ex in REPORT["examples"]:
            assert ex["prompt"] in shown and f"reference: {ex['reference']}" in shown
            for label, answer in ex["answers"].items():
                assert " ".join(R.one_line(answer["text"]).split()[:4]) in shown
        marks = [a["correct"] for ex in REPORT["examples"] for a in ex["answers"].values()]
        assert shown.count("✓") == marks.count(True) and shown.count("✗") == marks.count(False)


# ------------------------------------------------------------------------------------ Chinchilla
async def test_chinchilla_calculator_and_standing():
    app = app_on()
    async with app.run_test(size=(80, 24)) as pilot:
        await opened(pilot)
        await show(pilot, "chinchilla")
        calc = app.query_one(ChinchillaCalc)
        assert app.focused.id == "chin-amount"
        for ch in "1e18":  # typed: the result follows the field
            await pilot.press(ch)
        await pilot.pause()
        assert calc.result == compute_optimal(flops=1e18)
        assert f"{_amount(calc.result['params'])} parameters" in text(app, "#chin-result")
        for unit, typed, value in (("params", "6.8M", 6.8e6), ("tokens", "2B", 2e9), ("flops", "3e21", 3e21)):
            calc.compute(unit, typed)
            await pilot.pause()
            assert calc.result == compute_optimal(**{unit: value}) and calc.error is None
            shown = text(app, "#chin-result")
            assert _amount(calc.result["params"]) in shown and _amount(calc.result["tokens"]) in shown
        for bad in ("abc", "-5", "0", "1e999"):
            calc.compute("tokens", bad)
            await pilot.pause()
            assert calc.result is None and "positive number" in calc.error
            assert text(app, "#chin-result").startswith("✗ tokens must be a positive number")
        rows = cells(app, "#chin-standing")
        assert [r[0] for r in rows] == [s["name"] for s in REPORT["stages"]]
        pre, expect = rows[0], standing(1033344, 3276800)  # no checkpoints here: from metrics.jsonl
        assert pre[2:6] == ["1.03M", "3.28M", f"{expect['tokens_per_param']:.2f}", "16%"]
        assert pre[7] == "under-trained" and pre[8] == "metrics.jsonl"
        assert text(app, "#chin-note").startswith("pretrain: under-trained")


# ------------------------------------------------------------------------------------ other roots, bad input
async def test_root_without_report_json(tmp_path):
    root = tmp_path / "chain"
    shutil.copytree(HERE / ROOT, root)
    (root / "report.json").unlink()
    (root / "ppo-nokl" / "lineage.json").write_text(json.dumps({"stage": "ppo", "status": "stopped", "step": 10}))
    app = app_on(str(root))
    async with app.run_test(size=(80, 24)) as pilot:
        p = await opened(pilot)
        assert p.view.report is None and p.has_class("-partial")
        assert str(app.query_one("#rep-note").content) == M.REPORT_NOT_WRITTEN
        assert text(app, "#rep-summary") == "chain · 6 stages · no report yet"
        stages = cells(app, "#rep-stages")
        assert [(s[0], s[2]) for s in stages] == [("pretrain", "finished"), ("sft", "finished"), ("rm", "finished"),
                                                  ("dpo", "finished"), ("ppo", "finished"), ("ppo-nokl", "stopped")]
        assert stages[0][6] == "3,276,800"  # read from the run's metrics.jsonl (the thinned totals are exact)
        assert not app.query_one("#rep-policies").display or not app.query_one("#rep-policies").is_on_screen
        assert len(p.charts) == 10
        await show(pilot, "answers")
        assert text(app, "#rep-answers-text") == " ".join(M.REPORT_NO_EXAMPLES.split())


async def test_picked_runs_and_bad_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "report.json").write_text('{"rows": [')
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    (wrong / "report.json").write_text('{"rows": [{"label": "x"}], "stages": [], "reward_models": [], "examples": []}')
    app = app_on(None)
    async with app.run_test(size=(80, 24)) as pilot:
        p = pane(app)
        assert p.has_class("-empty") and app.focused.id == "rep-path"
        for path, message in ((tmp_path / "empty", "neither a pipeline root"), (tmp_path / "nowhere", "no such folder"),
                              (damaged / "report.json", "is a file"), (damaged, "report.json: not valid JSON"),
                              (wrong, "not a workbench report card")):
            p.open(str(path))
            await opened(pilot)
            assert p.view is None and p.has_class("-empty") and message in p.error, path
            assert str(app.query_one("#rep-note").content) == "✗ " + p.error and app.query_one("#rep-note").display
        p.open(f"{ROOT}/sft {ROOT}/dpo")  # picked run directories
        await opened(pilot)
        assert p.view.root is None and str(app.query_one("#rep-note").content) == M.REPORT_RUNS_ONLY
        assert [s[:3] for s in cells(app, "#rep-stages")] == [["sft", "sft", "finished"], ["dpo", "dpo", "finished"]]
        assert [c.title for c in p.charts] == ["loss · sft (sft)", "loss · dpo (dpo)", "DPO: implicit reward margin"]
        p.open(str(tmp_path / "empty"))  # a newer open wins over the one still reading
        p.open(ROOT)
        await opened(pilot)
        assert p.view is not None and p.view.report is not None and not p.has_class("-empty")


async def test_path_bar_keys_and_commands():
    app = app_on(None)
    async with app.run_test(size=(80, 24)) as pilot:
        for ch in ROOT:
            await pilot.press(ch)
        await pilot.press("enter")
        p = await opened(pilot)
        assert p.view.report is not None and app.focused.id == "rep-policies"
        await pilot.press("n")
        assert app.query_one("#rep-tabs", TabbedContent).active == "rep-curves"
        await pilot.press("o")
        assert app.focused.id == "rep-path"
        titles = [t for t, _, _ in p.commands()]
        assert len(titles) == 8 and all(t.startswith("Report: ") for t in titles)


# ------------------------------------------------------------------------------------ snapshots
async def _settle(pilot):
    """The report shown, and every other pane mounted (Lazy), so that none takes the focus afterwards."""
    from app.app import PANES

    await opened(pilot)
    end = time.monotonic() + 15
    while not all(pilot.app.query(f"#{name}-pane") for name in PANES) and time.monotonic() < end:
        await pilot.pause(0.1)
    await pilot.pause(0.3)
    pane(pilot.app).focus_default().focus(scroll_visible=False)
    await pilot.pause()


def test_snapshot_80x24(snap_compare):
    assert snap_compare(app_on(), terminal_size=(80, 24), run_before=_settle)


def test_snapshot_200x60_curves(snap_compare):
    async def run_before(pilot):
        await _settle(pilot)
        await pilot.press("n")  # the Curves tab
        await pilot.pause(0.5)

    assert snap_compare(app_on(), terminal_size=(200, 60), run_before=run_before)


def test_snapshot_80x24_chinchilla(snap_compare):
    async def run_before(pilot):
        await _settle(pilot)
        pane(pilot.app).action_show("chinchilla")
        await pilot.pause()
        assert pilot.app.focused.id == "chin-amount"
        for ch in "1e18":
            await pilot.press(ch)
        await pilot.pause(0.3)

    assert snap_compare(app_on(), terminal_size=(80, 24), run_before=run_before)
