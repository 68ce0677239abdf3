"""Training data for the stages: encoded examples, a validation split, and resumable batch order.

    examples, info = load_examples(cfg.data, "conversation", tok, max_len=512, fmt=cfg.format)
    train, val = split_validation(examples, cfg.val_fraction, seed=cfg.seed)
    loader = ExampleLoader(train, batch_size=8, seed=0, collate=fn)
    for position, batch in loader.batches(start=0): ...     # position resumes exactly

Every example goes through `workbench.data.collate.encode_records`, the code path `workbench
inspect` shows, so what the inspector highlights is what is trained. Examples left with nothing
trainable are dropped and counted; a source with no usable example is an error naming it.
"""

from __future__ import annotations

import hashlib

import numpy as np

from workbench.data.collate import Example, encode_records
from workbench.errors import WorkbenchError

def load_examples(spec: str, kind: str, tok, *, max_len: int | None, fmt: str | None = None,
                  mode: str = "all", skip_bad: bool = False, log=None) -> tuple[list[Example], dict]:
    """Read, normalise and encode every record of `spec` as `kind` (conversation, preference, prompt, text)."""
    from workbench.data.formats import FORMATS
    from workbench.data.loading import open_source, read_records

    src = open_source(spec, fmt, skip_bad=skip_bad)
    if src.kind != kind:
        need = {"conversation": "conversations (ultrachat, messages, sharegpt, alpaca, completion)",
                "preference": "preference pairs (prompt/chosen/rejected)", "prompt": "prompts",
                "text": "plain text"}[kind]
        raise WorkbenchError(f"{spec}: this stage needs {need}, but the data is {src.format} "
                             f"({', '.join(FORMATS)} are known; set format=... if detection was wrong)")
    indices, records = [], []
    for i, rec in read_records(src, skip_bad=skip_bad):
        indices.append(i)
        records.append(rec)
    examples, dropped, truncated = [], 0, 0
    for start in range(0, len(records), 512):
        for ex in encode_records(tok, kind, records[start:start + 512], indices[start:start + 512],
                                 mode=mode, max_len=max_len):
            truncated += any("truncated" in w for w in ex.warnings)
            if ex.dropped:
                dropped += 1
            else:
                examples.append(ex)
    info = {"path": spec, "format": src.format, "records": len(records), "examples": len(examples),
            "dropped_nothing_trainable": dropped, "truncated": truncated,
            "skipped_bad": sum(src.summary.skipped.values()) + sum(src.summary.unreadable.values())}
    if log is not None:
        cut = f"{truncated} truncated to {max_len} tokens, " if max_len else ""
        log(f"{spec}: {len(examples)} examples from {len(records)} records ({src.format}); "
            f"{dropped} dropped (nothing trainable), {cut}{info['skipped_bad']} bad records skipped")
    if not examples:
        raise WorkbenchError(f"{spec}: no usable example ({len(records)} records, {dropped} with nothing "
                             f"trainable after truncation to max_len={max_len})")
    return examples, info


def split_validation(examples: list, fraction: float, seed: int = 0) -> tuple[list, list]:
    """Hold out `fraction` of the examples (at least one when fraction > 0), by a hash of their
    index, so the split does not change with the batch size or the order of the file's lines."""
    if fraction <= 0 or len(examples) < 2:
        return examples, []

    def score(ex):
        return hashlib.blake2b(f"{seed}:{ex.index}".encode(), digest_size=8).digest()

    ranked = sorted(examples, key=score)
    n_val = max(1, int(round(len(examples) * fraction)))
    val_ids = {id(ex) for ex in ranked[:n_val]}
    return [e for e in examples if id(e) not in val_ids], [e for e in examples if id(e) in val_ids]


def mix_documents(sources: dict, tok, *, val_fraction: float, seed: int, fmt: str | None = None,
                  skip_bad: bool = False, log=None) -> tuple[list[np.ndarray], list[np.ndarray], list[dict]]:
    """Pretraining on a mix of raw text sources, {path: weight}: each source is encoded and split
    (val_fraction of its documents held out), then its train documents are sampled so the stream
    holds the weights' shares of tokens, as `workbench data prepare --mix` does (data/mix.py): the
    scarcest source relative to its weight once, the others subsampled, interleaved by `seed`.
    Returns (train documents in stream order, val documents, per source {path, share, epochs, ...})."""
    from workbench.data.mix import describe, mix_order

    train, val = [], []
    for path in sources:
        examples, _ = load_examples(path, "text", tok, max_len=None, fmt=fmt, skip_bad=skip_bad, log=log)
        kept, held = split_validation(examples, val_fraction, seed)
        train.append([np.asarray(e.rendered.input_ids, dtype=np.int64) for e in kept])
        val += [np.asarray(e.rendered.input_ids, dtype=np.int64) for e in held]
    lengths = [np.array([len(d) for d in docs], dtype=np.int64) for docs in train]
    order = mix_order(lengths, list(sources.values()), 0, seed)
    rows = [{"path": path, **row} for path, row in zip(sources, describe(*order, lengths, list(sources.values())))]
    if log is not None:
        for r in rows:
            log(f"mix: {r['path']}: {r['tokens']:,} train tokens, share {r['share']:.3f} (weight {r['weight']:.3f}), "
                f"{r['epochs']:.2f} epochs ({r['documents_in_mix']:,} of {r['documents']:,} documents)")
    return [train[k][i] for k, i in zip(*(a.tolist() for a in order))], val, rows


class ExampleLoader:
    """Shuffled batches of examples, epoch after epoch; the order is a function of (seed, epoch) only.

    `position` counts examples consumed since the start, so resuming at a position replays nothing
    and skips nothing. A batch may straddle two epochs.
    """

    def __init__(self, items: list, batch_size: int, seed: int, collate, shuffle: bool = True):
        if not items:
            raise WorkbenchError("no examples to train on")
        self.items, self.batch_size, self.seed, self.collate, self.shuffle = items, batch_size, seed, collate, shuffle

    def order(self, epoch: int) -> np.ndarray:
        n = len(self.items)
        return np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)

    def stream(self, start: int = 0):
        """Yield (position after it, item) one at a time, epoch after epoch."""
        n, position, cached = len(self.items), start, (None, None)
        while True:
            epoch = position // n
            if cached[0] != epoch:
                cached = (epoch, self.order(epoch))
            item = self.items[int(cached[1][position % n])]
            position += 1
            yield position, item

    def batches(self, start: int = 0):
        stream = self.stream(start)
        while True:
            chosen = [next(stream) for _ in range(self.batch_size)]
            yield chosen[-1][0], self.collate([item for _, item in chosen])


def eval_batches(items: list, batch_size: int, limit: int, collate):
    """Fixed validation batches in file order: the first `limit` (0 = all)."""
    out = []
    for start in range(0, len(items), batch_size):
        if limit and len(out) >= limit:
            break
        out.append(collate(items[start:start + batch_size]))
    return out
