"""Open a data source with Hugging Face `datasets` and read normalised records from it.

    src = open_source("sample_data/chat.jsonl")          # a file, a folder, or a hub dataset name
    for index, record in read_records(src, skip_bad=True):  # record: the kind's internal shape
        ...
    src.summary                                          # records read, kept, skipped by reason

Local files: .jsonl .json .parquet .csv .arrow .txt (one document per .txt file), or a folder of
them (hidden files and folders are ignored). Hub names (`HuggingFaceH4/ultrachat_200k`) load when
online; offline they fail with a message saying how to use a local file instead. Every error names
the file and, where there is one, the line: a malformed JSON line, invalid UTF-8, a mistyped field,
an empty file.

JSON is read by `datasets` (pyarrow) when it can. When it cannot (a malformed line, a byte-order
mark, a lone surrogate escape) the file is parsed line by line in Python to name the bad line; with
`skip_bad` the good lines are written to a temporary file and handed back to `datasets`, so they get
the same columns the fast path would give.
"""

from __future__ import annotations

import codecs
import json
import os
import re
import tempfile
from array import array
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
    unreadable: Counter = field(default_factory=Counter)  # lines dropped while loading the files
    first_skipped: dict = field(default_factory=dict)  # reason -> "file:line: detail"

    def describe(self) -> str:
        text = f"{self.kept} of {self.read} records read kept"
        if self.skipped:
            reasons = ", ".join(f"{n} {r}" for r, n in self.skipped.most_common())
            text += f"; skipped {sum(self.skipped.values())} bad ({reasons})"
        if self.unreadable:
            reasons = ", ".join(f"{n} {r}" for r, n in self.unreadable.most_common())
            text += f"; {sum(self.unreadable.values())} unreadable lines skipped on load ({reasons})"
        return text

    def note(self, reason: str, where: str, counter: Counter | None = None) -> None:
        (self.skipped if counter is None else counter)[reason] += 1
        self.first_skipped.setdefault(reason, where)


@dataclass
class Part:
    """One file of a source, loaded as a `datasets.Dataset`, and where each record came from."""

    path: str
    dataset: object  # datasets.Dataset
    unit: str = "record"  # "line": `locs` are line numbers; "record": positions in the file
    locs: list[int] | array | tuple | None = None  # None: not computed yet; (): positions

    def where(self, i: int) -> str:
        if self.locs is None:
            self.unit, self.locs = _locations(self)
        loc = self.locs[i] if self.locs else i
        return f"{self.path}:{loc}" if self.unit == "line" else f"{self.path} record {loc}"


@dataclass
class Source:
    name: str
    format: str
    parts: list[Part]
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
                return p.where(index)
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
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)  # we report load errors ourselves
    if fmt is not None and fmt not in FORMATS:
        raise WorkbenchError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    path = Path(spec).expanduser()
    summary = Summary()
    is_hub = not path.exists() and path.suffix.lower() not in BUILDERS and \
        not spec.startswith((".", "/", "~")) and bool(_HUB_NAME.match(spec))
    if split is not None and not is_hub:
        raise WorkbenchError("--split only applies to hub datasets; a local file is one split")
    if path.is_dir() and (path / "state.json").is_file() and (path / "dataset_info.json").is_file():
        parts = [_load_saved(path)]  # a folder written by Dataset.save_to_disk
    elif path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in BUILDERS
                       and not any(part.startswith(".") for part in p.relative_to(path).parts))
        if not files:
            raise WorkbenchError(f"{spec}: folder has no data files ({', '.join(BUILDERS)})")
        parts = [_load_file(p, skip_bad, summary) for p in files]
    elif path.is_file():
        parts = [_load_file(path, skip_bad, summary)]
    elif is_hub:
        parts = [_load_hub(spec, split)]
    else:
        raise WorkbenchError(f"no such file or folder: {spec}")
    parts = [p for p in parts if p is not None]
    if not parts:
        raise WorkbenchError(f"{spec}: no readable records ({summary.describe()}); first: "
                             + "; ".join(summary.first_skipped.values()))
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
    return Source(spec, fmt, parts, summary)


def read_records(src: Source, skip_bad: bool = False, start: int = 0, limit: int | None = None,
                 hint: str = " (format {fmt}; --skip-bad skips such records)"):
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
                raise WorkbenchError(where + hint.format(fmt=src.format)) from None
            src.summary.note(e.reason, where)
            continue
        src.summary.kept += 1
        kept += 1
        yield index, record


def read_record(src: Source, index: int) -> dict:
    """The normalised record at `index` (bad records always raise: it was asked for by number)."""
    if not 0 <= index < len(src):
        raise WorkbenchError(f"index {index} is out of range: {src.name} has {len(src)} records")
    return next(read_records(src, start=index, limit=1, hint=f" (format {src.format})"))[1]


