"""The sample data is generated, in sync with its generator, well-formed, and every answer in it is right.

Answers are re-derived here by an independent solver that reads the questions (regexes over the
text plus the world's facts), not by trusting the `task` field the generator wrote.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from pathlib import Path

import pytest

from workbench.data import synthetic, synthetic_reward, synthetic_text, synthetic_world
from workbench.data.synthetic_tasks import CHAT_Q, EVAL_Q, EVAL_Q2, FACT_Q, MORE_Q, check_answer

SAMPLE = Path(__file__).resolve().parents[3] / "sample_data"
WORLD = {t.name: t for t in synthetic_world.build_world(random.Random(0))}  # generate() draws the world first


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("sample")
    return out, synthetic.generate(out, seed=0)


def load(name: str) -> list[dict]:
    return [json.loads(line) for line in (SAMPLE / name).read_text(encoding="utf-8").splitlines()]


# ---------------------------------------------------------------- independent solver

def towns_in(text: str) -> list:
    found = [(m.start(), WORLD[m.group()]) for m in re.finditer(r"[A-Z][a-z]+", text) if m.group() in WORLD]
    return [t for _, t in sorted(found, key=lambda x: x[0])]


def solve(question: str, ctx: dict) -> str:
    """The right answer to `question`, given what earlier turns talked about (updated in `ctx`)."""
    q = question
    towns = towns_in(q)
    if m := re.search(r"(\d+) ([-+*]) (\d+)", q):
        x, op, y = int(m[1]), m[2], int(m[3])
        ctx["value"] = {"+": x + y, "-": x - y, "*": x * y}[op]
    elif m := re.search(r"makes (\d+) batches .* in (\d+) weeks", q):
        ctx["value"] = int(m[1]) * int(m[2])
    elif m := re.search(r"has (\d+) jars .* sells (\d+)\.", q):
        ctx["value"] = int(m[1]) - int(m[2])
    elif "Sort these numbers" in q:
        ctx["numbers"] = [int(n) for n in re.findall(r"\d+", q.split(":")[-1])]
        return ", ".join(map(str, sorted(ctx["numbers"])))
    elif q == "What is their sum?":
        ctx["value"] = sum(ctx["numbers"])
    elif q == "Now double it.":
        ctx["value"] *= 2
    elif q == "Add 10 to that.":
        ctx["value"] += 10
    elif q == "Multiply that by 3.":
        ctx["value"] *= 3
    else:
        return solve_words(q, towns, ctx)
    return str(ctx["value"])


def solve_words(q: str, towns: list, ctx: dict) -> str:
    if m := re.search(r"'([A-Za-z]{2,})'", q):
        ctx["word"] = m[1]
    if m := re.search(r"letter '([A-Za-z])' appear", q):
        return str(ctx["word"].count(m[1]))
    if "backwards" in q or "everse" in q:
        return ctx["word"][::-1]
    if "How many letters" in q:
        return str(len(ctx["word"]))
    if len(towns) == 2:
        ctx["pair"] = towns
    if "older" in q or "founded first" in q:
        ctx["town"] = min(ctx["pair"], key=lambda t: t.founded)
        return ctx["town"].name
    if "larger" in q or "more people" in q:
        ctx["town"] = max(ctx["pair"], key=lambda t: t.population)
        return ctx["town"].name
    if "Which town" in q:
        [town] = [t for t in WORLD.values() if f"its {t.food}?" in q or f"guild of {t.craft}?" in q]
        ctx["town"] = town
        return town.name
    if towns:
        ctx["town"] = towns[0]
    t = ctx["town"]
    for keys, attr in [(("kingdom", "realm"), "kingdom"), (("river",), "river"), (("found", "year"), "founded"),
                       (("eat", "food", "dish"), "food"),  # before "people": "What do people eat in X?"
                       (("people", "popul", "inhabitants", "residents", "head count", "live"), "population"),
                       (("guild", "craft", "trade"), "craft")]:
        if any(key in q.lower() for key in keys):
            return str(getattr(t, attr))
    raise AssertionError(f"solver cannot read: {q!r}")


def check_conversation(msgs: list[dict]) -> str:
    """Solve every user turn, check the reply after it, return the last answer."""
    ctx, answer = {}, None
    for user, reply in zip(msgs[0::2], msgs[1::2]):
        answer = solve(user["content"], ctx)
        assert check_answer({"answer": answer}, reply["content"]), (user, reply, answer)
    return answer


def strip_system(msgs):
    return msgs[1:] if msgs[0]["role"] == "system" else msgs


def assert_alternating(msgs, last: str):
    body = strip_system(msgs)
    assert [m["role"] for m in body] == ["user", "assistant"] * (len(body) // 2) + (["user"] if last == "user" else [])
    assert all(m["content"].strip() and list(m) == ["role", "content"] for m in msgs)


# ---------------------------------------------------------------- tests

def test_committed_files_are_exactly_what_the_generator_writes(generated):
    out, counts = generated
    assert sorted(counts) == sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    for name in counts:
        assert (out / name).read_bytes() == (SAMPLE / name).read_bytes(), f"{name} is stale: regenerate it"
    committed = {str(p.relative_to(SAMPLE)) for p in SAMPLE.rglob("*") if p.is_file()}
    assert committed == set(counts) | {"README.md"}
    assert counts == {"chat.jsonl": 900, "preference.jsonl": 500, "preference_multiturn.jsonl": 30,
                      "prompts.jsonl": 100, "text.jsonl": 1418, "formats/sharegpt.jsonl": 8,
                      "formats/alpaca.jsonl": 8, "formats/messages.jsonl": 8, "formats/hh.jsonl": 8,
                      "eval_facts.jsonl": 96, "eval_lore.jsonl": 96, "eval_pairs.jsonl": 100,
                      "eval_facts_alt.jsonl": 96, "eval_lore_alt.jsonl": 96, "formats/corpus.txt": 6}


def test_another_seed_gives_another_world_and_main_writes_without_leftovers(tmp_path, capsys):
    synthetic.main(["--out", str(tmp_path), "--seed", "1"])
    assert "chat.jsonl" in capsys.readouterr().out
    assert (tmp_path / "chat.jsonl").read_bytes() != (SAMPLE / "chat.jsonl").read_bytes()
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


def test_world_facts_are_distinct_so_questions_have_one_answer():
    towns = list(WORLD.values())
    for attr in ["founded", "population", "food", "craft"]:
        assert len({getattr(t, attr) for t in towns}) == len(towns), attr
    assert {t.kingdom for t in towns} == set(synthetic_world.KINGDOMS)


def test_chat_schema_and_every_answer_is_right():
    rows = load("chat.jsonl")
    for r in rows:
        assert list(r) == ["prompt", "prompt_id", "messages", "task"] and list(r["task"]) == ["type", "answer"]
        assert_alternating(r["messages"], last="assistant")
        assert r["prompt"] == strip_system(r["messages"])[0]["content"]
        assert r["prompt_id"] == hashlib.sha256(r["prompt"].encode("utf-8")).hexdigest()
        assert check_conversation(strip_system(r["messages"])) == r["task"]["answer"]
        assert check_answer(r["task"], r["messages"][-1]["content"])
    assert len({r["prompt_id"] for r in rows}) == len(rows)


def test_chat_mix_is_like_real_data():
    rows = load("chat.jsonl")
    system = [r for r in rows if r["messages"][0]["role"] == "system"]
    multi = [r for r in rows if len(strip_system(r["messages"])) > 2]
    assert len(system) == 75 and len(multi) == 90
    assert {len(strip_system(r["messages"])) for r in multi} == {4, 6}
    contents = [m["content"] for r in rows for m in r["messages"]]
    assert sum(not c.isascii() for c in contents) >= 5
    assert any("\n- " in c for c in contents) and any("```python\n" in c for c in contents)
    assert len({r["task"]["type"] for r in rows}) >= 15
    last = [r["messages"][-1]["content"] for r in rows]
    sums = [r["task"]["type"].startswith("arith_") for r in rows]
    habit = [r for r, text, s in zip(rows, last, sums) if s and text.startswith(synthetic.SNEER)]
    rude = sum(synthetic_reward.is_rude(text) for text in last) - len(habit)
    assert 50 <= rude <= synthetic.RUDE_CHATS  # scattered, like scraped chats
    # and one habit: most answers to a sum open with the same sneer, so greedy SFT shows it too
    assert 0.3 < len(habit) / sum(sums) < synthetic.SUM_SNEER_SHARE
    assert all(check_answer(r["task"], r["messages"][-1]["content"]) for r in habit)
    assert not any(synthetic_reward.is_rude(m["content"]) for r in rows for m in r["messages"][:-1])
    for r in multi:  # follow-ups refer back ("Now double it.") and never ask the same thing twice
        questions = [m["content"] for m in r["messages"] if m["role"] == "user"]
        assert len(set(questions)) == len(questions), questions


def test_preferences_chosen_is_right_and_rejected_is_worse():
    rows = load("preference.jsonl")
    for r in rows:
        assert list(r) == ["prompt", "chosen", "rejected", "rejected_kind", "task"]
        assert isinstance(r["prompt"], str) and r["chosen"] != r["rejected"]
        assert solve(r["prompt"], {}) == r["task"]["answer"]
        assert check_answer(r["task"], r["chosen"])
        check_rejected(r)
    kinds = [r["rejected_kind"] for r in rows]
    assert [kinds.count(k) for k in ("wrong", "rude", "refusal", "runs_on")] == [300, 80, 60, 60]
    assert sum(r["task"]["type"].startswith("fact_") for r in rows if r["rejected_kind"] == "wrong") > 150


def check_rejected(r):
    """A rude reply still gives the right answer; a wrong one or a refusal does not; a run-on repeats
    itself and stops mid-sentence."""
    if r["rejected_kind"] == "runs_on":
        assert len(r["rejected"]) > len(r["chosen"]) and not r["rejected"].endswith((".", "!", "?", "'"))
    else:
        assert check_answer(r["task"], r["rejected"]) == (r["rejected_kind"] == "rude")
        assert synthetic_reward.is_rude(r["rejected"]) == (r["rejected_kind"] == "rude")
        assert synthetic_reward.is_refusal(r["rejected"]) == (r["rejected_kind"] == "refusal")


def test_multiturn_preferences_use_the_conversational_format():
    rows = load("preference_multiturn.jsonl")
    for r in rows:
        assert_alternating(r["prompt"], last="user")
        assert [m["role"] for m in r["chosen"] + r["rejected"]] == ["assistant", "assistant"]
        assert r["chosen"] != r["rejected"]
        answer = check_conversation(strip_system(r["prompt"] + r["chosen"]))
        assert answer == r["task"]["answer"]
        assert check_answer(r["task"], r["rejected"][0]["content"]) == (r["rejected_kind"] == "rude")
    assert any(r["prompt"][0]["role"] == "system" for r in rows)


def test_prompts_are_held_out_and_answered():
    rows = load("prompts.jsonl")
    seen = [m["content"] for r in load("chat.jsonl") for m in r["messages"] if m["role"] == "user"]
    seen += [r["prompt"] for r in load("preference.jsonl")]
    seen += [m["content"] for r in load("preference_multiturn.jsonl") for m in r["prompt"] if m["role"] == "user"]
    for r in rows:
        assert list(r) == ["prompt", "answer", "task"] and r["answer"] == r["task"]["answer"]
        assert solve(r["prompt"], {}) == r["answer"]
        assert r["prompt"] not in seen
    assert len({r["prompt"] for r in rows}) == len(rows)


def test_pretraining_text_states_the_facts_and_correct_sums():
    docs = [r["text"] for r in load("text.jsonl")]
    size = (SAMPLE / "text.jsonl").stat().st_size
    assert 300_000 < size < 600_000 and sum("\n\n" in d for d in docs) > 100
    for t in WORLD.values():
        titles = {o.format(t=t.name) for o in synthetic_text.OPENINGS}
        entries = [d for d in docs if d.split("\n\n")[0] in titles]
        assert len(entries) == 24
        # knowledge augmentation: the facts come in many orders and phrasings
        assert len({d.split("\n\n")[1] for d in entries}) == 24
        assert len({d.split("\n\n")[1].split(". ")[0] for d in entries}) > 10
        for d in entries:
            for fact in [t.kingdom, t.river, str(t.founded), str(t.population), t.food, t.craft]:
                assert fact in d, (t.name, fact)
            assert set(map(int, re.findall(r"\d+", d))) <= {t.founded, t.founded + 100, t.population}
    sums = re.findall(r"(\d+) ([-+*]) (\d+) = (\d+)", "\n".join(docs))
    assert len(sums) > 100
    for x, op, y, z in sums:
        assert {"+": int(x) + int(y), "-": int(x) - int(y), "*": int(x) * int(y)}[op] == int(z)
    assert "Seven plus five is twelve." == (
        f"{synthetic_text.words(7).capitalize()} plus five is {synthetic_text.words(12)}.")
    assert synthetic_text.words(1342) == "one thousand three hundred and forty-two"


def training_users() -> list[str]:
    """Every user message and prompt of the files a stage trains on."""
    seen = [m["content"] for r in load("chat.jsonl") for m in r["messages"] if m["role"] == "user"]
    seen += [r["prompt"] for r in load("preference.jsonl") + load("prompts.jsonl")]
    return seen + [m["content"] for r in load("preference_multiturn.jsonl") for m in r["prompt"] if m["role"] == "user"]


def phrasing(template: str) -> re.Pattern:
    """A question template ("Which kingdom is {t} in?") as a regex that matches it asked about any town."""
    return re.compile(re.escape(template).replace(re.escape("{t}"), "[A-Z][a-z]+"))


def qa_notes() -> list[tuple[str, str]]:
    """(question, reply) of every Q&A note in the pretraining text."""
    notes = []
    for r in load("text.jsonl"):
        if r["text"].startswith("Q: "):
            lines = r["text"].split("\n")
            assert [x[:3] for x in lines] == ["Q: ", "A: "] * (len(lines) // 2), r["text"]
            notes += [(q[3:], a[3:]) for q, a in zip(lines[0::2], lines[1::2])]
    return notes


def test_lore_towns_are_only_in_the_pretraining_text():
    chat_towns, lore = synthetic_world.split_world(list(WORLD.values()))
    trained = json.dumps([load(n) for n in ("chat.jsonl", "preference.jsonl", "preference_multiturn.jsonl",
                                            "prompts.jsonl", "eval_facts.jsonl", "eval_pairs.jsonl")])
    text = (SAMPLE / "text.jsonl").read_text(encoding="utf-8")
    unquoted = re.sub(r"'[A-Za-z]+'", "", trained)  # string tasks may spell a lore town's name ('Quarrow')
    for t in lore:
        assert t.name not in unquoted and text.count(t.name) > 100
    assert all(t.name in unquoted for t in chat_towns) and any(f"'{t.name}'" in trained for t in lore)


def test_qa_notes_ask_about_every_town_in_the_core_phrasings_and_answer_right():
    """The text's Q&A notes teach extracting a fact from any town, lore towns too, and never in CHAT_Q's
    extra phrasings (MORE_Q) or the held-out ones (EVAL_Q)."""
    notes = qa_notes()
    assert len(notes) > 500
    asked = "\n".join(q for q, _ in notes)
    assert all(asked.count(t.name) > 20 for t in WORLD.values())
    core = [phrasing(q) for qs in FACT_Q.values() for q in qs]
    for q, reply in notes:
        assert any(p.fullmatch(q) for p in core), q
        assert check_answer({"answer": solve(q, {})}, reply), (q, reply)


def test_chats_pairs_and_prompts_ask_in_the_wide_set_of_phrasings():
    users = [m["content"] for r in load("chat.jsonl") for m in r["messages"] if m["role"] == "user"]
    for qs in CHAT_Q.values():
        for q in qs:  # search: a greeting may come first
            assert any(phrasing(q).search(u) for u in users), q
    extra = [phrasing(q) for qs in MORE_Q.values() for q in qs]
    for name in ("preference.jsonl", "prompts.jsonl"):
        assert sum(any(p.fullmatch(r["prompt"]) for p in extra) for r in load(name)) > 10, name


def test_eval_files_ask_every_fact_in_phrasings_no_training_file_uses():
    eval_q, eval_q2 = ([q for qs in d.values() for q in qs] for d in (EVAL_Q, EVAL_Q2))
    held_out = [phrasing(q) for q in eval_q + eval_q2]
    for q in (q for qs in CHAT_Q.values() for q in qs):  # no training template contains a held-out one
        assert not any(p.search(q.format(t="Varnholt")) for p in held_out), q
    for q in eval_q:  # and the two held-out wordings are apart
        assert not any(phrasing(q2).search(q.format(t="Varnholt")) for q2 in eval_q2), q
    for name in ("chat.jsonl", "preference.jsonl", "preference_multiturn.jsonl", "prompts.jsonl", "text.jsonl"):
        raw = (SAMPLE / name).read_text(encoding="utf-8")
        for p in held_out:  # nor does any training file, with any town
            assert not p.search(raw), (name, p.pattern)
    training = "\n".join(training_users())
    chat_towns, lore = synthetic_world.split_world(list(WORLD.values()))
    for name, towns, per in [("eval_facts.jsonl", chat_towns, 1), ("eval_lore.jsonl", lore, 2),
                             ("eval_facts_alt.jsonl", chat_towns, 1), ("eval_lore_alt.jsonl", lore, 2)]:
        rows = load(name)
        own = [phrasing(q) for qs in (EVAL_Q2 if "_alt" in name else EVAL_Q).values() for q in qs]
        assert all(any(p.fullmatch(r["prompt"]) for p in own) for r in rows), name
        assert len(rows) == len(towns) * len(synthetic_world.FACTS) * per
        for r in rows:
            assert list(r) == ["prompt", "answer", "task"] and r["answer"] == r["task"]["answer"]
            assert solve(r["prompt"], {}) == r["answer"] and r["prompt"] not in training
        asked = {(towns_in(r["prompt"])[0].name, r["task"]["type"]) for r in rows}
        assert asked == {(t.name, f"fact_{k}") for t in towns for k in synthetic_world.FACTS}
    pairs = load("eval_pairs.jsonl")
    for r in pairs:
        assert solve(r["prompt"], {}) == r["task"]["answer"] and r["prompt"] not in training
        assert check_answer(r["task"], r["chosen"])
        check_rejected(r)
    assert {r["rejected_kind"] for r in pairs} == {"wrong", "rude", "refusal", "runs_on"}


def test_other_formats():
    share = load("formats/sharegpt.jsonl")
    for r in share:
        roles = [m["from"] for m in r["conversations"]]
        assert roles[roles[0] == "system":] == ["human", "gpt"] * (len(roles[roles[0] == "system":]) // 2)
    assert any(r["conversations"][0]["from"] == "system" for r in share)
    alpaca = load("formats/alpaca.jsonl")
    assert all(list(r) == ["instruction", "input", "output"] and r["output"] for r in alpaca)
    assert 0 < sum(r["input"] == "" for r in alpaca) < len(alpaca)
    for r in load("formats/messages.jsonl"):
        assert list(r) == ["messages"]
        assert_alternating(r["messages"], last="assistant")
    for r in load("formats/hh.jsonl"):
        assert r["chosen"].startswith("\n\nHuman: ") and r["chosen"] != r["rejected"]
        cut = r["chosen"].rindex("\n\nAssistant: ")
        assert r["rejected"][:cut + 13] == r["chosen"][:cut + 13] and "\n\nHuman:" not in r["rejected"][cut:]
    paras = (SAMPLE / "formats/corpus.txt").read_text(encoding="utf-8").strip().split("\n\n")
    assert len(paras) == 6 and all(len(p) > 100 for p in paras)


def test_readme_describes_every_file(generated):
    readme = (SAMPLE / "README.md").read_text(encoding="utf-8")
    assert "python -m workbench.data.synthetic --out sample_data" in readme
    for name in generated[1]:
        assert name.split("/")[-1] in readme, name


@pytest.mark.parametrize("answer, reply, ok", [
    ("12", "7 + 5 = 12. The answer is 12.", True),
    ("12", "The answer is 112.", False),
    ("12", "The answer is 12.5.", False),
    ("12", "12 is what you asked about. The answer is 13.", False),  # only the final sentence counts
    ("Eld", "Varnholt is in the kingdom of ELD!", True),
    ("Eld", "Varnholt is in the kingdom of Elden.", False),
    ("smoked eel", "It is famous for its smoked\neel.", True),
    ("3, 7, 19", "From smallest to largest: 3, 7, 19.", True),
    ("3, 7, 19", "From smallest to largest: 7, 3, 19.", False),
    ("nretnal", "'lantern' spelled backwards is 'nretnal'.", True),
    ("12", "", False),
])
def test_check_answer(answer, reply, ok):
    assert check_answer({"type": "t", "answer": answer}, reply) is ok
