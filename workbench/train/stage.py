"""What a stage gives the engine (engine.py): models, batches and a loss, and defaults it may override.

    from workbench.train.engine import Stage       # (defined here; engine.py is where the stages take it)

    class MyStage(Stage):
        name = "mine"
        def setup(self): ...             # self.model (saved as the checkpoint), self.tokenizer, the data
        def batches(self, start): ...    # yield (position, micro-batch) forever
        def loss(self, batch): ...       # (loss, metrics)

The engine runs every stage the same way (optimiser, schedule, accumulation, checkpoints, resume,
metrics); a stage overrides the rest (train_step, write_model, trainable...) only where it differs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from workbench.train.config import TrainConfig

if TYPE_CHECKING:
    from workbench.train.engine import Engine


class Stage(ABC):
    """What a stage gives the engine. Subclasses set `self.model` (saved as the checkpoint) in setup."""

    name = ""
    kind = "policy"  # what the checkpoint is: policy | reward
    # The metric the loss is a mean over (SFT: "trained_tokens"), so that across ranks the loss is the
    # mean over the job's whole micro-batch; None when every rank's share weighs the same (equal rows).
    loss_weight: str | None = None

    def __init__(self, cfg: TrainConfig, engine: "Engine"):
        self.cfg, self.engine = cfg, engine
        self.model = None
        self.tokenizer = None

    # --- every stage implements these
    @abstractmethod
    def setup(self) -> None:
        """Build models (on engine.device), the tokenizer and the data."""

    @abstractmethod
    def batches(self, start: int):
        """Yield (position, micro-batch) forever; `position` after this batch resumes exactly."""

    def loss(self, batch) -> tuple[torch.Tensor, dict]:
        """(loss to backpropagate, metrics). Metrics: floats, plus `tokens` (and `samples`) counts.
        Used by the default train_step; a stage that overrides train_step (PPO) need not define it."""
        raise TypeError(f"{type(self).__name__} defines neither loss() nor its own train_step()")

    def evaluate(self) -> dict:
        """Validation metrics, keys prefixed `val/` (run under no_grad by the engine)."""
        return {}

    # --- defaults a stage may override
    def trainable(self) -> dict[str, torch.nn.Module]:
        return {"model": self.model}

    def train_step(self, micro: list) -> dict:
        """One optimizer step over `grad_accum` micro-batches. PPO overrides it (rollout + epochs)."""
        return self.engine.accumulate(micro)

    def write_model(self, dest: Path) -> None:
        from workbench.model.checkpoint import write_checkpoint_files

        write_checkpoint_files(self.model, dest, self.tokenizer, extra=self.checkpoint_extra())

    def load_model(self, ckpt: Path) -> None:
        """Resume: load the trainable weights from one of this run's checkpoints."""
        from workbench.model.checkpoint import load_checkpoint

        model, _ = load_checkpoint(ckpt)
        self.model.load_state_dict(model.state_dict())

    def checkpoint_extra(self) -> dict:
        return {"kind": self.kind, "stage": self.name, "step": self.engine.step}

    def state_dict(self) -> dict:
        """JSON-able stage state kept in trainer.json (e.g. PPO's adaptive KL coefficient)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def lineage(self) -> dict:
        """Inputs to record in lineage.json besides the parent checkpoint (datasets, reward model)."""
        return {"data": self.cfg.data, "val_data": self.cfg.val_data}
