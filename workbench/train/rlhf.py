"""Small reusable RLHF pieces (torchtune style): masked statistics, whitening, KL-shaped rewards, GAE,
and the KL coefficient controllers. Pure functions on tensors; `workbench/train/ppo.py` puts them together.

    from workbench.train.rlhf import gae, kl_penalty_rewards, whiten, AdaptiveKLController
    rewards, kl = kl_penalty_rewards(score, logprobs, ref_logprobs, mask, kl_coef=0.05)
    advantages, returns = gae(rewards, values, mask, gamma=1.0, lam=0.95)
    advantages = whiten(advantages, mask)

Conventions: per-token tensors are [B, N] over the response tokens only; `mask` is 1 (True) for real
response tokens and 0 for the padding after a response ended. Tokens outside the mask never
contribute to a statistic and come out as 0.
"""

from __future__ import annotations

import torch


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim=None) -> torch.Tensor:
    """Mean of `x` over the positions where `mask` is set (all of them, or along `dim`).

    An empty mask gives 0, not NaN (a minibatch of zero response tokens must not poison a step)."""
    m = mask.to(x.dtype)
    if dim is None:
        return (x * m).sum() / m.sum().clamp(min=1)
    return (x * m).sum(dim) / m.sum(dim).clamp(min=1)


def masked_var(x: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance of `x` over the masked positions (Bessel-corrected by default, as TRL does)."""
    m = mask.to(x.dtype)
    n = m.sum()
    centred = (x - masked_mean(x, mask)) * m
    var = (centred ** 2).sum() / n.clamp(min=1)
    if unbiased and n > 1:
        var = var * n / (n - 1)
    return var


def masked_mean_var_all(x: torch.Tensor, mask: torch.Tensor, all_sum, unbiased: bool = True):
    """masked_mean and masked_var over the masked positions of every rank: `all_sum(t)` sums a tensor
    over ranks. Two reductions (the sums, then the squared deviations from the joint mean)."""
    m = mask.to(x.dtype)
    total, n = all_sum(torch.stack([(x * m).sum(), m.sum()]).double()).unbind()
    mean = (total / n.clamp(min=1)).to(x.dtype)
    sq = all_sum((((x - mean) * m) ** 2).sum().double()[None])[0]
    var = sq / n.clamp(min=1)
    if unbiased and n > 1:
        var = var * n / (n - 1)
    return mean, var.to(x.dtype)


def whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8,
           all_sum=None) -> torch.Tensor:
    """Scale `x` to unit variance over the masked positions (and to mean 0 when `shift_mean`).

    Rewards are whitened with shift_mean=False (TRL): shifting them would move the per-token KL
    penalty around; advantages are fully whitened. Unmasked positions come out as 0. With
    `all_sum` (several ranks) the mean and variance are those of every rank's positions together."""
    if all_sum is None:
        mean, var = masked_mean(x, mask), masked_var(x, mask)
    else:
        mean, var = masked_mean_var_all(x, mask, all_sum)
    out = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return out * mask.to(x.dtype)


def kl_penalty_rewards(score: torch.Tensor, logprobs: torch.Tensor, ref_logprobs: torch.Tensor,
                       mask: torch.Tensor, kl_coef: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token rewards (Ziegler et al. 2019; Stiennon et al. 2020): -kl_coef * (log pi - log pi_ref)
    at every response token, plus the sequence's score at its last response token.

    score [B], logprobs/ref_logprobs/mask [B, N]. Returns (rewards [B, N], per-token kl [B, N]).
    `log pi - log pi_ref` of the sampled token is the single-sample KL estimate (k1 in Schulman's
    notes): unbiased, non-negative in expectation under pi, but any single token may be negative."""
    m = mask.to(logprobs.dtype)
    kl = (logprobs - ref_logprobs) * m
    rewards = -kl_coef * kl
    last = (m.sum(1).long() - 1).clamp(min=0)  # responses are contiguous from index 0
    has_token = m.sum(1) > 0
    bonus = torch.zeros_like(rewards)
    bonus.scatter_(1, last[:, None], (score.to(rewards.dtype) * has_token)[:, None])
    return rewards + bonus, kl


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float,
        lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised Advantage Estimation (Schulman et al. 2016) over [B, N] response tokens.

    delta_t = r_t + gamma * V_{t+1} - V_t, A_t = delta_t + gamma * lam * A_{t+1}; the episode ends
    at the last masked token, after which the value is 0 (no bootstrap: the response is complete).
    Returns (advantages, returns = advantages + values), both 0 outside the mask."""
    m = mask.to(values.dtype)
    B, N = rewards.shape
    advantages = torch.zeros_like(values)
    next_adv = torch.zeros(B, dtype=values.dtype, device=values.device)
    next_value = torch.zeros_like(next_adv)
    for t in reversed(range(N)):
        keep = m[:, t + 1] if t + 1 < N else torch.zeros_like(next_adv)  # is t+1 still in the episode?
        delta = rewards[:, t] + gamma * next_value * keep - values[:, t]
        next_adv = (delta + gamma * lam * next_adv * keep) * m[:, t]
        advantages[:, t] = next_adv
        next_value = values[:, t]
    return advantages, (advantages + values) * m


class FixedKLController:
    """A constant KL coefficient (the default: kl_coef as configured)."""

    def __init__(self, kl_coef: float):
        self.value = float(kl_coef)

    def update(self, current_kl: float, n_steps: int) -> None:
        pass


class AdaptiveKLController:
    """Ziegler et al. 2019's proportional controller: steer the measured KL towards `target`.

    error = clip(KL / target - 1, -0.2, 0.2); kl_coef *= 1 + error * n_steps / horizon, where
    n_steps is the number of samples the KL was measured on. The clip keeps one noisy batch from
    moving the coefficient by much; `horizon` sets how many samples a full correction takes."""

    def __init__(self, kl_coef: float, target: float, horizon: int):
        self.value, self.target, self.horizon = float(kl_coef), float(target), int(horizon)

    def update(self, current_kl: float, n_steps: int) -> None:
        error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon
