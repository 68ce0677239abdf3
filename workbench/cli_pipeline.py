"""`workbench pipeline`: the whole chain from a recipe, with progress, then the report card.

    workbench pipeline                                   # configs/recipes/cpu-demo.yaml -> runs/cpu-demo
    workbench pipeline --recipe my.yaml --out runs/mine
    workbench pipeline --only ppo-nokl --force           # train that stage again, then re-evaluate and report

Thin: the recipe is read by workbench.pipeline.recipe, the work done by workbench.pipeline.runner;
this file draws the runner's events (one bar for the chain, one for the stage in progress) and
turns Ctrl-C into a clean stop that the same command later continues.
"""

from __future__ import annotations

from typing import List, Optional

import typer


class ChainDisplay:
    """Runner events -> two rich bars (chain: steps done; current: the stage's steps or eval rows) with
    the stage's latest metrics below them; plain lines when stdout is not a terminal."""

    def __init__(self, console, every: int = 0):
        self.console, self.every = console, every
        self.live = console.is_terminal
        self.progress = self.chain = self.current = None
        self.name, self.max_steps = "", 0

    def print(self, text: str, label: str = "", style: str = "") -> None:
        from rich.text import Text

        self.console.print(Text.assemble((label + " ", style or "bold") if label else "", text),
                           highlight=False, soft_wrap=True)

    def __call__(self, e: dict) -> None:
        from workbench.cli_train import _fmt

        kind = e.get("event")
        if kind == "plan":
            self.print(f"{' → '.join(e['steps'])} under {e['root']}", "pipeline")
            if self.live:
                self._start_bars(len(e["steps"]))
        elif kind == "begin":
            self.name = e["name"]
            action = {"new": "training", "retrain": "training again", "run": "running"}.get(e["action"], e["action"])
            self.print(f"{action}" + (f" ({e['why']})" if e.get("why") else ""), e["name"],
                       "dim" if e["action"] == "skip" else "bold cyan")
            if self.chain is not None:
                self.progress.update(self.chain, description=f"pipeline: {e['name']}")
        elif kind == "start":  # the engine's: the stage's bar
            self.max_steps = int(e["max_steps"])
            if e.get("resumed_from"):
                self.print(f"resumed from {e['resumed_from']} at step {e['step']}", e["name"], "yellow")
            if self.current is not None:
                self.progress.reset(self.current, total=self.max_steps, completed=e["step"], visible=True,
                                    description=e["name"])
        elif kind == "train":
            from workbench.cli_train import STAGE_KEYS

            parts = [f"loss {_fmt(e.get('loss'))}"] + [f"{k} {_fmt(e[k])}" for k in STAGE_KEYS.get(e.get("stage"), ())
                                                      if e.get(k) is not None]
            parts.append(f"{e.get('tokens_per_s', 0):,.0f} tok/s")
            if self.current is not None:
                self.progress.metrics = "  ".join(parts)
                self.progress.update(self.current, completed=e["step"])
            elif e["step"] % (self.every or max(1, round(self.max_steps / 10))) == 0 or e["step"] == self.max_steps:
                self.print(f"step {e['step']}/{self.max_steps}  " + "  ".join(parts), e["name"], "dim")
        elif kind == "eval" and e.get("name"):  # the engine's validation
            vals = "  ".join(f"{k} {_fmt(v)}" for k, v in e.items() if "/" in k)
            self.print(f"step {e['step']}: {vals}", e["name"], "cyan")
        elif kind == "eval_row":
            what = "not run: skipped" if e.get("missing") else ("cached" if e.get("cached") else "evaluating")
            self.print(what, f"eval {e['name']}", "dim" if e.get("cached") or e.get("missing") else "cyan")
            if self.current is not None:
                self.progress.metrics = ""
        elif kind == "eval_progress" and self.current is not None:
            self.progress.update(self.current, total=e["total"], completed=e["done"], visible=True,
                                 description=f"eval {e['name']}: {e['task']}")
        elif kind == "done":
            if e.get("status") != "finished":
                self.print(e["status"], e["name"], "bold yellow")
            if self.chain is not None:
                self.progress.advance(self.chain)
                self.progress.update(self.current, visible=False)

    def _start_bars(self, steps: int) -> None:
        from workbench.cli_train import _bar

        self.progress = _bar(self.console)  # the same bar as `workbench train`, with a second task
        self.progress.start()
        self.chain = self.progress.add_task("pipeline", total=steps)
        self.current = self.progress.add_task("", total=1, visible=False)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def pipeline(
    recipe: str = typer.Option("cpu-demo", "--recipe", "-r", help="A recipe name (configs/recipes/NAME.yaml) or a YAML file."),
    out: Optional[str] = typer.Option(None, "--out", "-o", help="Pipeline root: one run directory per stage, eval/, plots/, report.md (default runs/RECIPE)."),
    only: Optional[List[str]] = typer.Option(None, "--only", help="Run only these stages (repeat, or comma-separate; 'tokenizer' too); "
                                                                   "eval and the report still follow."),
    force: bool = typer.Option(False, "--force", help="Train the selected stages again even when finished (the stages that start from them follow on the next full run)."),
    every: int = typer.Option(0, "--print-every", help="Without a terminal: one line every N steps (0 = about 10 lines per stage)."),
):
    """Run the whole chain (tokenizer → pretrain → SFT → RM → DPO / PPO → eval → report card) from a recipe.
    A finished stage is skipped, a stopped one resumed: running it again continues where it stopped."""
    from workbench import cli

    if every < 0:
        cli._fail(f"--print-every must be 0 or more, got {every}")
    console = cli._Console()

    def go():
        from workbench.cli_train import Interrupt
        from workbench.pipeline.recipe import load_recipe
        from workbench.pipeline.report import print_report
        from workbench.pipeline.runner import run_pipeline
        from workbench.train.engine import Control

        loaded = load_recipe(recipe)
        names = [n.strip() for item in only or () for n in item.split(",") if n.strip()]
        root = out or f"runs/{loaded.name}"
        control = Control()
        display = ChainDisplay(console, every)
        interrupt = Interrupt(control, lambda msg: display.print(msg, "ctrl-c", "bold yellow"))
        previous = interrupt.install()
        result = None
        try:
            result = run_pipeline(loaded, root, only=names or None, force=force, control=control, on_event=display)
        except KeyboardInterrupt:  # a second Ctrl-C outside the engine's loop (setup, eval)
            pass
        finally:
            display.close()
            Interrupt.restore(previous)
        if result is None or interrupt.count >= 2:  # as `workbench train` does: 128 + SIGINT
            console.print("aborted by a second Ctrl-C; the same command continues from the last checkpoint",
                          highlight=False)
            raise typer.Exit(130)
        if result["status"] != "finished":
            console.print(f"[yellow]{result['status']}[/] at {result['stopped_at']}; run the same command again to "
                          f"continue from its last checkpoint", highlight=False)
            return
        print_report(result["report"], console)

    cli._run(go)
