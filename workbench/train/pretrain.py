"""Pretraining: next-token loss on documents packed into fixed windows, `<|endoftext|>` between them.

    workbench train pretrain --config configs/pretrain/tiny.yaml --out runs/pretrain

Data: a folder written by `workbench data prepare` (its train and val shards), or raw text (a
.jsonl of {"text"}, .txt files, ...) tokenized here, with `val_fraction` of the documents held out,
or a mix of raw text sources, `data: {web.jsonl: 0.7, books.txt: 0.3}`: documents are sampled so the
training stream holds those shares of tokens (the scarcest source relative to its weight once, the
others subsampled; workbench.train.data.mix_documents), and val holds val_fraction of each source.
Every token is trained; a window may start mid-document, as in GPT pretraining. The model is a new
`preset` (+ `model` overrides, vocabulary from `tokenizer`), or `init_from` to continue training.
Validation: loss and perplexity on the first `eval_batches` windows of the validation split.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from workbench.data.shards import INDEX, ShardSet, open_shards
from workbench.errors import WorkbenchError
from workbench.train.engine import Stage
from workbench.train.models import load_parent


def _ids(examples) -> list[np.ndarray]:
    return [np.asarray(e.rendered.input_ids, dtype=np.int64) for e in examples]


def _name(data) -> str:
    """`data` in a message: the path, or the paths of a mix."""
    return f"the mix of {', '.join(data)}" if isinstance(data, dict) else str(data)


class PretrainStage(Stage):
    name = "pretrain"

    def setup(self) -> None:
        cfg, device = self.cfg, self.engine.device
        if cfg.init_from:
            if cfg.tokenizer or cfg.model:
                raise WorkbenchError("init_from continues an existing model: leave tokenizer and model unset "
                                     "(they come from the checkpoint)")
            self.model, self.tokenizer, _ = load_parent(cfg.init_from, "policy", device, cfg)
        else:
            from workbench.model.config import preset
            from workbench.model.transformer import Transformer
            from workbench.tokenizer import load_tokenizer

            self.tokenizer = load_tokenizer(cfg.tokenizer)
            if "vocab_size" in cfg.model:
                raise WorkbenchError("model.vocab_size is set by the tokenizer; choose `tokenizer` instead")
            mcfg = preset(cfg.preset, vocab_size=self.tokenizer.vocab_size, gradient_checkpointing=cfg.gradient_checkpointing,
                          compile=cfg.compile, **cfg.model)
            self.model = Transformer(mcfg, init=False)
            self.model.init_weights(cfg.seed)
            self.model.to(device)
        if cfg.seq_len + 1 > self.model.cfg.max_seq_len:
            raise WorkbenchError(f"seq_len {cfg.seq_len} (+1 for the shifted target) exceeds the model's "
                                 f"max_seq_len {self.model.cfg.max_seq_len}; lower seq_len"
                                 + ("" if cfg.init_from else " or set model: {max_seq_len: N}"))
        self.train_set, self.val_set = self._load_data()
        if self.train_set.num_windows(cfg.seq_len) == 0:
            raise WorkbenchError(f"{_name(cfg.data)}: {self.train_set.num_tokens} training tokens, fewer than one window "
                                 f"of seq_len {cfg.seq_len} + 1; use a shorter seq_len or more text")
        self.engine.log(f"pretrain data: {self.train_set.num_tokens:,} train tokens "
                        f"({self.train_set.num_windows(cfg.seq_len):,} windows of {cfg.seq_len}), "
                        f"{self.val_set.num_tokens if self.val_set else 0:,} validation tokens")

    def _load_data(self) -> tuple[ShardSet, ShardSet | None]:
        cfg = self.cfg
        if isinstance(cfg.data, dict):
            from workbench.train.data import mix_documents

            train, val, _ = mix_documents(cfg.data, self.tokenizer, val_fraction=0 if cfg.val_data else cfg.val_fraction,
                                          seed=cfg.seed, fmt=cfg.format, skip_bad=cfg.skip_bad, log=self.engine.log)
            name = _name(cfg.data)
            if cfg.val_data:
                return token_stream(train, name, "train"), self._raw(cfg.val_data, "val")[0]
            return token_stream(train, name, "train"), (token_stream(val, name, "val") if val else None)
        if prepared(cfg.data):
            train = open_shards(cfg.data, "train", self.tokenizer)
            val = None
            if cfg.val_data:
                val = self._raw(cfg.val_data, "val")[0]
            elif "val" in train.index["splits"] and train.index["splits"]["val"]["tokens"] > cfg.seq_len:
                val = open_shards(cfg.data, "val", self.tokenizer)
            return train, val
        from workbench.train.data import split_validation

        everything, docs = self._raw(cfg.data, "train")
        if cfg.val_data:
            return everything, self._raw(cfg.val_data, "val")[0]
        train_docs, val_docs = split_validation(docs, cfg.val_fraction, cfg.seed)
        val = token_stream(_ids(val_docs), cfg.data, "val") if val_docs else None
        return token_stream(_ids(train_docs), cfg.data, "train"), val

    def _raw(self, spec: str, split: str):
        return raw_text(spec, self.tokenizer, split, fmt=self.cfg.format, skip_bad=self.cfg.skip_bad, log=self.engine.log)

    def batches(self, start: int):
        for position, windows in self.train_set.batches(self.cfg.batch_size, self.cfg.seq_len,
                                                        seed=self.cfg.seed, start=start):
            yield position, torch.from_numpy(windows)

    def loss(self, windows):
        w = windows.to(self.engine.device, non_blocking=True)
        out = self.model(w, labels=w)  # the model shifts: position t predicts w[t + 1]
        metrics = {"lm_loss": float(out.lm_loss.detach()), "tokens": out.n_tokens, "samples": w.shape[0]}
        if out.balance is not None:
            metrics["moe_balance"] = out.balance
        return out.loss, metrics

    def evaluate(self) -> dict:
        if self.val_set is None or self.val_set.num_windows(self.cfg.seq_len) == 0:
            return {}
        n = self.val_set.num_windows(self.cfg.seq_len)
        limit = n if not self.cfg.eval_batches else min(n, self.cfg.eval_batches * self.cfg.batch_size)
        total, count = 0.0, 0
        for start in range(0, limit, self.cfg.batch_size):
            rows = np.stack([self.val_set.window(i, self.cfg.seq_len) for i in range(start, min(limit, start + self.cfg.batch_size))])
            w = torch.from_numpy(rows).to(self.engine.device)
            out = self.model(w, labels=w)
            total += float(out.lm_loss) * out.n_tokens
            count += out.n_tokens
        loss = total / max(count, 1)
        return {"val/loss": loss, "val/ppl": math.exp(min(loss, 50.0)), "val/tokens": count}


def prepared(spec) -> bool:
    """Is `spec` a folder written by `workbench data prepare` (shards + index), not raw text?"""
    return Path(spec).is_dir() and (Path(spec) / INDEX).is_file()


def token_stream(docs: list[np.ndarray], spec, split: str) -> ShardSet:
    """Documents (token arrays, each already ending in <|endoftext|>) as one in-memory token stream."""
    tokens = np.concatenate(docs)
    index = {"splits": {split: {"documents": len(docs), "tokens": len(tokens)}}, "tokenizer": {}}
    return ShardSet(Path(spec), split, index, [tokens], np.array([0, len(tokens)], dtype=np.int64))


def raw_text(spec: str, tokenizer, split: str, *, fmt=None, skip_bad=False, log=None):
    """(token stream, documents) of raw text (.jsonl {"text"}, .txt, ...), tokenized here."""
    from workbench.train.data import load_examples

    examples, _ = load_examples(spec, "text", tokenizer, max_len=None, fmt=fmt, skip_bad=skip_bad, log=log)
    return token_stream(_ids(examples), spec, split), examples


def text_stream(spec: str, tokenizer, *, skip_bad=False, log=None) -> ShardSet:
    """Every training token of `spec`: a `workbench data prepare` folder's train split, or raw text
    (all of it: nothing is held out). SFT's replay reads its pretraining text through this."""
    if prepared(spec):
        return open_shards(spec, "train", tokenizer)
    return raw_text(spec, tokenizer, "train", skip_bad=skip_bad, log=log)[0]
