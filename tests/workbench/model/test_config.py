"""Presets, validation messages, and the numbers `model info` prints against the real modules."""

import pytest
import torch

from workbench.errors import WorkbenchError
from workbench.model import PRESETS, ModelConfig, Transformer, preset


@pytest.mark.parametrize("name", PRESETS)
def test_stats_count_exactly_the_parameters_the_model_has(name):
    cfg = preset(name)
    with torch.device("meta"):
        model = Transformer(cfg, init=False)
    stats = cfg.stats()
    assert stats["params"] == sum(p.numel() for p in model.parameters())
    routed = sum(p.numel() for n, p in model.named_parameters() if n.endswith(("mlp.gate_up", "mlp.down")))
    unused = routed * (1 - cfg.num_experts_per_tok / cfg.n_routed_experts) if cfg.moe else 0
    head = 0 if not cfg.tie_embeddings else cfg.padded_vocab * cfg.d_model  # counted once in params, active as the head
    assert stats["active_params"] == stats["params"] - unused - stats["embedding_params"] + head


def test_presets_have_the_promised_sizes():
    sizes = {n: preset(n).stats()["params"] for n in PRESETS}
    assert sizes["tiny"] < 10e6 and 10e6 < sizes["small"] < 60e6 and 100e6 <= sizes["base"] <= 150e6
    assert preset("tiny").attention == "mla" and preset("tiny").moe
    assert preset("tiny-dense").attention == "gqa" and not preset("tiny-dense").moe


def test_kv_cache_per_token_mla_vs_mha():
    cfg = preset("small")
    s = cfg.stats()
    assert s["kv_cache_values_per_token"] == (cfg.kv_lora_rank + cfg.qk_rope_head_dim) * cfg.n_layers
    assert s["mha_kv_cache_bytes_per_token"] == 2 * cfg.d_model * cfg.n_layers * 2
    assert s["kv_cache_ratio_vs_mha"] == pytest.approx((128 + 16) / (2 * 256))
    assert preset("small-dense").stats()["kv_cache_ratio_vs_mha"] == 1.0


def test_padded_vocab_is_a_multiple_of_128_covering_the_tokenizer():
    assert preset("tiny").padded_vocab == 100352 and preset("tiny").vocab_size == 100278
    assert preset("tiny", vocab_size=256).padded_vocab == 256
    assert preset("tiny", vocab_size=257).padded_vocab == 384


@pytest.mark.parametrize("overrides, message", [
    ({"kv_lora_rnak": 3}, "did you mean 'kv_lora_rank'"),
    ({"d_model": 0}, "d_model must be a positive integer"),
    ({"qk_rope_head_dim": 7}, "must be a positive even number"),
    ({"num_experts_per_tok": 9}, "between 1 and n_routed_experts (8)"),
    ({"attention": "flash"}, "attention must be 'mla' or 'gqa'"),
])
def test_bad_settings_say_what_to_fix(overrides, message):
    with pytest.raises(WorkbenchError) as e:
        preset("tiny", **overrides)
    assert message in str(e.value)


def test_unknown_preset_suggests_one():
    with pytest.raises(WorkbenchError, match="did you mean 'small'"):
        preset("smal")
    with pytest.raises(WorkbenchError, match="choose one of tiny, tiny-dense, small"):
        preset("tiny-sparse")


def test_config_round_trips_through_a_dict():
    cfg = preset("small", q_lora_rank=None)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("overrides, message", [
    ({"tie_embeddings": "false"}, "tie_embeddings must be true or false, got 'false'"),
    ({"q_lora_rank": 1.5}, "q_lora_rank must be an integer or null"),
    ({"init_std": float("inf")}, "init_std must be a finite number"),
    ({"rope_theta": "10000"}, "rope_theta must be a finite number"),
    ({"n_layers": True}, "n_layers must be an integer"),
])
def test_settings_of_the_wrong_type_are_refused(overrides, message):
    with pytest.raises(WorkbenchError) as e:
        preset("tiny", **overrides)
    assert message in str(e.value)
