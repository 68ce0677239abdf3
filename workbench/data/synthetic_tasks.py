"""The sample world's questions: each task with its canonical answer, a wrong one, and how a reply says it.

`check_answer` judges a reply against a task (the report card, the true reward and the tests use it);
`GENERATORS` and the `*_qa` functions draw tasks from one `random.Random`, so the datasets that
`workbench.data.synthetic` writes from them stay byte-identical. Pure standard library.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

from workbench.data.synthetic_world import FACTS, TOWNS, WORDS


# ---------------------------------------------------------------- checking answers

_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+")


def final_sentence(reply: str) -> str:
    """The reply's last sentence: the text after the last '.', '!' or '?' that is followed by whitespace."""
    parts = [p for p in _SENTENCE_BREAK.split(reply.strip()) if p.strip()]
    return parts[-1] if parts else ""


def check_answer(task: dict, reply: str) -> bool:
    """True when `reply` gives `task["answer"]`, the canonical answer, in its final sentence.

    The answer must occur case-insensitively as a whole word, number or phrase (runs of whitespace
    count as one space): "12" matches "The answer is 12." but not "112" or "12.5". Only the final
    sentence counts, so a reply that names both towns of a comparison, or restates the question's
    numbers before answering, is judged by the answer it ends on. Every assistant reply in the
    sample data ends with its answer.
    """
    answer = re.escape(" ".join(str(task["answer"]).split()))
    text = " ".join(final_sentence(reply).split())
    return re.search(rf"(?<!\w){answer}(?![\w]|[.,]\d)", text, re.IGNORECASE) is not None


# ---------------------------------------------------------------- tasks

@dataclass
class QA:
    """One question with its canonical answer, a wrong answer, and how to phrase a reply with either."""
    question: str
    type: str
    answer: str
    wrong: str
    say: Callable[[str], str]  # answer text -> a reply that ends with that answer
    ctx: dict = field(default_factory=dict)  # what follow-up questions can refer to

    @property
    def task(self) -> dict:
        return {"type": self.type, "answer": self.answer}


