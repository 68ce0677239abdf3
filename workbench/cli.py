"""The `workbench` command line. Thin: parse, validate, call the core, turn user errors into exits.

    workbench inspect sample_data/chat.jsonl --limit 3
    workbench inspect DATA --json | jq .labels
"""

from __future__ import annotations

import os
import sys
from typing import Optional

import typer
from rich.console import Console

from workbench.errors import WorkbenchError

app = typer.Typer(add_completion=False, pretty_exceptions_show_locals=False, no_args_is_help=True, rich_markup_mode="rich",
                  help="Run, and see, the whole LLM training pipeline on small models.")


@app.callback()
def _root(version: bool = typer.Option(False, "--version", help="Print the version and exit.")):
    """Run, and see, the whole LLM training pipeline on small models."""
    if version:
        from workbench import __version__

        typer.echo(__version__)
        raise typer.Exit()


# Sub-command groups live in their own modules so each stays small; they share _run/_fail below.
def _register_groups():
    from workbench.cli_data import data_app, tokenizer_app
    from workbench.cli_eval import chinchilla, eval_command, probe
    from workbench.cli_model import export, generate, model_app
    from workbench.cli_pipeline import pipeline
    from workbench.cli_train import train_app

    app.add_typer(data_app, name="data")
    app.add_typer(tokenizer_app, name="tokenizer")
    app.add_typer(model_app, name="model")
    app.add_typer(train_app, name="train")
    app.command()(generate)
    app.command()(export)
    app.command(name="eval")(eval_command)
    app.command()(probe)
    app.command()(chinchilla)
    app.command()(pipeline)


@app.command()
def inspect(
    data: str = typer.Argument(..., help="A .jsonl/.json/.parquet/.csv/.arrow/.txt file, a folder (or a save_to_disk folder), or a hub dataset name."),
    format: Optional[str] = typer.Option(None, "--format", "-f", help="ultrachat, messages, sharegpt, completion, alpaca, preference, prompt or text (default: detected)."),
    tokenizer: Optional[str] = typer.Option(None, "--tokenizer", "-t", help="cl100k_base (default, offline), another tiktoken encoding, or a .tiktoken file."),
    mode: str = typer.Option("all", "--mode", "-m", help="Which tokens are trained: all (assistant turns), last (last assistant turn), every (all tokens)."),
    max_len: Optional[int] = typer.Option(None, "--max-len", help="Truncate to this many tokens, as training would."),
    index: Optional[int] = typer.Option(None, "--index", "-i", help="Show only the record at this 0-based index."),
    limit: Optional[int] = typer.Option(None, "--limit", "-n", help="Show the first K records (default 5; 0 = all)."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip (and count) bad records instead of stopping at the first."),
    split: Optional[str] = typer.Option(None, "--split", help="Split of a hub dataset (default: train; train_sft for ultrachat_200k, train_prefs for ultrafeedback_binarized)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per example: input_ids, labels, attention_mask, tokens, ..."),
):
    """Show each example's tokens, with the trained ones highlighted (the masks SFT/RM/DPO use)."""
    from workbench.chat import MODES
    from workbench.inspector import InspectOptions
    from workbench.inspector import inspect as run_inspect

    if mode not in MODES:
        _fail(f"--mode must be one of {', '.join(MODES)}, got {mode!r}")
    if max_len is not None and max_len < 1:
        _fail(f"--max-len must be at least 1, got {max_len}")
    if limit is not None and limit < 0:
        _fail(f"--limit must be 0 (all) or more, got {limit}")
    if index is not None and index < 0:
        _fail(f"--index must be 0 or more, got {index}")
    if index is not None and limit is not None:
        _fail("--index shows one record and --limit the first K: give one of them")
    limit = 5 if limit is None else limit
    opts = InspectOptions(data, format, tokenizer, mode, max_len, index, limit or None, skip_bad,
                          split, as_json)
    _run(lambda: run_inspect(opts, _Console(), _Console(stderr=True)))


class _Console(Console):
    """`workbench inspect ... | head` is a normal way to stop reading: exit 0, quietly."""

    def on_broken_pipe(self) -> None:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(0)


def _run(fn):
    try:
        return fn()
    except WorkbenchError as e:
        _fail(str(e))
    except BrokenPipeError:  # `workbench inspect ... | head`
        sys.stderr.close()
        raise typer.Exit(0)


def _fail(message: str):
    from rich.text import Text

    from workbench.inspector import printable

    Console(stderr=True, highlight=False).print(Text.assemble(("error: ", "bold red"), printable(message)),
                                                soft_wrap=True)
    raise typer.Exit(1)


_register_groups()


def main():
    app()


if __name__ == "__main__":
    main()
