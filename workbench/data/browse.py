"""Browse a data source lazily: a huge JSON-lines file opens at once and a record is read when asked.

    b = open_browser("ultrachat.jsonl")          # returns once the first chunk is indexed
    while not b.complete: b.index_more()         # the rest of the line offsets (a background thread)
    b.record(7)                                  # normalised record 7 (read on demand, LRU-cached)
    b.example(7, Encoding(tok, "last", 2048))    # its ids and labels, through encode_records
    b.rows(range(20), enc)                       # the list's columns for the rows on screen
    for i in b.search("pudding"): ...            # hits as they are found (message text, any case)
    while not b.validated: b.validate_more()     # check every record; b.summary counts the bad ones

.jsonl files are indexed here: byte offsets of the non-blank lines, so a record is one `pread`
away and nothing is decoded before it is shown. Every other source (.json .parquet .csv .arrow
.txt, folders, save_to_disk folders, hub names) goes through `loading.open_source` (datasets,
memory-mapped). Either way a record is normalised by `formats.normalise` and encoded by
`collate.encode_records`, the trainers' path, so what the Data pane shows is what is trained.

A bad record (malformed JSON, not an object, invalid UTF-8 or Unicode, or one `normalise`
refuses) is a `RecordError` naming `file:line` and the reason. Validation counts them by reason
in a `loading.Summary`, as `workbench inspect --skip-bad` does; with `skip_bad` the browser lists
only the records checked good so far. Indexing, validation and search may run in other threads
than the one reading records: the index only grows, and it grows under a lock.
"""

from __future__ import annotations

import json
import os
import re
import threading
import weakref
from abc import ABC, abstractmethod
from array import array
from bisect import bisect_right
from collections import Counter, OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from workbench.data.collate import Example, encode_records
from workbench.data.formats import FORMATS, BadRecord, detect_format, normalise
from workbench.data.loading import BUILDERS, Source, Summary, open_source
from workbench.data.record_view import first_line, texts
from workbench.errors import WorkbenchError
from workbench.tokenizer import Tokenizer, load_tokenizer

FIRST_CHUNK = 1 << 20  # bytes indexed before a .jsonl file is shown (~170 ultrachat records)
CHUNK = 1 << 23  # bytes per later indexing / search step
UNREADABLE = ("malformed JSON", "not a JSON object", "invalid UTF-8", "invalid Unicode")  # loading's "unreadable"
_BOM = b"\xef\xbb\xbf"
_SPACE = frozenset(b" \t\r\n\x0b\x0c")  # what bytes.strip() strips
_SURROGATE = re.compile(rb"\\[uU][dD][89a-fA-F]")  # a \udXXX escape: a surrogate, possibly unpaired (checked on decode)
_JSON_ESCAPED = re.compile(r'["\\/\x00-\x1f\x7f-\U0010ffff]')  # characters JSON may write escaped


class RecordError(WorkbenchError):
    """One bad record: `where` is file:line, `reason` is short (counted), str() says everything."""

    def __init__(self, where: str, reason: str, detail: str):
        super().__init__(f"{where}: {detail}")
        self.where, self.reason, self.detail = where, reason, detail


@dataclass(frozen=True)
class Encoding:
    """How records become tokens: the tokenizer, the mode (all / last / every) and max length."""

    tok: Tokenizer
    mode: str = "all"
    max_len: int | None = None


@dataclass
class Row:
    """What the example list shows for one record (tokens None: no tokenizer yet)."""

    index: int
    first_line: str = ""
    tokens: int | None = None
    trained: int | None = None
    truncated: bool = False
    dropped: bool = False
    error: RecordError | None = None


