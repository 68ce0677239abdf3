"""The model learns, and the memory/speed switches do not change the maths."""

import pytest
import torch

from .conftest import make


@pytest.mark.parametrize("name", ["tiny", "tiny-dense"])
def test_loss_falls_when_fitting_a_batch(name):
    model = make(name, init_std=0.02).train()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 300, (4, 32), generator=g)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        out = model(ids, labels=ids)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(out.lm_loss.item())
    assert losses[0] > 5.5 and losses[-1] < losses[0] - 2.0, losses[::5]


def test_gradient_checkpointing_gives_the_same_loss_and_gradients():
    ids = torch.randint(0, 300, (2, 16), generator=torch.Generator().manual_seed(0))
    grads = []
    for flag in (False, True):
        model = make("tiny", gradient_checkpointing=flag).train()
        out = model(ids, labels=ids)
        out.loss.backward()
        grads.append((out.loss.item(), [p.grad.clone() for p in model.parameters()]))
    (l0, g0), (l1, g1) = grads
    assert abs(l0 - l1) < 1e-6 and all((a - b).abs().max() < 1e-6 for a, b in zip(g0, g1))


def test_runs_under_bf16_autocast():
    # CUDA trains in bf16 autocast; the CPU path of the same code must at least agree roughly.
    model = make("tiny", init_std=0.02).train()
    ids = torch.randint(0, 300, (2, 8))
    ref = model(ids, labels=ids).lm_loss.item()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(ids, labels=ids)
    out.loss.backward()
    assert abs(out.lm_loss.item() - ref) < 0.05
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
