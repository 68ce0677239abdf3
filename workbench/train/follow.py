"""Following a run directory while it trains: the Monitor's headless half (no textual here).

    follower = MetricsFollower("runs/sft")      # tail RUN/metrics.jsonl from a byte offset
    history = RunHistory()
    update = follower.poll()                    # new complete records (and whether to start over)
    if update.reset:
        history = RunHistory()
    history.add(update.records)
    steps, losses = history.xy("loss", x="tokens", smoothing=0.9)
    xs, ys = downsample(steps, losses, buckets=200)   # min and max per bucket: spikes survive

A follower reads only the bytes written since its last poll. A partial last line (a write in
progress) is kept until its newline arrives; a file that does not exist yet is simply empty; a
file that was replaced or shrank (a resume rewrites metrics.jsonl atomically, keeping the steps up
to its checkpoint) makes the next poll return everything again with `reset=True`. A line that is
not a JSON object is skipped and counted. The same records can reach a `RunHistory` twice (from
the TUI's own training worker and from the file): it keeps each event once.
"""

from __future__ import annotations

import json
import math
import os
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

METRICS = "metrics.jsonl"
# Keys of a train record that describe it rather than measure the model: never charted.
NOT_METRICS = frozenset({"event", "step", "stage", "skipped", "nonfinite_total", "eval_time"})
RECENT = 50  # train records kept for the ETA and tokens/s


def number(value) -> float | None:
    """A finite number from a record, or None: metrics.jsonl may hold anything (a string, NaN, a flag)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return value if math.isfinite(value) else None
    except OverflowError:  # an int too big for a float
        return None


# ------------------------------------------------------------------------------------ the file
@dataclass
class Update:
    records: list[dict] = field(default_factory=list)
    reset: bool = False  # the file was replaced or truncated: `records` is all of it, start over
    bad: int = 0  # lines skipped in this read (not JSON objects)
    more: bool = False  # read stopped at max_bytes: poll again for the rest


def parse_lines(lines: list[bytes], chunk: int = 1000) -> tuple[list[dict], int]:
    """JSON objects from complete lines; (records, lines skipped). One json.loads per `chunk` good
    lines (a 100,000-line file loads ~2x faster than line by line) — not one for the whole file,
    because json.loads holds the GIL and a thread parsing 30 MB at once would freeze the UI."""
    records, bad = [], 0
    for i in range(0, len(lines), chunk):
        part = [line for line in lines[i:i + chunk] if line.strip()]
        try:
            parsed = json.loads(b"[" + b",".join(part) + b"]")
            if all(isinstance(r, dict) for r in parsed):
                records += parsed
                continue
        except ValueError:
            pass
        for line in part:  # some line is bad: find it
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            if isinstance(record, dict):
                records.append(record)
            else:
                bad += 1
    return records, bad


class MetricsFollower:
    """Incremental reader of RUN/metrics.jsonl. Not thread-safe: one thread polls it."""

    def __init__(self, run_dir: str | Path, name: str = METRICS):
        self.path = Path(run_dir).expanduser() / name
        self.offset = 0  # bytes consumed (up to the end of the last complete line)
        self.identity: tuple[int, int] | None = None  # (device, inode) of the file being followed
        self.partial = b""
        self.bad = 0  # malformed lines skipped since the last reset

    def poll(self, max_bytes: int | None = None) -> Update:
        """What was written since the last poll (at most `max_bytes` of it: a 30 MB history read in
        pieces never holds all its records as dicts at once)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            if self.identity is None:
                return Update()  # not written yet: fine, it may appear later
            self._restart()  # it was there and is gone (deleted, or mid-replace): start over
            return Update(reset=True)
        except OSError:
            return Update()  # unreadable for now (permissions, a flaky mount): try again next poll
        identity = (st.st_dev, st.st_ino)
        reset = self.identity is not None and (identity != self.identity or st.st_size < self.offset)
        if reset:
            self._restart()
        self.identity = identity
        if st.st_size == self.offset:
            return Update(reset=reset)
        try:
            with open(self.path, "rb") as f:
                if os.fstat(f.fileno()).st_ino != identity[1]:  # replaced between stat and open
                    self._restart()
                    return Update(reset=True)
                f.seek(self.offset)
                data = f.read(max_bytes) if max_bytes else f.read()
        except OSError:
            return Update(reset=reset)
        self.offset += len(data)
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()  # b"" when the data ended with a newline
        records, bad = parse_lines(lines)
        self.bad += bad
        return Update(records, reset, bad, more=self.offset < st.st_size)

    def _restart(self) -> None:
        self.offset, self.identity, self.partial, self.bad = 0, None, b"", 0