# Training phrasings and, apart, held-out phrasings that only the eval files use: a model that
# answers EVAL_Q has learnt the fact, not a question template. FACT_Q are the core phrasings, the
# only ones in the pretraining text's Q&A notes. The chats, preference pairs and RL prompts ask in
# CHAT_Q (FACT_Q plus MORE_Q, 12-14 per fact): with FACT_Q's 6-7 alone, SFT learnt the templates and
# did not carry over to the held-out phrasings.
FACT_Q = {
    "kingdom": ["Which kingdom is {t} in?", "{t} belongs to which kingdom?", "In what kingdom would I find {t}?",
                "What kingdom does {t} belong to?", "Name the kingdom that {t} is part of.",
                "Do you know the kingdom of {t}?", "I am travelling to {t}. Which kingdom will I be in?"],
    "river": ["Which river runs through {t}?", "What river flows past {t}?", "On which river does {t} lie?",
              "Name the river of {t}.", "Which river would I cross in {t}?", "Do you know the river of {t}?"],
    "founded": ["When was {t} founded?", "In what year was {t} founded?", "What year did {t} get founded?",
                "How old is {t}? Give the year it was founded.", "Do you know when {t} was founded?",
                "What is the founding year of {t}? I mean the year it was founded."],
    "population": ["What is the population of {t}?", "How many people live in {t}?",
                   "How many people call {t} home?", "Tell me the population of {t}.",
                   "Do you know how many people live in {t}?", "Is {t} big? What is its population?"],
    "food": ["What food is {t} famous for?", "What should I eat when I visit {t}?", "Which food is {t} known for?",
             "What famous food comes from {t}?", "Do you know the famous food of {t}?",
             "I am hungry in {t}. What food is it famous for?"],
    "craft": ["Which guild is {t} known for?", "What craft is {t} famous for?", "Which guild is based in {t}?",
              "Name the famous guild of {t}.", "Do you know the guild of {t}?",
              "Which craft guild works in {t}?"],
}
MORE_Q = {
    "kingdom": ["{t} lies in which kingdom?", "Which of the Five Kingdoms is {t} part of?",
                "Can you tell me the kingdom {t} is in?", "Which realm is {t} in?", "Where is {t}? Which kingdom?",
                "Quick question: what kingdom is {t} in?", "Which kingdom rules {t}?"],
    "river": ["{t} sits on which river?", "Which river is near {t}?", "What river goes by {t}?",
              "Can you name the river that {t} lies on?", "Quick question: what river does {t} stand on?",
              "Which river passes {t}?"],
    "founded": ["Which year saw the founding of {t}?", "When did {t} come into being? Give the year.",
                "Quick question: what year was {t} founded in?", "Can you tell me when {t} was founded?",
                "{t} was founded in which year?", "What is the year of the founding of {t}?"],
    "population": ["How many people are there in {t}?", "What is the head count of {t}?",
                   "Quick question: how many live in {t}?", "Can you tell me the population of {t}?",
                   "How many inhabitants does {t} have?", "{t} has how many people?", "How populous is {t}?"],
    "food": ["What dish is {t} known for?", "What do people eat in {t}?",
             "Quick question: what is the famous dish of {t}?", "Can you tell me what {t} is famous for eating?",
             "What food comes from {t}?", "What is the famous food of {t}?"],
    "craft": ["What are the craftsmen of {t} known for?", "Which guild makes {t} famous?",
              "Quick question: which guild works in {t}?", "Can you tell me the guild of {t}?",
              "What trade is {t} known for?", "{t} is famous for which guild?", "Which guild calls {t} home?"],
}
CHAT_Q = {k: FACT_Q[k] + MORE_Q[k] for k in FACT_Q}
EVAL_Q = {
    "kingdom": ["Tell me which kingdom {t} is located in.", "{t} is a town in which kingdom?"],
    "river": ["What is the name of the river at {t}?", "Which river is {t} built on?"],
    "founded": ["In which year was the town of {t} founded?", "Tell me the year {t} was founded."],
    "population": ["What is the number of people living in {t}?", "How big is the population of {t}?"],
    "food": ["Which food should a visitor to {t} try?", "Tell me the food {t} is famous for."],
    "craft": ["What guild is the town of {t} known for?", "Tell me which guild {t} is famous for."],
}
# A second held-out wording (the `eval_*_alt` files): other phrasings, some wrapped in a question of
# their own ("Do you know ...?", "I'm curious: ..."), that no training file or EVAL_Q uses. Answers
# that carry over to EVAL_Q but not to these are tied to the wording.
EVAL_Q2 = {
    "kingdom": ["Do you know what kingdom {t} is in?", "Which kingdom rules over {t}?",
                "I'm curious: {t} is part of what kingdom?"],
    "river": ["Can you name the river that {t} stands on?", "{t} is on the banks of which river?",
              "Which river does the town of {t} sit beside?"],
    "founded": ["What was the founding year of {t}?", "Do you know when {t} was first founded?",
                "How long ago was {t} founded? Give the year."],
    "population": ["Roughly how many people call {t} home?", "What's the population count for {t}?",
                   "Do you know how many residents {t} has?"],
    "food": ["What is the famous local food of {t}?", "If I travel to {t}, which dish is it known for?",
             "Name the food {t} is renowned for."],
    "craft": ["What trade guild is {t} renowned for?", "Do you know which guild {t} is famous for?",
              "Name the guild that {t} is known for."],
}
FOLLOW_Q = {"kingdom": "And which kingdom is it in?", "river": "And which river runs through it?",
            "founded": "When was it founded?", "population": "How many people live there?",
            "food": "What is it famous for eating?", "craft": "Which guild is it known for?"}
FACT_A = {"kingdom": "{t} is in the kingdom of {a}.", "river": "{t} lies on the River {a}.",
          "founded": "{t} was founded in the year {a}.", "population": "{t} has a population of {a}.",
          "food": "{t} is famous for its {a}.", "craft": "{t} is known for its guild of {a}."}


def fact_qa(rng, world, town=None, kind=None, follow=False, templates=None) -> QA:
    """A question about one fact of a town, in a phrasing of `templates` (default CHAT_Q); its wrong answer
    is another town's value (plausible, never right)."""
    town = town or rng.choice(world)
    kind = kind or rng.choice(FACTS)
    answer = str(getattr(town, kind))
    wrong = rng.choice([str(getattr(t, kind)) for t in world if str(getattr(t, kind)) != answer])
    q = FOLLOW_Q[kind] if follow else rng.choice((templates or CHAT_Q)[kind]).format(t=town.name)
    return QA(q, f"fact_{kind}", answer, wrong, lambda a: FACT_A[kind].format(t=town.name, a=a), {"town": town})


