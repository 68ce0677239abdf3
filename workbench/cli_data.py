"""`workbench data ...` and `workbench tokenizer ...`: the pretraining-corpus pipeline and BPE training.

    workbench data prepare sample_data/text.jsonl --out runs/data
    workbench tokenizer train sample_data/text.jsonl --vocab-size 4096 --out tok.tiktoken
"""

from __future__ import annotations

import typer

data_app = typer.Typer(no_args_is_help=True, help="Prepare pretraining data: clean, filter, deduplicate, scrub PII, tokenize, pack into shards.")
tokenizer_app = typer.Typer(no_args_is_help=True, help="Train a byte-level BPE tokenizer (saved as a .tiktoken file).")
