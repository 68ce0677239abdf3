"""Stream plain-text documents out of .txt, .jsonl/.json and .parquet files (and folders of them).

    from workbench.data.corpus import ReadConfig, ReadStats, iter_documents
    stats = ReadStats()
    for text in iter_documents(["corpus/", "extra.jsonl"], ReadConfig(), stats):
        ...
    stats.documents, stats.bytes, stats.skipped     # what was read, what was skipped and why

Used by `workbench data prepare` and `workbench tokenizer train`. Files are read with Hugging Face
`datasets` in streaming mode, batch by batch, so memory stays flat however large the input.
Errors name the file and the line: a file that is unreadable, empty, binary or not UTF-8 (line and
column of the first bad byte), a malformed JSON line, a record without a string text field. With
`skip_bad` those records (or files) are skipped and counted instead.

A .txt file is split by `txt_split`: `chunk` (default) groups consecutive paragraphs (blank-line
separated, never cut) into documents of at least `txt_chunk_words` words — a 1 MB book becomes
~200 web-page-sized documents that the quality filters and near-dedup were designed for;
`paragraph` (each paragraph a document), `line`, or `file` (the whole file one document).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from workbench.data.loading import _utf8_problem
from workbench.errors import WorkbenchError

SUFFIXES = (".txt", ".jsonl", ".json", ".parquet")
TXT_SPLITS = ("chunk", "paragraph", "line", "file")


@dataclass
class ReadConfig:
    text_field: str = "text"  # field of .jsonl/.json/.parquet records holding the document
    txt_split: str = "chunk"  # chunk | paragraph | line | file
    txt_chunk_words: int = 1000  # chunk: paragraphs are grouped until a document has this many words
    skip_bad: bool = False  # skip and count bad records/files instead of stopping at the first
    batch_size: int = 1000  # records read per batch

    def validate(self) -> None:
        if self.txt_split not in TXT_SPLITS:
            raise WorkbenchError(f"txt_split must be one of {', '.join(TXT_SPLITS)}, got {self.txt_split!r}")
        if self.txt_chunk_words < 1 or self.batch_size < 1:
            raise WorkbenchError("txt_chunk_words and batch_size must be at least 1")


@dataclass
class ReadStats:
    files: list = field(default_factory=list)
    records: int = 0
    documents: int = 0
    bytes: int = 0  # UTF-8 bytes of the documents read
    skipped: Counter = field(default_factory=Counter)  # reason -> records (or files) skipped
    first_skipped: dict = field(default_factory=dict)  # reason -> "file:line: detail"
    # (path, "line" | "record", n) of the document last yielded; where(position) names it in a message
    position: tuple = ()

    def skip(self, reason: str, where: str, skip_bad: bool, hint: str = " (--skip-bad skips it)"):
        if not skip_bad:
            raise WorkbenchError(where + hint)
        self.skipped[reason] += 1
        self.first_skipped.setdefault(reason, where)

    @staticmethod
    def where(position: tuple) -> str:
        """'file:line' of a document (its first line for .txt), 'file record N' in a parquet file."""
        path, kind, n = position
        if kind == "line":
            return f"{path}:{n}"
        if Path(path).suffix.lower() == ".parquet":
            return f"{path} record {n - 1}"
        return f"{path}:{_line_of_record(Path(path), n)}"  # a re-scan, so only on the error path


def list_files(inputs: list[str]) -> list[Path]:
    """Expand folders (recursively, hidden entries ignored) into supported files, in sorted order."""
    if not inputs:
        raise WorkbenchError("give at least one input file or folder")
    files: list[Path] = []
    for spec in inputs:
        path = Path(spec).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES
                           and not any(part.startswith(".") for part in p.relative_to(path).parts))
            if not found:
                raise WorkbenchError(f"{spec}: folder has no data files ({', '.join(SUFFIXES)})")
            files += found
        elif path.is_file():
            if path.suffix.lower() not in SUFFIXES:
                raise WorkbenchError(f"{spec}: unsupported file type; use {', '.join(SUFFIXES)} or a folder")
            files.append(path)
        elif path.exists():
            raise WorkbenchError(f"{spec}: not a regular file or folder")
        else:
            raise WorkbenchError(f"no such file or folder: {spec}")
    for path in files:
        if not os.access(path, os.R_OK):
            raise WorkbenchError(f"{path}: cannot read: permission denied")
    return files


def iter_documents(inputs: list[str], cfg: ReadConfig, stats: ReadStats):
    """Yield each document's text, file after file."""
    import datasets

    cfg.validate()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)
    for path in list_files(inputs):
        stats.files.append(str(path))
        try:
            size = path.stat().st_size
        except OSError as e:
            stats.skip("unreadable file", f"{path}: cannot read: {e.strerror}", cfg.skip_bad)
            continue
        if size == 0:
            stats.skip("empty file", f"{path}: file is empty", cfg.skip_bad)
            continue
        suffix = path.suffix.lower()
        problem = None if suffix == ".parquet" else _utf8_problem(path)
        if problem and (suffix == ".txt" or not cfg.skip_bad):
            stats.skip("not UTF-8", f"{path}: {problem}", cfg.skip_bad, " (--skip-bad skips the file)")
            continue
        if suffix == ".txt":
            docs = _txt_documents(path, cfg, stats)
        elif problem:  # JSON lines with some bad bytes, --skip-bad: line by line, bad lines counted
            docs = _json_lines_slowly(path, cfg, stats, skip=0)
        else:
            docs = _record_documents(path, cfg, stats)
        for text in docs:
            stats.documents += 1
            stats.bytes += len(text.encode("utf-8", "surrogatepass"))
            yield text


