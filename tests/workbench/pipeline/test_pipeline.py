"""`workbench pipeline` on a miniature recipe (recipe_tiny.yaml): every stage a few steps on a trained
512-token vocabulary. One chain is trained per module and taken through its life: interrupted in
SFT, resumed, re-run (all skipped, evals cached), one stage forced again, then read as a report.

The evaluator is replaced by a stand-in that derives its numbers from the checkpoint's path, so the
tests can tell that each report row shows its own stage's evaluation; the real evaluator has its
own tests (tests/workbench/eval/).
"""

import hashlib
import json
from pathlib import Path

import pytest

from tests.conftest import ROOT

RECIPE = Path(__file__).with_name("recipe_tiny.yaml")
ROWS = {"base": "pretrain", "SFT": "sft", "DPO": "dpo", "PPO": "ppo", "PPO (no KL)": "ppo-nokl"}


def _score(ckpt) -> float:
    """A number in [0, 1) that depends only on the checkpoint: what the stand-in reports for it."""
    return int(hashlib.sha256(str(ckpt).encode()).hexdigest()[:6], 16) / 2**24


class FakeEval:
    """Stands in for workbench.eval.evaluate.evaluate_checkpoint (the agreed interface); records calls."""

    def __init__(self):
        self.calls = []

    def __call__(self, ckpt, *, prompts=None, pairs=None, text=None, ref=None, rm=None, max_new_tokens=64,
                 limit=None, **_):
        from workbench.train.checkpoint import checkpoint_kind

        self.calls.append({"ckpt": str(ckpt), "prompts": prompts, "pairs": pairs, "ref": ref, "rm": rm})
        s = _score(ckpt)
        if checkpoint_kind(ckpt) == "reward":
            return {"checkpoint": str(ckpt), "kind": "reward_model",
                    "pairs": {"n": 8, "accuracy": s, "by_kind": {"wrong": s / 2, "rude": 1.0}, "margin": 0.5}}
        records = [json.loads(line) for line in Path(prompts).read_text().splitlines()][:limit]
        part = {"n": len(records), "compliance": s, "eos_rate": s, "im_start_rate": 0.0, "accuracy": s / 2,
                "accuracy_by_type": {}, "length": 10 * s, "rude_rate": 0.0, "refusal_rate": 0.0, "true_reward": s - 0.5}
        if rm:
            part["rm_score"] = s + 1
        if ref:
            part["kl_ref"] = s + 2
        name = Path(ckpt).parent.parent.name
        answers = [{"prompt": r["prompt"], "greedy": f"{name} says {i}", "answer": r["answer"], "correct": i == 0}
                   for i, r in enumerate(records)]
        return {"checkpoint": str(ckpt), "kind": "lm", "greedy": part, "sampled": dict(part), "answers": answers}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """cwd = the repository root (the recipe's paths are relative to it) and the stand-in evaluator."""
    from workbench.pipeline import runner

    mp = pytest.MonkeyPatch()
    mp.chdir(ROOT)
    fake = FakeEval()
    real = runner.evaluate
    mp.setattr(runner, "evaluate", fake)
    yield tmp_path_factory.mktemp("pipe") / "root", fake, real
    mp.undo()


def _run(root, **kw):
    from workbench.pipeline.recipe import load_recipe
    from workbench.pipeline.runner import run_pipeline

    events = []
    result = run_pipeline(load_recipe(str(RECIPE)), root, on_event=events.append, **kw)
    return result, events


def _actions(events) -> dict:
    return {e["name"]: e["action"] for e in events if e["event"] == "begin"}


def _starts(events) -> dict:
    return {e["name"]: e for e in events if e["event"] == "start"}


def _train_steps(run_dir) -> list[int]:
    return [r["step"] for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
            if r["event"] == "train"]


