"""Token shards: the flat token stream `workbench data prepare` writes, and the reader trainers use.

    from workbench.data.shards import open_shards
    train = open_shards("runs/data", "train", tokenizer=tok)   # refuses a mismatched tokenizer
    train.num_tokens, train.num_windows(256)
    w = train.window(0, 256)                                     # 257 tokens: x = w[:-1], y = w[1:]
    for position, batch in train.batches(8, 256, seed=0, start=0):
        x, y = batch[:, :-1], batch[:, 1:]                       # int64 [8, 256] each
        ...                                                      # save `position` to resume

On disk (one folder):
    index.json                      written last: a folder without it is incomplete and is refused
    train_00000.bin, train_00001.bin, ..., val_00000.bin
Each .bin is raw little-endian tokens (uint16 when the vocabulary fits in 65,536 ids, else uint32),
no header; a split's shards concatenated in order are one stream of documents, each followed by
`<|endoftext|>`. Loaded with np.memmap: nothing is read until used, nothing is unpickled.

Windows: window i is tokens [i*seq_len, i*seq_len + seq_len + 1) of the split's stream, so
consecutive windows share one token and every token after the first is a target exactly once per
epoch; num_windows(seq_len) = (num_tokens - 1) // seq_len. Windows may cross document and shard
boundaries (documents are separated by <|endoftext|>, nanoGPT-style). Any seq_len can be read; the
index records the one `prepare` was given and its window count.

`batches` visits windows in a random order that is a pure function of (seed, epoch): `position`
counts windows consumed since the start (across epochs), so a trainer resumes exactly by passing
the last position it saved as `start`.

Train/val is decided per document by a hash of its final text (is_val), so the same document lands in
the same split whatever else is in the corpus. TrainValSplitter is that rule as prepare streams it,
with one fix-up: when val would be short of one window, the last train documents move to val. The
datatrove steps write each part through the same splitter and the merge applies the fix-up to the
whole stream (val_top_up), so both paths split alike.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workbench.errors import WorkbenchError

FORMAT_VERSION = 1
INDEX = "index.json"
SPLITS = ("train", "val")


def dtype_for(vocab_size: int) -> np.dtype:
    """uint16 when every id fits (trained tokenizers), else uint32 (cl100k_base has 100,278 ids)."""
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


class ShardWriter:
    """Appends tokens to `{split}_NNNNN.bin` files in `folder`, starting a new file every `shard_tokens`."""

    def __init__(self, folder: str | Path, split: str, dtype: np.dtype, shard_tokens: int):
        if shard_tokens < 1:
            raise WorkbenchError(f"shard_tokens must be at least 1, got {shard_tokens}")
        self.folder, self.split, self.dtype, self.shard_tokens = Path(folder), split, np.dtype(dtype), shard_tokens
        self.shards: list[dict] = []  # {"file", "tokens"}
        self.documents = 0
        self._f = None

    @property
    def num_tokens(self) -> int:
        return sum(s["tokens"] for s in self.shards)

    def write(self, tokens: np.ndarray, documents: int = 1) -> None:
        """Append one document's tokens (its <|endoftext|> included), splitting across shards if full."""
        tokens = np.asarray(tokens).astype(self.dtype.newbyteorder("<"), copy=False)
        self.documents += documents
        while len(tokens):
            if self._f is None or self.shards[-1]["tokens"] >= self.shard_tokens:
                self._open_next()
            room = self.shard_tokens - self.shards[-1]["tokens"]
            part, tokens = tokens[:room], tokens[room:]
            self._f.write(part.tobytes())
            self.shards[-1]["tokens"] += len(part)

    def _open_next(self) -> None:
        self.close()
        name = f"{self.split}_{len(self.shards):05d}.bin"
        self._f = open(self.folder / name, "wb")
        self.shards.append({"file": name, "tokens": 0})

    def close(self) -> None:
        if self._f is not None:
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()
            self._f = None

    def summary(self, seq_len: int) -> dict:
        n = self.num_tokens
        return {"shards": self.shards, "documents": self.documents, "tokens": n,
                "windows": max(n - 1, 0) // seq_len}


def is_val(text: str, val_fraction: float) -> bool:
    """The train/val rule: a blake2b hash of the final text below val_fraction of its range."""
    h = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(h, "little") < val_fraction * 2**64


def val_top_up(newest: list[int], train: tuple[int, int], val: tuple[int, int], need: int,
               val_fraction: float) -> int:
    """How many of the newest train documents move to val so that val has one window (`need` tokens),
    as long as train keeps one window (or, while val has no document, one document). `newest`: their
    token counts, oldest first; `train`, `val`: (documents, tokens) of each split, `newest` included."""
    (train_docs, train_tokens), (val_docs, val_tokens) = train, val
    moved = moved_tokens = 0
    while val_fraction > 0 and moved < len(newest) and val_tokens < need:
        last = newest[-1 - moved]
        if train_docs - moved - 1 < 1 or (train_tokens - moved_tokens - last < need and val_docs > 0):
            break
        moved, moved_tokens = moved + 1, moved_tokens + last
        val_tokens, val_docs = val_tokens + last, val_docs + 1
    return moved


class TrainValSplitter:
    """Writes each document's tokens to train or val (is_val), holding back the newest train documents
    (the last ones whose tokens past the first stay under `need`, one window: seq_len + 1) so that
    finish() can move them to val when val is short (val_top_up). `writers`: {"train", "val"}, anything
    with write(tokens), documents and num_tokens (ShardWriter, mix.DocStore)."""

    def __init__(self, writers: dict, val_fraction: float, need: int):
        self.train, self.val = writers["train"], writers["val"]
        self.val_fraction, self.need = val_fraction, need
        self.pending: deque = deque()
        self.pending_tokens = 0
        self.moved = 0

    def add(self, text: str, tokens: np.ndarray) -> str:
        """Write (or hold back) one document; returns its split, "train" or "val"."""
        if is_val(text, self.val_fraction):
            self.val.write(tokens)
            return "val"
        self.pending.append(tokens)
        self.pending_tokens += len(tokens)
        while len(self.pending) > 1 and self.pending_tokens - len(self.pending[0]) >= self.need:
            first = self.pending.popleft()
            self.pending_tokens -= len(first)
            self.train.write(first)
        return "train"

    @property
    def tail(self) -> list[int]:
        """The held-back train documents' token counts, oldest first (a datatrove part's train_tail)."""
        return [len(t) for t in self.pending]

    def finish(self, move: bool = True) -> None:
        """Write what is held back: to val the documents val_top_up moves (none without `move`: a
        datatrove part, whose merge moves across all parts), the rest to train."""
        n = 0
        if move:
            train = (self.train.documents + len(self.pending), self.train.num_tokens + self.pending_tokens)
            n = val_top_up(self.tail, train, (self.val.documents, self.val.num_tokens), self.need, self.val_fraction)
        held = list(self.pending)
        for tokens in held[:len(held) - n]:
            self.train.write(tokens)
        for tokens in held[len(held) - n:]:
            self.val.write(tokens)
        self.pending.clear()
        self.pending_tokens = 0
        self.moved = n


def write_index(folder: str | Path, tokenizer: dict, dtype: np.dtype, seq_len: int, splits: dict) -> dict:
    """Write index.json (the folder's completion mark: write it last). `splits`: name -> summary()."""
    index = {"format": "workbench-token-shards", "version": FORMAT_VERSION, "tokenizer": tokenizer,
             "dtype": np.dtype(dtype).name, "byte_order": "little", "seq_len": seq_len,
             "window": "tokens [i*seq_len, i*seq_len+seq_len+1): input w[:-1], target w[1:]",
             "splits": splits}
    tmp = Path(folder) / (INDEX + ".tmp")
    tmp.write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, Path(folder) / INDEX)
    return index


