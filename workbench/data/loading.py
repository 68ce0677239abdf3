"""Open a data source with Hugging Face `datasets` and read normalised records from it.

    src = open_source("sample_data/chat.jsonl")          # a file, a folder, or a hub dataset name
    for index, record in read_records(src, skip_bad=True):  # record: the kind's internal shape
        ...
    src.summary                                          # records read, kept, skipped by reason

Local files: .jsonl .json .parquet .csv .arrow .txt (one document per .txt file), or a folder of
them. Hub names (`HuggingFaceH4/ultrachat_200k`) load when online; offline they fail with a message
saying how to use a local file instead. Every error names the file and, where there is one, the
line: a malformed JSON line, invalid UTF-8, a mistyped field, an empty file.
"""

from __future__ import annotations

import codecs
import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from workbench.data.formats import FORMATS, BadRecord, detect_format, normalise
from workbench.errors import WorkbenchError

BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv",
            ".arrow": "arrow", ".txt": "text"}
# Hub datasets whose training split is not called "train".
HUB_SPLITS = {"HuggingFaceH4/ultrachat_200k": "train_sft",
              "HuggingFaceH4/ultrafeedback_binarized": "train_prefs"}
_HUB_NAME = re.compile(r"^[\w.-]+/[\w.-]+$")


@dataclass
class Summary:
    """What reading a source did: records read and kept, bad ones skipped by reason."""

    read: int = 0
    kept: int = 0
    skipped: Counter = field(default_factory=Counter)
    first_skipped: dict = field(default_factory=dict)  # reason -> "file:line: detail"

    def describe(self) -> str:
        text = f"{self.kept} of {self.read} records kept"
        if self.skipped:
            reasons = ", ".join(f"{n} {r}" for r, n in self.skipped.most_common())
            text += f"; skipped {sum(self.skipped.values())} bad ({reasons})"
        return text


@dataclass
class Part:
    """One file of a source, loaded as a `datasets.Dataset`."""

    path: str
    dataset: object  # datasets.Dataset
    lines: list[int] | None = None  # line of each record, when known exactly


@dataclass
class Source:
    name: str
    format: str
    parts: list[Part]
    bad_lines: list[str] = field(default_factory=list)  # unreadable JSON lines skipped on load
    summary: Summary = field(default_factory=Summary)

    @property
    def kind(self) -> str:
        return FORMATS[self.format]

    def __len__(self) -> int:
        return sum(len(p.dataset) for p in self.parts)

    def locate(self, index: int) -> str:
        """`file:line` (JSON lines), or `file record N`, for the record at a global index."""
        for p in self.parts:
            if index < len(p.dataset):
                return _where(p, index)
            index -= len(p.dataset)
        raise IndexError(index)

    def rows(self, start: int = 0):
        """Yield (global index, raw record dict) from `start` on, in batches for speed."""
        offset = 0
        for p in self.parts:
            n = len(p.dataset)
            if start < offset + n:
                first = max(start - offset, 0)
                ds = p.dataset.select(range(first, n)) if first else p.dataset
                i = offset + first
                for batch in ds.iter(batch_size=256):
                    keys = list(batch)
                    for values in zip(*(batch[k] for k in keys)):
                        yield i, dict(zip(keys, values))
                        i += 1
            offset += n


def open_source(spec: str, fmt: str | None = None, split: str | None = None,
                skip_bad: bool = False) -> Source:
    """Load a file, folder or hub dataset; detect (or check) its format."""
    import datasets  # imported here: it takes a second, and `workbench --help` should not

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    if fmt is not None and fmt not in FORMATS:
        raise WorkbenchError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    path = Path(spec).expanduser()
    bad: list[str] = []
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in BUILDERS and p.is_file())
        if not files:
            raise WorkbenchError(f"{spec}: folder has no data files ({', '.join(BUILDERS)})")
        parts = [_load_file(p, skip_bad, bad) for p in files]
    elif path.is_file():
        parts = [_load_file(path, skip_bad, bad)]
    elif path.suffix.lower() in BUILDERS or spec.startswith((".", "/", "~")) or not _HUB_NAME.match(spec):
        raise WorkbenchError(f"no such file or folder: {spec}")
    else:
        parts = [_load_hub(spec, split)]
    detected = []
    for p in parts:
        try:
            detected.append(detect_format(p.dataset.column_names))
        except ValueError as e:
            if fmt is None:
                raise WorkbenchError(f"{p.path}: {e}") from None
    if fmt is None:
        if len(set(detected)) > 1:
            pairs = ", ".join(f"{p.path}: {f}" for p, f in zip(parts, detected))
            raise WorkbenchError(f"{spec}: files have different formats ({pairs}); use one format per source")
        fmt = detected[0]
    src = Source(spec, fmt, parts, bad)
    src.summary.read = len(bad)
    src.summary.skipped.update({"malformed JSON": len(bad)} if bad else {})
    if bad:
        src.summary.first_skipped["malformed JSON"] = bad[0]
    return src


