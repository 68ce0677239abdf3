"""Tokenizer training time for an 8k vocabulary on ~10 MB, and compression against cl100k_base.

    python bench/tokenizer_train.py [--vocab-size 8192] [--mb 10]

The corpus is the text of ../shared/data (C4 sample, tiny-shakespeare, LIMA chats, UltraFeedback and
HH-RLHF responses), concatenated into one temporary .jsonl of about --mb megabytes; 1% of documents
are held out for the compression figure (UTF-8 bytes per token). Not a test: results go to
docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from workbench.tokenizer_train import train_tokenizer  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def texts():
    """Every string of the shared data files, as documents."""
    yield from (p for p in (SHARED / "text_tinyshakespeare.txt").read_text().split("\n\n") if p.strip())
    for name in ("text_c4_demo.jsonl", "chat_lima.jsonl", "pref_ultrafeedback_binarized_train.jsonl",
                 "pref_hh_rlhf_harmless_base_test.jsonl", "prompts_gsm8k_test.jsonl"):
        for line in (SHARED / name).read_text().splitlines():
            yield from _strings(json.loads(line))


def _strings(x):
    if isinstance(x, str):
        if len(x) > 20:
            yield x
    elif isinstance(x, dict):
        for v in x.values():
            yield from _strings(v)
    elif isinstance(x, list):
        for v in x:
            yield from _strings(v)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vocab-size", type=int, default=8192)
    ap.add_argument("--mb", type=float, default=10.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.jsonl"
        size, n = 0, 0
        with open(corpus, "w", encoding="utf-8") as f:
            while size < args.mb * 1e6:  # repeat the shared text if it is smaller than asked
                for t in texts():
                    f.write(json.dumps({"text": t}) + "\n")
                    size += len(t.encode())
                    n += 1
                    if size >= args.mb * 1e6:
                        break
        t0 = time.perf_counter()
        r = train_tokenizer([str(corpus)], args.vocab_size, Path(tmp) / "bench.tiktoken")
        wall = time.perf_counter() - t0
    print(f"corpus: {n:,} documents, {size / 1e6:.1f} MB; vocab {args.vocab_size:,}; "
          f"rustbpe training {r['train_seconds']:.1f} s (reading included), end to end {wall:.1f} s")
    print(f"compression on {r['eval']['source']}, {r['eval']['bytes']:,} bytes:")
    base = {row["tokenizer"]: row for row in r["eval"]["results"]}["cl100k_base"]["bytes_per_token"]
    for row in r["eval"]["results"]:
        name = "trained" if row["tokenizer"] != "cl100k_base" else "cl100k_base"
        print(f"  {name:<12} vocab {row['vocab_size']:>7,}  {row['bytes_per_token']:.2f} bytes/token  "
              f"({row['bytes_per_token'] / base:.2f} of cl100k_base)")


if __name__ == "__main__":
    main()