def read_index(folder: str | Path) -> dict:
    folder = Path(folder)
    path = folder / INDEX
    if not folder.is_dir():
        raise WorkbenchError(f"{folder}: no such folder (make one with `workbench data prepare`)")
    if not path.is_file():
        raise WorkbenchError(f"{folder}: no {INDEX}, so not a complete shard folder (was `workbench data "
                             "prepare` interrupted?); run it again")
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise WorkbenchError(f"{path}: unreadable ({e})") from None
    if not isinstance(index, dict) or index.get("format") != "workbench-token-shards":
        raise WorkbenchError(f"{path}: not a workbench token-shard index")
    if index.get("version") != FORMAT_VERSION:
        raise WorkbenchError(f"{path}: shard format version {index.get('version')}, this workbench reads "
                             f"version {FORMAT_VERSION}; run `workbench data prepare` again")
    return index


@dataclass
class ShardSet:
    """One split of a shard folder as a single token stream (memory-mapped)."""

    folder: Path
    split: str
    index: dict
    maps: list[np.memmap]
    offsets: np.ndarray  # offsets[k] = first token of shard k in the stream; offsets[-1] = num_tokens

    @property
    def num_tokens(self) -> int:
        return int(self.offsets[-1])

    @property
    def documents(self) -> int:
        return int(self.index["splits"][self.split]["documents"])

    @property
    def tokenizer(self) -> dict:
        return self.index["tokenizer"]

    def num_windows(self, seq_len: int) -> int:
        if seq_len < 1:
            raise ValueError(f"seq_len must be at least 1, got {seq_len}")
        return max(self.num_tokens - 1, 0) // seq_len

    def tokens(self, start: int, stop: int) -> np.ndarray:
        """Tokens [start, stop) of the stream as int64, across shard boundaries."""
        if not 0 <= start <= stop <= self.num_tokens:
            raise IndexError(f"tokens [{start}, {stop}) outside 0..{self.num_tokens}")
        out = np.empty(stop - start, dtype=np.int64)
        k = int(np.searchsorted(self.offsets, start, side="right")) - 1
        pos = start
        while pos < stop:
            lo = pos - self.offsets[k]
            take = min(stop - pos, len(self.maps[k]) - lo)
            out[pos - start:pos - start + take] = self.maps[k][lo:lo + take]
            pos += take
            k += 1
        return out

    def window(self, i: int, seq_len: int) -> np.ndarray:
        """Window i: seq_len + 1 tokens starting at i * seq_len (input w[:-1], target w[1:])."""
        n = self.num_windows(seq_len)
        if not 0 <= i < n:
            raise IndexError(f"window {i} out of range: {self.split} has {n} windows of {seq_len} tokens")
        return self.tokens(i * seq_len, i * seq_len + seq_len + 1)

    def order(self, seq_len: int, seed: int, epoch: int, shuffle: bool = True) -> np.ndarray:
        """The window order of one epoch: a function of (seed, epoch) only."""
        n = self.num_windows(seq_len)
        if not shuffle:
            return np.arange(n)
        return np.random.default_rng([seed, epoch]).permutation(n)

    def batches(self, batch_size: int, seq_len: int, *, seed: int = 0, start: int = 0,
                shuffle: bool = True, epochs: int | None = None):
        """Yield (position, windows int64 [batch_size, seq_len + 1]) forever (or for `epochs`).

        `position` is the number of windows consumed after this batch; pass it back as `start`
        to resume exactly. A batch may straddle two epochs (it continues into the next order).
        """
        n = self.num_windows(seq_len)
        if n == 0:
            raise WorkbenchError(f"{self.folder}: the {self.split} split has {self.num_tokens} tokens, fewer "
                                 f"than one window of {seq_len} + 1; use a shorter seq_len or more data")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        position, cached = start, (None, None)
        while epochs is None or position + batch_size <= epochs * n:
            rows = []
            for p in range(position, position + batch_size):
                epoch = p // n
                if cached[0] != epoch:
                    cached = (epoch, self.order(seq_len, seed, epoch, shuffle))
                rows.append(self.window(int(cached[1][p % n]), seq_len))
            position += batch_size
            yield position, np.stack(rows)