def read_records(src: Source, skip_bad: bool = False, start: int = 0, limit: int | None = None):
    """Yield (index, normalised record). Bad records raise, or are skipped and counted."""
    kept = 0
    for index, row in src.rows(start):
        if limit is not None and kept >= limit:
            return
        src.summary.read += 1
        try:
            record = normalise(row, src.format)
        except BadRecord as e:
            where = f"{src.locate(index)}: {e}"
            if not skip_bad:
                raise WorkbenchError(f"{where} (format {src.format}; --skip-bad skips such records)") from None
            src.summary.skipped[e.reason] += 1
            src.summary.first_skipped.setdefault(e.reason, where)
            continue
        src.summary.kept += 1
        kept += 1
        yield index, record


def read_record(src: Source, index: int) -> dict:
    """The normalised record at `index` (bad records always raise: it was asked for by number)."""
    if not 0 <= index < len(src):
        raise WorkbenchError(f"index {index} is out of range: {src.name} has {len(src)} records")
    return next(read_records(src, skip_bad=False, start=index, limit=1))[1]


def _load_file(path: Path, skip_bad: bool, bad: list[str]) -> Part:
    from datasets import Dataset, load_dataset

    builder = BUILDERS.get(path.suffix.lower())
    if builder is None:
        raise WorkbenchError(f"{path}: unsupported file type; use one of {', '.join(BUILDERS)}")
    try:
        size = path.stat().st_size
        if size == 0 or (size < 1 << 20 and builder in ("json", "text", "csv") and not path.read_bytes().strip()):
            raise WorkbenchError(f"{path}: file is empty")
    except OSError as e:
        raise WorkbenchError(f"{path}: cannot read: {e.strerror}") from None
    try:
        if builder in ("json", "text", "csv"):
            problem = _utf8_problem(path)  # pyarrow would only fail later, on reading the row
            if problem:
                raise WorkbenchError(f"{path}: {problem}")
        ds = load_dataset(builder, data_files=str(path), split="train", **_builder_options(builder, path))
        part = Part(str(path), ds)
    except WorkbenchError:
        raise
    except Exception as e:  # datasets/pyarrow errors say little: find the line ourselves
        if builder != "json":
            raise WorkbenchError(f"{path}: cannot be read as {builder}: {str(e)[:300]}") from None
        records, lines = _parse_json_lines(path, skip_bad, bad)
        try:
            part = Part(str(path), Dataset.from_list(records), lines)
        except Exception:
            raise WorkbenchError(f"{path}: {_shape_problem(records, lines)}") from None
    if len(part.dataset) == 0:
        raise WorkbenchError(f"{path}: no records")
    return part


def _builder_options(builder: str, path: Path) -> dict:
    if builder == "text":
        return {"sample_by": "document"}  # a .txt file is one document
    if builder == "csv":  # every column a string: "2" stays "2", an empty cell stays ""
        import csv

        from datasets import Features, Value

        with open(path, encoding="utf-8", newline="") as f:
            header = next(csv.reader(f), [])
        return {"features": Features({c: Value("string") for c in header}), "keep_default_na": False}
    return {}


def _load_hub(name: str, split: str | None) -> Part:
    from datasets import load_dataset

    split = split or HUB_SPLITS.get(name, "train")
    how = (f"to use it offline, on a connected machine run: python -c \"from datasets import "
           f"load_dataset; load_dataset('{name}', split='{split}').to_json('data.jsonl')\" and pass "
           "data.jsonl (or any local .jsonl/.json/.parquet/.csv/.arrow file or folder)")
    if any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")):
        raise WorkbenchError(f"{name!r} is not a local file and the Hugging Face Hub is offline "
                             f"(HF_DATASETS_OFFLINE/HF_HUB_OFFLINE is set); {how}")
    try:
        return Part(f"{name}[{split}]", load_dataset(name, split=split))
    except Exception as e:
        raise WorkbenchError(f"{name!r} is not a local file and could not be loaded from the "
                             f"Hugging Face Hub ({type(e).__name__}: {str(e)[:200]}); {how}") from None


