"""What the TUI costs a run: tokens/s inside the TUI vs headless, keypress latency while training, opening
a 100,000-record chat file, typing into the Playground's probe box. Results go in docs/BENCHMARKS.md ("The TUI").

    python bench/tui_overhead.py                   # all four (about 5 min on a 2-core CPU)
    python bench/tui_overhead.py --steps 300       # longer runs: steadier tokens/s
    python bench/tui_overhead.py --skip-open       # without the 100k-record file
    python bench/tui_overhead.py --only-probe      # just part 4 (about 2 min)

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
4. Typing in the Playground's probe box (app/widgets/probe_view.py) while probes run. Two tiny checkpoints
   (the `tiny` preset, a few pretraining steps: the probe's cost does not depend on the weights), one with the
   2,048-token BPE of part 1 and one with cl100k_base; for each, the real app in tmux, opened on the
   Playground's Probe tab with that checkpoint. A 61-character sentence is typed one key at a time on a fixed
   schedule, every 60 ms (faster than the view's 0.12 s debounce: probes wait for the end) and every 150 ms
   (slower: a probe starts after each key, and the next key arrives while it runs). Figures: keypress until
   the character shows in the input on screen (p50/p95/max; spaces are typed but not timed: a space at the
   end of the text looks the same as none), and the last key until the bars show the whole text's result.
   Every prefix's result is computed here with the same probe_model call, so each set of bars that appears
   on screen is matched to the text it answers: a key "typed during a probe" is one sent after the probe of
   the text before it started (the debounce had fired) and before that probe's bars were drawn.
"""

from __future__ import annotations

import argparse
import json
import os
import re
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


def overrides(tok: str, steps: int, seq_len: int = 256) -> list[str]:
    return [f"tokenizer={tok}", f"data={SAMPLE / 'text.jsonl'}", f"max_steps={steps}", f"seq_len={seq_len}",
            "batch_size=8", "eval_every=0", "save_every=0", "tensorboard=false", "warmup_steps=5"]


def steady_tokens_per_s(run_dir: Path, skip: int = 10) -> float:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    speeds = [r["tokens_per_s"] for r in rows if r.get("event") == "train" and r["step"] > skip]
    return statistics.median(speeds)


def pretrain(out: Path, settings: list[str]) -> Path:
    subprocess.run([PY, "-m", "workbench.cli", "train", "pretrain", "--out", str(out), *settings],
                   check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return out


def headless(tok: str, steps: int, out: Path) -> float:
    return steady_tokens_per_s(pretrain(out, overrides(tok, steps)))


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


# ------------------------------------------------------------------ part 4: typing in the Playground's probe box
PROBE_TEXT = "Jessamore lies within the borders of Saradel, near the quays."  # no run of 12 characters twice
PROBE_PACES_MS = (60, 150)
PROBE_TAIL = 12  # a key shows once the input's visible text ends with the last 12 characters typed
BAR_LINE = re.compile(r"^\s*(\S+)\s.*?\s(\d+\.\d\d)%\s+id (\d+)\s*$")
STATUS_LINE = re.compile(r"(\d+) context tokens · .* · (\d+) ms")


def serve_probe(ckpt: str) -> None:
    """Inside tmux: the real app on the Playground's Probe tab, `ckpt` in its model field (the command
    palette's "Playground: probe" does the same switch)."""
    from app.app import Launch, WorkbenchApp

    class Bench(WorkbenchApp):
        def on_mount(self) -> None:
            super().on_mount()
            self.call_after_refresh(lambda: self.query_one("#playground-pane").action_mode("probe"))

    Bench(Launch(pane="playground", checkpoint=ckpt)).run()


def expected_probes(ckpt: Path, text: str, top_k: int = 10) -> list[tuple[int, tuple, tuple]]:
    """For every prefix of `text`: (context tokens, top ids, top probabilities in %), by the view's own call."""
    from workbench.eval.playground import ModelCache
    from workbench.eval.probe import probe_model

    lm = ModelCache().language_model(str(ckpt))
    out = []
    for i in range(1, len(text) + 1):
        r = probe_model(lm.model, lm.tok, text[:i], top_k=top_k)
        out.append((r["prompt_tokens"], tuple(t["id"] for t in r["top"]), tuple(100 * t["prob"] for t in r["top"])))
    return out


def _probe_screen(screen: str) -> tuple[str, tuple | None]:
    """(the probe box's visible text, the result on screen: (context tokens, ids, probabilities in %, ms) or None)."""
    lines = screen.splitlines()
    row = next(i for i, line in enumerate(lines) if "▐X▌ chat" in line or "▐ ▌ chat" in line)
    box = re.split(r"▐.▌ chat", lines[row])[0]
    status = STATUS_LINE.search(lines[row + 1]) if row + 1 < len(lines) else None
    if not status:
        return box, None
    bars = [m for m in map(BAR_LINE.match, lines[row + 2:]) if m]
    return box, (int(status[1]), tuple(int(m[3]) for m in bars), tuple(float(m[2]) for m in bars), int(status[2]))


def _which(result: tuple, expected: list) -> list[int]:
    """The prefixes whose result is the one on screen (probabilities shown to 0.01%)."""
    n, ids, probs = result[:3]
    return [j for j, (en, eids, eprobs) in enumerate(expected)
            if en == n and eids == ids and all(abs(a - b) < 0.006 for a, b in zip(eprobs, probs))]


def _probe_typing(name: str, text: str, pace_ms: float, expected: list, timeout: float = 10.0) -> dict:
    """Type `text` one key every `pace_ms`, polling the screen: each key's latency, every set of bars drawn."""
    sent, shown_upto, latencies = [], -1, {}
    draws = []  # (time, prefixes it answers, probe ms)
    last_result = _probe_screen(tmux("capture-pane", "-p", "-t", name))[1]
    t_start = time.perf_counter()
    while True:
        now = time.perf_counter()
        if len(sent) < len(text) and now >= t_start + len(sent) * pace_ms / 1000:
            sent.append(time.perf_counter())
            tmux("send-keys", "-t", name, "-l", text[len(sent) - 1])
        box, result = _probe_screen(tmux("capture-pane", "-p", "-t", name))
        t = time.perf_counter()
        for j in range(len(sent) - 1, shown_upto, -1):
            if text[: j + 1][-PROBE_TAIL:] in box:
                latencies.update({m: 1000 * (t - sent[m]) for m in range(shown_upto + 1, j + 1) if text[m] != " "})
                shown_upto = j
                break
        if result is not None and result != last_result:
            draws.append((t, _which(result, expected), result[3]))
        last_result = result
        if draws and len(text) - 1 in draws[-1][1] and shown_upto == len(text) - 1:
            break
        if t - (sent[-1] if sent else t_start) > timeout:
            raise TimeoutError(f"typing at {pace_ms} ms, {timeout:.0f} s after the last key: {shown_upto + 1} of "
                               f"{len(text)} keys on screen (the box shows {box.strip()!r}); the bars on screen "
                               f"{result}, the whole text's expected {expected[-1]}")
    # The probe of prefix j starts only after DEBOUNCE_S of quiet after key j: if key j + 1 was sent before
    # those bars were drawn, it arrived while the probe ran (or its bars were being drawn).
    # (A screen caught mid-draw matches no prefix; the complete one that follows counts once.)
    during = sorted({j + 1 for t, which, _ in draws if len(which) == 1 and (j := which[0]) + 1 < len(sent)
                     and sent[j + 1] < t})
    return {"keys": [latencies[m] for m in sorted(latencies)],
            "last key to its bars": 1000 * (draws[-1][0] - sent[-1]),
            "bars drawn while typing": len({w[0] for t, w, _ in draws if t <= sent[-1] and len(w) == 1}),
            "unmatched bars": sum(1 for d in draws if not d[1]),
            "keys typed during a probe": during,
            "keys typed during a probe, latency": [latencies[m] for m in during if m in latencies],
            "probe ms": list({w[0]: ms for _, w, ms in draws if len(w) == 1}.values())}


def probe_latency(label: str, ckpt: Path) -> dict:
    expected = expected_probes(ckpt, PROBE_TEXT)
    if _which((*expected[-1], 0), expected) != [len(PROBE_TEXT) - 1]:
        print(f"note ({label}): the whole text's bars match another prefix's: the last-key figure may be early")
    name = f"bench-probe-{os.getpid()}"
    cmd = f"cd {ROOT} && {PY} {Path(__file__).resolve()} --serve-probe {ckpt} || sleep 5"
    tmux("new-session", "-d", "-s", name, "-x", str(SIZE[0]), "-y", str(SIZE[1]), cmd)
    results = {}
    try:
        _wait_screen(name, lambda s: "Type a context" in s, 120)
        tmux("send-keys", "-t", name, "-l", "Warm")  # the first probe loads the model
        _wait_screen(name, lambda s: "context tokens ·" in s, 120)
        for pace in PROBE_PACES_MS:
            tmux("send-keys", "-t", name, "C-u")
            _wait_screen(name, lambda s: "Type a context" in s, 10)
            time.sleep(0.5)
            results[pace] = _probe_typing(name, PROBE_TEXT, pace, expected)
    finally:
        subprocess.run(["tmux", "send-keys", "-t", name, "C-q"], capture_output=True)
        time.sleep(1)
        subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True)
    return results


