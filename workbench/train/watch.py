"""Watching runs for the Monitor: the polling loop, the run header, which charts, the names.

    watcher = RunWatcher()
    events = watcher.poll({Path("runs/sft"): 1})  # Loaded / Records / HeaderRead since the last poll
    header = RunHeader.read("runs/sft")          # stage, max_steps, device, data, status (never raises)
    header.merged(history)                       # + what the events say: step, ETA, tokens/s, status
    panels_for(["dpo"], history.series)          # the charts for these stages, in order
    run_names(["runs/a/sft", "runs/b/sft"])      # ['a/sft', 'b/sft']
    follow_target("runs/sft/metrics.jsonl")      # the run dir to follow for what a user typed

The TUI's Monitor (app/panes/monitor.py) calls `RunWatcher.poll` from a thread worker and lays
out what comes back; the charts' titles and their one-line "what healthy looks like" hints are
UI text, in app/messages.py (MONITOR_PANELS).
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from workbench.train.follow import (CHUNK, METRICS, MetricsFollower, RunHistory, eta, read_into, tail_lines,
                                    tokens_per_s)
from workbench.train.lock import read_lock
from workbench.train.runs import status_of

CONFIG, LINEAGE, LOG = "config.yaml", "lineage.json", "train.log"
HEADER_EVERY_S = 2.0  # lineage.json and the lock are re-read at least this often (how a run ended)
LOG_LINES = 6


def duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = int(round(max(0.0, seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def short_number(value: float | None) -> str:
    """1234567 -> '1.23M', 0.000123 -> '1.23e-04': compact axis and header figures."""
    if value is None or not math.isfinite(value):
        return "?"
    a = abs(value)
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if a >= scale:
            return f"{value / scale:.3g}{unit}"
    if a and a < 1e-3:
        return f"{value:.2e}"
    return f"{value:.3g}"


# ------------------------------------------------------------------------------------ the header
@dataclass
class RunHeader:
    """What a run is, from its directory: config.yaml and lineage.json (plus the lock for running)."""

    path: Path
    stage: str | None = None
    max_steps: int | None = None
    device: str | None = None
    data: str | None = None
    status: str = "unknown"
    problem: str | None = None  # why a file could not be read (shown, never raised)

    @classmethod
    def read(cls, run_dir: str | Path) -> "RunHeader":
        path = Path(run_dir).expanduser()
        header = cls(path)
        problems = []
        config = path / CONFIG
        if config.is_file():
            try:
                cfg = yaml.safe_load(config.read_text(encoding="utf-8"))
                if not isinstance(cfg, dict):
                    raise ValueError("not a mapping")
                header.stage = cfg.get("stage")
                header.max_steps = cfg.get("max_steps") if isinstance(cfg.get("max_steps"), int) else None
                header.device, header.data = cfg.get("device"), cfg.get("data")
            except (OSError, ValueError, yaml.YAMLError) as e:
                problems.append(f"{config}: {e}")
        lineage = {}
        if (path / LINEAGE).is_file():
            try:
                lineage = json.loads((path / LINEAGE).read_text(encoding="utf-8"))
                if not isinstance(lineage, dict):
                    raise ValueError("not a JSON object")
            except (OSError, ValueError) as e:
                lineage = {}
                problems.append(f"{path / LINEAGE}: {e}")
        header.stage = header.stage or lineage.get("stage")
        header.status = status_of(lineage.get("status"), read_lock(path))[0]
        header.problem = "; ".join(problems) or None
        return header

    def merged(self, history: RunHistory) -> dict:
        """The header's fields updated with what the events say (the resolved device, a newer status)."""
        start = history.start or {}
        text = lambda v: v if isinstance(v, str) and v else None  # noqa: E731 — a hand-edited file may hold anything
        max_steps = start.get("max_steps")
        max_steps = max_steps if type(max_steps) is int and max_steps > 0 else self.max_steps
        status = text(history.status()) or text(self.status) or "unknown"
        if status == "running" and self.status not in ("running", "unknown", "missing"):
            status = self.status  # lineage.json says how it ended (e.g. a crash left no end event)
        return {"stage": text(start.get("stage")) or text(self.stage), "step": history.last_step,
                "max_steps": max_steps, "device": text(start.get("device")) or text(self.device), "status": status,
                "eta": eta(history.recent, max_steps) if status == "running" else None,
                "tokens_per_s": tokens_per_s(history.recent)}


def run_names(paths) -> list[str]:
    """Short names that tell runs apart: the folder name, with parent folders added until unique."""
    parts = [Path(p).expanduser().resolve().parts for p in paths]
    names = []
    for i, p in enumerate(parts):
        depth = 1
        while depth < len(p) and any(q[-depth:] == p[-depth:] for j, q in enumerate(parts) if j != i):
            depth += 1
        names.append("/".join(p[-depth:]))
    return names


# ------------------------------------------------------------------------------------ which charts
@dataclass(frozen=True)
class Panel:
    """One chart: the metrics it overlays (train keys and their val/ twins)."""

    id: str
    keys: tuple[str, ...]
    stages: tuple[str, ...] = ()  # () = every stage


