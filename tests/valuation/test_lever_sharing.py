"""The accuracy suites' lever harness (benchmarks/accuracy/levers.py): configs that share
gradients score exactly as if each had fitted and projected on its own."""

from __future__ import annotations

import torch
from torch import nn

from benchmarks.accuracy.levers import LeverConfig, gradient_key, lever_gradients, lever_scores, scores_from_gradients


def test_shared_gradients_score_like_separate_runs():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    x, y = torch.randn(24, 6, dtype=torch.float64), torch.randint(0, 3, (24,))
    xq, yq = torch.randn(5, 6, dtype=torch.float64), torch.randint(0, 3, (5,))

    def loss_fn(m, b):
        return nn.functional.cross_entropy(m(b[0]), b[1], reduction="sum")

    train, query = [(x, y)], [(xq, yq)]
    families = [
        [LeverConfig(k=2), LeverConfig(k=2, mix_alpha=0.5), LeverConfig(k=2, mode="cosine")],
        [LeverConfig(k=2, damping_rule="effective_rank", damping=0.25)],
        [LeverConfig(k=2, fisher="sampled"), LeverConfig(k=2, fisher="sampled", damping=0.001)],
    ]
    for family in families:
        assert len({gradient_key(c) for c in family}) == 1
        shared = lever_gradients(model, train, query, loss_fn, family[0], "classifier", ("",))
        for cfg in family:
            alone = lever_scores(model, train, query, loss_fn, cfg, "classifier", ("",))
            assert torch.equal(scores_from_gradients(shared, cfg), alone)
    assert gradient_key(LeverConfig()) != gradient_key(LeverConfig(optimizer=True))
