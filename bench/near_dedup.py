"""Near-dedup on a planted corpus: ours (workbench.data.dedup.NearDedup) against datatrove's MinHash.

    python bench/near_dedup.py                      # quality (k = 2, 5; 5 seeds) + throughput, both methods
    python bench/near_dedup.py --sweep              # ours only: threshold x num_perm grid (how defaults were chosen)
    python bench/near_dedup.py --datatrove-python /tmp/dtvenv/bin/python   # datatrove from another venv

The corpus (deterministic per seed): `--originals` distinct documents of ~150 words, each from its
own vocabulary (disjoint slices of one pool of made-up words) plus a shared list of 24 function
words, so distinct documents share almost no 5-word shingle (the largest Jaccard similarity
between two originals is measured and printed). A third of the originals get 1 or 2 copies,
each copy with k words replaced by other words of that original's vocabulary (k = 2 and 5: up to
5k of ~146 shingles change, Jaccard to the original >= 0.87 and >= 0.71). Then the whole corpus
is shuffled, so a copy often comes before its original: two copies of one original (Jaccard
~0.76 at k = 2, ~0.5 at k = 5) meet only through it.

Figures per method and k, summed over the seeds:
  reduced   planted clusters (original + copies) with exactly one member left
  extra     copies left beyond one per cluster
  lost      distinct documents (planted clusters, with or without copies) with no member left
  docs/s    documents deduplicated per second (ours: add_batch in batches of 1000, shingling included;
            datatrove: its four stages in one process, signatures on a temporary local folder)
  peak MB   peak RSS during dedup above the RSS before it (VmHWM reset), in a fresh process per run
Throughput and memory come from a separate, larger corpus (--throughput-originals, k = 2).

datatrove is measured when importable here or through --datatrove-python (it needs `xxhash<4`,
spacy for its English word tokenizer, and a fresh logging folder per run, else a rerun silently
does nothing: each run gets its own temporary folder). Its defaults: 5-grams, 14 buckets x 8
hashes, no check of candidates. Not a test: results go to docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FUNCTION_WORDS = ("the of and to in a is that for it as was with be by on not he this are or his from at "
                  "which but").split()
_ONSETS = ["b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z",
           "br", "cl", "dr", "fl", "gr", "pl", "st", "tr", "sh", "ch"]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ea", "ou", "io"]
VOCAB = 80  # content words per original


# ---------------------------------------------------------------------------------------- corpus
def _word_pool(rng: random.Random, n: int) -> list[str]:
    seen: set[str] = set(FUNCTION_WORDS)
    pool = []
    while len(pool) < n:
        w = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(rng.randint(2, 4)))
        if w not in seen:
            seen.add(w)
            pool.append(w)
    return pool


def _original(rng: random.Random, vocab: list[str]) -> list[list[str]]:
    """Sentences (lists of words) of ~150 words: 30% function words, the rest from `vocab`."""
    sentences, n = [], rng.randint(140, 160)
    while n > 0:
        length = min(n, rng.randint(6, 14))
        sentences.append([rng.choice(FUNCTION_WORDS) if rng.random() < 0.3 else rng.choice(vocab)
                          for _ in range(length)])
        n -= length
    return sentences


def _render(sentences: list[list[str]]) -> str:
    return " ".join(" ".join(s).capitalize() + "." for s in sentences)


def _copy(rng: random.Random, sentences: list[list[str]], vocab: list[str], k: int) -> list[list[str]]:
    """The document with k distinct word positions replaced by different words of its vocabulary."""
    out = [list(s) for s in sentences]
    positions = [(i, j) for i, s in enumerate(out) for j in range(len(s))]
    for i, j in rng.sample(positions, k):
        out[i][j] = rng.choice([w for w in vocab if w != out[i][j]])
    return out


def planted_corpus(originals: int, k: int, seed: int, order: str = "shuffled") -> tuple[list[str], list[int]]:
    """(texts, cluster id per text): originals 0..n-1, a third with 1-2 copies of k words changed."""
    rng = random.Random(seed)
    pool = _word_pool(rng, originals * VOCAB)
    texts, cluster = [], []
    copies = []
    for c in range(originals):
        vocab = pool[c * VOCAB:(c + 1) * VOCAB]
        doc = _original(rng, vocab)
        texts.append(_render(doc))
        cluster.append(c)
        if c % 3 == 0:
            copies += [(_render(_copy(rng, doc, vocab, k)), c) for _ in range(rng.randint(1, 2))]
    pairs = list(zip(texts, cluster))
    if order == "shuffled":
        pairs += copies
        rng.shuffle(pairs)
    else:  # originals first, then the copies in random order
        rng.shuffle(copies)
        pairs += copies
    return [t for t, _ in pairs], [c for _, c in pairs]


def _shingle_set(text: str, n: int = 5) -> set[str]:
    import re
    words = re.findall(r"\w+", text.lower())
    return {" ".join(words[i:i + n]) for i in range(len(words) - n + 1)}


def corpus_check(originals: int, k: int, seed: int) -> dict:
    """Exact Jaccard similarities: the largest between two originals, and copy-original / copy-copy ranges."""
    texts, cluster = planted_corpus(originals, k, seed)
    sets = [_shingle_set(t) for t in texts]
    by_cluster: dict[int, list[int]] = {}
    for i, c in enumerate(cluster):
        by_cluster.setdefault(c, []).append(i)
    inverted: dict[str, list[int]] = {}  # shingle -> originals holding it: only pairs sharing one are compared
    first = [members[0] for members in by_cluster.values()]
    for i in first:
        for s in sets[i]:
            inverted.setdefault(s, []).append(i)
    shared: dict[tuple[int, int], int] = {}
    for holders in inverted.values():
        for a in range(len(holders)):
            for b in range(a + 1, len(holders)):
                if cluster[holders[a]] != cluster[holders[b]]:
                    key = (holders[a], holders[b])
                    shared[key] = shared.get(key, 0) + 1
    distinct = max((n / len(sets[a] | sets[b]) for (a, b), n in shared.items()), default=0.0)
    within = []
    for members in by_cluster.values():
        within += [len(sets[a] & sets[b]) / len(sets[a] | sets[b])
                   for x, a in enumerate(members) for b in members[x + 1:]]
    return {"max_jaccard_between_distinct": round(distinct, 4), "min_jaccard_within_cluster": round(min(within), 3)}


def score(cluster: list[int], kept: list[bool]) -> dict:
    survivors: dict[int, int] = {}
    size: dict[int, int] = {}
    for c, k in zip(cluster, kept):
        size[c] = size.get(c, 0) + 1
        survivors[c] = survivors.get(c, 0) + int(k)
    planted = [c for c in size if size[c] > 1]
    return {"docs": len(cluster), "clusters": len(planted), "reduced": sum(survivors[c] == 1 for c in planted),
            "extra": sum(max(survivors[c] - 1, 0) for c in planted),
            "lost": sum(survivors[c] == 0 for c in size), "distinct": len(size)}


# ---------------------------------------------------------------------------------------- memory
def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def _reset_peak() -> None:
    try:  # "5" resets VmHWM (the peak RSS) to the current RSS (Linux >= 4.0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


# ---------------------------------------------------------------------------------------- methods
def ours(threshold: float | None, num_perm: int | None):
    """A function texts -> kept flags (imports done here, outside the measurement)."""
    sys.path.insert(0, str(ROOT))
    from workbench.data.dedup import DedupConfig, NearDedup

    cfg = DedupConfig()
    if threshold is not None:
        cfg.threshold = threshold
    if num_perm is not None:
        cfg.num_perm = num_perm

    def run(texts: list[str]) -> list[bool]:
        near = NearDedup(cfg)
        kept = []
        for i in range(0, len(texts), 1000):  # prepare's default input.batch_size
            kept += [d is None for d in near.add_batch(texts[i:i + 1000])]
        return kept
    run(["warm up rensa once"])
    return run


def datatrove():
    """A function texts -> kept flags (imports done here, outside the measurement)."""
    import datatrove.executor  # noqa: F401  (imported again, from the cache, inside run)
    import datatrove.pipeline.dedup.minhash  # noqa: F401
    from loguru import logger

    logger.remove()  # its per-task logs go to the logging folders; keep stderr quiet

    def run(texts: list[str]) -> list[bool]:
        with tempfile.TemporaryDirectory(prefix="near_dedup_dt_") as folder:  # fresh: a rerun would skip
            return _datatrove_run(texts, Path(folder))
    run(["warm up spacy, its word tokenizer, and the executor once"])
    return run


def _datatrove_run(texts: list[str], f: Path) -> list[bool]:
    from datatrove.data import Document
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (MinhashConfig, MinhashDedupBuckets, MinhashDedupCluster,
                                                  MinhashDedupFilter, MinhashDedupSignature)

    cfg = MinhashConfig()  # defaults: 5-grams, 14 buckets x 8 hashes
    docs = [Document(text=t, id=str(i)) for i, t in enumerate(texts)]
    kept_ids: list[str] = []

    def collect(data, rank: int = 0, world_size: int = 1):
        for doc in data:
            kept_ids.append(doc.id)
            yield doc

    stages = [([docs, MinhashDedupSignature(output_folder=str(f / "sigs"), config=cfg)], 1),
              ([MinhashDedupBuckets(input_folder=str(f / "sigs"), output_folder=str(f / "buckets"), config=cfg)],
               cfg.num_buckets),  # stage 2 needs one task per bucket
              ([MinhashDedupCluster(input_folder=str(f / "buckets"), output_folder=str(f / "remove"), config=cfg)], 1),
              ([docs, MinhashDedupFilter(input_folder=str(f / "remove")), collect], 1)]
    for i, (pipeline, tasks) in enumerate(stages):
        LocalPipelineExecutor(pipeline=pipeline, tasks=tasks, workers=1,  # workers=1: in this process
                              logging_dir=str(f / f"logs{i}")).run()
    keep = set(kept_ids)
    return [str(i) in keep for i in range(len(texts))]


def worker(args) -> None:
    """One measurement in this (fresh) process; prints one JSON line."""
    texts, cluster = planted_corpus(args.originals, args.k, args.seed, args.order)
    run = ours(args.threshold, args.num_perm) if args.worker == "ours" else datatrove()
    _reset_peak()
    rss0 = _status_kb("VmRSS")
    t0 = time.perf_counter()
    kept = run(texts)
    seconds = time.perf_counter() - t0
    peak_mb = (_status_kb("VmHWM") - rss0) / 1024
    print(json.dumps({**score(cluster, kept), "seconds": seconds, "peak_mb": peak_mb}))


def measure(python: str, method: str, originals: int, k: int, seed: int, order: str = "shuffled",
            threshold: float | None = None, num_perm: int | None = None) -> dict:
    cmd = [python, str(Path(__file__).resolve()), "--worker", method, "--originals", str(originals),
           "--k", str(k), "--seed", str(seed), "--order", order]
    if threshold is not None:
        cmd += ["--threshold", str(threshold)]
    if num_perm is not None:
        cmd += ["--num-perm", str(num_perm)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tempfile.gettempdir())
    if res.returncode != 0:
        raise RuntimeError(f"{method} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def _datatrove_python(arg: str | None) -> str | None:
    candidates = [arg] if arg else [sys.executable, "/tmp/dtvenv/bin/python"]
    for py in candidates:
        if py and Path(py).exists() and subprocess.run(
                [py, "-c", "import datatrove.pipeline.dedup.minhash, spacy"], capture_output=True).returncode == 0:
            return py
    return None


def _sum(rows: list[dict]) -> dict:
    return {key: sum(r[key] for r in rows) for key in ("docs", "clusters", "reduced", "extra", "lost", "distinct")}


def _fmt(name: str, k: int, s: dict, order: str) -> str:
    return (f"| {name} | {k} | {s['docs']:,} | {s['reduced'] / s['clusters']:.1%} ({s['reduced']}/{s['clusters']}) "
            f"| {s['extra']} | {s['lost']} of {s['distinct']} | {order} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--originals", type=int, default=300)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--throughput-originals", type=int, default=10000)
    ap.add_argument("--datatrove-python", help="a python with datatrove (default: this one, else /tmp/dtvenv)")
    ap.add_argument("--sweep", action="store_true", help="ours only: threshold x num_perm, both orders")
    ap.add_argument("--thresholds", type=float, nargs="+", default=[0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8],
                    help="--sweep: thresholds")
    ap.add_argument("--perms", type=int, nargs="+", default=[128, 256], help="--sweep: num_perm values")
    ap.add_argument("--worker", choices=["ours", "datatrove"], help=argparse.SUPPRESS)
    ap.add_argument("--k", type=int, default=2, help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--order", default="shuffled", choices=["shuffled", "originals-first"], help=argparse.SUPPRESS)
    ap.add_argument("--threshold", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--num-perm", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)

    for k in (2, 5):
        checks = [corpus_check(args.originals, k, s) for s in args.seeds]
        print(f"k={k}: largest Jaccard between distinct originals "
              f"{max(c['max_jaccard_between_distinct'] for c in checks)}, smallest within a planted cluster "
              f"{min(c['min_jaccard_within_cluster'] for c in checks)} (exact, 5-word shingles)")
    if args.sweep:
        return sweep(args)

    dt = _datatrove_python(args.datatrove_python)
    methods = [("ours", sys.executable)] + ([("datatrove", dt)] if dt else [])
    print(f"\nplanted corpus: {args.originals} originals x seeds {args.seeds}, shuffled; "
          f"datatrove: {'measured with ' + dt if dt else 'not importable: not measured'}\n")
    print("| method | k | docs | clusters reduced to one | extra copies left | distinct lost | order |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for k in (2, 5):
        for order in ("shuffled", "originals-first"):
            for name, py in methods:
                if order != "shuffled" and name != "ours":
                    continue  # datatrove clusters offline: order cannot matter
                s = _sum([measure(py, name, args.originals, k, seed, order) for seed in args.seeds])
                print(_fmt(name, k, s, order))
    n = args.throughput_originals
    print(f"\nthroughput: {n:,} originals, k=2, seed 0, shuffled (fresh process per run)\n")
    print("| method | docs | docs/s | peak MB above start | reduced | distinct lost |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, py in methods:
        r = measure(py, name, n, 2, 0)
        print(f"| {name} | {r['docs']:,} | {r['docs'] / r['seconds']:,.0f} | {r['peak_mb']:.1f} | "
              f"{r['reduced'] / r['clusters']:.1%} | {r['lost']} |")


def sweep(args) -> None:
    print("\n| num_perm | threshold | k | order | reduced | extra | lost |")
    print("|---:|---:|---:|---|---:|---:|---:|")
    for num_perm in args.perms:
        for threshold in args.thresholds:
            for k in (2, 5):
                for order in ("shuffled", "originals-first"):
                    s = _sum([measure(sys.executable, "ours", args.originals, k, seed, order, threshold, num_perm)
                              for seed in args.seeds])
                    print(f"| {num_perm} | {threshold} | {k} | {order} | {s['reduced'] / s['clusters']:.1%} "
                          f"| {s['extra']} | {s['lost']} |", flush=True)


if __name__ == "__main__":
    main()
