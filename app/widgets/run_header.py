"""One line per followed run for the Monitor's header: colour key, name, stage, progress, ETA, speed.

    run_lines(runs, colors, width=80)  ->  ● sft  sft  ━━━━━━━━━━──── 48/60 80%  eta 3s  9.6k tok/s  cpu  running

The figures (step, ETA, tokens/s, status) come from workbench.train.follow (RunHeader.merged);
this only lays them out to fit the width (several runs: in aligned columns).
"""

from __future__ import annotations

from rich.text import Text

from app import messages as M
from workbench.train.watch import duration, short_number

STATUS_STYLE = {"running": "bold #2aa876", "finished": "bold #3b8eea", "stopped": "bold #e5a50a",
                "failed": "bold #d9534f", "crashed": "bold #d9534f", "interrupted": "bold #d9534f"}
NAME_MAX = 24


def progress_bar(step: int, total: int | None, width: int) -> Text:
    if not total or width < 1:
        return Text("")
    filled = round(width * min(1.0, step / total))
    return Text.assemble(("━" * filled, "#2aa876"), ("─" * (width - filled), "dim"))


def run_parts(run, color: str) -> tuple[Text, int, int | None, Text]:
    """(head, step, max_steps, tail) of one run's line. `run`: the Monitor's Run."""
    name = run.name if len(run.name) <= NAME_MAX else "…" + run.name[-(NAME_MAX - 1):]
    head = Text.assemble(("● ", color), (name, "bold"))
    if run.header is None and not run.loaded:
        return head, 0, None, Text()  # the first read has not come back yet
    info = run.header.merged(run.history) if run.header else {}
    if not run.history.series and not run.history.start and info.get("status") in (None, "unknown"):
        return head, 0, None, Text("  " + M.MONITOR_WAITING.format(path=run.path / "metrics.jsonl"), style="dim")
    step, total = info.get("step", 0), info.get("max_steps")
    tail = Text()
    tail.append(f" {step}/{total}" if total else f" step {step}")
    if total:
        tail.append(f" {min(100, round(100 * step / total))}%")
    if info.get("eta") is not None:
        tail.append(f"  eta {duration(info['eta'])}")
    if info.get("tokens_per_s"):
        tail.append(f"  {short_number(info['tokens_per_s'])} tok/s")
    if info.get("device"):
        tail.append(f"  {info['device']}")
    status = info.get("status") or "unknown"
    tail.append(f"  {status}", style=STATUS_STYLE.get(status, "dim"))
    if run.history.end and run.history.end.get("error"):
        tail.append(f"  {run.history.end['error']}", style="#d9534f")
    elif run.header and run.header.problem:
        tail.append(f"  {run.header.problem}", style="#d9534f")
    head.append(f"  {info.get('stage') or '?'}  ", style="dim")
    return head, step, total, tail


def run_lines(runs, colors, width: int) -> Text:
    """One line per run, names and bars aligned in columns, each cut to `width` (the content width:
    a line as wide as that would wrap)."""
    parts = [run_parts(run, color) for run, color in zip(runs, colors)]
    head_w = max(h.cell_len for h, _, _, _ in parts)
    # The bar gives way first: the figures and the status at the end of the line must stay visible.
    tail_w = max(t.cell_len for _, _, _, t in parts)
    bar = max(0, min(30, width - 1 - head_w - tail_w))
    if bar < 6:  # too narrow for a useful bar: the figures matter more
        bar = 0
    out = Text()
    for i, (head, step, total, tail) in enumerate(parts):
        head.pad_right(head_w - head.cell_len)
        line = head + progress_bar(step, total, bar) + tail  # no max_steps (yet): no bar
        line.truncate(width - 1, overflow="ellipsis")
        out.append_text(line)
        if i < len(parts) - 1:
            out.append("\n")
    return out
