"""Metrics on generated replies and on reward-model scores: pure functions, no models.

    from workbench.eval.metrics import Reply, summarize, is_correct, final_answer, pairwise
    r = Reply("12 + 3 = 15. The answer is 15.", ended=True, im_start=False, length=14,
              task={"type": "arith_add", "answer": "15"})
    summarize([r])          # {"n": 1, "compliance": 1.0, "accuracy": 1.0, "true_reward": 1.0, ...}
    final_answer("... so she has 72 left.\\n#### 72")   # "72" (GSM8K); else the last number

A reply is *compliant* with the chat format when it ends its turn with <|im_end|> within the token
budget and never emits <|im_start|> (a model that does has started writing the user's next turn).
Accuracy and the true reward are means over the replies whose prompt carries an answer; with none
(LIMA-style prompts) they are None, not 0.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass

from workbench.data.synthetic_tasks import check_answer
from workbench.data.synthetic_reward import CORRECT, is_refusal, is_rude, true_reward

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


@dataclass
class Reply:
    text: str  # the assistant's content: what was generated before the first special token
    ended: bool  # <|im_end|> within the budget
    im_start: bool  # <|im_start|> anywhere in what was generated
    length: int  # generated tokens, the stop token included
    task: dict | None = None  # {"answer", "type", ...} (see task_of) or None

    @property
    def compliant(self) -> bool:
        return self.ended and not self.im_start

    @property
    def correct(self) -> bool | None:
        return is_correct(self.task, self.text)

    @property
    def reward(self) -> float | None:
        """The world's true reward, for replies to prompts with an answer (else None)."""
        if self.task is None:
            return None
        if self.task.get("format") != "gsm8k":
            return true_reward(self.task, self.text, self.compliant)
        # GSM8K: the correctness term by the final-number match that accuracy uses ("1,000" is 1000)
        return true_reward(None, self.text, self.compliant) + (CORRECT if self.correct else 0.0)


def task_of(meta: dict) -> dict | None:
    """The task a record's extra fields describe: `task: {answer, type}` (the sample world), or a bare
    `answer` (a GSM8K-style "... #### 42" is reduced to its final answer, type "gsm8k"); None without one.
    Raises ValueError (with what is wrong) for a task or answer of the wrong type."""
    task = meta.get("task")
    if task is not None:
        if not isinstance(task, dict):
            raise ValueError(f"'task' must be an object with an 'answer', got {type(task).__name__}")
        if task.get("answer") is None:
            return None
        answer = task["answer"]
    elif meta.get("answer") is not None:
        answer, task = meta["answer"], {}
    else:
        return None
    if isinstance(answer, bool) or not isinstance(answer, (str, int, float)):
        raise ValueError(f"'answer' must be a string or a number, got {type(answer).__name__}")
    answer = str(answer)
    if "####" in answer:
        final = final_answer(answer)
        if final is None:
            raise ValueError(f"'answer' has '####' but no final answer after it: {answer[-60:]!r}")
        return {**task, "type": task.get("type", "gsm8k"), "answer": final, "format": "gsm8k"}
    if not answer.strip():
        raise ValueError("'answer' is empty")
    return {**task, "type": task.get("type", "other"), "answer": answer}


def final_answer(text: str) -> str | None:
    """GSM8K's convention: the text after the last '####' (commas dropped); otherwise the last number."""
    if "####" in text:
        tail = text.rsplit("####", 1)[1].strip().replace(",", "")
        return tail.split()[0].rstrip(".") if tail else None
    numbers = _NUMBER.findall(text)
    return numbers[-1].replace(",", "").rstrip(".") if numbers else None


def _same_number(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return False
    try:
        return float(a) == float(b)
    except ValueError:
        return a.strip().lower() == b.strip().lower()


def is_correct(task: dict | None, reply: str) -> bool | None:
    """None without an answer; GSM8K tasks compare final numbers; others use the world's check_answer."""
    if task is None or task.get("answer") is None:
        return None
    if task.get("format") == "gsm8k":
        return _same_number(final_answer(reply), task["answer"])
    return check_answer(task, reply)


def _mean(xs: list) -> float | None:
    return sum(xs) / len(xs) if xs else None


def summarize(replies: list[Reply], kl: list[float] | None = None, rm: list[float] | None = None) -> dict:
    """The per-decoding block of `evaluate_checkpoint`'s result (rates are fractions in [0, 1])."""
    n = len(replies)
    if n == 0:
        raise ValueError("no replies to summarize")
    judged = [(r.task.get("type", "other"), r.correct) for r in replies if r.task is not None]
    by_type = defaultdict(list)
    for kind, ok in judged:
        by_type[kind].append(ok)
    out = {
        "n": n,
        "compliance": sum(r.compliant for r in replies) / n,
        "eos_rate": sum(r.ended for r in replies) / n,
        "im_start_rate": sum(r.im_start for r in replies) / n,
        "accuracy": _mean([ok for _, ok in judged]),
        "accuracy_by_type": {k: sum(v) / len(v) for k, v in sorted(by_type.items())},
        "length": sum(r.length for r in replies) / n,
        "rude_rate": sum(is_rude(r.text) for r in replies) / n,
        "refusal_rate": sum(is_refusal(r.text) for r in replies) / n,
        "true_reward": _mean([r.reward for r in replies if r.task is not None]),
    }
    if rm is not None:
        out["rm_score"] = _mean(rm)
    if kl is not None:
        out["kl_ref"] = _mean(kl)
    return out


def sequence_kl(logprobs, ref_logprobs, mask):
    """Per answer: the sum over its tokens of log p_model - log p_ref ([B], nats). On the model's own
    samples its mean estimates KL(model || ref) (Schulman's k1: unbiased; one answer may be negative)."""
    return ((logprobs - ref_logprobs) * mask.to(logprobs.dtype)).sum(-1)


def pairwise(chosen: list[float], rejected: list[float], kinds: list[str | None]) -> dict:
    """Reward-model accuracy on preference pairs (chosen scored above rejected), overall and by
    `rejected_kind` (pairs without one count only overall), and the mean margin."""
    if not chosen or len(chosen) != len(rejected) or len(kinds) != len(chosen):
        raise ValueError("pairwise needs as many chosen as rejected scores and kinds, at least one")
    wins = [c > r for c, r in zip(chosen, rejected)]
    by_kind = defaultdict(list)
    for kind, win in zip(kinds, wins):
        if kind is not None:
            by_kind[str(kind)].append(win)
    return {"n": len(wins), "accuracy": sum(wins) / len(wins),
            "by_kind": {k: sum(v) / len(v) for k, v in sorted(by_kind.items())},
            "margin": sum(c - r for c, r in zip(chosen, rejected)) / len(wins)}
