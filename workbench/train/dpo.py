"""Direct Preference Optimization: train the policy on preference pairs against a frozen reference.

    workbench train dpo --config configs/dpo/tiny.yaml --from runs/sft --out runs/dpo

The reference is a frozen copy of the parent (an SFT model) taken before any step. For each pair,
log π(y|x) is summed over the response tokens only: the labels of a preference half are -100 on the
prompt (workbench.chat), and `Transformer.logprobs` is an fp32 log-softmax. Chosen and rejected go
through the policy in one forward (`torch.cat` of the rows). With
    Δ = (log π(y_c) - log ref(y_c)) - (log π(y_r) - log ref(y_r))
`loss_type: sigmoid` (DPO, Rafailov et al.) is  -log σ(βΔ)(1 - ε) - log σ(-βΔ) ε  (ε = label_smoothing,
the "conservative DPO" of TRL), and `ipo` (Azar et al.) is (Δ - 1/(2β))². For IPO the log-probs are
*averaged* over each response's tokens instead of summed, as TRL does, so long and short answers
weigh the same and the 1/(2β) target keeps one meaning for any length.

`rpo_alpha` > 0 adds α × the policy's mean next-token loss on the chosen responses' tokens (TRL's
`rpo_alpha`, the NLL term of Pang et al.'s iterative RPO): DPO alone can lower the likelihood of
the chosen answers along with the rejected ones, and on a small model that costs facts it knew.

At step 1 the policy is the reference: Δ = 0, the sigmoid loss is log 2 and the IPO loss (1/(2β))².

`precompute_ref: true` (the default) runs the reference once over every train and validation pair
in setup and keeps two numbers per pair, looked up through the batch's `index`; the reference model
is then freed. `false` runs it at every step instead. Both give the same losses. Under torchrun each
rank precomputes its share of the batches and the table is all-reduced; without it, each rank
computes the reference of its own batches.

`lora:` trains adapters on the frozen parent (workbench.model.lora), and the reference is the
policy with its adapters disabled: the base weights exactly, with no second copy of the model.

Metrics are named as TRL names them: rewards/chosen = β(log π - log ref) of the chosen responses
(mean over pairs), rewards/rejected, rewards/margins, rewards/accuracies (chosen reward > rejected),
logps/chosen and logps/rejected (the policy's), and dpo_loss (the loss without the MoE aux loss).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from workbench.model.lora import adapters_disabled
from workbench.train import distributed
from workbench.train.data import ExampleLoader, eval_batches
from workbench.train.engine import Stage
from workbench.train.models import frozen_copy, load_parent, restore_weights
from workbench.train.reward import PairCollator, load_pairs, stacked


def dpo_loss(pi_c, pi_r, ref_c, ref_r, beta: float, loss_type: str = "sigmoid", label_smoothing: float = 0.0):
    """Per-pair losses [B] and the implicit rewards β(log π - log ref) of chosen and rejected ([B] each)."""
    delta = (pi_c - ref_c) - (pi_r - ref_r)
    if loss_type == "ipo":
        losses = (delta - 1 / (2 * beta)) ** 2
    else:
        losses = (-F.logsigmoid(beta * delta) * (1 - label_smoothing)
                  - F.logsigmoid(-beta * delta) * label_smoothing)
    return losses, beta * (pi_c - ref_c).detach(), beta * (pi_r - ref_r).detach()


class DPOStage(Stage):
    name = "dpo"

    def setup(self) -> None:
        cfg = self.cfg
        self.model, self.tokenizer, _ = load_parent(cfg.init_from, "policy", self.engine.device, cfg,
                                                    log=self.engine.log)
        # Before any step the reference is the parent itself: a frozen copy of it or, with LoRA, the
        # policy with its adapters disabled (the frozen base *is* the parent: no second copy).
        self.ref = None if cfg.lora else frozen_copy(self.model)
        if cfg.lora:
            saved = sum(p.numel() * p.element_size() for p in self.model.parameters() if not p.requires_grad)
            self.engine.log(f"reference: the parent with the LoRA adapters disabled, no copy of the model "
                            f"({saved / 2**20:.1f} MiB of parameters not duplicated)")
        self.train_items, self.val_items = load_pairs(cfg, self.tokenizer, self.engine.log)
        self.collate = PairCollator(self.tokenizer.pad_id, cfg.max_len)
        self.loader = ExampleLoader(self.train_items, cfg.batch_size, cfg.seed, self.collate)
        self.ref_logps = {}  # split -> [N, 2] (chosen, rejected) reference log-probs, when precomputed
        if cfg.precompute_ref:
            world = self.engine.world  # several ranks: each computes every world-th batch, all get the table
            with torch.no_grad(), self.engine.autocast():
                for split, items in (("train", self.train_items), ("val", self.val_items)):
                    rows = [torch.stack(self.reference_logps(batch), 1) if b % world.size == world.rank
                            else len(batch["index"])
                            for b, batch in enumerate(eval_batches(items, cfg.batch_size, 0, self.collate))]
                    if world.active:
                        self.ref_logps[split] = distributed.gather_rows(rows, 2, self.engine.device)
                    else:
                        self.ref_logps[split] = torch.cat(rows) if rows else torch.zeros(0, 2)
            self.ref = None  # never needed again: free its memory
            self.engine.log(f"reference log-probs precomputed for {len(self.train_items)} train and "
                            f"{len(self.val_items)} validation pairs")

    def batches(self, start: int):
        yield from self.loader.batches(start)

    def response_logps(self, model, batch):
        """(chosen [B], rejected [B], MoE aux loss or None, non-pad tokens, chosen NLL): log p of each response.

        Summed over the response tokens (averaged for IPO); the prompt and padding are -100 labels.
        With `rpo_alpha`, also the chosen responses' next-token loss as (sum, token count) (else None)."""
        input_ids, labels, attention_mask = stacked(batch, self.engine.device)
        lp, mask, aux = model.logprobs(input_ids, labels, attention_mask)
        logps = lp.sum(-1)
        n = batch["chosen_input_ids"].shape[0]
        nll = (-logps[:n].sum(), mask[:n].sum()) if self.cfg.rpo_alpha > 0 else None
        if self.cfg.loss_type == "ipo":
            logps = logps / mask.sum(-1).clamp(min=1)
        return logps[:n], logps[n:], aux, int(attention_mask.sum()), nll

    def reference_logps(self, batch):
        """The reference's log-probs (chosen [B], rejected [B]), computed now."""
        with torch.no_grad():
            if self.ref is not None:
                return self.response_logps(self.ref, batch)[:2]
            with adapters_disabled(self.model):
                return self.response_logps(self.model, batch)[:2]

    def reference(self, batch, split: str):
        """Reference log-probs (chosen [B], rejected [B]) of a batch: looked up, or computed now."""
        if self.cfg.precompute_ref:
            ref = self.ref_logps[split][batch["index"]].to(self.engine.device)
            return ref[:, 0], ref[:, 1]
        return self.reference_logps(batch)

    def load_model(self, ckpt) -> None:
        restore_weights(self.model, ckpt)  # a LoRA run: its adapters only

    def pair_losses(self, batch, split: str):
        """(per-pair losses, implicit rewards c and r, policy logps c and r, aux loss, tokens, chosen NLL or None)."""
        pi_c, pi_r, aux, tokens, nll = self.response_logps(self.model, batch)
        ref_c, ref_r = self.reference(batch, split)
        losses, rew_c, rew_r = dpo_loss(pi_c, pi_r, ref_c, ref_r, self.cfg.beta, self.cfg.loss_type,
                                        self.cfg.label_smoothing)
        return losses, rew_c, rew_r, pi_c.detach(), pi_r.detach(), aux, tokens, nll

    @staticmethod
    def summary(losses, rew_c, rew_r, pi_c, pi_r) -> dict:
        return {"rewards/chosen": float(rew_c.mean()), "rewards/rejected": float(rew_r.mean()),
                "rewards/margins": float((rew_c - rew_r).mean()),
                "rewards/accuracies": float((rew_c > rew_r).float().mean()),
                "logps/chosen": float(pi_c.mean()), "logps/rejected": float(pi_r.mean()),
                "dpo_loss": float(losses.detach().mean())}

    def loss(self, batch):
        losses, rew_c, rew_r, pi_c, pi_r, aux, tokens, nll = self.pair_losses(batch, "train")
        loss = losses.mean()
        metrics = {**self.summary(losses, rew_c, rew_r, pi_c, pi_r), "tokens": tokens, "samples": len(losses)}
        if nll is not None:
            nll = nll[0] / nll[1].clamp(min=1)
            loss = loss + self.cfg.rpo_alpha * nll
            metrics["nll_loss"] = float(nll.detach())
        return (loss + aux if aux is not None else loss), metrics

    def evaluate(self) -> dict:
        if not self.val_items:
            return {}
        parts = [self.pair_losses(batch, "val")
                 for batch in eval_batches(self.val_items, self.cfg.batch_size, self.cfg.eval_batches, self.collate)]
        metrics = self.summary(*(torch.cat(p) for p in list(zip(*parts))[:5]))
        metrics["loss"] = metrics.pop("dpo_loss")
        if self.cfg.rpo_alpha > 0:  # val/loss is what `loss` is (less the MoE aux loss): the same curve
            nll = float(sum(p[7][0] for p in parts) / max(1, int(sum(p[7][1] for p in parts))))
            metrics.update({"dpo_loss": metrics["loss"], "nll_loss": nll,
                            "loss": metrics["loss"] + self.cfg.rpo_alpha * nll})
        return {f"val/{k}": v for k, v in metrics.items()}
