"""Stage configs: every mistake gets a message that says what to change."""

import pytest

from tests.conftest import SAMPLE
from workbench.errors import WorkbenchError
from workbench.train.config import SFTConfig, load_config


def error(stage, overrides=None, path=None):
    with pytest.raises(WorkbenchError) as e:
        load_config(stage, path, overrides)
    return str(e.value)


@pytest.mark.parametrize("stage, override, message", [
    ("sft", "lr=0", "lr must be a positive number, got 0.0"),
    ("pretrain", "lr=-1e-3", "lr must be a positive number, got -0.001"),
    ("sft", "batch_size=0", "batch_size must be at least 1, got 0"),
    ("sft", "grad_accum=0", "grad_accum must be at least 1, got 0"),
    ("dpo", "beta=0", "beta must be positive, got 0.0"),
    ("dpo", "beta=-0.1", "beta must be positive, got -0.1"),
    ("sft", "batch_size=abc", "override: batch_size must be an integer, got 'abc'"),
    ("sft", "lr=fast", "override: lr must be a number, got 'fast'"),
    ("sft", "packing=maybe", "override: packing must be true or false, got 'maybe'"),
    ("pretrain", "schedule=cosin", "schedule must be cosine, linear or constant, got 'cosin'"),
    ("sft", "learning_rate=1e-4", "override: unknown setting 'learning_rate' for stage 'sft' (did you mean 'lr'?)"),
    ("sft", "warmup_step=3", "override: unknown setting 'warmup_step' for stage 'sft' (did you mean 'warmup_steps'?)"),
    ("sft", "beta=0.1", "override: unknown setting 'beta' for stage 'sft' (it belongs to: dpo)"),
    ("sft", "seq_len=64", "override: unknown setting 'seq_len' for stage 'sft' (it belongs to: pretrain)"),
    ("pretrain", "max_len=64", "unknown setting 'max_len' for stage 'pretrain' (it belongs to: sft, rm, dpo)"),
    ("sft", "lr", "override 'lr' is not key=value (e.g. lr=1e-4)"),
])
def test_bad_values_are_refused_with_a_message_saying_what_to_change(stage, override, message):
    assert message in error(stage, [override])


def test_ppo_needs_a_reward_model():
    assert "ppo needs a reward model: reward_model=PATH" in error("ppo", [])
    assert load_config("ppo", None, ["reward_model=runs/rm"]).reward_model == "runs/rm"


def test_ppo_without_a_kl_leash_is_allowed_but_not_with_the_adaptive_controller():
    assert load_config("ppo", None, ["reward_model=runs/rm", "kl_coef=0"]).kl_coef == 0.0
    assert "kl_coef (beta) must be 0 or more, got -0.1" in error("ppo", ["reward_model=runs/rm", "kl_coef=-0.1"])
    assert "adaptive_kl needs kl_coef > 0" in error("ppo", ["reward_model=runs/rm", "kl_coef=0", "adaptive_kl=true"])


def test_yaml_numbers_without_a_dot_are_numbers(tmp_path):
    path = tmp_path / "sft.yaml"
    path.write_text("lr: 1e-4\nmin_lr_ratio: 0\nmax_steps: 30\n")
    cfg = load_config("sft", path, ["weight_decay=1e-2"])
    assert cfg.lr == 1e-4 and isinstance(cfg.lr, float)
    assert cfg.min_lr_ratio == 0.0 and isinstance(cfg.min_lr_ratio, float)
    assert cfg.weight_decay == 0.01 and cfg.max_steps == 30
    # defaults < file < overrides
    assert load_config("sft", path, ["lr=5e-4"]).lr == 5e-4
    assert cfg == SFTConfig(lr=1e-4, min_lr_ratio=0.0, max_steps=30, weight_decay=0.01)


def test_config_files_of_another_stage_or_unreadable_are_refused(tmp_path):
    dpo = tmp_path / "dpo.yaml"
    dpo.write_text("stage: dpo\nbeta: 0.2\nlr: 1e-5\n")
    assert error("sft", path=dpo) == f"{dpo}: this is a 'dpo' config, not 'sft'"
    assert load_config("dpo", dpo).beta == 0.2
    broken = tmp_path / "broken.yaml"
    broken.write_text("lr: [1e-4\n")
    assert error("sft", path=broken).startswith(f"{broken}: not valid YAML")
    listing = tmp_path / "list.yaml"
    listing.write_text("- lr\n- 1e-4\n")
    assert error("sft", path=listing) == f"{listing}: expected a mapping of settings (key: value), got list"
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"lr: \xff\xfe\n")
    assert error("sft", path=binary) == f"{binary}: not UTF-8 text (byte 4)"
    assert error("sft", path=tmp_path) == f"cannot read config {tmp_path}: Is a directory"
    assert error("sft", path=tmp_path / "nope.yaml") == f"config file {tmp_path / 'nope.yaml'} not found"
    typo = tmp_path / "typo.yaml"
    typo.write_text("learning_rate: 1e-4\n")
    assert error("sft", path=typo) == f"{typo}: unknown setting 'learning_rate' for stage 'sft' (did you mean 'lr'?)"


def _train(stage, out, *overrides):
    from workbench.train.engine import train

    return train(load_config(stage, None, ["tensorboard=false", "max_steps=1", *overrides]), out)


@pytest.mark.parametrize("stage, data", [("sft", "chat.jsonl"), ("dpo", "preference.jsonl")])
def test_stages_that_fine_tune_refuse_to_start_without_a_parent(tmp_path, stage, data):
    with pytest.raises(WorkbenchError, match=f"{stage} needs a parent checkpoint: --from PATH"):
        _train(stage, tmp_path / "run", f"data={SAMPLE / data}")
    assert not (tmp_path / "run").exists()  # nothing written for a run that never started


def test_a_reward_model_is_not_a_parent_for_sft(tmp_path, small_tok):
    from workbench.model.checkpoint import save_checkpoint
    from workbench.model.config import preset
    from workbench.model.transformer import Transformer
    from workbench.tokenizer import load_tokenizer

    tok = load_tokenizer(str(small_tok))
    model = Transformer(preset("tiny", vocab_size=tok.vocab_size, n_layers=1))
    rm = save_checkpoint(model, tmp_path / "rm", tokenizer=tok, extra={"kind": "reward", "stage": "rm"})
    with pytest.raises(WorkbenchError, match="is a reward model .*, but a language model .* is needed here"):
        _train("sft", tmp_path / "run", f"init_from={rm}", f"data={SAMPLE / 'chat.jsonl'}")
    with pytest.raises(WorkbenchError, match="no such checkpoint or run directory"):
        _train("sft", tmp_path / "run", f"init_from={tmp_path / 'missing'}", f"data={SAMPLE / 'chat.jsonl'}")
