"""The Train pane's form, headless: fields from the config dataclasses, CLI parsing, validation, the command."""

import dataclasses
import shlex

import pytest

from workbench.errors import WorkbenchError
from workbench.train import schema
from workbench.train.config import CHOICES, CONFIGS, STAGES, load_config


@pytest.mark.parametrize("stage", STAGES)
def test_every_setting_of_the_dataclass_is_a_field_with_its_type_default_group_and_help(stage):
    cls = CONFIGS[stage]
    by_name = {f.name: f for f in schema.fields(stage)}
    assert set(by_name) == {f.name for f in dataclasses.fields(cls)} - {"stage"}
    for f in dataclasses.fields(cls):
        if f.name != "stage":
            got = by_name[f.name]
            assert (got.kind, got.optional) == (f.type.replace(" | None", ""), "None" in f.type)
            assert got.default == getattr(cls(), f.name)
            assert got.group != schema.OTHER and got.help  # every key of configs/STAGE/tiny.yaml is commented
    # the order and the groups are the YAML's
    assert [f.name for f in schema.fields(stage)][0] == "init_from"
    assert schema.groups(stage)[0][0] == "where from and to"
    assert schema.groups(stage)[-1][0] == "hardware"


def test_help_and_groups_are_read_from_the_commented_config():
    lr = schema.field("sft", "lr")
    assert (lr.group, lr.help) == ("optimisation", "peak learning rate (lower than pretraining: the model already knows the text)")
    assert schema.field("pretrain", "preset").group == "the model (a new one; ignored with init_from)"
    assert schema.field("ppo", "kl_coef").group == "the PPO update"
    text = "stage: sft\nlr: 1.0e-3   # peak\n# --- evaluation\neval_every: 5\nmodel: {}   # overrides, e.g. {a: 1}\n"
    assert schema.parse_comments(text) == [("stage", "other", ""), ("lr", "other", "peak"),
                                           ("eval_every", "evaluation", ""), ("model", "evaluation", "overrides, e.g. {a: 1}")]


def test_a_setting_missing_from_the_yaml_goes_to_other_without_help(tmp_path, monkeypatch):
    (tmp_path / "configs" / "sft").mkdir(parents=True)
    (tmp_path / "configs" / "sft" / "tiny.yaml").write_text("# --- main\nlr: 1.0e-3   # the rate\n")
    monkeypatch.setattr(schema, "ROOT", tmp_path)
    schema.fields.cache_clear()
    try:
        fields = schema.fields("sft")
        assert (fields[0].name, fields[0].group, fields[0].help) == ("lr", "main", "the rate")
        assert {(f.group, f.help) for f in fields[1:]} == {(schema.OTHER, "")}
        assert [g for g, _ in schema.groups("sft")] == ["main", schema.OTHER]
    finally:
        schema.fields.cache_clear()


def test_choices_are_the_ones_validation_accepts():
    for stage in STAGES:
        need = {"reward_model": "runs/rm"} if stage == "ppo" else {}
        for f in schema.fields(stage):
            if f.name in CHOICES:
                assert f.choices == CHOICES[f.name]
                for word in f.choices:
                    assert getattr(load_config(stage, None, {**need, f.name: word}), f.name) == word
                with pytest.raises(WorkbenchError, match=f"{f.name} must be"):
                    load_config(stage, None, {**need, f.name: "nonsense"})
    from workbench.model.config import PRESETS

    assert schema.field("pretrain", "preset").choices == PRESETS
    assert schema.field("sft", "device").suggest[:3] == ("auto", "cpu", "cuda") and schema.field("sft", "device").choices is None
    assert schema.field("dpo", "loss_type").choices == ("sigmoid", "ipo")


