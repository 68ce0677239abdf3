"""Opening a 100,000-record chat file in the TUI's Data pane: first screen, peak memory, re-render time.

    python bench/tui_open_data.py                 # prints a table (about a minute on a 2-core CPU)
    python bench/tui_open_data.py --records 20000
    from tui_open_data import measure; measure()  # the same figures as a dict (bench/tui_overhead.py)

1. The file: 100,000 ultrachat-like records (prompt, prompt_id, messages), each 2-3 user/assistant
   exchanges drawn deterministically (seeded) from LIMA's conversations (../shared/data/chat_lima.jsonl),
   about 1-2k tokens a record, ~600 MB; without the shared data, from sample_data/chat.jsonl (shorter).
   Written once under the temp folder and reused while it has the expected size.
2. In a fresh process (so that peak memory is this and nothing else): the real WorkbenchApp under
   `run_test(size=(120, 40))`, launched on the file as `workbench tui FILE` would be. Timed from just
   before the App is built (imports done) to the first screen the terminal receives on which the
   example list shows rows, then to the first screen with their token counts; the same for the
   350-line sample_data/chat.jsonl, to show what the App costs anyway. Also: records indexed and
   rows tokenized by then, time to index the whole file, peak RSS (ru_maxrss).
3. Re-render: LIMA's longest chat (3,567 tokens with cl100k_base) on screen at 200x60; the mode is
   changed (all -> last -> every, 3 rounds); the figure is the median time from the change to the
   next screen the terminal receives, and the pane's own share (encode + lay out, synchronous).
Not a test: the figures go to docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIMA = ROOT.parent / "shared" / "data" / "chat_lima.jsonl"
SAMPLE = ROOT / "sample_data" / "chat.jsonl"


# ------------------------------------------------------------------------------ the file
def make_file(records: int = 100_000, folder: str | None = None) -> Path:
    """A deterministic ultrachat-like file (cached: rebuilt only when missing or of another size)."""
    source = LIMA if LIMA.is_file() else SAMPLE
    out = Path(folder or tempfile.gettempdir()) / f"workbench-bench-ultrachat-{records}-{source.stem}.jsonl"
    stamp = out.with_suffix(".size")
    if out.is_file() and stamp.is_file() and stamp.read_text().strip() == str(out.stat().st_size):
        return out
    import hashlib

    pairs = []  # (user, assistant) exchanges of the source chats
    for line in source.read_text(encoding="utf-8").splitlines():
        msgs = [m for m in json.loads(line)["messages"] if m["role"] in ("user", "assistant")]
        pairs += [(u["content"], a["content"]) for u, a in zip(msgs[::2], msgs[1::2])
                  if u["role"] == "user" and a["role"] == "assistant"]
    rng = random.Random(0)
    tmp = out.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for _ in range(records):
            turns = rng.sample(pairs, rng.randint(2, 3))
            messages = [m for u, a in turns for m in ({"role": "user", "content": u},
                                                      {"role": "assistant", "content": a})]
            prompt = messages[0]["content"]
            f.write(json.dumps({"prompt": prompt, "prompt_id": hashlib.sha256(prompt.encode()).hexdigest(),
                                "messages": messages}, ensure_ascii=False) + "\n")
    os.replace(tmp, out)
    stamp.write_text(str(out.stat().st_size))
    return out


# ------------------------------------------------------------------------------ in the child process
async def _open(path: str, size=(120, 40)) -> dict:
    from app.app import Launch, WorkbenchApp
    from app.widgets.example_list import ExampleList

    start = time.perf_counter()
    app = WorkbenchApp(Launch(data=path, pane="data", runs_root=tempfile.mkdtemp()))
    seen: dict = {}
    display = app._display

    def spy(screen, renderable):  # each screen the terminal receives
        display(screen, renderable)
        now = time.perf_counter() - start
        try:
            examples = app.query_one(ExampleList)
        except Exception:
            return
        rows = examples._window[1] if examples._window else []
        if rows:
            seen.setdefault("first screen with rows (s)", now)
            pane = app.query_one("#data-pane")
            seen.setdefault("records indexed by then", len(pane.browser))
            if rows[0].tokens is not None:
                seen.setdefault("first screen with token counts (s)", now)
                seen.setdefault("rows tokenized by then", pane.browser.rows_tokenized)

    app._display = spy
    async with app.run_test(size=size):
        pane = app.query_one("#data-pane")
        while "first screen with token counts (s)" not in seen or pane.browser is None or not pane.browser.complete:
            await asyncio.sleep(0.01)
            if time.perf_counter() - start > 300:
                break
        seen["whole file indexed (s)"] = time.perf_counter() - start
        seen["records"] = len(pane.browser)
    return seen


async def _rerender(path: str, index: int) -> dict:
    from app.app import Launch, WorkbenchApp
    from app.widgets.example_list import ExampleList
    from app.widgets.example_view import ExampleView

    app = WorkbenchApp(Launch(data=path, pane="data", runs_root=tempfile.mkdtemp()))
    shown: list[float] = []
    display = app._display
    app._display = lambda screen, renderable: (display(screen, renderable), shown.append(time.perf_counter()))
    async with app.run_test(size=(200, 60)) as pilot:
        pane = app.query_one("#data-pane")
        while pane.tok is None or pane.browser is None or not pane.browser.validated:
            await pilot.pause(0.05)
        app.query_one(ExampleList).cursor = index
        await pilot.pause(0.5)
        tokens = len(app.query_one(ExampleView).example.rendered)
        screen = []
        for mode in ("last", "every", "all") * 3:
            shown.clear()
            t = time.perf_counter()
            pane.action_mode(mode)  # as the mode select does: its Changed message, then the pane
            while pane.encoding.mode != mode:  # the pane has re-encoded and laid out the example
                await asyncio.sleep(0)
            done = time.perf_counter()
            while not shown or shown[-1] < done:  # then the next screen the terminal receives
                await asyncio.sleep(0.001)
            screen.append(shown[-1] - t)
            await pilot.pause(0.3)
    return {"tokens": tokens, "to screen (ms)": statistics.median(screen) * 1000,
            "pane's own share (ms)": _own_share(path, index)}


def _own_share(path: str, index: int) -> float:
    """encode_records + token pieces + layout of the example, as ExampleView.show does, median ms."""
    from app.widgets.token_view import TokenView
    from workbench.data.browse import Encoding, open_browser
    from workbench.inspector import token_pieces, turn_table
    from workbench.tokenizer import load_tokenizer

    tok, b = load_tokenizer(), open_browser(path)
    view = TokenView()
    times = []
    for mode in ("last", "every", "all") * 3:
        t = time.perf_counter()
        r = b.example(index, Encoding(tok, mode)).rendered
        view._pieces, view.start, view.end = token_pieces(tok, r), 0, len(r)
        view._layout()
        turn_table(r)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def _child(what: str, path: str, index: int) -> None:
    import resource

    sys.path.insert(0, str(ROOT))
    out = asyncio.run(_open(path) if what == "open" else _rerender(path, index))
    out["peak RSS (MB)"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))


def _run_child(what: str, path: Path, index: int = 0) -> dict:
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, __file__, "--child", what, str(path), "--index", str(index)],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} {path} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def longest(path: Path) -> int:
    """The index of the record with the most tokens (cl100k_base)."""
    from workbench.data.browse import Encoding, open_browser
    from workbench.tokenizer import load_tokenizer

    b = open_browser(str(path))
    while not b.index_more():
        pass
    rows = b.rows(range(len(b)), Encoding(load_tokenizer()))
    return max(rows, key=lambda r: r.tokens or 0).index


# ------------------------------------------------------------------------------ the figures
def measure(records: int = 100_000, folder: str | None = None) -> dict:
    t = time.perf_counter()
    path = make_file(records, folder)
    made = time.perf_counter() - t
    big = _run_child("open", path)
    small = _run_child("open", SAMPLE)
    out = {"file": f"{path.name}: {big['records']:,} records, {path.stat().st_size / 1e6:,.0f} MB"
                   + (f" (written in {made:.1f} s)" if made > 1 else ""),
           "first screen with rows (s)": round(big["first screen with rows (s)"], 2),
           "first screen with token counts (s)": round(big["first screen with token counts (s)"], 2),
           "same, sample_data/chat.jsonl (s)": f"{small['first screen with rows (s)']:.2f} / "
                                               f"{small['first screen with token counts (s)']:.2f}",
           "records indexed at the first screen": big["records indexed by then"],
           "rows tokenized at the first screen": big["rows tokenized by then"],
           "whole file indexed (s)": round(big["whole file indexed (s)"], 2),
           "peak RSS (MB)": round(big["peak RSS (MB)"]),
           "peak RSS, sample_data/chat.jsonl (MB)": round(small["peak RSS (MB)"])}
    if LIMA.is_file():
        r = _run_child("rerender", LIMA, longest(LIMA))
        out[f"mode change, {r['tokens']:,}-token LIMA chat: to screen (ms)"] = round(r["to screen (ms)"])
        out[f"mode change, {r['tokens']:,}-token LIMA chat: encode + layout (ms)"] = round(r["pane's own share (ms)"], 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--dir", default=None, help="where to write the generated file (default: the temp folder)")
    ap.add_argument("--child", nargs=2, metavar=("WHAT", "PATH"), help=argparse.SUPPRESS)
    ap.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args.child[0], args.child[1], args.index)
        return
    results = measure(args.records, args.dir)
    width = max(map(len, results))
    for k, v in results.items():
        print(f"{k:<{width}}  {v}")


if __name__ == "__main__":
    main()