@pytest.fixture(scope="module")
def chain(env):
    """Run 1 is stopped through its Control at SFT step 3; run 2 continues it to the end."""
    from workbench.train.engine import Control

    root, fake, _ = env
    control = Control()

    def stop_in_sft(e):
        if e["event"] == "train" and e.get("name") == "sft" and e["step"] == 3:
            control.stop()

    from workbench.pipeline.recipe import load_recipe
    from workbench.pipeline.runner import run_pipeline

    first_events = []
    first = run_pipeline(load_recipe(str(RECIPE)), root, control=control,
                         on_event=lambda e: (first_events.append(e), stop_in_sft(e)))
    first_state = {"result": first, "events": first_events, "sft_lineage": json.loads((root / "sft" / "lineage.json").read_text()),
                   "rm_exists": (root / "rm").exists(), "eval_calls": len(fake.calls)}
    second, events = _run(root)
    return {"root": root, "fake": fake, "first": first_state, "second": second, "events": events}


def test_an_interrupted_stage_resumes_where_it_stopped(chain):
    first = chain["first"]
    assert first["result"]["status"] == "stopped" and first["result"]["stopped_at"] == "sft"
    assert first["sft_lineage"]["status"] == "stopped" and first["sft_lineage"]["step"] == 3
    assert not first["rm_exists"] and first["eval_calls"] == 0  # nothing after the stopped stage ran
    assert _actions(first["events"])["tokenizer"] == "run"

    events, root = chain["events"], chain["root"]
    assert chain["second"]["status"] == "finished"
    actions = _actions(events)
    assert actions["tokenizer"] == "skip" and actions["pretrain"] == "skip"
    assert actions["sft"] == "resume"
    assert all(actions[n] == "new" for n in ("rm", "dpo", "ppo", "ppo-nokl"))
    starts = _starts(events)
    assert "pretrain" not in starts  # skipped: the engine never ran
    assert starts["sft"]["step"] == 3 and starts["sft"]["resumed_from"].endswith("step-000003")
    assert _train_steps(root / "sft") == [1, 2, 3, 4, 5, 6]  # continued, not restarted
    lineage = json.loads((root / "sft" / "lineage.json").read_text())
    assert lineage["status"] == "finished" and [r["from_step"] for r in lineage["resumes"]] == [3]


def test_stages_are_run_dirs_with_lineage(chain):
    from workbench.train.runs import lineage_tree, scan_runs

    root = chain["root"]
    runs = {r.name: r for r in scan_runs(root)}
    assert set(runs) == {"pretrain", "sft", "rm", "dpo", "ppo", "ppo-nokl"}
    assert all(r.status == "finished" for r in runs.values())
    (tree,) = lineage_tree(list(runs.values()))
    assert tree.info.name == "pretrain" and [c.info.name for c in tree.children] == ["sft"]
    assert {c.info.name for c in tree.children[0].children} == {"rm", "dpo", "ppo", "ppo-nokl"}
    assert runs["ppo"].reward_model == (root / "rm").resolve() == runs["ppo-nokl"].reward_model
    pre_cfg = (root / "pretrain" / "config.yaml").read_text()
    assert f"tokenizer: {root / 'tokenizer' / 'tokenizer.tiktoken'}" in pre_cfg  # the trained vocabulary
    assert "kl_coef: 0.0\n" in (root / "ppo-nokl" / "config.yaml").read_text()  # the recipe's `set`


def test_eval_of_every_row_with_ref_and_rm(chain):
    from workbench.train.checkpoint import resolve_checkpoint

    root, calls = chain["root"], chain["fake"].calls
    sft, rm = resolve_checkpoint(root / "sft").resolve(), resolve_checkpoint(root / "rm").resolve()
    main = [c for c in calls if c["prompts"] == "sample_data/prompts.jsonl" and c["rm"]]
    assert {Path(c["ckpt"]).parent.parent.name for c in main} == set(ROWS.values())
    assert all(c["rm"] == str(rm) for c in main)
    assert all((c["ref"] is None) == (c["ckpt"] == str(sft)) for c in main)  # KL to SFT, except for SFT itself
    assert [c["pairs"] for c in calls if c["ckpt"] == str(rm)] == ["sample_data/preference.jsonl"]
    for name in (*ROWS.values(), "rm"):
        cached = json.loads((root / "eval" / f"{name}.json").read_text())
        assert cached["checkpoint"] == str(resolve_checkpoint(root / name).resolve())