def tail_lines(path: str | Path, n: int = 20, chunk: int = 16_384) -> list[str]:
    """The last `n` lines of a text file (train.log), reading only its end; [] when it is missing."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - chunk))
            data = f.read()
    except OSError:
        return []
    lines = data.decode("utf-8", "replace").splitlines()
    if size > chunk:
        lines = lines[1:]  # the first one starts mid-line
    return lines[-n:]


# ------------------------------------------------------------------------------------ a run's records
class Grow:
    """A float64 array that grows by doubling. Views it hands out stay valid while it grows (unlike
    array.array, which refuses to resize while numpy looks at it)."""

    def __init__(self, capacity: int = 256):
        self.buf, self.n = np.empty(capacity), 0

    def extend(self, values) -> None:
        values = np.asarray(values, dtype=np.float64)
        need = self.n + len(values)
        if need > len(self.buf):
            buf = np.empty(max(need, 2 * len(self.buf)))
            buf[:self.n] = self.buf[:self.n]
            self.buf = buf
        self.buf[self.n:need] = values
        self.n = need

    def view(self) -> np.ndarray:
        return self.buf[:self.n]

    def __len__(self) -> int:
        return self.n


class Series:
    """One metric's (step, value) points in arrival order, sorted by step when read. Appends go to
    plain lists (cheap per record); reading moves them into numpy in one go."""

    def __init__(self):
        self.steps, self.values = Grow(), Grow()
        self.new_steps: list[float] = []
        self.new_values: list[float] = []
        self.ordered = True
        self._ema: dict[float, tuple[float, int, Grow]] = {}  # weight -> (state, points done, smoothed)

    def append(self, step: float, value: float) -> None:
        self.new_steps.append(step)
        self.new_values.append(value)
        if len(self.new_steps) >= 4096:  # python floats take ~4x the memory of numpy's
            self._flush()

    def __len__(self) -> int:
        return self.steps.n + len(self.new_steps)

    def _flush(self) -> None:
        if self.new_steps:
            new = np.asarray(self.new_steps, dtype=np.float64)
            last = self.steps.buf[self.steps.n - 1] if self.steps.n else -np.inf
            if new[0] < last or (len(new) > 1 and np.any(np.diff(new) < 0)):
                self.ordered = False
            self.steps.extend(new)
            self.values.extend(self.new_values)
            self.new_steps, self.new_values = [], []

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        self._flush()
        if not self.ordered:  # a record that came late (rare): sort once, stably, by step
            order = np.argsort(self.steps.view(), kind="stable")
            self.steps.buf[:self.steps.n] = self.steps.view()[order]
            self.values.buf[:self.values.n] = self.values.view()[order]
            self.ordered, self._ema = True, {}
        return self.steps.view(), self.values.view()

    def smoothed(self, weight: float) -> np.ndarray:
        """EMA of the values (see `ema`), extended incrementally: a live run costs only its new points."""
        _, values = self.arrays()
        last, count, out = self._ema.get(weight, (0.0, 0, Grow()))
        new: list[float] = []
        last, count = _ema_into(new, values[count:].tolist(), weight, last, count)
        out.extend(new)
        self._ema[weight] = (last, count, out)
        return out.view()


def _ema_into(out: list, values: list[float], weight: float, last: float, count: int) -> tuple[float, int]:
    for v in values:
        last = last * weight + (1 - weight) * v
        count += 1
        out.append(last / (1 - weight ** count))
    return last, count


def ema(values, weight: float) -> np.ndarray:
    """TensorBoard's smoothing: an exponential moving average debiased for its zero start, so the
    first points are not pulled towards 0. weight 0 = no smoothing, 0.99 = very smooth."""
    out: list[float] = []
    _ema_into(out, [float(v) for v in values], weight, 0.0, 0)
    return np.asarray(out)


class RunHistory:
    """Everything one run has logged, as series per metric, plus its latest start / end events.

    `add` keeps each event once: a train step by (event, step) — within one file a step appears
    once, and a resume that repeats steps rewrites the file, which the follower reports as a
    reset — and any other event by its whole content (a resumed run may repeat a step's eval or
    end event, but never with the same timings)."""

    def __init__(self):
        self.series: dict[str, Series] = {}
        self.source: dict[str, str] = {}  # metric -> event that logs it (train | eval)
        self.start: dict | None = None
        self.end: dict | None = None  # the end event after the latest start, if any
        self.checkpoint: str | None = None
        self.last_step = 0
        self.recent: deque[dict] = deque(maxlen=RECENT)  # the newest train records (ETA, tokens/s)
        self.logs: deque[str] = deque(maxlen=200)  # log events (they reach only the callbacks, not the file)
        self.version = 0  # bumped on every change: charts redraw only when it moved
        self._seen_steps: set[int] = set()
        self._seen_other: set[int] = set()

    def add(self, records) -> bool:
        """Add records (dicts from metrics.jsonl or the engine's callback); True if anything was new."""
        changed = False
        for r in records:
            changed |= self._add(r)
        if changed:
            self.version += 1
        return changed

    def _add(self, r: dict) -> bool:
        kind, step = r.get("event"), number(r.get("step"))
        if step is None:  # no step, or NaN / Infinity / a string: nothing to place it at
            return False
        if kind == "log":
            self.logs.append(str(r.get("message", "")))
            return True
        if kind == "train":
            if step in self._seen_steps:
                return False
            self._seen_steps.add(step)
            self.recent.append(r)
        else:
            key = hash(json.dumps(r, sort_keys=True, default=str))
            if key in self._seen_other:
                return False
            self._seen_other.add(key)
        self.last_step = max(self.last_step, int(step))
        if kind in ("train", "eval"):
            series = self.series
            for k, v in r.items():
                # type() rather than isinstance: bools (an int subclass) are flags, not metrics
                if type(v) in (float, int) and k not in NOT_METRICS and v - v == 0:  # v - v == 0: finite
                    s = series.get(k)
                    if s is None:
                        s = series[k] = Series()
                        self.source[k] = kind
                    s.append(step, v)
        elif kind == "start":
            self.start, self.end = r, None
        elif kind == "end":
            self.end = r
        elif kind == "checkpoint":
            self.checkpoint = r.get("path")
        return True

    def __contains__(self, key: str) -> bool:
        return key in self.series

    def xy(self, key: str, x: str = "step", smoothing: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) of one metric; x = "step" or "tokens" (cumulative training tokens at that step)."""
        s = self.series.get(key)
        if s is None or not len(s):
            return np.empty(0), np.empty(0)
        steps, values = s.arrays()
        ys = s.smoothed(smoothing) if smoothing > 0 else values
        return (self.tokens_at(steps) if x == "tokens" else steps), ys

    def tokens_at(self, steps: np.ndarray) -> np.ndarray:
        """Cumulative training tokens seen by the end of each step (an eval at step k: tokens through k)."""
        tokens = self.series.get("tokens")
        if tokens is None or not len(tokens):
            return np.zeros_like(steps)
        t_steps, t_values = tokens.arrays()
        cum = np.cumsum(t_values)
        idx = np.searchsorted(t_steps, steps, side="right") - 1
        return np.where(idx >= 0, cum[np.clip(idx, 0, None)], 0.0)

    def status(self) -> str | None:
        """The run's status as its events tell it: the end event's, 'running' after a start, else None."""
        if self.end is not None:
            return self.end.get("status")
        return "running" if self.start is not None else None


CHUNK = 4 << 20  # bytes of metrics.jsonl parsed at a time when reading a whole file


def read_into(history: RunHistory, follower: MetricsFollower, first: Update) -> RunHistory:
    """`history` with the records of `first` and of the rest of the file, read CHUNK bytes at a time.
    A reset on the way (the file replaced while being read) starts a fresh history."""
    update = first
    while True:
        if update.reset:
            history = RunHistory()
        history.add(update.records)
        if not update.more:
            return history
        update = follower.poll(CHUNK)


def load_history(run_dir: str | Path) -> tuple[RunHistory, MetricsFollower]:
    """Read a run's metrics.jsonl from the start: (its history, a follower positioned at its end)."""
    follower = MetricsFollower(run_dir)
    return read_into(RunHistory(), follower, follower.poll(CHUNK)), follower


# ------------------------------------------------------------------------------------ series helpers
def downsample(xs: np.ndarray, ys: np.ndarray, buckets: int) -> tuple[np.ndarray, np.ndarray]:
    """At most 2 points per x-bucket (a bucket = one pixel column of the chart): its minimum at the
    bucket's first x and its maximum at its last x, plus the exact first and last points. xs must be
    sorted. A chart of 100,000 steps draws a few hundred points, and a one-step spike still shows."""
    n = len(xs)
    if n <= 2 * buckets or buckets < 1:
        return xs, ys
    lo, hi = float(xs[0]), float(xs[-1])
    if hi <= lo:
        return xs[-1:], ys[-1:]
    edges = lo + (hi - lo) * np.arange(1, buckets) / buckets
    starts = np.unique(np.r_[0, np.searchsorted(xs, edges, side="left")])
    starts = starts[starts < n]
    ends = np.r_[starts[1:], n] - 1
    mins, maxs = np.minimum.reduceat(ys, starts), np.maximum.reduceat(ys, starts)
    single = starts == ends  # a bucket with one point: keep it once
    out_x = np.column_stack([xs[starts], xs[ends]]).ravel()
    out_y = np.column_stack([mins, maxs]).ravel()
    keep = np.column_stack([np.ones_like(single), ~single]).ravel()
    out_x, out_y = out_x[keep], out_y[keep]
    out_y[0], out_y[-1] = ys[0], ys[-1]  # the curve starts and ends where the data does
    return out_x, out_y


def eta(records, max_steps: int | None, window: int = 20) -> float | None:
    """Seconds left until `max_steps`, from the pace of the newest train records (their `elapsed`,
    which includes evaluations and checkpoints; `step_time` for a single record). None if unknown."""
    train = [r for r in records if r.get("event") == "train" and number(r.get("step")) is not None][-window:]
    max_steps = number(max_steps)
    if not train or not max_steps:
        return None
    last = train[-1]
    left = max_steps - int(last["step"])
    if left <= 0:
        return 0.0
    first = train[0]
    t0, t1 = number(first.get("elapsed")), number(last.get("elapsed"))
    if len(train) >= 2 and t0 is not None and t1 is not None:
        steps = int(last["step"]) - int(first["step"])
        if steps > 0 and t1 > t0:
            return (t1 - t0) / steps * left
    times = [t for t in (number(r.get("step_time")) for r in train) if t is not None]
    return sum(times) / len(times) * left if times else None


def tokens_per_s(records, window: int = 20) -> float | None:
    """Training tokens per second over the newest train records (a steadier figure than one step's)."""
    train = [r for r in records if r.get("event") == "train"][-window:]
    tokens = sum(number(r.get("tokens")) or 0 for r in train)
    seconds = sum(number(r.get("step_time")) or 0 for r in train)
    return tokens / seconds if seconds > 0 else None
