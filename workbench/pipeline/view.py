"""What a pipeline root (or a handful of run directories) has to show: the TUI's Report pane reads it here.

    from workbench.pipeline.view import open_view
    view = open_view("runs/cpu-demo")            # report.json if written, else what the run dirs hold
    view = open_view(["runs/sft", "runs/dpo"])   # picked runs: their stages, curves and standing

A finished root has its report card (ROOT/report.json, build_report's dict); a root whose pipeline
is still running or was stopped has none yet, so its stages are read from their run directories
(in the order of ROOT/recipe.yaml, else of the folders found), like build_report reads them. The curves
are plots.figures of the same stages, the Chinchilla standing is run_standing per run (parameters
from the checkpoint's model config), else the stage's own numbers (report.json's, or its metrics.jsonl:
parameters of its start event, tokens summed). Reading it all can take a second or two: call it off the UI thread.

report.json is checked field by field here (check_report), so that everything the pane shows is of the
kind it formats: a damaged card is one WorkbenchError naming the field ("rows[2].greedy.accuracy: ..."),
never a crash in the app. A PPO run's start event counts what it trains, the policy and its value
model; its standing is the policy's (the model it produces and is evaluated as): without a checkpoint,
the size of the stage it started from (the recipe's `from`, or lineage.json's parent).
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from workbench.errors import WorkbenchError
from workbench.pipeline.plots import Figure, figures
from workbench.pipeline.report import COLUMNS, policy_table, rm_table, stage_table, stage_summary
from workbench.train.follow import number

REPORT, RECIPE = "report.json", "recipe.yaml"


@dataclass
class View:
    source: str  # what was opened, as typed (a root, or several run dirs)
    root: Path | None  # the pipeline root (None: picked runs)
    report: dict | None  # report.json (None: not written yet, or runs were picked)
    stages: list[dict] = field(default_factory=list)  # report.stage_summary dicts (+ wall_s)
    figures: list[Figure] = field(default_factory=list)
    # chinchilla.standing + name, stage, source; or name, stage, source and `error` (why it has none)
    standings: list[dict] = field(default_factory=list)


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


# ------------------------------------------------------------------------------------ report.json, checked
class _Bad(Exception):
    """A field of report.json that is not what the pane formats (the message names it)."""


def _finite(v) -> bool:
    return number(v) is not None


# kind -> (what it must be, test). "real" lets NaN/inf through: a stage's parameter count, whose bad
# standing is said on its own row (the tables print such a number as it is).
_KINDS = {
    "str": ("a string", lambda v: isinstance(v, str)),
    "int": ("a whole number", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    "num": ("a finite number", _finite),
    "amount": ("a finite number >= 0", lambda v: _finite(v) and v >= 0),
    "real": ("a number", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)),
    "bool": ("true/false", lambda v: isinstance(v, bool)),
    "scalar": ("a string or a number", lambda v: isinstance(v, str) or _finite(v)),
    "obj": ("an object", lambda v: isinstance(v, dict)),
    "list": ("a list", lambda v: isinstance(v, list)),
}


def _want(obj: dict, key: str, kind: str, where: str):
    """obj[key] of `kind` ("num?": null or missing allowed, and then set to None so the tables find it)."""
    optional = kind.endswith("?")
    what, ok = _KINDS[kind.rstrip("?")]
    name = f"{where}.{key}" if where else key
    if obj.get(key) is None:
        if not optional:
            raise _Bad(f"{name}: {'missing' if key not in obj else 'null'}, expected {what}")
        obj[key] = None
        return None
    value = obj[key]
    if not ok(value):
        shown = repr(value)
        raise _Bad(f"{name}: expected {what}{' or null' if optional else ''}, got "
                   f"{shown if len(shown) <= 40 else shown[:39] + '…'}")
    return value


def _items(obj: dict, key: str, where: str = "") -> list[tuple[str, dict]]:
    """obj[key], a list of objects: (its place, the object) each."""
    name = f"{where}.{key}" if where else key
    out = []
    for i, item in enumerate(_want(obj, key, "list", where)):
        if not isinstance(item, dict):
            raise _Bad(f"{name}[{i}]: expected an object, got {type(item).__name__}")
        out.append((f"{name}[{i}]", item))
    return out


def _values(obj: dict, key: str, kind: str, where: str) -> dict:
    """obj[key], an object (or null: {}) whose values are all of `kind`."""
    inner = _want(obj, key, "obj?", where)
    if inner is None:
        inner = obj[key] = {}
    for k in list(inner):
        _want(inner, k, kind, f"{where}.{key}")
    return inner


def check_report(report) -> dict:
    """report.json's dict with every field the pane shows of the kind it formats; raises _Bad naming the first
    that is not. Optional fields that are missing are set to None (an older card lacks some)."""
    if not isinstance(report, dict):
        raise _Bad(f"expected an object, got {type(report).__name__}")
    for key in ("recipe", "root", "written"):
        _want(report, key, "str?", "")
    for key in ("wall_s", "eval_s"):
        _want(report, key, "amount?", "")
    if _want(report, "eval", "obj?", "") is None:
        report["eval"] = {}
    _want(report["eval"], "ref", "str?", "eval")
    rows = _items(report, "rows")
    for where, row in rows:
        _want(row, "label", "str", where), _want(row, "stage", "str", where), _want(row, "evaluated", "bool", where)
        for section in ("greedy", "sampled"):
            part = _values(row, section, "num?", where)
            for key in (*(k for k, _, _ in COLUMNS), "n"):
                _want(part, key, "num?", f"{where}.{section}")
        _values(row, "heldout", "num?", where)
    for _, row in rows:  # the table's held-out columns are the first row's
        for h in rows[0][1]["heldout"]:
            row["heldout"].setdefault(h, None)
    for where, rm in _items(report, "reward_models"):
        _want(rm, "stage", "str", where)
        if _want(rm, "pairs", "obj?", where) is not None:
            for key in ("n", "accuracy", "margin"):
                _want(rm["pairs"], key, "num?", f"{where}.pairs")
            _values(rm["pairs"], "by_kind", "num?", f"{where}.pairs")
    for where, s in _items(report, "stages"):
        name = _want(s, "name", "str", where)
        if name in ("", ".", "..") or "/" in name or "\\" in name:
            raise _Bad(f"{where}.name: expected a folder name in the root, got {name!r}")
        _want(s, "stage", "str", where), _want(s, "status", "str", where)
        for key in ("step", "max_steps"):
            _want(s, key, "int?", where)
        for key in ("wall_s", "train_s", "tokens"):
            _want(s, key, "amount?", where)
        _want(s, "params", "real?", where)
    if _want(report, "tokenizer", "obj?", "") is not None:
        t = report["tokenizer"]
        _want(t, "path", "str?", "tokenizer"), _want(t, "vocab_size", "int?", "tokenizer")
        _want(t, "wall_s", "amount?", "tokenizer")
    if _want(report, "pretraining", "obj?", "") is not None:
        _want(report["pretraining"], "stage", "str", "pretraining")
        for key in ("params", "tokens", "tokens_per_param", "chinchilla", "chinchilla_tokens"):
            _want(report["pretraining"], key, "num", "pretraining")
    for where, ex in _items(report, "examples"):
        _want(ex, "prompt", "str?", where), _want(ex, "reference", "scalar?", where)
        answers = _want(ex, "answers", "obj", where)
        for label in answers:
            if _want(answers, label, "obj?", f"{where}.answers") is not None:
                _want(answers[label], "text", "str?", f"{where}.answers.{label}")
                _want(answers[label], "correct", "bool?", f"{where}.answers.{label}")
    return report


def read_report(root: Path) -> dict:
    """ROOT/report.json, checked field by field (check_report): a damaged file says which field, here."""
    path = root / REPORT
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise WorkbenchError(f"cannot read {path}: {e.strerror}") from None
    except (UnicodeDecodeError, ValueError) as e:
        raise WorkbenchError(f"{path}: not valid JSON ({e})") from None
    if isinstance(report, dict) and not {"rows", "stages"} & set(report):
        # a tokenizer's or prepared data's report.json (`workbench tokenizer train --out`, `data prepare`)
        raise WorkbenchError(f"{root} is not a pipeline root: its report.json is another command's report, not a "
                             f"report card (no rows or stages); open the folder `workbench pipeline --out` wrote")
    try:
        check_report(report)
    except _Bad as e:
        raise WorkbenchError(f"{path}: not a workbench report card ({e})") from None
    try:  # the checks above are what these need; a miss there is a bug, still said as a bad card
        policy_table(report, "greedy"), policy_table(report, "sampled"), stage_table(report), rm_table(report)
    except (KeyError, TypeError, AttributeError, IndexError, ValueError, OverflowError) as e:
        raise WorkbenchError(f"{path}: not a workbench report card ({type(e).__name__}: {e})") from None
    return report


# ------------------------------------------------------------------------------------ stages and standing
def _recipe_stages(root: Path) -> list[tuple[str, str | None, str | None]]:
    """(name, stage kind, the stage it starts from) in the recipe's order; [] when the copy cannot be read."""
    from workbench.io import read_yaml

    try:
        stages = read_yaml(root / RECIPE).get("stages")
    except (WorkbenchError, AttributeError):
        return []
    if not isinstance(stages, dict):
        return []
    out = []
    for name, spec in stages.items():
        spec = spec if isinstance(spec, dict) else {}
        kind, parent = spec.get("stage"), spec.get("from")
        out.append((str(name), kind if isinstance(kind, str) else None, parent if isinstance(parent, str) else None))
    return out