def test_rerun_skips_everything_and_reuses_evals(chain):
    n_calls = len(chain["fake"].calls)
    result, events = _run(chain["root"])
    assert result["status"] == "finished"
    assert set(_actions(events).values()) == {"skip", "run"}  # run: only eval and the report
    assert [n for n, a in _actions(events).items() if a == "run"] == ["eval", "report"]
    assert not _starts(events)
    assert len(chain["fake"].calls) == n_calls
    assert all(e["cached"] for e in events if e["event"] == "eval_row")


def test_force_one_stage_trains_it_again_and_reevaluates_only_it(chain):
    root, fake = chain["root"], chain["fake"]
    before = (root / "dpo" / "lineage.json").read_text()
    n_calls = len(fake.calls)
    result, events = _run(root, only=["dpo"], force=True)
    assert result["status"] == "finished"
    assert _actions(events) == {"dpo": "retrain", "eval": "run", "report": "run"}
    assert _starts(events)["dpo"]["step"] == 0
    assert (root / "dpo" / "lineage.json").read_text() != before
    assert {Path(c["ckpt"]).parent.parent.name for c in fake.calls[n_calls:]} == {"dpo"}


def test_a_changed_reward_model_makes_ppo_stale(chain):
    """rm trained further by hand (`workbench train rm --resume ROOT/rm max_steps=4`): PPO, which it
    scores, is trained again on the next run; the other finished stages are still skipped."""
    from workbench.train.engine import train

    root = chain["root"]
    train(None, root / "rm", resume=True, overrides=["max_steps=4"])
    result, events = _run(root, only=["sft", "ppo"])
    actions = _actions(events)
    assert actions["sft"] == "skip" and actions["ppo"] == "retrain"
    why = next(e["why"] for e in events if e["event"] == "begin" and e["name"] == "ppo")
    assert why == f"its reward_model is now {(root / 'rm' / 'checkpoints' / 'step-000004').resolve()}"
    assert json.loads((root / "ppo" / "lineage.json").read_text())["inputs"]["reward_model"]["path"].endswith("step-000004")


def test_report_card(chain):
    from workbench.train.checkpoint import resolve_checkpoint

    root = chain["root"]
    report = json.loads((root / "report.json").read_text())
    assert {"rows", "reward_models", "stages", "pretraining", "examples", "plots", "tokenizer", "eval"} <= set(report)
    assert [(r["label"], r["stage"]) for r in report["rows"]] == list(ROWS.items())
    for row in report["rows"]:
        ckpt = resolve_checkpoint(root / row["stage"]).resolve()
        s = _score(ckpt)
        assert row["checkpoint"] == str(ckpt)
        assert row["greedy"]["compliance"] == pytest.approx(s) and row["greedy"]["true_reward"] == pytest.approx(s - 0.5)
        assert row["greedy"]["kl_ref"] == (None if row["stage"] == "sft" else pytest.approx(s + 2))
        assert row["heldout"] == {"prompts": pytest.approx(s / 2)}
    (rm,) = report["reward_models"]
    assert rm["pairs"]["accuracy"] == pytest.approx(_score(resolve_checkpoint(root / "rm").resolve()))

    stages = {s["name"]: s for s in report["stages"]}
    metrics = [json.loads(line) for line in (root / "sft" / "metrics.jsonl").read_text().splitlines()]
    assert stages["sft"]["tokens"] == sum(r["tokens"] for r in metrics if r["event"] == "train") > 0
    assert all(s["wall_s"] > 0 and s["train_s"] > 0 and s["status"] == "finished" for s in stages.values())
    # wall time counts setup too (rm is left out: it was trained further by hand, outside the pipeline's clock)
    assert all(s["wall_s"] > s["train_s"] for name, s in stages.items() if name != "rm")
    pre = report["pretraining"]
    assert pre["tokens"] == 6 * 4 * 64  # max_steps * batch_size * seq_len
    assert pre["tokens_per_param"] == pytest.approx(pre["tokens"] / pre["params"], rel=1e-3) and pre["chinchilla"] == 20

    assert len(report["examples"]) == 2
    for ex in report["examples"]:
        assert set(ex["answers"]) == set(ROWS)
        for label, answer in ex["answers"].items():
            assert answer["text"].startswith(f"{ROWS[label]} says")  # each row's own answer, side by side

    md = (root / "report.md").read_text()
    for label in ROWS:
        assert f"| {label} |" in md
    assert "| row | stage | compliance | EOS | accuracy | acc prompts | true reward | RM score | KL to sft |" in md
    assert report["examples"][0]["prompt"] in md and "tokens per parameter" in md and "Chinchilla" in md


