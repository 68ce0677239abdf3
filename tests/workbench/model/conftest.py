"""Small-vocabulary models so model tests run in milliseconds; larger init so logits really differ."""

import pytest
import torch

from workbench.model import Transformer, preset

VOCAB = 300  # padded to 384: the padding columns are exercised too


def make(name="tiny", seed=0, **overrides) -> Transformer:
    torch.manual_seed(seed)
    cfg = preset(name, **{"vocab_size": VOCAB, "init_std": 0.1, **overrides})
    model = Transformer(cfg)
    model.init_weights(seed=seed)
    return model.eval()


VARIANTS = {
    "moe": {},
    "moe-qlora": {"q_lora_rank": 24, "norm_topk_prob": True, "routed_scaling_factor": 2.0},
    "dense": {"name": "tiny-dense"},
    "dense-gqa": {"name": "tiny-dense", "n_kv_heads": 2},
}


@pytest.fixture(params=list(VARIANTS))
def model(request):
    kw = dict(VARIANTS[request.param])
    return make(kw.pop("name", "tiny"), **kw)