def open_shards(folder: str | Path, split: str = "train", tokenizer=None) -> ShardSet:
    """Open one split of a shard folder. `tokenizer` (a workbench Tokenizer or its describe() dict),
    when given, must be the one the shards were made with: same vocabulary size and same file hash."""
    folder = Path(folder)
    index = read_index(folder)
    if split not in index.get("splits", {}):
        raise WorkbenchError(f"{folder}: no split {split!r} (has {', '.join(index.get('splits', {}))})")
    if tokenizer is not None:
        _check_tokenizer(folder, index["tokenizer"], tokenizer)
    info = index["splits"][split]
    dtype = np.dtype(index["dtype"]).newbyteorder("<")
    maps, offsets = [], [0]
    for shard in info["shards"]:
        path = folder / shard["file"]
        if not path.is_file():
            raise WorkbenchError(f"{path}: shard listed in {INDEX} is missing")
        size = path.stat().st_size
        if size != shard["tokens"] * dtype.itemsize:
            raise WorkbenchError(f"{path}: {size} bytes, but {INDEX} says {shard['tokens']} tokens of "
                                 f"{dtype.itemsize} bytes; the folder is damaged, run prepare again")
        if shard["tokens"]:
            maps.append(np.memmap(path, dtype=dtype, mode="r"))
            offsets.append(offsets[-1] + shard["tokens"])
    return ShardSet(folder, split, index, maps, np.asarray(offsets, dtype=np.int64))


def _check_tokenizer(folder: Path, recorded: dict, expected) -> None:
    want = expected.describe() if hasattr(expected, "describe") else dict(expected)
    problems = [f"{k} {recorded.get(k)} != {want.get(k)}" for k in ("vocab_size", "eot_id")
                if recorded.get(k) != want.get(k)]
    if recorded.get("sha256") and want.get("sha256") and recorded["sha256"] != want["sha256"]:
        problems.append("ranks-file sha256 differs")
    if problems:
        raise WorkbenchError(f"{folder}: shards were made with tokenizer {recorded.get('name')}, not "
                             f"{want.get('name')} ({'; '.join(problems)}); use the same --tokenizer or "
                             "prepare the data again with this one")
