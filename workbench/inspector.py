"""The mask inspector: show exactly which tokens of each example are trained.

    workbench inspect sample_data/chat.jsonl --limit 3        # coloured, one panel per example
    workbench inspect sample_data/preference.jsonl --json     # one JSON object per line

It goes through the same `open_source` -> `read_records` -> `encode_records` path as the trainers,
so what it shows is what is trained. JSON contract (one object per example, per line):

    {"index", "source", "kind", "input_ids", "labels", "attention_mask", "tokens",
     "num_tokens", "num_trainable", "truncated", "dropped", "warnings"}

Preference pairs instead carry "prompt_length" and "chosen"/"rejected" objects, each with
input_ids, labels, attention_mask, tokens, num_tokens, num_trainable, truncated.
`tokens[i]` is token i decoded alone (U+FFFD where a token holds part of a UTF-8 character);
labels are -100 where no loss is taken.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from workbench.chat import Rendered, prompt_length
from workbench.data.collate import Example, encode_records
from workbench.data.loading import Source, open_source, read_record, read_records
from workbench.errors import WorkbenchError
from workbench.tokenizer import Tokenizer, load_tokenizer

TRAINED = ("bold green on grey15", "bold green on grey23")
MASKED = ("grey62 on grey7", "grey62 on grey15")
SPECIAL = "bold magenta reverse"
SPECIAL_TRAINED = "bold green reverse"
# Why --mode does not change what is trained in records that are not conversations.
MODE_IGNORED = {"preference": "their response is trained and their prompt is not",
                "prompt": "nothing in a prompt is trained", "text": "every token of a text is trained"}


@dataclass
class InspectOptions:
    data: str
    format: str | None = None
    tokenizer: str | None = None
    mode: str = "all"
    max_len: int | None = None
    index: int | None = None
    limit: int | None = 5
    skip_bad: bool = False
    split: str | None = None
    as_json: bool = False


def inspect(opts: InspectOptions, out: Console, err: Console) -> int:
    """Print examples of a source; return the number shown. Every record bad: WorkbenchError."""
    tok = load_tokenizer(opts.tokenizer)
    src = open_source(opts.data, opts.format, opts.split, skip_bad=opts.skip_bad)
    if src.kind != "conversation" and opts.mode != "all":
        raise WorkbenchError(f"--mode {opts.mode} applies to conversations, not {src.kind} records: "
                             f"{MODE_IGNORED[src.kind]}, whatever the mode")
    if opts.index is not None:
        pairs = [(opts.index, read_record(src, opts.index))]
    else:
        pairs = list(read_records(src, skip_bad=opts.skip_bad, limit=opts.limit))
    if not pairs:
        firsts = "".join(f"\n  first {r}: {w}" for r, w in src.summary.first_skipped.items())
        raise WorkbenchError(f"no usable records in {opts.data} ({src.summary.describe()}){firsts}")
    indices, records = zip(*pairs)
    examples = encode_records(tok, src.kind, list(records), list(indices), opts.mode, opts.max_len)
    for ex in examples:
        if opts.as_json:
            out.file.write(json.dumps(example_json(tok, src, ex), ensure_ascii=False) + "\n")
        else:
            out.print(example_panel(tok, src, ex, plain=out.color_system is None))
    if not opts.as_json:
        out.print(_legend(plain=out.color_system is None))
    dropped = sum(ex.dropped for ex in examples)
    note = f"{len(examples)} shown" + (f", {dropped} dropped" if dropped else "")
    if src.summary.skipped or src.summary.unreadable or dropped:
        err.print(Text(f"{note}; {src.summary.describe()}", style="yellow"), soft_wrap=True)
        for reason, where in src.summary.first_skipped.items():
            err.print(Text(f"  first {reason}: {printable(where)}"), soft_wrap=True)
    return len(examples)


def rendered_json(tok: Tokenizer, r: Rendered) -> dict:
    return {"input_ids": r.input_ids, "labels": r.labels, "attention_mask": [1] * len(r),
            "tokens": [tok.token_str(t) for t in r.input_ids], "num_tokens": len(r),
            "num_trainable": r.num_trainable, "truncated": r.truncated}


def example_json(tok: Tokenizer, src: Source, ex: Example) -> dict:
    head = {"index": ex.index, "source": src.locate(ex.index), "kind": ex.kind}
    if ex.kind == "preference":
        body = {"prompt_length": prompt_length(ex.chosen), "chosen": rendered_json(tok, ex.chosen),
                "rejected": rendered_json(tok, ex.rejected)}
    else:
        body = rendered_json(tok, ex.rendered)
    return {**head, **body, "dropped": ex.dropped, "warnings": ex.warnings}


def example_panel(tok: Tokenizer, src: Source, ex: Example, plain: bool = False) -> Panel:
    """One example. `plain` (no colours: output to a file or pipe): trained runs go in «…»."""
    parts: list = []
    if ex.kind == "preference":
        p = prompt_length(ex.chosen)
        parts += [Text("prompt", style="bold"), token_text(tok, ex.chosen, 0, p, plain)]
        for name, half in (("chosen", ex.chosen), ("rejected", ex.rejected)):
            parts += [Text(f"{name}: {half.num_trainable} trained of {len(half) - p} response tokens",
                           style="bold"), token_text(tok, half, p, len(half), plain)]
        counts = f"{len(ex.chosen)}/{len(ex.rejected)} tokens"
    else:
        r = ex.rendered
        parts += [token_text(tok, r, plain=plain), turn_table(r)]
        counts = f"{len(r)} tokens · {r.num_trainable} trained · {len(r) - r.num_trainable} masked"
    for w in ex.warnings:
        parts.append(Text(f"⚠ {w}", style="bold yellow"))
    return Panel(Group(*parts), title=Text(f"#{ex.index} · {printable(src.locate(ex.index))}"),
                 title_align="left", subtitle=Text(f"{ex.kind} · {counts}"), subtitle_align="right",
                 border_style="red" if ex.dropped else "blue")


def token_pieces(tok: Tokenizer, r: Rendered, start: int = 0, end: int | None = None,
                 boundaries: bool = True) -> list[tuple[str, str, int]]:
    """(text, style, token index) for each token of [start, end), as `token_text` shows them: trained
    in green, masked dim, specials reversed (a trained one followed by a "✓" piece), newlines as ↵.
    Shades alternate to mark token boundaries; `boundaries=False` gives each kind one shade."""
    pieces = []
    for i in range(start, len(r) if end is None else end):
        tid = r.input_ids[i]
        trained = r.labels[i] != -100
        piece = printable(tok.token_str(tid).replace("\n", "↵\n").replace("\t", "→\t"))
        if tid in tok.special_ids:
            pieces.append((piece, SPECIAL_TRAINED if trained else SPECIAL, i))
            if trained:
                pieces.append(("✓", "bold green", i))
        else:
            pieces.append((piece, (TRAINED if trained else MASKED)[i % 2 if boundaries else 0], i))
    return pieces


def token_text(tok: Tokenizer, r: Rendered, start: int = 0, end: int | None = None,
               plain: bool = False) -> Text:
    """Tokens as text: trained in green, masked dim; shades alternate to show token boundaries.
    Without colours, each run of trained tokens is wrapped in « »."""
    text = Text()
    inside = False
    for piece, style, i in token_pieces(tok, r, start, end):
        trained = r.labels[i] != -100
        if plain and trained != inside:
            text.append("«" if trained else "»")
            inside = trained
        text.append(piece, style=style)
    if inside:
        text.append("»")
    return text


# C0/C1 control characters (ESC starts terminal escape sequences) shown as visible symbols.
_CONTROL = {c: chr(0x2400 + c) for c in range(0x20) if chr(c) not in "\n\t"}
_CONTROL.update({0x7F: "␡"} | {c: f"\\x{c:02x}" for c in range(0x80, 0xA0)})


def printable(text: str) -> str:
    """Text safe to print on a terminal: control characters become visible symbols (␛ for ESC)."""
    return text.translate(_CONTROL)


def turn_table(r: Rendered) -> Table:
    """Per message: tokens, trained, masked."""
    rows: dict = defaultdict(lambda: [0, 0])
    roles: dict = {}
    for s in r.spans:
        key = s.message if s.part != "gen_prompt" else "gen"
        roles[key] = s.role if s.part != "gen_prompt" else "generation prompt"
        rows[key][0 if s.trainable else 1] += s.end - s.start
    table = Table(box=None, padding=(0, 2), show_header=True, header_style="dim")
    for col in ("turn", "role", "tokens", "trained", "masked"):
        table.add_column(col, justify="right" if col in ("tokens", "trained", "masked") else "left")
    for key, (trained, masked) in rows.items():
        label = "-" if key in (-1, "gen") else str(key)
        table.add_row(label, Text(roles[key]), str(trained + masked), str(trained), str(masked))
    return table


def _legend(plain: bool = False) -> Text:
    if plain:
        return Text("legend: «trained tokens» (no colours: output is not a terminal; --json lists every "
                    "token) · <|special|>✓ = trained special · ↵ newline")
    t = Text("legend: ", style="dim")
    t.append("trained", style=TRAINED[0]).append(" ")
    t.append("masked", style=MASKED[0]).append(" ")
    t.append("<|special|>", style=SPECIAL).append(" ")
    t.append("<|trained special|>", style=SPECIAL_TRAINED).append("✓", style="bold green")
    t.append(" · ↵ newline · alternating shades mark token boundaries", style="dim")
    return t
