"""The pipeline's curves as PNGs under ROOT/plots/: loss per stage, rewards, and PPO's KL to its reference.

    from workbench.pipeline.plots import figures, make_plots
    make_plots("runs/cpu-demo", stages)   # -> {"files": ["plots/loss.png", ...], "note": None}
    figures(stages)                       # the same curves as data (the TUI's Report pane draws them)

matplotlib is an optional extra (`pip install 'workbench[report]'`) imported only here and only
when plotting; without it the report says so instead of failing. Curves come from each stage's
metrics.jsonl, so they include every resumed session. Which series go in which panel is decided once,
in `figures`, for the PNGs and the terminal charts alike.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

MISSING = "curves not drawn: matplotlib is not installed (pip install 'workbench[report]')"
# (file, title, [(stage kind, metric, panel title)]): one panel per metric, since their scales differ.
FIGURES = (
    ("reward.png", "reward during training", [("ppo", "objective/scores", "PPO: RM score"),
                                              ("dpo", "rewards/margins", "DPO: implicit reward margin"),
                                              ("rm", "accuracy", "RM: pairwise accuracy (train)")]),
    ("kl.png", "KL to the reference (nats per answer)", [("ppo", "objective/kl", "PPO: KL to the policy it started from")]),
)


@dataclass
class Curve:
    label: str  # "train" / "val" in a loss panel, the stage's name elsewhere
    steps: list
    values: list
    points: bool = False  # evaluation points (a few, drawn as markers)


@dataclass
class Panel:
    title: str
    key: str  # the metric (loss, objective/scores, ...)
    curves: list[Curve]
    stage: str | None = None  # the loss panels: the stage kind of their run


@dataclass
class Figure:
    file: str  # relative to the root: plots/loss.png
    title: str
    panels: list[Panel]


def _series(records: list[dict], key: str, event: str = "train") -> tuple[list, list]:
    """(steps, values) of the records of `event` whose step and `key` are finite numbers: the engine logs a
    NaN loss as it is (a skipped step), and neither a PNG nor a terminal chart can place it."""
    from workbench.train.follow import number

    points = [(r["step"], r[key]) for r in records if r.get("event") == event
              and number(r.get(key)) is not None and number(r.get("step")) is not None]
    return [p[0] for p in points], [p[1] for p in points]


def figures(stages: list[dict]) -> list[Figure]:
    """`stages`: report.stage_summary dicts (name, stage, run_dir). The figures that have something to draw."""
    from workbench.pipeline.report import read_metrics

    runs = [(s, read_metrics(Path(s["run_dir"]))) for s in stages]
    runs = [(s, recs) for s, recs in runs if any(r.get("event") == "train" for r in recs)]
    out = []
    if runs:
        panels = []
        for s, recs in runs:
            curves = [Curve("train", *_series(recs, "loss"))]
            steps, values = _series(recs, "val/loss", "eval")
            if steps:
                curves.append(Curve("val", steps, values, points=True))
            panels.append(Panel(f"{s['name']} ({s['stage']})", "loss", curves, stage=s["stage"]))
        out.append(Figure("plots/loss.png", "loss", panels))
    for name, title, wanted in FIGURES:
        # one line per stage of the panel's kind: ppo and ppo-nokl side by side on the same axes
        panels = [Panel(label, key, [Curve(s["name"], *_series(recs, key)) for s, recs in runs if s["stage"] == kind])
                  for kind, key, label in wanted]
        for panel in panels:
            panel.curves = [c for c in panel.curves if c.steps]
        panels = [p for p in panels if p.curves]
        if panels:
            out.append(Figure(f"plots/{name}", title, panels))
    return out


def _save(fig, path: Path) -> None:
    """savefig into memory, then written atomically: never a half-written PNG."""
    from workbench.io import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())


def _style(ax, title: str) -> None:
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("step", fontsize=8)
    ax.tick_params(labelsize=7)


def make_plots(root: str | Path, stages: list[dict]) -> dict:
    """`stages`: report.stage_summary dicts (name, stage, run_dir). Returns the files written, relative to root."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display needed
        import matplotlib.pyplot as plt
    except ImportError:
        return {"files": [], "note": MISSING}

    root = Path(root)
    files = []
    for figure in figures(stages):
        n = len(figure.panels)
        if figure.file == "plots/loss.png":  # a panel per stage: a grid of up to 3 columns
            cols = min(3, n)
            rows = -(-n // cols)
            size = (3.6 * cols, 2.6 * rows)
        else:
            rows, cols, size = 1, n, (4.2 * n, 3)
        fig, axes = plt.subplots(rows, cols, figsize=size, squeeze=False, layout="constrained")
        for ax in axes.flat[n:]:
            ax.set_visible(False)
        for ax, panel in zip(axes.flat, figure.panels):
            for curve in panel.curves:
                if curve.points:
                    ax.plot(curve.steps, curve.values, "o-", ms=3, label=curve.label)
                else:
                    ax.plot(curve.steps, curve.values, lw=1 if panel.key == "loss" else 1.2, label=curve.label)
            if panel.key != "loss" or len(panel.curves) > 1:  # a lone train loss needs no legend
                ax.legend(fontsize=7)
            _style(ax, panel.title)
        fig.suptitle(figure.title, fontsize=10)
        _save(fig, root / figure.file)
        plt.close(fig)
        files.append(figure.file)
    return {"files": files, "note": None if files else "no training curves to draw yet"}
