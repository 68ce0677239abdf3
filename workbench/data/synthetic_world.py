"""The fictional "task world" behind the sample data: word lists, the `Town` record and `build_world`.

The last `N_LORE` towns are "lore towns": their facts appear only in the pretraining text (as
encyclopedia entries, fact lists, Q&A notes and stories), never asked or answered in a chat,
preference pair or RL prompt, so `eval_lore.jsonl` measures whether knowledge learnt in pretraining
can be extracted after SFT (Allen-Zhu & Li, Physics of LMs 3.1).

Shared by `synthetic` (questions, chats) and `synthetic_text` (pretraining corpus); imports neither.
Not run directly: `python -m workbench.data.synthetic --out sample_data` writes the data.
Pure standard library.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

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
N_LORE = 8  # the last towns of TOWNS: facts only in text.jsonl (Quarrow ... Yarrowdell)


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


def split_world(world: list[Town]) -> tuple[list[Town], list[Town]]:
    """(chat towns, lore towns): the towns the chats ask about, and those only the pretraining text knows."""
    return world[:-N_LORE], world[-N_LORE:]
