"""Masks and the KV cache: cached decoding = full forward, padding and packing change nothing they shouldn't."""

import pytest
import torch

from workbench.model.attention import KVCache
from workbench.model.generate import left_pad

from .conftest import VOCAB, make


def test_cached_decoding_matches_a_full_forward_at_every_step_with_padding(model):
    torch.manual_seed(1)
    prompts = [[5, 6, 7, 8, 9, 10, 11], [12, 13], [14, 15, 16, 17]]
    ids, mask = left_pad(prompts, pad_id=0)
    cache = KVCache(model.cfg, 3, ids.shape[1] + 8)
    with torch.no_grad():
        prefill = model(ids, attention_mask=mask, cache=cache).logits
        assert torch.allclose(prefill, model(ids, attention_mask=mask).logits, atol=1e-5)
        seq, am = ids, mask
        for step in range(8):
            nxt = torch.randint(0, VOCAB, (3, 1))
            # row 1 stops after step 4: its later tokens are padding, masked like a finished sequence
            keep = torch.tensor([[1], [0 if step > 4 else 1], [1]])
            seq, am = torch.cat([seq, nxt], 1), torch.cat([am, keep], 1)
            cached = model(nxt, attention_mask=am, cache=cache).logits[:, -1]
            full = model(seq, attention_mask=am).logits[:, -1]
            assert cached.std() > 0.1  # the comparison is not between near-constants
            rows = [0, 2] if step > 4 else [0, 1, 2]
            assert (cached[rows] - full[rows]).abs().max() < 1e-5, step
    assert cache.length == ids.shape[1] + 8


def test_left_padding_changes_nothing(model):
    prompts = [[5, 6, 7, 8, 9, 10], [11, 12, 13]]
    ids, mask = left_pad(prompts, pad_id=0)
    with torch.no_grad():
        batched = model(ids, attention_mask=mask).logits
        for i, p in enumerate(prompts):
            alone = model(torch.tensor([p])).logits[0]
            assert (batched[i, -len(p):] - alone).abs().max() < 1e-5


def test_right_padding_changes_nothing_at_real_positions(model):
    ids = torch.tensor([[5, 6, 7, 8, 9], [10, 11, 12, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    with torch.no_grad():
        batched = model(ids, attention_mask=mask).logits
        alone = model(ids[1:, :3]).logits
    assert (batched[1, :3] - alone[0]).abs().max() < 1e-5
    assert torch.isfinite(batched).all()  # pad queries see themselves: no empty softmax rows


def test_packed_documents_do_not_see_each_other(model):
    a, b, c = [5, 6, 7, 8], [9, 10, 11], [12, 13, 14, 15, 16]
    packed = torch.tensor([a + b + c])
    positions = torch.tensor([list(range(len(a))) + list(range(len(b))) + list(range(len(c)))])
    with torch.no_grad():
        out = model(packed, position_ids=positions).logits[0]
        start = 0
        for doc in (a, b, c):
            alone = model(torch.tensor([doc])).logits[0]
            assert (out[start:start + len(doc)] - alone).abs().max() < 1e-5
            start += len(doc)
        # and without the document boundaries the later documents do change
        unpacked = model(packed).logits[0]
    assert (unpacked[len(a):] - out[len(a):]).abs().max() > 1e-3


def test_mla_cache_holds_only_the_latent_and_the_rotary_key():
    model = make("tiny")
    cfg = model.cfg
    cache = KVCache(cfg, batch=2, max_len=10)
    assert cache.nbytes() == 2 * 10 * cfg.n_layers * (cfg.kv_lora_rank + cfg.qk_rope_head_dim) * 4
    dense = make("tiny-dense")
    assert KVCache(dense.cfg, 2, 10).nbytes() == 2 * 10 * dense.cfg.n_layers * 2 * dense.cfg.d_model * 4


def test_cache_overflow_is_an_error():
    model = make("tiny")
    cache = KVCache(model.cfg, 1, 4)
    with pytest.raises(ValueError, match="holds 4 tokens"):
        model(torch.tensor([[1, 2, 3, 4, 5]]), cache=cache)
