"""Fixtures for the TUI tests: the trainer tests' tiny tokenizer and models, and app helpers."""

from tests.workbench.train.conftest import TINY, losses, pretrained, run, sft_run, small_tok  # noqa: F401
from tests.workbench.eval.conftest import byte_tok, random_lm, reward_checkpoint, scripted  # noqa: F401,E402
