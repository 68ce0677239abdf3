"""`workbench data prepare` on many machines: its steps as datatrove PipelineSteps, near-dedup with
datatrove's MinHash stages (datatrove_dedup.py), and our shard format, so datatrove's Local, Slurm and
Ray executors run it.

    pip install -e '.[datatrove]'
    from workbench.data.datatrove_steps import run_local
    run_local(["a.jsonl", "b.jsonl"], "runs/data", PrepareConfig(), tasks=2, workers=2)   # one machine

    from workbench.data.datatrove_steps import stages
    for stage in stages(inputs, "runs/work", cfg, tasks=64, out="runs/data"):   # Slurm, Ray: docs/datatrove.md
        LocalPipelineExecutor(stage.pipeline, tasks=stage.tasks, logging_dir=stage.logging_dir).run()

Five stages, each a datatrove job run after the one before; `work` must be one folder every task
can reach (a shared disk):
  filter    tasks: ReadDocuments -> Normalise -> BoilerplateLines -> QualityFilter [-> QualityClassifier]
            -> ScrubPII -> SaveFiltered (work/filtered/RANK.jsonl) -> MinhashSignature
  buckets   one task per MinHash bucket (datatrove's MinhashDedupBuckets): duplicate pairs
  clusters  one task (FirstKeptClusters): union-find over the pairs; all but each cluster's first go
  shards    tasks: LoadFiltered -> MinhashDedupFilter -> WriteShards (work/parts/RANK/)
  merge     one task (merge_shards, also callable alone): the parts in rank order -> OUT with index.json

This module holds the text steps, the shard writing and the runner; datatrove_dedup.py the MinHash
stages (its names are importable from here too). Same documents as prepare: the steps call prepare's
own functions (filters.py, pii.py, corpus.py, quality_model.py) with the same PrepareConfig. Inputs
are split by file into contiguous blocks (task r reads the r-th block of `list_files(inputs)`), so
rank order is prepare's reading order and "first" means what it means there: the kept member of a
near-duplicate cluster is its earliest one. With `dedup.near: false` and `dedup.exact: true` the
MinHash stages run on one shingle per document, the whole text: exact dedup. Train/val: prepare's
own splitter (shards.TrainValSplitter); each part records the train documents it held back, so the
merge moves the same last documents to a too-small val split as prepare does.

Where they differ (docs/datatrove.md has the numbers): near-duplicates are removed with datatrove's
LSH probabilities (datatrove_dedup.py says how they compare), and a chain bridging two clusters
collapses to one document here (offline), to two in prepare (streaming). The `report` settings are
prepare's; here each stage's stats.json (in its logging folder) counts removals by step and reason.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from abc import abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workbench.data.corpus import ReadConfig, ReadStats, iter_documents, list_files
from workbench.data.datatrove_dedup import (MISSING, FirstKeptClusters, MinhashSignature,  # noqa: F401 (re-exported)
                                            WordSplitter, _Missing, _require, lsh_shape, minhash_config,
                                            removal_probability)
from workbench.data.filters import Doc, FilterConfig, clean_lines, normalise_text, quality_check
from workbench.data.pii import PIIConfig, scrub
from workbench.data.shard_merge import PART_FORMAT, merge_shards
from workbench.data.shards import SPLITS, ShardWriter, TrainValSplitter, dtype_for, read_index
from workbench.errors import WorkbenchError
from workbench.io import atomic_dir

try:
    from datatrove.data import Document
    from datatrove.pipeline.base import PipelineStep
    from datatrove.pipeline.dedup.minhash import MinhashDedupBuckets, MinhashDedupFilter
except ImportError:  # the module still imports (merge_shards needs no datatrove); making a step says what to install
    PipelineStep = _Missing
    Document = MinhashDedupBuckets = MinhashDedupFilter = None


# ---------------------------------------------------------------- prepare's steps

class ReadDocuments(PipelineStep):
    """Documents of `inputs` as prepare reads them (corpus.py); task r of n reads the r-th of n
    contiguous blocks of the files, so ranks follow prepare's reading order."""

    type = "📖 - READER"
    name = "📖 workbench read"

    def __init__(self, inputs: list[str], cfg: ReadConfig | None = None):
        super().__init__()
        self.inputs, self.cfg = [str(i) for i in inputs], cfg or ReadConfig()
        self.cfg.validate()
        list_files(self.inputs)  # missing or unreadable inputs stop the driver, before any task

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        files = list_files(self.inputs)
        mine = files[rank * len(files) // world_size:(rank + 1) * len(files) // world_size]
        stats = ReadStats()
        for path in mine:
            for i, text in enumerate(iter_documents([str(path)], self.cfg, stats)):
                if not text.isascii() and (at := _lone_surrogate(text)):  # no tokenizer would take it
                    if not self.cfg.skip_bad:
                        raise WorkbenchError(f"{path}: document {i + 1}: the text holds a lone surrogate (an escape "
                                             f"like \\ud800 with no pair) at character {at}, which is not valid "
                                             "Unicode (--skip-bad skips the record)")
                    self.stat_update("skipped_invalid Unicode (a lone surrogate)")
                    continue
                self.stat_update("documents")
                yield Document(text=text, id=f"{path}:{i}")
        for reason, n in stats.skipped.items():
            self.stat_update(f"skipped_{reason}", value=n)


def _lone_surrogate(text: str) -> int:
    """1-based position of the first lone surrogate (a JSON escape like \\ud800 without its pair), else 0."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        return e.start + 1
    return 0


class _TextStep(PipelineStep):
    """A step of prepare: apply(text) -> (new text, "") to keep, (None, reason) to remove."""

    type = "🔻 - WORKBENCH"

    def __init__(self, cfg: FilterConfig | PIIConfig):  # PIIConfig for ScrubPII
        super().__init__()
        self.cfg = cfg

    @abstractmethod
    def apply(self, text: str) -> tuple[str | None, str]: ...

    def run(self, data, rank: int = 0, world_size: int = 1):
        for doc in data:
            self.stat_update("total")
            with self.track_time():
                text, reason = self.apply(doc.text)
            if text is None:
                self.stat_update("dropped", f"dropped_{reason}")
                continue
            doc.text = text
            self.stat_update("forwarded")
            yield doc


class Normalise(_TextStep):
    name = "normalise"

    def apply(self, text):
        text = normalise_text(text, self.cfg)
        return (text, "") if text else (None, "empty after normalisation")


class BoilerplateLines(_TextStep):
    name = "boilerplate_lines"

    def apply(self, text):
        text, dropped = clean_lines(text, self.cfg)
        for phrase, n in dropped.items():
            self.stat_update(f"lines_{phrase}", value=n)
        return (text, "") if text else (None, "nothing left but boilerplate lines")


class QualityFilter(_TextStep):
    name = "quality"

    def apply(self, text):
        keep, reason = quality_check(Doc(text), self.cfg)
        return (text, "") if keep else (None, reason)


class ScrubPII(_TextStep):
    name = "pii"

    def apply(self, text):
        text, counts = scrub(text, self.cfg)
        for kind, n in counts.items():
            self.stat_update(f"pii_{kind}", value=n)
        return text, ""


class QualityClassifier(PipelineStep):
    """prepare's classifier step: keeps documents whose score is at least `threshold`, scored in batches.
    The model is checked here (the driver) and loaded again in each task, not shipped with the pipeline."""

    type = "🔻 - WORKBENCH"
    name = "classifier"

    def __init__(self, model: str, threshold: float, batch_size: int = 1000):
        from workbench.data.quality_model import QualityModel

        super().__init__()
        QualityModel.load(model)  # a bad model file stops here, before any task runs
        self.model, self.threshold, self.batch_size = str(model), threshold, batch_size

    def run(self, data, rank: int = 0, world_size: int = 1):
        from datatrove.utils.batching import batched

        from workbench.data.quality_model import QualityModel

        model = QualityModel.load(self.model)
        for batch in batched(data, self.batch_size):
            with self.track_time("batch"):
                scores = model.score([d.text for d in batch])
            for doc, score in zip(batch, scores):
                self.stat_update("total")
                if score >= self.threshold:
                    self.stat_update("forwarded")
                    yield doc
                else:
                    self.stat_update("dropped", f"dropped_score below {self.threshold:g}")


class SaveFiltered(PipelineStep):
    """Writes the documents that pass through to FOLDER/RANK.jsonl (renamed into place when the task
    ends, empty if it had none) and passes them on: the shards stage reads back exactly this stream,
    in this order, which is what MinhashDedupFilter's document indices refer to."""

    type = "💽 - WRITER"
    name = "💽 filtered documents"

    def __init__(self, folder: str | os.PathLike):
        super().__init__()
        self.folder = str(folder)

    def run(self, data, rank: int = 0, world_size: int = 1):
        path = Path(self.folder) / f"{rank:05d}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            for doc in data:
                f.write(json.dumps({"id": doc.id, "text": doc.text}) + "\n")  # ASCII: lone surrogates survive
                self.stat_update("documents")
                yield doc
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)