def _wait_screen(name: str, ready, timeout: float) -> None:
    end = time.monotonic() + timeout
    while not ready(screen := tmux("capture-pane", "-p", "-t", name)):
        if time.monotonic() > end:
            raise TimeoutError(f"the TUI did not get ready in {timeout:.0f} s; its screen:\n{screen}")
        time.sleep(0.1)


def run_probe_part(tok: Path, work: Path) -> None:
    for label, spec, steps in (("the 2,048-token BPE", str(tok), 20), ("cl100k_base", "cl100k_base", 8)):
        t = time.perf_counter()
        ckpt = pretrain(work / f"probe-{spec.rsplit('/', 1)[-1]}", overrides(spec, steps, seq_len=128))
        print(f"probe, {label}: tiny checkpoint ({steps} steps) in {time.perf_counter() - t:.0f} s", flush=True)
        for pace, r in probe_latency(label, ckpt).items():
            keys, during = r["keys"], r["keys typed during a probe, latency"]
            print(f"probe, {label}, a key every {pace} ms: keypress -> screen p50 {pct(keys, .5):.0f} ms, "
                  f"p95 {pct(keys, .95):.0f} ms, max {max(keys):.0f} ms over {len(keys)} keys (goal p95 < 100 ms); "
                  f"last key -> its bars {r['last key to its bars']:.0f} ms")
            ms = r["probe ms"]
            during_text = f" (latency p50 {pct(during, .5):.0f} ms, max {max(during):.0f} ms)" if during else ""
            print(f"    bars of {r['bars drawn while typing']} prefixes drawn while typing; probe p50 {pct(ms, .5)} ms,"
                  f" max {max(ms)} ms (status line); {len(r['keys typed during a probe'])} of {len(PROBE_TEXT)} keys"
                  f" typed during a probe{during_text}"
                  + (f"; {r['unmatched bars']} screens caught mid-draw" if r["unmatched bars"] else ""), flush=True)


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--skip-open", action="store_true")
    ap.add_argument("--only-latency", action="store_true", help="just part 2")
    ap.add_argument("--only-probe", action="store_true", help="just part 4")
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    ap.add_argument("--serve-probe", help=argparse.SUPPRESS)
    ap.add_argument("--tok", help=argparse.SUPPRESS)
    ap.add_argument("--keep-open", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args.serve, args.tok, args.steps, args.keep_open)
        return
    if args.serve_probe:
        serve_probe(args.serve_probe)
        return
    if not shutil.which("tmux"):
        sys.exit("tmux is needed (apt-get install tmux): the TUI runs in a real terminal")
    work = Path(tempfile.mkdtemp(prefix="tui-bench-"))
    from workbench.tokenizer_train import train_tokenizer

    tok = work / "tok.tiktoken"
    train_tokenizer([str(SAMPLE / "text.jsonl")], 2048, tok, held_out=0.0)
    if args.only_probe:
        run_probe_part(tok, work)
        shutil.rmtree(work, ignore_errors=True)
        return
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
    if not args.only_latency:
        run_probe_part(tok, work)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
