"""Reward model: an SFT model with a scalar head, trained on preference pairs (Bradley-Terry).

    workbench train rm --config configs/rm/tiny.yaml --from runs/sft --out runs/rm

Each pair (prompt + chosen, prompt + rejected) is rendered by workbench.chat, the same tokens
`workbench inspect` shows. Both halves go through the model in one forward (`torch.cat` of the
chosen and rejected rows, which PreferenceCollator pads to one length), and the reward is the head's
value at each row's last non-pad token: the `\\n` after the response's `<|im_end|>`, so the score
sees the whole reply and the fact that it ended. The loss is -log sigmoid(r_chosen - r_rejected),
plus, with `center_rewards_coef`, TRL's penalty c * mean((r_chosen + r_rejected)^2) that keeps rewards
near 0. With `score_logprob: sum` (or mean) the reward also has w x the backbone's log-probability
of the response (w starts at 1, learnt): the model starts as the SFT model's own likelihood
preference and the head learns what likelihood misses (workbench.train.models).

The checkpoint is the backbone (an ordinary model checkpoint) + the head, with `extra.kind =
"reward"` and `extra.reward_stats`: mean, std and n of the rewards over the training responses,
chosen and rejected (at most STATS_PAIRS pairs). PPO normalises by them so its scores start at
mean 0, std 1 whatever scale the Bradley-Terry loss (which only sees differences) settled on.

With `lora:` the backbone is frozen and gets adapters; the head still trains in full, and the
checkpoint is a LoRA checkpoint of the backbone plus the head (merged into its base on load).

The pair helpers here (`load_pairs`, `PairCollator`, `stacked`) are shared with dpo.py.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from workbench.data.collate import PreferenceCollator
from workbench.train.data import ExampleLoader, eval_batches, load_examples, split_validation
from workbench.train.engine import Stage
from workbench.train.models import ScalarHeadModel, load_parent, restore_scalar_model, write_scalar_model

STATS_PAIRS = 2048  # most training pairs scored for the reward statistics saved with a checkpoint


# ---------------------------------------------------------------------- pair helpers (rm and dpo)
def load_pairs(cfg, tok, log) -> tuple[list, list]:
    """Train and validation items `(position, (chosen, rejected))`: val_data, or a held-out split of data.

    The position is the item's place in its list, so a stage can keep per-pair values (DPO's
    precomputed reference log-probs) in a tensor and look them up from a batch's `index`."""
    load = dict(max_len=cfg.max_len, fmt=cfg.format, skip_bad=cfg.skip_bad, log=log)
    train, _ = load_examples(cfg.data, "preference", tok, **load)
    if cfg.val_data:
        val = load_examples(cfg.val_data, "preference", tok, **load)[0]
    else:
        train, val = split_validation(train, cfg.val_fraction, cfg.seed)
    return ([(i, (e.chosen, e.rejected)) for i, e in enumerate(train)],
            [(i, (e.chosen, e.rejected)) for i, e in enumerate(val)])


class PairCollator:
    """PreferenceCollator over `(position, pair)` items, plus `index`: the items' positions [B]."""

    def __init__(self, pad_id: int, max_len: int):
        self.inner = PreferenceCollator(pad_id, max_len)

    def __call__(self, items: list) -> dict:
        batch = self.inner([pair for _, pair in items])
        # load_examples truncated with the same max_len and already dropped every pair with nothing
        # trainable, so nothing can be dropped here; if it were, `index` would no longer line up.
        assert batch is not None and len(batch["chosen_input_ids"]) == len(items), "a pair was dropped"
        batch["index"] = torch.tensor([i for i, _ in items])
        return batch


