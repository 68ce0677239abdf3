"""Reward models whose score adds w x the backbone's log-probability of the response (`score_logprob`).

The score is checked against a direct computation (the head's value at the last token + w x the sum,
or mean, of log-softmax over the full logits at the response's tokens) in every layout that scores
one: right-padded pairs (training, `workbench eval --pairs`), PPO's left-padded rollouts and
`workbench eval --rm`'s answers. Then a run: the checkpoint says what it is, loads back with its w,
resumes exactly (never with another score_logprob), and its statistics are those of the loaded model;
a hand-edited checkpoint whose files disagree is refused with one message.
"""

import pytest
import torch

from tests.conftest import SAMPLE
from tests.workbench.train.conftest import losses, run, run_until
from tests.workbench.train.test_reward import _split

FAST = ("max_len=128", "eval_every=0", "save_every=0", "tensorboard=false")


def _direct(model, seqs: list[list[int]], spans: list[tuple[int, int]], mode: str) -> torch.Tensor:
    """Head at the last token + w x log p(seq[start:end]) (sum or mean), one unpadded row at a time."""
    out = []
    with torch.no_grad():
        for seq, (start, end) in zip(seqs, spans):
            ids = torch.tensor([seq])
            o = model.backbone(ids, logits_to_keep=None, return_hidden=True)
            logp = torch.log_softmax(o.logits[0, :, :model.backbone.cfg.vocab_size].float(), -1)
            lp = torch.stack([logp[t - 1, seq[t]] for t in range(start, end)])
            total = lp.sum() if mode == "sum" else lp.mean()
            out.append(model.head(o.hidden[0, -1]).float()[0] + model.logprob_weight * total)
    return torch.stack(out)


def _model(sft_run, mode, w=0.7):
    from workbench.train.models import ScalarHeadModel, load_parent

    backbone, tok, _ = load_parent(str(sft_run), "policy", "cpu")
    model = ScalarHeadModel(backbone, seed=1, logprob=mode).eval()
    with torch.no_grad():
        model.logprob_weight.fill_(w)
    return model, tok


def _pairs(tok, n=6):
    from workbench.train.data import load_examples

    examples, _ = load_examples(str(SAMPLE / "preference.jsonl"), "preference", tok, max_len=128)
    return [(e.chosen, e.rejected) for e in examples[:n]]


@pytest.mark.parametrize("mode", ["sum", "mean"])
def test_score_is_head_plus_w_times_the_response_logprob(sft_run, mode):
    from workbench.chat import prompt_length
    from workbench.data.collate import PreferenceCollator

    model, tok = _model(sft_run, mode)
    pairs = _pairs(tok)
    b = PreferenceCollator(tok.pad_id, 128)(pairs)
    with torch.no_grad():
        chosen = model.score(b["chosen_input_ids"], b["chosen_attention_mask"], b["chosen_labels"])[0]
        rejected = model.score(b["rejected_input_ids"], b["rejected_attention_mask"], b["rejected_labels"])[0]
    halves = [c for c, _ in pairs], [r for _, r in pairs]
    for got, rows in zip((chosen, rejected), halves):
        # the response: every trained token (content + <|im_end|>), none of the prompt or the separator after
        spans = [(prompt_length(r), prompt_length(r) + r.num_trainable) for r in rows]
        assert all(r.input_ids[b - 1] == tok.im_end_id and b < len(r.input_ids) for r, (_, b) in zip(rows, spans))
        want = _direct(model, [r.input_ids for r in rows], spans, mode)
        assert got == pytest.approx(want, abs=1e-4)
    with pytest.raises(ValueError, match="labels"):
        model.score(b["chosen_input_ids"], b["chosen_attention_mask"])
    with torch.no_grad():  # w = 0: the head alone, as a model without logprob scores it
        model.logprob_weight.zero_()
        head_only = model.score(b["chosen_input_ids"], b["chosen_attention_mask"], b["chosen_labels"])[0]
        model.logprob = None
        plain = model.score(b["chosen_input_ids"], b["chosen_attention_mask"])[0]
    assert head_only == pytest.approx(plain, abs=1e-5)