def _load_file(path: Path, skip_bad: bool, summary: Summary) -> Part | None:
    """Load one file. None: with `skip_bad`, a JSON file none of whose lines could be read."""
    from datasets import load_dataset

    builder = BUILDERS.get(path.suffix.lower())
    if builder is None:
        raise WorkbenchError(f"{path}: unsupported file type; use one of {', '.join(BUILDERS)}")
    try:
        size = path.stat().st_size
        if size == 0 or (size < 1 << 20 and builder in ("json", "text", "csv")
                         and not path.read_bytes().lstrip(codecs.BOM_UTF8).strip()):
            raise WorkbenchError(f"{path}: file is empty")
    except OSError as e:
        raise WorkbenchError(f"{path}: cannot read: {e.strerror}") from None
    if builder in ("json", "text", "csv"):
        problem = _utf8_problem(path)  # pyarrow would only fail later, when the row is read
        if problem:
            raise WorkbenchError(f"{path}: {problem}")
    try:
        ds = load_dataset(builder, data_files=str(path), split="train", **_builder_options(builder, path))
        part = Part(str(path), ds, "record" if builder != "json" else "line")
    except WorkbenchError:
        raise
    except Exception as e:
        if builder == "parquet" and _parquet_rows(path) == 0:
            raise WorkbenchError(f"{path}: no records") from None
        if builder != "json":
            cause = e.__cause__ or e.__context__ or e
            raise WorkbenchError(f"{path}: cannot be read as {builder}: {str(cause)[:300]}") from None
        part = _load_json_slowly(path, skip_bad, summary)  # pyarrow says little: find the line
        if part is None:
            return None
    if len(part.dataset) == 0:
        raise WorkbenchError(f"{path}: no records")
    return part


def _parquet_rows(path: Path) -> int | None:
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path).metadata.num_rows
    except Exception:
        return None


def _builder_options(builder: str, path: Path) -> dict:
    if builder == "text":
        return {"sample_by": "document", "encoding": "utf-8-sig"}  # a .txt file is one document
    if builder == "csv":  # every column a string: "2" stays "2", an empty cell stays ""
        import csv

        from datasets import Features, Value

        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f)
            header = next(reader, [])
            for row in reader:  # pandas would silently shift a row with extra fields
                if row and len(row) != len(header):
                    raise WorkbenchError(f"{path}:{reader.line_num}: {len(row)} fields, but the header "
                                         f"has {len(header)} ({', '.join(header)})")
        return {"features": Features({c: Value("string") for c in header}), "keep_default_na": False,
                "encoding": "utf-8-sig"}
    return {}


def _load_saved(path: Path) -> Part:
    from datasets import load_from_disk

    try:
        ds = load_from_disk(str(path))
    except Exception as e:
        raise WorkbenchError(f"{path}: cannot be read as a saved dataset: {str(e)[:300]}") from None
    if not hasattr(ds, "column_names") or isinstance(ds.column_names, dict):
        raise WorkbenchError(f"{path}: holds several splits ({', '.join(ds)}); pass one split's folder")
    return Part(str(path), ds)


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


def _load_json_slowly(path: Path, skip_bad: bool, summary: Summary) -> Part | None:
    """Parse JSON lines (or one JSON array) in Python to say exactly which line is wrong."""
    from datasets import load_dataset

    text = path.read_text(encoding="utf-8-sig")
    items = None
    if path.suffix.lower() == ".json" and text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as e:
            if e.msg != "Extra data":  # "Extra data": JSON lines whose first line is an array
                raise WorkbenchError(f"{path}:{e.lineno}: malformed JSON: {e.msg} (column {e.colno})") from None
    if isinstance(items, list):
        unit, numbered = "record", list(enumerate(items))
    else:
        unit, numbered = "line", []
        for lineno, line in enumerate(text.split("\n"), 1):  # not splitlines: U+2028 is legal in JSON
            if line.strip():
                try:
                    numbered.append((lineno, json.loads(line, strict=False)))  # as lenient as pyarrow
                except json.JSONDecodeError as e:
                    _bad(path, unit, lineno, f"malformed JSON: {e.msg} (column {e.colno})",
                         "malformed JSON", skip_bad, summary)
    good, locs = [], []
    for loc, item in numbered:
        if not isinstance(item, dict):
            _bad(path, unit, loc, f"expected a JSON object, got {type(item).__name__}",
                 "not a JSON object", skip_bad, summary)
            continue
        try:
            good.append(json.dumps(item, ensure_ascii=False).encode("utf-8"))
        except UnicodeEncodeError:
            _bad(path, unit, loc, "a string holds a lone surrogate escape (such as \\ud800), not valid Unicode",
                 "invalid Unicode", skip_bad, summary)
            continue
        locs.append(loc)
    if not good:
        if skip_bad and unit == "line":
            return None  # every line unreadable: counted in the summary, the file contributes nothing
        raise WorkbenchError(f"{path}: no records")
    with tempfile.TemporaryDirectory() as tmp:  # datasets copies it into its arrow cache
        clean = Path(tmp) / (path.stem + ".jsonl")
        clean.write_bytes(b"\n".join(good) + b"\n")
        try:
            ds = load_dataset("json", data_files=str(clean), split="train")
        except Exception as e:
            cause = e.__cause__ or e.__context__ or e
            raise WorkbenchError(f"{path}: cannot be read as JSON records: {str(cause)[:300]}") from None
    return Part(str(path), ds, unit, locs)


def _bad(path: Path, unit: str, loc: int, detail: str, reason: str, skip_bad: bool, summary: Summary):
    where = f"{path}:{loc}" if unit == "line" else f"{path} record {loc}"
    if not skip_bad:
        raise WorkbenchError(f"{where}: {detail} (--skip-bad skips such lines)")
    summary.note(reason, f"{where}: {detail}", summary.unreadable)


def _locations(part: Part) -> tuple[str, array | tuple]:
    """Line numbers of a JSON-lines file read by pyarrow: one record per non-blank line.

    Computed once, on first use. A file that is not one object per line (pretty-printed JSON,
    two objects on a line, an array) gets record positions instead of wrong line numbers.
    """
    if part.unit != "line":
        return "record", ()
    lines = array("q")
    with open(part.path, "rb") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                lines.append(lineno)
    with open(part.path, "rb") as f:
        first = f.read(64).lstrip(codecs.BOM_UTF8).lstrip()
    if len(lines) != len(part.dataset) or first.startswith(b"["):
        return "record", ()
    return "line", lines


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