class LoadFiltered(PipelineStep):
    """Reads FOLDER/RANK.jsonl, written by SaveFiltered in the same rank of the filter stage."""

    type = "📖 - READER"
    name = "📖 filtered documents"

    def __init__(self, folder: str | os.PathLike):
        super().__init__()
        self.folder = str(folder)

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        path = Path(self.folder) / f"{rank:05d}.jsonl"
        if not path.is_file():
            raise WorkbenchError(f"{path}: missing: task {rank} of the filter stage did not finish")
        with open(path, encoding="utf-8") as f:
            for line in f:
                record = json.loads(line)
                self.stat_update("documents")
                yield Document(text=record["text"], id=record["id"])


class WriteShards(PipelineStep):
    """Tokenizes with our tokenizer (prepare's `pack` settings) into FOLDER/RANK/: {train,val}_NNNNN.bin
    split as prepare splits (shards.TrainValSplitter) and part.json, which merge_shards reads.
    `pack.num_threads` is per task (0 here means 1: tasks are the parallelism)."""

    type = "💽 - WRITER"
    name = "💽 workbench shards"

    def __init__(self, folder: str | os.PathLike, pack, batch_size: int = 1000):
        from workbench.tokenizer import load_tokenizer

        super().__init__()
        load_tokenizer(pack.tokenizer)  # an unknown tokenizer stops the driver
        self.folder, self.pack, self.batch_size = str(folder), pack, batch_size

    def run(self, data, rank: int = 0, world_size: int = 1):
        from datatrove.utils.batching import batched

        from workbench.tokenizer import load_tokenizer

        pack = self.pack
        tok = load_tokenizer(pack.tokenizer)
        dtype = dtype_for(tok.vocab_size)
        with atomic_dir(Path(self.folder) / f"{rank:05d}", force=True) as tmp:
            writers = {s: ShardWriter(tmp, s, dtype, pack.shard_tokens) for s in SPLITS}
            split = TrainValSplitter(writers, pack.val_fraction, pack.seq_len + 1)
            try:
                for batch in batched(data, self.batch_size):
                    texts = [d.text for d in batch]
                    with self.track_time("batch"):
                        ids = tok.enc.encode_ordinary_batch(texts, num_threads=pack.num_threads or 1)
                    for doc, text, doc_ids in zip(batch, texts, ids):
                        doc_ids.append(tok.eot_id)
                        name = split.add(text, np.asarray(doc_ids, dtype=dtype))
                        self.stat_update(f"{name}_documents")
                        self.stat_update(f"{name}_tokens", value=len(doc_ids))
                        yield doc
                tail = split.tail  # the merge moves documents to val over all parts, from their tails
                split.finish(move=False)
            finally:
                for w in writers.values():
                    w.close()
            part = {"format": PART_FORMAT, "rank": rank, "world_size": world_size, "tokenizer": tok.describe(),
                    "dtype": np.dtype(dtype).name, "seq_len": pack.seq_len, "shard_tokens": pack.shard_tokens,
                    "val_fraction": pack.val_fraction, "train_tail": tail,
                    "splits": {s: w.summary(pack.seq_len) for s, w in writers.items()}}
            (tmp / "part.json").write_text(json.dumps(part, indent=1) + "\n", encoding="utf-8")


