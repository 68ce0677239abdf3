"""Run a recipe end to end: tokenizer -> every stage -> eval of every report row -> the report card.

    from workbench.pipeline.recipe import load_recipe
    from workbench.pipeline.runner import run_pipeline
    result = run_pipeline(load_recipe("cpu-demo"), "runs/cpu-demo", on_event=print)

ROOT/<name> is an ordinary run directory per stage, trained by the same engine call as
`workbench train` (workbench.train.engine.train), so lineage.json, resume and the Runs pane work as
for any run. Running it again is cheap and safe, like make:
- a finished stage is skipped, unless its parent, reward model or trained tokenizer has changed since
  (lineage.json records the parents' paths and sha256), or --force names it: then it is trained again
  (a finished run whose parent lies outside ROOT is refused instead: it is not this pipeline's to delete);
- a stopped, crashed or interrupted stage is resumed from its latest checkpoint (engine resume);
- ROOT/tokenizer/tokenizer.tiktoken is trained once (written atomically) and fed to pretraining;
- ROOT/eval/<name>.json (one per report row and reward model) is reused while it is newer than the
  checkpoints it measured.
A `Control` stops the stage in progress after its current step (Ctrl-C in the CLI); the pipeline
then ends with status "stopped", and the same command continues it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from workbench.errors import WorkbenchError
from workbench.io import atomic_write_text
from workbench.pipeline.recipe import Recipe, StageSpec

TOKENIZER = Path("tokenizer") / "tokenizer.tiktoken"
EVAL = "eval"
TIMINGS = "timings.json"  # wall-clock seconds per step, setup included, summed over the sessions


def read_timings(root: Path) -> dict[str, float]:
    try:
        data = json.loads((Path(root) / TIMINGS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, (int, float))} if isinstance(data, dict) else {}


def _add_time(root: Path, name: str, seconds: float, reset: bool = False) -> None:
    timings = read_timings(root)
    timings[name] = round(seconds + (0.0 if reset else timings.get(name, 0.0)), 3)
    atomic_write_text(root / TIMINGS, json.dumps(timings, indent=2) + "\n")


def evaluate(ckpt, **kwargs) -> dict:
    """The one place the pipeline calls the evaluator (`workbench eval`'s core)."""
    from workbench.eval.evaluate import evaluate_checkpoint

    return evaluate_checkpoint(str(ckpt), **kwargs)


def plan(recipe: Recipe, only=None) -> list[str]:
    """The steps a run goes through, in order (what the CLI's chain progress counts)."""
    selected = _selected(recipe, only)
    steps = ["tokenizer"] if recipe.tokenizer is not None and "tokenizer" in selected else []
    return steps + [n for n in recipe.stages if n in selected] + ["eval", "report"]


def _selected(recipe: Recipe, only) -> set[str]:
    names = ["tokenizer", *recipe.stages]
    if not only:
        return set(names)
    for name in only:
        if name not in names:
            raise WorkbenchError(f"--only {name}: not a stage of {recipe.path} (stages: {', '.join(names)})")
    return set(only)


def run_pipeline(recipe: Recipe, root: str | Path, *, only=None, force: bool = False, control=None,
                 on_event=None) -> dict:
    """Train what is missing, evaluate, write the report. Returns {status, root, stages, report}."""
    from workbench.train.engine import Control

    root = Path(root).expanduser()
    emit = on_event or (lambda event: None)
    control = control or Control()
    selected = _selected(recipe, only)
    forced = selected if force else set()
    if root.exists() and not root.is_dir():
        raise WorkbenchError(f"--out {root}: is a file, not a folder; choose another pipeline root")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WorkbenchError(f"--out {root}: cannot create the pipeline root ({e.strerror})") from None
    emit({"event": "plan", "steps": plan(recipe, only), "root": str(root)})
    atomic_write_text(root / "recipe.yaml", recipe.path.read_text(encoding="utf-8"))
    stages: dict[str, str] = {}
    if "tokenizer" in selected and recipe.tokenizer is not None:
        _tokenizer(recipe, root, "tokenizer" in forced, emit)
    for spec in recipe.stages.values():
        if spec.name not in selected:
            continue
        if control.stopped:  # Ctrl-C between two stages
            return {"status": "stopped", "root": str(root), "stages": stages, "report": None, "stopped_at": spec.name}
        status = _stage(recipe, spec, root, spec.name in forced, control, emit)
        stages[spec.name] = status
        if status != "finished":  # stopped (Ctrl-C) or interrupted: the next run continues it
            return {"status": status, "root": str(root), "stages": stages, "report": None, "stopped_at": spec.name}
    emit({"event": "begin", "name": "eval", "kind": "eval", "action": "run"})
    evals = evaluate_rows(recipe, root, emit, control)
    if control.stopped:
        return {"status": "stopped", "root": str(root), "stages": stages, "report": None, "stopped_at": "eval"}
    emit({"event": "done", "name": "eval", "status": "finished"})
    emit({"event": "begin", "name": "report", "kind": "report", "action": "run"})
    from workbench.pipeline.report import build_report, write_report

    report = build_report(recipe, root, evals)
    write_report(report, root)
    emit({"event": "done", "name": "report", "status": "finished"})
    return {"status": "finished", "root": str(root), "stages": stages, "report": report}


# ------------------------------------------------------------------------------------ the tokenizer
def _tokenizer(recipe: Recipe, root: Path, force: bool, emit) -> None:
    from workbench.tokenizer_train import train_tokenizer

    out = root / TOKENIZER
    if out.is_file() and not force:
        emit({"event": "begin", "name": "tokenizer", "kind": "tokenizer", "action": "skip", "why": f"{out} exists"})
        return
    spec = recipe.tokenizer
    emit({"event": "begin", "name": "tokenizer", "kind": "tokenizer", "action": "run",
          "why": f"vocab_size {spec.vocab_size} on {', '.join(spec.data)}"})
    t0 = time.perf_counter()
    report = train_tokenizer(spec.data, spec.vocab_size, out, force=True)  # written atomically
    _add_time(root, "tokenizer", time.perf_counter() - t0, reset=True)
    atomic_write_text(out.with_name("report.json"), json.dumps(report, indent=2) + "\n")
    emit({"event": "done", "name": "tokenizer", "status": "finished", "seconds": report["train_seconds"]})


# ------------------------------------------------------------------------------------ one stage
def stage_overrides(recipe: Recipe, spec: StageSpec, root: Path) -> dict:
    """The recipe's `set` plus the wiring: parent, reward model and trained tokenizer under ROOT."""
    values = dict(spec.set)
    if spec.parent is not None:
        values["init_from"] = str(root / spec.parent)
    if spec.reward_model is not None:
        values["reward_model"] = str(root / spec.reward_model)
    if recipe.tokenizer is not None and spec.stage == "pretrain" and spec.parent is None:
        values["tokenizer"] = str(root / TOKENIZER)
    return values


def _stale(lineage: dict, key: str, source: Path) -> str | None:
    """Why a finished run's input `key` (parent, or inputs.reward_model) is not `source`'s checkpoint now."""
    from workbench.model.checkpoint import weights_file
    from workbench.train.checkpoint import file_sha256, resolve_checkpoint

    entry = lineage.get("parent") if key == "parent" else (lineage.get("inputs") or {}).get(key)
    try:
        current = resolve_checkpoint(source).resolve()
    except WorkbenchError as e:
        raise WorkbenchError(f"{source}: needed as {key}: {e}") from None
    if not isinstance(entry, dict) or entry.get("path") != str(current):
        return f"its {key} is now {current}"
    if entry.get("sha256") != file_sha256(weights_file(current)):
        return f"its {key} {current} has changed"
    return None


def _own(lineage: dict, key: str, source: Path, run_dir: Path, name: str) -> None:
    """Retraining deletes the run: refuse when it was not trained from this root's `source` stage
    (an --out that holds runs of its own), rather than delete someone's work."""
    entry = lineage.get("parent") if key == "parent" else (lineage.get("inputs") or {}).get(key)
    old = Path(entry["path"]) if isinstance(entry, dict) and isinstance(entry.get("path"), str) else None
    if old is not None and not old.is_relative_to(source.resolve()):
        raise WorkbenchError(f"{run_dir}: a finished run that was not trained by this pipeline (its {key} is {old}, "
                             f"not under {source}); move it away, choose another --out, or retrain it with "
                             f"--force --only {name}")


def _decide(recipe: Recipe, spec: StageSpec, run_dir: Path, root: Path, force: bool) -> tuple[str, str]:
    """(action, why): new | resume | skip | retrain."""
    from workbench.train.runs import is_run_dir, read_run

    if not run_dir.exists() or (run_dir.is_dir() and not any(run_dir.iterdir())):
        return "new", "not trained yet"
    if not is_run_dir(run_dir):
        raise WorkbenchError(f"{run_dir} exists but is not a run directory; move it away, or choose another --out")
    info = read_run(run_dir, spec.name)
    if force:
        return "retrain", "--force"
    if info.status != "finished":
        if info.status == "unknown":
            raise WorkbenchError(f"{run_dir}: cannot tell how this run stands ({info.error}); "
                                 f"re-run with --force --only {spec.name} to train it again")
        return "resume", f"{info.status} at step {info.step}"
    try:
        lineage = json.loads((run_dir / "lineage.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        lineage = {}
    for key, source in (("parent", spec.parent), ("reward_model", spec.reward_model)):
        why = _stale(lineage, key, root / source) if source is not None else None
        if why:
            _own(lineage, key, root / source, run_dir, spec.name)
            return "retrain", why
    if "tokenizer" in stage_overrides(recipe, spec, root) and "tokenizer" not in spec.set:
        from workbench.model.checkpoint import TOKENIZER_FILE
        from workbench.train.checkpoint import file_sha256, resolve_checkpoint

        used = resolve_checkpoint(run_dir) / TOKENIZER_FILE  # the checkpoint keeps a copy of its tokenizer
        if not used.is_file() or file_sha256(used) != file_sha256(root / TOKENIZER):
            return "retrain", f"{root / TOKENIZER} has changed since it was trained"
    return "skip", f"finished at step {info.step}"


def _stage(recipe: Recipe, spec: StageSpec, root: Path, force: bool, control, emit) -> str:
    from workbench.train.config import load_config
    from workbench.train.engine import train
    from workbench.train.runs import delete_run

    run_dir = root / spec.name
    for source in (spec.parent, spec.reward_model):
        if source is not None and not _finished(root / source):
            raise WorkbenchError(f"{spec.name} needs {source}, which has not finished ({root / source}); "
                                 f"run the pipeline without --only, or add --only {source}")
    action, why = _decide(recipe, spec, run_dir, root, force)
    emit({"event": "begin", "name": spec.name, "kind": "stage", "stage": spec.stage, "action": action, "why": why,
          "run_dir": str(run_dir)})
    if action == "skip":
        emit({"event": "done", "name": spec.name, "status": "finished", "skipped": True})
        return "finished"
    forward = [lambda record: emit({**record, "name": spec.name})]
    t0 = time.perf_counter()
    try:
        if action == "resume":
            result = train(None, run_dir, resume=True, control=control, callbacks=forward)
        else:
            cfg = load_config(spec.stage, spec.config, stage_overrides(recipe, spec, root))
            if action == "retrain":
                delete_run(run_dir)
            result = train(cfg, run_dir, control=control, callbacks=forward)
    except WorkbenchError as e:
        raise WorkbenchError(f"stage {spec.name} ({run_dir}): {e}") from None
    finally:
        _add_time(root, spec.name, time.perf_counter() - t0, reset=action != "resume")
    emit({"event": "done", "name": spec.name, "status": result["status"], "checkpoint": result["checkpoint"]})
    return result["status"]


def _finished(run_dir: Path) -> bool:
    from workbench.train.runs import is_run_dir, read_run

    return is_run_dir(run_dir) and read_run(run_dir, run_dir.name).status == "finished"


# ------------------------------------------------------------------------------------ evaluation
def _ckpt(root: Path, name: str | None) -> Path | None:
    """The final checkpoint of a finished stage (None when there is no such stage or it has not finished)."""
    from workbench.train.checkpoint import resolve_checkpoint

    if name is None or not _finished(root / name):
        return None
    return resolve_checkpoint(root / name).resolve()


def _fresh(path: Path, ckpts: list[Path], settings: dict, files: list[str] = ()) -> bool:
    """A cached eval JSON is reused while it is newer than every checkpoint it measured and every data
    file it read (regenerated sample data is measured again), and was made with the same eval settings
    (files, token budget, reference, reward model)."""
    from workbench.model.checkpoint import weights_file

    if not path.is_file():
        return False
    try:
        cached = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    stamp = path.stat().st_mtime_ns
    return (isinstance(cached, dict) and cached.get("checkpoint") == str(ckpts[0])
            and cached.get("settings") == settings
            and all(stamp > weights_file(c).stat().st_mtime_ns for c in ckpts)
            and all(stamp > Path(f).expanduser().stat().st_mtime_ns for f in files))


def evaluate_rows(recipe: Recipe, root: Path, emit=lambda event: None, control=None) -> dict[str, dict]:
    """{stage name: eval dict} for every report row and every reward model whose stage has finished.
    A stopped `control` ends it between two rows (the rows done so far are cached)."""
    ev = recipe.eval
    ref, rm = _ckpt(root, ev.ref), _ckpt(root, ev.rm)
    names = list(dict.fromkeys([*recipe.rows.values(), *(n for n, s in recipe.stages.items() if s.stage == "rm")]))
    out: dict[str, dict] = {}
    for i, name in enumerate(names):
        if control is not None and control.stopped:
            break
        ckpt = _ckpt(root, name)
        if ckpt is None:
            emit({"event": "eval_row", "name": name, "index": i, "total": len(names), "missing": True})
            continue
        is_rm = recipe.stages[name].stage == "rm"
        row_ref = ref if ref != ckpt else None  # KL of the reference to itself is 0 by definition
        inputs = [ckpt] + ([] if is_rm else [c for c in (row_ref, rm) if c is not None])
        settings = {"pairs": ev.pairs, "limit": ev.limit, "max_new_tokens": ev.max_new_tokens} if is_rm else {
            "prompts": ev.prompts, "heldout": ev.heldout, "text": ev.text, "limit": ev.limit,
            "max_new_tokens": ev.max_new_tokens, "ref": str(row_ref) if row_ref else None, "rm": str(rm) if rm else None}
        path = root / EVAL / f"{name}.json"
        files = [ev.pairs] if is_rm else [ev.prompts, ev.text, *ev.heldout]
        cached = _fresh(path, inputs, settings, [f for f in files if f])
        emit({"event": "eval_row", "name": name, "index": i, "total": len(names), "cached": cached})
        if cached:
            out[name] = json.loads(path.read_text(encoding="utf-8"))
            continue
        t0 = time.perf_counter()
        common = {"max_new_tokens": ev.max_new_tokens, "limit": ev.limit,
                  "progress": lambda task, done, total, name=name: emit(
                      {"event": "eval_progress", "name": name, "task": task, "done": done, "total": total})}
        result = {}
        if is_rm and ev.pairs:
            result = evaluate(ckpt, pairs=ev.pairs, **common)
        elif not is_rm and (ev.prompts or ev.text):
            result = evaluate(ckpt, prompts=ev.prompts, text=ev.text, rm=settings["rm"], ref=settings["ref"], **common)
        if not is_rm:
            result["heldout"] = {f: evaluate(ckpt, prompts=f, decodings=("greedy",), **common).get("greedy") for f in ev.heldout}
        result.update(checkpoint=str(ckpt), stage=name, settings=settings,
                      eval_seconds=round(time.perf_counter() - t0, 3))
        atomic_write_text(path, json.dumps(result, indent=2) + "\n")
        out[name] = result
    return out
