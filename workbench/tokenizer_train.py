"""Train a byte-level BPE tokenizer with `rustbpe` and save it as a tiktoken ranks file.

    workbench tokenizer train ../shared/data/text_tinyshakespeare.txt --vocab-size 4096 --out shakespeare.tiktoken
    workbench inspect sample_data/chat.jsonl --tokenizer shakespeare.tiktoken

    from workbench.tokenizer_train import train_tokenizer
    report = train_tokenizer(["corpus.jsonl"], 8192, "my.tiktoken")

The split pattern is cl100k_base's (GPT-4's), the same one `load_tokenizer` uses for a ranks file,
so text is pre-split exactly as it was in training. `vocab_size` counts the 256 single-byte tokens
(ranks 0-255) and the merges learned after them; `load_tokenizer` then appends `<|endoftext|>`,
`<|im_start|>`, `<|im_end|>`, `<|pad|>` at ids vocab_size .. vocab_size + 3. Any vocabulary of at
most 65,532 thus fits uint16 shards. Documents are read like `workbench data prepare` reads them
(.txt, .jsonl/.json with a text field, .parquet, folders) and streamed into rustbpe, which counts
pre-split chunks in Rust on every core; a `held_out` share of documents (by hash) is kept aside to
measure compression (UTF-8 bytes per token) against cl100k_base.
"""

from __future__ import annotations

import base64
import hashlib
import os
import time
from pathlib import Path

from workbench.data.corpus import ReadConfig, ReadStats, iter_documents
from workbench.errors import WorkbenchError
from workbench.io import atomic_write_text

MAX_VOCAB = 1 << 20  # beyond this a "small, fast vocabulary" has stopped being one
EVAL_BYTES = 20_000_000  # held-out text kept for the compression report, at most


def train_tokenizer(corpus: list[str], vocab_size: int, out: str | os.PathLike, *,
                    held_out: float = 0.01, eval_files: list[str] | None = None,
                    read: ReadConfig | None = None, force: bool = False) -> dict:
    """Train, write `out` atomically, reload it with load_tokenizer, and report compression."""
    import rustbpe

    from workbench.tokenizer import load_tokenizer

    if not 257 <= vocab_size <= MAX_VOCAB:
        raise WorkbenchError(f"--vocab-size must be between 257 (the 256 byte tokens plus one merge) and "
                             f"{MAX_VOCAB:,}, got {vocab_size:,}")
    if not 0.0 <= held_out < 1.0:
        raise WorkbenchError(f"--held-out must be in [0, 1), got {held_out}")
    out = Path(out).expanduser()
    if out.suffix != ".tiktoken":
        raise WorkbenchError(f"--out must end in .tiktoken (got {out.name}); that is how --tokenizer recognises it")
    if out.is_dir() or (out.exists() and not force):
        raise WorkbenchError(f"{out} already exists; use --force to replace it")
    read = read or ReadConfig()
    # read the evaluation text first: a bad --eval must fail before anything is written
    eval_docs = list(iter_documents(eval_files, read, ReadStats())) if eval_files else None
    stats = ReadStats()
    held: list[str] = []
    held_bytes = 0
    pattern = load_tokenizer().enc._pat_str  # cl100k_base's split pattern

    def training_docs():
        nonlocal held_bytes
        for text in iter_documents(corpus, read, stats):
            if not text.strip():
                continue
            h = int.from_bytes(hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")
            if not eval_files and h < held_out * 2**64:
                if held_bytes < EVAL_BYTES:
                    held.append(text)
                    held_bytes += len(text.encode("utf-8", "surrogatepass"))
                continue
            yield text

    t0 = time.perf_counter()
    bpe = rustbpe.Tokenizer()
    docs = training_docs()
    first = next(docs, None)  # rustbpe would happily train nothing; say so instead
    if first is None:
        raise WorkbenchError("the corpus has no text to train on" + (f" ({held_bytes:,} bytes were all held "
                             "out; lower --held-out)" if held else ""))
    bpe.train_from_iterator(_chain(first, docs), vocab_size, pattern=pattern)
    seconds = time.perf_counter() - t0
    ranks = bpe.get_mergeable_ranks()
    _write_ranks(out, ranks)
    tok = load_tokenizer(out)

    if eval_docs is not None:
        held = eval_docs
        source = f"{', '.join(eval_files)}"
    elif held:
        source = f"held-out {held_out:.0%} of documents ({len(held):,})"
    else:
        held = [t for t, _ in zip(iter_documents(corpus, read, ReadStats()), range(100))]
        source = "training text (no document was held out: corpus too small or --held-out 0)"
    text_bytes = sum(len(t.encode("utf-8", "surrogatepass")) for t in held)
    rows = []
    for name, t in (("trained", tok), ("cl100k_base", load_tokenizer())):
        n = sum(map(len, t.enc.encode_ordinary_batch(held))) if held else 0
        rows.append({"tokenizer": name if name == "cl100k_base" else str(out), "vocab_size": t.vocab_size,
                     "tokens": n, "bytes_per_token": round(text_bytes / n, 3) if n else None})
    return {"out": str(out), "requested_vocab_size": vocab_size, "ranks": len(ranks),
            "vocab_size_with_specials": tok.vocab_size, "specials": {
                "<|endoftext|>": tok.eot_id, "<|im_start|>": tok.im_start_id, "<|im_end|>": tok.im_end_id,
                "<|pad|>": tok.pad_id},
            "sha256": tok.sha256, "documents": stats.documents, "bytes": stats.bytes,
            "skipped": dict(stats.skipped), "train_seconds": round(seconds, 3),
            "eval": {"source": source, "bytes": text_bytes, "results": rows}}


def _chain(first, rest):
    yield first
    yield from rest


def _write_ranks(out: Path, ranks: list[tuple[bytes, int]]) -> None:
    """tiktoken's format: `<base64 token> <rank>` per line, written to a temp file then renamed."""
    lines = [f"{base64.b64encode(bytes(token)).decode()} {rank}\n" for token, rank in sorted(ranks, key=lambda r: r[1])]
    atomic_write_text(out, "".join(lines), encoding="ascii")


def print_report(report: dict, console) -> None:
    from rich.table import Table

    table = Table(title=f"compression on {report['eval']['source']} ({report['eval']['bytes']:,} bytes)",
                  title_justify="left")
    for h in ("tokenizer", "vocab", "tokens", "bytes/token"):
        table.add_column(h, justify="left" if h == "tokenizer" else "right")
    for r in report["eval"]["results"]:
        table.add_row(r["tokenizer"], f"{r['vocab_size']:,}", f"{r['tokens']:,}",
                      "-" if r["bytes_per_token"] is None else f"{r['bytes_per_token']:.2f}")
    console.print(f"trained {report['ranks']:,} tokens (256 bytes + {report['ranks'] - 256:,} merges) on "
                  f"{report['documents']:,} documents ({report['bytes'] / 1e6:.2f} MB) in "
                  f"{report['train_seconds']:.1f} s -> {report['out']}", highlight=False)
    if report["ranks"] < report["requested_vocab_size"]:
        console.print(f"[yellow]note:[/] the corpus only supported {report['ranks']:,} of the "
                      f"{report['requested_vocab_size']:,} requested tokens", highlight=False)
    if report["skipped"]:
        console.print("skipped: " + ", ".join(f"{n} {r}" for r, n in report["skipped"].items()), highlight=False)
    console.print(table)
    sp = report["specials"]
    console.print("specials appended: " + ", ".join(f"{k} = {v}" for k, v in sp.items())
                  + f"; use it with --tokenizer {report['out']}", highlight=False, markup=False)
