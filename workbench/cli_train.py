"""`workbench train pretrain|sft|rm|dpo|ppo`: run one training stage with live progress.

    workbench train pretrain --config configs/pretrain/tiny.yaml --out runs/pretrain
    workbench train sft --config configs/sft/tiny.yaml --from runs/pretrain --out runs/sft
    workbench train sft --resume runs/sft max_steps=400      # continue (and extend) a stopped run
    workbench train pretrain lr=1e-3 "model={n_layers: 2}"    # KEY=VALUE overrides, values are YAML
    workbench train sft --from runs/pretrain --out runs/sft --nproc 2   # 2 processes (torchrun, DDP)

Thin: the config comes from workbench.train.config (file < overrides), the loop is
workbench.train.engine.train; this file only turns the engine's events into a progress bar (or
plain lines when stdout is not a terminal), handles Ctrl-C, and prints what to run next.
With --nproc N it starts torchrun, whose N processes each run this same command (rank 0 prints;
see workbench/train/distributed.py).
Nothing heavy is imported at module level, so `workbench --help` stays fast.
"""

from __future__ import annotations

import collections
import signal
import time
from pathlib import Path
from typing import List, Optional

import typer

STAGES = ("pretrain", "sft", "rm", "dpo", "ppo")

train_app = typer.Typer(no_args_is_help=True, help="Train a stage (pretrain → sft → rm → dpo or ppo); "
                        "settings from --config and KEY=VALUE overrides.")

# What each stage's progress line shows besides loss and tokens/s (keys of the engine's events;
# missing ones are skipped, so a stage that logs fewer keys still prints cleanly).
STAGE_KEYS = {
    "pretrain": ("val/loss",),
    "sft": ("val/loss",),
    "rm": ("accuracy", "margin", "val/accuracy"),
    "dpo": ("rewards/accuracies", "rewards/margins", "val/rewards/accuracies"),
    "ppo": ("objective/scores", "objective/kl", "response_length"),
}

HELP = {
    "pretrain": "Pretrain a model from scratch (or continue one with --from): next-token loss on packed text.",
    "sft": "Supervised fine-tuning on conversations (loss on the assistant's tokens only). Needs --from.",
    "rm": "Train a reward model on preference pairs (Bradley-Terry). Needs --from (an SFT run).",
    "dpo": "Direct preference optimisation against a frozen copy of --from (an SFT run).",
    "ppo": "PPO against a reward model (reward_model=RUN) with a KL penalty to --from (an SFT run).",
}

# The stages a finished one suggests next, in pipeline order.
NEXT = {"pretrain": ("sft",), "sft": ("rm", "dpo"), "rm": ("ppo",), "dpo": (), "ppo": ()}


def _cli():
    from workbench import cli

    return cli


# ---------------------------------------------------------------------------------------- Ctrl-C
class Interrupt:
    """The SIGINT handler for one run. The first Ctrl-C asks the engine to stop after the current
    step (it then saves a checkpoint that --resume continues). The second raises KeyboardInterrupt
    to abort the step in progress; the command then exits 130, as a shell expects of Ctrl-C."""

    def __init__(self, control, say):
        self.control, self.say, self.count = control, say, 0

    def __call__(self, signum=None, frame=None):
        self.count += 1
        if self.count == 1:
            self.control.stop()
            self.say("stopping after this step (Ctrl-C again to abort)")
        else:
            raise KeyboardInterrupt

    def install(self):
        """Install for the duration of the run; returns the previous handler (None off the main thread)."""
        try:
            return signal.signal(signal.SIGINT, self)
        except ValueError:  # signal.signal only works in the main thread (e.g. a TUI worker)
            return None

    @staticmethod
    def restore(previous) -> None:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


# -------------------------------------------------------------------------------------- display
def _fmt(value) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
        return f"{value:.3e}"
    return f"{value:.4f}" if abs(value) < 10 else f"{value:.2f}"


