"""Attention: DeepSeek-V2's Multi-head Latent Attention, standard MHA/GQA, the KV cache and the masks.

MLA in three lines (DeepSeek-V2 paper, section 2.1):
  c_kv = RMSNorm(W_DKV x)            a small latent (kv_lora_rank) from which every head's K and V come
  k_rope = RoPE(W_KR x)              one rotary key (qk_rope_head_dim) shared by all heads
  q = [W_UQ c_q ; RoPE(W_QR c_q)]    per head: a "nope" part matched against W_UK c_kv, a rotary part
The cache stores only c_kv and k_rope: (kv_lora_rank + qk_rope_head_dim) values per token per layer,
instead of 2 x n_heads x head_dim. When decoding from the cache, W_UK is absorbed into the query and
W_UV into the output, so attention runs directly over the cached latents (nothing is re-expanded).

Every path goes through torch.nn.functional.scaled_dot_product_attention (flash kernels on CUDA
when there is no explicit mask). Masks: causal; padding (attention_mask, 0 = pad); packed
documents (position_ids restarting at 0 start a new document; no attention across documents).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from workbench.model.config import ModelConfig
from workbench.model.layers import RMSNorm, apply_rope


class KVCache:
    """Preallocated per-layer cache for incremental decoding. `length` tokens are filled.

    MLA layers hold (c_kv [B, S, kv_lora_rank], k_rope [B, S, qk_rope_head_dim]); GQA layers hold
    (k, v) [B, kv_heads, S, head_dim]. The model advances `length` after each forward.
    """

    def __init__(self, cfg: ModelConfig, batch: int, max_len: int, device=None, dtype=torch.float32):
        self.max_len, self.length = max_len, 0
        if cfg.attention == "mla":
            shapes = [(batch, max_len, cfg.kv_lora_rank), (batch, max_len, cfg.qk_rope_head_dim)]
            self.seq_dim = 1
        else:
            shapes = [(batch, cfg.kv_heads, max_len, cfg.head_dim)] * 2
            self.seq_dim = 2
        self.layers = [tuple(torch.zeros(s, device=device, dtype=dtype) for s in shapes) for _ in range(cfg.n_layers)]

    def update(self, layer: int, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write this step's entries after the filled ones; return everything so far."""
        start, end = self.length, self.length + a.shape[self.seq_dim]
        if end > self.max_len:
            raise ValueError(f"KV cache holds {self.max_len} tokens; this step needs {end}")
        out = []
        for buf, new in zip(self.layers[layer], (a, b)):
            buf.narrow(self.seq_dim, start, end - start).copy_(new)
            out.append(buf.narrow(self.seq_dim, 0, end))
        return out[0], out[1]

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for pair in self.layers for t in pair)


def positions_and_mask(attention_mask, position_ids, batch: int, q_len: int, past: int, device):
    """RoPE positions [B, T] and an SDPA boolean mask [B, 1, T, past+T] (None = plain causal).

    - packed documents (position_ids given): a position of 0 starts a new document; queries see
      earlier keys of their own document only;
    - padding (attention_mask [B, past+T], 0 = pad): positions count real tokens only, so a
      left-padded prompt gets the same positions as an unpadded one; pad keys are never attended;
    - every query may always see itself, so a pad query never has an empty row (no NaN).
    """
    total = past + q_len
    q_idx = torch.arange(past, total, device=device)
    causal = torch.arange(total, device=device)[None, :] <= q_idx[:, None]  # [T, S]
    if position_ids is not None:
        if past:
            raise ValueError("packed position_ids cannot be combined with a KV cache")
        doc = (position_ids == 0).cumsum(-1)
        mask = causal[None] & (doc[:, :, None] == doc[:, None, :])
        if attention_mask is not None:
            mask = mask & attention_mask.bool()[:, None, :]
        mask = mask | torch.eye(q_len, dtype=torch.bool, device=device)[None]
        return position_ids, mask[:, None]
    if attention_mask is None or bool(attention_mask.all()):
        positions = q_idx[None].expand(batch, q_len)
        return positions, (None if q_len == 1 or past == 0 else causal[None, None].expand(batch, 1, -1, -1))
    am = attention_mask.bool()
    positions = (am.long().cumsum(-1) - 1).clamp(min=0)[:, past:]
    mask = causal[None] & am[:, None, :]
    mask[:, torch.arange(q_len, device=device), q_idx] = True
    return positions, mask[:, None]


def _sdpa(q, k, v, mask, scale):
    if mask is None:
        return F.scaled_dot_product_attention(q, k, v, is_causal=q.shape[-2] > 1, scale=scale)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)


