"""`workbench data prepare`'s per-document steps, one batch at a time, here or in worker processes.

    from workbench.data.prepare_batch import BatchRunner
    with BatchRunner(cfg, workers=2, model=None) as runner:
        for result, batch in runner.results(batches):     # in batch order, whatever finishes first
            result.texts, result.steps, result.error ...

normalise -> boilerplate_lines -> quality [-> classifier] -> pii look at one document at a time and
share nothing between batches, so `parallel.workers` processes run them on different batches at
once. What must see every earlier document stays in the main process: reading, exact and near
dedup (a document is a duplicate of what came before it), the train/val split and the shard
writers; tokenization too, after dedup, on tiktoken's own threads (measured: tokenizing in the
workers was slower, it tokenizes the duplicates dedup then drops and ships the tokenizer to every
worker; bench/prepare_throughput.py). Each batch comes back as a BatchResult: its kept texts, and
per step a Step tally (counts, characters, seconds, removals by reason with the first examples,
removed.jsonl records), plus lines removed, PII counts, classifier scores and, from a worker, each text's near-dedup
signature (a function of the text alone; dedup itself, the index, stays in the main process). The main process
merges them in batch order (Step.merge), so the report and the shards are byte-identical to
`workers: 1`, which runs this same code in-process; only timings differ (a step's seconds add up
its time in every worker).

Why the `forkserver` start method: `fork` would copy a parent that runs threads (pyarrow's pool
after `datasets` read a batch, rich's status spinner, the TUI, torch/OpenMP under pytest), and a
lock held by one of them at fork time deadlocks the child. `spawn` is safe but starts every worker
as a fresh interpreter. A forkserver is a small single-threaded process, started once and fresh
(it never holds the parent's torch, open shard files or threads); it imports this module and then
forks each worker from itself in milliseconds. Workers never import the parent's `__main__`
(_main_hidden), so whatever the caller imported (torch under pytest or the trainer) stays out of
them and a script calling prepare() needs no `if __name__ == "__main__":` guard.

At most 2 batches per worker are in flight, so memory stays flat. A source of one batch runs
in-process: a pool would only add its start-up. The classifier is sent to each worker once, when
it starts. A bad document is reported by its index in the batch and named (file:line) by the
main process, with the message `workers: 1` gives.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import re
import signal
import sys
import time
import types
from collections import Counter, deque
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from itertools import chain

from workbench.data.corpus import ReadStats
from workbench.data.dedup import ExactDedup, signatures
from workbench.data.filters import Doc, clean_lines, normalise_text, quality_check
from workbench.data.pii import PIIConfig, scrub
from workbench.errors import WorkbenchError

STEPS = ("read", "normalise", "boilerplate_lines", "quality", "pii", "exact_dedup", "near_dedup", "tokenize")
BATCH_STEPS = ("normalise", "boilerplate_lines", "quality", "classifier", "pii")  # what process_batch runs
INVALID_UNICODE = "invalid Unicode (a lone surrogate)"
_SURROGATE = re.compile("[\ud800-\udfff]")  # shown as U+FFFD in the report, which UTF-8 must be able to hold
IN_FLIGHT_PER_WORKER = 2  # batches queued per worker: enough to keep it busy while the main process dedups


class Step:
    """What one step did: documents and characters in and out, seconds, removals by reason with the
    first `examples` of each (PII scrubbed), and, with `keep_removed`, every removed text for removed.jsonl."""

    def __init__(self, name: str, examples: int, snippet_chars: int, pii: PIIConfig, keep_removed: bool = False):
        self.name, self.max_examples, self.snippet_chars, self.pii = name, examples, snippet_chars, pii
        self.keep_removed = keep_removed
        self.docs_in = self.docs_out = self.chars_in = self.chars_out = 0
        self.seconds = 0.0
        self.removed: Counter = Counter()
        self.examples: dict[str, list[str]] = {}
        self.records: list[tuple[str, str]] = []  # (reason, scrubbed text): the removed.jsonl lines to write
        self.extra: dict = {}

    def run(self, texts: list[str], fn) -> list[str]:
        """fn(text) -> (new text, "") to keep, or (None, reason) to remove."""
        t0 = time.perf_counter()
        out = []
        for text in texts:
            new, reason = fn(text)
            if new is None:
                self.remove(text, reason)
            else:
                out.append(new)
        self.count(texts, out, time.perf_counter() - t0)
        return out

    def remove(self, text: str, reason: str) -> None:
        self.removed[reason] += 1
        if self.keep_removed:
            self.records.append((reason, scrub(text, self.pii)[0]))
        shown = self.examples.setdefault(reason, [])
        if len(shown) < self.max_examples:
            n = self.snippet_chars  # examples are scrubbed too: the report must not leak PII
            snippet = scrub(text[:n], self.pii)[0] + ("…" if len(text) > n else "")
            shown.append(snippet if reason != INVALID_UNICODE else _SURROGATE.sub("\ufffd", snippet))

    def count(self, texts_in: list[str], texts_out: list[str], seconds: float) -> None:
        self.docs_in += len(texts_in)
        self.docs_out += len(texts_out)
        self.chars_in += sum(map(len, texts_in))
        self.chars_out += sum(map(len, texts_out))
        self.seconds += seconds

    def merge(self, part: "Step", sink=None) -> None:
        """Add a later batch's tally: counts add up, examples stay the first ones in input order."""
        self.docs_in += part.docs_in
        self.docs_out += part.docs_out
        self.chars_in += part.chars_in
        self.chars_out += part.chars_out
        self.seconds += part.seconds
        self.removed.update(part.removed)
        for reason, shown in part.examples.items():
            mine = self.examples.setdefault(reason, [])
            mine += shown[:max(self.max_examples - len(mine), 0)]
        if sink is not None:
            for reason, text in part.records:
                sink.write(json.dumps({"step": self.name, "reason": reason, "text": text}, ensure_ascii=False) + "\n")

    def as_dict(self) -> dict:
        return {"name": self.name, "docs_in": self.docs_in, "docs_out": self.docs_out,
                "chars_in": self.chars_in, "chars_out": self.chars_out, "seconds": round(self.seconds, 4),
                "removed": dict(self.removed.most_common()), "examples": self.examples, **self.extra}