class Browser(ABC):
    """A lazily read data source. Subclasses supply `_raw`, `_iter_raw`, `locate` and the index."""

    path: str
    format: str
    complete: bool = True
    progress: float = 1.0  # share of the source indexed
    load_error: str | None = None  # the error opening without skip_bad gave (lines left out)

    def __init__(self, path: str, fmt: str, skip_bad: bool):
        self.path, self.format, self.skip_bad = path, fmt, skip_bad
        self.summary = Summary()
        self.bad: dict[int, RecordError] = {}
        self.good = array("q")  # indices checked good, in order (what skip_bad lists)
        self.checked = 0  # records validated so far (from index 0)
        self.first_error: RecordError | None = None
        self._lock = threading.RLock()
        self._records: OrderedDict = OrderedDict()
        self._rows: OrderedDict = OrderedDict()  # Encoding -> {index: Row}
        self._validator: Iterator | None = None

    @property
    def kind(self) -> str:
        return FORMATS[self.format]

    @property
    def validated(self) -> bool:
        return self.complete and self.checked >= len(self)

    @abstractmethod
    def __len__(self) -> int:
        ...

    def index_more(self) -> bool:
        """Index the next chunk; True once the whole source is indexed."""
        return True

    def visible(self):
        """The record indices to list: all of them, or (skip_bad) those checked good so far."""
        return self.good if self.skip_bad else range(len(self))

    @abstractmethod
    def locate(self, index: int) -> str:
        ...

    # -------------------------------------------------------------------- records
    def record(self, index: int) -> dict:
        """The normalised record at `index` (RecordError when it is bad)."""
        with self._lock:
            hit = self._records.get(index)
            if hit is not None:
                self._records.move_to_end(index)
        if hit is None:
            try:
                hit = self._normalised(index, self._raw(index))
            except RecordError as e:
                hit = e
            with self._lock:
                self._records[index] = hit
                while len(self._records) > 512:
                    self._records.popitem(last=False)
        if isinstance(hit, RecordError):
            raise hit
        return hit

    def example(self, index: int, enc: Encoding) -> Example:
        """The record encoded as the trainers encode it (RecordError when it is bad)."""
        return encode_records(enc.tok, self.kind, [self.record(index)], [index], enc.mode, enc.max_len)[0]

    def rows(self, indices, enc: Encoding | None = None, tokenize: bool = True) -> list[Row]:
        """The list's columns; with an encoding, tokens and trained too (cached per encoding).
        `tokenize=False`: the cached counts, and rows without counts for the others (cheap)."""
        cache = self._row_cache(enc) if enc is not None else {}
        with self._lock:
            cached = {i: cache[i] for i in indices if i in cache}
        fresh: dict[int, Row] = {}
        good: list[tuple[int, dict]] = []
        for i in indices:
            if i in cached:
                continue
            try:
                rec = self.record(i)
            except RecordError as e:
                fresh[i] = Row(i, e.detail, error=e)
                continue
            fresh[i] = Row(i, first_line(rec, self.kind))
            good.append((i, rec))
        if enc is not None and tokenize:
            if good:  # one batch: tiktoken encodes it in parallel
                for ex in encode_records(enc.tok, self.kind, [r for _, r in good], [i for i, _ in good],
                                         enc.mode, enc.max_len):
                    halves = (ex.chosen, ex.rejected) if ex.kind == "preference" else (ex.rendered,)
                    row = fresh[ex.index]
                    row.tokens = sum(len(h) for h in halves)
                    row.trained = sum(h.num_trainable for h in halves)
                    row.truncated, row.dropped = any(h.truncated for h in halves), ex.dropped
            with self._lock:
                cache.update(fresh)
                while len(cache) > 4096:
                    cache.popitem(last=False)
        return [cached.get(i) or fresh[i] for i in indices]

    def _row_cache(self, enc: Encoding) -> OrderedDict:
        with self._lock:
            cache = self._rows.get(enc)
            if cache is None:
                cache = self._rows[enc] = OrderedDict()
                while len(self._rows) > 4:  # the last few encodings: switching back is instant
                    self._rows.popitem(last=False)
            self._rows.move_to_end(enc)
            return cache

    @property
    def rows_tokenized(self) -> int:
        """Rows whose token counts were computed, over every encoding (never all of a big file)."""
        return sum(len(c) for c in self._rows.values())

    @abstractmethod
    def _raw(self, index: int):
        ...

    @abstractmethod
    def _iter_raw(self, start: int) -> Iterator[tuple[int, object]]:
        """(index, raw record) from `start` on, in order, fast (sequential reads)."""
        ...

    def _parse(self, index: int, raw) -> dict:
        return raw

    def _normalised(self, index: int, raw) -> dict:
        obj = self._parse(index, raw)
        try:
            return normalise(obj, self.format)
        except BadRecord as e:
            raise RecordError(self.locate(index), e.reason, str(e)) from None

    # -------------------------------------------------------------------- validation
    def validate_more(self, n: int = 2000) -> bool:
        """Check the next `n` records (in order), counting bad ones; True once all are checked."""
        if self._validator is None:
            self._validator = self._iter_raw(0)
        for _ in range(n):
            item = next(self._validator, None)
            if item is None:
                return self.validated
            index, raw = item
            self.summary.read += 1
            try:
                self._normalised(index, raw)
            except RecordError as e:
                self.bad[index] = e
                self.first_error = self.first_error or e
                self.summary.note(e.reason, str(e), self.summary.unreadable if e.reason in UNREADABLE else None)
            else:
                self.summary.kept += 1
                self.good.append(index)
            self.checked = index + 1
        return self.validated

    def bad_counts(self) -> Counter:
        """Bad records by reason, unreadable lines included (loading's two counters together);
        reasons in the order the file first shows them, so most_common() breaks ties that way."""
        total = self.summary.skipped + self.summary.unreadable
        return Counter({r: total[r] for r in sorted(total, key=list(self.summary.first_skipped).index)})

    # -------------------------------------------------------------------- search
    def search(self, query: str, stop: Callable[[], bool] | None = None) -> Iterator[int]:
        """Indices of the records whose message text contains `query` (any case), as found.
        Bad records never match. `stop()` returning True ends the search between records."""
        needle = query.lower()
        if not needle:
            return
        for index, raw in self._candidates(needle, stop):
            if stop is not None and stop():
                return
            try:
                rec = self._normalised(index, raw)
            except RecordError:
                continue
            if any(needle in text.lower() for text in texts(rec, self.kind)):
                yield index

    def _candidates(self, needle: str, stop) -> Iterator[tuple[int, object]]:
        for item in self._iter_raw(0):
            if stop is not None and stop():
                return
            yield item


