"""workbench.pipeline.view (what the Report pane shows) on a copy of tests/app/report_root, a real finished
cpu-demo root made small (no checkpoints): damaged report.json fields are named, NaN in metrics.jsonl is
not plotted, a PPO run stands on its policy's size, one bad standing does not sink the open, and the
amounts the calculator prints keep an exponent past the suffixes.
"""

import json
import math
import shutil
from pathlib import Path

import pytest

from workbench.cli_eval import _amount
from workbench.errors import WorkbenchError
from workbench.eval.chinchilla import standing
from workbench.pipeline import report as R
from workbench.pipeline.plots import figures
from workbench.pipeline.view import open_view

FIXTURE = Path(__file__).parents[2] / "app" / "report_root"
POLICY, PPO_TRAINED = 1033344, 2066817  # the fixture's SFT size; PPO's start event: policy + value model


@pytest.fixture
def root(tmp_path):
    out = tmp_path / "chain"
    shutil.copytree(FIXTURE, out)
    return out


def edit_report(root: Path, change) -> None:
    report = json.loads((root / "report.json").read_text())
    change(report)
    (root / "report.json").write_text(json.dumps(report))  # allow_nan: json writes NaN as the engine does


def test_the_fixture_opens_with_every_table():
    view = open_view(str(FIXTURE))
    assert [s["name"] for s in view.stages] == ["pretrain", "sft", "rm", "dpo", "ppo", "ppo-nokl"]
    assert R.policy_table(view.report, "greedy")[1][1][:3] == ["SFT", "sft", "99%"]
    assert len(view.figures) == 3 and all(not math.isnan(v) for f in view.figures for p in f.panels
                                          for c in p.curves for v in c.values)


# ------------------------------------------------------------------------------------ a damaged report.json
def _set(path, value):
    def change(report):
        obj = report
        for key in path[:-1]:
            obj = obj[key]
        obj[path[-1]] = value
    return change


@pytest.mark.parametrize("path, value, field", [
    (["wall_s"], "abc", "wall_s: expected a finite number >= 0 or null, got 'abc'"),
    (["wall_s"], float("nan"), "wall_s: expected a finite number >= 0 or null, got nan"),
    (["wall_s"], float("inf"), "wall_s: "),
    (["tokenizer"], "x", "tokenizer: expected an object or null, got 'x'"),
    (["tokenizer"], [1], "tokenizer: expected an object or null"),
    (["tokenizer", "vocab_size"], "big", "tokenizer.vocab_size: expected a whole number or null, got 'big'"),
    (["rows", 1, "label"], 7, "rows[1].label: expected a string, got 7"),
    (["rows", 2, "greedy", "accuracy"], "high", "rows[2].greedy.accuracy: expected a finite number or null"),
    (["rows", 2, "heldout", "eval_facts"], "x", "rows[2].heldout.eval_facts: "),
    (["rows", 3], "x", "rows[3]: expected an object, got str"),
    (["stages", 0, "status"], [1], "stages[0].status: expected a string, got [1]"),
    (["stages", 0, "name"], 3, "stages[0].name: expected a string, got 3"),
    (["stages", 0, "name"], "../../etc", "stages[0].name: expected a folder name in the root"),
    (["stages", 1, "tokens"], float("nan"), "stages[1].tokens: "),
    (["examples", 0, "answers", "SFT"], "yes", "examples[0].answers.SFT: expected an object or null, got 'yes'"),
    (["examples", 0, "answers", "SFT", "correct"], "no", "examples[0].answers.SFT.correct: "),
    (["examples", 1, "prompt"], 5, "examples[1].prompt: expected a string or null, got 5"),
    (["reward_models", 0, "pairs", "accuracy"], "x", "reward_models[0].pairs.accuracy: "),
    (["pretraining", "params"], None, "pretraining.params: null"),
])
def test_a_bad_field_is_named(root, path, value, field):
    edit_report(root, _set(path, value))
    with pytest.raises(WorkbenchError) as e:
        open_view(str(root))
    assert str(e.value).startswith(f"{root / 'report.json'}: not a workbench report card ({field}"), str(e.value)


def test_missing_optional_fields_are_none_and_the_tables_build(root):
    def change(report):
        for key in ("tokenizer", "pretraining", "wall_s", "written"):
            del report[key]
        del report["rows"][1]["sampled"]
        del report["rows"][2]["heldout"]["eval_lore"]
        del report["stages"][0]["wall_s"]
    edit_report(root, change)
    report = open_view(str(root)).report
    assert report["tokenizer"] is None and report["pretraining"] is None and report["wall_s"] is None
    assert R.policy_table(report, "sampled")[1][1][2] == "–"  # the row's sampled metrics: none
    assert R.policy_table(report, "greedy")[1][2][6] == "–"  # its held-out column: none
    assert R.stage_table(report)[1][0][4] == "–"