def _duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def _bar(console):
    """A progress bar (step M/N, elapsed, ETA) with the latest metrics on a line of their own below it."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
    from rich.text import Text

    class Bar(Progress):
        metrics = ""

        def get_renderables(self):
            yield self.make_tasks_table(self.tasks)
            yield Text(self.metrics, style="dim" if not self.metrics else "")

    return Bar(TextColumn("[bold]{task.description}"), BarColumn(bar_width=30), MofNCompleteColumn(), TextColumn("steps"),
               TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), console=console)


class Display:
    """Engine events -> a rich progress bar on a terminal, or a plain line every `every` steps."""

    def __init__(self, console, stage: str, every: int = 0):
        self.console, self.stage, self.every = console, stage, every
        self.live = console.is_terminal
        self.progress = self.task = None
        self.max_steps = 0
        self.first_step = None  # (step, time) of the first step this session: for the plain ETA
        self.last_eval: dict = {}
        self.last_train: dict = {}
        self.recent = collections.deque(maxlen=20)  # (tokens, seconds) of the last steps: a steady tokens/s

    def __call__(self, event: dict) -> None:
        kind = event.get("event")
        if kind == "start":
            self._start(event)
        elif kind == "train":
            self._train(event)
        elif kind == "eval":
            self.last_eval = {k: v for k, v in event.items() if "/" in k}
            if self.progress is not None and self.last_train:
                self.progress.metrics = self.metrics(self.last_train)
            self.print(f"step {event['step']}: " + "  ".join(f"{k} {_fmt(v)}" for k, v in self.last_eval.items()),
                       "eval", "cyan")
        elif kind == "checkpoint":
            self.print(event["path"], "checkpoint", "green")
        elif kind == "log":
            self.print(event["message"], "log", "dim")
        elif kind == "end":
            self.close()

    def print(self, text: str, label: str = "", style: str = "") -> None:
        """One line above the bar (or in the plain output): a coloured label, then plain text."""
        from rich.text import Text

        line = Text.assemble((label + " ", style or "bold") if label else "", text)
        self.console.print(line, highlight=False, soft_wrap=True)

    def _start(self, e: dict) -> None:
        self.max_steps = int(e["max_steps"])
        how = f"resumed from {e['resumed_from']} at step {e['step']}" if e.get("resumed_from") else "new run"
        world = int(e.get("world_size") or 1)
        procs = f" x {world} processes{' (FSDP)' if e.get('fsdp') else ''}" if world > 1 else ""
        self.print(f"{e['run_dir']}: {how}; {e['params']:,} trainable parameters on {e['device']}{procs} "
                   f"({e['dtype']}), {self.max_steps} step{'s' if self.max_steps != 1 else ''}", self.stage)
        if e["step"] >= self.max_steps:
            self.print(f"already at step {e['step']} of max_steps {self.max_steps}; raise it "
                       f"(e.g. max_steps={self.max_steps * 2}) to train further", "note", "yellow")
        if self.live:
            self.progress = _bar(self.console)
            self.progress.start()
            self.task = self.progress.add_task(self.stage, total=self.max_steps, completed=e["step"])

    def metrics(self, e: dict) -> str:
        parts = [f"loss {_fmt(e['loss'])}" if e.get("loss") is not None else "loss nan"]
        for key in STAGE_KEYS.get(self.stage, ()):
            value = e.get(key, self.last_eval.get(key))
            if value is not None:
                parts.append(f"{key} {_fmt(value)}")
        seconds = sum(t for _, t in self.recent)
        speed = sum(n for n, _ in self.recent) / seconds if seconds > 0 else e.get("tokens_per_s", 0.0)
        parts.append(f"{speed:,.0f} tok/s")
        if e.get("skipped"):
            parts.append("[skipped: non-finite]")
        return "  ".join(parts)

    def _train(self, e: dict) -> None:
        step, now = int(e["step"]), time.monotonic()
        self.last_train = e
        self.recent.append((e.get("tokens", 0), e.get("step_time", 0.0)))
        if self.first_step is None:
            self.first_step = (step - 1, now - float(e.get("step_time", 0.0)))
        if self.progress is not None:
            self.progress.metrics = self.metrics(e)
            self.progress.update(self.task, completed=step)
            return
        every = self.every or max(1, round(self.max_steps / 20))  # default: about 20 lines per run
        if step % every and step != self.max_steps:
            return
        done = step - self.first_step[0]
        eta = (now - self.first_step[1]) / max(done, 1) * (self.max_steps - step)
        self.console.print(f"step {step}/{self.max_steps}  {self.metrics(e)}  "
                           f"elapsed {_duration(e.get('elapsed', 0))}  eta {_duration(eta)}",
                           highlight=False, markup=False, soft_wrap=True)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


# ---------------------------------------------------------------------------------------- a run
def new_run_dir(stage: str, root: str = "runs") -> Path:
    """runs/STAGE-YYYYmmdd-HHMMSS (with -2, -3 ... if two runs start in the same second)."""
    base = Path(root) / f"{stage}-{time.strftime('%Y%m%d-%H%M%S')}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def _saved_config(run_dir: Path) -> dict:
    """A run's config.yaml as a dict ({} when unreadable: the engine says precisely what is wrong)."""
    import yaml

    try:
        saved = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return {}
    return saved if isinstance(saved, dict) else {}


