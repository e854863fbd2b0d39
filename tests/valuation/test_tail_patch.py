"""Tail-patch against the closed-form SGD step of a linear least-squares model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from valuation.evaluate import TailPatcher, tail_patch, tail_patch_check

X = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, -1.0]], dtype=torch.float64)
Y = torch.tensor([1.0, -1.0, 0.5, 3.0], dtype=torch.float64)
XQ = torch.tensor([[1.0, 0.5], [-1.0, 2.0]], dtype=torch.float64)
YQ = torch.tensor([2.0, -2.0], dtype=torch.float64)
W0 = torch.tensor([0.3, -0.2], dtype=torch.float64)


def model() -> nn.Module:
    m = nn.Linear(2, 1, bias=False).double()
    with torch.no_grad():
        m.weight.copy_(W0[None])
    return m


def loss_fn(m, idx):
    return (m(X[idx]).squeeze(1) - Y[idx]).square().sum()


def measure(m):
    with torch.no_grad():
        return -(m(XQ).squeeze(1) - YQ).square()


def explicit(idx: list[int], lr: float) -> torch.Tensor:
    grad = 2 * ((X[idx] @ W0 - Y[idx])[:, None] * X[idx]).sum(0)
    w = W0 - lr * grad
    return -(XQ @ w - YQ).square() + (XQ @ W0 - YQ).square()


def test_tail_patch_is_one_sgd_step_and_leaves_the_model_alone():
    m = model()
    got = tail_patch(m, loss_fn, measure, [0, 2], lr=0.05)
    torch.testing.assert_close(got, explicit([0, 2], 0.05), rtol=1e-12, atol=1e-12)
    assert torch.equal(m.weight.detach()[0], W0)


def test_tail_patch_check_compares_top_k_with_seeded_random_k():
    scores = torch.tensor([[0.9, 0.1, 0.5, -1.0], [-0.3, 0.8, 0.0, 0.2]], dtype=torch.float64)
    res = tail_patch_check(model(), loss_fn, measure, scores, lambda idx: idx, k=2, lr=0.05, seed=3)
    gen = torch.Generator().manual_seed(3)
    for q, best in enumerate([[0, 2], [1, 3]]):
        drawn = torch.randperm(4, generator=gen)[:2].tolist()
        assert float(res.top[q]) == pytest.approx(float(explicit(best, 0.05)[q]), rel=1e-12)
        assert float(res.random[q]) == pytest.approx(float(explicit(drawn, 0.05)[q]), rel=1e-12)
    summary = res.summary()
    assert summary["queries"] == 2 and summary["margin"] == pytest.approx(float(res.margin.mean()))


def test_one_patcher_takes_independent_steps_from_the_same_weights():
    m = model()
    patcher = TailPatcher(m, loss_fn, lr=0.05)
    for idx in ([0, 2], [1], [0, 2], [3, 1, 0]):  # each step starts again from W0
        torch.testing.assert_close(patcher.delta(idx, measure), explicit(idx, 0.05), rtol=1e-12, atol=1e-12)
    assert torch.equal(m.weight.detach()[0], W0)
