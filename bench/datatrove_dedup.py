"""prepare on datatrove (workbench/data/datatrove_steps.py) against prepare itself, on bench/near_dedup.py's
planted corpus: how often the two keep the same documents, and how well each collapses the clusters.

    python bench/datatrove_dedup.py                 # k = 2, 5 words changed; 5 seeds of 300 originals
    python bench/datatrove_dedup.py --seeds 1 --originals 100

Each seed's corpus (shuffled: copies often come before their original) is split into two .jsonl files;
prepare runs on both, and run_local with 2 tasks (one per file, 2 workers), both with the quality filters
off (the planted words are made up) and everything else at its defaults. Figures per k, summed over
seeds: `reduced`, `extra`, `lost` as in bench/near_dedup.py, `differ`: documents kept by one run and not
the other. Not a test: results go to docs/datatrove.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.near_dedup import planted_corpus, score  # noqa: E402


def kept_texts(folder: Path, tok) -> Counter:
    from workbench.data.shards import open_shards

    texts: Counter = Counter()
    for split in ("train", "val"):
        ds = open_shards(folder, split)
        texts.update(tok.decode(ds.tokens(0, ds.num_tokens).tolist()).split("<|endoftext|>")[:-1])
    return texts


def one(originals: int, k: int, seed: int, root: Path, tok) -> dict:
    from workbench.data.datatrove_steps import run_local
    from workbench.data.filters import FilterConfig, normalise_text
    from workbench.data.prepare import load_config, prepare

    texts, cluster = planted_corpus(originals, k, seed)
    half = len(texts) // 2
    files = []
    for name, part in (("a.jsonl", texts[:half]), ("b.jsonl", texts[half:])):
        (root / name).write_text("".join(json.dumps({"text": t}) + "\n" for t in part), encoding="utf-8")
        files.append(str(root / name))
    cfg = {"filters.enabled": False, "pack.seq_len": 64}
    t0 = time.perf_counter()
    prepare(files, root / "prepare", load_config(None, cfg))
    t1 = time.perf_counter()
    run_local(files, root / "datatrove", load_config(None, cfg), tasks=2, workers=2)
    t2 = time.perf_counter()
    norm = [normalise_text(t, FilterConfig()) for t in texts]
    out = {}
    for name in ("prepare", "datatrove"):
        kept = kept_texts(root / name, tok)
        out[name] = [kept[t] > 0 for t in norm]
    row = {m: score(cluster, out[m]) for m in out}
    row["differ"] = sum(a != b for a, b in zip(out["prepare"], out["datatrove"]))
    row["seconds"] = {"prepare": t1 - t0, "datatrove": t2 - t1}
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--originals", type=int, default=300)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--ks", type=int, nargs="+", default=[2, 5])
    args = ap.parse_args()
    from loguru import logger

    from workbench.tokenizer import load_tokenizer

    logger.remove()  # datatrove's per-task logs go to the logging folders
    tok = load_tokenizer()
    print("| k | method | docs | clusters reduced to one | extra copies left | distinct lost | kept differently "
          "| seconds |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for k in args.ks:
        rows = []
        for seed in range(args.seeds):
            with tempfile.TemporaryDirectory(prefix="dt_dedup_") as d:
                rows.append(one(args.originals, k, seed, Path(d), tok))
        differ = sum(r["differ"] for r in rows)
        for m in ("prepare", "datatrove"):
            s = {key: sum(r[m][key] for r in rows) for key in ("docs", "clusters", "reduced", "extra", "lost",
                                                              "distinct")}
            secs = sum(r["seconds"][m] for r in rows)
            print(f"| {k} | {m} | {s['docs']:,} | {s['reduced'] / s['clusters']:.1%} ({s['reduced']}/{s['clusters']}) "
                  f"| {s['extra']} | {s['lost']} of {s['distinct']} | {differ} | {secs:.1f} |", flush=True)


if __name__ == "__main__":  # datatrove's workers re-import this file (forkserver): run only here
    main()
