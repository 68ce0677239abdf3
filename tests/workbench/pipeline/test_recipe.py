"""Recipe files: what is accepted, and errors that name the file and the key before anything runs."""

import pytest
import yaml

from tests.conftest import ROOT
from workbench.errors import WorkbenchError

GOOD = {
    "tokenizer": {"vocab_size": 512, "data": "sample_data/text.jsonl"},
    "stages": {
        "pretrain": {"stage": "pretrain", "config": "configs/pretrain/tiny.yaml", "set": {"max_steps": 5}},
        "sft": {"stage": "sft", "from": "pretrain", "config": "configs/sft/tiny.yaml"},
        "rm": {"stage": "rm", "from": "sft"},
        "ppo": {"stage": "ppo", "from": "sft", "reward_model": "rm", "config": "configs/ppo/tiny.yaml"},
    },
    "eval": {"prompts": "sample_data/prompts.jsonl", "max_new_tokens": 16},
    "report": {"rows": {"SFT": "sft", "PPO": "ppo"}, "examples": 3},
}


@pytest.fixture(autouse=True)
def _repo_root(monkeypatch):
    monkeypatch.chdir(ROOT)  # recipe paths are relative to the current directory, as in the configs


def _load(tmp_path, data, name="r.yaml"):
    from workbench.pipeline.recipe import load_recipe

    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_recipe(str(path))


def _with(path: str, value):
    """GOOD with the key at dotted `path` set to `value` (None deletes it)."""
    import copy

    data = copy.deepcopy(GOOD)
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node[key]
    if value is None:
        del node[last]
    else:
        node[last] = value
    return data


def test_a_good_recipe(tmp_path):
    r = _load(tmp_path, GOOD)
    assert list(r.stages) == ["pretrain", "sft", "rm", "ppo"]
    assert r.stages["ppo"].parent == "sft" and r.stages["ppo"].reward_model == "rm"
    assert r.tokenizer.vocab_size == 512 and r.tokenizer.data == ["sample_data/text.jsonl"]
    assert r.eval.ref == "sft" and r.eval.rm == "rm"  # KL against where PPO starts; PPO's reward model
    assert r.rows == {"SFT": "sft", "PPO": "ppo"} and r.examples == 3 and r.name == "r"


def test_overrides_reach_the_stage_config(tmp_path):
    from workbench.pipeline.runner import stage_overrides
    from workbench.train.config import load_config

    r = _load(tmp_path, GOOD)
    root = tmp_path / "root"
    values = stage_overrides(r, r.stages["pretrain"], root)
    assert values == {"max_steps": 5, "tokenizer": str(root / "tokenizer" / "tokenizer.tiktoken")}
    cfg = load_config("ppo", r.stages["ppo"].config, stage_overrides(r, r.stages["ppo"], root))
    assert (cfg.init_from, cfg.reward_model) == (str(root / "sft"), str(root / "rm"))


@pytest.mark.parametrize("path, value, message", [
    ("stagez", {}, r"r\.yaml: stagez: unknown key \(did you mean 'stages'\?\)"),
    ("stages.sft.form", "pretrain", r"r\.yaml: stages\.sft\.form: unknown key \(did you mean 'from'\?\)"),
    ("stages.sft.from", "ppo", r"stages\.sft\.from: 'ppo' is not a stage listed before 'sft'"),
    ("stages.sft.from", None, r"stages\.sft\.from: a sft stage starts from a trained model"),
    ("stages.ppo.reward_model", None, r"stages\.ppo\.reward_model: a ppo stage needs the rm stage"),
    ("stages.ppo.reward_model", "sft", r"stages\.ppo\.reward_model: only a ppo stage takes a reward model"),
    ("stages.sft.stage", "sfft", r"stages\.sft\.stage: expected one of pretrain, sft, rm, dpo, ppo, got 'sfft'"),
    ("stages.sft.config", "configs/sft/nope.yaml", r"stages\.sft\.config: configs/sft/nope\.yaml: no such file"),
    ("stages.sft.set", {"lr_rate": 1}, r"r\.yaml: stages\.sft: unknown setting 'lr_rate' for stage 'sft' \(did you mean 'lr'\?\)"),
    ("stages.sft.set", {"lr": -1}, r"r\.yaml: stages\.sft: lr must be a positive number"),
    ("stages.sft.set", {"init_from": "x"}, r"stages\.sft\.set\.init_from: set by the pipeline"),
    ("stages.pretrain.set", {"tokenizer": "x.tiktoken"}, r"stages\.pretrain\.set\.tokenizer: the recipe trains a tokenizer"),
    ("stages.eval", {"stage": "sft", "from": "pretrain"}, r"stages\.eval: .*taken by the pipeline"),
    ("tokenizer.vocab_size", 10, r"tokenizer\.vocab_size: expected an integer of at least 257, got 10"),
    ("tokenizer.data", None, r"tokenizer\.data: missing"),
    ("eval.prompts", "nope.jsonl", r"eval\.prompts: nope\.jsonl: no such file"),
    ("eval.heldout", ["sample_data/prompts.jsonl", "gone.jsonl"], r"eval\.heldout\[1\]: gone\.jsonl: no such file"),
    ("eval.rm", "sft", r"eval\.rm: 'sft' is a sft stage, not an rm stage"),
    ("report.rows", {"SFT": "stf"}, r"report\.rows\.SFT: 'stf' is not a stage of this recipe \(did you mean 'sft'\?\)"),
    ("report.rows", {"RM": "rm"}, r"report\.rows\.RM: 'rm' is a reward model"),
    ("report.examples", -1, r"report\.examples: expected an integer of at least 0"),
])
def test_errors_name_the_file_and_key(tmp_path, path, value, message):
    with pytest.raises(WorkbenchError, match=message):
        _load(tmp_path, _with(path, value))


def test_a_recipe_by_name_or_a_missing_one(tmp_path, monkeypatch):
    from workbench.pipeline.recipe import load_recipe

    (tmp_path / "configs" / "recipes").mkdir(parents=True)
    (tmp_path / "configs" / "recipes" / "demo.yaml").write_text("stages: {}\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(WorkbenchError, match=r"demo\.yaml: stages: no stages to run"):
        load_recipe("demo")
    with pytest.raises(WorkbenchError, match=r"recipe 'dmeo': no configs/recipes/dmeo\.yaml \(did you mean 'demo'\?\)"):
        load_recipe("dmeo")
    with pytest.raises(WorkbenchError, match=r"recipe x/none\.yaml: no such file"):
        load_recipe("x/none.yaml")


def test_cli_bad_recipe_exits_1_with_the_message(tmp_path):
    from typer.testing import CliRunner

    from workbench.cli import app

    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(_with("stages.sft.from", "nowhere"), sort_keys=False))
    res = CliRunner().invoke(app, ["pipeline", "--recipe", str(path), "--out", str(tmp_path / "root")])
    assert res.exit_code == 1
    assert "stages.sft.from: 'nowhere' is not a stage listed before 'sft'" in res.output
    assert not (tmp_path / "root").exists()  # nothing ran
