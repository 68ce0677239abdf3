"""The report card of a pipeline root: ROOT/report.json, ROOT/report.md and a terminal table.

    from workbench.pipeline.report import build_report, write_report, print_report
    report = build_report(recipe, "runs/cpu-demo", evals)   # evals: runner.evaluate_rows(...)
    write_report(report, "runs/cpu-demo"); print_report(report, console)

One row per policy the recipe's `report.rows` names (base, SFT, DPO, PPO, PPO without KL), with the
eval metrics of its greedy answers (KL on its sampled answers, where it is defined); the reward
model's pairwise accuracy; wall time and tokens of every stage (from its metrics.jsonl); the
pretraining model's parameters and tokens per parameter against Chinchilla's ~20; a few held-out
prompts with every row's answer side by side; and the curves (plots.py).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from workbench.io import atomic_write_text

CHINCHILLA = 20  # tokens per parameter at the compute-optimal point (Hoffmann et al., 2022)
# (key in report rows, column header, format): rates as percentages, the rest as numbers.
COLUMNS = (("compliance", "compliance", "pct"), ("eos_rate", "EOS", "pct"), ("accuracy", "accuracy", "pct"),
           ("true_reward", "true reward", "num"), ("rm_score", "RM score", "num"), ("kl_ref", "KL", "num"),
           ("length", "length", "tokens"), ("rude_rate", "rude", "pct"), ("refusal_rate", "refusal", "pct"))


def read_metrics(run_dir: Path) -> list[dict]:
    """Every record of RUN/metrics.jsonl (lines that are not JSON objects are skipped)."""
    out = []
    try:
        lines = (Path(run_dir) / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    except OSError:
        return out
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            out.append(record)
    return out


def stage_summary(run_dir: Path, name: str, stage: str) -> dict:
    """Status, steps, the engine's training time (all sessions), tokens trained and parameters of one run."""
    from workbench.train.runs import is_run_dir, read_run

    summary = {"name": name, "stage": stage, "run_dir": str(run_dir), "status": "not run", "step": None,
               "max_steps": None, "train_s": None, "tokens": None, "params": None}
    if not is_run_dir(run_dir):
        return summary
    info = read_run(run_dir, name)
    records = read_metrics(run_dir)
    train = [r for r in records if r.get("event") == "train"]
    ends = [r for r in records if r.get("event") == "end" and r.get("elapsed") is not None]
    starts = [r for r in records if r.get("event") == "start"]
    summary.update(status=info.status, step=info.step, max_steps=info.max_steps,
                   tokens=sum(int(r.get("tokens") or 0) for r in train),
                   params=starts[-1].get("params") if starts else None)
    # The end event's elapsed counts every session (a resume starts from the checkpoint's clock) plus
    # the final evaluation and save; a run that was killed has only its steps' clock.
    if ends:
        summary["train_s"] = ends[-1]["elapsed"]
    elif train:
        summary["train_s"] = train[-1].get("elapsed")
    return summary


def _row_metrics(result: dict | None, section: str) -> dict:
    part = (result or {}).get(section) or {}
    out = {key: part.get(key) for key, _, _ in COLUMNS}
    if out["kl_ref"] is None:  # KL is measured on the model's own sampled answers
        out["kl_ref"] = ((result or {}).get("sampled") or {}).get("kl_ref")
    out["n"] = part.get("n")
    return out


def _examples(recipe, evals: dict, count: int) -> list[dict]:
    """The first `count` prompts of the eval, each with every row's greedy answer."""
    rows = [(label, evals.get(name) or {}) for label, name in recipe.rows.items()]
    first = next((r.get("answers") for _, r in rows if r.get("answers")), None) or []
    out = []
    for item in first[:count]:
        answers = {}
        for label, result in rows:
            match = next((a for a in result.get("answers") or () if a.get("prompt") == item.get("prompt")), None)
            answers[label] = {"text": match.get("greedy"), "correct": match.get("correct")} if match else None
        out.append({"prompt": item.get("prompt"), "reference": item.get("answer"), "answers": answers})
    return out


