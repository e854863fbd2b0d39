"""Exact provider Shapley values: known games, the permutation definition, the resumable cache."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest
import torch

from valuation.evaluate import (
    EvalTask,
    ShapleyArguments,
    coalition_masks,
    credit_shares,
    evaluate_provider_shapley,
    pro_rata_credit,
    provider_shapley,
    shapley_agreement,
    shapley_from_utilities,
)

P = 4
GROUPS = torch.tensor([0, 0, 1, 2, 2, 2, 3, 1, 0])


def present(mask: torch.Tensor) -> torch.Tensor:
    """Which providers a train mask holds ``(P,)``."""
    out = torch.zeros(P, dtype=torch.float64)
    out[GROUPS[mask].unique()] = 1.0
    return out


def test_additive_utility_gives_each_provider_its_own_contribution(tmp_path):
    gen = torch.Generator().manual_seed(0)
    own = torch.randn(3, P, generator=gen, dtype=torch.float64)  # (n_query, P)
    base = torch.randn(3, generator=gen, dtype=torch.float64)
    calls = []

    def train_fn(mask, seed):
        calls.append(seed)
        return mask

    def measure_fn(mask):
        return base + own @ present(mask)

    res = provider_shapley(train_fn, measure_fn, GROUPS, P, [0, 1], tmp_path, key="additive")
    torch.testing.assert_close(res.values, own, rtol=1e-12, atol=1e-12)
    assert res.utilities.shape == (2**P, 2, 3) and len(calls) == 2 * 2**P
    # Cached per cell: a second run retrains nothing, a third seed retrains only its cells.
    provider_shapley(train_fn, measure_fn, GROUPS, P, [0, 1], tmp_path, key="additive")
    assert len(calls) == 2 * 2**P
    provider_shapley(train_fn, measure_fn, GROUPS, P, [0, 1, 2], tmp_path, key="additive")
    assert len(calls) == 3 * 2**P


def test_shapley_equals_the_mean_marginal_contribution_over_all_orderings():
    utilities = torch.randn(2**P, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    want = torch.zeros(2, P, dtype=torch.float64)
    orders = list(itertools.permutations(range(P)))
    for order in orders:
        coalition = 0
        for p in order:
            want[:, p] += utilities[coalition | 1 << p] - utilities[coalition]
            coalition |= 1 << p
    torch.testing.assert_close(shapley_from_utilities(utilities, P), want / len(orders), rtol=1e-12, atol=1e-12)


def test_majority_game_splits_equally_and_efficiency_holds():
    utilities = torch.tensor([[float(bin(c).count("1") >= 2)] for c in range(8)])
    phi = shapley_from_utilities(utilities, 3)
    torch.testing.assert_close(phi, torch.full((1, 3), 1 / 3, dtype=torch.float64))
    assert float(phi.sum()) == pytest.approx(float(utilities[7] - utilities[0]))


def test_coalition_masks_follow_the_bits():
    masks = coalition_masks(GROUPS, P)
    assert masks.shape == (16, len(GROUPS))
    assert not masks[0].any() and masks[15].all()
    assert torch.equal(masks[0b0101], (GROUPS == 0) | (GROUPS == 2))
    with pytest.raises(ValueError, match="P <= 8"):
        coalition_masks(torch.zeros(3, dtype=torch.long), 9)


def test_agreement_metrics_on_hand_built_credit():
    shapley = torch.tensor([[3.0, 1.0, -1.0], [0.0, 2.0, 2.0]])
    assert credit_shares(shapley).tolist() == [[0.75, 0.25, 0.0], [0.0, 0.5, 0.5]]
    same = shapley_agreement(shapley, shapley)
    assert same["l1"]["mean"] == 0 and same["top1"]["mean"] == 1
    credit = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])  # no positive credit: uniform shares
    got = shapley_agreement(credit, shapley)
    assert got["per_query_l1"] == pytest.approx([0.75 + 0.75 + 0.0, 1 / 3 + 1 / 6 + 1 / 6])
    assert got["top1"]["mean"] == 0.0
    rata = pro_rata_credit(GROUPS, P, 2)
    assert rata.tolist() == [[3.0, 2.0, 3.0, 1.0]] * 2


OWN = torch.tensor([[2.0, 0.5, 0.1, 0.0], [0.0, 0.0, 1.0, 3.0]], dtype=torch.float64)


def additive_task() -> EvalTask:
    """Each provider adds its own contribution to each query (Shapley = that contribution); also
    ``dataworth eval tests.valuation.test_shapley:additive_task --shapley``."""
    own = OWN

    def score_methods(names=None):
        # "oracle" gives each example its provider's own contribution; "flat" credits pro rata.
        oracle = own[:, GROUPS] / torch.bincount(GROUPS, minlength=P)[GROUPS]
        every = {"oracle": oracle, "flat": torch.ones(2, len(GROUPS), dtype=torch.float64)}
        return {k: v for k, v in every.items() if not names or k in names}

    return EvalTask(
        name="additive",
        n_train=len(GROUPS),
        train_fn=lambda mask, seed: mask,
        measure_fn=lambda mask: own @ present(mask),
        score_methods=score_methods,
        providers=GROUPS,
    )


def test_evaluate_provider_shapley_on_an_additive_task(tmp_path):
    own, task = OWN, additive_task()
    report = evaluate_provider_shapley(task, ShapleyArguments(seeds=1, cache_dir=tmp_path))
    assert report["providers"] == P
    torch.testing.assert_close(torch.tensor(report["shapley"], dtype=torch.float64), own, rtol=1e-12, atol=1e-12)
    assert report["methods"]["oracle"]["sum"]["all"]["l1"]["mean"] == pytest.approx(0.0, abs=1e-12)
    assert report["methods"]["oracle"]["sum"]["all"]["top1"]["mean"] == 1.0
    flat = report["methods"]["flat"]["sum"]["all"]["l1"]["mean"]
    assert flat == pytest.approx(report["pro-rata"]["all"]["l1"]["mean"]) and flat > 0.5
    with pytest.raises(ValueError, match="no providers"):
        evaluate_provider_shapley(replace(task, providers=None), ShapleyArguments(seeds=1))


def test_the_eval_command_reports_provider_shapley(tmp_path):
    import json

    from typer.testing import CliRunner

    from flows.cli.root import app  # the real CLI

    out = tmp_path / "shapley.json"
    args = ["eval", "tests.valuation.test_shapley:additive_task", "--shapley", "--seeds", "1"]
    result = CliRunner().invoke(app, [*args, "--cache-dir", str(tmp_path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "Provider Shapley agreement" in result.output and "pro-rata" in result.output
    report = json.loads(out.read_text())
    direct = evaluate_provider_shapley(additive_task(), ShapleyArguments(seeds=1, cache_dir=tmp_path))
    assert report["shapley"] == direct["shapley"] and report["methods"] == direct["methods"]
    assert report["methods"]["oracle"]["topk_share"]["all"]["top1"]["mean"] == 1.0
    only = CliRunner().invoke(app, [*args, "--cache-dir", str(tmp_path), "--method", "flat"])
    assert only.exit_code == 0 and "oracle" not in only.output
    bad = CliRunner().invoke(app, ["eval", "tests.valuation.test_evaluate:linear_task", "--shapley"])
    assert bad.exit_code != 0 and "has no providers" in str(bad.exception)