def test_plots_or_a_note_without_matplotlib(chain, monkeypatch):
    import importlib.util
    import sys

    from workbench.pipeline.plots import MISSING, make_plots
    from workbench.pipeline.report import stage_summary

    root = chain["root"]
    stages = [stage_summary(root / n, n, k) for n, k in
              (("pretrain", "pretrain"), ("sft", "sft"), ("ppo", "ppo"), ("ppo-nokl", "ppo"))]
    if importlib.util.find_spec("matplotlib") is not None:  # the optional extra `report`
        plots = make_plots(root, stages)
        assert plots["files"] == ["plots/loss.png", "plots/reward.png", "plots/kl.png"]
        assert all((root / f).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for f in plots["files"])
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    assert make_plots(root, stages) == {"files": [], "note": MISSING}


def test_cli_prints_the_report_card(chain, env):
    from typer.testing import CliRunner

    from workbench.cli import app

    res = CliRunner().invoke(app, ["pipeline", "--recipe", str(RECIPE), "--out", str(chain["root"])],
                             terminal_width=200)
    assert res.exit_code == 0, res.output
    assert "skip" in res.output and "policies" in res.output and "PPO (no KL)" in res.output
    assert "report.md" in res.output


def test_only_names_a_stage_and_needs_finished_parents(env, tmp_path):
    from workbench.errors import WorkbenchError

    with pytest.raises(WorkbenchError, match=r"--only sftt: not a stage of .*recipe_tiny.yaml"):
        _run(tmp_path / "root", only=["sftt"])
    with pytest.raises(WorkbenchError, match="sft needs pretrain, which has not finished"):
        _run(tmp_path / "root", only=["sft"])


def test_an_out_that_is_a_file_is_refused(env, tmp_path):
    from typer.testing import CliRunner

    from workbench.cli import app

    afile = tmp_path / "afile"
    afile.write_text("keep me")
    for out in (afile, afile / "sub"):
        res = CliRunner().invoke(app, ["pipeline", "--recipe", str(RECIPE), "--out", str(out)])
        assert res.exit_code == 1 and "Traceback" not in res.output, res.output
        assert f"--out {out}" in res.output
    assert afile.read_text() == "keep me"


def test_with_the_real_evaluator(chain, env, monkeypatch):
    """The report reads what workbench.eval really returns: SFT and the reward model evaluated for real."""
    from workbench.pipeline import runner

    root, _, real = env
    monkeypatch.setattr(runner, "evaluate", real)
    for name in ("sft", "rm"):
        (root / "eval" / f"{name}.json").unlink()
    result, events = _run(root, only=["sft"])
    assert [e["name"] for e in events if e["event"] == "eval_row" and not e["cached"]] == ["sft", "rm"]
    assert any(e["event"] == "eval_progress" for e in events)
    rows = {r["label"]: r for r in result["report"]["rows"]}
    sft = rows["SFT"]["greedy"]
    assert sft["n"] == 3 and 0 <= sft["compliance"] <= 1 and sft["rm_score"] is not None and sft["kl_ref"] is None
    assert 0 <= rows["SFT"]["heldout"]["prompts"] <= 1
    assert rows["PPO"]["greedy"]["kl_ref"] is not None  # the stand-in's rows are still cached
    (rm,) = result["report"]["reward_models"]
    assert rm["pairs"]["n"] == 3 and 0 <= rm["pairs"]["accuracy"] <= 1
    assert {ex["prompt"] for ex in result["report"]["examples"]} <= {
        json.loads(line)["prompt"] for line in (ROOT / "sample_data" / "prompts.jsonl").read_text().splitlines()}


