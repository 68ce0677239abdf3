"""Exact and MinHash-LSH near-duplicate removal on planted duplicates."""

import random

import pytest

from workbench.data.dedup import DedupConfig, ExactDedup, NearDedup, lsh_bands, shingles
from workbench.errors import WorkbenchError

N = 5


def _words(rng, k):
    syll = ["ka", "lo", "mi", "ren", "tas", "vo", "zu", "pel", "dor", "ith", "an", "se", "qua", "bri"]
    return [("".join(rng.choice(syll) for _ in range(rng.randint(1, 3)))) for _ in range(k)]


def jaccard(a: str, b: str) -> float:
    x, y = set(shingles(a, N)), set(shingles(b, N))
    return len(x & y) / len(x | y)


def test_exact_dedup_keeps_first_occurrence_only():
    ex = ExactDedup()
    assert [ex.add(t) for t in ["a b", "c", "a b", "a  b", "c"]] == [True, True, False, True, False]


def test_shingles_are_lowercase_word_ngrams_without_punctuation():
    assert sorted(shingles("The cat, the CAT sat!", 2)) == ["cat sat", "cat the", "the cat"]
    assert shingles("Two words", 5) == ["two words"]


def test_planted_near_duplicates_removed_distinct_documents_kept():
    rng = random.Random(0)
    bases = [" ".join(_words(rng, 120)) for _ in range(100)]
    variants = []
    for b in bases:  # 1-2 word edits: Jaccard of 5-word shingles >= 0.8 (checked below)
        w = b.split()
        for _ in range(rng.randint(1, 2)):
            i = rng.randrange(len(w))
            if rng.random() < 0.5:
                w[i] = "edited"
            else:
                del w[i]
        variants.append(" ".join(w))
    related = []  # distinct documents that share half their text with a base (Jaccard ~ 0.3)
    for b in bases:
        w = b.split()
        related.append(" ".join(w[:60] + _words(rng, 60)))
    assert min(jaccard(b, v) for b, v in zip(bases, variants)) >= 0.8
    assert max(jaccard(b, r) for b, r in zip(bases, related)) < 0.5

    near = NearDedup(DedupConfig())
    order = bases + related + variants  # originals first: the first of a cluster is kept
    rng.shuffle(order_tail := order[100:])
    verdict = dict(zip(bases + order_tail, near.add_batch(bases) + near.add_batch(order_tail)))
    removed_variants = sum(verdict[v] is not None for v in variants)
    removed_distinct = sum(verdict[d] is not None for d in bases + related)
    assert removed_variants >= 95, removed_variants
    assert removed_distinct < 4, removed_distinct  # < 2% of 200
    top = near.clusters(3)
    assert len(top) == 3 and all(c["size"] == 2 and c["duplicates_removed"] == 1 for c in top)
    assert top[0]["kept"] in {b[:160] for b in bases}


def test_cluster_counts_all_copies():
    near = NearDedup(DedupConfig())
    text = "the quick brown fox jumps over the lazy dog near the quiet river bank at dawn"
    out = near.add_batch([text, text + " today", text + " again", "something else entirely different here now"])
    assert out == [None, 0, 0, None]
    assert near.clusters(5) == [{"kept": text, "duplicates_removed": 2, "size": 3}]


def test_bands_give_high_recall_just_below_threshold():
    b = lsh_bands(128, 0.8)
    r = 128 // b
    assert 1 - (1 - 0.75 ** r) ** b >= 0.99


@pytest.mark.parametrize("kw", [{"threshold": 0}, {"threshold": 1.5}, {"num_perm": 12}, {"shingle_size": 0}])
def test_bad_settings_rejected(kw):
    with pytest.raises(WorkbenchError):
        DedupConfig(**kw).validate()