@pytest.mark.parametrize("name, text", [
    ("lr", "1e-4"), ("lr", "0.0005"), ("max_steps", "30"), ("packing", "true"), ("format", ""), ("format", "null"),
    ("data", "my data/x.jsonl"), ("val_fraction", "0"), ("eps", "1.0e-8"),
])
def test_form_text_is_read_exactly_as_a_command_line_override(name, text):
    assert schema.parse_value("sft", name, text) == getattr(load_config("sft", None, [f"{name}={text}"]), name)
    model = schema.parse_value("pretrain", "model", "{n_layers: 2, d_model: 96}")
    assert model == {"n_layers": 2, "d_model": 96}
    assert schema.parse_value("sft", "packing", True) is True  # a switch gives a bool, a select a word


@pytest.mark.parametrize("name, text, message", [
    ("lr", "abc", "lr must be a number, got 'abc'"),
    ("batch_size", "2.5", "batch_size must be an integer, got 2.5"),
    ("batch_size", "", "batch_size must be an integer, got None"),
    ("packing", "maybe", "packing must be true or false, got 'maybe'"),
])
def test_unparseable_text_gives_the_clis_message_without_its_prefix(name, text, message):
    with pytest.raises(WorkbenchError) as e:
        schema.parse_value("sft", name, text)
    assert str(e.value) == message


def _values(stage, **changes):
    return {**schema.file_values(stage, schema.default_config(stage)), **changes}


def test_validate_puts_every_refused_value_beside_its_field(pretrained):
    assert schema.validate("sft", _values("sft", init_from=str(pretrained))) == {}
    errors = schema.validate("sft", _values("sft", init_from=str(pretrained), lr="-1", batch_size="0",
                                            beta2="1.5", mode="every", max_steps="x"))
    assert errors == {"lr": "lr must be a positive number, got -1.0",
                      "batch_size": "batch_size must be at least 1, got 0",
                      "beta2": "beta1 and beta2 must be in [0, 1), got 0.9, 1.5",  # not beta1: it is fine
                      "mode": "mode must be all or last, got 'every'",
                      "max_steps": "max_steps must be an integer, got 'x'"}


def test_validate_runs_the_clis_checks_on_parents_and_names_both_sides_of_a_pair(tmp_path, pretrained):
    errors = schema.validate("ppo", _values("ppo", init_from=str(tmp_path / "nope"), reward_model="",
                                            batch_size="6", num_minibatches="4"))
    assert errors["init_from"] == f"init_from: {tmp_path / 'nope'}: no such checkpoint or run directory"
    assert errors["reward_model"].startswith("ppo needs a reward model")
    assert errors["batch_size"] == errors["num_minibatches"] == "batch_size (6) must be a multiple of num_minibatches (4)"
    assert schema.validate("sft", _values("sft", init_from=""))["init_from"].startswith("sft starts from a trained model")
    assert "pretrain" not in str(schema.validate("pretrain", _values("pretrain")))  # pretrain needs no parent
    assert schema.validate("dpo", _values("dpo", init_from=str(pretrained), device="tpu"))["device"].startswith("device must be")
    with pytest.raises(WorkbenchError, match="lr must be a positive number"):
        schema.build_config("sft", _values("sft", init_from=str(pretrained), lr="-1"))
    assert schema.build_config("sft", _values("sft", init_from=str(pretrained), lr="5e-4")).lr == 5e-4


def _cli_config(command: str):
    """What `workbench train` would build from the command line (run_stage's own steps)."""
    argv = shlex.split(command)
    assert argv[:2] == ["workbench", "train"]
    stage, rest = argv[2], argv[3:]
    config = init_from = out = None
    overrides = []
    while rest:
        arg = rest.pop(0)
        if arg in ("--config", "--from", "--out"):
            value = rest.pop(0)
            config, init_from, out = (value, init_from, out) if arg == "--config" else \
                (config, value, out) if arg == "--from" else (config, init_from, value)
        else:
            overrides.append(arg)
    cfg = load_config(stage, config, overrides)
    return (dataclasses.replace(cfg, init_from=init_from) if init_from else cfg), out, overrides