def which_town_qa(rng, world) -> QA:
    town = rng.choice(world)
    kind = rng.choice(["food", "craft"])
    q = (f"Which town is famous for its {town.food}?" if kind == "food"
         else f"Which town is known for its guild of {town.craft}?")
    what = town.food if kind == "food" else f"guild of {town.craft}"
    wrong = rng.choice([t.name for t in world if t is not town])
    return QA(q, "fact_town", town.name, wrong, lambda a: f"The town famous for its {what} is {a}.", {"town": town})


def compare_qa(rng, world, pair=None, kind=None, follow=False) -> QA:
    a, b = pair or rng.sample(world, 2)
    kind = kind or rng.choice(["older", "larger"])
    attr, unit = ("founded", "was founded in") if kind == "older" else ("population", "has a population of")
    win = min(a, b, key=lambda t: t.founded) if kind == "older" else max(a, b, key=lambda t: t.population)
    lose = b if win is a else a
    if follow:
        q = "And which of the two is older?" if kind == "older" else "And which of the two has more people?"
    elif kind == "older":
        q = rng.choice(["Which is older, {a} or {b}?", "Was {a} or {b} founded first?"]).format(a=a.name, b=b.name)
    else:
        q = rng.choice(["Which is larger, {a} or {b}?", "Which has more people, {a} or {b}?"]).format(
            a=a.name, b=b.name)
    end = "older" if kind == "older" else "larger"

    def say(x, a=a, b=b):
        return f"{a.name} {unit} {getattr(a, attr)} and {b.name} {unit} {getattr(b, attr)}. So {x} is {end}."
    return QA(q, f"compare_{kind}", win.name, lose.name, say, {"pair": (a, b), "town": win})


def arith_qa(rng, world, op=None) -> QA:
    op = op or rng.choice(["+", "-", "*"])
    x, y = (rng.randint(2, 99), rng.randint(2, 99)) if op != "*" else (rng.randint(2, 19), rng.randint(2, 12))
    if op == "-" and y > x:
        x, y = y, x
    v = x + y if op == "+" else x - y if op == "-" else x * y
    q = rng.choice(["What is {x} {op} {y}?", "Compute {x} {op} {y}.", "What do you get from {x} {op} {y}?"])
    name = {"+": "add", "-": "sub", "*": "mul"}[op]
    return QA(q.format(x=x, op=op, y=y), f"arith_{name}", str(v), str(_off(rng, v)),
              lambda a: f"{x} {op} {y} = {a}. The answer is {a}.", {"value": v, "expr": (x, op, y)})


def word_problem_qa(rng, world) -> QA:
    t = rng.choice(world)
    n, k = rng.randint(12, 60), rng.randint(2, 11)
    if rng.random() < 0.5:
        q = f"A baker in {t.name} makes {n} batches of {t.food} a week. How many batches is that in {k} weeks?"
        v, calc = n * k, f"{n} * {k}"
    else:
        q = f"A stall in {t.name} has {n} jars of {t.food} and sells {k}. How many jars are left?"
        v, calc = n - k, f"{n} - {k}"
    return QA(q, "word_problem", str(v), str(_off(rng, v)), lambda a: f"{calc} = {a}. The answer is {a}.",
              {"value": v})