def _check_parent(path: str, what: str) -> None:
    """`path` names a checkpoint (itself, or a run dir's latest); errors name the setting `what`."""
    from workbench.errors import WorkbenchError
    from workbench.train.checkpoint import CHECKPOINTS, resolve_checkpoint

    p = Path(path).expanduser()
    if (p / "config.yaml").is_file() and not (p / CHECKPOINTS).is_dir():
        run_stage_name = _saved_config(p).get("stage", "STAGE")
        raise WorkbenchError(f"{what} {path}: this run has no checkpoint yet (it ended before its first save); "
                             f"continue it first: workbench train {run_stage_name} --resume {path}")
    try:
        resolve_checkpoint(p)
    except WorkbenchError as e:
        raise WorkbenchError(f"{what}: {e}") from None


def _next_commands(stage: str, result: dict, parent: str | None, config: str | None) -> list[str]:
    """What to run after this stage: the next stages (with the matching configs/ file), then generate."""
    run, ckpt = result["run_dir"], result["checkpoint"]
    preset = None
    if config:
        p = Path(config)
        if p.parent.name == stage and p.parent.parent.name == "configs":
            preset = p.name  # configs/sft/tiny.yaml after configs/pretrain/tiny.yaml
    out = []
    for nxt in NEXT[stage]:
        cmd = f"workbench train {nxt}"
        if preset and (Path(config).parent.parent / nxt / preset).is_file():
            cmd += f" --config {Path(config).parent.parent / nxt / preset}"
        if stage == "rm":  # PPO optimises the SFT policy rm started from, scored by this reward model
            cmd += f" --from {parent or 'SFT_RUN'} reward_model={run}"
        else:
            cmd += f" --from {run}"
        out.append(cmd)
    if stage == "pretrain":
        out.append(f'workbench generate {ckpt} --prompt "The town of"')
    elif stage != "rm":
        out.append(f'workbench generate {ckpt} --chat --prompt "Where is Ashford?"')
    return out


