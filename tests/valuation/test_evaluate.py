"""Counterfactual evaluation: LDS, ground truth, brittleness, planted accuracy, and the suite smoke."""

from __future__ import annotations

import pytest
import torch

from valuation.evaluate import (
    GroundTruth,
    brittleness,
    ground_truth,
    lds,
    planted_accuracy,
    rank,
    sample_subsets,
    spearman,
)

N, Q = 40, 20


def linear_world(noise: float = 0.01):
    """Retraining whose measurement is exactly additive in the kept examples (plus seed noise)."""
    w = torch.randn(Q, N, generator=torch.Generator().manual_seed(1), dtype=torch.float64)

    def train_fn(mask, seed):
        return mask, seed

    def measure_fn(model):
        mask, seed = model
        jitter = torch.randn(Q, generator=torch.Generator().manual_seed(1000 + seed), dtype=torch.float64)
        return w @ mask.double() + noise * jitter

    return w, train_fn, measure_fn


def test_subsets_are_seeded_and_exactly_sized():
    a, b = sample_subsets(N, 30, 0.5, seed=3), sample_subsets(N, 30, 0.5, seed=3)
    assert torch.equal(a, b) and (a.sum(1) == N // 2).all()
    assert not torch.equal(a, sample_subsets(N, 30, 0.5, seed=4))


def test_rank_and_spearman_match_scipy():
    from scipy.stats import spearmanr

    x = torch.tensor([[3.0, 1.0, 2.0, 2.0, 5.0]])
    assert rank(x).tolist() == [[3.0, 0.0, 1.5, 1.5, 4.0]]
    a, b = torch.randn(50), torch.randn(50).round()
    assert float(spearman(a, b)) == pytest.approx(spearmanr(a.numpy(), b.numpy()).statistic, abs=1e-12)


def test_oracle_lds_is_one_and_random_is_zero_within_its_error(tmp_path):
    w, train_fn, measure_fn = linear_world()
    gt = ground_truth(train_fn, measure_fn, sample_subsets(N, 60, 0.5, seed=0), [0, 1], tmp_path)
    oracle = lds(w, gt)
    assert oracle.mean > 0.99 and oracle.ceiling > 0.99
    # The retrained measurement itself, as scores of a per-subset oracle: predicted == actual.
    assert float(spearman(gt.mean.T, gt.mean.T).mean()) == pytest.approx(1.0)
    rnd = [
        lds(torch.randn(Q, N, generator=torch.Generator().manual_seed(s), dtype=torch.float64), gt) for s in range(20)
    ]
    means = torch.tensor([r.mean for r in rnd])
    assert abs(float(means.mean())) < 3 * float(means.std()) / 20**0.5 + 0.02
    # ~95% of random methods should land within 2 standard errors of 0.
    assert sum(abs(r.mean) < 2 * r.se for r in rnd) >= 15


def test_ground_truth_is_cached_and_reused(tmp_path):
    _, train_fn, measure_fn = linear_world()
    calls = []

    def counting(mask, seed):
        calls.append(seed)
        return train_fn(mask, seed)

    masks = sample_subsets(N, 5, 0.5)
    first = ground_truth(counting, measure_fn, masks, [0, 1], tmp_path, key="k")
    second = ground_truth(counting, measure_fn, masks, [0, 1], tmp_path, key="k")
    assert len(calls) == 10 and torch.equal(first.measurements, second.measurements)
    assert isinstance(second, GroundTruth) and second.measurements.shape == (5, 2, Q)


def test_brittleness_removes_the_top_k_and_counts_flips():
    w, train_fn, _ = linear_world(noise=0.0)
    w = w.abs() * 0.1  # every example helps: removing the best ones lowers the measurement most
    base = w.sum(1)

    def measure(model):
        mask, _ = model
        return w @ mask.double() - base + 0.3  # baseline +0.3 for every query

    res = brittleness(w, train_fn, measure, [1, 5, 20], [0])
    want = [-float(w.topk(k, dim=1).values.sum(1).mean()) for k in (1, 5, 20)]
    assert res.mean_change == pytest.approx(want)
    assert res.mean_change[0] > res.mean_change[1] > res.mean_change[2]
    assert res.flipped[-1] >= res.flipped[0]


def test_planted_accuracy():
    scores = torch.tensor([[3.0, 1.0], [0.0, 2.0], [5.0, 4.0]])
    out = planted_accuracy(scores, [0, 1, 1], learned=[True, True, False])
    assert out["accuracy"] == pytest.approx(2 / 3) and out["accuracy_learned"] == 1.0