def _parse_json_lines(path: Path, skip_bad: bool, bad: list[str]) -> tuple[list[dict], list[int]]:
    """Parse JSON lines (or one JSON array) in Python, to say exactly which line is wrong."""
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as e:
            raise WorkbenchError(f"{path}:{e.lineno}: malformed JSON: {e.msg} (column {e.colno})") from None
        return _objects(path, records, None, skip_bad, bad)
    records, lines = [], []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
            lines.append(lineno)
        except json.JSONDecodeError as e:
            where = f"{path}:{lineno}: malformed JSON: {e.msg} (column {e.colno})"
            if not skip_bad:
                raise WorkbenchError(f"{where} (--skip-bad skips such lines)") from None
            bad.append(where)
    return _objects(path, records, lines, skip_bad, bad)


def _objects(path, records, lines, skip_bad, bad):
    if not isinstance(records, list):
        raise WorkbenchError(f"{path}: expected JSON lines or an array of objects")
    keep, keep_lines = [], []
    for i, r in enumerate(records):
        if isinstance(r, dict):
            keep.append(r)
            keep_lines.append(lines[i] if lines else i)
            continue
        where = f"{path}:{lines[i]}" if lines else f"{path} record {i}"
        if not skip_bad:
            raise WorkbenchError(f"{where}: expected a JSON object, got {type(r).__name__} (--skip-bad skips such lines)")
        bad.append(f"{where}: not a JSON object")
    return keep, (keep_lines if lines else None)


def _shape_problem(records: list[dict], lines: list[int] | None) -> str:
    """Name the first field whose type differs between records (arrow needs one schema)."""
    seen: dict[str, tuple[str, int]] = {}
    for i, r in enumerate(records):
        where = lines[i] if lines else i
        for k, v in r.items():
            t = _shape(v)
            if t == "null":
                continue
            if k in seen and seen[k][0] != t:
                first_t, first_at = seen[k]
                unit = "line" if lines else "record"
                return (f"{unit} {where}: field {k!r} is {t} but {first_t} on {unit} {first_at}; "
                        "every record must give a field the same type")
            seen.setdefault(k, (t, where))
    return "records do not share one schema (check that every record has the same fields and types)"


def _shape(v) -> str:
    if isinstance(v, list):
        inner = {_shape(x) for x in v} - {"null"}
        return f"a list of {inner.pop()}" if len(inner) == 1 else "a list"
    if isinstance(v, dict):
        return "an object"
    return {str: "a string", bool: "a boolean", int: "a number", float: "a number"}.get(type(v), "null")


def _utf8_problem(path: Path, chunk: int = 1 << 22) -> str | None:
    """Check that a file is UTF-8, in chunks (flat memory); say where the first bad byte is."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    end = 0
    with open(path, "rb") as f:
        while True:
            data = f.read(chunk)
            end += len(data)
            try:
                decoder.decode(data, final=not data)
            except UnicodeDecodeError:
                break
            if not data:
                return None
    with open(path, "rb") as f:  # error path only: reread up to the failing chunk's end
        data = f.read(end)
    try:
        data.decode("utf-8")
        start = len(data) - 1
    except UnicodeDecodeError as e:
        start = e.start
    line = data.count(b"\n", 0, start) + 1
    col = start - (data.rfind(b"\n", 0, start) + 1) + 1
    kind = "binary file" if b"\x00" in data[:8192] else "invalid UTF-8"
    return f"line {line}, column {col}: {kind} (byte 0x{data[start]:02x}); files must be UTF-8 text"


def _where(part: Part, i: int) -> str:
    if part.lines is not None:
        return f"{part.path}:{part.lines[i]}" if part.path.endswith(".jsonl") else f"{part.path} record {part.lines[i]}"
    if part.path.endswith(".jsonl"):
        return f"{part.path}:{_nth_nonblank_line(part.path, i)}"
    return f"{part.path} record {i}"


def _nth_nonblank_line(path: str, i: int) -> int:
    with open(path, "rb") as f:
        seen = -1
        for lineno, line in enumerate(f, 1):
            if line.strip():
                seen += 1
                if seen == i:
                    return lineno
    return i + 1