def test_a_changed_tokenizer_makes_pretraining_stale(chain):
    from workbench.pipeline.recipe import load_recipe
    from workbench.pipeline.runner import _decide

    root = chain["root"]
    recipe = load_recipe(str(RECIPE))
    assert _decide(recipe, recipe.stages["pretrain"], root / "pretrain", root, False)[0] == "skip"
    tok = root / "tokenizer" / "tokenizer.tiktoken"
    tok.write_text(tok.read_text() + "IQ== 9999\n")  # as if trained again on other text
    action, why = _decide(recipe, recipe.stages["pretrain"], root / "pretrain", root, False)
    assert action == "retrain" and why == f"{tok} has changed since it was trained"


def test_changed_eval_settings_recompute_the_evals(chain):
    from workbench.pipeline.recipe import load_recipe
    from workbench.pipeline.runner import evaluate_rows

    root, fake = chain["root"], chain["fake"]
    recipe = load_recipe(str(RECIPE))
    fake.calls.clear()
    evaluate_rows(recipe, root)
    assert {c["ckpt"] for c in fake.calls} <= {json.loads((root / "eval" / "sft.json").read_text())["checkpoint"],
                                               json.loads((root / "eval" / "rm.json").read_text())["checkpoint"]}
    recipe.eval.max_new_tokens = 9
    fake.calls.clear()
    evaluate_rows(recipe, root)
    assert {Path(c["ckpt"]).parent.parent.name for c in fake.calls} == {*ROWS.values(), "rm"}
    assert json.loads((root / "eval" / "dpo.json").read_text())["settings"]["max_new_tokens"] == 9


def test_a_changed_eval_file_recomputes_the_evals(chain, tmp_path):
    """Regenerated data under the same path is measured again (the cache is older than the file)."""
    import os
    import shutil

    from workbench.pipeline.recipe import load_recipe
    from workbench.pipeline.runner import evaluate_rows

    root, fake = chain["root"], chain["fake"]
    recipe = load_recipe(str(RECIPE))
    recipe.eval.prompts = str(shutil.copy(ROOT / recipe.eval.prompts, tmp_path / "prompts.jsonl"))
    evaluate_rows(recipe, root)
    fake.calls.clear()
    evaluate_rows(recipe, root)
    assert fake.calls == []  # all cached
    later = (root / "eval" / "sft.json").stat().st_mtime_ns + 10**9
    os.utime(recipe.eval.prompts, ns=(later, later))
    evaluate_rows(recipe, root)
    policies = {json.loads((root / "eval" / f"{n}.json").read_text())["checkpoint"] for n in ROWS.values()}
    assert {c["ckpt"] for c in fake.calls} >= policies  # every policy row again; the RM reads no prompts


def test_a_run_not_trained_by_the_pipeline_is_not_deleted(chain, tmp_path):
    """A finished run under --out whose parent lies elsewhere (someone's own run) is refused, not retrained."""
    from workbench.errors import WorkbenchError
    from workbench.pipeline.recipe import load_recipe
    from workbench.pipeline.runner import _decide

    root = chain["root"]
    recipe = load_recipe(str(RECIPE))
    lineage = root / "dpo" / "lineage.json"
    saved = lineage.read_text()
    data = json.loads(saved)
    data["parent"]["path"] = str(tmp_path / "elsewhere" / "checkpoints" / "step-000005")
    lineage.write_text(json.dumps(data))
    try:
        with pytest.raises(WorkbenchError, match=r"dpo: a finished run that was not trained by this pipeline"):
            _decide(recipe, recipe.stages["dpo"], root / "dpo", root, False)
        assert (root / "dpo" / "checkpoints").is_dir()
        assert _decide(recipe, recipe.stages["dpo"], root / "dpo", root, True)[0] == "retrain"  # --force still may
    finally:
        lineage.write_text(saved)
