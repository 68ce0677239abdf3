"""What a person is shown of a record, and what they type about it (the Data pane's decisions).

    message_sections(record, kind)   # the raw messages, by part (prompt / chosen / rejected)
    first_line(record, kind)         # the example list's "first user line"
    token_info(tok, rendered, i)     # the token under the cursor: id, text, role, part, label
    parse_max_len("2048")            # a typed max length (WorkbenchError naming the problem)
    complete_path("sample_da")       # path completion; display_path: relative when inside cwd
    short_location(where, path)      # file:line without the folders the path field already shows
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from workbench.chat import Rendered
from workbench.data.loading import BUILDERS
from workbench.errors import WorkbenchError
from workbench.inspector import printable
from workbench.tokenizer import Tokenizer


@dataclass(frozen=True)
class TokenInfo:
    """The token under the cursor: position, id, text, where it came from and its label."""

    index: int
    id: int
    text: str
    role: str
    message: int
    part: str
    label: int
    special: bool

    @property
    def trained(self) -> bool:
        return self.label != -100

    @property
    def shown(self) -> str:
        return printable(repr(self.text))


def message_sections(record: dict, kind: str) -> list[tuple[str, list[dict]]]:
    """The raw messages of a record, by part: [("", messages)] or prompt / chosen / rejected."""
    if kind == "conversation":
        return [("", record["messages"])]
    if kind == "preference":
        return [(name, record[name]) for name in ("prompt", "chosen", "rejected") if record[name]]
    if kind == "prompt":
        return [("prompt", record["prompt"])]
    return [("text", [{"role": "text", "content": record["text"]}])]


def texts(record: dict, kind: str) -> Iterator[str]:
    """Every message text of a record (what search looks in)."""
    for _, msgs in message_sections(record, kind):
        for m in msgs:
            yield m["content"]


def first_line(record: dict, kind: str, width: int = 200) -> str:
    """The first non-empty line of the first user message (of the text, for documents)."""
    msgs = [m for _, part in message_sections(record, kind) for m in part]
    text = next((m["content"] for m in msgs if m["role"] == "user"), msgs[0]["content"] if msgs else "")
    line = next((x.strip() for x in text.splitlines() if x.strip()), "")
    return printable(" ".join(line[:width].split()))


def token_info(tok: Tokenizer, r: Rendered, index: int) -> TokenInfo:
    """What the token at `index` is: id, text, role and part of its message, label."""
    tid = r.input_ids[index]
    span = next((s for s in r.spans if s.start <= index < s.end), None)
    role, message, part = (span.role, span.message, span.part) if span else ("", -1, "")
    return TokenInfo(index, tid, tok.token_str(tid), role, message, part, r.labels[index],
                     tid in tok.special_ids)


def parse_max_len(text: str) -> int | None:
    """A max length typed by a person: empty = no limit, else a whole number of tokens >= 1."""
    text = text.strip().replace("_", "").replace(",", "")
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        raise WorkbenchError(f"max length must be a whole number of tokens, at least 1 (empty: no limit), "
                             f"got {text!r}")
    return int(text)


def display_path(path: str) -> str:
    """A path as short as it can be shown: relative to the working folder when inside it."""
    try:  # abspath, not resolve: a symlinked folder keeps the name it was given
        rel = Path(os.path.abspath(os.path.expanduser(path))).relative_to(os.path.abspath(os.getcwd()))
    except (ValueError, OSError):
        return path
    return str(rel) if str(rel) != "." else path


def short_location(where: str, path: str) -> str:
    """A record's location (`file:line`, `file record N`), or an error that starts with one, without
    the folders above the opened `path`, which the path field shows: a long absolute path would
    fill the lines meant for the line number and the error ("/data/x.jsonl:7" is "x.jsonl:7")."""
    parent = os.path.dirname(os.path.normpath(path))
    prefix = parent.rstrip(os.sep) + os.sep if parent else ""
    return where[len(prefix):] if prefix and where.startswith(prefix) else where


def complete_path(text: str, suffixes: tuple[str, ...] | None = tuple(BUILDERS)) -> str | None:
    """`text` completed with the first entry of its folder that it begins (folders end in /).

    Hidden entries only when asked for (a prefix starting with "."); files only with `suffixes`
    (None: any file). None when nothing completes it."""
    if not text:
        return None
    path = Path(text).expanduser()
    folder, prefix = (path, "") if text.endswith(("/", os.sep)) else (path.parent, path.name)
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name.lower())
    except OSError:
        return None
    for entry in entries:
        if not entry.name.startswith(prefix) or (entry.name.startswith(".") and not prefix.startswith(".")):
            continue
        is_dir = entry.is_dir()
        if not is_dir and suffixes is not None and not entry.name.lower().endswith(suffixes):
            continue
        done = text + entry.name[len(prefix):] + ("/" if is_dir else "")
        if done != text:
            return done
    return None
