"""`workbench eval`, `workbench probe` and `workbench chinchilla`: thin wrappers over workbench.eval.

    workbench eval runs/sft runs/dpo --prompts sample_data/prompts.jsonl --ref runs/sft --rm runs/rm
    workbench eval runs/rm --pairs sample_data/preference.jsonl --json
    workbench probe runs/sft "Which kingdom is Varnholt in?" --chat --top-k 5
    workbench chinchilla --flops 1e18 | --params 6.8M | --tokens 2B | --preset tiny | --run runs/pretrain
"""

from __future__ import annotations

import json
from typing import List, Optional

import typer


def _cli():
    from workbench import cli

    return cli


def _amount(x) -> str:
    """6_800_000 -> 6.80M (None -> -); below 1k and from 1000T on, 3 significant digits: 0.5, 1e+20, 1e-300."""
    if x is None:
        return "-"
    if 1e3 <= abs(x) < 1e15:
        for unit, div in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
            if abs(x) >= div:
                return f"{x / div:.2f}{unit}"
    return f"{x:.3g}"


# ---------------------------------------------------------------------------------------- eval
RATE_KEYS = ("compliance", "eos_rate", "im_start_rate", "accuracy", "rude_rate", "refusal_rate")
DECODING_KEYS = ("n", *RATE_KEYS, "length", "true_reward", "rm_score", "kl_ref")


def _cell(key: str, value) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if key in RATE_KEYS or key.startswith(("accuracy", "by kind")):
        return f"{value:.1%}"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.3f}"


def _rows(results: list[dict]) -> list[tuple[str, str, list]]:
    """(section, metric, one value per checkpoint) for every metric some checkpoint has."""
    rows = [("", "kind", [r["kind"] for r in results])]

    def add(block, keys):
        for key in keys:
            if any(key in r.get(block, {}) for r in results):
                rows.append((block, key, [r.get(block, {}).get(key) for r in results]))

    add("text", ("loss", "ppl", "tokens"))
    for block in ("greedy", "sampled"):
        add(block, DECODING_KEYS)
        types = sorted({t for r in results for t in r.get(block, {}).get("accuracy_by_type", {})})
        if block == "greedy":  # by type: the greedy answers only, or the table gets long
            for t in types:
                rows.append((block, f"accuracy: {t}", [r.get(block, {}).get("accuracy_by_type", {}).get(t)
                                                       for r in results]))
    add("pairs", ("n", "accuracy", "margin"))
    kinds = sorted({k for r in results for k in r.get("pairs", {}).get("by_kind", {})})
    for k in kinds:
        rows.append(("pairs", f"by kind: {k}", [r.get("pairs", {}).get("by_kind", {}).get(k) for r in results]))
    return rows


def _table(names: list[str], results: list[dict]):
    from rich.table import Table

    t = Table(title="workbench eval", title_justify="left")
    t.add_column("", style="bold")
    t.add_column("metric")
    for name in names:
        t.add_column(name, justify="right")
    last = None
    for section, key, values in _rows(results):
        shown = section if section != last else ""
        last = section
        t.add_row(shown, key, *[_cell(key, v) for v in values])
    return t