def stacked(batch: dict, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(input_ids, labels, attention_mask) [2B, T] on `device`: the chosen rows, then the rejected."""
    return tuple(torch.cat([batch[f"chosen_{k}"], batch[f"rejected_{k}"]]).to(device, non_blocking=True)
                 for k in ("input_ids", "labels", "attention_mask"))


# ---------------------------------------------------------------------- the stage
class RewardStage(Stage):
    name = "rm"
    kind = "reward"

    def setup(self) -> None:
        cfg = self.cfg
        backbone, self.tokenizer, _ = load_parent(cfg.init_from, "policy", self.engine.device, cfg,
                                                  log=self.engine.log)
        self.model = ScalarHeadModel(backbone, seed=cfg.seed, logprob=cfg.score_logprob)
        self.train_items, self.val_items = load_pairs(cfg, self.tokenizer, self.engine.log)
        self.collate = PairCollator(self.tokenizer.pad_id, cfg.max_len)
        self.loader = ExampleLoader(self.train_items, cfg.batch_size, cfg.seed, self.collate)

    def batches(self, start: int):
        yield from self.loader.batches(start)

    def rewards(self, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, int]:
        """(r_chosen [B], r_rejected [B], MoE aux loss or None, non-pad tokens) from one forward."""
        input_ids, labels, attention_mask = stacked(batch, self.engine.device)
        scores, aux = self.model.score(input_ids, attention_mask, labels)
        n = batch["chosen_input_ids"].shape[0]
        return scores[:n], scores[n:], aux, int(attention_mask.sum())

    def loss(self, batch):
        rc, rr, aux, tokens = self.rewards(batch)
        loss = -F.logsigmoid(rc - rr).mean()
        if self.cfg.center_rewards_coef > 0:
            loss = loss + self.cfg.center_rewards_coef * ((rc + rr) ** 2).mean()
        if aux is not None:
            loss = loss + aux
        rc, rr = rc.detach(), rr.detach()
        metrics = {"accuracy": float((rc > rr).float().mean()), "margin": float((rc - rr).mean()),
                   "rewards/chosen": float(rc.mean()), "rewards/rejected": float(rr.mean()),
                   "tokens": tokens, "samples": len(rc)}
        if self.model.logprob is not None:
            metrics["logprob_weight"] = float(self.model.logprob_weight.detach())
        return loss, metrics

    def all_rewards(self, items: list, limit: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Rewards of the chosen and of the rejected halves of `items` (the first `limit` batches; 0 = all)."""
        rc, rr = [], []
        for batch in eval_batches(items, self.cfg.batch_size, limit, self.collate):
            c, r, _, _ = self.rewards(batch)
            rc.append(c.float())
            rr.append(r.float())
        return torch.cat(rc), torch.cat(rr)

    def evaluate(self) -> dict:
        if not self.val_items:
            return {}
        rc, rr = self.all_rewards(self.val_items, self.cfg.eval_batches)
        return {"val/loss": float(-F.logsigmoid(rc - rr).mean()), "val/accuracy": float((rc > rr).float().mean()),
                "val/margin": float((rc - rr).mean())}

    def reward_stats(self) -> dict:
        """Mean, std and count of the rewards over the training responses (chosen and rejected).

        Written with every checkpoint, so on a big dataset it reads at most STATS_PAIRS pairs, spread
        evenly over the training set: plenty for a mean and a std, and a save never costs an epoch."""
        stride = -(-len(self.train_items) // STATS_PAIRS)
        was = self.model.training
        self.model.eval()
        try:
            with torch.no_grad(), self.engine.autocast():
                rewards = torch.cat(self.all_rewards(self.train_items[::stride]))
        finally:
            self.model.train(was)
        return {"mean": float(rewards.mean()), "std": float(rewards.std()), "n": int(rewards.numel())}

    def write_model(self, dest) -> None:
        extra = {**self.checkpoint_extra(), "reward_stats": self.reward_stats()}
        write_scalar_model(self.model, dest, self.tokenizer, extra=extra)

    def load_model(self, ckpt) -> None:
        restore_scalar_model(self.model, ckpt, self.engine.device)