def build_report(recipe, root: str | Path, evals: dict[str, dict]) -> dict:
    from workbench.pipeline.plots import make_plots

    from workbench.pipeline.runner import read_timings

    root = Path(root)
    timings = read_timings(root)
    stages = [stage_summary(root / s.name, s.name, s.stage) for s in recipe.stages.values()]
    for s in stages:  # wall time as the pipeline measured it: setup (data, models) included
        s["wall_s"] = timings.get(s["name"])
    rows = []
    for label, name in recipe.rows.items():
        result = evals.get(name)
        heldout = {Path(f).stem: ((result or {}).get("heldout") or {}).get(f) for f in recipe.eval.heldout}
        rows.append({"label": label, "stage": name, "checkpoint": (result or {}).get("checkpoint"),
                     "evaluated": result is not None, "greedy": _row_metrics(result, "greedy"),
                     "sampled": _row_metrics(result, "sampled"), "text": (result or {}).get("text"),
                     "heldout": {k: (v or {}).get("accuracy") for k, v in heldout.items()},
                     "accuracy_by_type": ((result or {}).get("greedy") or {}).get("accuracy_by_type", {})})
    reward_models = [{"stage": s.name, "pairs": (evals.get(s.name) or {}).get("pairs")}
                     for s in recipe.stages.values() if s.stage == "rm"]
    pre = next((s for s in stages if s["stage"] == "pretrain"), None)
    pretraining = None
    if pre is not None and pre["params"]:
        pretraining = {"stage": pre["name"], "params": pre["params"], "tokens": pre["tokens"],
                       "tokens_per_param": pre["tokens"] / pre["params"], "chinchilla": CHINCHILLA,
                       "chinchilla_tokens": CHINCHILLA * pre["params"]}
    tokenizer = None
    tok_report = root / "tokenizer" / "report.json"
    if tok_report.is_file():
        t = json.loads(tok_report.read_text(encoding="utf-8"))
        tokenizer = {"path": t.get("out"), "vocab_size": t.get("vocab_size_with_specials"),
                     "wall_s": timings.get("tokenizer", t.get("train_seconds"))}
    eval_s = sum(r.get("eval_seconds") or 0.0 for r in evals.values())
    wall = sum(s["wall_s"] or 0.0 for s in stages) + eval_s + ((tokenizer or {}).get("wall_s") or 0.0)
    return {"recipe": str(recipe.path), "root": str(root), "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "eval": {"prompts": recipe.eval.prompts, "heldout": recipe.eval.heldout, "pairs": recipe.eval.pairs,
                     "text": recipe.eval.text, "ref": recipe.eval.ref, "rm": recipe.eval.rm,
                     "max_new_tokens": recipe.eval.max_new_tokens},
            "rows": rows, "reward_models": reward_models, "stages": stages, "tokenizer": tokenizer,
            "pretraining": pretraining, "wall_s": round(wall, 1), "eval_s": round(eval_s, 1),
            "examples": _examples(recipe, evals, recipe.examples), "plots": make_plots(root, stages)}


# ------------------------------------------------------------------------------------ formatting
def fmt(value, kind: str = "num") -> str:
    if value is None:
        return "–"
    if kind == "pct":
        return f"{100 * value:.0f}%"
    if kind == "tokens":  # a mean length in tokens
        return f"{value:.1f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return f"{value:.3f}" if abs(value) < 100 else f"{value:,.0f}"


def duration(seconds) -> str:
    if seconds is None:
        return "–"
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}m{s:02d}s" if m else f"{seconds:.1f}s"


