"""Merging shard parts into one token-shard folder (shards.py's format): the last stage of prepare on
datatrove (datatrove_steps.py). Needs no datatrove.

    from workbench.data.shard_merge import merge_shards
    merge_shards("runs/work", "runs/data")          # runs/work/parts/00000 ... -> runs/data (atomic)

A part is a folder WORK/parts/RANK/ written by one task: {train,val}_NNNNN.bin as in shards.py and
part.json {format, rank, world_size, tokenizer, dtype, seq_len, shard_tokens, val_fraction, splits
(ShardWriter.summary per split), train_tail (token counts of the newest train documents, as many as
prepare's splitter holds back: the last ones whose tokens past the first stay under seq_len + 1)}.
The merge checks that every rank 0..world_size-1 is there and that all parts agree, concatenates
the splits in rank order (prepare's reading order) re-cut at shard_tokens, and, when val is short of
one window, moves the last train documents to val by prepare's rule (shards.val_top_up).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from workbench.data.shards import SPLITS, ShardWriter, val_top_up, write_index
from workbench.errors import WorkbenchError
from workbench.io import atomic_dir

PART_FORMAT = "workbench-shard-part"


def merge_shards(work: str | os.PathLike, out: str | os.PathLike, force: bool = False) -> dict:
    """WORK/parts/* (every task of the shards stage) -> one shard folder at OUT, written atomically:
    the parts' streams concatenated in rank order, re-cut at shard_tokens; the last train documents
    move to val when val has less than one window, as in prepare. Returns index.json's contents."""
    parts_dir = Path(work).expanduser() / "parts"
    parts = []
    for path in sorted(parts_dir.glob("[0-9]*/part.json")):
        try:
            part = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise WorkbenchError(f"{path}: unreadable ({e})") from None
        if not isinstance(part, dict) or part.get("format") != PART_FORMAT:
            raise WorkbenchError(f"{path}: not a workbench shard part")
        parts.append((path.parent, part))
    if not parts:
        raise WorkbenchError(f"{parts_dir}: no finished parts; run the shards stage first (see stages())")
    first = parts[0][1]
    for path, part in parts:
        for key in ("world_size", "tokenizer", "dtype", "seq_len", "shard_tokens", "val_fraction"):
            if part.get(key) != first.get(key):
                raise WorkbenchError(f"{path}/part.json: {key} {part.get(key)!r} differs from "
                                     f"{parts[0][0]}/part.json ({first.get(key)!r}): parts of different runs")
    parts.sort(key=lambda p: p[1]["rank"])
    missing = sorted(set(range(first["world_size"])) - {p["rank"] for _, p in parts})
    if missing:
        raise WorkbenchError(f"{parts_dir}: tasks {', '.join(map(str, missing))} of {first['world_size']} of the "
                             "shards stage did not finish; run that stage again with the same logging folder "
                             "(only unfinished tasks run)")
    total = {s: {k: sum(p["splits"][s][k] for _, p in parts) for k in ("documents", "tokens")} for s in SPLITS}
    if total["train"]["documents"] + total["val"]["documents"] == 0:
        raise WorkbenchError("no documents left after filtering; nothing written. Loosen the thresholds "
                             "(see configs/data/prepare.yaml) and run again in a fresh work folder")
    moved, moved_tokens = _moved_to_val(parts, total, first["seq_len"] + 1, first["val_fraction"])
    dtype = np.dtype(first["dtype"]).newbyteorder("<")
    streams = {s: [(folder / sh["file"], sh["tokens"]) for folder, p in parts for sh in p["splits"][s]["shards"]]
               for s in SPLITS}
    keep = total["train"]["tokens"] - moved_tokens
    with atomic_dir(out, force=force, protect=[work]) as tmp:
        writers = {s: ShardWriter(tmp, s, dtype, first["shard_tokens"]) for s in SPLITS}
        try:
            _copy(streams["train"], 0, keep, writers["train"], dtype)
            _copy(streams["val"], 0, total["val"]["tokens"], writers["val"], dtype)
            _copy(streams["train"], keep, total["train"]["tokens"], writers["val"], dtype)
        finally:
            for w in writers.values():
                w.close()
        writers["train"].documents = total["train"]["documents"] - moved
        writers["val"].documents = total["val"]["documents"] + moved
        seq_len = first["seq_len"]
        splits = {s: w.summary(seq_len) for s, w in writers.items()}
        index = write_index(tmp, first["tokenizer"], dtype, seq_len, splits)
    return index


def _moved_to_val(parts, total: dict, need: int, val_fraction: float) -> tuple[int, int]:
    """prepare's TrainValSplitter.finish over the whole train stream: (documents, tokens) moved to val.
    The newest train documents (at most `need` tokens past the first of them) are the parts' tails,
    newest part first: a part's tail is a prefix of that only when it is the whole part."""
    pending: list[int] = []  # newest last
    for _, part in reversed(parts):
        for n in reversed(part["train_tail"]):
            if sum(pending) >= need:
                break
            pending.insert(0, n)
    train, val = ((total[s]["documents"], total[s]["tokens"]) for s in SPLITS)
    moved = val_top_up(pending, train, val, need, val_fraction)
    return moved, sum(pending[len(pending) - moved:])


def _copy(stream: list, start: int, stop: int, writer: ShardWriter, dtype, chunk: int = 1 << 22) -> None:
    """Tokens [start, stop) of a stream of (file, tokens) shards appended to `writer`, chunk by chunk."""
    offset = 0
    for path, n in stream:
        lo, hi = max(start - offset, 0), min(stop - offset, n)
        if lo < hi:
            if path.stat().st_size != n * dtype.itemsize:
                raise WorkbenchError(f"{path}: {path.stat().st_size} bytes, its part.json says {n} tokens; "
                                     "the part is damaged, run the shards stage again")
            data = np.memmap(path, dtype=dtype, mode="r")
            for i in range(lo, hi, chunk):
                writer.write(data[i:min(i + chunk, hi)], documents=0)
            del data
        offset += n
