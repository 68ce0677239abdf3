"""From normalised records to token ids and labels, truncation, and batch collation.

    examples = encode_records(tok, "conversation", records, mode="all", max_len=2048)
    batch = SFTCollator(tok.pad_id, max_len=2048, pad_to_multiple_of=8)([e.rendered for e in examples])
    batch["input_ids"], batch["labels"], batch["attention_mask"]   # [B, T] LongTensors

The inspector and the trainers both go through `encode_records` and the `truncate_*` functions, so
what the inspector shows is what is trained. The collator only truncates, pads and stacks.

Truncation policy (`max_len` tokens per sequence):
- conversations and text: keep the first `max_len` tokens (later turns are cut). An example left
  with no trainable token is dropped and counted, never sent as a batch of -100.
- prompts (for generation): keep the last `max_len` tokens, so the generation prompt survives.
- preference pairs: chosen and rejected keep the *same* prompt tokens. When prompt + longer response
  does not fit, the prompt loses tokens from its start (its end, next to the response, is kept),
  down to no less than half of `max_len`; then each response keeps its first tokens (at least
  half the budget, so a response is never cut away entirely).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from workbench.chat import (IGNORE, Rendered, prompt_length, render_chat_batch,
                            render_preference_batch, render_text_batch)
from workbench.tokenizer import Tokenizer


@dataclass
class Example:
    """One encoded record. Preference pairs fill `chosen`/`rejected`, others `rendered`."""

    index: int
    kind: str
    rendered: Rendered | None = None
    chosen: Rendered | None = None
    rejected: Rendered | None = None
    warnings: list[str] = field(default_factory=list)
    dropped: bool = False


def truncate_sft(r: Rendered, max_len: int | None) -> Rendered:
    return r.cut(max_len)


def truncate_prompt(r: Rendered, max_len: int | None) -> Rendered:
    if max_len is None or len(r) <= max_len:
        return r
    return r.cut(max_len, drop_front=len(r) - max_len)


def truncate_pair(chosen: Rendered, rejected: Rendered, max_len: int | None) -> tuple[Rendered, Rendered]:
    if max_len is None or max(len(chosen), len(rejected)) <= max_len:
        return chosen, rejected
    p = prompt_length(chosen)
    longest = max(len(chosen), len(rejected)) - p
    keep = min(p, max(max_len - longest, max_len // 2))
    return chosen.cut(max_len, drop_front=p - keep), rejected.cut(max_len, drop_front=p - keep)


def encode_records(tok: Tokenizer, kind: str, records: list[dict], indices: list[int] | None = None,
                   mode: str = "all", max_len: int | None = None) -> list[Example]:
    """Render and truncate a batch of normalised records of one kind."""
    indices = list(range(len(records))) if indices is None else indices
    if kind == "preference":
        out = []
        for i, (c, r) in zip(indices, render_preference_batch(tok, records)):
            c, r = truncate_pair(c, r, max_len)
            ex = Example(i, kind, chosen=c, rejected=r)
            for name, half in (("chosen", c), ("rejected", r)):
                if half.truncated:
                    ex.warnings.append(f"{name} truncated: {half.truncated} tokens cut (max_len {max_len})")
                if half.num_trainable == 0:
                    ex.dropped = True
                    ex.warnings.append(f"{name} has no trainable token left: pair dropped")
            out.append(ex)
        return out
    if kind == "conversation":
        rendered = [truncate_sft(r, max_len) for r in
                    render_chat_batch(tok, [rec["messages"] for rec in records], mode)]
    elif kind == "prompt":
        prompts = [rec["prompt"] for rec in records]
        rendered = [truncate_prompt(r, max_len) for r in render_chat_batch(  # nothing trained, any mode
            tok, prompts, "all", prompt_messages=[len(p) for p in prompts], add_generation_prompt=True)]
    elif kind == "text":
        rendered = [truncate_sft(r, max_len) for r in render_text_batch(tok, [rec["text"] for rec in records])]
    else:
        raise ValueError(f"unknown kind {kind!r}")
    out = []
    for i, r in zip(indices, rendered):
        ex = Example(i, kind, rendered=r)
        if r.truncated:
            ex.warnings.append(f"truncated: {r.truncated} tokens cut (max_len {max_len})")
        if kind != "prompt" and r.num_trainable == 0:
            ex.dropped = True
            ex.warnings.append("nothing trainable" + (" after truncation" if r.truncated else "")
                               + ": example dropped")
        out.append(ex)
    return out


class SFTCollator:
    """Truncate, drop examples with nothing to train, pad to the longest, stack.

    Returns input_ids, labels (-100 on masked and pad positions) and attention_mask as [B, T]
    LongTensors, or None when every example was dropped (the trainer skips it). Padding goes on
    the right with the tokenizer's pad id. `dropped`/`truncated` count over the collator's life.
    """

    def __init__(self, pad_id: int, max_len: int | None = None, pad_to_multiple_of: int | None = None):
        self.pad_id, self.max_len, self.multiple = pad_id, max_len, pad_to_multiple_of
        self.dropped = 0
        self.truncated = 0

    def __call__(self, batch: list[Rendered]):
        kept = []
        for r in batch:
            r = truncate_sft(r, self.max_len)
            self.truncated += r.truncated > 0
            if r.num_trainable == 0:
                self.dropped += 1
                continue
            kept.append(r)
        if not kept:
            return None
        return _pad([(r.input_ids, r.labels) for r in kept], self.pad_id, self.multiple)


class PreferenceCollator(SFTCollator):
    """Pairs of (chosen, rejected) -> chosen_* and rejected_* tensors padded to one length, so a
    trainer can run both halves in one forward with `torch.cat`."""

    def __call__(self, batch: list[tuple[Rendered, Rendered]]):
        kept = []
        for c, r in batch:
            c, r = truncate_pair(c, r, self.max_len)
            self.truncated += (c.truncated or r.truncated) > 0
            if c.num_trainable == 0 or r.num_trainable == 0:
                self.dropped += 1
                continue
            kept.append((c, r))
        if not kept:
            return None
        both = _pad([(x.input_ids, x.labels) for pair in kept for x in pair], self.pad_id, self.multiple)
        return {f"{half}_{key}": value[i::2] for key, value in both.items()
                for i, half in enumerate(("chosen", "rejected"))}


def _pad(rows: list[tuple[list[int], list[int]]], pad_id: int, multiple: int | None) -> dict:
    import torch

    width = max(len(ids) for ids, _ in rows)
    if multiple:
        width = -(-width // multiple) * multiple
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (ids, lab) in enumerate(rows):
        n = len(ids)
        input_ids[i, :n] = torch.tensor(ids, dtype=torch.long)
        labels[i, :n] = torch.tensor(lab, dtype=torch.long)
        attention_mask[i, :n] = 1
    return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}


def map_conversations(dataset, fmt: str, tok: Tokenizer, mode: str = "all", batch_size: int = 1000,
                      **map_kwargs):
    """`datasets.map` a raw conversation dataset to int32 input_ids/labels columns, in batches.

    A bad record raises WorkbenchError naming its index: check a source with
    `read_records(skip_bad=True)` first to count and skip them. Two things keep this near raw tiktoken speed: columns are handed to arrow as flat
    numpy buffers plus offsets (not a Python list per row), and the fingerprint is given
    explicitly (left to itself, `datasets` pickles the whole tiktoken vocabulary to hash `encode`).
    """
    import hashlib

    import pyarrow as pa

    from workbench import chat as chat_module
    from workbench.data import formats as formats_module
    from workbench.data.formats import BadRecord, normalise
    from workbench.errors import WorkbenchError

    def encode(table, indices):
        convs = []
        for i, row in zip(indices, table.to_pylist()):
            try:
                convs.append(normalise(row, fmt)["messages"])
            except BadRecord as e:
                raise WorkbenchError(f"record {i}: {e} (format {fmt})") from None
        rendered = render_chat_batch(tok, convs, mode)
        return pa.table({"input_ids": _list_column([r.input_ids for r in rendered]),
                         "labels": _list_column([r.labels for r in rendered])})

    # The cache key covers everything the output depends on, the rendering code included, so an
    # edited chat.py or formats.py never reuses stale masks from the datasets cache.
    code = b"".join(Path(m.__file__).read_bytes() for m in (chat_module, formats_module))
    key = f"{dataset._fingerprint}|{fmt}|{tok.name}|{tok.sha256}|{mode}|".encode() + code
    out = dataset.with_format("arrow").map(
        encode, with_indices=True, batched=True, batch_size=batch_size,
        remove_columns=dataset.column_names, new_fingerprint=hashlib.sha256(key).hexdigest()[:16],
        **map_kwargs)
    return out.with_format(None)


def _list_column(rows: list[list[int]]):
    import itertools

    import numpy as np
    import pyarrow as pa

    offsets = np.zeros(len(rows) + 1, dtype=np.int32)
    np.cumsum([len(r) for r in rows], out=offsets[1:])
    flat = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int32, count=int(offsets[-1]))
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat))