def policy_table(report: dict, section: str) -> tuple[list[str], list[list[str]]]:
    heldout = list(report["rows"][0]["heldout"]) if report["rows"] else []
    ref = report["eval"]["ref"]
    names = [f"KL to {ref}" if key == "kl_ref" and ref else h for key, h, _ in COLUMNS]
    head = ["row", "stage", *names[:3], *(f"acc {h}" for h in heldout), *names[3:]]
    body = []
    for row in report["rows"]:
        m = row[section]
        if not row["evaluated"]:
            body.append([row["label"], row["stage"], *(["not run"] + ["–"] * (len(head) - 3))])
            continue
        cells = [fmt(m[k], kind) for k, _, kind in COLUMNS]
        body.append([row["label"], row["stage"], *cells[:3], *(fmt(row["heldout"][h], "pct") for h in heldout), *cells[3:]])
    return head, body


def stage_table(report: dict) -> tuple[list[str], list[list[str]]]:
    head = ["stage", "kind", "status", "steps", "wall time", "training", "tokens", "tokens/s", "params"]
    body = []
    for s in report["stages"]:
        speed = s["tokens"] / s["train_s"] if s["tokens"] and s["train_s"] else None
        steps = f"{s['step']}/{s['max_steps']}" if s["step"] is not None else "–"
        body.append([s["name"], s["stage"], s["status"], steps, duration(s["wall_s"]), duration(s["train_s"]),
                     fmt(s["tokens"]), fmt(round(speed) if speed else None), fmt(s["params"])])
    return head, body


def rm_table(report: dict) -> tuple[list[str], list[list[str]]]:
    kinds = sorted({k for r in report["reward_models"] for k in ((r["pairs"] or {}).get("by_kind") or {})})
    head = ["reward model", "pairs", "accuracy", *kinds, "margin"]
    body = []
    for r in report["reward_models"]:
        p = r["pairs"] or {}
        body.append([r["stage"], fmt(p.get("n")), fmt(p.get("accuracy"), "pct"),
                     *(fmt((p.get("by_kind") or {}).get(k), "pct") for k in kinds), fmt(p.get("margin"))])
    return head, body


def pretraining_line(report: dict) -> str | None:
    p = report["pretraining"]
    if not p:
        return None
    return (f"Pretraining ({p['stage']}): {p['params']:,} parameters on {p['tokens']:,} tokens = "
            f"{p['tokens_per_param']:.2f} tokens per parameter (Chinchilla's compute-optimal ratio is ~{p['chinchilla']}: "
            f"{p['chinchilla_tokens']:,} tokens for this size).")


def _md_table(head: list[str], body: list[list[str]]) -> str:
    def cell(text) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(map(cell, head)) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(map(cell, row)) + " |" for row in body]
    return "\n".join(lines)


def markdown(report: dict) -> str:
    ev = report["eval"]
    ref = f"against `{ev['ref']}`" if ev["ref"] else "(no reference)"
    n = next((r["greedy"]["n"] for r in report["rows"] if r["greedy"]["n"]), None)
    out = [f"# Report card: `{report['recipe']}`", "",
           f"Pipeline root `{report['root']}`, written {report['written']}; {duration(report['wall_s'])} of "
           f"tokenizer, training and evaluation in all (evaluation {duration(report['eval_s'])}).", "",
           f"## Policies: greedy answers to `{ev['prompts']}`" + (f" ({n} prompts)" if n else ""), "",
           _md_table(*policy_table(report, "greedy")), "",
           f"Rates are shares of the answers. KL: nats per answer on the model's own sampled answers, {ref}; "
           f"RM score: the reward model `{ev['rm']}`'s mean score. `acc FILE`: accuracy on each held-out file.", "",
           "## Policies: sampled answers (seed 0)", "", _md_table(*policy_table(report, "sampled")), ""]
    if report["reward_models"]:
        out += [f"## Reward model: pairwise accuracy on `{ev['pairs']}`", "", _md_table(*rm_table(report)), ""]
    out += ["## Stages", "", _md_table(*stage_table(report)), ""]
    line = pretraining_line(report)
    if line:
        out += [line, ""]
    if report["tokenizer"]:
        t = report["tokenizer"]
        out += [f"Tokenizer: `{t['path']}`, {t['vocab_size']:,} tokens, trained in {duration(t['wall_s'])}.", ""]
    out += ["Wall time: as the pipeline measured each stage, its setup (data, models) included, summed over "
            "resumed sessions; training: the engine's clock of its steps, final evaluation and save.", ""]
    out += ["## Curves", ""]
    plots = report["plots"]
    out += [f"![{Path(f).stem}]({f})" for f in plots["files"]] or [f"_{plots['note']}_"]
    out += [""]
    if report["examples"]:
        out += ["## Examples: held-out prompts, every row's greedy answer", ""]
        for i, ex in enumerate(report["examples"], 1):
            out += [f"**{i}. {ex['prompt']}**" + (f" (reference: {ex['reference']})" if ex["reference"] else ""), ""]
            body = [[label, one_line((a or {}).get("text")) or "(empty)", _mark((a or {}).get("correct"))]
                    for label, a in ex["answers"].items()]
            out += [_md_table(["row", "answer", "correct"], body), ""]
    return "\n".join(out)


