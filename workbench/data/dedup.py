"""Exact and near-duplicate document removal: a hash set, and MinHash LSH (the `rensa` library)
with transitive clusters.

    from workbench.data.dedup import DedupConfig, ExactDedup, NearDedup
    exact, near = ExactDedup(), NearDedup(DedupConfig())
    keep = [exact.add(t) for t in texts]                 # False: the same text was seen before
    dup_of = near.add_batch(texts)                       # per text: None (kept) or its cluster's first key
    near.clusters(5)                                     # largest clusters: members' snippets, kept first

Exact: a 16-byte blake2b digest of the normalised text (so whitespace and Unicode variants already
coincide). Near: each document becomes the set of its word `shingle_size`-grams (lower-cased,
punctuation dropped); rensa's R-MinHash gives a `num_perm`-slot signature; an LSH index over bands
of the signature finds candidates, and a candidate is a near neighbour when the signatures'
estimated Jaccard similarity (the share of equal slots) is at least `threshold`.

Clusters are transitive: every document is indexed, kept or removed, and a union-find joins each
document to the clusters of all its near neighbours. So two copies of one original that are each
near it but not near each other still fall into one cluster (comparing only with kept documents,
as this module once did, kept both). Streaming decides each document on arrival and never
revisits an earlier decision: a document is removed exactly when it is near some earlier document,
kept or not. The kept one of a cluster is therefore its first member, whatever the batch sizes.
The one exception is a bridge: a later document near two clusters that had each kept their first
member merges them, and both stay kept (they were already written); clusters() lists the cluster
with every kept member first. The estimate has a standard deviation of about sqrt(J(1-J)/num_perm)
(0.04 at J = 0.65 with 128 slots), so pairs right at the threshold go either way; DedupConfig says
how the default threshold was measured.

rensa (Rust) was chosen over datasketch: on the C4 sample it built and queried signatures ~25x
faster, and it does not pull in scipy. Memory per document, kept or removed: the LSH index's band
hashes (rensa, ~1.9 KB with 32 bands), the signature as 4 x num_perm bytes of numpy, 8 bytes of
union-find; per kept document a `snippet_chars` snippet; per cluster at most `members` snippets
(measured: ~3.9 KB per document in all, 45,000 documents). No text is held beyond that.
"""

from __future__ import annotations

import hashlib
import re
from array import array
from dataclasses import dataclass, field

import numpy as np

from workbench.errors import WorkbenchError

_WORD = re.compile(r"\w+")
_BLOCK = 4096  # signature rows per storage block: growing never copies what is stored


@dataclass
class DedupConfig:
    exact: bool = True
    near: bool = True
    # Estimated Jaccard similarity of shingle sets at which two documents are near neighbours. 0.65 by
    # measurement (bench/near_dedup.py: ~150-word documents, copies with k words replaced, shuffled):
    # k replaced words change up to 5k of ~146 shingles, so a 5-word copy sits at Jaccard ~0.71 to its
    # original and two such copies at ~0.5, while the estimate's sd is ~0.04 with 128 slots. Clusters
    # reduced to one copy at k = 5: 2% at 0.8 (the old default), 57% at 0.7, 82% at 0.65 (97% with
    # originals first), 88% at 0.6; at k = 2: 88% at 0.8, 99.6% at 0.7, 100% from 0.65 down; no
    # distinct document lost at any of them. Below 0.65 the index needs 64 bands instead of 32 (~2.9x
    # its memory) for a few points more. 0.65 still asks ~80% of each document's shingles to be
    # shared (datatrove's 14x8 bands remove a pair at 0.65 with probability 0.37, at 0.7 with 0.56);
    # the shared real corpora (C4 sample, LIMA, UltraFeedback, GSM8K, Shakespeare paragraphs) have
    # no pair between 0.53 and 0.8.
    threshold: float = 0.65
    num_perm: int = 128  # MinHash signature slots: more = sharper estimate, slower (256 measured: no better here)
    shingle_size: int = 5  # words per shingle
    seed: int = 0  # MinHash hash seed (results are deterministic for a given seed)

    def validate(self) -> None:
        if not 0.0 < self.threshold <= 1.0:
            raise WorkbenchError(f"dedup.threshold must be in (0, 1], got {self.threshold}")
        if self.num_perm < 16 or self.num_perm % 8:
            raise WorkbenchError(f"dedup.num_perm must be a multiple of 8 and at least 16, got {self.num_perm}")
        if self.shingle_size < 1:
            raise WorkbenchError(f"dedup.shingle_size must be at least 1, got {self.shingle_size}")


class ExactDedup:
    """Remembers a digest of every text it has kept."""

    def __init__(self):
        self.seen: set[bytes] = set()

    def add(self, text: str) -> bool:
        """True if `text` is new (and is now remembered), False if it was seen before."""
        digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()
        if digest in self.seen:
            return False
        self.seen.add(digest)
        return True


def shingles(text: str, n: int) -> list[str]:
    """The set of word n-grams of a text (lower-cased, punctuation dropped), as strings."""
    words = _WORD.findall(text.lower())
    if len(words) <= n:
        return [" ".join(words) or text]
    return list({" ".join(words[i:i + n]) for i in range(len(words) - n + 1)})


def signatures(texts: list[str], cfg: DedupConfig) -> list:
    """Each text's MinHash signature (rensa RMinHash, picklable): a function of the text alone, so
    prepare's worker processes compute them and NearDedup.add_batch takes them."""
    import rensa

    return rensa.RMinHash.from_token_sets([shingles(t, cfg.shingle_size) for t in texts], cfg.num_perm, cfg.seed)


