"""`workbench data ...` and `workbench tokenizer ...`: the pretraining-corpus pipeline and BPE training.

    workbench data prepare sample_data/text.jsonl --out runs/data
    workbench data prepare ../shared/data/text_tinyshakespeare.txt --out runs/shakespeare --tokenizer tok.tiktoken
    workbench tokenizer train sample_data/text.jsonl --vocab-size 4096 --out tok.tiktoken

Thin: options become config overrides; the work is in workbench/data/prepare.py and
workbench/tokenizer_train.py.
"""

from __future__ import annotations

import json
from typing import List, Optional

import typer

data_app = typer.Typer(no_args_is_help=True, help="Prepare pretraining data: clean, filter, deduplicate, scrub PII, tokenize, pack into shards.")
tokenizer_app = typer.Typer(no_args_is_help=True, help="Train a byte-level BPE tokenizer (saved as a .tiktoken file).")


@data_app.command("prepare")
def prepare(
    inputs: List[str] = typer.Argument(..., help=".txt, .jsonl/.json (a text field), .parquet files or folders of them."),
    out: str = typer.Option(..., "--out", "-o", help="Output folder: train_*.bin, val_*.bin, index.json, report.json, report.md."),
    config: Optional[str] = typer.Option(None, "--config", "-c", help="YAML config (see configs/data/prepare.yaml for every setting)."),
    tokenizer: Optional[str] = typer.Option(None, "--tokenizer", "-t", help="cl100k_base (default) or a .tiktoken file from `workbench tokenizer train`."),
    seq_len: Optional[int] = typer.Option(None, "--seq-len", help="Training window length recorded in the index (default 1024)."),
    val_fraction: Optional[float] = typer.Option(None, "--val-fraction", help="Share of documents in the validation split (default 0.01)."),
    text_field: Optional[str] = typer.Option(None, "--text-field", help="Field holding the text in .jsonl/.json/.parquet (default: text)."),
    txt_split: Optional[str] = typer.Option(None, "--txt-split", help="How .txt files become documents: chunk (default), paragraph, line, file."),
    no_quality: bool = typer.Option(False, "--no-quality", help="Skip the document quality filters (normalise, PII and dedup still run)."),
    no_near_dedup: bool = typer.Option(False, "--no-near-dedup", help="Skip MinHash near-duplicate removal."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip (and count) unreadable records and files instead of stopping."),
    force: bool = typer.Option(False, "--force", help="Replace --out if it exists and is not empty."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON instead of tables."),
):
    """Clean, filter, deduplicate, scrub PII, tokenize and pack documents into training shards."""
    from workbench.cli import _Console, _run

    overrides = {k: v for k, v in {
        "pack.tokenizer": tokenizer, "pack.seq_len": seq_len, "pack.val_fraction": val_fraction,
        "input.text_field": text_field, "input.txt_split": txt_split,
        "input.skip_bad": skip_bad or None, "filters.enabled": False if no_quality else None,
        "dedup.near": False if no_near_dedup else None}.items() if v is not None}

    def go():
        from workbench.data.prepare import load_config
        from workbench.data.prepare import prepare as run_prepare
        from workbench.data.prepare_report import print_report

        cfg = load_config(config, overrides)
        err = _Console(stderr=True)
        with err.status("reading...") as status:
            report = run_prepare(inputs, out, cfg, force=force,
                                 progress=lambda n: status.update(f"{n:,} documents read"))
        if as_json:
            _Console().print_json(json.dumps(report, ensure_ascii=False))
        else:
            print_report(report, _Console())

    _run(go)


@tokenizer_app.command("train")
def train(
    corpus: List[str] = typer.Argument(..., help=".txt, .jsonl/.json (a text field), .parquet files or folders of them."),
    vocab_size: int = typer.Option(..., "--vocab-size", "-v", help="Tokens including the 256 single bytes (specials are added after them)."),
    out: str = typer.Option(..., "--out", "-o", help="The .tiktoken ranks file to write."),
    held_out: float = typer.Option(0.01, "--held-out", help="Share of documents kept aside to measure compression."),
    eval_files: Optional[List[str]] = typer.Option(None, "--eval", help="Measure compression on this file instead (repeatable)."),
    text_field: str = typer.Option("text", "--text-field", help="Field holding the text in .jsonl/.json/.parquet."),
    txt_split: str = typer.Option("chunk", "--txt-split", help="How .txt files become documents: chunk, paragraph, line, file."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip (and count) unreadable records and files instead of stopping."),
    force: bool = typer.Option(False, "--force", help="Replace --out if it exists."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
):
    """Train a byte-level BPE (GPT-4 split pattern) with rustbpe; save it in tiktoken's format."""
    from workbench.cli import _Console, _run

    def go():
        from workbench.data.corpus import ReadConfig
        from workbench.tokenizer_train import print_report, train_tokenizer

        read = ReadConfig(text_field=text_field, txt_split=txt_split, skip_bad=skip_bad)
        with _Console(stderr=True).status("training..."):
            report = train_tokenizer(corpus, vocab_size, out, held_out=held_out, eval_files=eval_files,
                                     read=read, force=force)
        if as_json:
            _Console().print_json(json.dumps(report, ensure_ascii=False))
        else:
            print_report(report, _Console())

    _run(go)