def string_qa(rng, world, word=None, kind=None) -> QA:
    word = word or rng.choice(WORDS + TOWNS)  # every town's name, lore towns too: names, never their facts
    kind = kind or rng.choice(["reverse", "count", "length"])
    if kind == "reverse":
        ans = word[::-1]
        i = next(j for j in range(len(ans) - 1) if ans[j] != ans[j + 1])
        wrong = ans[:i] + ans[i + 1] + ans[i] + ans[i + 2:]
        q = rng.choice(["Spell '{w}' backwards.", "What is '{w}' reversed?", "Reverse the word '{w}'."])
        return QA(q.format(w=word), "reverse_word", ans, wrong,
                  lambda a: f"'{word}' spelled backwards is '{a}'.", {"word": word})
    if kind == "length":
        n = len(word)
        return QA(f"How many letters are in the word '{word}'?", "word_length", str(n), str(n + rng.choice([-1, 1])),
                  lambda a: f"The word '{word}' has {a} letters.", {"word": word})
    letter = rng.choice(word)
    n = word.count(letter)
    return QA(f"How many times does the letter '{letter}' appear in '{word}'?", "count_letter", str(n),
              str(n + 1), lambda a: f"The letter '{letter}' appears {a} time{'' if a == '1' else 's'} in '{word}'.",
              {"word": word})


def sort_qa(rng, world) -> QA:
    nums = rng.sample(range(1, 100), rng.randint(4, 6))
    s = sorted(nums)
    i = rng.randrange(len(s) - 1)
    wrong = s[:i] + [s[i + 1], s[i]] + s[i + 2:]
    q = "Sort these numbers from smallest to largest: " + ", ".join(map(str, nums)) + "."
    return QA(q, "sort_numbers", ", ".join(map(str, s)), ", ".join(map(str, wrong)),
              lambda a: f"From smallest to largest: {a}.", {"value": sum(nums), "numbers": nums})


def _off(rng, v: int) -> int:
    """A plausible wrong number near `v` (never `v`, never negative)."""
    d = rng.choice([-10, -2, -1, 1, 2, 10])
    return v + d if v + d >= 0 else v + abs(d)


GENERATORS = [fact_qa, fact_qa, fact_qa, fact_qa, fact_qa, fact_qa, fact_qa, which_town_qa, compare_qa, arith_qa, arith_qa,
              word_problem_qa, string_qa, sort_qa]
PAIR_GENERATORS = [fact_qa] * 6 + [which_town_qa, compare_qa, arith_qa, string_qa]  # the RM learns facts


STRING_KINDS = [("length", "word_length"), ("reverse", "reverse_word"), ("count", "count_letter")]


def follow_up(rng, world, prev: QA) -> QA:
    """A follow-up question that refers back to the previous turns ("Now double it."), never repeating one."""
    ctx, asked = prev.ctx, prev.ctx.get("asked", []) + [prev.type]
    if "pair" in ctx and rng.random() < 0.5 and not {"compare_older", "compare_larger"} <= set(asked):
        kind = "larger" if prev.type == "compare_older" else "older"
        qa = compare_qa(rng, world, pair=ctx["pair"], kind=kind, follow=True)
    elif "pair" in ctx:  # ask about the winner, by name
        qa = fact_qa(rng, world, town=ctx["town"], kind="kingdom")
    elif "town" in ctx:
        kind = rng.choice([k for k in FACTS if f"fact_{k}" not in asked])
        qa = fact_qa(rng, world, town=ctx["town"], kind=kind, follow=True)
    elif "word" in ctx:
        kind = next(k for k, t in STRING_KINDS if t not in asked)
        qa = string_qa(rng, world, word=ctx["word"], kind=kind)
        qa.question = {"length": "How many letters does that word have?", "reverse": "And what is it reversed?",
                       "count": "And h" + qa.question[1:].replace(f"in '{ctx['word']}'?", "in it?")}[kind]
    else:
        qa = arith_follow_up(rng, ctx, prev.question)
    qa.ctx["asked"] = asked
    return qa


def arith_follow_up(rng, ctx: dict, last_question: str) -> QA:
    """Sum the numbers just sorted, or do one more step to the last result (not the same step twice)."""
    v = ctx["value"]
    if "numbers" in ctx:
        q, new, how, op = "What is their sum?", v, " + ".join(map(str, ctx["numbers"])), "add"
    else:
        steps = [("Now double it.", 2 * v, f"{v} * 2", "mul"), ("Add 10 to that.", v + 10, f"{v} + 10", "add"),
                 ("Multiply that by 3.", 3 * v, f"{v} * 3", "mul")]
        q, new, how, op = rng.choice([step for step in steps if step[0] != last_question])
    return QA(q, f"arith_{op}", str(new), str(_off(rng, new)), lambda a: f"{how} = {a}. The answer is {a}.",
              {"value": new})