@dataclass
class BatchResult:
    texts: list[str]  # what the PII step left, in input order
    steps: dict[str, Step]  # BATCH_STEPS (classifier only with a model)
    lines_removed: Counter = field(default_factory=Counter)
    pii_counts: Counter = field(default_factory=Counter)
    scores: dict | None = None  # the classifier's ScoreStats for this batch (merge_scores)
    signatures: list | None = None  # near-dedup's MinHash of each text, when a worker computed them
    signature_seconds: float = 0.0
    error: tuple[int, str] | None = None  # (index in the batch, message): a bad document stops the run


@dataclass
class _Context:
    cfg: object  # PrepareConfig
    model: object = None  # QualityModel
    # Workers also compute near-dedup's signatures (the shingling is most of its time); in-process,
    # dedup computes them itself, after exact dedup, so exact duplicates cost none. A worker skips
    # the texts it has seen itself: it got their batches first, so exact dedup removes them.
    signatures: bool = False
    seen: ExactDedup | None = None


def _lone_surrogate(text: str) -> int | None:
    """Character position (1-based) of a lone surrogate: a JSON escape like \\ud800 that no UTF-8 encodes."""
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        return e.start + 1
    return None


def process_batch(texts: list[str], ctx: _Context) -> BatchResult:
    """The per-document steps on one batch; a pure function of the batch and the config."""
    cfg = ctx.cfg
    fc, rc = cfg.filters, cfg.report
    names = [n for n in BATCH_STEPS if n != "classifier" or ctx.model is not None]
    steps = {n: Step(n, rc.examples, rc.snippet_chars, cfg.pii, keep_removed=rc.write_removed and
                     n in ("boilerplate_lines", "quality")) for n in names}
    res = BatchResult([], steps)
    skip_bad = cfg.input.skip_bad
    for i, text in enumerate(texts if not skip_bad else ()):
        if (at := _lone_surrogate(text)) is not None:
            res.error = (i, f"the text holds a lone surrogate (an escape like \\ud800 with no pair) at character "
                            f"{at}, which is not valid Unicode (--skip-bad skips the record)")
            return res

    def normalise(text):
        if skip_bad and _lone_surrogate(text) is not None:
            return None, INVALID_UNICODE
        n = normalise_text(text, fc)
        return (n, "") if n else (None, "empty after normalisation")

    def boilerplate(text):
        text, dropped = clean_lines(text, fc)
        res.lines_removed.update(dropped)
        return (text, "") if text else (None, "nothing left but boilerplate lines")

    def quality(text):
        keep, reason = quality_check(Doc(text), fc)
        return (text, "") if keep else (None, reason)

    def pii(text):
        text, counts = scrub(text, cfg.pii)
        res.pii_counts.update(counts)
        return text, ""

    out = steps["normalise"].run(texts, normalise)
    out = steps["boilerplate_lines"].run(out, boilerplate)
    out = steps["quality"].run(out, quality)
    if ctx.model is not None:
        out = _classify(steps["classifier"], out, ctx.model, cfg, res)
    res.texts = steps["pii"].run(out, pii)
    if ctx.signatures and cfg.dedup.near and res.texts:
        t0 = time.perf_counter()
        new = [ctx.seen.add(t) for t in res.texts] if cfg.dedup.exact else [True] * len(res.texts)
        sigs = iter(signatures([t for t, n in zip(res.texts, new) if n], cfg.dedup))
        res.signatures = [next(sigs) if n else None for n in new]
        res.signature_seconds = time.perf_counter() - t0
    return res


