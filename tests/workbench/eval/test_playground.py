"""workbench.eval.playground on models whose answers are known (conftest.py's `scripted`): compare's RM score
is `workbench eval --rm`'s, also for an answer cut at max new tokens; a bad reward model costs only the scores;
a long chat leaves out its oldest turns; a pipeline root stands for its rows."""

import json

import pytest

from tests.workbench.eval.conftest import reward_checkpoint


def _sampling(**kw):
    from workbench.model.generate import SamplingConfig

    return SamplingConfig(greedy=True, **kw)


@pytest.mark.parametrize("max_new", [64, 3])  # finished (with <|im_end|> and its newline), and cut
def test_compare_rm_score_is_evals(scripted, byte_tok, random_lm, tmp_path, max_new):
    from workbench.eval.evaluate import evaluate_checkpoint
    from workbench.eval.playground import ModelCache, compare

    lm = scripted(byte_tok.encode("Quilon"))
    rm = reward_checkpoint(random_lm, [0.03 * ((i * 7) % 5) - 0.05 for i in range(64)], 0.2, tmp_path / "rm",
                           stats={"mean": 0.1, "std": 3.0})
    (tmp_path / "p.jsonl").write_text(json.dumps({"prompt": "Which kingdom?"}) + "\n")
    want = evaluate_checkpoint(lm, prompts=str(tmp_path / "p.jsonl"), rm=str(rm), max_new_tokens=max_new,
                               decodings=("greedy",))["greedy"]["rm_score"]
    (got,) = compare(ModelCache(), [(None, str(lm))], "Which kingdom?", _sampling(max_new_tokens=max_new), rm=str(rm))
    assert got["finished"] is (max_new == 64) and got["rm_score"] == pytest.approx(want, abs=1e-5)


def test_a_bad_reward_model_costs_the_scores_not_the_answers(scripted, byte_tok, tmp_path):
    from workbench.eval.playground import ModelCache, compare

    lm = scripted(byte_tok.encode("ok"))
    results = compare(ModelCache(), [(None, str(lm)), (None, str(tmp_path / "missing"))], "hi", _sampling(), rm=str(lm))
    assert results[0]["text"] == "ok" and results[0]["rm_score"] is None
    assert "not a reward model" in results[0]["rm_error"]
    assert "missing" in results[1]["error"]  # a model that does not load: its own column says why


def test_a_long_chat_leaves_out_the_oldest_turns(scripted, byte_tok):
    from workbench.eval.playground import ModelCache, chat_render

    lm = ModelCache().language_model(str(scripted(byte_tok.encode("ok"))))
    n = lm.model.cfg.max_seq_len // 3
    history = [{"role": r, "content": "x" * n} for r in ("user", "assistant", "user", "assistant")]
    history.append({"role": "user", "content": "last"})
    ids, dropped = lm.fit_chat(history, "sys", 16)
    assert dropped >= 2 and len(ids) + 16 <= lm.model.cfg.max_seq_len
    assert ids == chat_render(byte_tok, history[dropped:], "sys").input_ids  # the system message stays
    assert lm.fit_chat(history[-1:], None, 16) == (lm.chat_ids(history[-1:]), 0)


def test_a_pipeline_root_stands_for_its_rows_up_to_four(scripted, byte_tok, tmp_path):
    from workbench.eval.playground import expand_specs

    root = tmp_path / "root"
    for name in ("pretrain", "sft", "dpo", "ppo", "ppo-nokl"):
        (root / name / "checkpoints").mkdir(parents=True)
    rows = [{"label": lab, "stage": st} for lab, st in
            (("base", "pretrain"), ("SFT", "sft"), ("DPO", "dpo"), ("PPO", "ppo"), ("PPO (no KL)", "ppo-nokl"))]
    (root / "report.json").write_text(json.dumps({"rows": rows}))
    specs, note = expand_specs(str(root))
    assert specs == [(r["label"], str(root / r["stage"])) for r in rows[:4]] and "PPO (no KL)" in note
    specs, note = expand_specs(f"{root / 'sft'} {root / 'dpo'}")
    assert [s for _, s in specs] == [str(root / "sft"), str(root / "dpo")] and note is None
    from workbench.errors import WorkbenchError

    with pytest.raises(WorkbenchError, match="at most 4"):
        expand_specs(" ".join(["a"] * 5))