def test_unknown_mode_is_refused(sft_run):
    from workbench.errors import WorkbenchError
    from workbench.train import schema
    from workbench.train.config import load_config

    with pytest.raises(WorkbenchError, match="score_logprob must be one of sum, mean"):
        _model(sft_run, "max")
    with pytest.raises(WorkbenchError, match="score_logprob must be sum, mean or null, got 'max'"):
        run("rm", sft_run.parent / "bad-rm", f"init_from={sft_run}", "score_logprob=max", "max_steps=1", *FAST)
    # the TUI's Train form checks with the schema: null (blank, the default) is a valid setting, as on the CLI
    values = {**schema.defaults("rm"), "init_from": str(sft_run)}
    assert schema.validate("rm", values) == {}
    assert schema.validate("rm", {**values, "score_logprob": "mean"}) == {}
    assert schema.validate("rm", {**values, "score_logprob": "max"}) == {
        "score_logprob": "score_logprob must be sum, mean or null, got 'max'"}
    assert schema.build_config("rm", values).score_logprob is None
    # centring: a whole answer's log p is ~-100 nats, (r_c + r_r)^2 would swamp the pairwise loss (~900 vs 0.7)
    with pytest.raises(WorkbenchError, match=r"center_rewards_coef \(0.01\) cannot pull rewards to 0 with score_logprob: sum"):
        load_config("rm", None, ["score_logprob=sum", "center_rewards_coef=0.01"])
    assert load_config("rm", None, ["score_logprob=mean", "center_rewards_coef=0.01"]).center_rewards_coef == 0.01


def test_a_hand_edited_checkpoint_gets_one_message(sft_run, tmp_path):
    """config.json and the head file must agree on what the reward model is; each mismatch is named."""
    import json
    import shutil

    from safetensors.torch import load_file, save_file

    from workbench.errors import WorkbenchError
    from workbench.io import atomic_dir
    from workbench.train.models import load_reward_model, write_scalar_model

    model, tok = _model(sft_run, "sum")
    with atomic_dir(tmp_path / "rm") as tmp:
        write_scalar_model(model, tmp, tok, extra={"kind": "reward", "stage": "rm", "step": 0})

    def edited(name, mode=..., w=...):
        path = tmp_path / name
        shutil.copytree(tmp_path / "rm", path)
        if mode is not ...:
            meta = json.loads((path / "config.json").read_text())
            if mode is None:
                del meta["extra"]["score_logprob"]
            else:
                meta["extra"]["score_logprob"] = mode
            (path / "config.json").write_text(json.dumps(meta))
        if w is not ...:
            head = load_file(path / "score_head.safetensors")
            if w is None:
                del head["logprob_weight"]
            else:
                head["logprob_weight"] = torch.tensor([w])
            save_file(head, path / "score_head.safetensors")
        return str(path)

    assert load_reward_model(edited("ok"), "cpu")[0].logprob == "sum"
    for path, message in ((edited("foo", mode="foo"), r"foo/config.json: extra.score_logprob must be one of sum, "
                                                      r"mean or null, got 'foo'"),
                          (edited("list", mode=[1]), r"got \[1\]"),
                          (edited("plain", mode=None), r"plain/score_head.safetensors holds logprob_weight .*"
                                                       r"plain/config.json says extra.score_logprob: null"),
                          (edited("no-w", w=None), r"no-w/score_head.safetensors lacks logprob_weight .*"
                                                   r"extra.score_logprob: sum"),
                          (edited("nan", w=float("nan")), "the reward head contains NaN or infinite values")):
        with pytest.raises(WorkbenchError, match=message):
            load_reward_model(path, "cpu")


def test_ppo_and_eval_score_answers_as_the_rm_was_trained(sft_run, tmp_path):
    """PPO's rollouts (left-padded, separator appended) and eval's answers get the direct score of
    prompt + answer + separator with the answer as the response."""
    from types import SimpleNamespace

    from workbench.eval.evaluate import RewardScorer
    from workbench.io import atomic_dir
    from workbench.model.generate import SamplingConfig
    from workbench.train.config import load_config
    from workbench.train.engine import Engine
    from workbench.train.models import write_scalar_model
    from workbench.train.ppo import PPOStage

    model, tok = _model(sft_run, "sum", w=0.5)
    with atomic_dir(tmp_path / "rm") as tmp:
        write_scalar_model(model, tmp, tok, extra={"kind": "reward", "stage": "rm", "step": 0,
                                                   "reward_stats": {"mean": 0.0, "std": 1.0, "n": 2}})
    cfg = load_config("ppo", None, [f"init_from={sft_run}", f"reward_model={tmp_path / 'rm'}",
                                    f"data={SAMPLE / 'prompts.jsonl'}", "normalize_reward=false",
                                    "batch_size=8", "max_new_tokens=40", "max_steps=1", "tensorboard=false"])
    stage = PPOStage(cfg, Engine(cfg, tmp_path / "ppo"))
    stage.setup()
    assert stage.reward_model.logprob == "sum" and float(stage.reward_model.logprob_weight) == 0.5
    _, prompts = next(stage.batches(0))
    with torch.no_grad():
        roll = stage._rollout(prompts, SamplingConfig(max_new_tokens=40, temperature=1.0, seed=3))
    P, sep = roll["P"], tok.encode("\n")
    answers = [[int(t) for t, m in zip(row[P:], mask) if m] for row, mask in zip(roll["seqs"], roll["rmask"])]
    finished = roll["finished"].tolist()
    assert any(finished) and len(set(map(len, prompts))) > 1  # both kinds of answer; prompts really left-padded
    seqs = [p + a + (sep if done else []) for p, a, done in zip(prompts, answers, finished)]
    want = _direct(model, seqs, [(len(p), len(p) + len(a)) for p, a in zip(prompts, answers)], "sum")
    assert roll["norm_score"] == pytest.approx(want, abs=1e-4)

    g = SimpleNamespace(tokens=answers, finished=finished)
    with torch.no_grad():
        got = RewardScorer(model, mean=1.0, std=2.0).answers(tok, prompts, g)
    assert got == pytest.approx((want - 1.0) / 2.0, abs=1e-4)


