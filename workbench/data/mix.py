"""Weighted data mixes: `workbench data prepare --mix web.jsonl=0.7 --mix books.txt=0.3 --out DIR`.

    parse_mix(["web.jsonl=0.7", "books.txt=0.3"])       # {"web.jsonl": 0.7, "books.txt": 0.3}, or a WorkbenchError
    prepare([], "runs/mix", load_config(None, {"mix.sources": {"web.jsonl": 0.7, "books.txt": 0.3}}))
    sample_documents(lengths, target_tokens, rng)        # the document picks one source contributes

The train shards hold the sources in the requested shares of tokens (weights are normalised to sum
to 1). Two passes, both streaming:

1. Each source, in the order given, goes through the whole pipeline with its own counts (the
   report's mix.sources[].steps). Dedup is shared and runs across sources, before any sampling: a
   document kept from an earlier source is removed from a later one as a duplicate, and the copies
   that sampling makes are never seen by dedup. A source's kept documents are split into train and
   val exactly as without a mix (by a hash of the text; val gets a window when it can), and their
   tokens go to the temporary output folder: one flat file per source and split, plus each
   document's length (8 bytes per document in memory).
2. The train shards are written by sampling documents. Source i gets w_i * T tokens: whole epochs
   of it (every document once, each epoch in its own order), then documents of one more shuffled
   pass until the count is nearest the target. T is `mix.tokens`; with 0, the most the sources give
   without repeating any: min_i(N_i / w_i) over their train tokens N_i, so the scarcest source
   relative to its weight is used exactly once and the others are subsampled. A larger `mix.tokens`
   repeats documents: the report's epochs above 1. The picked documents are interleaved in a
   seeded random order, so any stretch of the stream holds the mix. All of it is a function of
   `mix.seed`; a share misses its weight by at most half a document of that source.
   Val holds every source's held-out documents once each, in source order, not re-weighted: no
   document is repeated there, and none is in both splits.
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from workbench.errors import WorkbenchError

EXAMPLE = "--mix web.jsonl=0.7 --mix books.txt=0.3"


def parse_mix(specs: list[str], where: str = "--mix") -> dict[str, float]:
    """PATH=WEIGHT strings -> {path: weight}, every problem named."""
    sources: dict[str, float] = {}
    for spec in specs:
        path, eq, text = str(spec).rpartition("=")
        if not eq or not path.strip():
            raise WorkbenchError(f"{where} {spec!r}: expected PATH=WEIGHT, e.g. {EXAMPLE}")
        try:
            weight = float(text)
        except ValueError:
            raise WorkbenchError(f"{where} {spec!r}: the weight {text!r} is not a number (PATH=WEIGHT, e.g. "
                                 f"{EXAMPLE})") from None
        if path in sources:
            raise WorkbenchError(f"{where} {spec!r}: {path} is already in the mix")
        sources[path] = weight
    return check_sources(sources, where)


def check_sources(sources, where: str = "mix.sources", raw_text: bool = False) -> dict[str, float]:
    """Each source an existing file or folder with a positive, finite weight (`raw_text`: not a
    folder of prepared shards, whose documents can no longer be told apart)."""
    if not isinstance(sources, dict):
        raise WorkbenchError(f"{where}: expected a mapping {{path: weight}}, got {sources!r}")
    for path, weight in sources.items():
        if not isinstance(path, str) or not path.strip():
            raise WorkbenchError(f"{where}: a source must be a file or folder path, got {path!r}")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight <= 0:
            raise WorkbenchError(f"{where}: the weight of {path} must be a positive number, got {weight!r}")
        if not Path(path).expanduser().exists():
            raise WorkbenchError(f"{where}: no such file or folder: {path}")
        if raw_text and (Path(path).expanduser() / "index.json").is_file():
            raise WorkbenchError(f"{where}: {path} is a prepared shard folder; a mix takes raw text files (or "
                                 "prepare the mix itself: workbench data prepare --mix PATH=WEIGHT ...)")
    if raw_text and not sources:  # (prepare's mix.sources: {} means no mix)
        raise WorkbenchError(f"{where}: the mix has no sources; give {{path: weight, ...}}")
    return dict(sources)


def plan(available: list[int], weights: list[float], tokens: int = 0) -> list[int]:
    """Train tokens wanted from each source: w_i * T, T = `tokens` or min_i(N_i / w_i)."""
    total = sum(weights)
    shares = [w / total for w in weights]
    if tokens <= 0:
        scarce = min(range(len(shares)), key=lambda i: available[i] / shares[i])
        tokens = available[scarce] / shares[scarce]
        return [available[i] if i == scarce else round(shares[i] * tokens) for i in range(len(shares))]
    return [round(s * tokens) for s in shares]


def sample_documents(lengths: np.ndarray, target: int, rng: np.random.Generator) -> np.ndarray:
    """Document indices whose tokens add up nearest `target`: whole epochs, each in a fresh order,
    then a prefix of one more shuffled pass."""
    n, per_epoch = len(lengths), int(lengths.sum())
    if n == 0 or per_epoch == 0 or target <= 0:
        return np.zeros(0, np.int64)
    epochs, rest = divmod(int(target), per_epoch)
    parts = [rng.permutation(n) for _ in range(epochs)]
    if rest:
        order = rng.permutation(n)
        cum = np.cumsum(lengths[order])
        m = int(np.searchsorted(cum, rest))  # the first m + 1 documents reach the rest
        under = rest - (int(cum[m - 1]) if m else 0)
        parts.append(order[:m + 1] if int(cum[m]) - rest <= under else order[:m])
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def mix_order(lengths: list[np.ndarray], weights: list[float], tokens: int = 0,
              seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(source, document) of every document of the mixed stream, in its order: each source's picks
    (sample_documents, towards plan's targets) interleaved at random."""
    targets = plan([int(n.sum()) for n in lengths], weights, tokens)
    picks = [sample_documents(n, t, np.random.default_rng([seed, k])) for k, (n, t) in enumerate(zip(lengths, targets))]
    sources = np.repeat(np.arange(len(picks)), [len(p) for p in picks])
    np.random.default_rng([seed, len(picks)]).shuffle(sources)
    docs = np.empty(len(sources), np.int64)
    for k, p in enumerate(picks):
        docs[sources == k] = p  # source k's picks, in their order, where the shuffle put source k
    return sources, docs


