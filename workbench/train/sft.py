"""Supervised fine-tuning: ChatML conversations, loss only on the assistant's tokens.

    workbench train sft --config configs/sft/tiny.yaml --from runs/pretrain --out runs/sft

Each conversation is rendered by workbench.chat (the masks `workbench inspect` shows): the
assistant's content and its `<|im_end|>` are trained, everything else is -100. The loss is the
mean over trained tokens of the batch; a batch with none gives 0, never NaN.

`packing: true` fills each row of `max_len` tokens with several whole conversations. Position ids
restart at 0 for each, and the model's attention mask keeps every conversation from seeing the
others (no cross-contamination); the first token of each is `<|im_start|>`, which is never a label,
so no conversation is trained to predict the next one either.

`lora: {rank, alpha, dropout, targets}` trains LoRA adapters on the frozen parent instead of every
weight (workbench.model.lora); the checkpoints hold the adapters and a pointer to the parent.

`replay_data: TEXT` mixes pretraining text into every micro-batch (InstructGPT's "ptx" term): the
loss is the chat loss + replay_weight x the next-token loss of replay_batch_size windows of
replay_seq_len tokens, so SFT learns the chat format without unlearning what pretraining stored
(the cpu-demo recipe: answers about towns that only the pretraining text describes). The windows
of a micro-batch are a function of (seed, its data position) only: a resumed run draws the same
ones, and under several processes each rank draws its own (there the whole loss of a rank, replay
term included, is weighted by its share of the trained chat tokens, as the chat loss must be).
`lm_loss` stays the chat loss; `replay_loss` is logged beside it.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from workbench.chat import IGNORE
from workbench.data.collate import SFTCollator
from workbench.errors import WorkbenchError
from workbench.train.data import ExampleLoader, eval_batches, load_examples, split_validation
from workbench.train.engine import Stage
from workbench.train.models import load_parent, restore_weights


class SFTStage(Stage):
    name = "sft"
    loss_weight = "trained_tokens"  # the loss is a mean over trained tokens (ranks hold different counts)

    def setup(self) -> None:
        cfg = self.cfg
        self.model, self.tokenizer, _ = load_parent(cfg.init_from, "policy", self.engine.device, cfg,
                                                    log=self.engine.log)
        if cfg.max_len > self.model.cfg.max_seq_len:
            self.engine.log(f"max_len {cfg.max_len} is longer than the model's max_seq_len "
                            f"{self.model.cfg.max_seq_len}: RoPE extrapolates, quality may suffer")
        load = dict(max_len=cfg.max_len, fmt=cfg.format, mode=cfg.mode, skip_bad=cfg.skip_bad, log=self.engine.log)
        examples, self.data_info = load_examples(cfg.data, "conversation", self.tokenizer, **load)
        if cfg.val_data:
            self.train_items = [e.rendered for e in examples]
            self.val_items = [e.rendered for e in load_examples(cfg.val_data, "conversation", self.tokenizer, **load)[0]]
        else:
            train, val = split_validation(examples, cfg.val_fraction, cfg.seed)
            self.train_items, self.val_items = [e.rendered for e in train], [e.rendered for e in val]
        self.collate = SFTCollator(self.tokenizer.pad_id, cfg.max_len)
        self.loader = ExampleLoader(self.train_items, cfg.batch_size, cfg.seed, self.collate)
        self.replay = self._load_replay() if cfg.replay_data else None

    def _load_replay(self):
        from workbench.train.pretrain import text_stream

        cfg = self.cfg
        if cfg.replay_seq_len + 1 > self.model.cfg.max_seq_len:
            raise WorkbenchError(f"replay_seq_len {cfg.replay_seq_len} (+1 for the shifted target) exceeds the "
                                 f"model's max_seq_len {self.model.cfg.max_seq_len}; lower replay_seq_len")
        try:
            replay = text_stream(cfg.replay_data, self.tokenizer, skip_bad=cfg.skip_bad, log=self.engine.log)
        except WorkbenchError as e:  # name the setting: `data` is the chats, this is the pretraining text
            raise WorkbenchError(f"replay_data={cfg.replay_data} (plain text: .jsonl {{\"text\"}}, .txt, or a "
                                 f"`workbench data prepare` folder): {e}") from None
        if replay.num_windows(cfg.replay_seq_len) == 0:
            raise WorkbenchError(f"replay_data {cfg.replay_data}: {replay.num_tokens} tokens, fewer than one window "
                                 f"of replay_seq_len {cfg.replay_seq_len} + 1; use a shorter replay_seq_len or more text")
        self.engine.log(f"replay: {replay.num_tokens:,} tokens of {cfg.replay_data}, {cfg.replay_batch_size} "
                        f"windows of {cfg.replay_seq_len} per micro-batch at weight {cfg.replay_weight:g}")
        return replay

    def _replay_windows(self, position: int) -> torch.Tensor:
        """replay_batch_size windows of replay_seq_len + 1 tokens starting anywhere in the text (not on
        fixed window boundaries: a note is not always cut at the same place)."""
        cfg, span = self.cfg, self.cfg.replay_seq_len + 1
        starts = np.random.default_rng([cfg.seed, 7, position]).integers(0, self.replay.num_tokens - span + 1,
                                                                          cfg.replay_batch_size)
        return torch.from_numpy(np.stack([self.replay.tokens(int(s), int(s) + span) for s in starts]))

    def load_model(self, ckpt) -> None:
        restore_weights(self.model, ckpt)  # a LoRA run: its adapters only

    def lineage(self) -> dict:
        return {**super().lineage(), **({"replay_data": self.cfg.replay_data} if self.cfg.replay_data else {})}

    def batches(self, start: int):
        for position, batch in self._chat_batches(start):
            if self.replay is not None:
                batch["replay"] = self._replay_windows(position)
            yield position, batch

    def _chat_batches(self, start: int):
        if not self.cfg.packing:
            yield from self.loader.batches(start)
            return
        stream = self.loader.stream(start)
        pending = next(stream)
        while True:
            rows, position = [], None
            for _ in range(self.cfg.batch_size):
                row, used = [], 0
                while used + len(pending[1]) <= self.cfg.max_len:
                    position, item = pending
                    row.append(item)
                    used += len(item)
                    pending = next(stream)
                rows.append(row)
            yield position, pack_rows(rows, self.cfg.max_len, self.tokenizer.pad_id)

    def loss(self, batch):
        dev = self.engine.device
        b = {k: v.to(dev, non_blocking=True) for k, v in batch.items()}
        out = self.model(b["input_ids"], labels=b["labels"], attention_mask=b["attention_mask"],
                         position_ids=b.get("position_ids"))
        metrics = {"lm_loss": float(out.lm_loss.detach()), "trained_tokens": out.n_tokens,
                   "tokens": int(b["attention_mask"].sum()), "samples": int(batch.get("examples", b["input_ids"].shape[0]))}
        if out.balance is not None:
            metrics["moe_balance"] = out.balance
        if "replay" in b:
            replay = self.model(b["replay"], labels=b["replay"])  # the model shifts: as in pretraining
            metrics["replay_loss"] = float(replay.lm_loss.detach())
            return out.loss + self.cfg.replay_weight * replay.lm_loss, metrics
        return out.loss, metrics

    def evaluate(self) -> dict:
        if not self.val_items:
            return {}
        total, count = 0.0, 0
        for batch in eval_batches(self.val_items, self.cfg.batch_size, self.cfg.eval_batches, self.collate):
            b = {k: v.to(self.engine.device) for k, v in batch.items()}
            out = self.model(b["input_ids"], labels=b["labels"], attention_mask=b["attention_mask"])
            total += float(out.lm_loss) * out.n_tokens
            count += out.n_tokens
        loss = total / max(count, 1)
        return {"val/loss": loss, "val/ppl": math.exp(min(loss, 50.0)), "val/trained_tokens": count}


def pack_rows(rows: list[list], max_len: int, pad_id: int) -> dict:
    """Rows of whole conversations -> input_ids, labels, attention_mask, position_ids [B, max_len]."""
    B = len(rows)
    input_ids = torch.full((B, max_len), pad_id, dtype=torch.long)
    labels = torch.full((B, max_len), IGNORE, dtype=torch.long)
    attention_mask = torch.zeros((B, max_len), dtype=torch.long)
    position_ids = torch.zeros((B, max_len), dtype=torch.long)
    for i, row in enumerate(rows):
        at = 0
        for r in row:
            n = len(r)
            input_ids[i, at:at + n] = torch.tensor(r.input_ids)
            labels[i, at:at + n] = torch.tensor(r.labels)
            attention_mask[i, at:at + n] = 1
            position_ids[i, at:at + n] = torch.arange(n)
            at += n
        position_ids[i, at:] = torch.arange(max_len - at)  # the padding tail: a document of its own
    return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask,
            "position_ids": position_ids, "examples": torch.tensor(sum(len(r) for r in rows))}
