"""The world's true reward and its rude/refusal detectors (workbench/data/synthetic_reward.py)."""

import json
import random

import pytest

from tests.conftest import SAMPLE
from workbench.data import synthetic
from workbench.data.synthetic_reward import is_refusal, is_rude, true_reward


def _rows(name):
    return [json.loads(line) for line in (SAMPLE / name).read_text(encoding="utf-8").splitlines()]


def test_detectors_catch_every_rejected_answer_the_generator_writes():
    """Every rude / refusing rejected answer synthetic.py can write, from many seeds."""
    world = synthetic.build_world(random.Random(0))
    for seed in range(200):
        rng = random.Random(seed)
        qa = rng.choice(synthetic.GENERATORS)(rng, world)
        assert is_rude(synthetic.rejected(rng, qa, "rude"))
        assert is_refusal(synthetic.rejected(rng, qa, "refusal"))
        polite = synthetic.polite(rng, qa)
        assert not is_rude(polite) and not is_refusal(polite)


def test_sample_preferences_are_ranked_by_the_true_reward():
    """On preference.jsonl the chosen answer is worth more than the rejected one, every time, and the
    detectors flag exactly the rejected answers of their kind. A `runs_on` rejected answer stands for a
    reply that never closed its turn."""
    rows = _rows("preference.jsonl")
    for r in rows:
        ended = r["rejected_kind"] != "runs_on"
        assert true_reward(r["task"], r["chosen"], True) > true_reward(r["task"], r["rejected"], ended), r
        assert is_rude(r["rejected"]) == (r["rejected_kind"] == "rude"), r["rejected"]
        assert is_refusal(r["rejected"]) == (r["rejected_kind"] == "refusal"), r["rejected"]
        assert not is_rude(r["chosen"]) and not is_refusal(r["chosen"]), r["chosen"]


@pytest.mark.parametrize("reply", ["That's a stupid question.", "Figure it out yourself: 12.",
                                   "Whatever. It is 12.", "Google it.", "You're wasting my time."])
def test_general_rudeness(reply):
    assert is_rude(reply) and not is_refusal(reply)


@pytest.mark.parametrize("reply", ["I cannot help with that.", "As an AI language model, I can't say.",
                                   "I’m sorry, but I won’t answer that.", "I'm unable to provide that information."])
def test_general_refusals(reply):
    assert is_refusal(reply) and not is_rude(reply)


@pytest.mark.parametrize("reply", ["Whatever you choose, Varnholt is in Eld.", "It is obvious from the records: 1266.",
                                   "Sorry for the wait! The answer is 12.", "I can help with that. The answer is 12."])
def test_polite_replies_are_not_flagged(reply):
    assert not is_rude(reply) and not is_refusal(reply)


def test_the_documented_scale():
    task = {"type": "arith_add", "answer": "15"}
    good = "12 + 3 = 15. The answer is 15."
    assert true_reward(task, good, True) == 1.0
    assert true_reward(task, "The answer is 16.", True) == 0.0
    assert true_reward(task, "Ugh, fine. " + good, True) == 0.5
    assert true_reward(task, "I'm sorry, but I can't help with that request.", True) == -0.5
    assert true_reward(task, good, False) == 0.5
    assert true_reward(task, "Whatever. I can't help with that.", False) == -1.5
    assert true_reward(None, "Hello!", True) == 0.0  # no answer: only manners and ending count
    # all else equal: correct beats wrong, polite beats rude, ending beats running on; one fault
    # costs less than a wrong answer
    assert true_reward(task, "Ugh, fine. " + good, True) > true_reward(task, "The answer is 16.", True)
    assert true_reward(task, good, False) > true_reward(task, "The answer is 16.", True)
    assert true_reward(task, "The answer is 16.", True) > true_reward(task, "Ugh. The answer is 16.", True)
    assert true_reward(task, good, True) == true_reward(dict(task), good, True)  # deterministic, pure