def _summaries(runs: list[tuple[Path, str, str | None]]) -> list[dict]:
    from workbench.train.runs import read_run

    out = []
    for path, name, kind in runs:
        kind = kind or read_run(path, name).stage or "?"
        try:
            s = stage_summary(path, name, kind)
        except (TypeError, ValueError, OverflowError) as e:  # a tokens field that is not a count
            raise WorkbenchError(f"{path / 'metrics.jsonl'}: a train record's tokens is not a count ({e})") from None
        if not _KINDS["real"][1](s["params"]):
            s["params"] = None  # metrics.jsonl may hold anything: the stage table prints numbers only
        out.append(s)
    return out


def root_stages(root: Path) -> list[dict]:
    """The stages of a root without its report card: the recipe's, else every run directory in it."""
    from workbench.pipeline.recipe import RESERVED
    from workbench.pipeline.runner import read_timings
    from workbench.train.runs import is_run_dir

    named = [(name, kind) for name, kind, _ in _recipe_stages(root)]
    if not named:
        named = [(d.name, None) for d in sorted(root.iterdir())
                 if d.name not in RESERVED and not d.name.startswith(".") and is_run_dir(d)]
    stages = _summaries([(root / name, name, kind) for name, kind in named])
    timings = read_timings(root)
    for s in stages:
        s["wall_s"] = timings.get(s["name"])
    return stages


