"""The model's one config dataclass, its named presets, and the numbers `workbench model info` prints.

    from workbench.model.config import ModelConfig, preset
    cfg = preset("tiny")                         # MLA + DeepSeekMoE, runs the tests in seconds
    cfg = preset("tiny-dense")                   # same width, standard attention + SwiGLU, to compare
    cfg = preset("small", vocab_size=8192)       # any field can be overridden
    cfg.stats()                                  # parameters, active parameters, FLOPs/token, KV bytes/token

Names follow DeepSeek-V2's (and Hugging Face's `DeepseekV2Config`) so the paper, the HF config and
this file read the same. `vocab_size` is the tokenizer's; the embedding is padded up to a multiple
of 128 (`padded_vocab`) for faster matmuls, and the padded rows are never sampled or trained.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass

from workbench.errors import WorkbenchError

CL100K_VOCAB = 100278  # cl100k_base + <|im_start|>, <|im_end|>, <|pad|> (workbench.tokenizer)


@dataclass
class ModelConfig:
    # --- shape
    vocab_size: int = CL100K_VOCAB  # the tokenizer's vocabulary (ids 0..vocab_size-1)
    d_model: int = 64
    n_layers: int = 4
    n_heads: int = 4
    max_seq_len: int = 1024  # longest sequence the model is meant for (RoPE works beyond; exported to HF)
    tie_embeddings: bool = True  # lm_head shares the embedding matrix (most parameters of a small model)
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0

    # --- attention: "mla" (DeepSeek-V2 Multi-head Latent Attention) or "gqa" (standard MHA/GQA)
    attention: str = "mla"
    kv_lora_rank: int = 32  # MLA: width of the compressed joint KV latent c_kv (what the cache stores)
    q_lora_rank: int | None = None  # MLA: low-rank query compression; None = full-rank q projection
    qk_nope_head_dim: int = 16  # MLA: per-head query/key dims without position (from the latent)
    qk_rope_head_dim: int = 8  # MLA: per-head query dims with RoPE; the rotary key is one, shared by all heads
    v_head_dim: int = 16  # MLA: per-head value dim
    n_kv_heads: int | None = None  # GQA: key/value heads (None = n_heads, i.e. MHA)

    # --- feed-forward: DeepSeekMoE when n_routed_experts > 0, else a dense SwiGLU in every layer
    intermediate_size: int = 176  # dense SwiGLU width (dense layers, and every layer of a dense model)
    n_routed_experts: int = 8  # fine-grained routed experts per MoE layer (0 = dense model)
    n_shared_experts: int = 1  # always-on experts, each moe_intermediate_size wide
    num_experts_per_tok: int = 2  # top-k routed experts per token
    moe_intermediate_size: int = 48  # width of one expert's SwiGLU
    first_k_dense_replace: int = 1  # the first k layers use the dense FFN (DeepSeek-V2: 1)
    norm_topk_prob: bool = False  # renormalise the top-k gate weights to sum to 1 (V2: False)
    routed_scaling_factor: float = 1.0  # multiplies the routed experts' gate weights
    aux_loss_coef: float = 0.01  # expert-level balance loss coefficient (alpha_1 in the V2 paper)

    # --- init (see workbench.model.transformer.init_weights)
    init_std: float = 0.02

    # --- runtime switches (not architecture; never exported)
    gradient_checkpointing: bool = False  # recompute each block in backward: less memory, ~30% slower
    compile: bool = False  # torch.compile each block (worth it on CUDA; slow to start on CPU)

    # ------------------------------------------------------------------ derived
    @property
    def padded_vocab(self) -> int:
        return -(-self.vocab_size // 128) * 128

    @property
    def moe(self) -> bool:
        return self.n_routed_experts > 0

    @property
    def qk_head_dim(self) -> int:
        return self.qk_nope_head_dim + self.qk_rope_head_dim

    @property
    def head_dim(self) -> int:  # GQA
        return self.d_model // self.n_heads

    @property
    def kv_heads(self) -> int:  # GQA
        return self.n_kv_heads or self.n_heads

    def is_moe_layer(self, i: int) -> bool:
        return self.moe and i >= self.first_k_dense_replace

    # ------------------------------------------------------------------ validation
    def validate(self) -> "ModelConfig":
        def need(cond, msg):
            if not cond:
                raise WorkbenchError(f"model config: {msg}")

        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "max_seq_len", "intermediate_size"):
            need(isinstance(getattr(self, name), int) and getattr(self, name) > 0,
                 f"{name} must be a positive integer, got {getattr(self, name)!r}")
        need(self.attention in ("mla", "gqa"), f"attention must be 'mla' or 'gqa', got {self.attention!r}")
        need(self.rms_norm_eps > 0 and self.rope_theta > 0 and self.init_std > 0,
             "rms_norm_eps, rope_theta and init_std must be positive")
        if self.attention == "mla":
            for name in ("kv_lora_rank", "qk_nope_head_dim", "v_head_dim"):
                need(getattr(self, name) > 0, f"{name} must be positive for MLA, got {getattr(self, name)}")
            need(self.qk_rope_head_dim > 0 and self.qk_rope_head_dim % 2 == 0,
                 f"qk_rope_head_dim must be a positive even number (RoPE rotates pairs), got {self.qk_rope_head_dim}")
            need(self.q_lora_rank is None or self.q_lora_rank > 0, "q_lora_rank must be positive or null")
        else:
            need(self.d_model % self.n_heads == 0, f"d_model ({self.d_model}) must be a multiple of n_heads ({self.n_heads})")
            need(self.head_dim % 2 == 0, f"head dim d_model/n_heads = {self.head_dim} must be even for RoPE")
            need(self.n_heads % self.kv_heads == 0, f"n_heads ({self.n_heads}) must be a multiple of n_kv_heads ({self.kv_heads})")
        need(self.n_routed_experts >= 0, "n_routed_experts must be 0 (dense) or more")
        if self.moe:
            need(0 < self.num_experts_per_tok <= self.n_routed_experts,
                 f"num_experts_per_tok must be between 1 and n_routed_experts ({self.n_routed_experts}), got {self.num_experts_per_tok}")
            need(self.moe_intermediate_size > 0 and self.n_shared_experts >= 0, "moe_intermediate_size must be positive, n_shared_experts 0 or more")
            need(0 <= self.first_k_dense_replace <= self.n_layers, f"first_k_dense_replace must be between 0 and n_layers ({self.n_layers})")
            need(self.aux_loss_coef >= 0 and self.routed_scaling_factor > 0, "aux_loss_coef must be >= 0 and routed_scaling_factor > 0")
        return self

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict, where: str = "config", complete: bool = False) -> "ModelConfig":
        """Build and validate from a dict. Unknown keys, wrong types and non-finite numbers are errors;
        with complete=True (a saved checkpoint) every architecture setting must be present too."""
        if not isinstance(d, dict):
            raise WorkbenchError(f"{where}: expected a JSON object of model settings")
        fields = {f.name: f.type for f in dataclasses.fields(cls)}
        for key, value in d.items():
            if key not in fields:
                hint = difflib.get_close_matches(key, fields, n=1)
                raise WorkbenchError(f"{where}: unknown model setting {key!r}" + (f" (did you mean {hint[0]!r}?)" if hint else ""))
            _check_type(key, value, fields[key], where)
        if complete:
            missing = [k for k in fields if k not in d and k not in _RUNTIME]
            if missing:
                raise WorkbenchError(f"{where}: missing model setting(s) {', '.join(missing)}")
        return cls(**d).validate()

    def replace(self, **overrides) -> "ModelConfig":
        return ModelConfig.from_dict({**self.to_dict(), **overrides})

    # ------------------------------------------------------------------ numbers for `model info`
    def stats(self, seq_len: int | None = None, dtype_bytes: int = 2) -> dict:
        """Parameter counts, training FLOPs per token and KV-cache size, computed from the shapes."""
        d, L = self.d_model, self.n_layers
        T = seq_len or self.max_seq_len
        if self.attention == "mla":
            H = self.n_heads
            q = d * H * self.qk_head_dim if self.q_lora_rank is None else (
                d * self.q_lora_rank + self.q_lora_rank + self.q_lora_rank * H * self.qk_head_dim)
            attn = (q + d * (self.kv_lora_rank + self.qk_rope_head_dim) + self.kv_lora_rank
                    + self.kv_lora_rank * H * (self.qk_nope_head_dim + self.v_head_dim) + H * self.v_head_dim * d)
            # scores use qk_head_dim, the weighted sum v_head_dim, per head, per causal pair (T/2 keys on average)
            attn_flops = 2 * H * (self.qk_head_dim + self.v_head_dim) * T / 2
            kv_per_token = (self.kv_lora_rank + self.qk_rope_head_dim) * L
        else:
            hd, kvh = self.head_dim, self.kv_heads
            attn = d * self.n_heads * hd + 2 * d * kvh * hd + self.n_heads * hd * d
            attn_flops = 2 * self.n_heads * 2 * hd * T / 2
            kv_per_token = 2 * kvh * hd * L
        mlp = lambda width: 3 * d * width  # noqa: E731 - SwiGLU: gate, up, down
        total = active = 0
        for i in range(L):
            norms = 2 * d
            if self.is_moe_layer(i):
                shared = mlp(self.moe_intermediate_size * self.n_shared_experts)
                routed = mlp(self.moe_intermediate_size)
                router = d * self.n_routed_experts
                total += attn + norms + shared + router + routed * self.n_routed_experts
                active += attn + norms + shared + router + routed * self.num_experts_per_tok
            else:
                total += attn + norms + mlp(self.intermediate_size)
                active += attn + norms + mlp(self.intermediate_size)
        embed = head = self.padded_vocab * d
        total += embed + (0 if self.tie_embeddings else head) + d
        active += head + d  # per token: the output head is a full matmul; the embedding is a lookup
        # 6 FLOPs per matmul weight per token (forward 2, backward 4), plus attention's scores and
        # weighted values (x3 for backward). Norms and the embedding lookup are not matmuls.
        matmul_params = active - (L * 2 * d + d)
        flops = 6 * matmul_params + 3 * L * attn_flops
        mha_kv = 2 * d * L  # standard multi-head attention of the same width caches K and V, d each
        return {
            "params": total,
            "active_params": active,
            "embedding_params": embed,
            "flops_per_token": flops,
            "flops_per_token_seq_len": T,
            "kv_cache_values_per_token": kv_per_token,
            "kv_cache_bytes_per_token": kv_per_token * dtype_bytes,
            "mha_kv_cache_bytes_per_token": mha_kv * dtype_bytes,
            "kv_cache_ratio_vs_mha": kv_per_token / mha_kv,
            "kv_dtype_bytes": dtype_bytes,
        }


_RUNTIME = ("gradient_checkpointing", "compile")


def _check_type(key: str, value, annotation: str, where: str) -> None:
    """Settings come from JSON, YAML and the command line: check them against the field's type."""
    kinds = {"int": "an integer", "float": "a finite number", "bool": "true or false", "str": "a string"}
    base = annotation.replace(" | None", "")
    if value is None and "None" in annotation:
        return
    ok = {"int": isinstance(value, int) and not isinstance(value, bool),
          "float": isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value),
          "bool": isinstance(value, bool),
          "str": isinstance(value, str)}[base]
    if not ok:
        extra = " or null" if "None" in annotation else ""
        raise WorkbenchError(f"{where}: {key} must be {kinds[base]}{extra}, got {value!r}")


