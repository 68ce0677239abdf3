"""The table `workbench model info` prints: architecture, parameter counts, FLOPs, KV-cache size."""

from __future__ import annotations

from rich.table import Table

from workbench.model.config import ModelConfig


def _n(x: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= div:
            return f"{x / div:.2f}{unit}"
    return f"{x:.0f}"


def architecture(cfg: ModelConfig) -> str:
    if cfg.attention == "mla":
        q = "full-rank q" if cfg.q_lora_rank is None else f"q_lora_rank {cfg.q_lora_rank}"
        attn = (f"MLA: {cfg.n_heads} heads, kv_lora_rank {cfg.kv_lora_rank}, {q}, "
                f"qk_nope {cfg.qk_nope_head_dim} + qk_rope {cfg.qk_rope_head_dim}, v {cfg.v_head_dim}")
    else:
        attn = f"{'MHA' if cfg.kv_heads == cfg.n_heads else 'GQA'}: {cfg.n_heads} heads x {cfg.head_dim}, {cfg.kv_heads} KV heads"
    if cfg.moe:
        ffn = (f"DeepSeekMoE in layers {cfg.first_k_dense_replace}..{cfg.n_layers - 1}: {cfg.n_shared_experts} shared + "
               f"{cfg.n_routed_experts} routed experts (top-{cfg.num_experts_per_tok}) x {cfg.moe_intermediate_size}; "
               f"dense SwiGLU {cfg.intermediate_size} before")
    else:
        ffn = f"dense SwiGLU {cfg.intermediate_size}"
    return f"{cfg.n_layers} layers, d_model {cfg.d_model}; {attn}; {ffn}"


def info_table(name: str, cfg: ModelConfig, s: dict) -> Table:
    t = Table(title=f"model {name}", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    t.add_row("architecture", architecture(cfg))
    t.add_row("vocabulary", f"{cfg.vocab_size:,} (embedding padded to {cfg.padded_vocab:,}; "
                            f"{'tied with' if cfg.tie_embeddings else 'separate from'} the output head)")
    t.add_row("parameters", f"{_n(s['params'])} total, of which embedding {_n(s['embedding_params'])}")
    t.add_row("active per token", f"{_n(s['active_params'])} ({s['active_params'] / s['params']:.0%} of total)")
    t.add_row("training FLOPs/token", f"{_n(s['flops_per_token'])} at sequence length {s['flops_per_token_seq_len']} "
                                      f"(6 x matmul params + attention)")
    t.add_row("KV cache / token", f"{s['kv_cache_bytes_per_token']:,} bytes in bf16 ({s['kv_cache_values_per_token']:,} values); "
                                  f"standard MHA of the same width: {s['mha_kv_cache_bytes_per_token']:,} bytes "
                                  f"-> {s['kv_cache_ratio_vs_mha']:.3f}x")
    return t