class JsonlBrowser(Browser):
    """A .jsonl file: one record per non-blank line, found by byte offset."""

    def __init__(self, path: str, fmt: str | None, skip_bad: bool):
        super().__init__(path, fmt or "", skip_bad)
        try:
            self._fd = os.open(path, os.O_RDONLY)
        except OSError as e:
            raise WorkbenchError(f"{path}: cannot read: {e.strerror}") from None
        weakref.finalize(self, os.close, self._fd)
        self.size = os.fstat(self._fd).st_size
        self.offsets, self.ends, self.lines = array("q"), array("q"), array("q")
        self.complete, self.progress = self.size == 0, 0.0
        self._pos = self._start = self._lineno = 0
        self._blank = True  # the line being read holds only whitespace so far
        self.index_more(FIRST_CHUNK)
        if not self._ensure(0):
            raise WorkbenchError(f"{path}: file is empty")
        if fmt is None:
            self.format = self._detect()

    def __len__(self) -> int:
        return len(self.offsets)

    def locate(self, index: int) -> str:
        return f"{self.path}:{self.lines[index]}"

    def index_more(self, chunk: int | None = None) -> bool:
        chunk = chunk or CHUNK
        with self._lock:
            if self.complete:
                return True
            pos = self._pos
            data = os.pread(self._fd, min(chunk, max(self.size - pos, 0)), pos)
            i = 0
            if pos == 0 and data.startswith(_BOM):
                i = self._start = len(_BOM)
            while True:
                nl = data.find(b"\n", i)
                end = len(data) if nl < 0 else nl
                if self._blank and i < end and (data[i] not in _SPACE or data[i:end].strip()):
                    self._blank = False
                if nl < 0:
                    break
                self._lineno += 1
                if not self._blank:
                    self._add(self._start, pos + nl, self._lineno)
                self._start, self._blank, i = pos + nl + 1, True, nl + 1
            self._pos = pos + len(data)
            self.progress = min(self._pos / max(self.size, 1), 1.0)
            if self._pos >= self.size or not data:  # the size when opened: a last line without \n counts
                if not self._blank:
                    self._add(self._start, self._pos, self._lineno + 1)
                self.complete, self.progress = True, 1.0
            return self.complete

    def _add(self, start: int, end: int, lineno: int) -> None:
        self.offsets.append(start)
        self.ends.append(end)
        self.lines.append(lineno)

    def _ensure(self, index: int) -> bool:
        """Index until `index` exists; False when the file has fewer records."""
        while index >= len(self) and not self.complete:
            self.index_more()
        return index < len(self)

    def _detect(self) -> str:
        """The format, from the fields of the first record that is a JSON object."""
        i = 0
        while self._ensure(i):
            try:
                obj = self._parse(i, self._raw(i))
            except RecordError:
                i += 1
                continue
            try:
                return detect_format(list(obj))
            except ValueError as e:
                raise WorkbenchError(f"{self.locate(i)}: {e}") from None
        raise WorkbenchError(f"{self.path}: no record is a readable JSON object; first: {self._raw_error(0)}")

    def _raw_error(self, index: int) -> str:
        try:
            self._parse(index, self._raw(index))
        except RecordError as e:
            return str(e)
        return self.locate(index)

    def _raw(self, index: int) -> bytes:
        if not self._ensure(index):
            raise IndexError(index)
        return os.pread(self._fd, self.ends[index] - self.offsets[index], self.offsets[index])

    def _parse(self, index: int, raw: bytes) -> dict:
        where = self.locate(index)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise RecordError(where, "invalid UTF-8", f"invalid UTF-8 (byte 0x{raw[e.start]:02x} at column "
                              f"{len(raw[:e.start].decode('utf-8', 'replace')) + 1}); files must be UTF-8 text") from None
        try:
            obj = json.loads(text, strict=False)  # as lenient as pyarrow: raw control characters pass
        except json.JSONDecodeError as e:
            raise RecordError(where, "malformed JSON", f"malformed JSON: {e.msg} (column {e.colno})") from None
        if not isinstance(obj, dict):
            raise RecordError(where, "not a JSON object", f"expected a JSON object, got {type(obj).__name__}")
        if _SURROGATE.search(raw):
            try:
                json.dumps(obj, ensure_ascii=False).encode("utf-8")
            except UnicodeEncodeError:
                raise RecordError(where, "invalid Unicode", "a string holds a lone surrogate escape "
                                  "(such as \\ud800), not valid Unicode") from None
        return obj

    def _spans(self, start: int) -> Iterator[tuple[int, int, bytes]]:
        """(first record, last record + 1, bytes) of whole records in ~CHUNK-sized reads."""
        i = start
        while self._ensure(i):
            base = self.offsets[i]
            while not self.complete and self.ends[-1] < base + CHUNK:  # index what the read covers
                self.index_more()
            j = min(max(bisect_right(self.ends, base + CHUNK), i + 1), len(self))
            yield i, j, os.pread(self._fd, self.ends[j - 1] - base, base)
            i = j

    def _iter_raw(self, start: int):
        for i, j, data in self._spans(start):
            base = self.offsets[i]
            for k in range(i, j):
                yield k, data[self.offsets[k] - base:self.ends[k] - base]

    def _candidates(self, needle: str, stop):
        if not needle.isascii() or _JSON_ESCAPED.search(needle):
            yield from super()._candidates(needle, stop)  # JSON may escape it: parse every record
            return
        # The needle is plain ASCII, which JSON writes as is: only lines holding it can match.
        pattern = needle.encode()
        for i, j, data in self._spans(0):
            if stop is not None and stop():
                return
            low, base, at = data.lower(), self.offsets[i], 0
            while (at := low.find(pattern, at)) >= 0:
                k = bisect_right(self.offsets, base + at) - 1
                if base + at >= self.ends[k]:  # in a blank line between records
                    at += 1
                    continue
                yield k, data[self.offsets[k] - base:self.ends[k] - base]
                at = self.ends[k] - base + 1  # one candidate per record