def _parent(s: dict, stages: list[dict], recipe: dict[str, str]) -> dict | None:
    """The stage `s` started from, among `stages`: the recipe's `from`, else lineage.json's parent."""
    from workbench.train.runs import read_run

    by_name = {t["name"]: t for t in stages}
    if recipe.get(s["name"]) in by_name:
        return by_name[recipe[s["name"]]]
    parent = read_run(Path(s["run_dir"]), s["name"]).parent
    if parent is None:
        return None
    return next((t for t in stages if t is not s and Path(t["run_dir"]).resolve() == parent), None)


def _stage_params(s: dict, stages: list[dict], recipe: dict[str, str]) -> tuple[object, str | None]:
    """(the parameters to stand `s` on, a note on where they come from); PPO: its policy's, see the top."""
    from workbench.model.checkpoint import read_meta
    from workbench.train.runs import read_run

    if s["stage"] != "ppo":
        return s.get("params"), None
    parent = _parent(s, stages, recipe)
    if parent is not None and number(parent.get("params")) is not None:
        return parent["params"], f"policy = {parent['name']}"
    ckpt = read_run(Path(s["run_dir"]), s["name"]).parent_checkpoint  # a parent not opened with it
    try:
        return read_meta(ckpt)["model"].stats()["params"], f"policy = {Path(ckpt).name}"
    except (WorkbenchError, OSError, TypeError, KeyError):
        raise WorkbenchError("its start event's params count the policy and its value model, and neither the "
                             "stage it started from nor its checkpoint is here to give the policy's size") from None


def standings(stages: list[dict], source: str = "metrics.jsonl", recipe: dict[str, str] | None = None) -> list[dict]:
    """Where each run stands against Chinchilla's ~20 tokens per parameter (runs never started are left out).
    `source`: where the stages' numbers come from; `recipe`: stage name -> the stage it starts from. A run
    whose numbers cannot stand (no parameters, a negative count) gets a row with `error` saying why."""
    from workbench.eval.chinchilla import run_standing, standing

    out = []
    for s in stages:
        if s.get("status") == "not run":
            continue
        row = {"name": s["name"], "stage": s["stage"]}
        try:
            st = run_standing(s["run_dir"])
            out.append({**row, **st, "source": "checkpoint"})
            continue
        except WorkbenchError:  # no checkpoint yet (or none kept): the stage's own numbers
            pass
        if s.get("params") is None:
            continue  # started, but its start event is not logged yet
        try:
            params, note = _stage_params(s, stages, recipe or {})
            if s.get("tokens") is None:
                raise WorkbenchError("no tokens recorded")
            # numbers by now (check_report, _summaries); standing refuses a count <= 0 or NaN, saying so
            out.append({**row, **standing(params, s["tokens"]), "source": f"{source} ({note})" if note else source})
        except WorkbenchError as e:
            out.append({**row, "error": str(e), "source": source})
    return out


def _unique(found: list[Path], typed: list[str]) -> tuple[list[Path], list[str]]:
    """The same folder named twice (runs/sft ./runs/sft) is opened once."""
    seen, out_found, out_typed = set(), [], []
    for p, t in zip(found, typed):
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            out_found.append(p)
            out_typed.append(t)
    return out_found, out_typed


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
    found, paths = _unique(found, paths)
    if len(found) == 1 and is_pipeline_root(found[0]):
        root = found[0]
        report = read_report(root) if (root / REPORT).is_file() else None
        if report is not None:
            stages = [dict(s, run_dir=str(root / s["name"])) for s in report["stages"]]  # the root may have moved
        else:
            stages = root_stages(root)
        recipe = {name: parent for name, _, parent in _recipe_stages(root) if parent}
        return View(source, root, report, stages, figures(stages),
                    standings(stages, REPORT if report is not None else "metrics.jsonl", recipe))
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
