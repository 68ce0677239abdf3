"""The Report pane against the real app: the report card's tables, the curves, the answers, the
Chinchilla calculator, a root whose report is not written yet, picked runs, bad input, and snapshots.

An app start costs seconds (every pane is mounted), so the checks of one root's sections run inside the
snapshot tests that end on that screen: the card and curves at 200x60 before the Curves snapshot, the
answers and the calculator at 80x24 before the Chinchilla one (each check then leaves the screen as the
snapshot expects it).

tests/app/report_root/ is a real finished `workbench pipeline` root (the cpu-demo recipe) made small:
report.json with its paths made relative, and per stage a metrics.jsonl thinned to <= 72 train
records (the dropped records' tokens added to the kept ones, so totals are exact), a lineage.json and
a two-line config.yaml. No checkpoints: each run's Chinchilla standing comes from the report card's numbers.
The tests run from tests/app/ so that paths on screen are relative (deterministic snapshots).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from textual.widgets import DataTable, Static, TabbedContent

from app import messages as M
from app.app import Launch, WorkbenchApp
from app.widgets.chinchilla import ChinchillaCalc
from workbench.cli_eval import _amount
from workbench.eval.chinchilla import compute_optimal, standing
from workbench.pipeline import report as R
from workbench.pipeline.view import open_view, standings

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
    await pilot.pause()
    end = time.monotonic() + 10
    while section == "curves" and not all(c.drawn_lines for c in p.charts) and time.monotonic() < end:
        await pilot.pause(0.05)  # the charts are drawn once laid out at their size
    await pilot.pause()


# ------------------------------------------------------------------------------------ the card and the curves
async def check_card_and_curves(pilot) -> None:
    """At 200x60, on the fixture root; ends on the Curves tab."""
    from app.widgets.charts import ChartPanel
    from workbench.pipeline.report import read_metrics

    app, p = pilot.app, pane(pilot.app)
    assert p.charts and all(c.is_mounted for c in p.charts)  # shown_token is set once they are mounted
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
    app.query_one("#rep-policies").focus()
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
    await pilot.press("s")  # back to greedy

    table = app.query_one("#rep-stages", DataTable)  # F5 reads the root again, the table's cursor stays
    table.focus()
    table.move_cursor(row=3)
    await pilot.press("f5")
    await opened(pilot)
    assert table.cursor_row == 3 and app.focused is table
    table.move_cursor(row=0)

    await pilot.press("n")  # the Curves tab
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

    # a chart not laid out yet is retried by one timer, however often the charts are asked to draw
    timers, set_timer = [], p.set_timer
    p.set_timer = lambda *a, **kw: timers.append(a) or set_timer(*a, **kw)
    p.charts.append(ChartPanel("never mounted", "", panel=p.charts[0].panel))
    for _ in range(20):
        p._draw_charts()
    assert len(timers) == 1
    await pilot.pause(0.25)
    n = len(timers)  # it fired, found the chart still not there, and set the next one: one pending at a time
    for _ in range(20):
        p._draw_charts()
    assert 2 <= n <= 4 and len(timers) == n
    p.charts.pop()
    del p.set_timer


# ------------------------------------------------------------------------------------ answers, Chinchilla
async def check_answers_and_chinchilla(pilot) -> None:
    """At 80x24, on the fixture root; ends on the Chinchilla tab with its field empty and focused."""
    app = pilot.app
    await show(pilot, "answers")
    shown = text(app, "#rep-answers-text")
    for ex in REPORT["examples"]:
        assert ex["prompt"] in shown and f"reference: {ex['reference']}" in shown
        for label, answer in ex["answers"].items():
            assert " ".join(R.one_line(answer["text"]).split()[:4]) in shown
    marks = [a["correct"] for ex in REPORT["examples"] for a in ex["answers"].values()]
    assert shown.count("✓") == marks.count(True) and shown.count("✗") == marks.count(False)

    await show(pilot, "chinchilla")
    calc = app.query_one(ChinchillaCalc)
    assert app.focused.id == "chin-amount"
    for ch in "1e18":  # typed: the result follows the field
        await pilot.press(ch)
    await pilot.pause()
    assert calc.result == compute_optimal(flops=1e18)
    assert f"{_amount(calc.result['params'])} parameters" in text(app, "#chin-result")
    await pilot.press("escape")  # out of the field: to the standings
    assert app.focused.id == "chin-standing"
    for unit, typed, value in (("params", "6.8M", 6.8e6), ("tokens", "2B", 2e9), ("flops", "3e21", 3e21),
                               ("flops", "1e200", 1e200)):
        calc.compute(unit, typed)  # (shown at once: compute updates the result in place)
        assert calc.result == compute_optimal(**{unit: value}) and calc.error is None
        shown = text(app, "#chin-result")
        assert _amount(calc.result["params"]) in shown and _amount(calc.result["tokens"]) in shown
    assert "9.13e+98 parameters" in shown  # 1e200 FLOPs: an exponent, not 80 digits and a T
    for bad in ("abc", "-5", "0", "1e999"):
        calc.compute("tokens", bad)
        assert calc.result is None and "positive number" in calc.error
        assert text(app, "#chin-result").startswith("✗ tokens must be a positive number")
    for unit, bad in (("params", "1e200"), ("params", "1e-300"), ("tokens", "1e-300")):  # FLOPs over/underflow
        calc.compute(unit, bad)
        assert calc.result is None and calc.error == M.CHIN_RANGE.format(what=M.CHIN_UNITS[unit], text=bad)
    rows = cells(app, "#chin-standing")
    assert [r[0] for r in rows] == [s["name"] for s in REPORT["stages"]]
    pre, expect = rows[0], standing(1033344, 3276800)  # no checkpoints here: the report card's numbers
    assert pre[2:6] == ["1.03M", "3.28M", f"{expect['tokens_per_param']:.2f}", "16%"]
    assert pre[7] == "under-trained" and pre[8] == "report.json"
    ppo = rows[4]  # the policy's size (sft's), not the policy + value model its start event counts
    assert ppo[2] == "1.03M" and ppo[8] == "report.json (policy = sft)"
    assert text(app, "#chin-note").startswith("pretrain: under-trained")
    calc.compute("flops", "")
    app.query_one("#chin-amount").focus()
    await pilot.pause()


# ------------------------------------------------------------------------------------ other roots, bad input, keys
async def check_other_roots(pilot, tmp_path) -> None:
    """At 80x24, started on no root: typed paths, bad folders, picked runs, a root still running; ends
    on the fixture root's card, as the 80x24 snapshot shows it."""
    (tmp_path / "empty").mkdir()
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "report.json").write_text('{"rows": [')
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    (wrong / "report.json").write_text('{"rows": [{"label": "x"}], "stages": [], "reward_models": [], "examples": []}')
    partial = tmp_path / "chain"  # a root whose report is not written yet, one stage stopped, a NaN loss logged
    shutil.copytree(HERE / ROOT, partial)
    (partial / "report.json").unlink()
    (partial / "ppo-nokl" / "lineage.json").write_text(json.dumps({"stage": "ppo", "status": "stopped", "step": 10}))
    with (partial / "pretrain" / "metrics.jsonl").open("a") as f:
        f.write(json.dumps({"event": "train", "step": 401, "loss": float("nan"), "tokens": 0}) + "\n")

    app = pilot.app
    p = pane(app)
    end = time.monotonic() + 10
    while (app.focused is None or app.focused.id != "rep-path") and time.monotonic() < end:
        await pilot.pause(0.05)  # the App focuses the shown pane's default once it is mounted
    assert p.has_class("-empty") and app.focused.id == "rep-path"
    for ch in ROOT:  # typed in the path bar: Enter opens it, the table gets the focus
        await pilot.press(ch)
    await pilot.press("enter")
    await opened(pilot)
    assert p.view.report is not None and app.focused.id == "rep-policies"
    await pilot.press("n")
    assert app.query_one("#rep-tabs", TabbedContent).active == "rep-curves"
    await pilot.press("o")
    assert app.focused.id == "rep-path"
    titles = [t for t, _, _ in p.commands()]
    assert len(titles) == 8 and all(t.startswith("Report: ") for t in titles)
    p.action_show("card")

    for path, message in ((tmp_path / "empty", "neither a pipeline root"), (tmp_path / "nowhere", "no such folder"),
                          (damaged / "report.json", "is a file"), (damaged, "report.json: not valid JSON"),
                          (wrong, "not a workbench report card (rows[0].stage: missing")):
        p.open(str(path))
        await opened(pilot)
        assert p.view is None and p.has_class("-empty") and message in p.error, path
        assert str(app.query_one("#rep-note").content) == "✗ " + p.error and app.query_one("#rep-note").display

    app.query_one("#rep-path").focus()
    p.open(f"{ROOT}/sft {ROOT}/dpo {ROOT}/sft")  # picked run directories (one named twice: shown once)
    app.query_one("#rep-path").value = "report_root/pp"  # typed meanwhile: the focus stays in the bar
    await opened(pilot)
    assert app.focused.id == "rep-path"
    assert p.view.root is None and str(app.query_one("#rep-note").content) == M.REPORT_RUNS_ONLY
    assert [s[:3] for s in cells(app, "#rep-stages")] == [["sft", "sft", "finished"], ["dpo", "dpo", "finished"]]
    assert [c.title for c in p.charts] == ["loss · sft (sft)", "loss · dpo (dpo)", "DPO: implicit reward margin"]
    app.query_one("#rep-stages").focus()
    await pilot.press("s")  # no report card: no greedy / sampled to switch
    assert p.section == "greedy" and not p.check_action("section", ())

    p.open(str(tmp_path / "empty"))  # a newer open wins over the one still reading
    p.open(str(partial))
    await opened(pilot)
    assert p.error is None
    assert p.view.report is None and p.has_class("-partial")
    assert str(app.query_one("#rep-note").content) == M.REPORT_NOT_WRITTEN
    assert text(app, "#rep-summary") == "chain · 6 stages · no report yet"
    stages = cells(app, "#rep-stages")
    assert [(s[0], s[2]) for s in stages] == [("pretrain", "finished"), ("sft", "finished"), ("rm", "finished"),
                                              ("dpo", "finished"), ("ppo", "finished"), ("ppo-nokl", "stopped")]
    assert stages[0][6] == "3,276,800"  # read from the run's metrics.jsonl (the thinned totals are exact)
    assert not app.query_one("#rep-policies").display or not app.query_one("#rep-policies").is_on_screen
    assert len(p.charts) == 10
    await show(pilot, "curves")  # the NaN loss is left out, not a crash in the chart
    assert all(np.isfinite(line.ys).all() for line in p.charts[0].drawn_lines)
    assert max(p.charts[0].drawn_lines[0].xs) < 401
    await show(pilot, "answers")
    assert text(app, "#rep-answers-text") == " ".join(M.REPORT_NO_EXAMPLES.split())
    assert cells(app, "#chin-standing")[5][8] == "metrics.jsonl (policy = sft)"

    view = open_view(ROOT)  # one run's parameters cannot stand: that row says why, the others show
    view.stages[0]["params"] = -1
    rows = standings(view.stages, "report.json", {"ppo": "sft", "ppo-nokl": "sft"})
    app.query_one(ChinchillaCalc).show_standings(rows)
    rows = cells(app, "#chin-standing")
    assert rows[0][0] == "pretrain" and rows[0][7].startswith("no standing: params must be positive")
    assert len(rows) == 6 and all(r[7] in ("under-trained", "about compute-optimal") for r in rows[1:])

    p.open(ROOT)  # the screen the snapshot shows
    p.action_show("card")


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