def eval_command(
    checkpoints: List[str] = typer.Argument(..., metavar="CKPT...", help="Checkpoints or run directories (their latest checkpoint)."),
    prompts: Optional[str] = typer.Option(None, "--prompts", help="Prompts to answer (a prompt, chat or preference file); records with an answer/task are scored."),
    pairs: Optional[str] = typer.Option(None, "--pairs", help="Preference pairs: the reward model's accuracy by rejected_kind (CKPT a reward model, or --rm)."),
    text: Optional[str] = typer.Option(None, "--text", help="Held-out text (.txt, .jsonl {text}): loss and perplexity."),
    ref: Optional[str] = typer.Option(None, "--ref", help="Reference language model: KL of each CKPT to it on its own answers (nats)."),
    rm: Optional[str] = typer.Option(None, "--rm", help="Reward model: its mean score of the answers (and it scores --pairs)."),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens", "-n", help="Token budget of each answer."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Use the first N records of each file."),
    seed: int = typer.Option(0, "--seed", help="Seed of the sampled answers."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA if present), cpu, cuda, cuda:1, ..."),
    text_window: Optional[int] = typer.Option(None, "--text-window", help="Tokens per window for --text (default min(256, the model's context - 1))."),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch CPU threads (default 1 on a CPU: small decode steps are faster on one)."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip (and count) bad records of the data files instead of stopping at the first."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per checkpoint per line on stdout."),
):
    """Evaluate checkpoints: compliance, accuracy, true reward, KL, RM score; loss/ppl; RM pairwise accuracy."""
    cli = _cli()

    def run():
        from workbench.errors import WorkbenchError
        from workbench.eval.evaluate import NOTHING, evaluate_checkpoint

        if not (prompts or pairs or text):
            raise WorkbenchError(NOTHING)
        if (ref or rm) and not prompts and not (rm and pairs):
            raise WorkbenchError("--ref and --rm measure answers: give --prompts FILE too")
        if limit is not None and limit < 1:
            raise WorkbenchError(f"--limit must be at least 1, got {limit}")
        if threads is not None and threads < 1:
            raise WorkbenchError(f"--threads must be at least 1, got {threads}")
        _set_threads(threads, device)
        err = cli._Console(stderr=True)
        results = []
        with _Progress(err) as report:
            for ckpt in checkpoints:
                r = evaluate_checkpoint(ckpt, prompts=prompts, pairs=pairs, text=text, ref=ref, rm=rm,
                                        max_new_tokens=max_new_tokens, samples_seed=seed, device=device,
                                        limit=limit, progress=report(ckpt), text_window=text_window,
                                        skip_bad=skip_bad)
                for spec, note in r.get("skipped", {}).items():
                    err.print(f"[yellow]{spec}: skipped {note['skipped']} bad records; first: "
                              f"{'; '.join(note['first'])}[/]", highlight=False)
                if as_json:
                    print(json.dumps(r, ensure_ascii=False), flush=True)
                results.append(r)
        if not as_json:
            cli._Console().print(_table(checkpoints, results))

    cli._run(run)


def _set_threads(threads: int | None, device: str) -> None:
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    elif device == "cpu" or (device == "auto" and not torch.cuda.is_available()):
        torch.set_num_threads(1)  # docs/BENCHMARKS.md: with 2 threads small decode ops wait on each other


class _Progress:
    """A transient rich progress bar on a terminal's stderr; `report(ckpt)` gives evaluate's callback."""

    def __init__(self, console):
        self.console, self.bar, self.tasks = console, None, {}

    def __enter__(self):
        if self.console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), console=self.console, transient=True)
            self.bar.start()
        return self.report

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.stop()

    def report(self, ckpt: str):
        def update(task: str, done: int, total: int):
            if self.bar is None:
                return
            key = (ckpt, task)
            if key not in self.tasks:
                self.tasks[key] = self.bar.add_task(f"{ckpt}: {task}", total=total)
            self.bar.update(self.tasks[key], completed=done, total=total)
        return update