class SourceBrowser(Browser):
    """Any source `open_source` reads (datasets): already indexed, read from its arrow files."""

    def __init__(self, src: Source, skip_bad: bool, load_error: str | None = None):
        super().__init__(src.name, src.format, skip_bad)
        self.src, self.load_error = src, load_error
        self.summary = src.summary  # lines left out while loading are counted there already
        self._starts = [0]
        for p in src.parts:
            self._starts.append(self._starts[-1] + len(p.dataset))

    def __len__(self) -> int:
        return self._starts[-1]

    def locate(self, index: int) -> str:
        return self.src.locate(index)

    def _raw(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(index)
        part = bisect_right(self._starts, index) - 1
        return self.src.parts[part].dataset[index - self._starts[part]]

    def _iter_raw(self, start: int):
        return self.src.rows(start)


def opens_at_once(path: str) -> bool:
    """Whether `open_browser` returns in milliseconds (a .jsonl file: its first MiB is indexed);
    anything else goes through datasets, which takes a second or more: open it in a thread."""
    p = Path(path).expanduser()
    return p.suffix.lower() == ".jsonl" and not p.is_dir()


def open_browser(path: str, fmt: str | None = None, skip_bad: bool = False) -> Browser:
    """A browser over a file, folder or hub dataset (WorkbenchError when it cannot be read at all)."""
    if fmt is not None and fmt not in FORMATS:
        raise WorkbenchError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    p = Path(path).expanduser()
    if p.is_file() and p.suffix.lower() == ".jsonl":
        return JsonlBrowser(str(p), fmt, skip_bad)
    if p.is_file() and p.suffix.lower() not in BUILDERS:  # say so before importing datasets (a second)
        raise WorkbenchError(f"{p}: unsupported file type; use one of {', '.join(BUILDERS)}")
    try:
        return SourceBrowser(open_source(str(p) if p.exists() else path, fmt, skip_bad=skip_bad), skip_bad)
    except WorkbenchError as e:
        if skip_bad or not (p.is_dir() or p.suffix.lower() == ".json"):  # only JSON lines can be skipped
            raise
        first = e
    # Some lines could not be loaded at all: open the rest, keep the error to show (and offer skipping).
    try:
        src = open_source(str(p) if p.exists() else path, fmt, skip_bad=True)
    except WorkbenchError:
        raise first from None
    if not src.summary.unreadable:
        raise first
    return SourceBrowser(src, skip_bad, load_error=str(first))


def tokenizer_of(spec: str | None) -> Tokenizer:
    """cl100k_base (empty), a tiktoken name, a .tiktoken file, or the tokenizer a model checkpoint
    or a run directory (its latest checkpoint) was trained with."""
    spec = (spec or "").strip()
    if not spec:
        return load_tokenizer()
    path = Path(spec).expanduser()
    if path.is_dir():
        # torch comes with these imports: only a checkpoint needs them.
        from workbench.model.checkpoint import load_checkpoint_tokenizer
        from workbench.train.checkpoint import resolve_checkpoint

        return load_checkpoint_tokenizer(resolve_checkpoint(path))
    return load_tokenizer(spec)