def run_stage(stage: str, *, config: str | None = None, init_from: str | None = None, out: str | None = None,
              resume: str | None = None, overrides: list[str] | None = None, every: int = 0, console=None,
              callbacks=()) -> dict:
    """Everything `workbench train STAGE` does, callable from Python (the tests do): returns the engine's
    result dict plus `interrupts` (Ctrl-C presses). Raises WorkbenchError for user errors and
    KeyboardInterrupt on a second Ctrl-C."""
    import dataclasses

    from workbench.errors import WorkbenchError
    from workbench.train.config import load_config

    from workbench.train import distributed

    overrides = list(overrides or [])
    world = distributed.from_env()
    console = console or _cli()._Console()
    if not world.main:  # rank 0 speaks for the job
        from rich.console import Console

        console = Console(quiet=True)
        callbacks = ()
    if world.active and not (out or resume):
        raise WorkbenchError("under torchrun every process must write to the same run: give --out RUN "
                             "(or use `workbench train STAGE --nproc N`, which chooses one)")
    for item in overrides:  # `workbench train sft runs/pretrain`: a path where an option was meant
        if "=" not in item and Path(item).exists():
            option = "--config" if item.endswith((".yaml", ".yml")) else "--from"
            raise WorkbenchError(f"{item!r} is not a KEY=VALUE setting; did you mean {option} {item}?")
    if out and resume:
        raise WorkbenchError("--out and --resume are exclusive: --resume RUN continues RUN in place")
    cfg = None
    if resume:
        if config or init_from:
            raise WorkbenchError("--resume continues a run with its saved config; change settings with "
                                 "KEY=VALUE overrides (e.g. max_steps=400), not --config or --from")
        run_dir = Path(resume)
        saved = _saved_config(run_dir).get("stage")
        if saved in STAGES and saved != stage:
            raise WorkbenchError(f"{run_dir} is a {saved} run, not {stage}: workbench train {saved} --resume {run_dir}")
    else:
        cfg = load_config(stage, config, overrides)
        if init_from:
            if any(o.partition("=")[0].strip() == "init_from" for o in overrides):
                raise WorkbenchError("give the parent checkpoint once: --from PATH or init_from=PATH")
            cfg = dataclasses.replace(cfg, init_from=init_from)
        if not cfg.init_from and stage != "pretrain":
            raise WorkbenchError(f"{stage} starts from a trained model: --from RUN_OR_CHECKPOINT "
                                 f"(e.g. --from runs/{'pretrain' if stage == 'sft' else 'sft'}-...)")
        # Check the parents now, before the data is loaded, with errors that name the setting.
        # (The engine then pins them to concrete checkpoints in the saved config.)
        for key in ("init_from", "reward_model"):
            if getattr(cfg, key, None):
                _check_parent(getattr(cfg, key), "--from" if key == "init_from" and init_from else key)
        run_dir = Path(out) if out else new_run_dir(stage)

    from workbench.train.engine import Control, train

    control = Control()
    display = Display(console, stage, every)
    interrupt = Interrupt(control, lambda msg: display.print(msg, "ctrl-c", "bold yellow"))
    previous = interrupt.install()
    try:
        result = train(cfg, run_dir, resume=bool(resume), control=control, callbacks=[display, *callbacks],
                       overrides=overrides if resume else None)
    finally:
        display.close()
        Interrupt.restore(previous)
    parent = cfg.init_from if cfg is not None else _saved_config(run_dir).get("init_from")
    result["interrupts"] = interrupt.count
    result["next"] = _next_commands(stage, result, parent, config) if result["status"] == "finished" else []
    if world.main:
        _summary(console, stage, result, display)
    return result


def _summary(console, stage: str, result: dict, display: Display) -> None:
    from rich.markup import escape

    colour = {"finished": "green", "stopped": "yellow"}.get(result["status"], "red")
    elapsed = display.last_train.get("elapsed")
    took = f" in {_duration(elapsed)}" if elapsed is not None else ""
    lines = [f"[bold {colour}]{result['status']}[/]: {stage}, step {result['step']} of {display.max_steps}{took}"]
    if display.last_train:
        lines.append(f"  last step      {escape(display.metrics(display.last_train))}")
    lines.append(f"  checkpoint     {escape(str(result['checkpoint'] or '(none: no step was completed)'))}")
    lines.append(f"  run dir        {escape(result['run_dir'])}")
    if result["status"] == "stopped" and result["checkpoint"]:
        lines.append(f"  continue with  workbench train {stage} --resume {escape(result['run_dir'])}")
    for i, cmd in enumerate(result["next"]):
        lines.append(f"  {'next' if i == 0 else '':<14} {escape(cmd)}")
    console.print("\n".join(lines), highlight=False, soft_wrap=True)


