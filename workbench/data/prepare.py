"""`workbench data prepare`: raw text -> cleaned, filtered, deduplicated, tokenized training shards.

    workbench data prepare ../shared/data/text_c4_demo.jsonl --out runs/c4 [--config configs/data/prepare.yaml]

    from workbench.data.prepare import PrepareConfig, load_config, prepare
    report = prepare(["corpus.jsonl"], "runs/data", PrepareConfig())

Steps, in order, each counted in the report (documents and characters in/out, time, removals by
reason with a few examples): read -> normalise -> boilerplate_lines -> quality [-> classifier] ->
pii -> exact_dedup -> near_dedup -> tokenize. `classifier` runs only with a trained model
(`classifier.model`, from `workbench data quality train`; see quality_model.py): it keeps documents
scoring at least `classifier.threshold` and reports the score histogram. Documents stream through
in batches (`input.batch_size`): memory holds one batch, the dedup signatures and the shard writers'
open files, never the corpus.

Output folder (see shards.py for the format): train_*.bin, val_*.bin, report.json, report.md,
removed.jsonl with `report.write_removed` (the documents the heuristic filters removed, PII scrubbed:
a ready `--bad` file for `workbench data quality train`) and, last, index.json. Everything is built
in a hidden temporary sibling folder and renamed to DIR only
when complete (workbench.io.atomic_dir); on any error the temporary folder is removed and an existing DIR is left untouched.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import os
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from workbench.data.corpus import ReadConfig, ReadStats, iter_documents
from workbench.data.dedup import DedupConfig, ExactDedup, NearDedup
from workbench.data.filters import Doc, FilterConfig, clean_lines, normalise_text, quality_check
from workbench.data.pii import PIIConfig, scrub
from workbench.data.shards import ShardWriter, dtype_for, write_index
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
class PrepareConfig:
    input: ReadConfig = field(default_factory=ReadConfig)
    filters: FilterConfig = field(default_factory=FilterConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    pii: PIIConfig = field(default_factory=PIIConfig)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    pack: PackConfig = field(default_factory=PackConfig)
    report: ReportConfig = field(default_factory=ReportConfig)

    def validate(self) -> None:
        self.input.validate()
        self.dedup.validate()
        self.classifier.validate()
        p = self.pack
        for name, value, low in (("seq_len", p.seq_len, 1), ("shard_tokens", p.shard_tokens, 1), ("num_threads", p.num_threads, 0)):
            if value < low:
                raise WorkbenchError(f"pack.{name} must be at least {low}, got {value}")
        if not 0.0 <= p.val_fraction < 1.0:
            raise WorkbenchError(f"pack.val_fraction must be in [0, 1), got {p.val_fraction}")


def load_config(path: str | os.PathLike | None = None, overrides: dict | None = None) -> PrepareConfig:
    """A PrepareConfig from YAML (`section: {key: value}`), then `overrides` ({"pack.seq_len": 256})."""
    from workbench.io import read_yaml

    cfg = PrepareConfig()
    data = {}
    if path is not None:
        data = read_yaml(path)
        if not isinstance(data, dict):
            raise WorkbenchError(f"{path}: expected sections (input, filters, classifier, pii, dedup, pack, report)")
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

STEPS = ("read", "normalise", "boilerplate_lines", "quality", "pii", "exact_dedup", "near_dedup", "tokenize")


class _Step:
    def __init__(self, name: str, cfg: ReportConfig, pii: PIIConfig):
        self.name, self.cfg, self.pii = name, cfg, pii
        self.docs_in = self.docs_out = self.chars_in = self.chars_out = 0
        self.seconds = 0.0
        self.removed: Counter = Counter()
        self.examples: dict[str, list[str]] = {}
        self.extra: dict = {}
        self.sink = None  # an open removed.jsonl: removals are written there too

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
        if self.sink is not None:
            record = {"step": self.name, "reason": reason, "text": scrub(text, self.pii)[0]}
            self.sink.write(json.dumps(record, ensure_ascii=False) + "\n")
        shown = self.examples.setdefault(reason, [])
        if len(shown) < self.cfg.examples:
            n = self.cfg.snippet_chars  # examples are scrubbed too: the report must not leak PII
            shown.append(scrub(text[:n], self.pii)[0] + ("…" if len(text) > n else ""))

    def count(self, texts_in: list[str], texts_out: list[str], seconds: float) -> None:
        self.docs_in += len(texts_in)
        self.docs_out += len(texts_out)
        self.chars_in += sum(map(len, texts_in))
        self.chars_out += sum(map(len, texts_out))
        self.seconds += seconds

    def as_dict(self) -> dict:
        return {"name": self.name, "docs_in": self.docs_in, "docs_out": self.docs_out,
                "chars_in": self.chars_in, "chars_out": self.chars_out, "seconds": round(self.seconds, 4),
                "removed": dict(self.removed.most_common()), "examples": self.examples, **self.extra}


def prepare(inputs: list[str], out: str | os.PathLike, cfg: PrepareConfig | None = None,
            force: bool = False, progress=None) -> dict:
    """Run the pipeline; return the report. `progress(docs_read)` is called after each batch."""
    from workbench.tokenizer import load_tokenizer

    cfg = cfg or PrepareConfig()
    cfg.validate()
    out = Path(out).expanduser()
    tok = load_tokenizer(cfg.pack.tokenizer)
    model = None
    if cfg.classifier.model:  # loaded before anything is written: a bad model file stops here
        from workbench.data.quality_model import QualityModel

        model = QualityModel.load(cfg.classifier.model)
    with atomic_dir(out, force=force, protect=inputs) as tmp:
        report = _run(inputs, tmp, out, cfg, tok, progress, model)
    return report


def _batches(it, size: int, read: _Step):
    while True:
        t0 = time.perf_counter()
        batch = []
        for text in it:
            batch.append(text)
            if len(batch) == size:
                break
        read.seconds += time.perf_counter() - t0
        if not batch:
            return
        yield batch


def _run(inputs, tmp: Path, out: Path, cfg: PrepareConfig, tok, progress, model=None) -> dict:
    t_start = time.perf_counter()
    at = STEPS.index("quality") + 1  # the classifier scores what the heuristic filters kept
    names = STEPS if model is None else STEPS[:at] + ("classifier",) + STEPS[at:]
    steps = {name: _Step(name, cfg.report, cfg.pii) for name in names}
    scores = None if model is None else _score_stats(cfg)
    sink = open(tmp / "removed.jsonl", "w", encoding="utf-8") if cfg.report.write_removed else None
    steps["boilerplate_lines"].sink = steps["quality"].sink = sink
    stats = ReadStats()
    fc = cfg.filters
    exact = ExactDedup() if cfg.dedup.exact else None
    near = NearDedup(cfg.dedup) if cfg.dedup.near else None
    lines_removed: Counter = Counter()
    pii_counts: Counter = Counter()
    dtype = dtype_for(tok.vocab_size)
    writers = {s: ShardWriter(tmp, s, dtype, cfg.pack.shard_tokens) for s in ("train", "val")}
    split = _Splitter(writers, cfg.pack.val_fraction, cfg.pack.seq_len + 1)
    threads = cfg.pack.num_threads or os.cpu_count() or 1

    def boilerplate(text):
        text, dropped = clean_lines(text, fc)
        lines_removed.update(dropped)
        return (text, "") if text else (None, "nothing left but boilerplate lines")

    def pii(text):
        text, counts = scrub(text, cfg.pii)
        pii_counts.update(counts)
        return text, ""

    def quality(text):
        keep, reason = quality_check(Doc(text), fc)
        return (text, "") if keep else (None, reason)

    def exact_dedup(text):
        return (text, "") if exact is None or exact.add(text) else (None, "exact duplicate")

    try:
        for batch in _batches(iter_documents(inputs, cfg.input, stats), cfg.input.batch_size, steps["read"]):
            steps["read"].count(batch, batch, 0.0)
            texts = steps["normalise"].run(batch, lambda t: (n, "") if (n := normalise_text(t, fc))
                                           else (None, "empty after normalisation"))
            texts = steps["boilerplate_lines"].run(texts, boilerplate)
            texts = steps["quality"].run(texts, quality)
            if model is not None:
                texts = _classifier_step(steps["classifier"], texts, model, cfg.classifier.threshold, scores)
            texts = steps["pii"].run(texts, pii)
            texts = steps["exact_dedup"].run(texts, exact_dedup)
            texts = _near_step(steps["near_dedup"], texts, near)
            t0 = time.perf_counter()
            ids = tok.enc.encode_ordinary_batch(texts, num_threads=threads)
            for text, doc_ids in zip(texts, ids):
                doc_ids.append(tok.eot_id)
                split.add(text, np.asarray(doc_ids, dtype=dtype))
            steps["tokenize"].count(texts, texts, time.perf_counter() - t0)
            if progress:
                progress(stats.documents)
        if stats.documents == 0:
            raise WorkbenchError("no documents in the inputs" + _skipped_note(stats))
        if steps["tokenize"].docs_out == 0:
            why = "; ".join(f"{s.name}: {n} {r}" for s in steps.values() for r, n in s.removed.most_common(3))
            raise WorkbenchError(f"no documents left after filtering ({why}); nothing written. Loosen the "
                                 "thresholds (--config, see configs/data/prepare.yaml)" + _skipped_note(stats))
        split.finish()
    finally:
        for w in writers.values():
            w.close()
        if sink is not None:
            sink.close()
    if scores is not None:
        steps["classifier"].extra = {"model": cfg.classifier.model, "threshold": cfg.classifier.threshold,
                                     "scores": scores.as_dict()}
    return _finish(inputs, tmp, out, cfg, tok, steps, stats, near, lines_removed, pii_counts, split,
                   time.perf_counter() - t_start)


def _score_stats(cfg: PrepareConfig):
    from workbench.data.quality_model import ScoreStats

    n = cfg.report.snippet_chars  # snippets are scrubbed: the classifier runs before the PII step
    return ScoreStats([*cfg.classifier.thresholds, cfg.classifier.threshold], cfg.report.examples,
                      lambda t: scrub(t[:n], cfg.pii)[0] + ("…" if len(t) > n else ""))


def _classifier_step(step: _Step, texts: list[str], model, threshold: float, scores) -> list[str]:
    t0 = time.perf_counter()
    p = model.score(texts)
    scores.add(texts, p)
    out = []
    for text, score in zip(texts, p):
        if score >= threshold:
            out.append(text)
        else:
            step.remove(text, f"score below {threshold:g}")
    step.count(texts, out, time.perf_counter() - t0)
    return out


def _skipped_note(stats: ReadStats) -> str:
    if not stats.skipped:
        return ""
    return "; skipped: " + ", ".join(f"{n} {r}" for r, n in stats.skipped.items()) + \
        " (first: " + "; ".join(stats.first_skipped.values()) + ")"


def _near_step(step: _Step, texts: list[str], near: NearDedup | None) -> list[str]:
    t0 = time.perf_counter()
    if near is None:
        out = texts
    else:
        out = []
        for text, dup_of in zip(texts, near.add_batch(texts)):
            if dup_of is None:
                out.append(text)
            else:
                step.remove(text, "near duplicate")
    step.count(texts, out, time.perf_counter() - t0)
    return out


class _Splitter:
    """Train/val at document level, by a hash of the text (deterministic, order-independent).

    When the hash gives val fewer than `need` tokens (one window: seq_len + 1), the last train
    documents move to val at the end, as long as train keeps at least one window (or one document).
    To do that while streaming, the newest train documents (about `need` tokens) wait in `pending`."""

    def __init__(self, writers: dict, val_fraction: float, need: int):
        self.train, self.val = writers["train"], writers["val"]
        self.val_fraction, self.need = val_fraction, need
        self.pending: deque = deque()
        self.pending_tokens = 0
        self.moved = 0

    def add(self, text: str, tokens: np.ndarray) -> None:
        h = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()
        if int.from_bytes(h, "little") < self.val_fraction * 2**64:
            self.val.write(tokens)
            return
        self.pending.append(tokens)
        self.pending_tokens += len(tokens)
        while len(self.pending) > 1 and self.pending_tokens - len(self.pending[0]) >= self.need:
            first = self.pending.popleft()
            self.pending_tokens -= len(first)
            self.train.write(first)

    def finish(self) -> None:
        moved: list = []
        val_tokens, val_docs = self.val.num_tokens, self.val.documents
        while self.val_fraction > 0 and self.pending and val_tokens < self.need:
            last = self.pending[-1]
            train_docs_left = self.train.documents + len(self.pending) - 1
            train_tokens_left = self.train.num_tokens + self.pending_tokens - len(last)
            if train_docs_left < 1 or (train_tokens_left < self.need and val_docs > 0):
                break
            moved.insert(0, self.pending.pop())
            self.pending_tokens -= len(last)
            val_tokens += len(last)
            val_docs += 1
        for tokens in self.pending:
            self.train.write(tokens)
        for tokens in moved:
            self.val.write(tokens)
        self.pending.clear()
        self.moved = len(moved)


def _finish(inputs, tmp: Path, out: Path, cfg, tok, steps, stats, near, lines_removed, pii_counts,
            split: _Splitter, seconds: float) -> dict:
    from workbench.data.prepare_report import to_markdown

    seq_len = cfg.pack.seq_len
    splits = {"train": split.train.summary(seq_len), "val": split.val.summary(seq_len)}
    tokens = splits["train"]["tokens"] + splits["val"]["tokens"]
    tk = steps["tokenize"]
    tk.extra = {"tokens_out": tokens, "chars_per_token": round(tk.chars_out / max(tokens, 1), 3)}
    steps["boilerplate_lines"].extra = {"lines_removed": dict(lines_removed.most_common())}
    steps["pii"].extra = {"replacements": {k: pii_counts.get(k, 0) for k in ("email", "phone", "ip")}}
    if near is not None:
        steps["near_dedup"].extra = {"clusters": near.clusters(cfg.report.clusters)}
    first, last = steps["read"], tk
    report = {
        "version": REPORT_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "inputs": [str(i) for i in inputs], "out": str(out),
        "input": {"files": len(stats.files), "records": stats.records, "documents": stats.documents,
                  "bytes": stats.bytes, "skipped": dict(stats.skipped), "first_skipped": stats.first_skipped},
        "steps": [s.as_dict() for s in steps.values()],
        "retained": {"documents": last.docs_out / max(first.docs_in, 1),
                     "chars": last.chars_out / max(first.chars_in, 1)},
        "output": {"documents": last.docs_out, "tokens": tokens, "dtype": np.dtype(dtype_for(tok.vocab_size)).name,
                   "seq_len": seq_len, "tokenizer": tok.describe(),
                   "train": {k: splits["train"][k] for k in ("documents", "tokens", "windows")},
                   "val": {k: splits["val"][k] for k in ("documents", "tokens", "windows")},
                   "val_moved_documents": split.moved,
                   **({"removed_file": "removed.jsonl"} if cfg.report.write_removed else {})},
        "seconds": round(seconds, 3),
        "throughput": {"mb_per_s": stats.bytes / 1e6 / max(seconds, 1e-9),
                       "docs_per_s": stats.documents / max(seconds, 1e-9)},
        "config": dataclasses.asdict(cfg),
    }
    (tmp / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (tmp / "report.md").write_text(to_markdown(report), encoding="utf-8")
    write_index(tmp, tok.describe(), dtype_for(tok.vocab_size), seq_len, splits)  # last: marks completion
    return report
