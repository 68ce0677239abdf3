"""Metrics on hand-written replies (workbench/eval/metrics.py): every number is known in advance."""

import math

import pytest
import torch

from workbench.eval.metrics import Reply, final_answer, is_correct, pairwise, sequence_kl, summarize, task_of

RIVER = {"type": "fact_river", "answer": "Vell"}
SUM = {"type": "arith_add", "answer": "15"}


def test_compliance_needs_the_end_and_no_new_turn():
    assert Reply("Yes.", ended=True, im_start=False, length=3).compliant
    assert not Reply("Yes.", ended=False, im_start=False, length=64).compliant  # ran out of budget
    assert not Reply("Yes.", ended=True, im_start=True, length=9).compliant  # wrote the user's turn too


@pytest.mark.parametrize("task, reply, expected", [
    (RIVER, "Yarrowdell lies on the River Vell.", True),
    (RIVER, "Yarrowdell lies on the River Amber.", False),
    (RIVER, "Not the Vell. It is the Amber.", False),  # only the final sentence counts
    (SUM, "12 + 3 = 15. The answer is 15.", True),
    (SUM, "The answer is 115.", False),
    (None, "Anything at all.", None),
])
def test_accuracy_of_hand_written_replies(task, reply, expected):
    assert is_correct(task, reply) is expected


def test_gsm8k_final_answers():
    assert final_answer("She sells 16 - 3 - 4 = 9 eggs, 9 * 2 = 18 dollars.\n#### 18") == "18"
    assert final_answer("In all 1,250 apples, then 3.5 more") == "3.5"
    assert final_answer("no number here") is None
    task = task_of({"answer": "Natalia sold 48/2 = 24 clips in May.\n#### 72"})
    assert task == {"type": "gsm8k", "answer": "72", "format": "gsm8k"}
    assert is_correct(task, "48 + 24 = 72 clips.") and is_correct(task, "#### 72.0")
    assert not is_correct(task, "She sold 72 clips, then 5 more.")  # the last number decides
    assert task_of({"answer": 12}) == {"type": "other", "answer": "12"}


def test_true_reward_agrees_with_accuracy_on_gsm8k():
    """"1,000" and "1000.0" are the GSM8K answer 1000 for accuracy, so for the true reward too."""
    task = task_of({"answer": "He makes 10 * 100 = 1000.\n#### 1,000"})
    for reply, correct in (("So he makes 1,000 dollars.", True), ("#### 1000.0", True), ("He makes 999.", False)):
        r = Reply(reply, ended=True, im_start=False, length=5, task=task)
        assert r.correct is correct and r.reward == (1.0 if correct else 0.0)
        assert summarize([r])["true_reward"] == summarize([r])["accuracy"]


def test_task_of_records():
    assert task_of({}) is None and task_of({"prompt_id": "x"}) is None  # LIMA / UltraFeedback rows
    assert task_of({"task": RIVER, "answer": "Vell"}) == RIVER
    for bad in ({"task": "Vell"}, {"answer": ["a"]}, {"answer": " "}, {"answer": "no final #### "}):
        with pytest.raises(ValueError):
            task_of(bad)


def test_summarize_by_hand():
    replies = [
        Reply("The answer is 15.", True, False, 6, SUM),  # correct, polite, ended: reward 1
        Reply("Ugh, fine. The answer is 15.", True, False, 10, SUM),  # correct but rude: 0.5
        Reply("I'm sorry, but I can't help with that request.", True, False, 12, RIVER),  # refusal: -0.5
        Reply("It is the Vell", False, False, 64, RIVER),  # correct but ran on: 0.5
        Reply("Hello there.", True, True, 8, None),  # no answer: not judged; emitted <|im_start|>
    ]
    s = summarize(replies)
    assert s["n"] == 5
    assert s["compliance"] == 3 / 5 and s["eos_rate"] == 4 / 5 and s["im_start_rate"] == 1 / 5
    assert s["accuracy"] == 3 / 4
    assert s["accuracy_by_type"] == {"arith_add": 1.0, "fact_river": 0.5}
    assert s["length"] == (6 + 10 + 12 + 64 + 8) / 5
    assert s["rude_rate"] == 1 / 5 and s["refusal_rate"] == 1 / 5
    assert s["true_reward"] == pytest.approx((1 + 0.5 - 0.5 + 0.5) / 4)
    assert "rm_score" not in s and "kl_ref" not in s
    with_extras = summarize(replies, kl=[1.0, 2.0, 3.0, 4.0, 5.0], rm=[0.5] * 5)
    assert with_extras["kl_ref"] == 3.0 and with_extras["rm_score"] == 0.5


def test_no_answers_means_none_not_zero():
    s = summarize([Reply("Sure, here is a poem.", True, False, 7, None)])
    assert s["accuracy"] is None and s["true_reward"] is None and s["accuracy_by_type"] == {}
    assert s["compliance"] == 1.0


def test_sequence_kl_sums_masked_answer_tokens():
    lp = torch.tensor([[-0.1, -0.2, -9.0], [-1.0, -1.0, -1.0]])
    ref = torch.tensor([[-0.5, -0.2, -0.1], [-1.0, -3.0, -1.0]])
    mask = torch.tensor([[True, True, False], [True, True, True]])
    assert sequence_kl(lp, ref, mask).tolist() == pytest.approx([0.4, 2.0])
    assert sequence_kl(lp, lp, mask).abs().sum() == 0


def test_pairwise_accuracy_by_kind():
    out = pairwise([2.0, 1.0, 0.0, 3.0], [1.0, 2.0, -1.0, 0.0], ["wrong", "wrong", "rude", None])
    assert out["n"] == 4 and out["accuracy"] == 0.75
    assert out["by_kind"] == {"rude": 1.0, "wrong": 0.5}  # the unlabelled pair counts overall only
    assert math.isclose(out["margin"], (1 - 1 + 1 + 3) / 4)
