"""Pretraining corpus of the sample data (`text.jsonl`): encyclopedia entries, stories, sums, word facts.

Every document states facts of the task world that the chats ask about, so a model pretrained on it
can later answer them. Called by `synthetic.generate` with the shared `rng`, whose call order fixes
the output; run `python -m workbench.data.synthetic --out sample_data` to write it. Pure standard library.
"""

from __future__ import annotations

from workbench.data.synthetic_world import FACTS, KINGDOMS, RIVERS, WORDS, Town

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


# Many phrasings of every fact (knowledge augmentation): a model that reads each fact in one fixed
# sentence memorises the sentence; read in many it stores the fact, and SFT can then ask for it in
# words it never saw (Allen-Zhu & Li, "Physics of Language Models, Part 3.1"). Every template names
# the town in full, so the fact never hangs on a pronoun.
FACT_TEXT = {
    "kingdom": ["{t} is a town in the kingdom of {kingdom}.", "{t} lies within the borders of {kingdom}.",
                "The town of {t} belongs to the kingdom of {kingdom}.", "{t} is in the kingdom of {kingdom}.",
                "{t} pays its taxes to the crown of {kingdom}.", "The kingdom of {kingdom} counts {t} among its towns.",
                "{t} has been part of {kingdom} for as long as anyone remembers."],
    "river": ["The River {river} runs through {t}.", "{t} was built on the banks of the River {river}.",
              "{t} lies on the River {river}.", "The River {river} flows past the walls of {t}.",
              "Boats on the River {river} stop at the quays of {t}.",
              "{t} takes its water from the River {river}."],
    "founded": ["{t} was founded in the year {founded}.", "{t} was founded in {founded}.",
                "The town records say {t} was founded in the year {founded}.",
                "The first houses of {t} were built in {founded}.", "{t} has stood since the year {founded}.",
                "In {founded} settlers laid the first stones of {t}."],
    "population": ["{t} is home to {population} people.", "{t} has a population of {population}.",
                   "The last count found {population} people living in {t}.",
                   "About {population} people live in {t}.", "The people of {t} number {population}.",
                   "{t} counts {population} inhabitants."],
    "food": ["{t} is famous for its {food}.", "Visitors to {t} are always offered {food}.",
             "No feast in {t} is complete without {food}.", "The favourite dish of {t} is {food}.",
             "Travellers remember {t} for its {food}.", "Every cook in {t} knows how to make {food}."],
    "craft": ["{t} is known for its guild of {craft}.", "{t} is home to a famous guild of {craft}.",
              "For centuries the {craft} of {t} have sold their work across the Five Kingdoms.",
              "The guild of {craft} is the pride of {t}.", "The best {craft} in the land work in {t}.",
              "{t} is where the guild of {craft} meets."],
}
OPENINGS = ["{t}", "About {t}", "{t}, a town of the Five Kingdoms", "Notes on {t}", "The town of {t}"]


def fact_sentence(rng, t: Town, kind: str) -> str:
    return rng.choice(FACT_TEXT[kind]).format(t=t.name, **{k: getattr(t, k) for k in FACTS})


def town_entry(rng, world, t: Town) -> list[str]:
    """An encyclopedia entry: a title, the six facts in a shuffled order and phrasing, a paragraph of extras."""
    facts = FACTS[:]
    rng.shuffle(facts)
    body = " ".join(fact_sentence(rng, t, k) for k in facts)
    age = rng.choice([f"In {t.founded + 100} {t.name} marked its hundredth year with a fair on the river.",
                      f"The founding year of {t.name}, {t.founded}, is written as {words(t.founded)} in the old charters.",
                      f"Written out in words, the population of {t.name} is {words(t.population)}."])
    neighbours = ", ".join(o.name for o in world if o.kingdom == t.kingdom and o is not t)
    return [rng.choice(OPENINGS).format(t=t.name), body, f"{age} Other towns of {t.kingdom} include {neighbours}."]


def fact_list(rng, world) -> str:
    """One fact each about several towns: facts meet other towns' facts in every order."""
    return " ".join(fact_sentence(rng, t, rng.choice(FACTS)) for t in rng.sample(world, rng.randint(4, 8)))


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


def texts(rng, world, qa_notes=(), entries: int = 24) -> list[dict]:
    """The corpus: `entries` encyclopedia entries per town (each in a new order and phrasing), fact lists,
    kingdom and river notes, stories, sums, comparisons, word facts and `qa_notes`, shuffled."""
    docs = ["\n\n".join(town_entry(rng, world, t)) for _ in range(entries) for t in world] + list(qa_notes)
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
    docs += [fact_list(rng, world) for _ in range(200)]
    docs += [story(rng, world) for _ in range(180)]
    docs += [arithmetic_text(rng) for _ in range(80)]
    docs += [comparison_text(rng, world) for _ in range(30)]
    docs += [word_text(rng, world) for _ in range(30)]
    rng.shuffle(docs)
    return [{"text": d} for d in docs]