PANELS = (
    Panel("loss", ("loss", "val/loss")),
    Panel("lr", ("lr",)),
    Panel("grad_norm", ("grad_norm",)),
    Panel("tokens_per_s", ("tokens_per_s",)),
    Panel("moe_balance", ("moe_balance",), ("pretrain", "sft")),
    Panel("rm_accuracy", ("accuracy", "val/accuracy"), ("rm",)),
    Panel("rm_margin", ("margin", "val/margin"), ("rm",)),
    Panel("rm_rewards", ("rewards/chosen", "rewards/rejected"), ("rm",)),
    Panel("rm_logprob_weight", ("logprob_weight",), ("rm",)),  # score_logprob runs only
    Panel("dpo_rewards", ("rewards/chosen", "rewards/rejected"), ("dpo",)),
    Panel("dpo_margins", ("rewards/margins", "val/rewards/margins"), ("dpo",)),
    Panel("dpo_accuracies", ("rewards/accuracies", "val/rewards/accuracies"), ("dpo",)),
    Panel("dpo_logps", ("logps/chosen", "logps/rejected"), ("dpo",)),
    Panel("dpo_nll", ("nll_loss", "val/nll_loss"), ("dpo",)),  # rpo_alpha > 0 only
    Panel("ppo_scores", ("objective/scores", "val/score"), ("ppo",)),
    Panel("ppo_kl", ("objective/kl",), ("ppo",)),
    Panel("ppo_reward", ("objective/rlhf_reward",), ("ppo",)),
    Panel("ppo_entropy", ("objective/entropy",), ("ppo",)),
    Panel("ppo_clipfrac", ("policy/clipfrac",), ("ppo",)),
    Panel("ppo_approxkl", ("policy/approxkl",), ("ppo",)),
    Panel("ppo_ratio", ("val/ratio",), ("ppo",)),
    Panel("ppo_length", ("response_length", "val/response_length"), ("ppo",)),
    Panel("ppo_eos", ("eos_rate", "val/eos_rate"), ("ppo",)),
    Panel("ppo_value", ("loss/policy", "loss/value"), ("ppo",)),
)


def panels_for(stages, keys=None) -> list[Panel]:
    """The panels for runs of these stages (overlaid runs show the union, in PANELS order). With `keys`
    (the metrics the runs have logged), a stage panel none of whose keys was logged is left out
    (e.g. moe_balance for a dense model); the four common panels always show."""
    stages = {s for s in stages if s}
    out = []
    for panel in PANELS:
        if panel.stages and not (stages & set(panel.stages)):
            continue
        if panel.stages and keys is not None and not any(k in keys for k in panel.keys):
            continue
        out.append(panel)
    return out


def follow_target(path: str | Path) -> Path:
    """The run directory to follow for what a user typed: a run dir, its metrics.jsonl, or a folder
    that does not exist yet (a run about to start there). Raises WorkbenchError for anything else."""
    from workbench.errors import WorkbenchError

    p = Path(str(path).strip()).expanduser()
    if not str(path).strip():
        raise WorkbenchError("give a run directory (e.g. runs/sft)")
    if p.is_file():
        if p.name == METRICS:
            return p.parent
        raise WorkbenchError(f"{p} is a file; give its run directory (the folder with metrics.jsonl)")
    if p.is_dir():
        if any((p / f).exists() for f in (METRICS, CONFIG, LINEAGE)) or not any(p.iterdir()):
            return p
        runs = sorted(d.name for d in p.iterdir() if d.is_dir() and any((d / f).exists() for f in (METRICS, CONFIG)))
        hint = f"; the runs in it: {', '.join(runs[:6])}" if runs else ""
        raise WorkbenchError(f"{p} is not a run directory (no metrics.jsonl, config.yaml or lineage.json){hint}")
    if not p.parent.is_dir():
        raise WorkbenchError(f"no such folder: {p.parent} (a run directory that does not exist yet is fine, "
                             f"but its parent must)")
    return p


# ------------------------------------------------------------------------------------ the polling loop
@dataclass
class Loaded:
    """A full read of a run's metrics.jsonl (the first, or after a reset): a new history."""

    path: Path
    token: int
    history: RunHistory
    bad: int
    reset: bool  # the file was rewritten (a resume), not just read for the first time


@dataclass
class Records:
    path: Path
    token: int
    records: list
    bad: int


@dataclass
class HeaderRead:
    path: Path
    token: int
    header: RunHeader
    log: list[str] | None  # the tail of train.log when it changed, else None


class RunWatcher:
    """One poll of every watched run: new records, a reset, the header and the log tail when they
    may have changed. Used from one thread; a run's `token` changes when the Monitor opens it anew
    (its follower then starts over). A first or reset read builds the RunHistory here, off the UI
    thread: 100,000 records take about a second."""

    def __init__(self):
        self._followers: dict[Path, tuple[int, MetricsFollower]] = {}
        self._next_header: dict[Path, float] = {}
        self._log_size: dict[Path, int] = {}

    def poll(self, wanted: dict[Path, int], headers_now: bool = False) -> list:
        events = []
        for path in [p for p in self._followers if p not in wanted]:
            del self._followers[path]
        now = time.monotonic()
        for path, token in wanted.items():
            first = self._followers.get(path, (None,))[0] != token
            if first:
                self._followers[path] = (token, MetricsFollower(path))
                self._next_header[path], self._log_size[path] = 0.0, -1
            follower = self._followers[path][1]
            update = follower.poll(CHUNK)
            if first or update.reset:
                history = read_into(RunHistory(), follower, update)
                events.append(Loaded(path, token, history, follower.bad, update.reset and not first))
            else:
                records, bad = list(update.records), update.bad
                while update.more:  # a burst (rare): the rest, still chunk by chunk
                    update = follower.poll(CHUNK)
                    if update.reset:
                        break  # rewritten meanwhile: the next poll reloads it
                    records += update.records
                    bad += update.bad
                if records or bad:
                    events.append(Records(path, token, records, bad))
            if headers_now or update.records or update.reset or now >= self._next_header[path]:
                self._next_header[path] = now + HEADER_EVERY_S
                size = _size(path / LOG)
                log = tail_lines(path / LOG, LOG_LINES) if size != self._log_size[path] else None
                self._log_size[path] = size
                events.append(HeaderRead(path, token, RunHeader.read(path), log))
        return events


def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return -1
