"""DeepSeekMoE: shared experts that every token uses + fine-grained routed experts chosen per token.

    y = x + shared(x) + sum_{i in topk(s)} g_i * expert_i(x),   s = softmax(W_gate x)

Gate weights g are the top-k softmax scores (renormalised to sum 1 when `norm_topk_prob`), times
`routed_scaling_factor`. The expert-level balance loss (DeepSeek-V2 paper, eq. 12) is
    L_bal = sum_i f_i * P_i,   f_i = E / (k T) * #tokens routed to i,   P_i = mean_t s_{i,t}
which is 1.0 when routing is perfectly uniform; the model scales it by `aux_loss_coef`.

Dispatch is vectorised: the (token, expert) assignments are sorted by expert, gathered into one
contiguous block, each expert runs one GEMM over its slice, and the results are scattered back with
`index_add_`. There is a loop over experts (E GEMMs), never over tokens, and no capacity limit: no
token is ever dropped, so a token's output does not depend on what else is in the batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from workbench.model.config import ModelConfig
from workbench.model.layers import SwiGLU


class MoE(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        E, d, h = cfg.n_routed_experts, cfg.d_model, cfg.moe_intermediate_size
        self.gate = nn.Linear(d, E, bias=False)  # the router (HF: mlp.gate.weight)
        # Experts stacked as [E, in, out] so each is a plain `x @ w`; gate and up fused in one GEMM.
        self.gate_up = nn.Parameter(torch.empty(E, d, 2 * h))
        self.down = nn.Parameter(torch.empty(E, h, d))
        self.shared_experts = SwiGLU(d, h * cfg.n_shared_experts) if cfg.n_shared_experts else None
        # Last forward's tokens per expert (detached): for dashboards, never for the loss.
        self.register_buffer("last_load", torch.zeros(E), persistent=False)

    def route(self, x: torch.Tensor):
        """Router in fp32: (scores [N, E], top-k weights [N, k], top-k expert ids [N, k])."""
        scores = F.linear(x.float(), self.gate.weight.float()).softmax(dim=-1)
        weights, experts = scores.topk(self.cfg.num_experts_per_tok, dim=-1, sorted=False)
        if self.cfg.norm_topk_prob:
            weights = weights / (weights.sum(dim=-1, keepdim=True) + 1e-20)
        return scores, weights * self.cfg.routed_scaling_factor, experts

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None = None):
        """x [B, T, d] -> (y [B, T, d], balance loss (unscaled scalar)). `valid` [B, T] excludes padding."""
        shape, E, k = x.shape, self.cfg.n_routed_experts, self.cfg.num_experts_per_tok
        x = x.reshape(-1, shape[-1])
        scores, weights, experts = self.route(x)

        flat = experts.reshape(-1)  # [N*k] expert of each assignment
        order = flat.argsort(stable=True)
        token = order // k  # the token each sorted assignment came from
        counts = torch.bincount(flat, minlength=E)
        xs = x[token]
        outs = []
        gate_up, down = self.gate_up, self.down  # read once: with LoRA each read computes W + s·B·A
        for e, xe in enumerate(xs.split(counts.tolist())):
            if xe.shape[0]:
                g, u = (xe @ gate_up[e]).chunk(2, dim=-1)
                outs.append((F.silu(g) * u) @ down[e])
        ys = torch.cat(outs) * weights.reshape(-1)[order, None].to(x.dtype)
        y = torch.zeros_like(x).index_add_(0, token, ys)
        if self.shared_experts is not None:
            y = y + self.shared_experts(x)

        # Balance loss over real tokens only.
        if valid is not None:
            keep = valid.reshape(-1).bool()
            scores_v = scores[keep]
            load = torch.bincount(experts[keep].reshape(-1), minlength=E).to(scores.dtype)
        else:
            scores_v, load = scores, counts.to(scores.dtype)
        n = max(scores_v.shape[0], 1)
        balance = (load * E / (k * n) * scores_v.sum(0) / n).sum()
        self.last_load = load.detach()
        return y.view(shape), balance