def test_the_command_line_sets_only_what_differs_and_runs_the_same_config(pretrained):
    config = schema.default_config("sft")
    values = _values("sft", lr="5e-4", packing=True, max_steps="30", data="my data.jsonl", schedule="linear")
    line = schema.command_line("sft", config, str(pretrained), "runs/x", values)
    assert line == (f"workbench train sft --config {config} --from {pretrained} --out runs/x 'data=my data.jsonl' "
                    f"packing=true max_steps=30 lr=0.0005 schedule=linear")
    cfg, out, _ = _cli_config(line)
    assert out == "runs/x"
    assert cfg == load_config("sft", None, {**schema.parse_values("sft", values)[0], "init_from": str(pretrained)})
    # nothing changed: just the file; the file's parent needs no --from
    assert schema.command_line("sft", config, "runs/tiny/pretrain", None, _values("sft")) == f"workbench train sft --config {config}"
    # no config file: every difference from the defaults; a parent removed is said as init_from=null
    pre = schema.command_line("pretrain", None, None, None, {**schema.defaults("pretrain"), "model": "{n_layers: 2}"})
    assert pre == "workbench train pretrain 'model={n_layers: 2}'"
    assert _cli_config(pre)[0].model == {"n_layers": 2}
    assert "init_from=null" in schema.command_line("sft", config, None, None, _values("sft"))
    # text that does not parse is shown as typed: the CLI then says what the form says
    assert schema.command_line("sft", config, "runs/tiny/pretrain", None, _values("sft", lr="fast")).endswith(" lr=fast")


def test_saved_yaml_is_laid_out_like_the_config_and_loads_back_the_same(tmp_path):
    values = _values("dpo", beta="0.25", loss_type="ipo", precompute_ref=False, format="", data="a b.jsonl")
    text = schema.to_yaml("dpo", values)
    assert "# --- optimisation\n" in text and "stage: dpo\n" in text
    assert "beta: 0.25                # strength of the implicit KL constraint" in text
    path = tmp_path / "dpo.yaml"
    path.write_text(text)
    assert schema.file_values("dpo", path) == schema.parse_values("dpo", values)[0]
    assert load_config("dpo", path).loss_type == "ipo"
    with pytest.raises(WorkbenchError, match="cannot save while lr is not valid: lr must be a number"):
        schema.to_yaml("dpo", {**values, "lr": "fast"})


def test_loading_a_bad_file_names_the_file_and_the_setting(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("lr: fast\n")
    with pytest.raises(WorkbenchError, match=f"{bad}: lr must be a number, got 'fast'"):
        schema.file_values("sft", bad)
    bad.write_text("learning_rate: 1e-4\n")
    with pytest.raises(WorkbenchError, match="did you mean 'lr'"):
        schema.file_values("sft", bad)
    bad.write_text("stage: dpo\n")
    with pytest.raises(WorkbenchError, match="this is a 'dpo' config, not 'sft'"):
        schema.file_values("sft", bad)
    bad.write_text("lr: [1\n")
    with pytest.raises(WorkbenchError, match="not valid YAML"):
        schema.file_values("sft", bad)
    bad.write_text("lr: -1\n")  # a value the config refuses still loads: the form shows why beside it
    assert schema.file_values("sft", bad)["lr"] == -1.0


def test_parents_on_offer_are_finished_runs_of_the_parent_stage(pretrained):
    root = pretrained.parent
    sft = schema.parent_runs(root, "sft")
    assert [path for _, path in sft] == [str(root / "pretrain")]
    assert sft[0][0] == "pretrain (pretrain, step 60)"
    assert schema.parent_runs(root, "rm") == []  # rm starts from an SFT run
    assert schema.parent_runs(root, "ppo", "reward_model") == []
    assert schema.parent_runs(root / "missing", "sft") == []
    assert schema.run_stage(pretrained) == "pretrain"
    assert schema.resume_args(pretrained, ["max_steps=80"]) == ["train", "pretrain", "--resume", str(pretrained), "max_steps=80"]
