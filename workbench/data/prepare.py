"""`workbench data prepare`: raw text -> cleaned, filtered, deduplicated, tokenized training shards.

    workbench data prepare ../shared/data/text_c4_demo.jsonl --out runs/c4 [--config configs/data/prepare.yaml]
    workbench data prepare --mix web.jsonl=0.7 --mix books.txt=0.3 --out runs/mix [--mix-tokens N]

    from workbench.data.prepare import PrepareConfig, load_config, prepare
    report = prepare(["corpus.jsonl"], "runs/data", PrepareConfig())

Steps, in order, each counted in the report (documents and characters in/out, time, removals by
reason with a few examples): read -> normalise -> boilerplate_lines -> quality [-> classifier] ->
pii -> exact_dedup -> near_dedup -> tokenize. `classifier` runs only with a trained model
(`classifier.model`, from `workbench data quality train`; see quality_model.py): it keeps documents
scoring at least `classifier.threshold` and reports the score histogram. Documents stream through
in batches (`input.batch_size`): memory holds a few batches, the dedup signatures and the shard
writers' open files, never the corpus. normalise..pii run in `parallel.workers` processes, one batch
each (prepare_batch.py: the output is byte-identical for any number of workers); reading, dedup,
tokenizing and writing stay here. With `mix.sources` ({path: weight}) each source is prepared in
turn, dedup running across them, and the train shards are sampled to the weights' token shares
(mix.py).

Output folder (see shards.py for the format): train_*.bin, val_*.bin, report.json, report.md,
removed.jsonl with `report.write_removed` (the documents the heuristic filters removed, PII scrubbed:
a ready `--bad` file for `workbench data quality train`) and, last, index.json. Everything is built
in a hidden temporary sibling folder and renamed to DIR only when complete (workbench.io.atomic_dir);
on any error the temporary folder is removed and an existing DIR is left untouched.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from workbench.data.corpus import ReadConfig, ReadStats, iter_documents
from workbench.data.dedup import DedupConfig, ExactDedup, NearDedup, signatures
from workbench.data.filters import FilterConfig
from workbench.data.pii import PIIConfig
from workbench.data.prepare_batch import BatchResult, BatchRunner, Step, Tally, resolve_workers
from workbench.data.shards import ShardWriter, TrainValSplitter, dtype_for, write_index
from workbench.errors import WorkbenchError
from workbench.io import atomic_dir

REPORT_VERSION = 1


@dataclass
class PackConfig:
    tokenizer: str = "cl100k_base"  # or a trained .tiktoken file
    seq_len: int = 1024  # window length recorded in index.json (readers may use any)
    val_fraction: float = 0.01  # share of documents (by hash of their text) in the validation split
    shard_tokens: int = 100_000_000  # tokens per .bin file
    num_threads: int = 0  # tiktoken threads; 0 = every core


@dataclass
class ReportConfig:
    examples: int = 3  # removed documents shown per reason
    snippet_chars: int = 200
    clusters: int = 5  # largest near-duplicate clusters shown
    # removed.jsonl {"step", "reason", "text"}: what boilerplate_lines and quality removed. Not duplicates
    # (they repeat kept text) nor the classifier's removals (training on them teaches it its own mistakes)
    write_removed: bool = False


@dataclass
class ClassifierConfig:
    model: str = ""  # a folder from `workbench data quality train`; "" = no classifier step
    threshold: float = 0.5  # keep documents whose score (P(good)) is at least this
    thresholds: list = field(default_factory=lambda: [0.1, 0.3, 0.5, 0.7, 0.9])  # report: share kept at each

    def validate(self) -> None:
        for t in [self.threshold, *self.thresholds]:
            if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0.0 <= t <= 1.0:
                raise WorkbenchError(f"classifier thresholds must be numbers in [0, 1], got {t!r}")


@dataclass
class ParallelConfig:
    # processes for normalise, the filters, the classifier and PII (dedup and tokenizing stay in the
    # main process); 0 = every core, 1 = all in this process. The output is identical for any number.
    workers: int = 0


@dataclass
class MixConfig:
    # {path: weight}: a weighted mix of sources (workbench/data/mix.py), instead of the inputs; {} = no mix
    sources: dict = field(default_factory=dict)
    tokens: int = 0  # train tokens of the mix; 0 = as many as the scarcest source (for its weight) gives at 1 epoch
    seed: int = 0  # which documents are sampled, and their order

    def validate(self) -> None:
        from workbench.data.mix import check_sources

        check_sources(self.sources)
        if self.tokens < 0:
            raise WorkbenchError(f"mix.tokens must be 0 (the scarcest source at one epoch) or more, got {self.tokens}")


@dataclass
class PrepareConfig:
    # 100 documents a batch (ReadConfig's 1000 elsewhere): the unit a worker takes, so a corpus of a few
    # thousand documents still spreads over every core; per-batch costs are small (see prepare_batch.py)
    input: ReadConfig = field(default_factory=lambda: ReadConfig(batch_size=100))
    filters: FilterConfig = field(default_factory=FilterConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    pii: PIIConfig = field(default_factory=PIIConfig)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    pack: PackConfig = field(default_factory=PackConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    mix: MixConfig = field(default_factory=MixConfig)

    def validate(self) -> None:
        self.input.validate()
        self.mix.validate()
        self.dedup.validate()
        self.classifier.validate()
        p = self.pack
        for name, value, low in (("seq_len", p.seq_len, 1), ("shard_tokens", p.shard_tokens, 1), ("num_threads", p.num_threads, 0)):
            if value < low:
                raise WorkbenchError(f"pack.{name} must be at least {low}, got {value}")
        if not 0.0 <= p.val_fraction < 1.0:
            raise WorkbenchError(f"pack.val_fraction must be in [0, 1), got {p.val_fraction}")
        if self.parallel.workers < 0:
            raise WorkbenchError(f"parallel.workers must be 0 (every core) or more, got {self.parallel.workers}")


def load_config(path: str | os.PathLike | None = None, overrides: dict | None = None) -> PrepareConfig:
    """A PrepareConfig from YAML (`section: {key: value}`), then `overrides` ({"pack.seq_len": 256})."""
    from workbench.io import read_yaml

    cfg = PrepareConfig()
    data = {}
    if path is not None:
        data = read_yaml(path)
        if not isinstance(data, dict):
            raise WorkbenchError(f"{path}: expected sections (input, filters, classifier, pii, dedup, pack, report, "
                                 "parallel, mix)")
    for section, key, value in _flatten(data, path):
        _set(cfg, section, key, value, path)
    if path is not None:  # a value out of range in the file: say which file
        try:
            cfg.validate()
        except WorkbenchError as e:
            raise WorkbenchError(f"{path}: {e}") from None
    for dotted, value in (overrides or {}).items():
        _set(cfg, *dotted.split(".", 1), value, "override")
    cfg.validate()
    return cfg


def _flatten(data: dict, where):
    sections = [f.name for f in dataclasses.fields(PrepareConfig)]
    for section, values in data.items():
        if section not in sections:
            raise WorkbenchError(f"{where}: unknown section {section!r}{_did_you_mean(section, sections)}")
        if not isinstance(values, dict):
            raise WorkbenchError(f"{where}: section {section!r} must be a mapping of settings")
        for key, value in values.items():
            yield section, key, value


def _set(cfg: PrepareConfig, section: str, key: str, value, where) -> None:
    obj = getattr(cfg, section)
    names = [f.name for f in dataclasses.fields(obj)]
    if key not in names:
        raise WorkbenchError(f"{where}: unknown setting {section}.{key}{_did_you_mean(key, names)}")
    default = getattr(obj, key)
    ok = (value is None and section == "pii") or \
        (isinstance(default, bool) and isinstance(value, bool)) or \
        (not isinstance(default, bool) and isinstance(default, (int, float)) and not isinstance(value, bool)
         and isinstance(value, (int, float)) and (isinstance(default, float) or isinstance(value, int))) or \
        (isinstance(default, (str, list, dict)) and isinstance(value, type(default))) or \
        (default is None)
    if not ok:
        raise WorkbenchError(f"{where}: {section}.{key} must be {_TYPE_NAMES.get(type(default), type(default).__name__)}, got {value!r}")
    setattr(obj, key, value)


_TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
               list: "a list", dict: "a mapping"}


def _did_you_mean(word: str, options: list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1)
    return f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(options)})"


# ---------------------------------------------------------------- the pipeline

def prepare(inputs: list[str], out: str | os.PathLike, cfg: PrepareConfig | None = None,
            force: bool = False, progress=None) -> dict:
    """Run the pipeline; return the report. `progress(docs_read)` is called after each batch."""
    from workbench.tokenizer import load_tokenizer

    cfg = cfg or PrepareConfig()
    cfg.validate()
    if inputs and cfg.mix.sources:
        raise WorkbenchError("give either inputs or a mix of sources (--mix PATH=WEIGHT, mix.sources), not both")
    out = Path(out).expanduser()
    tok = load_tokenizer(cfg.pack.tokenizer)
    model = None
    if cfg.classifier.model:  # loaded before anything is written: a bad model file stops here
        from workbench.data.quality_model import QualityModel

        model = QualityModel.load(cfg.classifier.model)
    with atomic_dir(out, force=force, protect=inputs or list(cfg.mix.sources)) as tmp:
        report = _run(inputs, tmp, out, cfg, tok, progress, model)
    return report


@dataclass
class _Batch:
    texts: list[str]
    positions: list[tuple]  # ReadStats.position of each document: where a bad one is named


def _batches(it, size: int, read: Step, stats: ReadStats):
    while True:
        t0 = time.perf_counter()
        batch = _Batch([], [])
        for text in it:
            batch.texts.append(text)
            batch.positions.append(stats.position)
            if len(batch.texts) == size:
                break
        read.seconds += time.perf_counter() - t0
        if not batch.texts:
            return
        yield batch


class Dedup:
    """Exact then near dedup in the main process: each sees every document before it (across sources)."""

    def __init__(self, cfg: DedupConfig):
        self.exact = ExactDedup() if cfg.exact else None
        self.near = NearDedup(cfg) if cfg.near else None

    def run(self, tally: Tally, res: BatchResult) -> list[int]:
        """Indices of the batch's texts that are kept; removals counted in the tally's dedup steps."""
        texts, idx = res.texts, list(range(len(res.texts)))
        t0 = time.perf_counter()
        keep = [True] * len(texts) if self.exact is None else [self.exact.add(t) for t in texts]
        texts, idx = _keep(tally.steps["exact_dedup"], texts, idx, keep, "exact duplicate", t0)
        t0 = time.perf_counter() - res.signature_seconds  # the workers' share of near dedup counts too
        sigs = None if res.signatures is None else [res.signatures[i] for i in idx]
        if sigs is not None and None in sigs:  # a worker skipped a text exact dedup kept: cannot happen, but cheap
            sigs = [s if s is not None else signatures([t], self.near.cfg)[0] for s, t in zip(sigs, texts)]
        keep = [True] * len(texts) if self.near is None else [d is None for d in self.near.add_batch(texts, sigs)]
        return _keep(tally.steps["near_dedup"], texts, idx, keep, "near duplicate", t0)[1]


def _keep(step: Step, texts: list[str], idx: list[int], keep: list[bool], reason: str, t0: float):
    out, out_idx = [], []
    for text, i, k in zip(texts, idx, keep):
        if k:
            out.append(text)
            out_idx.append(i)
        else:
            step.remove(text, reason)
    step.count(texts, out, time.perf_counter() - t0)
    return out, out_idx


def encode(tok, texts: list[str], threads: int) -> list[np.ndarray]:
    """Each document's tokens + <|endoftext|> (tiktoken's threads release the GIL: all cores work)."""
    dtype = dtype_for(tok.vocab_size)
    ids = tok.enc.encode_ordinary_batch(texts, num_threads=threads)
    return [np.asarray(d + [tok.eot_id], dtype=dtype) for d in ids]


def _run(inputs, tmp: Path, out: Path, cfg: PrepareConfig, tok, progress, model=None) -> dict:
    t_start = time.perf_counter()
    total, stats, dedup = Tally(cfg, model is not None), ReadStats(), Dedup(cfg.dedup)
    sink = open(tmp / "removed.jsonl", "w", encoding="utf-8") if cfg.report.write_removed else None
    writers = {s: ShardWriter(tmp, s, dtype_for(tok.vocab_size), cfg.pack.shard_tokens) for s in ("train", "val")}
    runner = BatchRunner(cfg, resolve_workers(cfg.parallel.workers), model)
    source = functools.partial(_source, cfg=cfg, runner=runner, dedup=dedup, tok=tok, sink=sink,
                               threads=cfg.pack.num_threads or os.cpu_count() or 1)
    mix, section, moved = None, None, 0
    try:
        with runner:
            if not cfg.mix.sources:
                split = TrainValSplitter(writers, cfg.pack.val_fraction, cfg.pack.seq_len + 1)
                source(inputs, total, stats, split, progress)
                _check_kept(total, stats, "")
                split.finish()
                moved = split.moved
            else:
                from workbench.data.mix import Mix

                mix = Mix(cfg.mix.sources, tmp, dtype_for(tok.vocab_size), cfg.mix.tokens, cfg.mix.seed)
                for path in cfg.mix.sources:
                    src, tally, own = mix.add(path), Tally(cfg, model is not None), ReadStats()
                    split = TrainValSplitter({"train": src.train, "val": src.val}, cfg.pack.val_fraction,
                                             cfg.pack.seq_len + 1)
                    source([path], tally, own, split, progress and (lambda n, done=stats.documents: progress(done + n)))
                    _check_kept(tally, own, f"mix source {path}: ")
                    split.finish()
                    moved += split.moved
                    src.info = {"input": _input_summary(own), "steps": tally.counts()}
                    total.absorb(tally)
                    _add_stats(stats, own)
                section = mix.write(writers)
    finally:
        for w in writers.values():
            w.close()
        if sink is not None:
            sink.close()
        if mix is not None:
            mix.close()
    return _finish(inputs or list(cfg.mix.sources), tmp, out, cfg, tok, total, stats, dedup.near, writers, moved,
                   runner.used, time.perf_counter() - t_start, section)


def _source(inputs, tally: Tally, stats: ReadStats, split, progress, *, cfg, runner, dedup, tok, sink, threads):
    """One source through every step: the batch steps (in the workers), dedup, tokenize, split."""
    steps = tally.steps
    batches = _batches(iter_documents(inputs, cfg.input, stats), cfg.input.batch_size, steps["read"], stats)
    for res, batch in runner.results(batches):
        tally.merge(batch, res, sink)
        kept = [res.texts[i] for i in dedup.run(tally, res)]
        t0 = time.perf_counter()
        for text, tokens in zip(kept, encode(tok, kept, threads)):
            split.add(text, tokens)
            tally.tokens += len(tokens)
        steps["tokenize"].count(kept, kept, time.perf_counter() - t0)
        if progress:
            progress(stats.documents)


def _check_kept(tally: Tally, stats: ReadStats, where: str) -> None:
    if stats.documents == 0:
        raise WorkbenchError(f"{where}no documents in the inputs" + _skipped_note(stats))
    if tally.steps["tokenize"].docs_out == 0:
        why = "; ".join(f"{s.name}: {n} {r}" for s in tally.steps.values() for r, n in s.removed.most_common(3))
        raise WorkbenchError(f"{where}no documents left after filtering ({why}); nothing written. Loosen the "
                             "thresholds (--config, see configs/data/prepare.yaml)" + _skipped_note(stats))


def _add_stats(total: ReadStats, part: ReadStats) -> None:
    total.files += part.files
    total.records += part.records
    total.documents += part.documents
    total.bytes += part.bytes
    total.skipped.update(part.skipped)
    for reason, where in part.first_skipped.items():
        total.first_skipped.setdefault(reason, where)


def _input_summary(stats: ReadStats) -> dict:
    return {"files": len(stats.files), "records": stats.records, "documents": stats.documents,
            "bytes": stats.bytes, "skipped": dict(stats.skipped), "first_skipped": stats.first_skipped}


def _skipped_note(stats: ReadStats) -> str:
    if not stats.skipped:
        return ""
    return "; skipped: " + ", ".join(f"{n} {r}" for r, n in stats.skipped.items()) + \
        " (first: " + "; ".join(stats.first_skipped.values()) + ")"


def _finish(inputs, tmp: Path, out: Path, cfg, tok, tally: Tally, stats, near, writers: dict, moved: int,
            workers: int, seconds: float, mix: dict | None) -> dict:
    from workbench.data.prepare_report import to_markdown

    seq_len = cfg.pack.seq_len
    splits = {"train": writers["train"].summary(seq_len), "val": writers["val"].summary(seq_len)}
    tokens = splits["train"]["tokens"] + splits["val"]["tokens"]
    steps = tally.finish(cfg, near)
    first, last = tally.steps["read"], tally.steps["tokenize"]
    report = {
        "version": REPORT_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "inputs": [str(i) for i in inputs], "out": str(out),
        "input": _input_summary(stats),
        "steps": steps,
        "retained": {"documents": last.docs_out / max(first.docs_in, 1),
                     "chars": last.chars_out / max(first.chars_in, 1)},
        "output": {"documents": splits["train"]["documents"] + splits["val"]["documents"], "tokens": tokens,
                   "dtype": np.dtype(dtype_for(tok.vocab_size)).name,
                   "seq_len": seq_len, "tokenizer": tok.describe(),
                   "train": {k: splits["train"][k] for k in ("documents", "tokens", "windows")},
                   "val": {k: splits["val"][k] for k in ("documents", "tokens", "windows")},
                   "val_moved_documents": moved,
                   **({"removed_file": "removed.jsonl"} if cfg.report.write_removed else {})},
        "seconds": round(seconds, 3),
        "throughput": {"mb_per_s": stats.bytes / 1e6 / max(seconds, 1e-9),
                       "docs_per_s": stats.documents / max(seconds, 1e-9), "workers": workers},
        **({"mix": mix} if mix is not None else {}),
        "config": dataclasses.asdict(cfg),
    }
    (tmp / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (tmp / "report.md").write_text(to_markdown(report), encoding="utf-8")
    write_index(tmp, tok.describe(), dtype_for(tok.vocab_size), seq_len, splits)  # last: marks completion
    return report
