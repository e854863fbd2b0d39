"""Group sums from aggregate vectors equal the dense scores summed per group (float64, every mode)."""

from __future__ import annotations

import pytest
import torch

from valuation import (
    GroupSumAccumulator,
    ProjectedFisher,
    group_sums_from_aggregates,
    influence_scores,
    positive_sum_bounds,
)

LAYOUT = [("a", 3, 2), ("b", 2, 2)]  # dim 10


@pytest.fixture(scope="module")
def data():
    gen = torch.Generator().manual_seed(3)
    G = torch.randn(57, 10, generator=gen, dtype=torch.float64) * torch.rand(57, 1, generator=gen, dtype=torch.float64)
    Q = torch.randn(4, 10, generator=gen, dtype=torch.float64)
    codes = torch.randint(0, 6, (57,), generator=gen)
    fisher = ProjectedFisher(LAYOUT)
    fisher.update(G)
    pre = fisher.preconditioner(0.1)
    return G, Q, codes, pre


@pytest.mark.parametrize("mode", ["if", "relatif", "cosine"])
def test_group_sums_equal_dense_sums(data, mode):
    G, Q, codes, pre = data
    train_self, q_pre = (pre(G) * G).sum(1), pre(Q)
    query_self = (q_pre * Q).sum(1)
    acc = GroupSumAccumulator(7, 10)
    for s in range(0, 57, 10):  # chunked, as a scan feeds it
        acc.update(G[s : s + 10].float(), codes[s : s + 10], train_self[s : s + 10])
    dense = influence_scores(q_pre, G.float().double(), mode, train_self, query_self)
    want = torch.zeros(4, 7, dtype=torch.float64).index_add_(1, codes, dense)
    got = group_sums_from_aggregates(q_pre, acc.sums[mode], mode, query_self)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)
    assert torch.equal(acc.counts, torch.bincount(codes, minlength=7))
    lower, upper = positive_sum_bounds(got, mode, acc.counts, acc.norm_sums, query_self)
    positive = torch.zeros(4, 7, dtype=torch.float64).index_add_(1, codes, dense.clamp_min(0))
    assert torch.all(lower <= positive + 1e-12) and torch.all(positive <= upper + 1e-12)


def test_normalised_modes_need_self_influence(data):
    G, _, codes, _ = data
    with pytest.raises(ValueError, match="self-influence"):
        GroupSumAccumulator(6, 10, ("relatif",)).update(G, codes)
    with pytest.raises(ValueError, match="queries"):
        group_sums_from_aggregates(torch.zeros(1, 10), torch.zeros(6, 10), "cosine")
