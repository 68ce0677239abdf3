"""Near and exact dedup on datatrove's MinHash stages, with dedup.py's shingles and prepare's rule for
which copy is kept: the dedup part of prepare on datatrove (datatrove_steps.py wires it into stages).

    from workbench.data.datatrove_dedup import lsh_shape, minhash_config, removal_probability
    buckets, rows = lsh_shape(0.65, 128)                   # 14 buckets of 7 hashes
    removal_probability(0.8, buckets, rows)                # 0.963: chance a pair of Jaccard 0.8 is removed
    mh = minhash_config(cfg.dedup)                         # datatrove's MinhashConfig for our DedupConfig

Three stages, run by datatrove_steps.stages(): MinhashSignature (stage 1, in the filter tasks),
datatrove's own MinhashDedupBuckets (stage 2: duplicate pairs per bucket) and FirstKeptClusters
(stage 3, one task); MinhashDedupFilter then drops the documents it lists. Shingles are dedup.py's
(`\\w+` words, lower-cased, 5-grams), hashed as bytes: no spaCy (datatrove's English word tokenizer;
WordSplitter stands in for it), and xxhash 4 works (datatrove's own stage 1 hashes str, which xxhash 4
refuses). The kept member of a cluster is its earliest document in reading order, as in prepare
(datatrove's clustering keeps the root of a union by size, which can be a later copy). Exact duplicates
need no stage of their own: identical texts have identical shingles, hence identical signatures, and
the MinHash stages remove them with certainty; exact-only dedup runs them on one shingle per document.

Where this differs from prepare (docs/datatrove.md has the numbers): datatrove's LSH has no check of
candidates, so a pair is removed with probability 1 - (1 - J^rows)^buckets instead of "estimated
J >= threshold"; minhash_config picks the steepest such curve within num_perm hashes that is 1/2 at
the threshold. Outside Jaccard 0.3..0.85 the two remove a pair with probabilities within 1% of each
other; a chain bridging two clusters collapses to one document here (offline), to two in prepare
(streaming). datatrove is optional: this module imports without it, and using it says what to install.
"""

from __future__ import annotations

import math
import re
import struct

import numpy as np

from workbench.data.dedup import _WORD, DedupConfig, shingles
from workbench.errors import WorkbenchError

MISSING = "running prepare on datatrove needs datatrove: pip install 'workbench[datatrove]'"


class _Missing:
    """What datatrove's classes are without datatrove: a step built on one says what to install."""

    def __init__(self, *args, **kwargs):
        raise WorkbenchError(MISSING)


try:
    from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupCluster, MinhashDedupSignature
    from datatrove.utils.binaryio import read_tuples_from_file
    from datatrove.utils.hashing import create_hash_func
    from datatrove.utils.word_tokenizers import WordTokenizer
except ImportError:  # the module still imports; making a step says what to install
    WordTokenizer = MinhashDedupSignature = MinhashDedupCluster = _Missing
    MinhashConfig = read_tuples_from_file = create_hash_func = None

_SENTENCE = re.compile(r"\S[^.!?\n]*(?:[.!?]+[\"'”’)]*|$)", re.M)


def _require() -> None:
    if MinhashConfig is None:
        raise WorkbenchError(MISSING)


class WordSplitter(WordTokenizer):
    """Our word splitting (dedup.py's `\\w+` runs) for any datatrove step that takes `language=`:
    no spaCy or NLTK. Sentences end at terminal punctuation or a line end."""

    def __init__(self):
        super().__init__("workbench")

    def word_tokenize(self, text: str) -> list[str]:
        return _WORD.findall(text)

    def sent_tokenize(self, text: str) -> list[str]:
        return [m.group(0).strip() for m in _SENTENCE.finditer(text)]

    def span_tokenize(self, text: str) -> list[tuple[int, int]]:
        return [(m.start(), m.end()) for m in _SENTENCE.finditer(text)]


def lsh_shape(threshold: float, num_perm: int) -> tuple[int, int]:
    """(buckets, hashes per bucket): the steepest curve 1 - (1 - J^rows)^buckets that fits in num_perm
    hashes and removes a pair at exactly `threshold` with probability 1/2 (most rows, then buckets)."""
    if threshold >= 1.0:
        return 1, num_perm
    for rows in range(num_perm, 0, -1):
        buckets = max(1, round(math.log(0.5) / math.log1p(-threshold ** rows)))
        if buckets * rows <= num_perm:
            return buckets, rows
    return 1, 1


def removal_probability(similarity: float, buckets: int, rows: int) -> float:
    """The chance that datatrove's LSH pairs two documents of Jaccard similarity `similarity`."""
    return 1.0 - (1.0 - similarity ** rows) ** buckets


def minhash_config(cfg: DedupConfig) -> MinhashConfig:
    """datatrove's MinhashConfig for our DedupConfig (shingle size, seed; buckets from the threshold).
    Exact-only dedup: one bucket of one hash over one shingle (the text), see MinhashSignature."""
    _require()
    cfg.validate()
    buckets, rows = lsh_shape(cfg.threshold, cfg.num_perm) if cfg.near else (1, 1)
    return MinhashConfig(n_grams=cfg.shingle_size, num_buckets=buckets, hashes_per_bucket=rows, seed=cfg.seed)


class MinhashSignature(MinhashDedupSignature):
    """datatrove's MinHash stage 1 with dedup.py's shingles, hashed as UTF-8 bytes. `exact`: the
    whole text is the only shingle, so signatures are equal exactly when texts are."""

    name = "🎯 MinHash signatures (workbench shingles)"

    def __init__(self, output_folder, config: MinhashConfig, exact: bool = False):
        super().__init__(output_folder, config=config, language=WordSplitter())  # never loads spaCy
        self._hash_func = create_hash_func(self.config.hash_config, bytes)
        self.exact = exact

    def get_shingles(self, text: str) -> np.ndarray:
        grams = [text] if self.exact else shingles(text, self.config.n_grams)
        return np.fromiter((self._hash_func(g.encode("utf-8", "surrogatepass")) for g in grams),
                           dtype=np.uint64, count=len(grams)).reshape((-1, 1))


class FirstKeptClusters(MinhashDedupCluster):
    """MinHash stage 3: union-find over the duplicate pairs whose root is the smallest (task, index),
    i.e. each cluster's earliest document in reading order, the one prepare keeps."""

    name = "🎯 MinHash clusters (first kept)"

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        if world_size != 1:
            raise WorkbenchError(f"the clusters stage runs as one task, not {world_size}")
        parent: dict[tuple[int, int], tuple[int, int]] = {}

        def find(x):
            root = x
            while parent[root] != root:
                root = parent[root]
            while x != root:  # path compression
                parent[x], x = root, parent[x]
            return root

        with self.track_time():
            for name in self.input_folder.list_files(glob_pattern="*.dups"):
                with self.input_folder.open(name, "rb") as f:
                    for f1, d1, f2, d2 in read_tuples_from_file(f, "4I", lines_to_buffer=self.lines_to_buffer):
                        a, b = (f1, d1), (f2, d2)
                        parent.setdefault(a, a)
                        parent.setdefault(b, b)
                        a, b = find(a), find(b)
                        if a != b:
                            parent[max(a, b)] = min(a, b)
            with self.output_folder.get_output_file_manager(mode="wb") as out:
                for node in sorted(parent):  # by task, then index: what MinhashDedupFilter reads in order
                    self.stat_update("duplicates")
                    if find(node) == node:
                        self.stat_update("clusters")
                    else:
                        out.write(f"{node[0]:06d}.remove", struct.pack("<I", node[1]))
                        self.stat_update("to_remove")
        yield from ()
