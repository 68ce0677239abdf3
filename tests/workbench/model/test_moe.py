"""DeepSeekMoE: the vectorised dispatch equals a per-token reference; gates, balance loss, no dropping."""

import torch
import torch.nn.functional as F

from workbench.model.moe import MoE

from .conftest import make


def _moe(**overrides) -> MoE:
    model = make("tiny", **overrides)
    return model.layers[model.cfg.first_k_dense_replace].mlp


def _reference(moe: MoE, x: torch.Tensor) -> torch.Tensor:
    """The textbook formula, one token at a time."""
    cfg = moe.cfg
    out = []
    for t in x:
        s = F.softmax(moe.gate.weight @ t, dim=-1)
        w, idx = s.topk(cfg.num_experts_per_tok)
        if cfg.norm_topk_prob:
            w = w / w.sum()
        y = moe.shared_experts(t) if moe.shared_experts is not None else torch.zeros_like(t)
        for wi, e in zip(w * cfg.routed_scaling_factor, idx):
            g, u = (t @ moe.gate_up[e]).chunk(2)
            y = y + wi * ((F.silu(g) * u) @ moe.down[e])
        out.append(y)
    return torch.stack(out)


def test_dispatch_matches_the_per_token_formula():
    for overrides in ({}, {"norm_topk_prob": True, "routed_scaling_factor": 2.5, "n_shared_experts": 2}):
        moe = _moe(**overrides)
        x = torch.randn(3, 7, moe.cfg.d_model)
        with torch.no_grad():
            y, _ = moe(x)
            assert (y.view(-1, x.shape[-1]) - _reference(moe, x.view(-1, x.shape[-1]))).abs().max() < 1e-5


def test_a_tokens_output_does_not_depend_on_the_rest_of_the_batch():
    moe = _moe()
    x = torch.randn(1, 40, moe.cfg.d_model)
    with torch.no_grad():
        full, _ = moe(x)
        part, _ = moe(x[:, 5:9])
    assert (full[:, 5:9] - part).abs().max() < 1e-6  # no capacity limit: nothing dropped or rerouted


def test_norm_topk_prob_makes_gates_sum_to_the_scaling_factor():
    moe = _moe(norm_topk_prob=True, routed_scaling_factor=2.0)
    _, w, _ = moe.route(torch.randn(10, moe.cfg.d_model))
    assert torch.allclose(w.sum(-1), torch.full((10,), 2.0))
    moe = _moe()
    _, w, _ = moe.route(torch.randn(10, moe.cfg.d_model))
    assert (w.sum(-1) < 1).all()  # plain top-k softmax scores: part of the mass


def test_balance_loss_is_the_papers_formula_and_ignores_padding():
    moe = _moe()
    E, k = moe.cfg.n_routed_experts, moe.cfg.num_experts_per_tok
    x = torch.randn(2, 6, moe.cfg.d_model)
    valid = torch.tensor([[1] * 6, [1] * 3 + [0] * 3])
    _, balance = moe(x, valid)
    real = x[valid.bool()]
    scores, _, idx = moe.route(real)
    f = torch.bincount(idx.flatten(), minlength=E).float() * E / (k * real.shape[0])
    assert torch.allclose(balance, (f * scores.mean(0)).sum())
    assert moe.last_load.sum() == k * real.shape[0]


def test_balance_loss_is_one_when_routing_is_uniform():
    moe = _moe()
    E = moe.cfg.n_routed_experts
    with torch.no_grad():
        moe.gate.weight.zero_()  # every score 1/E; top-k ties resolved somehow, f sums to E
    _, balance = moe(torch.randn(1, 16, moe.cfg.d_model))
    assert abs(balance.item() - 1.0) < 1e-6 and E == 8


def test_balance_loss_reaches_the_router_through_the_model_loss():
    model = make("tiny").train()
    ids = torch.randint(0, 300, (2, 12))
    out = model(ids, labels=ids)
    assert torch.allclose(out.loss, out.lm_loss + out.aux_loss)
    n_moe = sum(model.cfg.is_moe_layer(i) for i in range(model.cfg.n_layers))
    assert abs(out.aux_loss.item() - model.cfg.aux_loss_coef * out.balance * n_moe) < 1e-6
    router = model.layers[-1].mlp.gate.weight
    (g,) = torch.autograd.grad(out.aux_loss, router)
    assert g.abs().sum() > 0