def describe(sources: np.ndarray, docs: np.ndarray, lengths: list[np.ndarray], weights: list[float]) -> list[dict]:
    """Per source: requested and achieved share of tokens, tokens, epochs, documents used, repeats."""
    rows, total_w = [], sum(weights)
    tokens = [int(n[docs[sources == k]].sum()) for k, n in enumerate(lengths)]
    for k, (n, w) in enumerate(zip(lengths, weights)):
        picked = docs[sources == k]
        distinct = len(np.unique(picked))
        rows.append({"weight": w / total_w, "share": tokens[k] / max(sum(tokens), 1), "tokens": tokens[k],
                     "available_tokens": int(n.sum()), "epochs": tokens[k] / max(int(n.sum()), 1),
                     "documents": len(n), "documents_in_mix": len(picked), "repeats": len(picked) - distinct,
                     "unused_documents": len(n) - distinct})
    return rows


class DocStore:
    """One source's documents of one split: a flat token file and each document's length. Has what
    prepare's train/val splitter writes to: write(tokens), num_tokens, documents."""

    def __init__(self, path: Path, dtype):
        self.path, self.dtype = Path(path), np.dtype(dtype)
        self.lengths = array("q")
        self.num_tokens = 0
        self._f = open(self.path, "wb")

    @property
    def documents(self) -> int:
        return len(self.lengths)

    def write(self, tokens: np.ndarray, documents: int = 1) -> None:
        self._f.write(np.asarray(tokens, dtype=self.dtype).tobytes())
        self.lengths.append(len(tokens))
        self.num_tokens += len(tokens)

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None

    def read(self) -> tuple[np.ndarray, np.ndarray]:
        """(tokens, offsets): document i is tokens[offsets[i]:offsets[i + 1]]."""
        self.close()
        tokens = np.memmap(self.path, dtype=self.dtype, mode="r") if self.num_tokens else np.zeros(0, self.dtype)
        return tokens, np.concatenate([[0], np.cumsum(np.asarray(self.lengths, dtype=np.int64))])


@dataclass
class Source:
    path: str
    weight: float  # as given; shares are weight / sum of weights
    train: DocStore
    val: DocStore
    info: dict = field(default_factory=dict)  # the report's per-source counts (input, steps)


class Mix:
    """Pass 1 collects each source's documents (add); pass 2 writes the mixed shards (write)."""

    def __init__(self, sources: dict[str, float], folder: Path, dtype, tokens: int = 0, seed: int = 0):
        self.folder = Path(folder) / ".mix"  # inside the temporary output folder; removed before it is complete
        self.folder.mkdir()
        self.weights, self.dtype, self.tokens, self.seed = dict(sources), dtype, tokens, seed
        self.sources: list[Source] = []

    def add(self, path: str) -> Source:
        k = len(self.sources)
        src = Source(path, self.weights[path], DocStore(self.folder / f"{k}_train.bin", self.dtype),
                     DocStore(self.folder / f"{k}_val.bin", self.dtype))
        self.sources.append(src)
        return src

    def write(self, writers: dict) -> dict:
        """Sample, interleave and write the train documents; every val document once. Returns the
        report's `mix` section."""
        empty = [s.path for s in self.sources if not s.train.num_tokens]
        if empty:
            raise WorkbenchError(f"mix source {empty[0]}: no training documents left (all of its kept "
                                 "documents went to val); give it more text or lower pack.val_fraction")
        lengths = [np.asarray(s.train.lengths, dtype=np.int64) for s in self.sources]
        weights = [s.weight for s in self.sources]
        order = mix_order(lengths, weights, self.tokens, self.seed)
        stores = [s.train.read() for s in self.sources]
        for k, i in zip(*(a.tolist() for a in order)):
            tokens, offsets = stores[k]
            writers["train"].write(tokens[offsets[i]:offsets[i + 1]])
        for s in self.sources:
            tokens, offsets = s.val.read()
            for i in range(s.val.documents):
                writers["val"].write(tokens[offsets[i]:offsets[i + 1]])
        del stores
        rows = [{"path": s.path, **row, "val": {"documents": s.val.documents, "tokens": s.val.num_tokens}, **s.info}
                for s, row in zip(self.sources, describe(*order, lengths, weights))]
        scarce = min(self.sources, key=lambda s: s.train.num_tokens / s.weight).path
        return {"tokens": sum(r["tokens"] for r in rows), "seed": self.seed, "requested_tokens": self.tokens,
                "basis": "mix.tokens" if self.tokens > 0 else f"{scarce} at one epoch",
                "max_share_error": max(abs(r["share"] - r["weight"]) for r in rows), "sources": rows}

    def close(self) -> None:
        import shutil

        for s in self.sources:
            s.train.close()
            s.val.close()
        shutil.rmtree(self.folder, ignore_errors=True)
