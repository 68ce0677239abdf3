"""`workbench data ...` and `workbench tokenizer ...`: the pretraining-corpus pipeline and BPE training.

    workbench data prepare sample_data/text.jsonl --out runs/data
    workbench data prepare ../shared/data/text_tinyshakespeare.txt --out runs/shakespeare --tokenizer tok.tiktoken
    workbench tokenizer train sample_data/text.jsonl --vocab-size 4096 --out tok.tiktoken
    workbench data quality train --good ../shared/data/chat_lima.jsonl --bad ../shared/data/text_c4_demo.jsonl --out runs/quality
    workbench data prepare ../shared/data/text_c4_demo.jsonl --out runs/c4 --quality-model runs/quality --quality-threshold 0.5
    workbench data prepare --mix ../shared/data/text_c4_demo.jsonl=0.7 --mix ../shared/data/text_tinyshakespeare.txt=0.3 --out runs/mix

Thin: options become config overrides; the work is in workbench/data/prepare.py,
workbench/data/quality_model.py and workbench/tokenizer_train.py.
"""

from __future__ import annotations

import json
from typing import List, Optional

import typer

data_app = typer.Typer(no_args_is_help=True, help="Prepare pretraining data: clean, filter, deduplicate, scrub PII, tokenize, pack into shards.")
quality_app = typer.Typer(no_args_is_help=True, help="Train the quality classifier that `data prepare --quality-model` uses.")
data_app.add_typer(quality_app, name="quality")
tokenizer_app = typer.Typer(no_args_is_help=True, help="Train a byte-level BPE tokenizer (saved as a .tiktoken file).")


