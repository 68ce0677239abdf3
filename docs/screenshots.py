"""Regenerate the README's screenshots of the TUI: docs/screenshots/{data,train,monitor,runs}.svg (+ .png),
and with --pipeline, {playground,report}.svg (+ .png) too.

    python docs/screenshots.py            # about a minute on a 2-core CPU; needs rsvg-convert for the PNGs
    python docs/screenshots.py --pipeline runs/cpu-demo   # + the Playground and Report panes on that chain

It trains a small pipeline (pretrain -> sft -> rm, dpo, ppo: the tiny preset with 2 layers, a 512-token BPE,
a few dozen steps each) in a scratch folder laid out like a checkout (sample_data/, configs/, runs/), opens the
real app there at 120x36, visits each pane and saves what it shows. The Playground (Compare: base, SFT, DPO,
PPO on one held-out question, greedy, with the reward model) and the Report pane are shot on a finished
`workbench pipeline --recipe cpu-demo` root, whose models have learnt something to show. Not a test.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "screenshots"
SIZE = (120, 36)


def train_pipeline(work: Path) -> None:
    from workbench.tokenizer_train import train_tokenizer
    from workbench.train.config import load_config
    from workbench.train.engine import train

    tok = work / "runs" / "tok.tiktoken"
    tok.parent.mkdir(parents=True)
    train_tokenizer(["sample_data/text.jsonl"], 512, tok, held_out=0.0)
    common = ["model={n_layers: 2}", "tensorboard=false", "save_every=0"]
    plan = [("pretrain", "runs/tiny/pretrain", [f"tokenizer={tok}", "max_steps=150", "seq_len=128", "eval_every=25"]),
            ("sft", "runs/tiny/sft", ["init_from=runs/tiny/pretrain", "max_steps=80", "eval_every=20", "max_len=192"]),
            ("rm", "runs/tiny/rm", ["init_from=runs/tiny/sft", "max_steps=40", "eval_every=10", "max_len=192"]),
            ("dpo", "runs/tiny/dpo", ["init_from=runs/tiny/sft", "max_steps=40", "eval_every=10", "max_len=192"]),
            ("ppo", "runs/tiny/ppo", ["init_from=runs/tiny/sft", "reward_model=runs/tiny/rm", "max_steps=20", "eval_every=0",
                                 "max_new_tokens=24"])]
    for stage, out, extra in plan:
        overrides = extra + (common if stage == "pretrain" else common[1:])
        train(load_config(stage, None, overrides), out)


async def shoot(work: Path) -> list[Path]:
    from app.app import WorkbenchApp, plan_launch

    app = WorkbenchApp(plan_launch(["runs/tiny/ppo"], runs_root="runs"))
    app.launch.data = "sample_data/chat.jsonl"
    saved = []
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(1.0)
        for key, name in (("1", "data"), ("2", "train"), ("3", "monitor"), ("4", "runs")):
            app.set_focus(None)
            await pilot.press(key)
            await pilot.pause(1.5)
            if name == "data":
                await pilot.press("down", "down")
                await pilot.pause(0.5)
            path = OUT / f"{name}.svg"
            app.save_screenshot(str(path))
            saved.append(path)
    return saved


async def shoot_pipeline(root: Path) -> list[Path]:
    from app.app import WorkbenchApp, plan_launch

    os.chdir(root.parent.parent)  # paths on screen as a user types them: runs/cpu-demo
    root = root.relative_to(root.parent.parent)
    app = WorkbenchApp(plan_launch([str(root)]))
    saved = []
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(2.0)  # the Report pane opens the root
        path = OUT / "report.svg"
        app.save_screenshot(str(path))
        saved.append(path)
        pane = app.query_one("#playground-pane")  # opened on the root: Compare has its rows, RM its reward model
        app.query_one("#play-greedy").value = True
        pane.action_mode("compare")
        await pilot.pause(0.5)
        view = app.query_one("#compare-view")
        view.query_one("#compare-prompt").value = "I'm curious: Kestrelby is part of what kingdom?"
        view.query_one("#compare-answer").value = "Quillon"
        view.ask()
        while "answered" not in str(view.query_one(".play-status").render()):
            await pilot.pause(0.2)
        await pilot.pause(0.5)
        path = OUT / "playground.svg"
        app.save_screenshot(str(path))
        saved.append(path)
    return saved


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pipeline", help="a finished cpu-demo pipeline root: also shoot the Playground and Report panes")
    ap.add_argument("--only-pipeline", action="store_true", help="just those two")
    args = ap.parse_args()
    pipeline = Path(args.pipeline).resolve() if args.pipeline else None
    if pipeline is not None and not (pipeline / "report.json").is_file():
        raise SystemExit(f"{pipeline}: no report.json (run `workbench pipeline --recipe cpu-demo --out ...` first)")
    work = Path(tempfile.mkdtemp(prefix="wb-shots-"))
    for name in ("sample_data", "configs"):
        os.symlink(ROOT / name, work / name)
    os.chdir(work)
    sys.path.insert(0, str(ROOT))
    import torch

    torch.set_num_threads(1)
    OUT.mkdir(parents=True, exist_ok=True)
    shots = []
    if not args.only_pipeline:
        train_pipeline(work)
        shots += asyncio.run(shoot(work))
    if pipeline is not None:
        shots += asyncio.run(shoot_pipeline(pipeline))
    for svg in shots:
        if shutil.which("rsvg-convert"):
            subprocess.run(["rsvg-convert", str(svg), "-o", str(svg.with_suffix(".png"))], check=True)
        print(svg.relative_to(ROOT))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
