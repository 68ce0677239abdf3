"""The pipeline's curves as PNGs under ROOT/plots/: loss per stage, rewards, and PPO's KL to its reference.

    from workbench.pipeline.plots import make_plots
    make_plots("runs/cpu-demo", stages)   # -> {"files": ["plots/loss.png", ...], "note": None}

matplotlib is an optional extra (`pip install 'workbench[report]'`) imported only here and only
when plotting; without it the report says so instead of failing. Curves come from each stage's
metrics.jsonl, so they include every resumed session.
"""

from __future__ import annotations

import io
from pathlib import Path

MISSING = "curves not drawn: matplotlib is not installed (pip install 'workbench[report]')"
# (file, title, [(stage kind, metric, panel title)]): one panel per metric, since their scales differ.
FIGURES = (
    ("reward.png", "reward during training", [("ppo", "objective/scores", "PPO: RM score"),
                                              ("dpo", "rewards/margins", "DPO: implicit reward margin"),
                                              ("rm", "accuracy", "RM: pairwise accuracy (train)")]),
    ("kl.png", "KL to the reference (nats per answer)", [("ppo", "objective/kl", "PPO: KL to the policy it started from")]),
)


def _series(records: list[dict], key: str, event: str = "train") -> tuple[list, list]:
    points = [(r["step"], r[key]) for r in records if r.get("event") == event and isinstance(r.get(key), (int, float))]
    return [p[0] for p in points], [p[1] for p in points]


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
    from workbench.pipeline.report import read_metrics

    root = Path(root)
    runs = [(s, read_metrics(Path(s["run_dir"]))) for s in stages]
    runs = [(s, recs) for s, recs in runs if any(r.get("event") == "train" for r in recs)]
    files = []
    if runs:
        cols = min(3, len(runs))
        rows = -(-len(runs) // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.6 * rows), squeeze=False, layout="constrained")
        for ax in axes.flat[len(runs):]:
            ax.set_visible(False)
        for ax, (s, recs) in zip(axes.flat, runs):
            ax.plot(*_series(recs, "loss"), lw=1, label="train")
            steps, values = _series(recs, "val/loss", "eval")
            if steps:
                ax.plot(steps, values, "o-", ms=3, label="val")
                ax.legend(fontsize=7)
            _style(ax, f"{s['name']} ({s['stage']})")
        fig.suptitle("loss", fontsize=10)
        _save(fig, root / "plots" / "loss.png")
        plt.close(fig)
        files.append("plots/loss.png")
    for name, title, wanted in FIGURES:
        # one line per stage of the panel's kind: ppo and ppo-nokl side by side on the same axes
        panels = [(label, [(s["name"], _series(recs, key)) for s, recs in runs if s["stage"] == kind])
                  for kind, key, label in wanted]
        panels = [(label, [(n, xy) for n, xy in lines if xy[0]]) for label, lines in panels]
        panels = [(label, lines) for label, lines in panels if lines]
        if not panels:
            continue
        fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3), squeeze=False, layout="constrained")
        for ax, (label, lines) in zip(axes[0], panels):
            for stage_name, (steps, values) in lines:
                ax.plot(steps, values, lw=1.2, label=stage_name)
            ax.legend(fontsize=7)
            _style(ax, label)
        fig.suptitle(title, fontsize=10)
        _save(fig, root / "plots" / name)
        plt.close(fig)
        files.append(f"plots/{name}")
    return {"files": files, "note": None if files else "no training curves to draw yet"}
