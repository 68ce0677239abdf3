"""Tokenize+mask throughput vs raw tiktoken on the same text, in one run.

    python bench/tokenize_throughput.py [DATA]        # default: ../shared/data/chat_lima.jsonl

Rows (tokens/s, best of --repeat runs, same machine, same moment):
  raw encode_ordinary (loop)    tiktoken on every message content, one call each
  raw encode_ordinary_batch     the same texts in one batched call (tiktoken's threads)
  render_chat_batch             ChatML ids + labels + spans for every conversation (what trainers use)
  datasets.map (end to end)     raw records -> normalise -> render -> input_ids/labels columns
Ratios are against the faster raw row. Not a test: results go to docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from workbench.chat import render_chat_batch
from workbench.data.collate import map_conversations
from workbench.data.loading import open_source, read_records
from workbench.tokenizer import load_tokenizer

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "chat_lima.jsonl"


def best(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", nargs="?", default=str(DEFAULT))
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=1000)
    args = ap.parse_args()

    tok = load_tokenizer()
    src = open_source(args.data)
    convs = [r["messages"] for _, r in read_records(src)]
    texts = [m["content"] for c in convs for m in c]
    mb = sum(len(t.encode()) for t in texts) / 1e6

    t_loop, ids = best(lambda: [tok.enc.encode_ordinary(t) for t in texts], args.repeat)
    content_tokens = sum(map(len, ids))
    t_batch, _ = best(lambda: tok.enc.encode_ordinary_batch(texts), args.repeat)

    def render_all():
        out = []
        for i in range(0, len(convs), args.batch_size):
            out += render_chat_batch(tok, convs[i:i + args.batch_size])
        return out

    t_render, rendered = best(render_all, args.repeat)
    chat_tokens = sum(map(len, rendered))
    trained = sum(r.num_trainable for r in rendered)

    ds = src.parts[0].dataset
    t_map, mapped = best(lambda: map_conversations(ds, src.format, tok, batch_size=args.batch_size,
                                                   load_from_cache_file=False, keep_in_memory=True),
                         args.repeat)
    assert sum(map(len, mapped["input_ids"])) == chat_tokens

    raw = max(content_tokens / t_loop, content_tokens / t_batch)
    rows = [("raw encode_ordinary (loop)", content_tokens, t_loop),
            ("raw encode_ordinary_batch", content_tokens, t_batch),
            ("render_chat_batch (ids+labels+spans)", chat_tokens, t_render),
            ("datasets.map end to end", chat_tokens, t_map)]
    print(f"data: {args.data}: {len(convs)} conversations, {len(texts)} messages, {mb:.2f} MB text, "
          f"{content_tokens} content tokens, {chat_tokens} ChatML tokens ({trained} trained)")
    print(f"cpu threads: {os.cpu_count()}, repeat: best of {args.repeat}, batch size {args.batch_size}")
    print(f"{'path':40s} {'tokens/s':>12s} {'vs raw':>8s}")
    for name, n, t in rows:
        print(f"{name:40s} {n / t:12,.0f} {n / t / raw:8.2f}")


if __name__ == "__main__":
    main()
