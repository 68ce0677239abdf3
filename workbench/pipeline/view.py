"""What a pipeline root (or a handful of run directories) has to show: the TUI's Report pane reads it here.

    from workbench.pipeline.view import open_view
    view = open_view("runs/cpu-demo")            # report.json if written, else what the run dirs hold
    view = open_view(["runs/sft", "runs/dpo"])   # picked runs: their stages, curves and standing

A finished root has its report card (ROOT/report.json, build_report's dict); a root whose pipeline
is still running or was stopped has none yet, so its stages are read from their run directories
(in the order of ROOT/recipe.yaml, else of the folders found), like build_report reads them. The curves
are plots.figures of the same stages, the Chinchilla standing is run_standing per run (parameters
from the checkpoint's model config), else the run's own metrics.jsonl (parameters of its start event,
tokens summed). Reading it all can take a second or two: call it off the UI thread.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from workbench.errors import WorkbenchError
from workbench.pipeline.plots import Figure, figures
from workbench.pipeline.report import policy_table, rm_table, stage_table, stage_summary

REPORT, RECIPE = "report.json", "recipe.yaml"


@dataclass
class View:
    source: str  # what was opened, as typed (a root, or several run dirs)
    root: Path | None  # the pipeline root (None: picked runs)
    report: dict | None  # report.json (None: not written yet, or runs were picked)
    stages: list[dict] = field(default_factory=list)  # report.stage_summary dicts (+ wall_s)
    figures: list[Figure] = field(default_factory=list)
    standings: list[dict] = field(default_factory=list)  # chinchilla.standing + name, stage, source


def split_paths(text: str) -> list[str]:
    """What a user typed in the path bar: one path (spaces allowed when it exists), or several, shell-quoted."""
    text = text.strip()
    if not text:
        raise WorkbenchError("type a pipeline root (a folder with report.json or recipe.yaml) or run directories")
    if Path(text).expanduser().exists():
        return [text]
    try:
        return shlex.split(text)
    except ValueError as e:
        raise WorkbenchError(f"cannot read the paths {text!r}: {e}") from None


def is_pipeline_root(path: Path) -> bool:
    return path.is_dir() and ((path / RECIPE).is_file() or (path / REPORT).is_file())


def read_report(root: Path) -> dict:
    """ROOT/report.json, checked by use: the tables it makes must build (a damaged file says so here)."""
    path = root / REPORT
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise WorkbenchError(f"cannot read {path}: {e.strerror}") from None
    except (UnicodeDecodeError, ValueError) as e:
        raise WorkbenchError(f"{path}: not valid JSON ({e})") from None
    try:
        if not isinstance(report, dict):
            raise TypeError("not an object")
        for key in ("rows", "stages", "reward_models", "examples"):
            if not isinstance(report.get(key), list):
                raise KeyError(key)
        policy_table(report, "greedy"), policy_table(report, "sampled"), stage_table(report), rm_table(report)
        for ex in report["examples"]:
            ex["prompt"], dict(ex["answers"])
    except (KeyError, TypeError, AttributeError, IndexError, ValueError) as e:
        raise WorkbenchError(f"{path}: not a workbench report card (bad or missing field {e})") from None
    return report


def _recipe_stages(root: Path) -> list[tuple[str, str | None]]:
    """(name, stage kind) in the recipe's order; [] when the copy cannot be read (the folders are used)."""
    from workbench.io import read_yaml

    try:
        stages = read_yaml(root / RECIPE).get("stages")
    except (WorkbenchError, AttributeError):
        return []
    if not isinstance(stages, dict):
        return []
    return [(str(name), spec.get("stage") if isinstance(spec, dict) else None) for name, spec in stages.items()]


def _summaries(runs: list[tuple[Path, str, str | None]]) -> list[dict]:
    from workbench.train.runs import read_run

    out = []
    for path, name, kind in runs:
        kind = kind or read_run(path, name).stage or "?"
        out.append(stage_summary(path, name, kind))
    return out


def root_stages(root: Path) -> list[dict]:
    """The stages of a root without its report card: the recipe's, else every run directory in it."""
    from workbench.pipeline.recipe import RESERVED
    from workbench.pipeline.runner import read_timings
    from workbench.train.runs import is_run_dir

    named = _recipe_stages(root)
    if not named:
        named = [(d.name, None) for d in sorted(root.iterdir())
                 if d.name not in RESERVED and not d.name.startswith(".") and is_run_dir(d)]
    stages = _summaries([(root / name, name, kind) for name, kind in named])
    timings = read_timings(root)
    for s in stages:
        s["wall_s"] = timings.get(s["name"])
    return stages


def standings(stages: list[dict]) -> list[dict]:
    """Where each run stands against Chinchilla's ~20 tokens per parameter (runs never started are left out)."""
    from workbench.eval.chinchilla import run_standing, standing

    out = []
    for s in stages:
        if s.get("status") == "not run":
            continue
        try:
            st, source = run_standing(s["run_dir"]), "checkpoint"
        except WorkbenchError:  # no checkpoint yet (or none kept): the run's metrics.jsonl
            if not (s.get("params") and s.get("tokens") is not None):
                continue
            st, source = standing(s["params"], s["tokens"]), "metrics.jsonl"
        out.append({"name": s["name"], "stage": s["stage"], **st, "source": source})
    return out


def open_view(spec: str | list[str]) -> View:
    """A pipeline root, or one or more run directories. Raises WorkbenchError for anything else."""
    from workbench.train.runs import is_run_dir
    from workbench.train.watch import run_names

    paths = split_paths(spec) if isinstance(spec, str) else list(spec)
    source = spec if isinstance(spec, str) else " ".join(spec)
    if not paths:
        raise WorkbenchError("give a pipeline root or run directories")
    found = [Path(p).expanduser() for p in paths]
    for p, typed in zip(found, paths):
        if not p.exists():
            raise WorkbenchError(f"no such folder: {typed}")
        if not p.is_dir():
            raise WorkbenchError(f"{typed} is a file: give a pipeline root (a folder with report.json or "
                                 f"recipe.yaml) or a run directory")
    if len(found) == 1 and is_pipeline_root(found[0]):
        root = found[0]
        report = read_report(root) if (root / REPORT).is_file() else None
        if report is not None:
            stages = [dict(s, run_dir=str(root / s["name"])) for s in report["stages"]]  # the root may have moved
        else:
            stages = root_stages(root)
        return View(source, root, report, stages, figures(stages), standings(stages))
    roots = [typed for p, typed in zip(found, paths) if is_pipeline_root(p)]
    if roots:
        raise WorkbenchError(f"open one pipeline root at a time, or run directories only (got {', '.join(paths)})")
    bad = [typed for p, typed in zip(found, paths) if not is_run_dir(p)]
    if bad:
        raise WorkbenchError(f"{', '.join(bad)}: neither a pipeline root (no report.json or recipe.yaml) nor a "
                             f"run directory (no lineage.json, config.yaml or metrics.jsonl)")
    stages = _summaries([(p, name, None) for p, name in zip(found, run_names(found))])
    for s in stages:
        s["wall_s"] = None  # the pipeline's wall clock: only a pipeline root has one
    return View(source, None, None, stages, figures(stages), standings(stages))