@data_app.command("prepare")
def prepare(
    inputs: Optional[List[str]] = typer.Argument(None, help=".txt, .jsonl/.json (a text field), .parquet files or folders of them (or --mix)."),
    out: str = typer.Option(..., "--out", "-o", help="Output folder: train_*.bin, val_*.bin, index.json, report.json, report.md."),
    config: Optional[str] = typer.Option(None, "--config", "-c", help="YAML config (see configs/data/prepare.yaml for every setting)."),
    tokenizer: Optional[str] = typer.Option(None, "--tokenizer", "-t", help="cl100k_base (default) or a .tiktoken file from `workbench tokenizer train`."),
    seq_len: Optional[int] = typer.Option(None, "--seq-len", help="Training window length recorded in the index (default 1024)."),
    val_fraction: Optional[float] = typer.Option(None, "--val-fraction", help="Share of documents in the validation split (default 0.01)."),
    text_field: Optional[str] = typer.Option(None, "--text-field", help="Field holding the text in .jsonl/.json/.parquet (default: text)."),
    txt_split: Optional[str] = typer.Option(None, "--txt-split", help="How .txt files become documents: chunk (default), paragraph, line, file."),
    no_quality: bool = typer.Option(False, "--no-quality", help="Skip the document quality filters (normalise, PII and dedup still run)."),
    no_near_dedup: bool = typer.Option(False, "--no-near-dedup", help="Skip MinHash near-duplicate removal."),
    quality_model: Optional[str] = typer.Option(None, "--quality-model", help="A model folder from `workbench data quality train`: adds the classifier step."),
    quality_threshold: Optional[float] = typer.Option(None, "--quality-threshold", help="Keep documents scoring at least this (0-1, default 0.5)."),
    write_removed: bool = typer.Option(False, "--write-removed", help="Also write removed.jsonl: what the heuristic filters removed (a --bad file for `quality train`)."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip (and count) unreadable records and files instead of stopping."),
    mix: Optional[List[str]] = typer.Option(None, "--mix", help="A weighted source, PATH=WEIGHT (repeatable, instead of INPUTS): the train shards hold these shares of tokens."),
    mix_tokens: Optional[int] = typer.Option(None, "--mix-tokens", help="Train tokens of the mix (default: the scarcest source at one epoch; more repeats documents)."),
    workers: Optional[int] = typer.Option(None, "--workers", "-j", help="Processes for the filters, the classifier and PII (default 0: every core; 1: none). Same output for any number."),
    force: bool = typer.Option(False, "--force", help="Replace --out if it exists and is not empty."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON instead of tables."),
):
    """Clean, filter, deduplicate, scrub PII, tokenize and pack documents into training shards."""
    from workbench.cli import _Console, _run
    from workbench.data.mix import parse_mix

    overrides = {k: v for k, v in {
        "pack.tokenizer": tokenizer, "pack.seq_len": seq_len, "pack.val_fraction": val_fraction,
        "input.text_field": text_field, "input.txt_split": txt_split,
        "input.skip_bad": skip_bad or None, "filters.enabled": False if no_quality else None,
        "dedup.near": False if no_near_dedup else None, "classifier.model": quality_model,
        "classifier.threshold": quality_threshold, "report.write_removed": write_removed or None,
        "parallel.workers": workers, "mix.tokens": mix_tokens}.items()
        if v is not None}

    def go():
        if mix:
            overrides["mix.sources"] = parse_mix(mix)
        from workbench.data.prepare import load_config
        from workbench.data.prepare import prepare as run_prepare
        from workbench.data.prepare_report import print_report
        from workbench.errors import WorkbenchError

        cfg = load_config(config, overrides)
        if not inputs and not cfg.mix.sources:
            raise WorkbenchError("give input files or folders, or a mix of sources: --mix PATH=WEIGHT (repeatable)")
        err = _Console(stderr=True)
        with err.status("reading...") as status:
            report = run_prepare(inputs or [], out, cfg, force=force,
                                 progress=lambda n: status.update(f"{n:,} documents read"))
        if as_json:
            _Console().print_json(json.dumps(report, ensure_ascii=False))
        else:
            print_report(report, _Console())

    _run(go)


@quality_app.command("train")
def quality_train(
    good: List[str] = typer.Option(..., "--good", help="Curated text (repeatable): .txt, .jsonl/.json/.parquet with a text field, or conversations (assistant turns)."),
    bad: List[str] = typer.Option(..., "--bad", help="Text to filter out (repeatable): raw web text, a prepare removed.jsonl, same formats."),
    out: str = typer.Option(..., "--out", "-o", help="Model folder to write (quality.safetensors + quality.json)."),
    held_out: float = typer.Option(0.2, "--held-out", help="Share of each class held out to measure the saved model (0: train on all)."),
    epochs: int = typer.Option(30, "--epochs", help="Passes of SGD over the training documents."),
    no_char_ngrams: bool = typer.Option(False, "--no-char-ngrams", help="Word 1-2-grams only: ~2x faster scoring, less accurate."),
    text_field: str = typer.Option("text", "--text-field", help="Field holding the text in .jsonl/.json/.parquet."),
    txt_split: str = typer.Option("chunk", "--txt-split", help="How .txt files become documents: chunk, paragraph, line, file."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip (and count) unreadable records and files instead of stopping."),
    force: bool = typer.Option(False, "--force", help="Replace --out if it exists."),
    as_json: bool = typer.Option(False, "--json", help="Print the training report as JSON."),
):
    """Train a hashed word + character n-gram logistic regression: good text vs bad; report held-out accuracy."""
    from workbench.cli import _Console, _run

    def go():
        from workbench.data.corpus import ReadConfig
        from workbench.data.quality_model import QualityTrainConfig, print_train_report, train_quality_model

        cfg = QualityTrainConfig(held_out=held_out, epochs=epochs, **({"char_ngrams": [0, 0]} if no_char_ngrams else {}))
        read = ReadConfig(text_field=text_field, txt_split=txt_split, skip_bad=skip_bad)
        with _Console(stderr=True).status("reading and training..."):
            report = train_quality_model(good, bad, out, cfg, read=read, force=force)
        if as_json:
            _Console().print_json(json.dumps(report, ensure_ascii=False))
        else:
            print_train_report(report, _Console())

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