# ---------------------------------------------------------------------------------------- probe
def probe(
    checkpoint: str = typer.Argument(..., metavar="CKPT", help="A checkpoint or a run directory (its latest checkpoint)."),
    text: str = typer.Argument(..., help="The text whose next token to show."),
    top_k: int = typer.Option(10, "--top-k", "-k", help="How many tokens to list."),
    chat: bool = typer.Option(False, "--chat", help="Render TEXT as a ChatML user turn + the assistant's generation prompt."),
    device: str = typer.Option("auto", "--device"),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
):
    """The model's top-k next tokens after TEXT, with their probabilities."""
    cli = _cli()

    def run():
        from rich.table import Table

        from workbench.eval.probe import probe as run_probe
        from workbench.inspector import printable

        p = run_probe(checkpoint, text, top_k=top_k, chat=chat, device=device)
        if as_json:
            print(json.dumps(p, ensure_ascii=False))
            return
        t = Table(title=f"next token after {'the chat prompt' if chat else 'the text'} "
                        f"({p['prompt_tokens']} tokens) — {p['checkpoint']}", title_justify="left")
        for name, justify in (("#", "right"), ("token", "left"), ("id", "right"), ("prob", "right"), ("", "left")):
            t.add_column(name, justify=justify)
        for rank, row in enumerate(p["top"], 1):
            t.add_row(str(rank), printable(repr(row["token"])), str(row["id"]), f"{row['prob']:.2%}",
                      "█" * round(row["prob"] * 30))
        t.caption = f"these {len(p['top'])} tokens hold {sum(r['prob'] for r in p['top']):.1%} of the probability"
        cli._Console().print(t)

    cli._run(run)


# ---------------------------------------------------------------------------------------- chinchilla
def chinchilla(
    flops: Optional[str] = typer.Option(None, "--flops", help="A compute budget in FLOPs (1e18): the optimal split."),
    params: Optional[str] = typer.Option(None, "--params", help="Parameters (6.8M): the optimal tokens; with --tokens, where that stands."),
    tokens: Optional[str] = typer.Option(None, "--tokens", help="Training tokens (2B): the optimal model size."),
    preset_name: Optional[str] = typer.Option(None, "--preset", help="A model preset's parameters (with --tokenizer's vocabulary)."),
    tokenizer: Optional[str] = typer.Option(None, "--tokenizer", "-t", help="With --preset: the vocabulary (default cl100k_base)."),
    run_dir: Optional[str] = typer.Option(None, "--run", help="A run or checkpoint: its parameters and the tokens it was trained on."),
    as_json: bool = typer.Option(False, "--json", help="Print the numbers as JSON."),
):
    """Chinchilla's rule of thumb (D ≈ 20·N tokens, C ≈ 6·N·D FLOPs) for a budget, a preset or a run."""
    cli = _cli()

    def run():
        from workbench.errors import WorkbenchError
        from workbench.eval import chinchilla as ch

        if tokenizer is not None and preset_name is None:
            raise WorkbenchError("--tokenizer only applies to --preset")
        amounts = {k: ch.parse_amount(v, f"--{k}") for k, v in (("flops", flops), ("params", params),
                                                                  ("tokens", tokens)) if v is not None}
        if run_dir is not None:
            if amounts or preset_name:
                raise WorkbenchError("--run takes its parameters and tokens from the run: give it alone")
            out = ch.run_standing(run_dir)
        elif preset_name is not None:
            if set(amounts) - {"tokens"}:
                raise WorkbenchError("--preset sets the parameters: combine it with --tokens only")
            out = ch.preset_standing(preset_name, tokenizer, amounts.get("tokens"))
        elif set(amounts) == {"params", "tokens"}:
            out = ch.standing(amounts["params"], amounts["tokens"])
        elif len(amounts) == 1:
            out = ch.compute_optimal(**amounts)
        else:
            raise WorkbenchError("give one of --flops C, --params N or --tokens D (or --params with --tokens), "
                                 "--preset NAME [--tokens D], or --run RUN")
        if as_json:
            print(json.dumps(out))
            return
        from rich.table import Table

        t = Table(title="Chinchilla: D ≈ 20·N tokens, C ≈ 6·N·D FLOPs", show_header=False, title_justify="left")
        t.add_column(style="bold")
        t.add_column(justify="right")
        for key, value in out.items():
            if key == "flops":
                value = f"{value:.3g}"
            elif key in ("tokens_per_param", "fraction_of_optimal_tokens"):
                value = f"{value:.2f}"
            elif isinstance(value, (int, float)) and key != "step":
                value = _amount(value)
            t.add_row(key.replace("_", " "), "-" if value is None else str(value))
        cli._Console().print(t)

    cli._run(run)