# ------------------------------------------------------------------------------------- commands
def _command(stage: str):
    def command(
        overrides: Optional[List[str]] = typer.Argument(None, metavar="KEY=VALUE",
                                                        help="Settings that override the config, e.g. max_steps=50 lr=1e-4 "
                                                             "'model={n_layers: 2}' (values are YAML)."),
        config: Optional[str] = typer.Option(None, "--config", "-c", help=f"YAML config (see configs/{stage}/tiny.yaml)."),
        init_from: Optional[str] = typer.Option(None, "--from", help="Parent: a checkpoint dir, or a run dir (its latest checkpoint)."),
        out: Optional[str] = typer.Option(None, "--out", "-o", help=f"New run directory (default runs/{stage}-YYYYmmdd-HHMMSS)."),
        resume: Optional[str] = typer.Option(None, "--resume", help="Continue this stopped or crashed run (KEY=VALUE changes its config)."),
        every: int = typer.Option(0, "--print-every", help="Without a terminal: one line every N steps (0 = about 20 lines)."),
        nproc: int = typer.Option(1, "--nproc", help="Processes on this machine (one per GPU; gloo on CPU): DDP through torchrun."),
        nnodes: int = typer.Option(1, "--nnodes", help="Machines in the job (each runs this command with its --node-rank)."),
        node_rank: int = typer.Option(0, "--node-rank", help="This machine's rank among --nnodes (0 hosts the rendezvous)."),
        rdzv_endpoint: Optional[str] = typer.Option(None, "--rdzv-endpoint", help="HOST:PORT of node rank 0, with --nnodes > 1."),
    ):
        cli = _cli()
        if every < 0:
            cli._fail(f"--print-every must be 0 or more, got {every}")
        console = cli._Console()
        if nproc != 1 or nnodes != 1 or rdzv_endpoint:
            cli._run(lambda: _launch(stage, console, config=config, init_from=init_from, out=out, resume=resume,
                                     overrides=overrides or [], every=every, nproc=nproc, nnodes=nnodes,
                                     node_rank=node_rank, endpoint=rdzv_endpoint))
            return

        def go():
            from workbench.train import distributed

            try:
                result = run_stage(stage, config=config, init_from=init_from, out=out, resume=resume,
                                   overrides=overrides, every=every, console=console)
            except KeyboardInterrupt:
                result = {"interrupts": 2}
            except BaseException as e:  # under torchrun: the error goes where the launcher reads it
                distributed.record_failure(distributed.from_env(), e)
                raise
            if result["interrupts"] >= 2:  # a second Ctrl-C: abort, as the shell expects (128 + SIGINT)
                console.print("aborted by a second Ctrl-C", highlight=False)
                raise typer.Exit(130)

        cli._run(go)

    command.__name__ = stage
    return command


def _launch(stage: str, console, *, config, init_from, out, resume, overrides, every, nproc, nnodes, node_rank,
            endpoint) -> None:
    """`--nproc N`: run this same command in N processes through torchrun (in this process), each
    process one rank; they pick up RANK/WORLD_SIZE from the environment torchrun gives them."""
    import shlex

    from workbench.errors import WorkbenchError
    from workbench.train import distributed

    if distributed.under_launcher():
        raise WorkbenchError("--nproc/--nnodes start the job's processes; under torchrun leave them out")
    if out and resume:
        raise WorkbenchError("--out and --resume are exclusive: --resume RUN continues RUN in place")
    if not (out or resume):
        if nnodes > 1:
            raise WorkbenchError("with --nnodes give --out RUN: the same path on every machine (a shared disk)")
        out = str(new_run_dir(stage))
    argv = ["train", stage, *overrides]
    for option, value in (("--config", config), ("--from", init_from), ("--out", out), ("--resume", resume)):
        if value:
            argv += [option, value]
    if every:
        argv += ["--print-every", str(every)]
    options = distributed.torchrun_args(nproc, nnodes, node_rank, endpoint)
    console.print(f"torchrun {shlex.join([*options, '-m', 'workbench', *argv])}", highlight=False,
                  markup=False, soft_wrap=True)
    from torch.distributed.elastic.multiprocessing.api import SignalException

    try:
        distributed.launch(argv, nproc, nnodes, node_rank, endpoint)
    except SignalException:  # Ctrl-C: torchrun passed it on; the ranks stop after a step and save
        status = _saved_status(Path(out or resume))
        if status != "stopped":
            console.print(f"aborted (the run's status: {status or 'unknown'})", highlight=False)
            raise typer.Exit(130)


def _saved_status(run_dir: Path) -> str | None:
    import json

    try:
        return json.loads((run_dir / "lineage.json").read_text(encoding="utf-8")).get("status")
    except (OSError, ValueError):
        return None


for _stage in STAGES:
    train_app.command(_stage, help=HELP[_stage])(_command(_stage))
