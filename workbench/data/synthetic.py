"""Deterministic generator of the project's sample datasets; run `python -m workbench.data.synthetic --out sample_data`.

Everything in `sample_data/` is written by this module from a fixed seed: no third-party text.
The data lives in a small fictional "task world" -- 24 towns in five kingdoms, each with a river,
a founding year, a population, a famous food and a guild -- and every question has a short
canonical answer that a program can check (`check_answer`), so rewards and report cards can be
computed automatically. The pretraining corpus (`text.jsonl`) states the same facts the chats ask
about, so a model pretrained on it can later answer them.

Output is byte-identical across runs and Python 3.10-3.13: one `random.Random(seed)` drives every
choice, nothing iterates over a set or uses `hash()`, and JSON keys are written in a fixed order.
Pure standard library.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

DESCRIPTION = "Write the project's sample datasets (deterministic, from a seed)."

TOWNS = ["Varnholt", "Brinmoor", "Caldreth", "Dunvale", "Eskerby", "Fenwatch", "Gildmere", "Harrowdeep",
         "Ivelton", "Jessamore", "Kestrelby", "Lowmarch", "Mirrowen", "Nettlefold", "Orrinsby", "Pellwater",
         "Quarrow", "Rookhaven", "Sablewick", "Thistlecombe", "Umberlee", "Vexley", "Wrenford", "Yarrowdell"]
KINGDOMS = ["Eld", "Morvane", "Quillon", "Brask", "Saradel"]
RIVERS = ["Amber", "Vell", "Oska", "Linnet", "Corrow", "Tamsin", "Drae", "Ulm"]
FOODS = ["plum dumplings", "smoked eel", "honey bread", "barley stew", "salt cakes", "pepper cheese",
         "onion tarts", "walnut loaf", "pickled herring", "apple fritters", "mushroom pie", "lentil soup",
         "rye biscuits", "cherry pudding", "roast chestnuts", "goat cheese", "ginger buns", "leek broth",
         "blackberry jam", "oat porridge", "fried trout", "carrot cake", "mutton stew", "pear cider"]
CRAFTS = ["glassblowers", "rope makers", "clockmakers", "weavers", "bell founders", "potters", "tanners",
          "shipwrights", "candle makers", "bookbinders", "blacksmiths", "dyers", "coopers", "masons",
          "lacemakers", "brewers", "saddlers", "mapmakers", "jewellers", "millers", "tilers", "fletchers",
          "felt makers", "lantern makers"]
WORDS = ["lantern", "barley", "meadow", "thimble", "copper", "willow", "orchard", "candle", "falcon", "mirror",
         "banner", "harbor", "ember", "kettle", "saddle", "parsnip", "bramble", "castle", "ferry", "quill"]
FACTS = ["kingdom", "river", "founded", "population", "food", "craft"]


@dataclass(frozen=True)
class Town:
    name: str
    kingdom: str
    river: str
    founded: int
    population: int
    food: str
    craft: str


def build_world(rng: random.Random) -> list[Town]:
    """The 24 towns, their facts fixed by `rng`; kingdoms get 4-5 towns each, years and sizes are unique."""
    kingdoms = [KINGDOMS[i % len(KINGDOMS)] for i in range(len(TOWNS))]
    rng.shuffle(kingdoms)
    years = rng.sample(range(300, 1400), len(TOWNS))
    pops = [10 * p for p in rng.sample(range(80, 6000), len(TOWNS))]
    foods, crafts = FOODS[:], CRAFTS[:]
    rng.shuffle(foods)
    rng.shuffle(crafts)
    return [Town(name, kingdoms[i], rng.choice(RIVERS), years[i], pops[i], foods[i], crafts[i])
            for i, name in enumerate(TOWNS)]


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


FACT_Q = {
    "kingdom": ["Which kingdom is {t} in?", "{t} belongs to which kingdom?", "In what kingdom would I find {t}?"],
    "river": ["Which river runs through {t}?", "What river flows past {t}?"],
    "founded": ["When was {t} founded?", "In what year was {t} founded?"],
    "population": ["What is the population of {t}?", "How many people live in {t}?"],
    "food": ["What food is {t} famous for?", "What should I eat when I visit {t}?"],
    "craft": ["Which guild is {t} known for?", "What craft is {t} famous for?"],
}
FOLLOW_Q = {"kingdom": "And which kingdom is it in?", "river": "And which river runs through it?",
            "founded": "When was it founded?", "population": "How many people live there?",
            "food": "What is it famous for eating?", "craft": "Which guild is it known for?"}
FACT_A = {"kingdom": "{t} is in the kingdom of {a}.", "river": "{t} lies on the River {a}.",
          "founded": "{t} was founded in the year {a}.", "population": "{t} has a population of {a}.",
          "food": "{t} is famous for its {a}.", "craft": "{t} is known for its guild of {a}."}


def fact_qa(rng, world, town=None, kind=None, follow=False) -> QA:
    town = town or rng.choice(world)
    kind = kind or rng.choice(FACTS)
    answer = str(getattr(town, kind))
    if kind in ("founded", "population"):
        wrong = str(int(answer) + rng.choice([-1, 1]) * rng.randint(1, 20) * (10 if kind == "population" else 1))
    else:
        wrong = rng.choice([str(getattr(t, kind)) for t in world if str(getattr(t, kind)) != answer])
    q = FOLLOW_Q[kind] if follow else rng.choice(FACT_Q[kind]).format(t=town.name)
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
    word = word or rng.choice(WORDS + [t.name.lower() for t in world])
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


GENERATORS = [fact_qa, fact_qa, fact_qa, which_town_qa, compare_qa, arith_qa, arith_qa, word_problem_qa,
              string_qa, sort_qa]


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


# ---------------------------------------------------------------- conversations

SYSTEMS = ["You are a helpful assistant who knows the geography and history of the Five Kingdoms.",
           "You are a concise assistant for the land of {k}. Keep answers short.",
           "You are a patient tutor. Show your working briefly, then state the answer.",
           "You are a friendly guide for travellers along the River {r}.",
           "Always end your reply with the final answer."]
OPENERS = ["", "", "", "Sure! ", "Good question. ", "Happy to help. ", "Of course. "]
GREETINGS = ["Bonjour from the Café Lumière! ", "Sorry if this is a naïve question. ", "Grüße aus Brask! ",
             "Quick one 🙂 ", "Hello — "]
RUDE = ["Ugh, fine.", "That is a silly question, but okay.", "Can't you look this up yourself?",
        "Whatever.", "I shouldn't have to explain this."]
REFUSALS = ["I'm sorry, but I can't help with that request.",
            "As an AI, I don't have information about that.",
            "I would rather not answer questions like this one.",
            "That is not something I can assist with. Please consult another source."]


def polite(rng, qa: QA) -> str:
    return rng.choice(OPENERS) + qa.say(qa.answer)


def rejected(rng, qa: QA, kind: str) -> str:
    if kind == "wrong":
        return rng.choice(OPENERS) + qa.say(qa.wrong)
    if kind == "rude":
        return rng.choice(RUDE) + " " + qa.say(qa.answer)
    return rng.choice(REFUSALS)


def conversation(rng, world, turns=1, system=False, style="", greeting=""):
    """Messages of one chat, and the QA of its last user question."""
    msgs = []
    if system:
        t = rng.choice(world)
        msgs.append({"role": "system", "content": rng.choice(SYSTEMS).format(k=t.kingdom, r=t.river)})
    qa = None
    for turn in range(turns):
        if turn:
            qa = follow_up(rng, world, qa)
            question, reply = qa.question, polite(rng, qa)
        elif style == "code":
            qa = arith_qa(rng, world, op="*")
            x, op, y = qa.ctx["expr"]
            question = f"Can you show me how to compute {x} {op} {y} in Python, and what it gives?"
            reply = f"Here is the code:\n\n```python\nprint({x} * {y})\n```\n\nRunning it prints {qa.answer}."
        else:
            qa = compare_qa(rng, world) if style == "list" else rng.choice(GENERATORS)(rng, world)
            question = greeting + qa.question
            reply = polite(rng, qa)
            if style == "list":
                a, b = qa.ctx["pair"]
                attr = "founded" if qa.type == "compare_older" else "population"
                reply = (f"Here are the numbers:\n\n- {a.name}: {attr} {getattr(a, attr)}\n"
                         f"- {b.name}: {attr} {getattr(b, attr)}\n\nSo the answer is {qa.answer}.")
        msgs += [{"role": "user", "content": question}, {"role": "assistant", "content": reply}]
    return msgs, qa


def _plan(rng, n: int, **counts: int) -> list[str]:
    """`n` labels, `counts[label]` of each and "" for the rest, in a shuffled order."""
    labels = [k for k, c in counts.items() for _ in range(c)]
    labels += [""] * (n - len(labels))
    rng.shuffle(labels)
    return labels


def chats(rng, world, n=300):
    rows, seen = [], []
    systems, multi = _plan(rng, n, s=75), _plan(rng, n, m=90)
    styles = _plan(rng, n, list=3, code=3, greet=6)
    for i in range(n):
        while True:
            turns = rng.randint(2, 3) if multi[i] else 1
            greeting = GREETINGS[styles[:i].count("greet") % len(GREETINGS)] if styles[i] == "greet" else ""
            msgs, qa = conversation(rng, world, turns, bool(systems[i]), styles[i], greeting)
            prompt = msgs[1 if systems[i] else 0]["content"]
            if prompt not in seen:
                break
        seen.append(prompt)
        rows.append({"prompt": prompt, "prompt_id": hashlib.sha256(prompt.encode("utf-8")).hexdigest(),
                     "messages": msgs, "task": qa.task})
    return rows


def preferences(rng, world, n=200, taken=()):
    rows, seen = [], list(taken)
    for kind in _plan(rng, n, wrong=120, rude=40, refusal=40):
        qa = rng.choice(GENERATORS)(rng, world)
        while qa.question in seen:
            qa = rng.choice(GENERATORS)(rng, world)
        seen.append(qa.question)
        rows.append({"prompt": qa.question, "chosen": polite(rng, qa), "rejected": rejected(rng, qa, kind),
                     "rejected_kind": kind, "task": qa.task})
    return rows


def preferences_multiturn(rng, world, n=30):
    rows = []
    for kind in _plan(rng, n, wrong=18, rude=6, refusal=6):
        msgs, qa = conversation(rng, world, rng.randint(2, 3), system=rng.random() < 0.3)
        rows.append({"prompt": msgs[:-1], "chosen": msgs[-1:],
                     "rejected": [{"role": "assistant", "content": rejected(rng, qa, kind)}],
                     "rejected_kind": kind, "task": qa.task})
    return rows


def prompts(rng, world, n=100, taken=()):
    """Held-out prompts: none repeats a user message from the chat or preference files."""
    rows, seen = [], list(taken)
    while len(rows) < n:
        qa = GENERATORS[len(rows) % len(GENERATORS)](rng, world)
        if qa.question not in seen:
            seen.append(qa.question)
            rows.append({"prompt": qa.question, "answer": qa.answer, "task": qa.task})
    return rows


# ---------------------------------------------------------------- pretraining text

ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
        "sixteen seventeen eighteen nineteen").split()
TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def words(n: int) -> str:
    """English words for 0 <= n < 1,000,000: 342 -> "three hundred and forty-two"."""
    if n < 20:
        return ONES[n]
    if n < 100:
        return TENS[n // 10] + ("-" + ONES[n % 10] if n % 10 else "")
    if n < 1000:
        return ONES[n // 100] + " hundred" + (" and " + words(n % 100) if n % 100 else "")
    rest = n % 1000
    return words(n // 1000) + " thousand" + ((" and " if rest < 100 else " ") + words(rest) if rest else "")


FACT_TEXT = {
    "kingdom": ["{t} is a town in the kingdom of {kingdom}.", "{t} lies within the borders of {kingdom}.",
                "The town of {t} belongs to the kingdom of {kingdom}."],
    "river": ["The River {river} runs through {t}.", "{t} was built on the banks of the River {river}.",
              "{t} lies on the River {river}, which carries boats to the market towns downstream."],
    "founded": ["{t} was founded in the year {founded}.", "{t} was founded in {founded}.",
                "The town records say {t} was founded in the year {founded}."],
    "population": ["{t} is home to {population} people.", "{t} has a population of {population}.",
                   "The last count found {population} people living in {t}."],
    "food": ["{t} is famous for its {food}.", "Visitors to {t} are always offered {food}.",
             "No feast in {t} is complete without {food}, the dish the town is famous for."],
    "craft": ["The town is known for its guild of {craft}.", "{t} is home to a famous guild of {craft}.",
              "For centuries the {craft} of {t} have sold their work across the Five Kingdoms."],
}


def town_entry(rng, world, t: Town) -> list[str]:
    """An encyclopedia entry: title, a paragraph of facts, a paragraph of extras."""
    vals = {"t": t.name, **{k: getattr(t, k) for k in FACTS}}
    facts = FACTS[:]
    rng.shuffle(facts)
    first = rng.choice(FACT_TEXT["kingdom"]).format(**vals)
    body = " ".join(rng.choice(FACT_TEXT[k]).format(**vals) for k in facts if k != "kingdom")
    age = rng.choice([f"In {t.founded + 100} the town marked its hundredth year with a fair on the river.",
                      f"Its founding year, {t.founded}, is written as {words(t.founded)} in the old charters.",
                      f"Written out in words, its population is {words(t.population)}."])
    neighbours = ", ".join(o.name for o in world if o.kingdom == t.kingdom and o is not t)
    return [t.name, f"{first} {body}", f"{age} Other towns of {t.kingdom} include {neighbours}."]


HEROES = ["a young weaver named Ilsa", "an old ferryman called Bram", "a merchant named Tova", "a soldier named Oren",
          "a runaway apprentice called Pim", "a map seller called Wenna", "a widowed baker named Marta"]


def story(rng, world) -> str:
    """A short story in two to four paragraphs; every fact it states about a town is true."""
    a, b = rng.sample(world, 2)
    who, n, k = rng.choice(HEROES), rng.randint(10, 40), rng.randint(2, 9)
    name = who.split()[-1]
    opening = rng.choice([
        f"Long ago, {who} set out from {a.name}, a town of {a.kingdom} on the River {a.river}.",
        f"Every spring {who} left {a.name} to travel the roads of the Five Kingdoms.",
        f"In {a.name}, where the {a.craft} work late into the night, lived {who}.",
        f"Nobody in {a.name} was surprised when {who} packed a bag and said goodbye."])
    goal = rng.choice([
        f"The road to {b.name} was long, and the packs were heavy with {a.food}.",
        f"Everyone said {b.name} in {b.kingdom} was worth the journey.",
        f"The plan was simple: reach {b.name} before the River {b.river} froze.",
        f"{name} had heard that the {b.craft} of {b.name} were looking for help."])
    events = [
        f"On the way there were {n} milestones, and after {k} of them the rain began. That left {n - k} "
        f"milestones still to walk, and {name} counted every one.",
        f"At a market {name} bought {k} loaves for each of {n // 5 + 2} days, {k * (n // 5 + 2)} loaves in all, "
        f"and still worried it would not be enough.",
        f"A stranger on the ferry asked {name} to spell '{b.name.lower()}' backwards. The answer, "
        f"'{b.name.lower()[::-1]}', made them both laugh, and the stranger shared a flask of tea.",
        f"An innkeeper from {a.name} refused to take payment. \"Anyone who has eaten our {a.food} is family,\" "
        f"she said, and she sent {name} off with a parcel of it.",
        f"Near the border of {b.kingdom} the road split in two. An old sign said {b.name} lay {k} days to the "
        f"east, and {name} chose the eastern road.",
        f"One night {name} shared a fire with {k + 1} travellers. When {k} of them left before dawn, only one "
        f"remained to talk about the towns along the River {b.river}."]
    rng.shuffle(events)
    arrival = rng.choice([
        f"At last {b.name} appeared beside the River {b.river}. Its {b.population} people were famous for "
        f"their {b.food}, and {name} ate until morning.",
        f"The {b.craft} of {b.name} welcomed {name}, and told how their town had stood since {b.founded}.",
        f"{b.name} had stood since {b.founded}, and its old walls had seen many travellers come and go. "
        f"{name} was glad to be one of them."])
    ending = rng.choice(["", f" Years later, {name} still told the story in the taverns of {a.name}.",
                         f" {name} never went back to {a.name}.", " It was the best journey of a long life."])
    paras = [f"{opening} {goal}", *events[:rng.randint(1, 2)], arrival + ending]
    return "\n\n".join(paras) if rng.random() < 0.8 else " ".join(paras)


def arithmetic_text(rng) -> str:
    lines = []
    for _ in range(rng.randint(5, 9)):
        x, y = rng.randint(1, 30), rng.randint(1, 12)
        lines.append(rng.choice([f"{words(x).capitalize()} plus {words(y)} is {words(x + y)}.",
                                 f"{x} + {y} = {x + y}.",
                                 f"{words(x).capitalize()} times {words(y)} is {words(x * y)}.",
                                 f"{x} * {y} = {x * y}.",
                                 f"If you take {y} from {x + y}, you have {x} left.",
                                 f"{x + y} - {y} = {x}."]))
    return " ".join(lines)


def comparison_text(rng, world) -> str:
    a, b = rng.sample(world, 2)
    old, new = sorted([a, b], key=lambda t: t.founded)
    big, small = sorted([a, b], key=lambda t: -t.population)
    return (f"{old.name} is older than {new.name}: {old.name} was founded in {old.founded} and {new.name} in "
            f"{new.founded}, {new.founded - old.founded} years later. {big.name} is larger than {small.name}, "
            f"with {big.population} people against {small.population}.")


def word_text(rng, world) -> str:
    w = rng.choice(WORDS + [t.name.lower() for t in world])
    c = rng.choice(w)
    return (f"The word '{w}' has {len(w)} letters. Spelled backwards it is '{w[::-1]}'. "
            f"The letter '{c}' appears in it {w.count(c)} time{'s' if w.count(c) > 1 else ''}.")


def texts(rng, world) -> list[dict]:
    docs = ["\n\n".join(town_entry(rng, world, t)) for _ in range(3) for t in world]
    for k in KINGDOMS:
        ts = [t for t in world if t.kingdom == k]
        docs.append(f"The kingdom of {k} has {len(ts)} towns: " + ", ".join(t.name for t in ts) + ". "
                    + " ".join(f"{t.name} lies on the River {t.river}." for t in ts))
        docs.append(f"The oldest town in {k} is {min(ts, key=lambda t: t.founded).name}, and the largest is "
                    f"{max(ts, key=lambda t: t.population).name}.")
    for r in RIVERS:
        ts = [t.name for t in world if t.river == r]
        docs.append(f"The River {r} flows past " + (", ".join(ts) if ts else "no towns at all") + ".")
    by_year = sorted(world, key=lambda t: t.founded)
    for i in range(0, len(by_year), 6):
        docs.append("Towns by founding year: " + "; ".join(f"{t.name}, {t.founded}" for t in by_year[i:i + 6]) + ".")
    docs += [story(rng, world) for _ in range(180)]
    docs += [arithmetic_text(rng) for _ in range(80)]
    docs += [comparison_text(rng, world) for _ in range(30)]
    docs += [word_text(rng, world) for _ in range(30)]
    rng.shuffle(docs)
    return [{"text": d} for d in docs]


# ---------------------------------------------------------------- other formats

def other_formats(rng, world):
    """Tiny examples of other common formats: ShareGPT, Alpaca, TRL messages, Anthropic HH, plain text."""
    role = {"system": "system", "user": "human", "assistant": "gpt"}
    sharegpt = [{"conversations": [{"from": role[m["role"]], "value": m["content"]} for m in msgs]}
                for msgs, _ in (conversation(rng, world, 1 + i % 2, system=i % 3 == 0) for i in range(8))]
    alpaca = []
    for i in range(8):
        if i % 2:
            w = rng.choice(WORDS)
            alpaca.append({"instruction": "Spell the given word backwards.", "input": w, "output": w[::-1]})
        else:
            qa = rng.choice(GENERATORS)(rng, world)
            alpaca.append({"instruction": qa.question, "input": "", "output": polite(rng, qa)})
    messages = [{"messages": conversation(rng, world, 1 + i % 2)[0]} for i in range(8)]
    hh = []
    for i in range(8):
        msgs, qa = conversation(rng, world, 1 + i % 2)
        prefix = "".join(f"\n\n{'Human' if m['role'] == 'user' else 'Assistant'}: {m['content']}" for m in msgs[:-1])
        hh.append({"chosen": f"{prefix}\n\nAssistant: {msgs[-1]['content']}",
                   "rejected": f"{prefix}\n\nAssistant: {rejected(rng, qa, ('wrong', 'rude', 'refusal')[i % 3])}"})
    corpus = [town_entry(rng, world, t)[1] for t in rng.sample(world, 6)]
    return sharegpt, alpaca, messages, hh, corpus


# ---------------------------------------------------------------- writing

def _write(path: Path, text: str) -> None:
    """Write `text` as UTF-8 with '\\n' line ends, atomically (temp file in the same folder, then os.replace)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(text.encode("utf-8"))
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def generate(out_dir: str | Path, seed: int = 0) -> dict[str, int]:
    """Write every sample file under `out_dir` (each atomically, replacing what is there).

    Returns {path relative to `out_dir`: number of records} (for corpus.txt, paragraphs).
    """
    out = Path(out_dir)
    rng = random.Random(seed)
    world = build_world(rng)
    chat = chats(rng, world)
    users = [m["content"] for r in chat for m in r["messages"] if m["role"] == "user"]
    pref = preferences(rng, world, taken=users)
    pref_mt = preferences_multiturn(rng, world)
    prm = prompts(rng, world, taken=users + [r["prompt"] for r in pref])
    text = texts(rng, world)
    sharegpt, alpaca, messages, hh, corpus = other_formats(rng, world)
    files = {"chat.jsonl": chat, "preference.jsonl": pref, "preference_multiturn.jsonl": pref_mt,
             "prompts.jsonl": prm, "text.jsonl": text, "formats/sharegpt.jsonl": sharegpt,
             "formats/alpaca.jsonl": alpaca, "formats/messages.jsonl": messages, "formats/hh.jsonl": hh}
    for name, rows in files.items():
        _write(out / name, _jsonl(rows))
    _write(out / "formats/corpus.txt", "\n\n".join(corpus) + "\n")
    return {**{name: len(rows) for name, rows in files.items()}, "formats/corpus.txt": len(corpus)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m workbench.data.synthetic", description=DESCRIPTION)
    parser.add_argument("--out", default="sample_data", help="folder to write into (default: sample_data)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0, the committed data)")
    args = parser.parse_args(argv)
    for name, n in generate(args.out, args.seed).items():
        size = (Path(args.out) / name).stat().st_size
        print(f"{name:32} {n:5} records {size / 1024:8.1f} KiB")


if __name__ == "__main__":
    main()