def score_stats(cfg):
    """An empty ScoreStats for the classifier step (snippets PII-scrubbed: it runs before the PII step)."""
    from workbench.data.quality_model import ScoreStats

    n = cfg.report.snippet_chars
    return ScoreStats([*cfg.classifier.thresholds, cfg.classifier.threshold], cfg.report.examples,
                      lambda t: scrub(t[:n], cfg.pii)[0] + ("…" if len(t) > n else ""))


def merge_scores(total, part: dict) -> None:
    """Add one batch's ScoreStats (as a dict of its fields) to `total`, exactly as ScoreStats.add would."""
    total.hist += part["hist"]
    total.kept += part["kept"]
    total.n += part["n"]
    total.total += part["total"]
    total.low = sorted(total.low + part["low"])[:total.k]
    total.high = sorted(total.high + part["high"], key=lambda e: -e[0])[:total.k]


def _classify(step: Step, texts: list[str], model, cfg, res: BatchResult) -> list[str]:
    t0 = time.perf_counter()
    threshold = cfg.classifier.threshold
    p = model.score(texts)
    part = score_stats(cfg)
    part.add(texts, p)
    res.scores = {k: v for k, v in vars(part).items() if k != "snippet"}
    out = []
    for text, score in zip(texts, p):
        if score >= threshold:
            out.append(text)
        else:
            step.remove(text, f"score below {threshold:g}")
    step.count(texts, out, time.perf_counter() - t0)
    return out


def step_names(classifier: bool) -> tuple[str, ...]:
    at = STEPS.index("quality") + 1  # the classifier scores what the heuristic filters kept
    return STEPS if not classifier else STEPS[:at] + ("classifier",) + STEPS[at:]


class Tally:
    """Everything the report counts, merged batch by batch in input order (one per source of a mix)."""

    def __init__(self, cfg, classifier: bool):
        rc = cfg.report
        self.steps = {n: Step(n, rc.examples, rc.snippet_chars, cfg.pii) for n in step_names(classifier)}
        self.scores = score_stats(cfg) if classifier else None
        self.lines_removed: Counter = Counter()
        self.pii_counts: Counter = Counter()
        self.tokens = 0  # of the kept documents (a mix's shards may hold more or fewer)

    def merge(self, batch, res: BatchResult, sink) -> None:
        self.steps["read"].count(batch.texts, batch.texts, 0.0)
        for name, part in res.steps.items():
            self.steps[name].merge(part, sink)
        self.lines_removed.update(res.lines_removed)
        self.pii_counts.update(res.pii_counts)
        if res.scores is not None:
            merge_scores(self.scores, res.scores)
        if res.error is not None:
            i, message = res.error
            raise WorkbenchError(f"{ReadStats.where(batch.positions[i])}: {message}")

    def absorb(self, other: "Tally") -> None:
        """Add another source's counts (sources in order, as batches are)."""
        for name, step in other.steps.items():
            self.steps[name].merge(step)
        self.lines_removed.update(other.lines_removed)
        self.pii_counts.update(other.pii_counts)
        self.tokens += other.tokens
        if other.scores is not None:
            merge_scores(self.scores, {k: v for k, v in vars(other.scores).items() if k != "snippet"})

    def counts(self) -> list[dict]:
        """Per step: documents and characters in and out, removals by reason (a mix source's row)."""
        return [{"name": s.name, "docs_in": s.docs_in, "docs_out": s.docs_out, "chars_in": s.chars_in,
                 "chars_out": s.chars_out, "removed": dict(s.removed.most_common()),
                 **({"tokens_out": self.tokens} if s.name == "tokenize" else {})} for s in self.steps.values()]

    def finish(self, cfg, near) -> list[dict]:
        steps = self.steps
        tk, tokens = steps["tokenize"], self.tokens
        tk.extra = {"tokens_out": tokens, "chars_per_token": round(tk.chars_out / max(tokens, 1), 3)}
        steps["boilerplate_lines"].extra = {"lines_removed": dict(self.lines_removed.most_common())}
        steps["pii"].extra = {"replacements": {k: self.pii_counts.get(k, 0) for k in ("email", "phone", "ip")}}
        if near is not None:
            steps["near_dedup"].extra = {"clusters": near.clusters(cfg.report.clusters)}
        if self.scores is not None:
            steps["classifier"].extra = {"model": cfg.classifier.model, "threshold": cfg.classifier.threshold,
                                         "scores": self.scores.as_dict()}
        return [s.as_dict() for s in steps.values()]


