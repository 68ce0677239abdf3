"""Loading parent checkpoints for a stage, and the scalar-head model used as reward model and critic.

    policy, tok, path = load_parent(cfg.init_from, "policy", engine.device, cfg)   # sft, dpo, ppo
    rm = ScalarHeadModel(backbone)                 # reward model: N(0, 1/sqrt(d+1)) head
    critic = ScalarHeadModel(backbone, zero_init=True)   # PPO value model: starts predicting 0
    rm.score(input_ids, attention_mask)            # [B] read at the last non-pad token
    rm = ScalarHeadModel(backbone, logprob="sum")  # + w x log p(response): rm.score(ids, mask, labels)

A reward checkpoint is an ordinary model checkpoint of the backbone (so it loads, exports and
inspects like any other) plus `score_head.safetensors` and `extra.kind = "reward"` in config.json,
with the reward statistics PPO normalises by (`extra.reward_stats`: mean, std).

A reward model with `logprob` ("sum" or "mean", the rm config's `score_logprob`) adds w x the
backbone's own log-probability of the response (summed or averaged over its tokens) to the head's
value; w starts at 1 and is learnt with the rest. Its Bradley-Terry model then starts as the SFT
model's own preference, P(chosen) = p(chosen) / (p(chosen) + p(rejected)), so the facts the
language model stores need not be relearnt by a fresh head from a few hundred pairs. It needs the
response's tokens: `labels` (the input ids on the response, -100 elsewhere), as every caller has;
`extra.score_logprob` in config.json says a checkpoint is one, and its head file holds w.

With `lora:` in the stage's config (sft, rm, dpo), `load_parent` freezes the parent and puts fresh
adapters on it (workbench.model.lora): only they (and a reward model's head) train, and the run's
checkpoints are LoRA checkpoints pointing at the parent. `restore_weights` / `restore_scalar_model`
put a run's own checkpoint back into the live model on resume (adapters only, for a LoRA run).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from workbench.errors import WorkbenchError
from workbench.model.loss import token_logprobs
from workbench.model.checkpoint import (CONFIG, load_checkpoint, load_checkpoint_tokenizer, read_meta,
                                        write_checkpoint_files)
from workbench.train.checkpoint import checkpoint_kind, resolve_checkpoint
from workbench.train.config import CHOICES

HEAD_FILE = "score_head.safetensors"
LOGPROB_MODES = CHOICES["score_logprob"]  # how a `logprob` reward model folds the response's token log-probs


def load_parent(spec: str | None, want: str, device, cfg=None, what: str = "init_from", log=None):
    """(model, tokenizer, checkpoint path) of a parent checkpoint of kind `want` (policy or reward).
    With `cfg.lora` set, the model comes back frozen, with fresh adapters (the only trainable weights)."""
    if not spec:
        raise WorkbenchError(f"{cfg.stage if cfg else 'this stage'} needs a parent checkpoint: "
                             f"--from PATH (or {what}: PATH in the config)")
    path = resolve_checkpoint(spec)
    kind = checkpoint_kind(path)
    if kind != want:
        names = {"policy": "a language model (pretrain/sft/dpo/ppo run or `model init`)",
                 "reward": "a reward model (a `workbench train rm` run)"}
        got = names.get(kind, f"a {kind} model (e.g. a PPO critic)")
        where = f"{spec}: {path}" if str(path) != str(spec) else str(path)
        raise WorkbenchError(f"{what} {where} is {got}, but {names[want]} is needed here")
    overrides = {}
    if cfg is not None:
        overrides = {"gradient_checkpointing": cfg.gradient_checkpointing, "compile": cfg.compile}
    model, meta = load_checkpoint(path, device=device, **overrides)
    tok = load_checkpoint_tokenizer(path)
    if getattr(cfg, "lora", None) is not None:
        from workbench.model.lora import LoRAConfig, add_lora

        lora = LoRAConfig.from_dict(cfg.lora)
        n = add_lora(model, lora, base=path)
        total = sum(p.numel() for p in model.parameters())
        if log is not None:
            log(f"LoRA rank {lora.rank} (alpha {lora.alpha:g}) on {', '.join(lora.targets)}: {n:,} trainable "
                f"parameters, {100 * n / total:.2f}% of {total:,}; the base {path} stays frozen")
    return model, tok, path


def restore_weights(model, ckpt: Path, device=None) -> None:
    """Resume: one of this run's checkpoints back into the live model: its adapters (a LoRA run, checked
    against the live settings and base) or every weight."""
    from workbench.model import lora

    saved = read_meta(ckpt).get("lora")
    if lora.has_lora(model) != (saved is not None):
        raise WorkbenchError(f"--resume cannot turn lora {'off' if saved is not None else 'on'}: {ckpt} holds "
                             f"{'LoRA adapters' if saved is not None else 'whole weights'}; start a new run instead")
    if saved is not None:
        lora.load_adapters(model, ckpt, device)
    else:
        loaded, _ = load_checkpoint(ckpt, device=device)
        model.load_state_dict(loaded.state_dict())


class ScalarHeadModel(nn.Module):
    """A transformer backbone with a linear d -> 1 head on its final hidden states (and, with `logprob`,
    + w x the backbone's log-probability of the response)."""

    def __init__(self, backbone, zero_init: bool = False, seed: int = 0, logprob: str | None = None):
        super().__init__()
        if logprob is not None and logprob not in LOGPROB_MODES:
            raise WorkbenchError(f"score_logprob must be one of {', '.join(LOGPROB_MODES)} or null, got {logprob!r}")
        self.backbone = backbone
        self.logprob = logprob
        device = next(backbone.parameters()).device
        self.head = nn.Linear(backbone.cfg.d_model, 1)
        with torch.no_grad():
            if zero_init:
                self.head.weight.zero_()
            else:  # TRL/OpenAI's reward head init: std 1/sqrt(d + 1)
                gen = torch.Generator().manual_seed(seed)
                self.head.weight.copy_(torch.randn(self.head.weight.shape, generator=gen)
                                       / math.sqrt(backbone.cfg.d_model + 1))
            self.head.bias.zero_()
        self.head.to(device)
        if logprob is not None:
            self.logprob_weight = nn.Parameter(torch.ones((), device=device))

    def forward(self, input_ids, attention_mask=None, labels=None):
        """Per-position scalars [B, T] (fp32), plus the backbone's MoE aux loss (or None).

        With `logprob`, position t also gets w x the log-probability of the response tokens up to t
        (their sum, or their mean), the response being where `labels` is not -100."""
        out = self.backbone(input_ids, attention_mask=attention_mask, logits_to_keep=0, return_hidden=True)
        values = self.head(out.hidden).squeeze(-1).float()
        if self.logprob is not None:
            if labels is None:
                raise ValueError("this reward model reads the response's log-probability: pass its labels")
            lp, mask = token_logprobs(out.hidden, self.backbone.lm_head.weight, labels,
                                      vocab_limit=self.backbone.cfg.vocab_size)
            total = lp.cumsum(1)  # [B, T-1]: column t covers the tokens 1..t+1
            if self.logprob == "mean":
                total = total / mask.cumsum(1).clamp(min=1)
            values = values + self.logprob_weight * F.pad(total, (1, 0))
        return values, out.aux_loss

    def score(self, input_ids, attention_mask, labels=None):
        """The scalar at each row's last real token ([B]): works for left and right padding."""
        values, aux = self(input_ids, attention_mask, labels)  # through __call__: DDP's hooks see the forward
        return gather_last(values, attention_mask), aux


def last_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of the last 1 in each row of the mask."""
    T = attention_mask.shape[1]
    return T - 1 - attention_mask.flip(1).long().argmax(1)


def gather_last(values: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    idx = last_index(attention_mask)
    return values.gather(1, idx[:, None])[:, 0]


def write_scalar_model(model: ScalarHeadModel, dest: Path, tokenizer, extra: dict) -> None:
    from safetensors.torch import save_file

    if model.logprob is not None:
        extra = {**extra, "score_logprob": model.logprob}
    write_checkpoint_files(model.backbone, dest, tokenizer, extra=extra)
    save_file({k: v.detach().contiguous().cpu() for k, v in head_state(model).items()}, str(dest / HEAD_FILE))


def head_state(model: ScalarHeadModel) -> dict:
    """What the head file holds: the head's weight and bias (+ `logprob_weight`, w)."""
    state = dict(model.head.state_dict())
    if model.logprob is not None:
        state["logprob_weight"] = model.logprob_weight.reshape(1)
    return state


def load_scalar_model(path: str | Path, device=None, **overrides) -> tuple[ScalarHeadModel, dict]:
    """(ScalarHeadModel, meta) from a reward (or critic) checkpoint directory."""
    backbone, meta = load_checkpoint(path, device=device, **overrides)
    try:
        model = ScalarHeadModel(backbone, zero_init=True, logprob=meta.get("extra", {}).get("score_logprob"))
    except WorkbenchError as e:  # a hand-edited config.json
        raise WorkbenchError(f"{Path(path) / CONFIG}: extra.{e}") from None
    _load_head(model, Path(path), device)
    return model.eval(), meta


def restore_scalar_model(model: ScalarHeadModel, ckpt: Path, device=None) -> None:
    """Resume a reward model: the backbone as `restore_weights` does, and the head."""
    saved = read_meta(ckpt).get("extra", {}).get("score_logprob")
    if saved != model.logprob:  # same tensors for sum and mean: it would load, and mean something else
        raise WorkbenchError(f"--resume cannot change score_logprob ({saved or 'null'} in {ckpt}, "
                             f"{model.logprob or 'null'} now): the checkpoints learnt their score with it; "
                             f"start a new run instead")
    restore_weights(model.backbone, ckpt, device)
    _load_head(model, ckpt, device)


def _load_head(model: ScalarHeadModel, ckpt: Path, device) -> None:
    from workbench.model.checkpoint import load_tensors

    head_path = ckpt / HEAD_FILE
    head = load_tensors(head_path, device, "the reward head")
    expected = {k: tuple(v.shape) for k, v in head_state(model).items()}
    if set(head) ^ set(expected) == {"logprob_weight"}:  # the head file and config.json disagree on what it is
        raise WorkbenchError(f"{head_path} {'holds' if 'logprob_weight' in head else 'lacks'} logprob_weight (the "
                             f"w of score_logprob), but {ckpt / CONFIG} says extra.score_logprob: "
                             f"{model.logprob or 'null'}; the checkpoint's files do not belong together")
    if {k: tuple(v.shape) for k, v in head.items()} != expected:
        raise WorkbenchError(f"{head_path}: expected tensors {expected}, found "
                             f"{ {k: tuple(v.shape) for k, v in head.items()} }")
    if not all(bool(torch.isfinite(v).all()) for v in head.values()):
        raise WorkbenchError(f"{head_path}: the reward head contains NaN or infinite values")
    w = head.pop("logprob_weight", None)
    model.head.load_state_dict(head)
    if w is not None:
        with torch.no_grad():
            model.logprob_weight.copy_(w.reshape(()))


def load_reward_model(spec: str, device, what: str = "reward_model") -> tuple[ScalarHeadModel, dict, Path]:
    """A frozen reward model, its meta (extra.reward_stats) and its path; checks it is a reward model."""
    path = resolve_checkpoint(spec)
    kind = checkpoint_kind(path)
    if kind != "reward":
        got = "a language model" if kind == "policy" else f"a {kind} model"
        where = f"{spec}: {path}" if str(path) != str(spec) else str(path)
        raise WorkbenchError(f"{what} {where} is {got}, not a reward model (train one with `workbench train rm`)")
    model, meta = load_scalar_model(path, device=device)
    for p in model.parameters():
        p.requires_grad_(False)
    return model, meta, path


def frozen_copy(model: nn.Module) -> nn.Module:
    """An eval-mode copy with no gradients (the DPO/PPO reference)."""
    import copy

    ref = copy.deepcopy(model).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref
