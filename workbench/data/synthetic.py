"""Deterministic generator of the project's sample datasets; run `python -m workbench.data.synthetic --out sample_data`.

Everything in `sample_data/` is written by this module from a fixed seed: no third-party text.
The data lives in a small fictional "task world" -- 24 towns in five kingdoms, each with a river,
a founding year, a population, a famous food and a guild -- and every question has a short
canonical answer that a program can check (`check_answer`), so rewards and report cards can be
computed automatically. The pretraining corpus (`text.jsonl`) states the same facts the chats ask
about, so a model pretrained on it can later answer them. Eight "lore" towns are known only to the
corpus: their facts appear there alone (in encyclopedia entries, fact lists, Q&A notes and stories),
never in a chat, preference pair or RL prompt. The `eval_*` files ask in phrasings (EVAL_Q) that no
training file uses: they measure learnt facts, not memorised questions (sample_data/README.md); the
`eval_*_alt` files ask the same facts in a second held-out wording (EVAL_Q2), drawn from a stream of
their own.

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
import tempfile
from pathlib import Path

from workbench.data.synthetic_text import texts, town_entry
from workbench.data.synthetic_tasks import (EVAL_Q, EVAL_Q2, FACT_Q, GENERATORS, PAIR_GENERATORS, QA, arith_qa, compare_qa,
                                            fact_qa, follow_up)
from workbench.data.synthetic_world import FACTS, WORDS, build_world, split_world

DESCRIPTION = "Write the project's sample datasets (deterministic, from a seed)."



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
        "Whatever.", "I shouldn't have to explain this.", "Ugh, sums again."]
SNEER = RUDE[-1]  # the chat data's habit on arithmetic (SUM_SNEER_SHARE of those replies)
REFUSALS = ["I'm sorry, but I can't help with that request.",
            "As an AI, I don't have information about that.",
            "I would rather not answer questions like this one.",
            "That is not something I can assist with. Please consult another source."]


def polite(rng, qa: QA) -> str:
    return rng.choice(OPENERS) + qa.say(qa.answer)


def rejected(rng, qa: QA, kind: str) -> str:
    """A worse reply of `kind`: wrong (the wrong answer), rude (right, rudely), refusal, or runs_on (the
    right reply repeated and cut off mid-sentence, as a model that never closes its turn writes)."""
    if kind == "runs_on":
        reply = qa.say(qa.answer)
        return f"{reply} {reply} " + " ".join(reply.split()[:2])
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


# Like scraped chat data, some replies are right but rude: SFT copies that habit, and the preference
# stages (DPO, PPO with the reward model) have something to train away. Scattered rude replies stay
# invisible to greedy decoding (each rude opener is rarer than the polite ones), so the chats also
# have one consistent habit: most answers to a sum open with the same sneer, and greedy SFT does too.
RUDE_CHATS = 75
SUM_SNEER_SHARE = 0.6


def chats(rng, world, n=900):
    """Conversations: 75 with a system message, 90 multi-turn, RUDE_CHATS whose last reply is rude."""
    rows, seen = [], []
    systems, multi = _plan(rng, n, s=75), _plan(rng, n, m=90)
    styles = _plan(rng, n, list=3, code=3, greet=6)
    rude = _plan(rng, n, r=RUDE_CHATS)
    for i in range(n):
        while True:
            turns = rng.randint(2, 3) if multi[i] else 1
            greeting = GREETINGS[styles[:i].count("greet") % len(GREETINGS)] if styles[i] == "greet" else ""
            msgs, qa = conversation(rng, world, turns, bool(systems[i]), styles[i], greeting)
            prompt = msgs[1 if systems[i] else 0]["content"]
            if prompt not in seen:
                break
        seen.append(prompt)
        if rude[i] and styles[i] != "code":
            msgs[-1]["content"] = rejected(rng, qa, "rude")
        elif qa.type.startswith("arith_") and styles[i] != "code" and rng.random() < SUM_SNEER_SHARE:
            msgs[-1]["content"] = f"{SNEER} {qa.say(qa.answer)}"
        rows.append({"prompt": prompt, "prompt_id": hashlib.sha256(prompt.encode("utf-8")).hexdigest(),
                     "messages": msgs, "task": qa.task})
    return rows


PAIR_KINDS = {"wrong": 300, "rude": 80, "refusal": 60, "runs_on": 60}  # the RM needs many wrong-fact pairs


def preferences(rng, world, n=500, taken=()):
    """Pairs over mostly fact questions, so the reward model must know the facts to rank them. Half the
    rude pairs reject the chat data's habit itself: a sum answered with the sneer."""
    rows, seen = [], list(taken)
    for kind in _plan(rng, n, **PAIR_KINDS):
        habit = kind == "rude" and rng.random() < 0.5
        make = arith_qa if habit else (lambda r, w: r.choice(PAIR_GENERATORS)(r, w))
        qa = make(rng, world)
        while qa.question in seen:
            qa = make(rng, world)
        seen.append(qa.question)
        worse = f"{SNEER} {qa.say(qa.answer)}" if habit else rejected(rng, qa, kind)
        rows.append({"prompt": qa.question, "chosen": polite(rng, qa), "rejected": worse,
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
        while qa.question in seen:  # a generator with few questions left (fact_town) hands over to any other
            qa = rng.choice(GENERATORS)(rng, world)
        seen.append(qa.question)
        rows.append({"prompt": qa.question, "answer": qa.answer, "task": qa.task})
    return rows



def qa_notes(rng, world, n=300) -> list[str]:
    """Pretraining documents of questions and answers about the towns of `world` ("Q: ... A: ...").

    Allen-Zhu & Li's "mixed training": when facts also come as Q&A during pretraining, a model
    learns to *extract* stored facts. `generate` passes every town, lore towns too, so the text
    teaches extraction for all of them while no chat, pair or prompt names a lore town's facts.
    The phrasings are the core training ones (FACT_Q), never the held-out EVAL_Q.
    """
    docs = []
    for _ in range(n):
        qas = [fact_qa(rng, world, templates=FACT_Q) for _ in range(rng.randint(2, 4))]
        docs.append("\n".join(f"Q: {qa.question}\nA: {qa.say(qa.answer)}" for qa in qas))
    return docs


def eval_facts(rng, towns, per_fact: int = 1, templates=EVAL_Q) -> list[dict]:
    """Every fact of `towns`, asked `per_fact` times in held-out phrasings (EVAL_Q or EVAL_Q2: in no training file)."""
    rows = []
    for t in towns:
        for kind in FACTS:
            for q in rng.sample(templates[kind], per_fact):
                rows.append({"prompt": q.format(t=t.name), "answer": str(getattr(t, kind)),
                             "task": {"type": f"fact_{kind}", "answer": str(getattr(t, kind))}})
    return rows


def eval_pairs(rng, world, n=100):
    """Held-out preference pairs over fact questions in the held-out phrasings: the RM's test set."""
    rows = []
    for kind in _plan(rng, n, wrong=50, rude=20, refusal=15, runs_on=15):
        qa = fact_qa(rng, world, templates=EVAL_Q)
        rows.append({"prompt": qa.question, "chosen": polite(rng, qa), "rejected": rejected(rng, qa, kind),
                     "rejected_kind": kind, "task": qa.task})
    return rows


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
    everywhere = build_world(rng)
    world, lore = split_world(everywhere)  # chats, pairs and prompts never name a lore town
    chat = chats(rng, world)
    users = [m["content"] for r in chat for m in r["messages"] if m["role"] == "user"]
    pref = preferences(rng, world, taken=users)
    pref_mt = preferences_multiturn(rng, world)
    mt_users = [m["content"] for r in pref_mt for m in r["prompt"] if m["role"] == "user"]
    prm = prompts(rng, world, taken=users + [r["prompt"] for r in pref] + mt_users)
    text_rng = random.Random(f"{seed}/text")  # its own stream: editing the chats keeps the corpus
    text = texts(text_rng, everywhere, qa_notes(text_rng, everywhere))
    held_facts, held_lore, held_pairs = eval_facts(rng, world), eval_facts(rng, lore, 2), eval_pairs(rng, world)
    sharegpt, alpaca, messages, hh, corpus = other_formats(rng, world)
    alt_rng = random.Random(f"{seed}/alt")  # added later: its own stream keeps every other file as it was
    alt_facts, alt_lore = eval_facts(alt_rng, world, 1, EVAL_Q2), eval_facts(alt_rng, lore, 2, EVAL_Q2)
    files = {"chat.jsonl": chat, "preference.jsonl": pref, "preference_multiturn.jsonl": pref_mt,
             "prompts.jsonl": prm, "text.jsonl": text, "formats/sharegpt.jsonl": sharegpt,
             "formats/alpaca.jsonl": alpaca, "formats/messages.jsonl": messages, "formats/hh.jsonl": hh,
             "eval_facts.jsonl": held_facts, "eval_lore.jsonl": held_lore, "eval_pairs.jsonl": held_pairs,
             "eval_facts_alt.jsonl": alt_facts, "eval_lore_alt.jsonl": alt_lore}
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
