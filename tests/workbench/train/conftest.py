"""Shared fixtures for the trainer tests: a small trained tokenizer, a pretrained and an SFT'd tiny model.

A 512-token BPE trained on sample_data/text.jsonl keeps every step well under 0.1 s on a CPU (with
cl100k's 100k vocabulary the output head alone costs ~10x more). Each fixture is built once per session.
"""

import pytest

from tests.conftest import SAMPLE

TINY = {"n_layers": 2}  # the tiny preset with 2 layers (1 dense + 1 MoE): the tests stay fast


def run(stage: str, out, *overrides, callbacks=(), control=None):
    """Train `stage` into `out` with key=value overrides; returns (result dict, metric records)."""
    from workbench.train.config import load_config
    from workbench.train.engine import train

    records = []
    cfg = load_config(stage, None, [o for o in overrides])
    result = train(cfg, out, callbacks=[records.append, *callbacks], control=control)
    return result, records


def run_until(stage: str, out, step: int, *overrides):
    """`run`, stopped after `step` as one Ctrl-C stops it (saves, status "stopped"): (result, records)."""
    from workbench.train.engine import Control

    control = Control()

    def stop(record):
        if record["event"] == "train" and record["step"] == step:
            control.stop()

    return run(stage, out, *overrides, callbacks=[stop], control=control)


def losses(records, key="loss"):
    return [r[key] for r in records if r["event"] == "train"]


@pytest.fixture(scope="session")
def small_tok(tmp_path_factory):
    from workbench.tokenizer_train import train_tokenizer

    path = tmp_path_factory.mktemp("tok") / "small.tiktoken"
    train_tokenizer([str(SAMPLE / "text.jsonl")], 512, path, held_out=0.0)
    return path


@pytest.fixture(scope="session")
def pretrained(tmp_path_factory, small_tok):
    """A tiny model pretrained for 60 steps on sample_data/text.jsonl (its run directory)."""
    out = tmp_path_factory.mktemp("runs") / "pretrain"
    run("pretrain", out, f"tokenizer={small_tok}", f"data={SAMPLE / 'text.jsonl'}", "model={n_layers: 2}",
        "max_steps=60", "seq_len=128", "batch_size=8", "eval_every=0", "save_every=0", "tensorboard=false")
    return out


@pytest.fixture(scope="session")
def sft_run(tmp_path_factory, pretrained):
    """The pretrained model after 60 SFT steps on sample_data/chat.jsonl (its run directory)."""
    out = tmp_path_factory.mktemp("runs") / "sft"
    run("sft", out, f"init_from={pretrained}", f"data={SAMPLE / 'chat.jsonl'}", "max_steps=60", "max_len=192",
        "batch_size=8", "eval_every=0", "save_every=0", "tensorboard=false")
    return out
