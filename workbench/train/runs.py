"""The run directories under a root: what each is, how it stands, how they descend from each other.

    from workbench.train.runs import scan_runs, lineage_tree, resume_command, delete_run
    runs = scan_runs("runs")                # [RunInfo] newest first, nested folders too
    for node in lineage_tree(runs): ...     # pretrain -> sft -> rm / dpo / ppo (ppo names its reward model)
    resume_command(runs[0])                 # 'workbench train sft --resume runs/sft'
    delete_run("runs/old")                  # refuses what is not a run, or a run that is training

The Runs pane (app/panes/runs.py) shows this; every decision is made here. A status comes from
lineage.json and the run lock (lock.py): a live lock means running, whatever lineage says (a resume
being set up has not rewritten it yet); lineage "running" without a live lock means the trainer
died: crashed. The last metrics are read from the end of metrics.jsonl, never the whole file, and
every file read is cached by (mtime, size), so refreshing every few seconds costs a few stat calls.
Unreadable or half-written files never fail a scan: such a run has status "unknown" and the reason.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from workbench.errors import WorkbenchError
from workbench.train.lock import LockInfo, RunLock, read_lock, refusal

RUN_FILES = ("lineage.json", "config.yaml", "metrics.jsonl")
MAX_DEPTH = 4  # folders below the root searched for runs (a pipeline root holds its stages one level down)
RESUMABLE = ("stopped", "crashed", "failed", "interrupted")
STATUSES = ("running", "crashed", "failed", "interrupted", "stopped", "finished", "unknown")
# The one training metric per stage worth a column (besides the loss); eval metrics (val/...) come too.
KEY_METRIC = {"rm": "accuracy", "dpo": "rewards/accuracies", "ppo": "objective/scores"}
TAIL_CHUNK, TAIL_LIMIT = 16_384, 1 << 20  # metrics.jsonl is read backwards in growing chunks, at most 1 MiB


@dataclass
class RunInfo:
    path: Path  # as found under the root (root / name)
    name: str  # relative to the root
    stage: str | None = None
    status: str = "unknown"  # running | finished | stopped | failed | crashed | interrupted | unknown
    step: int | None = None
    max_steps: int | None = None
    started: str | None = None  # ISO times from lineage.json
    ended: str | None = None
    loss: float | None = None
    metrics: dict = field(default_factory=dict)  # the stage's key metric and the last eval's val/ metrics
    parent: Path | None = None  # the parent checkpoint's run directory (resolved)
    parent_checkpoint: str | None = None
    reward_model: Path | None = None  # PPO: the reward model's run directory (an input, not a parent)
    error: str | None = None  # the run's error, or why its status is unknown / crashed
    holder: LockInfo | None = None  # who holds the run lock (running runs)

    @property
    def key(self) -> Path:
        return self.path.resolve()


@dataclass
class RunNode:
    info: RunInfo
    children: list["RunNode"] = field(default_factory=list)


# ------------------------------------------------------------------------------------ reading files
_cache: dict[tuple[str, str], tuple[tuple[int, int], object]] = {}


def _cached(path: Path, kind: str, parse):
    """parse(path), recomputed only when the file's mtime or size changed. Missing file: FileNotFoundError."""
    st = path.stat()
    stamp = (st.st_mtime_ns, st.st_size)
    hit = _cache.get((str(path), kind))
    if hit is not None and hit[0] == stamp:
        return hit[1]
    value = parse(path)
    if len(_cache) > 10_000:  # runs deleted or out of sight: forget them all now and then
        _cache.clear()
    _cache[(str(path), kind)] = (stamp, value)
    return value


def _json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def _yaml(path: Path):
    import yaml

    return yaml.safe_load(path.read_text(encoding="utf-8"))


def last_records(path: Path, kinds=("train", "eval")) -> dict[str, dict]:
    """The last record of each event kind in a metrics.jsonl, reading backwards from its end in growing
    chunks (at most TAIL_LIMIT bytes). Only lines that name a kind still wanted are parsed; a partial
    last line (a write in progress) and lines that are not JSON are skipped."""
    found: dict[str, dict] = {}
    markers = {k: f'"event": "{k}"'.encode() for k in kinds}  # as json.dumps writes it (engine._send)
    with open(path, "rb") as f:
        size = end = f.seek(0, os.SEEK_END)
        carry, chunk = b"", TAIL_CHUNK  # carry: the start of a line cut by the previous chunk's edge
        while end > 0 and len(found) < len(kinds):
            start = max(0, end - chunk)
            f.seek(start)
            lines = (f.read(end - start) + carry).split(b"\n")
            carry = lines.pop(0) if start > 0 else b""
            for line in reversed(lines):
                kind = next((k for k, m in markers.items() if k not in found and m in line), None)
                if kind is None:
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict) and record.get("event") == kind:
                    found[kind] = record
            if size - start >= TAIL_LIMIT:
                break
            end, chunk = start, chunk * 4
    return found


