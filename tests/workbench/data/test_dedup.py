"""Exact and MinHash-LSH near-duplicate removal: planted duplicates, transitive clusters, the report."""

import json
import random

import pytest

from workbench.data.dedup import DedupConfig, ExactDedup, NearDedup, lsh_bands, shingles
from workbench.errors import WorkbenchError

N = 5
SHARP = DedupConfig(num_perm=512)  # estimate sd ~0.02: the chain tests' premises hold with a wide margin


def _words(rng, k):
    syll = ["ka", "lo", "mi", "ren", "tas", "vo", "zu", "pel", "dor", "ith", "an", "se", "qua", "bri"]
    return [("".join(rng.choice(syll) for _ in range(rng.randint(1, 3)))) for _ in range(k)]


def jaccard(a: str, b: str) -> float:
    x, y = set(shingles(a, N)), set(shingles(b, N))
    return len(x & y) / len(x | y)


def _chain(rng, steps: int, changes: int, words: int = 150) -> list[str]:
    """A document, then `steps` versions, each with `changes` more words replaced. Replaced words are
    6 apart, so each changes 5 shingles of its own: m replaced in all give Jaccard (n-5m)/(n+5m)."""
    w = _words(rng, words)
    positions = rng.sample(range(0, words, 6), steps * changes)
    out = [" ".join(w)]
    for s in range(steps):
        for i in positions[s * changes:(s + 1) * changes]:
            w[i] = "edited" + str(i)
        out.append(" ".join(w))
    return out


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
    assert all(verdict[v] is not None for v in variants)
    assert [d for d in bases + related if verdict[d] is not None] == []  # no distinct document lost
    assert [verdict[v] for v in variants] == list(range(100))  # the key returned: its original's (keys = input order)
    top = near.clusters(3)
    assert len(top) == 3 and all(c["size"] == 2 and c["duplicates_removed"] == 1 for c in top)
    assert top[0]["kept"] in {b[:160] for b in bases}
    assert [m["kept"] for m in top[0]["members"]] == [True, False]


def test_chain_collapses_to_its_first_document():
    """A~B~C~D~E, each 3 words from the last; A and E share little. Comparing only with kept
    documents kept the ones that drifted away from A; the union-find removes all but A."""
    a, b, c, d, e = chain = _chain(random.Random(1), steps=4, changes=3)
    assert jaccard(a, b) > 0.8 and jaccard(d, e) > 0.8 and jaccard(a, e) < 0.45
    assert NearDedup(SHARP).add_batch([a, e]) == [None, None]   # premise: A and E are not near
    near = NearDedup(SHARP)
    assert near.add_batch(chain) == [None, 0, 0, 0, 0]
    [cluster] = near.clusters(5)
    assert cluster["size"] == 5 and cluster["duplicates_removed"] == 4 and cluster["kept"] == a[:160]
    members = [(m["kept"], m["text"]) for m in cluster["members"]]
    assert members == [(True, a[:160])] + [(False, t[:160]) for t in chain[1:]]


def test_a_later_bridge_merges_clusters_but_unkeeps_nothing():
    a, b, c = _chain(random.Random(2), steps=2, changes=4)  # A~B~C, A and C not near
    assert NearDedup(SHARP).add_batch([a, c]) == [None, None]
    near = NearDedup(SHARP)
    assert near.add_batch([a, c, b]) == [None, None, 0]  # streaming: C was already written
    [cluster] = near.clusters(5)
    assert (cluster["size"], cluster["duplicates_removed"]) == (3, 1)
    assert [(m["kept"], m["text"]) for m in cluster["members"]] == [(True, a[:160]), (True, c[:160]), (False, b[:160])]
    more = near.add_batch([c + " again"])  # joins the merged cluster: its key is A's
    assert more == [0] and near.clusters(1)[0]["size"] == 4


def test_results_do_not_depend_on_batches_and_repeat_exactly():
    rng = random.Random(3)
    texts = [t for _ in range(6) for t in _chain(rng, steps=2, changes=2, words=80)] + \
        [" ".join(_words(rng, 80)) for _ in range(10)]
    rng.shuffle(texts)

    def run(batch):
        near = NearDedup(DedupConfig())
        out = [d for i in range(0, len(texts), batch) for d in near.add_batch(texts[i:i + batch])]
        return out, near.clusters(10)
    first = run(len(texts))
    assert sum(d is not None for d in first[0]) >= 10  # most chain members removed: the comparison means something
    assert run(1) == first == run(7) == run(len(texts))


def test_cluster_counts_all_copies_and_lists_a_bounded_number_of_members():
    near = NearDedup(DedupConfig(), members=3)
    text = "the quick brown fox jumps over the lazy dog near the quiet river bank at dawn"
    copies = [text + w for w in (" today", " again", " twice", " at last")]
    out = near.add_batch([text, copies[0], "something else entirely different here now", *copies[1:]])
    assert out == [None, 0, None, 0, 0, 0]
    assert near.clusters(5) == [{"kept": text, "duplicates_removed": 4, "size": 5,
                                 "members": [{"kept": True, "text": text}, {"kept": False, "text": copies[0]},
                                             {"kept": False, "text": copies[1]}]}]


def test_report_lists_largest_clusters_with_members(tmp_path):
    from workbench.data.prepare import load_config, prepare
    from workbench.data.prepare_report import to_markdown

    rng = random.Random(4)
    a, b, c = (t + "." for t in _chain(rng, steps=2, changes=2))
    docs = [" ".join(_words(rng, 150)) + "." for _ in range(4)] + [a, b, c]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    report = prepare([str(src)], tmp_path / "out", load_config(None, {"filters.enabled": False, "pack.seq_len": 16}))
    step = next(s for s in report["steps"] if s["name"] == "near_dedup")
    assert step["removed"] == {"near duplicate": 2}
    [cluster] = step["clusters"]
    a, b, c = (t[:160] for t in (a, b, c))  # snippets
    assert cluster["size"] == 3 and [m["text"] for m in cluster["members"]] == [a, b, c]
    md = (tmp_path / "out" / "report.md").read_text()
    assert f"- cluster of 3 (2 removed), kept: {a!r}\n  - removed: {b!r}\n  - removed: {c!r}\n" in md
    del cluster["members"]  # a report from before members were listed still renders
    lines = to_markdown(report).splitlines()
    at = lines.index(f"- cluster of 3 (2 removed), kept: {a!r}")
    assert "removed: " not in "\n".join(lines[at + 1:])


def test_bands_give_high_recall_just_below_threshold():
    for num_perm, threshold in ((128, 0.65), (128, 0.8), (256, 0.7)):
        r = num_perm // lsh_bands(num_perm, threshold)
        s = threshold - (threshold * (1 - threshold) / num_perm) ** 0.5
        assert 1 - (1 - s ** r) ** (num_perm // r) >= 0.99
        assert 1 - (1 - s ** (2 * r)) ** (num_perm // (2 * r)) < 0.99 or 2 * r > num_perm  # and the fewest bands


@pytest.mark.parametrize("kw", [{"threshold": 0}, {"threshold": 1.5}, {"num_perm": 12}, {"shingle_size": 0}])
def test_bad_settings_rejected(kw):
    with pytest.raises(WorkbenchError):
        DedupConfig(**kw).validate()
