"""Proof that the architecture is DeepSeek-V2's (and the dense twin Llama's): transformers' own code,
loading our export, computes the same logits to 1e-4 in fp32."""

import json

import pytest
import torch

from workbench.errors import WorkbenchError
from workbench.model import Transformer, preset
from workbench.model.checkpoint import save_checkpoint
from workbench.model.export import export_hf

transformers = pytest.importorskip("transformers")


@pytest.mark.parametrize("name, overrides, arch", [
    ("tiny", {}, "DeepseekV2ForCausalLM"),
    ("tiny", {"q_lora_rank": 24, "tie_embeddings": False, "routed_scaling_factor": 1.5, "n_shared_experts": 2},
     "DeepseekV2ForCausalLM"),
    ("tiny", {"n_routed_experts": 0}, "DeepseekV2ForCausalLM"),  # MLA with dense FFNs
    ("tiny-dense", {}, "LlamaForCausalLM"),
    ("tiny-dense", {"n_kv_heads": 2, "tie_embeddings": False}, "LlamaForCausalLM"),
])
def test_transformers_computes_the_same_logits(tmp_path, tok, name, overrides, arch):
    torch.manual_seed(0)
    cfg = preset(name, vocab_size=tok.vocab_size, init_std=0.1, **overrides)
    model = Transformer(cfg).eval()
    save_checkpoint(model, tmp_path / "ck", tokenizer=tok)
    export_hf(tmp_path / "ck", tmp_path / "hf")
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["architectures"] == [arch] and config["vocab_size"] == tok.vocab_size
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf", dtype=torch.float32).eval()
    assert type(hf).__name__ == arch
    ids = torch.randint(0, tok.vocab_size, (2, 24), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = model(ids).logits[..., :tok.vocab_size]
        theirs = hf(ids).logits
    assert ours.std() > 0.5  # random weights large enough that a wrong layout would show
    assert (ours - theirs).abs().max() < 1e-4


def test_export_refuses_what_transformers_would_compute_differently(tmp_path):
    save_checkpoint(Transformer(preset("tiny", vocab_size=300, norm_topk_prob=True)), tmp_path / "a")
    with pytest.raises(WorkbenchError, match="ignores norm_topk_prob"):
        export_hf(tmp_path / "a", tmp_path / "a-hf")
    save_checkpoint(Transformer(preset("tiny-dense", vocab_size=300, n_routed_experts=8)), tmp_path / "b")
    with pytest.raises(WorkbenchError, match="no transformers class"):
        export_hf(tmp_path / "b", tmp_path / "b-hf")
    assert not (tmp_path / "a-hf").exists() and not (tmp_path / "b-hf").exists()