# ---------------------------------------------------------------- worker processes

_WORKER: _Context | None = None


def _init_worker(cfg, model) -> None:
    global _WORKER
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle: it stops the pool
    _WORKER = _Context(cfg, model, signatures=True, seen=ExactDedup())


def _process_in_worker(texts: list[str]) -> BatchResult:
    return process_batch(texts, _WORKER)


def resolve_workers(n: int) -> int:
    """0 = every core this process may run on (its CPU affinity, not the machine's core count)."""
    if n:
        return n
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


@contextlib.contextmanager
def _main_hidden():
    """multiprocessing makes every spawned or forkserver worker import the parent's `__main__` (to
    find functions pickled from it). Ours live in this module, so that import only costs: it would
    re-run a script lacking the `if __name__ == "__main__":` guard (prepare inside prepare), import
    whatever the script imports (torch), and fail outright for `python - < script`. While a worker
    starts (pool.submit, in this thread), `__main__` is an empty module, so workers skip it."""
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main


class BatchRunner:
    """Runs process_batch over batches in this process (workers=1) or in a forkserver process pool."""

    def __init__(self, cfg, workers: int, model=None):
        self.cfg, self.workers, self.model = cfg, workers, model
        self.pool = None
        self.used = 1  # processes that ran batches: 1 = in-process

    def __enter__(self) -> "BatchRunner":
        return self

    def __exit__(self, *exc) -> None:
        if self.pool is not None:  # an error stops the pool: queued batches are dropped, running ones end
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None

    def results(self, batches):
        """Yield (BatchResult, batch) in batch order. `batches` yields objects with a `.texts` list;
        when reading fails, the batches read before the failure are still yielded first. May be
        called again (the next source of a mix): the pool is kept until the runner is closed."""
        batches = iter(batches)
        first = next(batches, None)
        if first is None:
            return
        second = None
        if self.workers > 1:
            try:
                second = next(batches, None)
            except WorkbenchError:
                yield process_batch(first.texts, _Context(self.cfg, self.model)), first
                raise
        if second is None:
            local = _Context(self.cfg, self.model)
            for batch in chain([first], batches):
                yield process_batch(batch.texts, local), batch
            return
        self.used = self.workers
        if self.pool is None:
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload([__name__])
            self.pool = ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=_init_worker,
                                            initargs=(self.cfg, self.model))
        pending: deque = deque()
        limit = self.workers * IN_FLIGHT_PER_WORKER
        try:
            for batch in chain([first, second], batches):
                with _main_hidden():
                    pending.append((self.pool.submit(_process_in_worker, batch.texts), batch))
                if len(pending) >= limit:
                    yield self._wait(*pending.popleft())
        except WorkbenchError:  # reading failed: what was read before it comes first, as in-process
            while pending:
                yield self._wait(*pending.popleft())
            raise
        while pending:
            yield self._wait(*pending.popleft())

    def _wait(self, future, batch):
        try:
            return future.result(), batch
        except BrokenProcessPool as e:
            raise WorkbenchError(f"a `data prepare` worker process died ({e}); if the machine ran out of memory, "
                                 "use fewer workers (--workers) or a smaller input.batch_size") from None

