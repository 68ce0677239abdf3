"""Export a checkpoint to a folder Hugging Face transformers loads natively.

    workbench export runs/tiny --to hf out/tiny-hf
    >>> AutoModelForCausalLM.from_pretrained("out/tiny-hf")   # DeepseekV2ForCausalLM or LlamaForCausalLM

- MLA + DeepSeekMoE -> `DeepseekV2ForCausalLM` (model_type deepseek_v2). Parameter names are
  already DeepseekV2's; the stacked experts are split into `mlp.experts.{e}.{gate,up,down}_proj`
  (the layout of DeepSeek's own checkpoints, which transformers converts on load).
- Dense (MHA/GQA + SwiGLU) -> `LlamaForCausalLM`. Llama's HF RoPE rotates the two halves of each
  head, ours rotates interleaved pairs, so the rows of q_proj/k_proj are permuted per head
  (even dims first, then odd): the attention scores are unchanged.
- The vocabulary is cut back from the padded size to the tokenizer's: HF never sees (or samples)
  the padding rows.

tests/workbench/model/test_export.py loads both with transformers and compares logits (< 1e-4).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from workbench.errors import WorkbenchError
from workbench.io import atomic_dir
from workbench.model.config import ModelConfig


def _interleaved_to_halves(w: torch.Tensor, n_heads: int, head_dim: int) -> torch.Tensor:
    """Rows of a q/k projection, per head: (x0, x1, x2, x3, ...) -> (x0, x2, ..., x1, x3, ...)."""
    w = w.view(n_heads, head_dim // 2, 2, -1)
    return w.transpose(1, 2).reshape(n_heads * head_dim, -1)


def hf_state_dict(state: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    V = cfg.vocab_size
    out = {}
    for name, t in state.items():
        if name == "lm_head.weight":
            if not cfg.tie_embeddings:
                out[name] = t[:V]
            continue
        key = "model." + name
        if name == "embed_tokens.weight":
            t = t[:V]
        if name.endswith("mlp.gate_up"):  # [E, d, 2h] -> per expert gate/up [h, d]
            prefix = key[: -len("gate_up")] + "experts"
            for e, w in enumerate(t):
                g, u = w.t().chunk(2, dim=0)
                out[f"{prefix}.{e}.gate_proj.weight"], out[f"{prefix}.{e}.up_proj.weight"] = g, u
            continue
        if name.endswith("mlp.down"):  # [E, h, d] -> per expert [d, h]
            prefix = key[: -len("down")] + "experts"
            for e, w in enumerate(t):
                out[f"{prefix}.{e}.down_proj.weight"] = w.t()
            continue
        if cfg.attention == "gqa" and name.endswith(("q_proj.weight", "k_proj.weight")):
            heads = cfg.n_heads if name.endswith("q_proj.weight") else cfg.kv_heads
            t = _interleaved_to_halves(t, heads, cfg.head_dim)
        out[key] = t
    return {k: v.contiguous().clone() for k, v in out.items()}


def hf_config(cfg: ModelConfig, tok_describe: dict | None) -> dict:
    tok_describe = tok_describe or {}
    common = {
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.d_model,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "max_position_embeddings": cfg.max_seq_len,
        "rms_norm_eps": cfg.rms_norm_eps,
        "rope_theta": cfg.rope_theta,
        "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta},
        "hidden_act": "silu",
        "tie_word_embeddings": cfg.tie_embeddings,
        "attention_bias": False,
        "mlp_bias": False,
        "initializer_range": cfg.init_std,
        "torch_dtype": "float32",
        "bos_token_id": tok_describe.get("eot_id"),
        "eos_token_id": [i for i in (tok_describe.get("im_end_id"), tok_describe.get("eot_id")) if i is not None] or None,
        "pad_token_id": tok_describe.get("pad_id"),
    }
    if cfg.attention == "gqa":
        if cfg.moe:
            raise WorkbenchError("export: a model with standard attention and MoE layers has no transformers "
                                 "class here; export MLA + MoE (DeepseekV2) or a dense model (Llama)")
        return {**common, "architectures": ["LlamaForCausalLM"], "model_type": "llama",
                "num_key_value_heads": cfg.kv_heads, "head_dim": cfg.head_dim,
                "intermediate_size": cfg.intermediate_size}
    if cfg.moe and cfg.norm_topk_prob:
        raise WorkbenchError("export: transformers' DeepseekV2 ignores norm_topk_prob, so a model trained with "
                             "norm_topk_prob=true would not give the same outputs there; train with false (V2's default)")
    return {**common, "architectures": ["DeepseekV2ForCausalLM"], "model_type": "deepseek_v2",
            "num_key_value_heads": cfg.n_heads,
            "intermediate_size": cfg.intermediate_size,
            "kv_lora_rank": cfg.kv_lora_rank, "q_lora_rank": cfg.q_lora_rank,
            "qk_nope_head_dim": cfg.qk_nope_head_dim, "qk_rope_head_dim": cfg.qk_rope_head_dim,
            "v_head_dim": cfg.v_head_dim,
            # a dense model is DeepseekV2 with every layer dense (first_k_dense_replace = n_layers)
            "n_routed_experts": cfg.n_routed_experts or 1, "n_shared_experts": cfg.n_shared_experts,
            "num_experts_per_tok": cfg.num_experts_per_tok if cfg.moe else 1,
            "moe_intermediate_size": cfg.moe_intermediate_size,
            "first_k_dense_replace": cfg.first_k_dense_replace if cfg.moe else cfg.n_layers,
            "norm_topk_prob": False, "routed_scaling_factor": cfg.routed_scaling_factor,
            "topk_method": "greedy", "n_group": None, "topk_group": None,
            "aux_loss_alpha": cfg.aux_loss_coef}


def export_hf(ckpt: str | Path, out: str | Path, force: bool = False) -> Path:
    """Write OUT/config.json + OUT/model.safetensors (+ generation_config.json) for transformers."""
    from safetensors.torch import save_file

    from workbench.model.checkpoint import load_checkpoint

    model, meta = load_checkpoint(ckpt)
    cfg = model.cfg
    config = hf_config(cfg, meta.get("tokenizer"))
    tensors = hf_state_dict({k: v.detach().float() for k, v in model.state_dict().items()}, cfg)
    with atomic_dir(out, force=force) as tmp:
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        gen = {k: config[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id") if config.get(k) is not None}
        (tmp / "generation_config.json").write_text(json.dumps(gen, indent=2) + "\n")
        if meta.get("tokenizer"):
            (tmp / "workbench_tokenizer.json").write_text(json.dumps(meta["tokenizer"], indent=2) + "\n")
    return Path(out)