class MLA(nn.Module):
    """Multi-head Latent Attention; parameter names are Hugging Face DeepseekV2's."""

    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        self.cfg, self.layer = cfg, layer
        H, dqk = cfg.n_heads, cfg.qk_head_dim
        if cfg.q_lora_rank is None:
            self.q_proj = nn.Linear(cfg.d_model, H * dqk, bias=False)
        else:
            self.q_a_proj = nn.Linear(cfg.d_model, cfg.q_lora_rank, bias=False)
            self.q_a_layernorm = RMSNorm(cfg.q_lora_rank)  # eps 1e-6, as in DeepSeek-V2
            self.q_b_proj = nn.Linear(cfg.q_lora_rank, H * dqk, bias=False)
        self.kv_a_proj_with_mqa = nn.Linear(cfg.d_model, cfg.kv_lora_rank + cfg.qk_rope_head_dim, bias=False)
        self.kv_a_layernorm = RMSNorm(cfg.kv_lora_rank)
        self.kv_b_proj = nn.Linear(cfg.kv_lora_rank, H * (cfg.qk_nope_head_dim + cfg.v_head_dim), bias=False)
        self.o_proj = nn.Linear(H * cfg.v_head_dim, cfg.d_model, bias=False)
        self.scale = dqk ** -0.5

    def forward(self, x, rope, mask, cache: KVCache | None = None):
        cfg = self.cfg
        B, T, _ = x.shape
        H, dn, dr, dv, r = cfg.n_heads, cfg.qk_nope_head_dim, cfg.qk_rope_head_dim, cfg.v_head_dim, cfg.kv_lora_rank
        q = self.q_proj(x) if cfg.q_lora_rank is None else self.q_b_proj(self.q_a_layernorm(self.q_a_proj(x)))
        q_nope, q_rope = q.view(B, T, H, dn + dr).transpose(1, 2).split([dn, dr], dim=-1)
        c_kv, k_rope = self.kv_a_proj_with_mqa(x).split([r, dr], dim=-1)
        c_kv = self.kv_a_layernorm(c_kv)
        cos, sin = rope
        q_rope = apply_rope(q_rope, cos, sin)
        k_rope = apply_rope(k_rope[:, None], cos, sin)[:, 0]  # [B, T, dr]
        past = 0
        if cache is not None:
            past = cache.length
            c_kv, k_rope = cache.update(self.layer, c_kv, k_rope)
        if past:  # decoding: attend over the cached latents directly (W_UK, W_UV absorbed)
            w = self.kv_b_proj.weight.view(H, dn + dv, r)
            q_lat = torch.einsum("bhtd,hdc->bhtc", q_nope, w[:, :dn])
            query = torch.cat([q_lat, q_rope], dim=-1)
            key = torch.cat([c_kv, k_rope], dim=-1)[:, None].expand(B, H, -1, -1)
            o_lat = _sdpa(query, key, c_kv[:, None].expand(B, H, -1, -1), mask, self.scale)
            out = torch.einsum("bhtc,hvc->bhtv", o_lat, w[:, dn:])
        else:  # training / prefill: expand the latent into per-head keys and values
            S = c_kv.shape[1]
            k_nope, v = self.kv_b_proj(c_kv).view(B, S, H, dn + dv).transpose(1, 2).split([dn, dv], dim=-1)
            k = torch.cat([k_nope, k_rope[:, None].expand(B, H, S, dr)], dim=-1)
            q = torch.cat([q_nope, q_rope], dim=-1)
            if x.is_cuda and dv < dn + dr:  # flash kernels want equal head dims: pad v, slice the output
                out = _sdpa(q, k, F.pad(v, (0, dn + dr - dv)), mask, self.scale)[..., :dv]
            else:
                out = _sdpa(q, k, v, mask, self.scale)
        return self.o_proj(out.transpose(1, 2).reshape(B, T, H * dv))


class GQA(nn.Module):
    """Standard multi-head attention with optional grouped key/value heads (Llama's layout)."""

    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        self.cfg, self.layer = cfg, layer
        hd, H, KV = cfg.head_dim, cfg.n_heads, cfg.kv_heads
        self.q_proj = nn.Linear(cfg.d_model, H * hd, bias=False)
        self.k_proj = nn.Linear(cfg.d_model, KV * hd, bias=False)
        self.v_proj = nn.Linear(cfg.d_model, KV * hd, bias=False)
        self.o_proj = nn.Linear(H * hd, cfg.d_model, bias=False)

    def forward(self, x, rope, mask, cache: KVCache | None = None):
        cfg = self.cfg
        B, T, _ = x.shape
        hd, H, KV = cfg.head_dim, cfg.n_heads, cfg.kv_heads
        cos, sin = rope
        q = apply_rope(self.q_proj(x).view(B, T, H, hd).transpose(1, 2), cos, sin)
        k = apply_rope(self.k_proj(x).view(B, T, KV, hd).transpose(1, 2), cos, sin)
        v = self.v_proj(x).view(B, T, KV, hd).transpose(1, 2)
        if cache is not None:
            k, v = cache.update(self.layer, k, v)
        if KV != H:
            k, v = k.repeat_interleave(H // KV, dim=1), v.repeat_interleave(H // KV, dim=1)
        out = _sdpa(q, k, v, mask, hd ** -0.5)
        return self.o_proj(out.transpose(1, 2).reshape(B, T, H * hd))
