"""The chunked head + cross-entropy equals the naive one (values and gradients) and handles the edges."""

import math

import pytest
import torch
import torch.nn.functional as F

from workbench.model.loss import IGNORE, causal_lm_loss, linear_cross_entropy, naive_cross_entropy

from .conftest import make


def _inputs(N=37, d=16, V=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(N, d, generator=g, requires_grad=True)
    W = torch.randn(V, d, generator=g, requires_grad=True)
    return h, W, torch.randint(0, 200, (N,), generator=g)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_chunked_equals_naive_values_and_gradients(temperature):
    h, W, t = _inputs()
    grad_out = torch.rand(h.shape[0])
    a = linear_cross_entropy(h, W, t, vocab_limit=200, chunk=8, temperature=temperature)
    ga = torch.autograd.grad(a, (h, W), grad_out)
    b = naive_cross_entropy(h, W, t, vocab_limit=200, temperature=temperature)
    gb = torch.autograd.grad(b, (h, W), grad_out)
    assert (a - b).abs().max() < 1e-5
    assert all((x - y).abs().max() < 1e-5 for x, y in zip(ga, gb))


def test_padded_vocabulary_columns_get_no_probability_and_no_gradient():
    h, W, t = _inputs()
    nll = linear_cross_entropy(h, W, t, vocab_limit=200, chunk=8)
    (gW,) = torch.autograd.grad(nll.sum(), W)
    assert gW[200:].abs().max() == 0 and gW[:200].abs().max() > 0
    ref = F.cross_entropy(h @ W[:200].T, t, reduction="none")  # as if the vocabulary were 200 wide
    assert (nll - ref).abs().max() < 1e-5


def test_causal_loss_shifts_and_ignores_masked_labels():
    hidden = torch.randn(2, 5, 8)
    W = torch.randn(50, 8)
    labels = torch.tensor([[1, 2, IGNORE, 4, 5], [IGNORE, IGNORE, 7, 8, IGNORE]])
    loss, n = causal_lm_loss(hidden, W, labels)
    # by hand: position t predicts labels[t+1] when that label is trained
    terms = [F.cross_entropy((hidden[b, t] @ W.T)[None], labels[b, t + 1][None])
             for b in range(2) for t in range(4) if labels[b, t + 1] != IGNORE]
    assert n == 5 and abs(loss.item() - torch.stack(terms).mean().item()) < 1e-5


def test_zero_trainable_tokens_gives_zero_not_nan_and_backward_works():
    model = make("tiny").train()
    ids = torch.randint(0, 300, (2, 6))
    out = model(ids, labels=torch.full_like(ids, IGNORE))
    assert out.n_tokens == 0 and out.lm_loss.item() == 0.0
    out.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_token_logprobs_are_log_softmax_of_the_logits():
    model = make("tiny")
    ids = torch.randint(0, 300, (2, 7))
    labels = ids.clone()
    labels[0, :3] = IGNORE
    lp, mask, _ = model.logprobs(ids, labels, temperature=0.5)
    logits = model(ids).logits[:, :-1, :300].float() / 0.5
    ref = logits.log_softmax(-1).gather(-1, ids[:, 1:, None])[..., 0]
    assert (lp[mask] - ref[mask]).abs().max() < 1e-5
    assert (lp[~mask] == 0).all() and mask.sum() == 2 * 6 - 2


def test_initial_loss_is_about_log_vocab():
    model = make("tiny", init_std=0.02)
    ids = torch.randint(0, 300, (4, 32))
    assert abs(model(ids, labels=ids).lm_loss.item() - math.log(300)) < 0.2
