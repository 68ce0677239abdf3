"""The table `workbench model info` prints: architecture, parameter counts, FLOPs, KV-cache size, and an
estimate of the memory a training step needs (`training_memory`)."""

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


def info_table(name: str, cfg: ModelConfig, s: dict, memory: dict | None = None) -> Table:
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
    for key, value in memory_rows(memory) if memory else []:
        t.add_row(key, value)
    return t


# ------------------------------------------------------------------------- training memory
def _activation_values_per_token(cfg: ModelConfig, i: int) -> int:
    """Values one block saves for the backward pass, per token, counted from the tensors its autograd
    graph keeps (norm inputs and outputs, projections' inputs, SDPA's q/k/v/output/log-sum-exp,
    SwiGLU's gate, up, activation and product). An estimate: exact bookkeeping depends on the kernels."""
    d, H = cfg.d_model, cfg.n_heads
    norms = 2 * d  # each RMSNorm keeps its input and output
    if cfg.attention == "mla":
        q = H * cfg.qk_head_dim + (0 if cfg.q_lora_rank is None else 2 * cfg.q_lora_rank)
        kv = 2 * cfg.kv_lora_rank + cfg.qk_rope_head_dim + H * (cfg.qk_nope_head_dim + cfg.v_head_dim)
        attn = q + kv + H * cfg.qk_head_dim + 2 * H * cfg.v_head_dim + H  # k, v, the output, log-sum-exp
    else:
        attn = 2 * H * cfg.head_dim + 2 * cfg.kv_heads * cfg.head_dim + H
    if cfg.is_moe_layer(i):
        m, k = cfg.moe_intermediate_size, cfg.num_experts_per_tok
        ffn = 2 * cfg.n_routed_experts + 4 * m * cfg.n_shared_experts + k * (d + 4 * m + 1)  # router; experts
    else:
        ffn = 4 * cfg.intermediate_size
    return 2 * norms + attn + ffn


def training_memory(cfg: ModelConfig, batch: int, seq_len: int, *, bf16: bool = False,
                    gradient_checkpointing: bool = False, trainable: int | None = None) -> dict:
    """Bytes a training step needs, by part: fp32 weights, fp32 gradients and AdamW's two moments for
    the `trainable` parameters (default: all), and the activations kept for the backward pass at
    `batch` sequences of `seq_len` tokens (2 bytes a value under bf16 autocast, else 4). With gradient
    checkpointing a block keeps only its input and recomputes the rest, one block at a time. The
    chunked loss never holds the full logits: one chunk of them at a time. Allocator slack, the
    CUDA context and temporaries come on top (compare with the runs' `peak_mem_mb`)."""
    from workbench.model.loss import default_chunk

    params = cfg.stats(seq_len)["params"]
    trainable = params if trainable is None else trainable
    tokens, value = batch * seq_len, 2 if bf16 else 4
    blocks = [_activation_values_per_token(cfg, i) for i in range(cfg.n_layers)]
    per_token = cfg.d_model * (cfg.n_layers + 1) + max(blocks) if gradient_checkpointing else \
        sum(blocks) + 2 * cfg.d_model  # + the embedding output and the final norm's
    logits = 2 * min(tokens, default_chunk(cfg.padded_vocab)) * cfg.padded_vocab * 4  # a chunk and its gradient, fp32
    parts = {"weights": params * 4, "gradients": trainable * 4, "optimizer": trainable * 8,
             "activations": tokens * per_token * value + logits}
    return {**parts, "total": sum(parts.values()), "batch": batch, "seq_len": seq_len, "bf16": bf16,
            "gradient_checkpointing": gradient_checkpointing, "trainable": trainable}


def _bytes(x: float) -> str:
    for unit, div in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if x >= div:
            return f"{x / div:.2f} {unit}"
    return f"{x:.0f} B"


def memory_rows(mem: dict) -> list[tuple[str, str]]:
    """The training-memory lines of the info table."""
    how = f"batch {mem['batch']} x {mem['seq_len']} tokens, {'bf16 autocast' if mem['bf16'] else 'fp32'}" + (
        ", gradient checkpointing" if mem["gradient_checkpointing"] else "")
    parts = ", ".join(f"{k} {_bytes(mem[k])}" for k in ("weights", "gradients", "optimizer", "activations"))
    return [("training memory", f"~{_bytes(mem['total'])} at {how} ({parts}; an estimate: allocator slack "
                                f"and temporaries come on top)")]