def _mark(correct) -> str:
    return {True: "yes", False: "no"}.get(correct, "–")


def write_report(report: dict, root: str | Path) -> None:
    root = Path(root)
    atomic_write_text(root / "report.json", json.dumps(report, indent=2) + "\n")
    atomic_write_text(root / "report.md", markdown(report) + "\n")


def print_report(report: dict, console) -> None:
    """The report card as rich tables (what `workbench pipeline` prints at the end)."""
    from rich.markup import escape
    from rich.table import Table

    def table(title: str, head: list[str], body: list[list[str]]) -> Table:
        t = Table(title=title, title_justify="left")
        for i, h in enumerate(head):
            t.add_column(h, justify="left" if i < 2 else "right", overflow="fold")
        for row in body:
            t.add_row(*row)
        return t

    console.print(table("policies (greedy answers; KL on sampled ones)", *policy_table(report, "greedy")))
    if report["reward_models"]:
        console.print(table("reward model (pairwise accuracy)", *rm_table(report)))
    console.print(table("stages", *stage_table(report)))
    console.print(f"whole chain: {duration(report['wall_s'])} wall time (evaluation {duration(report['eval_s'])})",
                  highlight=False)
    line = pretraining_line(report)
    if line:
        console.print(line, highlight=False)
    if report["examples"]:
        labels = list(report["examples"][0]["answers"])
        t = Table(title="held-out prompts", title_justify="left", show_lines=True)
        t.add_column("prompt", overflow="fold")
        for label in labels:
            t.add_column(label, overflow="fold")
        for ex in report["examples"]:
            t.add_row(escape(ex["prompt"] or "") + (f"\n[dim]→ {escape(str(ex['reference']))}[/]" if ex["reference"] else ""),
                      *(answer_cell(ex["answers"][label]) for label in labels))
        console.print(t)
    plots = report["plots"]
    files = [str(Path(report["root"]) / f) for f in plots["files"]]
    console.print(f"curves: {', '.join(files)}" if files else f"curves: {plots['note']}",
                  highlight=False, markup=False)
    console.print(f"report: {Path(report['root']) / 'report.md'}, {Path(report['root']) / 'report.json'}",
                  highlight=False, markup=False)


def answer_cell(answer) -> str:
    from rich.markup import escape

    if not answer:
        return "–"
    mark = {True: " [green]✓[/]", False: " [red]✗[/]"}.get(answer["correct"], "")
    return (escape(one_line(answer["text"])) or "[dim](empty)[/]") + mark


def one_line(text, limit: int = 240) -> str:
    """An answer on one line (runs of whitespace as one space), cut at `limit` characters."""
    text = " ".join(str(text or "").split())
    return text if len(text) <= limit else text[:limit - 1] + "…"