def test_snapshot_80x24(snap_compare, tmp_path):
    """The other roots' checks (started on no root), then the fixture root's card."""
    async def run_before(pilot):
        await check_other_roots(pilot, tmp_path)
        await _settle(pilot)

    assert snap_compare(app_on(None), terminal_size=(80, 24), run_before=run_before)


def test_snapshot_200x60_curves(snap_compare):
    """The card and curves checks, then the Curves tab they end on."""
    async def run_before(pilot):
        await _settle(pilot)
        await check_card_and_curves(pilot)
        await pilot.pause(0.2)

    assert snap_compare(app_on(), terminal_size=(200, 60), run_before=run_before)


def test_snapshot_80x24_chinchilla(snap_compare):
    """The answers and calculator checks, then the calculator with 1e18 typed."""
    async def run_before(pilot):
        await _settle(pilot)
        await check_answers_and_chinchilla(pilot)
        pilot.app.query_one("#chin-amount").cursor_blink = False  # the cursor's blink phase: not in a snapshot
        for ch in "1e18":
            await pilot.press(ch)
        await pilot.pause(0.3)
        assert pilot.app.query_one(ChinchillaCalc).result == compute_optimal(flops=1e18)

    assert snap_compare(app_on(), terminal_size=(80, 24), run_before=run_before)