def _text(value) -> str | None:
    """A string field of lineage.json / config.yaml, or None: a hand-edited file may hold anything there."""
    return value if isinstance(value, str) and value else None


def run_dir_of(checkpoint: str | None) -> Path | None:
    """RUN/checkpoints/step-N -> RUN (resolved); None for a checkpoint that is not inside a run."""
    if not isinstance(checkpoint, str) or not checkpoint:
        return None
    p = Path(checkpoint)
    return p.parent.parent.resolve() if p.parent.name == "checkpoints" else None


def is_run_dir(path: Path) -> bool:
    return path.is_dir() and any((path / f).is_file() for f in RUN_FILES)


# ------------------------------------------------------------------------------------ one run
def status_of(lineage_status: str | None, holder: LockInfo | None) -> tuple[str, str | None]:
    """(status, why) from lineage.json's status and the lock."""
    if holder is not None and holder.alive:
        return "running", None
    if lineage_status == "running":
        why = f"the trainer died: {holder.reason} — {holder.describe()}" if holder is not None else \
            "the trainer died: lineage.json says running, but no process holds the run lock"
        return "crashed", why
    return lineage_status or "unknown", None


def read_run(path: Path, name: str) -> RunInfo:
    """Everything the Runs pane shows about one run directory. Never raises for bad files."""
    info = RunInfo(path=path, name=name)
    info.holder = read_lock(path)
    lineage, problem = {}, None
    try:
        lineage = _cached(path / "lineage.json", "json", _json)
        if not isinstance(lineage, dict):
            lineage, problem = {}, "lineage.json is not a JSON object"
    except FileNotFoundError:
        problem = "no lineage.json (the run has not started, or it is not a workbench run)"
    except (OSError, ValueError) as e:
        problem = f"lineage.json is unreadable: {e}"
    try:
        config = _cached(path / "config.yaml", "yaml", _yaml)
        config = config if isinstance(config, dict) else {}
    except Exception:  # noqa: BLE001 — missing, unreadable or not YAML: the lineage may still say enough
        config = {}
    status = _text(lineage.get("status")) if not problem else None
    info.status, why = status_of(status, info.holder)
    info.error = problem if info.status == "unknown" else (why or lineage.get("error"))
    info.stage = _text(lineage.get("stage")) or _text(config.get("stage"))
    info.started, info.ended = _text(lineage.get("started")), _text(lineage.get("ended"))
    info.max_steps = config.get("max_steps") if isinstance(config.get("max_steps"), int) else None
    parent = lineage.get("parent") if isinstance(lineage.get("parent"), dict) else {}
    info.parent_checkpoint = _text(parent.get("path"))
    info.parent = run_dir_of(info.parent_checkpoint)
    inputs = lineage.get("inputs") if isinstance(lineage.get("inputs"), dict) else {}
    rm = inputs.get("reward_model")
    info.reward_model = run_dir_of(rm.get("path") if isinstance(rm, dict) else None)
    info.step = lineage.get("step") if isinstance(lineage.get("step"), int) else None
    try:
        last = _cached(path / "metrics.jsonl", "tail", last_records)
    except (OSError, ValueError):
        last = {}
    train, evaluation = last.get("train", {}), last.get("eval", {})
    if isinstance(train.get("step"), int):  # lineage.json records the step only when a session ends
        info.step = train["step"]
    info.loss = train.get("loss")
    key = KEY_METRIC.get(info.stage or "")
    if key and train.get(key) is not None:
        info.metrics[key] = train[key]
    info.metrics.update({k: v for k, v in evaluation.items() if k.startswith("val/") and v is not None})
    return info


# ------------------------------------------------------------------------------------ many runs
def scan_runs(root: str | Path) -> list[RunInfo]:
    """The run directories under `root` (or `root` itself), newest first. Hidden folders are skipped and
    a run's own folders (checkpoints/, tensorboard/) are not searched. A missing root has no runs."""
    root = Path(root).expanduser()
    found: list[RunInfo] = []

    def walk(folder: Path, depth: int) -> None:
        if is_run_dir(folder):
            name = folder.relative_to(root).as_posix() if folder != root else folder.name
            found.append(read_run(folder, name))
            return
        if depth >= MAX_DEPTH:
            return
        try:
            entries = sorted(e.name for e in os.scandir(folder)
                             if not e.name.startswith(".") and e.is_dir(follow_symlinks=False))
        except OSError:  # unreadable or vanished meanwhile
            return
        for entry in entries:
            walk(folder / entry, depth + 1)

    if root.is_dir():
        walk(root, 0)
    found.sort(key=lambda r: r.name)
    found.sort(key=lambda r: r.started or "", reverse=True)  # ISO times sort as text; undated last
    return found


