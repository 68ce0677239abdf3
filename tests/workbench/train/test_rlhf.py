"""The RLHF building blocks in workbench/train/rlhf.py against hand-computed values.

    /tmp/venv/bin/python -m pytest tests/workbench/train/test_rlhf.py
"""

import pytest
import torch

from workbench.train.rlhf import (AdaptiveKLController, FixedKLController, gae, kl_penalty_rewards, masked_mean,
                                  masked_var, whiten)


def close(actual: torch.Tensor, expected) -> None:
    torch.testing.assert_close(actual, torch.tensor(expected, dtype=actual.dtype), atol=1e-6, rtol=1e-6)


def test_gae_matches_a_hand_computed_example():
    # Row 0 uses all three tokens; row 1 ended after two (its third reward and value are padding garbage).
    rewards = torch.tensor([[1.0, 0.0, 2.0], [1.0, 0.0, 5.0]])
    values = torch.tensor([[0.5, 1.0, 1.5], [0.5, 1.0, 9.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]], dtype=torch.bool)
    adv, ret = gae(rewards, values, mask, gamma=0.9, lam=0.8)
    # row 0: d2 = 2 - 1.5 = 0.5; d1 = 0 + 0.9*1.5 - 1 = 0.35; d0 = 1 + 0.9*1 - 0.5 = 1.4
    #        A2 = 0.5, A1 = 0.35 + 0.72*0.5 = 0.71, A0 = 1.4 + 0.72*0.71 = 1.9112
    # row 1: the episode ends at t=1 (no bootstrap): A1 = 0 - 1 = -1, A0 = 1.4 + 0.72*(-1) = 0.68
    close(adv, [[1.9112, 0.71, 0.5], [0.68, -1.0, 0.0]])
    close(ret, [[2.4112, 1.71, 2.0], [1.18, 0.0, 0.0]])


def test_gae_with_gamma_and_lambda_one_is_the_monte_carlo_advantage():
    torch.manual_seed(0)
    rewards, values = torch.randn(3, 5), torch.randn(3, 5)
    mask = torch.tensor([[1] * 5, [1] * 3 + [0] * 2, [1] + [0] * 4], dtype=torch.bool)
    adv, ret = gae(rewards, values, mask, gamma=1.0, lam=1.0)
    r = rewards * mask
    to_go = r.flip(1).cumsum(1).flip(1)  # sum of this and later rewards of the episode
    assert torch.allclose(adv, (to_go - values) * mask, atol=1e-6)
    assert torch.allclose(ret, to_go * mask, atol=1e-6)


def test_gae_with_lambda_zero_is_the_one_step_td_error():
    rewards, values = torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[0.1, 0.2, 0.3]])
    mask = torch.ones(1, 3, dtype=torch.bool)
    adv, _ = gae(rewards, values, mask, gamma=0.5, lam=0.0)
    close(adv, [[1 + 0.5 * 0.2 - 0.1, 2 + 0.5 * 0.3 - 0.2, 3 - 0.3]])


def test_whiten_uses_the_masked_positions_only():
    torch.manual_seed(0)
    x = torch.randn(4, 6) * 3 + 7
    mask = torch.rand(4, 6) > 0.3
    x_garbage = torch.where(mask, x, torch.full_like(x, 1e6))  # padding must not move the statistics
    w = whiten(x_garbage, mask)
    vals = w[mask]
    assert float(vals.mean()) == pytest.approx(0.0, abs=1e-5)
    assert float(vals.std()) == pytest.approx(1.0, abs=1e-4)  # unbiased std, as whiten's variance
    assert bool((w[~mask] == 0).all())
    # shift_mean=False scales around the mean but keeps it (TRL's reward whitening)
    w2 = whiten(x_garbage, mask, shift_mean=False)
    assert float(w2[mask].mean()) == pytest.approx(float(x[mask].mean()), rel=1e-5)
    assert float(w2[mask].std()) == pytest.approx(1.0, abs=1e-4)


def test_masked_mean_and_var():
    x = torch.tensor([[1.0, 2.0, 100.0], [3.0, -50.0, 4.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 1]], dtype=torch.bool)
    assert float(masked_mean(x, mask)) == pytest.approx(2.5)
    assert masked_mean(x, mask, dim=1).tolist() == pytest.approx([1.5, 3.5])
    assert float(masked_var(x, mask)) == pytest.approx(torch.tensor([1.0, 2, 3, 4]).var().item())
    assert float(masked_mean(x, torch.zeros_like(mask))) == 0.0  # empty: 0, not NaN


def test_kl_penalty_rewards_put_the_score_on_the_last_response_token():
    lp = torch.tensor([[-1.0, -2.0, -3.0], [-1.0, -1.0, -9.0]])
    ref = torch.tensor([[-1.5, -2.0, -2.0], [-2.0, -0.5, -1.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]], dtype=torch.bool)
    score = torch.tensor([10.0, 20.0])
    rewards, kl = kl_penalty_rewards(score, lp, ref, mask, kl_coef=0.1)
    close(kl, [[0.5, 0.0, -1.0], [1.0, -0.5, 0.0]])
    close(rewards, [[-0.05, 0.0, 0.1 + 10.0], [-0.1, 0.05 + 20.0, 0.0]])


def test_adaptive_kl_controller_moves_towards_the_target():
    up = AdaptiveKLController(0.1, target=6.0, horizon=100)
    up.update(12.0, n_steps=10)  # KL too high: error clipped to +0.2 -> beta * (1 + 0.2 * 10/100)
    assert up.value == pytest.approx(0.1 * 1.02)
    down = AdaptiveKLController(0.1, target=6.0, horizon=100)
    down.update(3.0, n_steps=10)  # KL too low: error -0.5 clipped to -0.2
    assert down.value == pytest.approx(0.1 * 0.98)
    small = AdaptiveKLController(0.1, target=6.0, horizon=100)
    small.update(6.6, n_steps=100)  # inside the clip: proportional (error 0.1)
    assert small.value == pytest.approx(0.1 * 1.1)
    on_target = AdaptiveKLController(0.1, target=6.0, horizon=100)
    on_target.update(6.0, n_steps=50)
    assert on_target.value == pytest.approx(0.1)
    fixed = FixedKLController(0.1)
    fixed.update(100.0, n_steps=1000)
    assert fixed.value == 0.1