def lsh_bands(num_perm: int, threshold: float) -> int:
    """Bands for the LSH index: the fewest (each as long as possible, so fewer false candidates, and
    less memory: rensa stores ~60 bytes per band per document) that still make a pair one standard
    deviation of the estimate below the threshold a candidate with probability >= 0.99. Such a pair
    passes the check only ~16% of the time, so the index loses well under 1% of the pairs the check
    would accept. Candidates are then checked against the threshold: extra ones cost time, not accuracy."""
    s = max(threshold - (threshold * (1 - threshold) / num_perm) ** 0.5, 0.01)
    for bands in sorted(b for b in range(1, num_perm + 1) if num_perm % b == 0):
        rows = num_perm // bands
        if 1 - (1 - s ** rows) ** bands >= 0.99:
            return bands
    return num_perm


@dataclass
class _Cluster:
    size: int = 1
    removed: int = 0
    members: list = field(default_factory=list)  # (key, kept, snippet): kept first, then by key; at most `members`


class NearDedup:
    """Streaming MinHash LSH with transitive (union-find) clusters; the first member of a cluster is kept."""

    def __init__(self, cfg: DedupConfig, snippet_chars: int = 160, members: int = 5):
        import rensa

        cfg.validate()
        self.cfg, self.snippet_chars, self.max_members = cfg, snippet_chars, max(members, 1)
        self._rensa = rensa
        self.lsh = rensa.RMinHashLSH(cfg.threshold, cfg.num_perm, lsh_bands(cfg.num_perm, cfg.threshold))
        self._sig_blocks: list[np.ndarray] = []  # key -> signature row, for every document seen
        self._parent = array("q")  # union-find over keys; a root is the smallest key, its cluster's first member
        self.snippets: dict[int, str] = {}  # kept key -> first characters
        self._clusters: dict[int, _Cluster] = {}  # root -> cluster, only for clusters of 2 or more
        self.next_key = 0

    def add_batch(self, texts: list[str], sigs: list | None = None) -> list[int | None]:
        """For each text: None if kept, else the key of its cluster's first (kept) member. Every text
        is indexed and gets the next key, so later documents can join its cluster through it.
        `sigs`: the texts' signatures() when computed elsewhere (prepare's workers)."""
        if not texts:
            return []
        sigs = signatures(texts, self.cfg) if sigs is None else sigs
        rows = np.array([s.digest() for s in sigs], dtype=np.uint32)
        out: list[int | None] = []
        for text, sig, row in zip(texts, sigs, rows):
            key = self.next_key
            roots = self._near_roots(self.lsh.query(sig), row)
            self.next_key += 1
            self.lsh.insert(key, sig)
            self._store(key, row)
            snippet = text[:self.snippet_chars]
            if not roots:
                self._parent.append(key)
                self.snippets[key] = snippet
                out.append(None)
                continue
            root = min(roots)
            for other in sorted(roots - {root}):  # a bridge: these clusters' first members stay kept
                self._merge(root, other)
            self._parent.append(root)
            c = self._cluster(root)
            c.size += 1
            c.removed += 1
            if len(c.members) < self.max_members:
                c.members.append((key, False, snippet))
            out.append(root)
        return out

    def _near_roots(self, candidates: list[int], row: np.ndarray) -> set[int]:
        """Roots of the clusters holding a candidate whose estimated Jaccard reaches the threshold."""
        roots: set[int] = set()
        if not candidates:
            return roots
        candidates = sorted(candidates)
        sims = (self._rows(candidates) == row).mean(axis=1)
        for cand, sim in zip(candidates, sims):
            if sim >= self.cfg.threshold:
                roots.add(self._find(cand))
        return roots

    def _rows(self, keys: list[int]) -> np.ndarray:
        keys = np.asarray(keys)
        blocks, offsets = np.divmod(keys, _BLOCK)
        if blocks[0] == blocks[-1]:
            return self._sig_blocks[blocks[0]][offsets]
        return np.stack([self._sig_blocks[b][o] for b, o in zip(blocks, offsets)])

    def _store(self, key: int, row: np.ndarray) -> None:
        b, o = divmod(key, _BLOCK)
        if b == len(self._sig_blocks):
            self._sig_blocks.append(np.empty((_BLOCK, self.cfg.num_perm), dtype=np.uint32))
        self._sig_blocks[b][o] = row

    def _find(self, key: int) -> int:
        parent = self._parent
        while parent[key] != key:
            parent[key] = parent[parent[key]]  # path halving keeps chains short
            key = parent[key]
        return key

    def _cluster(self, root: int) -> _Cluster:
        c = self._clusters.get(root)
        if c is None:
            c = self._clusters[root] = _Cluster(members=[(root, True, self.snippets[root])])
        return c

    def _merge(self, root: int, other: int) -> None:
        """Join cluster `other` into `root` (root < other: the earlier first member stays the root)."""
        self._parent[other] = root
        c, o = self._cluster(root), self._cluster(other)
        c.size += o.size
        c.removed += o.removed
        c.members = sorted(c.members + o.members, key=lambda m: (not m[1], m[0]))[:self.max_members]
        del self._clusters[other]

    def clusters(self, k: int) -> list[dict]:
        """The k largest clusters (ties: the earlier first). `kept` is the first member's snippet;
        `members` lists up to `members` snippets, the kept ones first, then duplicates in input order."""
        top = sorted(self._clusters.items(), key=lambda kv: (-kv[1].size, kv[0]))[:k]
        return [{"kept": self.snippets[root], "duplicates_removed": c.removed, "size": c.size,
                 "members": [{"kept": kept, "text": text} for _, kept, text in c.members]}
                for root, c in top]