# ---------------------------------------------------------------- stages, one machine

@dataclass
class Stage:
    name: str  # filter, buckets, clusters, shards, merge: in this order, each after the one before finished
    pipeline: list
    tasks: int
    logging_dir: str  # datatrove skips the tasks it finds completed here: a fresh one per run


def stages(inputs: list[str], work: str | os.PathLike, cfg=None, tasks: int | None = None,
           out: str | os.PathLike | None = None, force: bool = False) -> list[Stage]:
    """The datatrove jobs that do what prepare(inputs, out, cfg) does; with `out`, a last one-task
    stage, merge, runs merge_shards(work, out, force), else call it yourself. `tasks` (default: one per
    input file) is the filter and shards stages' task count: inputs are split by file, so more tasks
    than files leave some idle."""
    from workbench.data.prepare import PrepareConfig

    _require()
    cfg = cfg or PrepareConfig()
    cfg.validate()
    if getattr(getattr(cfg, "mix", None), "sources", None):
        raise WorkbenchError("mix.sources: data mixes run in `workbench data prepare` only, not on datatrove's "
                             "executors; give the inputs instead")
    files = list_files([str(i) for i in inputs])
    tasks = tasks or len(files)
    if tasks < 1:
        raise WorkbenchError(f"tasks must be at least 1, got {tasks}")
    work = Path(work).expanduser()
    if out is not None:  # the merge replaces OUT: refuse now what atomic_dir would refuse at the end
        target = Path(out).expanduser().resolve()
        for p in [work, *inputs]:
            p = Path(p).expanduser().resolve()
            if p == target or target in p.parents:
                raise WorkbenchError(f"{out} contains {p}; writing the shards there would delete it — "
                                     "choose another output")
    w, logs = str(work), work / "logs"
    dedup = cfg.dedup.near or cfg.dedup.exact
    mh = minhash_config(cfg.dedup) if dedup else None
    steps = [ReadDocuments(inputs, cfg.input), Normalise(cfg.filters), BoilerplateLines(cfg.filters),
             QualityFilter(cfg.filters)]
    if cfg.classifier.model:
        steps.append(QualityClassifier(cfg.classifier.model, cfg.classifier.threshold, cfg.input.batch_size))
    steps += [ScrubPII(cfg.pii), SaveFiltered(work / "filtered")]
    if dedup:
        steps.append(MinhashSignature(f"{w}/minhash/signatures", mh, exact=not cfg.dedup.near))
    jobs = [Stage("filter", steps, tasks, str(logs / "filter"))]
    last = [LoadFiltered(work / "filtered")]
    if dedup:
        jobs += [Stage("buckets", [MinhashDedupBuckets(f"{w}/minhash/signatures", f"{w}/minhash/buckets", config=mh)],
                       mh.num_buckets, str(logs / "buckets")),
                 Stage("clusters", [FirstKeptClusters(f"{w}/minhash/buckets", f"{w}/minhash/remove", config=mh)],
                       1, str(logs / "clusters"))]
        last.append(MinhashDedupFilter(f"{w}/minhash/remove"))
    last.append(WriteShards(work / "parts", cfg.pack, cfg.input.batch_size))
    jobs.append(Stage("shards", last, tasks, str(logs / "shards")))
    if out is not None:
        jobs.append(Stage("merge", [MergeShards(work, out, force)], 1, str(logs / "merge")))
    return jobs