def test_a_report_of_another_kind_is_not_a_pipeline_root(tmp_path):
    tok = tmp_path / "tokenizer"
    tok.mkdir()
    (tok / "report.json").write_text(json.dumps({"out": "x.tiktoken", "vocab_size_with_specials": 512}))
    with pytest.raises(WorkbenchError, match="is not a pipeline root: its report.json is another command's report"):
        open_view(str(tok))


# ------------------------------------------------------------------------------------ curves
def test_nan_and_inf_in_metrics_are_not_plotted(root):
    lines = (root / "sft" / "metrics.jsonl").read_text().splitlines()
    train = [i for i, line in enumerate(lines) if '"event": "train"' in line]
    for i, bad in zip(train[:3], (float("nan"), float("inf"), "lots")):
        record = json.loads(lines[i])
        record["loss"] = bad
        lines[i] = json.dumps(record)
    (root / "sft" / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    (root / "report.json").unlink()  # read from the run directories
    sft = next(p for f in figures(open_view(str(root)).stages) for p in f.panels if p.title == "sft (sft)")
    steps, values = sft.curves[0].steps, sft.curves[0].values
    assert len(steps) == len(train) - 3 and all(math.isfinite(v) for v in values)
    assert steps[0] == json.loads(lines[train[3]])["step"]


# ------------------------------------------------------------------------------------ Chinchilla standing
def test_standings_from_the_report_and_the_ppo_policy(root):
    rows = {r["name"]: r for r in open_view(str(root)).standings}
    assert rows["pretrain"]["source"] == "report.json"  # the card's numbers, not read from metrics.jsonl
    assert rows["pretrain"]["params"] == POLICY and rows["pretrain"]["tokens"] == 3276800
    ppo = rows["ppo"]
    assert ppo["params"] == POLICY != PPO_TRAINED and ppo["source"] == "report.json (policy = sft)"
    assert ppo["tokens_per_param"] == standing(POLICY, ppo["tokens"])["tokens_per_param"]
    (root / "report.json").unlink()
    rows = {r["name"]: r for r in open_view(str(root)).standings}
    assert rows["ppo-nokl"]["params"] == POLICY and rows["ppo-nokl"]["source"] == "metrics.jsonl (policy = sft)"
    assert rows["sft"]["source"] == "metrics.jsonl"


def test_picked_ppo_without_its_parent_says_why(root):
    rows = open_view([str(root / "ppo")]).standings  # no recipe, no lineage parent, no checkpoint
    assert len(rows) == 1 and "error" in rows[0] and "value model" in rows[0]["error"]


@pytest.mark.parametrize("bad", [-1, float("nan"), 0])
def test_one_bad_standing_leaves_the_others(root, bad):
    edit_report(root, _set(["stages", 0, "params"], bad))
    rows = open_view(str(root)).standings
    assert rows[0]["name"] == "pretrain" and "params must be positive" in rows[0]["error"]
    assert [r["name"] for r in rows[1:]] == ["sft", "rm", "dpo", "ppo", "ppo-nokl"]
    assert all("error" not in r and r["verdict"] for r in rows[1:])


def test_a_nonnumeric_start_event_params_is_left_out(root):
    (root / "report.json").unlink()
    path = root / "dpo" / "metrics.jsonl"
    path.write_text(path.read_text().replace('"params": 1033344', '"params": "1M"', 1))
    view = open_view(str(root))
    assert next(s for s in view.stages if s["name"] == "dpo")["params"] is None  # the table prints "–"
    assert "dpo" not in [r["name"] for r in view.standings] and len(view.standings) == 5


def test_the_same_run_twice_is_opened_once(root):
    view = open_view([str(root / "sft"), str(root / "sft") + "/", str(root / "dpo")])
    assert [s["name"] for s in view.stages] == ["sft", "dpo"]


# ------------------------------------------------------------------------------------ amounts
@pytest.mark.parametrize("x, shown", [(None, "-"), (5, "5"), (6.8e6, "6.80M"), (2e9, "2.00B"), (999e12, "999.00T"),
                                      (1e15, "1e+15"), (1e200, "1e+200"), (1e-300, "1e-300"), (-2e6, "-2.00M")])
def test_amounts_past_the_suffixes_have_an_exponent(x, shown):
    assert _amount(x) == shown
