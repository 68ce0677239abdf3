"""The task world's TRUE reward: what a reply is worth, computed by a program, not learned.

    from workbench.data.synthetic_reward import true_reward, is_rude, is_refusal
    true_reward({"type": "arith_add", "answer": "15"}, "12 + 3 = 15. The answer is 15.", ended=True)   # 1.0
    true_reward(task, "Ugh, fine. The answer is 15.", ended=True)                                    # 0.5

The scale (deterministic, a sum of three terms):

    correctness   +1.0  the reply gives the task's answer (`synthetic_tasks.check_answer`), 0 when it does not;
                        a task without an answer (or `task=None`) contributes 0 either way
    manners       -0.5  the reply is rude (`is_rude`), and -0.5 when it refuses (`is_refusal`)
    ending        -0.5  the reply does not end its turn (`ended=False`: no <|im_end|> within the
                        budget, or it ran on into another <|im_start|> turn)

so a correct, polite reply that ends is worth 1.0 (the best), a wrong polite one 0, and the worst
-1.5. All else equal, correct beats wrong, polite beats rude or refusing and ending beats running
on; each fault costs half a correct answer, so a correct reply with one fault (0.5) still beats a
faultless wrong one (0). This is the yardstick DPO and PPO are judged by: the reward model only
ever sees preference pairs, this function knows the answers.

The detectors catch every rude opener and refusal `synthetic.py` writes into the rejected answers of
preference.jsonl (its RUDE and REFUSALS lists) and common general phrasings of the same two things.
Pure standard library.
"""

from __future__ import annotations

import re

from workbench.data.synthetic import REFUSALS, RUDE
from workbench.data.synthetic_tasks import check_answer

CORRECT, RUDE_PENALTY, REFUSAL_PENALTY, RUN_ON_PENALTY = 1.0, 0.5, 0.5, 0.5


def _normal(text: str) -> str:
    """Lower case, curly apostrophes straightened, runs of whitespace as one space."""
    return " ".join(text.replace("\u2019", "'").replace("\u2018", "'").lower().split())


def _phrases(lines: list[str]) -> tuple[str, ...]:
    """The generator's phrases, their punctuation kept ("whatever." is rude, "whatever you like" is not)."""
    return tuple(_normal(line) for line in lines)


_RUDE_SEEN = _phrases(RUDE)
_REFUSAL_SEEN = _phrases(REFUSALS)
_RUDE_GENERAL = re.compile("|".join([
    r"\bugh\b", r"\bsilly question\b", r"\b(stupid|dumb|pointless) question\b", r"\bidiot", r"\bstupid\b",
    r"\blook (it|this|that) up yourself\b", r"\bfigure it out yourself\b", r"\bgoogle it\b",
    r"\bwast(e|ing) (of )?my time\b", r"\bshut up\b", r"\bduh\b", r"\bshouldn't have to explain\b",
    r"(^|[.!?] )whatever[.!]", r"\bobviously,? (you|anyone)\b", r"\beven a child\b", r"\bhow do you not know\b",
]))
_REFUSAL_GENERAL = re.compile("|".join([
    r"\bi'?m sorry,? but i (can'?t|cannot|won'?t|am unable|'m unable)\b",
    r"\bi (can'?t|cannot|won'?t|will not) (help|assist|answer|provide)\b",
    r"\bi'?m (not able|unable) to (help|assist|answer|provide)\b", r"\bi am (not able|unable) to\b",
    r"\bas an ai\b", r"\bas a language model\b", r"\bi don'?t have (any )?information about\b",
    r"\bi('d| would) rather not (answer|say|help|discuss)\b", r"\bnot something i can (help|assist)\b",
    r"\bplease consult another source\b", r"\bi must decline\b",
]))


def is_rude(reply: str) -> bool:
    """Does the reply insult the user or grumble at the question (e.g. "Ugh, fine.", "Whatever.")?"""
    text = _normal(reply)
    return any(p in text for p in _RUDE_SEEN) or _RUDE_GENERAL.search(text) is not None


def is_refusal(reply: str) -> bool:
    """Does the reply decline to answer (e.g. "I'm sorry, but I can't help with that request.")?"""
    text = _normal(reply)
    return any(p in text for p in _REFUSAL_SEEN) or _REFUSAL_GENERAL.search(text) is not None


def true_reward(task: dict | None, reply: str, ended: bool) -> float:
    """The reply's true reward on the scale in the module docstring (1.0 best, -1.5 worst)."""
    reward = 0.0
    if task is not None and task.get("answer") is not None and check_answer(task, reply):
        reward += CORRECT
    if is_rude(reply):
        reward -= RUDE_PENALTY
    if is_refusal(reply):
        reward -= REFUSAL_PENALTY
    if not ended:
        reward -= RUN_ON_PENALTY
    return reward
