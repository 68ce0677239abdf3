"""SFT with pretraining replay (`replay_data`): the loss, what it preserves, exact resume, bad settings."""

import json
import math

import pytest
import torch

from tests.conftest import SAMPLE
from tests.workbench.train.conftest import losses, run, run_until
from workbench.errors import WorkbenchError
from workbench.train.engine import train

TEXT = SAMPLE / "text.jsonl"


def sft_args(pretrained, *more):
    return [f"init_from={pretrained}", f"data={SAMPLE / 'chat.jsonl'}", "max_len=128", "batch_size=4",
            "eval_every=0", "save_every=0", "tensorboard=false", *more]


def text_loss(run_dir, small_tok, n_windows=48, seq_len=64) -> float:
    """The model's next-token loss on the first windows of the pretraining text."""
    from workbench.model.checkpoint import load_checkpoint
    from workbench.tokenizer import load_tokenizer
    from workbench.train.checkpoint import latest_checkpoint
    from workbench.train.pretrain import text_stream

    model, _ = load_checkpoint(latest_checkpoint(run_dir))
    stream = text_stream(str(TEXT), load_tokenizer(str(small_tok)))
    w = torch.from_numpy(stream_windows(stream, n_windows, seq_len))
    with torch.no_grad():
        return float(model(w, labels=w).lm_loss)


def stream_windows(stream, n, seq_len):
    import numpy as np

    return np.stack([stream.window(i, seq_len) for i in range(n)])


def test_the_loss_adds_the_weighted_replay_loss_and_both_are_logged(tmp_path, pretrained):
    args = sft_args(pretrained, "max_steps=1", f"replay_data={TEXT}", "replay_batch_size=2", "replay_seq_len=64")
    (half,), (full,) = ([r for r in run("sft", tmp_path / f"w{w}", *args, f"replay_weight={w}")[1] if r["event"] == "train"]
                        for w in (0.5, 1.0))
    assert math.isfinite(half["replay_loss"]) and half["replay_loss"] > 0
    # the same first batch and windows: only the weight differs
    assert (half["lm_loss"], half["replay_loss"]) == (full["lm_loss"], full["replay_loss"])
    assert full["loss"] - half["loss"] == pytest.approx(0.5 * half["replay_loss"], rel=1e-5)
    assert half["loss"] > half["lm_loss"] + 0.5 * half["replay_loss"] - 0.05  # the rest: MoE balance, small
    config = (tmp_path / "w0.5" / "config.yaml").read_text()
    assert f"replay_data: {TEXT}" in config and "replay_weight: 0.5" in config
    lineage = json.loads((tmp_path / "w0.5" / "lineage.json").read_text())
    assert lineage["inputs"]["replay_data"] == str(TEXT)


def test_replay_keeps_the_pretraining_text_loss_that_plain_sft_loses(tmp_path, pretrained, small_tok):
    hard = ["max_steps=40", "lr=3e-3", "warmup_steps=0"]
    run("sft", tmp_path / "plain", *sft_args(pretrained, *hard))
    run("sft", tmp_path / "replay", *sft_args(pretrained, *hard, f"replay_data={TEXT}", "replay_batch_size=4",
                                              "replay_seq_len=64"))
    before, plain, replay = (text_loss(d, small_tok) for d in (pretrained, tmp_path / "plain", tmp_path / "replay"))
    assert plain > before + 0.1  # SFT alone forgets some of the text ...
    assert replay < plain - 0.1  # ... and replay keeps it


def test_a_resumed_replay_run_draws_the_same_windows(tmp_path, pretrained):
    args = sft_args(pretrained, "max_steps=6", "grad_accum=2", "batch_size=2", f"replay_data={TEXT}",
                    "replay_batch_size=2", "replay_seq_len=64")
    _, full = run("sft", tmp_path / "full", *args)
    run_until("sft", tmp_path / "cut", 3, *args)
    resumed = []
    train(None, tmp_path / "cut", resume=True, callbacks=[resumed.append])
    assert losses(resumed, "replay_loss") == pytest.approx(losses(full, "replay_loss")[3:], abs=1e-7)
    assert losses(resumed) == pytest.approx(losses(full)[3:], abs=1e-7)
    assert len(set(losses(full, "replay_loss"))) > 1  # each micro-batch draws its own windows


@pytest.mark.parametrize("setting, message", [
    ("replay_weight=0", "replay_weight must be a positive number, got 0"),
    ("replay_batch_size=0", "replay_batch_size must be at least 1, got 0"),
    ("replay_seq_len=100000", "replay_seq_len 100000 (+1 for the shifted target) exceeds the model's max_seq_len"),
    ("replay_data=nowhere.jsonl", "replay_data=nowhere.jsonl (plain text"),
    ("replay_data=''", "replay_data must be a text file or folder (or null for none), got ''"),
    (f"replay_data={SAMPLE / 'chat.jsonl'}", f"replay_data={SAMPLE / 'chat.jsonl'} (plain text"),
])
def test_bad_replay_settings_are_named(tmp_path, pretrained, setting, message):
    extra = [] if setting.startswith("replay_data") else [f"replay_data={TEXT}"]
    with pytest.raises(WorkbenchError) as e:
        run("sft", tmp_path / "bad", *sft_args(pretrained, "max_steps=1", *extra, setting))
    assert message in str(e.value)
    assert not (tmp_path / "bad" / "checkpoints").exists() or not any((tmp_path / "bad" / "checkpoints").iterdir())