# Presets. `tiny` runs the test-suite and CPU demos in seconds; `small` is a CPU afternoon; `base`
# is for a GPU. Each has a `-dense` twin of the same width and depth (standard multi-head
# attention + SwiGLU, sized to about the same active parameters) for comparing the two.
_PRESETS: dict[str, dict] = {
    "tiny": dict(d_model=64, n_layers=4, n_heads=4, max_seq_len=512, kv_lora_rank=32, q_lora_rank=None,
                 qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16, intermediate_size=176,
                 n_routed_experts=8, n_shared_experts=1, num_experts_per_tok=2, moe_intermediate_size=48),
    "small": dict(d_model=256, n_layers=8, n_heads=8, max_seq_len=1024, kv_lora_rank=128, q_lora_rank=192,
                  qk_nope_head_dim=32, qk_rope_head_dim=16, v_head_dim=32, intermediate_size=688,
                  n_routed_experts=16, n_shared_experts=2, num_experts_per_tok=4, moe_intermediate_size=128),
    "base": dict(d_model=512, n_layers=12, n_heads=8, max_seq_len=2048, kv_lora_rank=256, q_lora_rank=384,
                 qk_nope_head_dim=64, qk_rope_head_dim=32, v_head_dim=64, intermediate_size=1408,
                 n_routed_experts=32, n_shared_experts=2, num_experts_per_tok=6, moe_intermediate_size=128),
}
_DENSE = dict(attention="gqa", n_routed_experts=0, n_kv_heads=None)
PRESETS = tuple(name for base in _PRESETS for name in (base, f"{base}-dense"))


def preset(name: str, **overrides) -> ModelConfig:
    """A named preset (see PRESETS), with optional field overrides; validated."""
    base, _, variant = name.partition("-")
    if base not in _PRESETS or variant not in ("", "dense"):
        hint = difflib.get_close_matches(name, PRESETS, n=1)
        raise WorkbenchError(f"unknown model preset {name!r}; choose one of {', '.join(PRESETS)}"
                             + (f" (did you mean {hint[0]!r}?)" if hint else ""))
    values = dict(_PRESETS[base])
    if variant == "dense":
        values.update(_DENSE)
    return ModelConfig.from_dict({**ModelConfig().to_dict(), **values, **overrides}, where=f"preset {name!r}")