class MergeShards(PipelineStep):
    """merge_shards as a one-task stage, so an executor's chain of jobs ends with the shard folder."""

    type = "💽 - WRITER"
    name = "💽 merge shards"

    def __init__(self, work: str | os.PathLike, out: str | os.PathLike, force: bool = False):
        super().__init__()
        self.work, self.out, self.force = str(work), str(out), force

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        if world_size != 1:
            raise WorkbenchError(f"the merge stage runs as one task, not {world_size}")
        with self.track_time():
            index = merge_shards(self.work, self.out, self.force)
        for split in SPLITS:
            self.stat_update(f"{split}_documents", value=index["splits"][split]["documents"])
            self.stat_update(f"{split}_tokens", value=index["splits"][split]["tokens"])
        yield from ()


def run_local(inputs: list[str], out: str | os.PathLike, cfg=None, *, tasks: int | None = None,
              workers: int = -1, work: str | os.PathLike | None = None, force: bool = False,
              resume: bool = False) -> dict:
    """Every stage on this machine with LocalPipelineExecutor (`workers` processes at once, -1: one
    per task), the last one merging the parts into OUT. `work` defaults to a temporary folder next
    to OUT, removed afterwards (name one to keep the logs). A `work` already used is refused
    (datatrove would skip the tasks it finished there and silently do nothing) unless `resume`,
    which finishes an interrupted run with the same inputs and settings."""
    _require()
    from datatrove.executor import LocalPipelineExecutor

    out = Path(out).expanduser()
    if out.is_dir() and any(out.iterdir()) and not force:  # before the work, not after it
        raise WorkbenchError(f"{out} already exists and is not empty (use --force to replace it)")
    if work is not None:
        folder = Path(work).expanduser()
        if folder.is_dir() and any(folder.iterdir()) and not resume:
            raise WorkbenchError(f"{folder} is not empty: datatrove skips every task it finds completed in its "
                                 "logging folders, so a rerun there silently does nothing. Use a fresh work "
                                 "folder (or resume to finish an interrupted run)")
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix=f".{out.name}.datatrove-", dir=out.parent))
    try:
        for stage in stages(inputs, folder, cfg, tasks, out=out, force=force):
            n = stage.tasks if workers == -1 else max(1, min(workers, stage.tasks))
            LocalPipelineExecutor(pipeline=stage.pipeline, tasks=stage.tasks, workers=n,
                                  logging_dir=stage.logging_dir).run()
    finally:
        if work is None:
            shutil.rmtree(folder, ignore_errors=True)
    return read_index(out)