def lineage_tree(runs: list[RunInfo]) -> list[RunNode]:
    """Runs as trees of parent -> children (a run whose parent is not among `runs` is a root), oldest
    first at each level. PPO's reward model is an input, kept in its RunInfo.reward_model."""
    nodes = {r.key: RunNode(r) for r in runs}
    roots = []
    for r in sorted(runs, key=lambda r: (r.started or "~", r.name)):
        parent = nodes.get(r.parent) if r.parent is not None and r.parent != r.key else None
        (parent.children if parent is not None else roots).append(nodes[r.key])
    return roots


def children_of(run: RunInfo, runs: list[RunInfo]) -> list[RunInfo]:
    """Runs that start from this run's checkpoints, or use it as their reward model."""
    return [r for r in runs if run.key in (r.parent, r.reward_model)]


def resume_command(run: RunInfo) -> str:
    if not run.stage:
        raise WorkbenchError(f"{run.path}: its stage is unknown (no readable lineage.json or config.yaml)")
    return f"workbench train {run.stage} --resume {shlex.quote(str(run.path))}"


def why_not_resumable(run: RunInfo) -> str | None:
    """None when the run can be resumed; else the reason, with what to do instead."""
    if run.status == "running":
        return f"{run.name} is training right now" + (f" ({run.holder.describe()})" if run.holder else "")
    if not (run.path / "config.yaml").is_file():
        return f"{run.name} has no config.yaml: there is nothing to resume"
    if run.status == "finished":
        more = (run.max_steps or run.step or 0) * 2 or 100
        return (f"{run.name} finished (step {run.step} of {run.max_steps}); to train it further: "
                f"{resume_command(run)} max_steps={more}")
    if run.status not in RESUMABLE:
        return f"{run.name}: status {run.status}" + (f" ({run.error})" if run.error else "")
    return None


def delete_run(path: str | Path) -> None:
    """Remove a run directory that nobody is training. It is first renamed to a hidden sibling (one
    atomic step: no half-deleted run is ever listed), then removed; a trainer cannot start meanwhile,
    since the rename happens under the run lock."""
    path = Path(path).expanduser()
    if path.is_symlink():
        raise WorkbenchError(f"{path} is a symbolic link; not deleting what it points to")
    if not is_run_dir(path):
        raise WorkbenchError(f"{path} is not a run directory (none of {', '.join(RUN_FILES)}); not deleting it")
    target = path.resolve()
    if target in (Path.cwd().resolve(), *Path.cwd().resolve().parents):
        raise WorkbenchError(f"{path} is the current directory or one of its parents; not deleting it")
    holder = read_lock(path)
    if holder is not None and holder.alive:
        raise WorkbenchError(refusal(path, holder))
    with RunLock(path, what="deleting this run") as lock:
        aside = target.with_name(f".{target.name}.deleting-{lock.token[:8]}")
        try:
            os.replace(target, aside)
        except OSError as e:
            raise WorkbenchError(f"cannot delete {path}: {e.strerror or e}") from None
        lock.held = False  # the lock went with the folder
    shutil.rmtree(aside, ignore_errors=True)


# ------------------------------------------------------------------------------------ for display
def short_number(value) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    return f"{value:,}" if isinstance(value, int) else f"{value:.4g}"


def metrics_text(run: RunInfo, short: bool = False) -> str:
    """'loss 2.314  val/loss 2.402' — the last train loss, the stage's key metric, the last eval.
    short: 'loss 2.314 scores 0.5' (a metric's last name part; eval metrics keep their val/)."""
    names = {k: (k if k.startswith("val/") or not short else k.rpartition("/")[2]) for k in run.metrics}
    parts = [f"loss {short_number(run.loss)}"] if run.loss is not None else []
    parts += [f"{names[k]} {short_number(v)}" for k, v in run.metrics.items()]
    return (" " if short else "  ").join(parts)


def local_time(iso: str | None) -> str:
    """'2025-01-02T10:00:00+00:00' -> '2025-01-02 10:00' in local time ('' when absent or unreadable)."""
    if not iso:
        return ""
    try:
        return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M")
    except (TypeError, ValueError):
        return str(iso)[:16]


def time_span(started: str | None, ended: str | None) -> str:
    """'2025-01-02 14:00 → 14:45' (the end's date only when it differs), or just the start."""
    start, end = local_time(started), local_time(ended)
    if not end:
        return start
    return f"{start} → {end[11:] if end[:10] == start[:10] else end}"


def steps_text(run: RunInfo) -> str:
    if run.step is None and run.max_steps is None:
        return ""
    return f"{run.step if run.step is not None else '?'}/{run.max_steps if run.max_steps is not None else '?'}"


def status_counts(runs: list[RunInfo]) -> dict[str, int]:
    """How many runs have each status, the ones that need attention first."""
    counts = {s: sum(r.status == s for r in runs) for s in STATUSES}
    counts.update({r.status: counts.get(r.status, 0) + 1 for r in runs if r.status not in STATUSES})
    return {s: n for s, n in counts.items() if n}