def test_a_logprob_rm_run_saves_loads_and_resumes(sft_run, tmp_path):
    from workbench.data.collate import PreferenceCollator
    from workbench.model.checkpoint import load_checkpoint_tokenizer, read_meta
    from workbench.train.checkpoint import latest_checkpoint
    from workbench.train.engine import train
    from workbench.errors import WorkbenchError
    from workbench.train.models import ScalarHeadModel, load_reward_model, restore_scalar_model

    args = (f"init_from={sft_run}", f"data={SAMPLE / 'preference.jsonl'}", "max_steps=6", "batch_size=4",
            "lr=1e-2", "warmup_steps=1", "score_logprob=sum", *FAST)
    _, full = run("rm", tmp_path / "full", *args)
    trained = [r for r in full if r["event"] == "train"]
    assert trained[0]["logprob_weight"] != trained[-1]["logprob_weight"]  # w is learnt (lr 1e-2: it moves)
    ckpt = latest_checkpoint(tmp_path / "full")
    extra = read_meta(ckpt)["extra"]
    assert extra["score_logprob"] == "sum" and extra["kind"] == "reward"
    model, _, _ = load_reward_model(str(tmp_path / "full"), "cpu")
    assert model.logprob == "sum"
    w = float(model.logprob_weight)  # the log shows w before each step's update, the checkpoint after the last
    assert w != trained[-1]["logprob_weight"] and w == pytest.approx(trained[-1]["logprob_weight"], abs=0.02)

    # reward_stats were computed with the response log-probs: the loaded model reproduces them exactly
    tok = load_checkpoint_tokenizer(ckpt)
    train_pairs, _ = _split(tmp_path / "full", tok)
    collate, scores = PreferenceCollator(tok.pad_id, 128), []
    with torch.no_grad():
        for i in range(0, len(train_pairs), 64):
            b = collate(train_pairs[i:i + 64])
            for half in ("chosen", "rejected"):
                scores.append(model.score(b[f"{half}_input_ids"], b[f"{half}_attention_mask"], b[f"{half}_labels"])[0])
    scores = torch.cat(scores)
    stats = extra["reward_stats"]
    assert stats["n"] == len(scores)
    assert stats["mean"] == pytest.approx(float(scores.mean()), abs=1e-3)
    assert stats["std"] == pytest.approx(float(scores.std()), abs=1e-3)
    assert stats["std"] > 1.0  # log-probs of whole answers spread the scores (a fresh head alone: ~0.1)

    result, first = run_until("rm", tmp_path / "split", 3, *args)
    assert result["status"] == "stopped" and result["step"] == 3
    # sum and mean save the same tensors: a resume that changed the mode would load and mean something else
    with pytest.raises(WorkbenchError, match="--resume cannot change score_logprob"):
        train(None, tmp_path / "split", resume=True, overrides=["score_logprob=mean"])
    with pytest.raises(WorkbenchError, match=r"--resume cannot change score_logprob \(sum in .*step-000003, mean now\)"):
        restore_scalar_model(ScalarHeadModel(model.backbone, logprob="mean"), latest_checkpoint(tmp_path / "split"))
    rest = []
    result = train(None, tmp_path / "split", resume=True, callbacks=[rest.append])
    assert result["status"] == "finished" and result["step"] == 6
    assert losses(first) + losses(rest) == pytest.approx(losses(full), abs=1e-5)
    assert losses(rest, "logprob_weight") == pytest.approx(losses(full, "logprob_weight")[3:], abs=1e-6)