def _stream(builder: str, path: Path, **kw):
    from datasets import load_dataset

    return load_dataset(builder, data_files=str(path), split="train", streaming=True, **kw)


def _txt_documents(path: Path, cfg: ReadConfig, stats: ReadStats):
    ds = _stream("text", path, keep_linebreaks=True, encoding="utf-8-sig")
    buf: list[str] = []  # lines of the current paragraph / chunk / file
    words = lineno = 0
    for batch in ds.iter(batch_size=cfg.batch_size * 10):
        for line in batch["text"]:
            stats.records += 1
            lineno += 1
            if cfg.txt_split == "line":
                if line.strip():
                    stats.position = (str(path), "line", lineno)
                    yield line.rstrip("\n")
                continue
            if cfg.txt_split != "file" and not line.strip() and buf:  # a blank line ends a paragraph
                if cfg.txt_split == "paragraph" or words >= cfg.txt_chunk_words:
                    stats.position = (str(path), "line", lineno - len(buf))  # buf starts with a non-blank line
                    yield "".join(buf).strip("\n")
                    buf, words = [], 0
                    continue
            if buf or line.strip():
                buf.append(line)
                words += len(line.split())
    if "".join(buf).strip():
        stats.position = (str(path), "line", lineno + 1 - len(buf))
        yield "".join(buf).strip("\n")


def _record_documents(path: Path, cfg: ReadConfig, stats: ReadStats):
    builder = "parquet" if path.suffix.lower() == ".parquet" else "json"
    n = 0
    if path.suffix.lower() == ".jsonl" and _starts_with_array(path):
        # `datasets` would read a JSON array on line 1 as many records; a .jsonl line must be an object
        yield from _json_lines_slowly(path, cfg, stats, skip=0)
        return
    try:
        ds = _stream(builder, path)
        for batch in ds.iter(batch_size=cfg.batch_size):
            if cfg.text_field not in batch:
                raise WorkbenchError(f"{path}: records have no {cfg.text_field!r} field (fields: "
                                     f"{', '.join(batch) or 'none'}); choose one with --text-field")
            for text in batch[cfg.text_field]:
                n += 1
                stats.records += 1
                if isinstance(text, str):
                    stats.position = (str(path), "record", n)
                    yield text
                else:
                    where = f"{path}:{_line_of_record(path, n)}" if builder == "json" else f"{path} record {n - 1}"
                    stats.skip(f"{cfg.text_field} not a string",
                               f"{where}: {cfg.text_field!r} is {_kind(text)}, expected a string", cfg.skip_bad)
        if n == 0:
            stats.skip("no records", f"{path}: no records", cfg.skip_bad)
        return
    except WorkbenchError:
        raise
    except Exception as e:  # pyarrow says little about where; JSON is re-read in Python to find the line
        if builder == "parquet":
            cause = e.__cause__ or e.__context__ or e
            stats.skip("unreadable file", f"{path}: cannot be read as parquet: {str(cause)[:200]}", cfg.skip_bad)
            return
    yield from _json_lines_slowly(path, cfg, stats, skip=n)


def _starts_with_array(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    return head.startswith(b"[")


def _json_lines_slowly(path: Path, cfg: ReadConfig, stats: ReadStats, skip: int):
    """JSON lines parsed one by one: exact line numbers; with skip_bad, bad lines are counted.
    The first `skip` good records were already yielded by the fast path."""
    good = 0
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            if not raw.strip():
                continue
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                stats.skip("not UTF-8", f"{path}:{lineno}: invalid UTF-8 at column {e.start + 1}", cfg.skip_bad)
                continue
            try:
                record = json.loads(line, strict=False)
            except json.JSONDecodeError as e:
                if lineno == 1 and line.lstrip().startswith("["):
                    raise WorkbenchError(f"{path}: a JSON array that cannot be parsed ({e.msg}, line "
                                         f"{e.lineno}); use one JSON object per line") from None
                stats.skip("malformed JSON", f"{path}:{lineno}: malformed JSON: {e.msg} (column {e.colno})",
                           cfg.skip_bad)
                continue
            text = record.get(cfg.text_field) if isinstance(record, dict) else None
            if not isinstance(text, str):
                detail = (f"{cfg.text_field!r} is {_kind(text)}, expected a string" if isinstance(record, dict)
                          else f"expected a JSON object, got {type(record).__name__}")
                stats.skip(f"{cfg.text_field} not a string", f"{path}:{lineno}: {detail}", cfg.skip_bad)
                continue
            good += 1
            if good > skip:
                stats.records += 1
                stats.position = (str(path), "line", lineno)
                yield text
    if good == 0 and not stats.skipped:
        stats.skip("no records", f"{path}: no records", cfg.skip_bad)


def _kind(value) -> str:
    if value is None:
        return "null or missing"
    name = {"int": "an integer", "float": "a number", "bool": "a boolean", "list": "a list", "dict": "an object"}
    return name.get(type(value).__name__, f"a {type(value).__name__}")


def _line_of_record(path: Path, n: int) -> int:
    """Line number of the n-th (1-based) non-blank line: error path only."""
    seen = 0
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                seen += 1
                if seen == n:
                    return lineno
    return n
