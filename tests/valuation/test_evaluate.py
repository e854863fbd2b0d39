"""Counterfactual evaluation: LDS, ground truth, brittleness, planted accuracy, and the suite smoke."""

from __future__ import annotations

import json

import pytest
import torch

from valuation.evaluate import (
    EvalTask,
    GroundTruth,
    LDSArguments,
    brittleness,
    cached_ground_truth,
    evaluate_task,
    ground_truth,
    lds,
    planted_accuracy,
    provider_credit,
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


def test_ground_truth_cells_resume_extend_and_match_in_forked_workers(tmp_path):
    """A cache holding some cells is completed, not redone; more seeds reuse the old cells; two
    forked workers give the same measurements as one process."""
    _, train_fn, measure_fn = linear_world()
    calls = []

    def counting(mask, seed):
        calls.append(seed)
        return train_fn(mask, seed)

    masks = sample_subsets(N, 6, 0.5, seed=2)
    serial = ground_truth(counting, measure_fn, masks, [0, 1], tmp_path / "a", key="w")
    assert len(calls) == 12
    more = ground_truth(counting, measure_fn, masks, [0, 1, 2], tmp_path / "a", key="w")
    assert len(calls) == 18 and torch.equal(more.measurements[:, :2], serial.measurements)
    forked = ground_truth(train_fn, measure_fn, masks, [0, 1], tmp_path / "b", key="w", workers=2)
    assert torch.equal(forked.measurements, serial.measurements)


def test_cached_ground_truth_reads_the_finished_subsets_without_retraining(tmp_path):
    """An interrupted run leaves some cells; the cached view holds the subsets finished for every
    seed, equal to the full run's, and retrains nothing."""
    _, train_fn, measure_fn = linear_world()
    masks = sample_subsets(N, 6, 0.5, seed=5)
    calls = []

    def stops_after_five(mask, seed):
        calls.append(seed)
        if len(calls) > 5:
            raise RuntimeError("stopped")
        return train_fn(mask, seed)

    with pytest.raises(RuntimeError, match="stopped"):
        ground_truth(stops_after_five, measure_fn, masks, [0, 1], tmp_path, key="p")
    partial = cached_ground_truth(masks, [0, 1], tmp_path, key="p")  # cells (0..1, 0..1) and (2, 0)
    assert len(calls) == 6 and partial.measurements.shape == (2, 2, Q)
    assert torch.equal(partial.masks, masks[:2])
    assert cached_ground_truth(masks, [0], tmp_path, key="p").measurements.shape == (3, 1, Q)
    full = ground_truth(train_fn, measure_fn, masks, [0, 1], tmp_path, key="p")
    assert torch.equal(full.measurements[:2], partial.measurements)
    assert cached_ground_truth(masks, [0], tmp_path / "none", key="p").measurements.shape[0] == 0


def test_provider_credit_policies_match_hand_sums():
    scores = torch.tensor([[3.0, -1.0, 2.0, 0.5], [-2.0, 1.0, -3.0, 4.0]])
    groups = torch.tensor([0, 1, 1, 2])
    assert provider_credit(scores, groups, 3, "sum").tolist() == [[3.0, 1.0, 0.5], [-2.0, -2.0, 4.0]]
    assert provider_credit(scores, groups, 3, "positive_share").tolist() == [[3.0, 2.0, 0.5], [0.0, 1.0, 4.0]]
    # top-2 per query: (3, 2) → providers 0 and 1; (4, 1) → providers 2 and 1
    assert provider_credit(scores, groups, 3, "topk_share", topk=2).tolist() == [[3.0, 2.0, 0.0], [0.0, 1.0, 4.0]]
    with pytest.raises(ValueError, match="groups must be"):
        provider_credit(scores, groups[:3], 3)


def linear_task() -> EvalTask:
    """A task for ``dataworth eval tests.valuation.test_evaluate:linear_task``."""
    w, train_fn, measure_fn = linear_world()

    def methods(names):
        every = {
            "oracle": w,
            "negated oracle": -w,
            "random": torch.randn(Q, N, generator=torch.Generator().manual_seed(5), dtype=torch.float64),
        }
        return {k: v for k, v in every.items() if not names or k in names}

    return EvalTask("linear-world", N, train_fn, measure_fn, methods, {"first half": list(range(Q // 2))})


def test_evaluate_task_and_the_eval_command(tmp_path):
    from typer.testing import CliRunner

    report = evaluate_task(linear_task(), LDSArguments(subsets=40, seeds=2, cache_dir=tmp_path))
    assert report["lds"]["oracle"]["all"]["mean"] > 0.99
    assert report["lds"]["negated oracle"]["first half"]["mean"] < -0.99
    assert abs(report["lds"]["random"]["all"]["mean"]) < 3 * report["lds"]["random"]["all"]["se"]
    assert report["ceiling"]["all"] > 0.99

    from flows.cli.root import app  # the real CLI

    out = tmp_path / "report.json"
    args = ["eval", "tests.valuation.test_evaluate:linear_task", "--subsets", "40", "--seeds", "2"]
    result = CliRunner().invoke(app, [*args, "--cache-dir", str(tmp_path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "oracle" in result.output and "ceiling" in result.output
    assert json.loads(out.read_text())["lds"] == report["lds"]  # same cached ground truth, same numbers
    bad = CliRunner().invoke(app, ["eval", "no_such_module:task"])
    assert bad.exit_code != 0 and "cannot import task module" in str(bad.exception)


def test_retraining_is_seeded_and_reproducible():
    """The suites' train functions: same (subset, seed) → identical measurements; another seed differs."""
    from benchmarks.accuracy.digits_task import load, margins, train

    torch.set_num_threads(1)
    xtr, ytr, xq, yq = load(n_train=80, n_query=5)
    mask = sample_subsets(80, 1, 0.5, seed=0)[0]
    a, b = (margins(train(xtr, ytr, mask, 7, steps=20), xq, yq) for _ in range(2))
    c = margins(train(xtr, ytr, mask, 8, steps=20), xq, yq)
    assert torch.equal(a, b) and not torch.equal(a, c)
