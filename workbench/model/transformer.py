"""The model: a pre-norm decoder, DeepSeek-V2 style (MLA + DeepSeekMoE) or dense (MHA/GQA + SwiGLU).

    from workbench.model import Transformer, preset
    model = Transformer(preset("tiny"))
    out = model(input_ids, labels=labels)          # out.loss = out.lm_loss + out.aux_loss
    out = model(input_ids, attention_mask=mask)    # out.logits [B, T, padded_vocab]

Module and parameter names follow Hugging Face's DeepseekV2 / Llama so the exporter is a rename.

Init scheme (`init_weights`): every matmul weight and the embedding ~ N(0, init_std); the two
projections that write into the residual stream (attention o_proj, FFN/expert down) are scaled by
1/sqrt(2 n_layers) (GPT-2), so the residual stream's variance does not grow with depth; RMSNorm
weights 1; the embedding rows past the tokenizer's vocabulary are zero (never used).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from workbench.model.attention import GQA, MLA, KVCache, positions_and_mask
from workbench.model.config import ModelConfig
from workbench.model.layers import RMSNorm, SwiGLU, rope_angles
from workbench.model.loss import causal_lm_loss, token_logprobs
from workbench.model.moe import MoE


@dataclass
class Output:
    logits: torch.Tensor | None = None  # [B, T, padded_vocab] when no labels were given
    loss: torch.Tensor | None = None  # lm_loss + aux_loss (what to backpropagate)
    lm_loss: torch.Tensor | None = None  # mean next-token cross-entropy over trainable positions
    aux_loss: torch.Tensor | None = None  # aux_loss_coef * sum of the MoE layers' balance losses
    balance: float | None = None  # mean balance loss over MoE layers (1.0 = perfectly uniform)
    n_tokens: int = 0  # trainable positions in the loss
    hidden: torch.Tensor | None = None  # final-norm hidden states [B, T, d]


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.d_model, cfg.rms_norm_eps)
        self.self_attn = MLA(cfg, layer) if cfg.attention == "mla" else GQA(cfg, layer)
        self.post_attention_layernorm = RMSNorm(cfg.d_model, cfg.rms_norm_eps)
        self.mlp = MoE(cfg) if cfg.is_moe_layer(layer) else SwiGLU(cfg.d_model, cfg.intermediate_size)

    def forward(self, x, rope, mask, cache=None, valid=None):
        x = x + self.self_attn(self.input_layernorm(x), rope, mask, cache)
        h = self.post_attention_layernorm(x)
        if isinstance(self.mlp, MoE):
            y, balance = self.mlp(h, valid)
            return x + y, balance
        return x + self.mlp(h), None


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig, init: bool = True):
        super().__init__()
        self.cfg = cfg.validate()
        self.embed_tokens = nn.Embedding(cfg.padded_vocab, cfg.d_model)
        self.layers = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.d_model, cfg.rms_norm_eps)
        self.lm_head = nn.Linear(cfg.d_model, cfg.padded_vocab, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.embed_tokens.weight
        if init:
            self.init_weights()
        self._blocks = list(self.layers)
        if cfg.compile:
            self._blocks = [torch.compile(b) for b in self.layers]

    @torch.no_grad()
    def init_weights(self, seed: int | None = None):
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        std, out_std = self.cfg.init_std, self.cfg.init_std / math.sqrt(2 * self.cfg.n_layers)

        def normal(t, s):  # sample on CPU with the generator, so init is the same on every device
            t.copy_(torch.randn(t.shape, generator=gen) * s)

        for name, p in self.named_parameters():
            if p.dim() == 1:
                p.fill_(1.0)  # RMSNorm weights
            elif name.endswith(("o_proj.weight", "down_proj.weight", ".down")):
                normal(p, out_std)
            else:
                normal(p, std)
        self.embed_tokens.weight[self.cfg.vocab_size:] = 0
        self.lm_head.weight[self.cfg.vocab_size:] = 0

    def forward(self, input_ids, labels=None, attention_mask=None, position_ids=None,
                cache: KVCache | None = None, logits_to_keep: int | None = None, return_hidden: bool = False):
        B, T = input_ids.shape
        past = cache.length if cache is not None else 0
        positions, mask = positions_and_mask(attention_mask, position_ids, B, T, past, input_ids.device)
        rope_dim = self.cfg.qk_rope_head_dim if self.cfg.attention == "mla" else self.cfg.head_dim
        rope = rope_angles(positions, rope_dim, self.cfg.rope_theta)
        valid = attention_mask[:, past:] if attention_mask is not None else None

        x = self.embed_tokens(input_ids)
        balances = []
        for block in self._blocks:
            if self.cfg.gradient_checkpointing and self.training and cache is None:
                x, balance = checkpoint(block, x, rope, mask, None, valid, use_reentrant=False)
            else:
                x, balance = block(x, rope, mask, cache, valid)
            if balance is not None:
                balances.append(balance)
        if cache is not None:
            cache.length += T
        hidden = self.norm(x)

        out = Output(hidden=hidden if return_hidden else None)
        if balances:
            total = torch.stack(balances).sum()
            out.aux_loss = self.cfg.aux_loss_coef * total
            out.balance = float(total.detach()) / len(balances)
        if labels is not None:
            out.lm_loss, out.n_tokens = causal_lm_loss(hidden, self.lm_head.weight, labels,
                                                       vocab_limit=self.cfg.vocab_size)
            out.loss = out.lm_loss + (out.aux_loss if out.aux_loss is not None else 0.0)
        elif logits_to_keep != 0:  # 0: hidden states only (the caller runs the head itself)
            h = hidden if logits_to_keep is None else hidden[:, -logits_to_keep:]
            out.logits = self.lm_head(h)
        return out

    def logprobs(self, input_ids, labels, attention_mask=None, temperature: float = 1.0):
        """log p of each next label ([B, T-1], 0 where labels[t+1] is -100), its mask, and the aux loss.

        What DPO and PPO need: fp32 log-softmax, chunked over tokens like the loss."""
        out = self(input_ids, attention_mask=attention_mask, return_hidden=True, logits_to_keep=0)  # DDP's hooks
        lp, mask = token_logprobs(out.hidden, self.lm_head.weight, labels, vocab_limit=self.cfg.vocab_size,
                                  temperature=temperature)
        return lp, mask, out.aux_loss
