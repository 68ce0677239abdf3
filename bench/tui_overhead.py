"""What the TUI costs a run: tokens/s inside the TUI vs headless, keypress latency while training, opening
a 100,000-record chat file. Results go in docs/BENCHMARKS.md ("The TUI").

    python bench/tui_overhead.py                   # all three (about 3 min on a 2-core CPU)
    python bench/tui_overhead.py --steps 300       # longer runs: steadier tokens/s
    python bench/tui_overhead.py --skip-open       # without the 100k-record file

1. Throughput. The same tiny pretrain run (the `tiny` preset, a 2,048-token BPE trained on sample_data,
   seq_len 256, batch 8) twice each way, alternated: headless `workbench train pretrain` in a child process,
   and inside the real TUI in a real terminal (tmux, 120x36): `--serve` starts `workbench tui` whose Train pane
   runs the config in its thread worker while the Monitor pane, on screen, draws the live charts. Figure: the
   median tokens/s of the steps after the first 10, TUI / headless.
2. Latency. The same TUI run, in tmux; every ~150 ms one key is sent with `tmux send-keys` (typing into the
   Data pane's search box, and toggling the Monitor's log-y axis, which redraws every chart) and `tmux
   capture-pane` is polled until the screen shows it: keypress-to-screen through a real terminal, p50/p95/max.
   The toggle is timed twice: until its label changes, and until every chart on screen is redrawn.
   (capture-pane polling adds ~2-5 ms per poll: the figures are upper bounds.)
3. Opening a 100,000-record ultrachat-like file in the Data pane (bench/tui_open_data.py): first screen, peak memory.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_data"
PY = sys.executable
SIZE = (120, 36)


def overrides(tok: str, steps: int) -> list[str]:
    return [f"tokenizer={tok}", f"data={SAMPLE / 'text.jsonl'}", f"max_steps={steps}", "seq_len=256", "batch_size=8",
            "eval_every=0", "save_every=0", "tensorboard=false", "warmup_steps=5"]


def steady_tokens_per_s(run_dir: Path, skip: int = 10) -> float:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    speeds = [r["tokens_per_s"] for r in rows if r.get("event") == "train" and r["step"] > skip]
    return statistics.median(speeds)


def headless(tok: str, steps: int, out: Path) -> float:
    subprocess.run([PY, "-m", "workbench.cli", "train", "pretrain", "--out", str(out), *overrides(tok, steps)],
                   check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return steady_tokens_per_s(out)


# ------------------------------------------------------------------ the TUI side, in a real terminal
def serve(run_dir: str, tok: str, steps: int, keep_open: bool) -> None:
    """Inside tmux: the real app; the Train pane starts the run on mount; the Monitor shows it."""
    from app.app import WorkbenchApp, plan_launch
    from workbench.train.config import load_config

    cfg = load_config("pretrain", None, overrides(tok, steps))

    class Bench(WorkbenchApp):
        def on_mount(self) -> None:
            self.call_after_refresh(self._go)

        def _go(self) -> None:
            job = self.query_one("#train-pane").start_run(cfg, run_dir)
            self.run_worker(self._wait(job), group="bench")

        async def _wait(self, job) -> None:
            await job.wait_async()
            Path(run_dir, "bench-done").write_text(job.status or "")
            if not keep_open:
                self.exit()

    Bench(plan_launch([], runs_root=str(Path(run_dir).parent))).run()


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], check=True, capture_output=True, text=True).stdout


def start_tui(name: str, run_dir: Path, tok: str, steps: int, keep_open: bool = False) -> None:
    cmd = (f"cd {ROOT} && {PY} {Path(__file__).resolve()} --serve {run_dir} --tok {tok} --steps {steps}"
           " || sleep 5")  # (Textual draws on stderr: not redirected)
    if keep_open:
        cmd += " --keep-open"
    tmux("new-session", "-d", "-s", name, "-x", str(SIZE[0]), "-y", str(SIZE[1]), cmd)


def wait_file(path: Path, timeout: float, session: str | None = None) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        if session and subprocess.run(["tmux", "has-session", "-t", session], capture_output=True).returncode:
            raise RuntimeError(f"the TUI in tmux session {session} ended before {path} appeared")
        if time.monotonic() > end:
            raise TimeoutError(f"{path} did not appear in {timeout:.0f} s")
        time.sleep(0.2)


def in_tui(tok: str, steps: int, out: Path) -> float:
    name = f"bench-{os.getpid()}-{out.name}"
    start_tui(name, out, tok, steps)
    try:
        wait_file(out / "bench-done", 600, name)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True)
    return steady_tokens_per_s(out)


def latency(tok: str, out: Path, presses: int = 40) -> dict:
    """Keys sent into the running TUI while it trains; time until capture-pane shows their effect."""
    name = f"bench-lat-{os.getpid()}"
    start_tui(name, out, tok, 100000, keep_open=True)
    results = {}
    try:
        wait_file(out / "metrics.jsonl", 120, name)
        time.sleep(3)  # past the first steps (the first AdamW step imports lazily)
        # a) typing into the Data pane's search box
        tmux("send-keys", "-t", name, "1")
        time.sleep(0.5)
        tmux("send-keys", "-t", name, "/")  # focus the search box
        time.sleep(0.5)
        results["type in Data search"] = _typing(name, presses)
        tmux("send-keys", "-t", name, "Escape")  # clears the search,
        time.sleep(0.3)
        tmux("send-keys", "-t", name, "Escape")  # then back to the list (a digit would go into the box)
        time.sleep(0.3)
        # b) a Monitor toggle that redraws every chart
        tmux("send-keys", "-t", name, "3")
        time.sleep(1.0)
        labels, charts = _toggling(name, presses // 2)
        results["toggle Monitor log-y: the label"] = labels
        results["toggle Monitor log-y: every chart on screen redrawn"] = charts
        results["steps during the measurement"] = _steps(out)
    finally:
        subprocess.run(["tmux", "send-keys", "-t", name, "C-q"], capture_output=True)
        time.sleep(1)
        subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True)
    return results


def _press(name: str, key: str, *conditions, timeout: float = 5.0) -> list[float]:
    """ms from sending `key` until the captured screen satisfies each condition (in turn)."""
    t0 = time.perf_counter()
    tmux("send-keys", "-t", name, key)
    out = []
    for changed in conditions:
        while time.perf_counter() - t0 < timeout and not changed(tmux("capture-pane", "-p", "-t", name)):
            pass
        out.append((time.perf_counter() - t0) * 1000)
    return out


def _typing(name: str, presses: int) -> list[float]:
    out = []
    for _ in range(presses):
        before = tmux("capture-pane", "-p", "-t", name).count("q")
        out += _press(name, "q", lambda s: s.count("q") > before)
        time.sleep(0.15)
    return out


def _toggling(name: str, presses: int) -> tuple[list[float], list[float]]:
    """The log-y toggle `l`: first its label in the options line, then every chart on screen redrawn
    (each chart's title carries a "log-y" tag while the axis is logarithmic)."""
    labels, charts = [], []
    for i in range(presses):
        on = i % 2 == 0  # what this press turns log-y into
        label = "log-y on" if on else "log-y off"
        drawn = (lambda s: _log_tags(s) >= 2) if on else (lambda s: _log_tags(s) == 0)
        a, b = _press(name, "l", lambda s: label in s, drawn)
        labels.append(a)
        charts.append(b)
        time.sleep(0.3)
    return labels, charts


def _log_tags(screen: str) -> int:
    """Chart titles tagged "log-y" (the options line says "log-y on/off": not counted)."""
    return sum(line.count("log-y") for line in screen.splitlines() if "log-y on" not in line and "log-y off" not in line)


def _steps(out: Path) -> int:
    return sum(1 for line in (out / "metrics.jsonl").read_text().splitlines() if '"event": "train"' in line)


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--skip-open", action="store_true")
    ap.add_argument("--only-latency", action="store_true", help="just part 2")
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    ap.add_argument("--tok", help=argparse.SUPPRESS)
    ap.add_argument("--keep-open", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args.serve, args.tok, args.steps, args.keep_open)
        return
    if not shutil.which("tmux"):
        sys.exit("tmux is needed (apt-get install tmux): the TUI runs in a real terminal")
    work = Path(tempfile.mkdtemp(prefix="tui-bench-"))
    from workbench.tokenizer_train import train_tokenizer

    tok = work / "tok.tiktoken"
    train_tokenizer([str(SAMPLE / "text.jsonl")], 2048, tok, held_out=0.0)
    rows = []
    for i in (() if args.only_latency else (1, 2)):
        h = headless(str(tok), args.steps, work / f"headless-{i}")
        t = in_tui(str(tok), args.steps, work / f"tui-{i}")
        rows.append((h, t))
        print(f"round {i}: headless {h:,.0f} tok/s, TUI {t:,.0f} tok/s, ratio {t / h:.3f}", flush=True)
    if rows:
        h = statistics.median(x for x, _ in rows)
        t = statistics.median(y for _, y in rows)
        print(f"\nthroughput: TUI / headless = {t / h:.3f} (median of {len(rows)} rounds; goal >= 0.90)")
    lat = latency(str(tok), work / "latency")
    for what, values in lat.items():
        if isinstance(values, list):
            print(f"latency, {what}: p50 {pct(values, .5):.0f} ms, p95 {pct(values, .95):.0f} ms, "
                  f"max {max(values):.0f} ms over {len(values)} keys (goal p95 < 100 ms)")
    print(f"training steps completed while the keys were measured: {lat['steps during the measurement']}")
    if not args.skip_open and not args.only_latency:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from tui_open_data import measure

        for k, v in measure().items():
            print(f"open data: {k}: {v}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
