"""Reward-model stage: the Bradley-Terry loss falls, separable pairs are separated, the checkpoint
is a reward model with correct statistics, it loads back to the same scores, and it resumes exactly."""

import json
import math

import pytest
import torch

from tests.conftest import SAMPLE
from tests.workbench.train.conftest import losses, run, run_until

FAST = ("max_len=128", "eval_every=0", "save_every=0", "tensorboard=false")


@pytest.fixture(scope="module")
def rm_run(tmp_path_factory, sft_run):
    """An RM trained 30 steps on sample_data/preference.jsonl: (run dir, metric records)."""
    out = tmp_path_factory.mktemp("runs") / "rm"
    _, records = run("rm", out, f"init_from={sft_run}", f"data={SAMPLE / 'preference.jsonl'}", "max_steps=30",
                     "batch_size=16", "lr=1e-3", "warmup_steps=5", *FAST)
    return out, records


def _score_pairs(model, pairs, pad_id, batch_size=64):
    """(chosen, rejected) rewards of `pairs` with a plain PreferenceCollator (other padding than training)."""
    from workbench.data.collate import PreferenceCollator

    collate = PreferenceCollator(pad_id, 128)
    rc, rr = [], []
    with torch.no_grad():
        for s in range(0, len(pairs), batch_size):
            b = collate(pairs[s:s + batch_size])
            rc.append(model.score(b["chosen_input_ids"], b["chosen_attention_mask"])[0])
            rr.append(model.score(b["rejected_input_ids"], b["rejected_attention_mask"])[0])
    return torch.cat(rc), torch.cat(rr)


def _split(run_dir, tok):
    """The run's own train and validation pairs, rebuilt from its saved config."""
    import yaml

    from workbench.train.config import load_config
    from workbench.train.reward import load_pairs

    cfg = load_config("rm", None, base=yaml.safe_load((run_dir / "config.yaml").read_text()))
    train, val = load_pairs(cfg, tok, None)
    return [pair for _, pair in train], [pair for _, pair in val]


def test_loss_falls_on_sample_preferences(rm_run):
    _, records = rm_run
    curve = losses(records)
    assert len(curve) == 30
    assert curve[0] == pytest.approx(math.log(2), abs=0.05)  # the head starts small: rewards near equal
    first, last = sum(curve[:5]) / 5, sum(curve[-5:]) / 5
    assert last < first - 0.08, (first, last)  # measured: ~0.69 -> 0.48-0.59 over seeds 0-3
    train = [r for r in records if r["event"] == "train"]
    assert all(r["samples"] == 16 for r in train)
    # measured 0.61-0.70 over seeds 0-3: most pairs differ in a wrong fact, which a 60-step model barely knows
    assert sum(r["accuracy"] for r in train[-5:]) / 5 >= 0.58


def test_checkpoint_is_a_reward_model_with_stats_and_loads_back(rm_run):
    from workbench.model.checkpoint import load_checkpoint_tokenizer, read_meta
    from workbench.train.checkpoint import latest_checkpoint
    from workbench.train.models import load_reward_model

    run_dir, records = rm_run
    ckpt = latest_checkpoint(run_dir)
    extra = read_meta(ckpt)["extra"]
    assert extra["kind"] == "reward" and extra["stage"] == "rm" and extra["step"] == 30
    model, meta, path = load_reward_model(str(run_dir), "cpu")
    assert path == ckpt and not any(p.requires_grad for p in model.parameters())
    tok = load_checkpoint_tokenizer(ckpt)
    train, val = _split(run_dir, tok)
    assert len(train) == 475 and len(val) == 25  # val_fraction 0.05 of 500 pairs

    # reward_stats: mean/std over every training response, recomputed with the loaded model
    rc, rr = _score_pairs(model, train, tok.pad_id)
    everything = torch.cat([rc, rr])
    stats = extra["reward_stats"]
    assert stats["n"] == 950
    assert stats["mean"] == pytest.approx(float(everything.mean()), abs=1e-4)
    assert stats["std"] == pytest.approx(float(everything.std()), abs=1e-4)
    assert stats["std"] > 0.1  # trained rewards are spread out, not a constant

    # the same scores as the model in memory at the end of training: its final validation metrics
    final = [r for r in records if r["event"] == "eval"][-1]
    vc, vr = _score_pairs(model, val, tok.pad_id, batch_size=3)
    assert final["val/margin"] == pytest.approx(float((vc - vr).mean()), abs=1e-4)
    assert final["val/accuracy"] == pytest.approx(float((vc > vr).float().mean()))
    assert final["val/loss"] == pytest.approx(float(-torch.nn.functional.logsigmoid(vc - vr).mean()), abs=1e-4)


@pytest.mark.parametrize("stage", ["sft", "dpo"])
def test_reward_model_is_refused_as_a_policy_parent(rm_run, stage, tmp_path):
    from workbench.errors import WorkbenchError

    data = SAMPLE / ("chat.jsonl" if stage == "sft" else "preference.jsonl")
    with pytest.raises(WorkbenchError, match="is a reward model"):
        run(stage, tmp_path / stage, f"init_from={rm_run[0]}", f"data={data}", "max_steps=1", *FAST)


def test_policy_is_refused_as_a_reward_model(sft_run):
    from workbench.errors import WorkbenchError
    from workbench.train.models import load_reward_model

    with pytest.raises(WorkbenchError, match="not a reward model"):
        load_reward_model(str(sft_run), "cpu")


def _pairs_file(path, start, n):
    """Pairs that differ only in a fixed polite vs. rude ending: trivially separable."""
    with open(path, "w") as f:
        for i in range(start, start + n):
            answer = f"The answer is {i * 7 % 100}."
            f.write(json.dumps({"prompt": f"What is {i} times 7, modulo 100?",
                                "chosen": f"{answer} Thank you for asking, happy to help!",
                                "rejected": f"{answer} Stop bothering me with this."}) + "\n")
    return path


def test_separable_pairs_reach_high_accuracy(sft_run, tmp_path):
    train = _pairs_file(tmp_path / "train.jsonl", 0, 64)
    val = _pairs_file(tmp_path / "val.jsonl", 500, 16)
    _, records = run("rm", tmp_path / "rm", f"init_from={sft_run}", f"data={train}", f"val_data={val}",
                     "max_steps=20", "batch_size=8", "lr=1e-3", "warmup_steps=3", *FAST)
    final = [r for r in records if r["event"] == "eval"][-1]
    assert final["val/accuracy"] >= 0.9
    assert final["val/margin"] > 1.0
    assert final["val/loss"] < 0.3


def test_resume_gives_the_same_losses(sft_run, tmp_path):
    from workbench.train.engine import train

    args = (f"init_from={sft_run}", f"data={SAMPLE / 'preference.jsonl'}", "max_steps=6", "batch_size=4",
            "lr=1e-3", "warmup_steps=2", *FAST)
    _, full = run("rm", tmp_path / "full", *args)
    result, first = run_until("rm", tmp_path / "split", 3, *args)
    assert result["status"] == "stopped" and result["step"] == 3
    rest = []
    result = train(None, tmp_path / "split", resume=True, callbacks=[rest.append])
    assert result["status"] == "finished" and result["step"] == 6
    assert [r["step"] for r in rest if r["event"] == "train"] == [4, 5, 6]
    assert losses(first) + losses(rest) == pytest.approx(losses(full), abs=1e-5)
    assert losses(rest, "accuracy") == pytest.approx(losses(full, "accuracy")[3:])
