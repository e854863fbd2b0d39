"""Checkpoint combination and trajectory weights against explicit float64 computations."""

from __future__ import annotations

import json

import pytest
import torch

from valuation.combine import (
    TrainerStateError,
    checkpoint_weights,
    combine_checkpoints,
    combine_score_matrices,
    mean_abs_from_sample,
)

N_QUERY, N_TRAIN, N_GROUPS, K = 3, 12, 3, 4


def checkpoint_pass(scores: torch.Tensor, groups: torch.Tensor):
    """What the streaming scorer keeps of one checkpoint: per-group sums, positive sums, top-k."""
    sums = torch.zeros(N_QUERY, N_GROUPS, dtype=torch.float64).index_add_(1, groups, scores)
    pos = torch.zeros(N_QUERY, N_GROUPS, dtype=torch.float64).index_add_(1, groups, scores.clamp_min(0))
    top = scores.topk(K, dim=1)
    topk = [
        [(f"ex{i}", f"doc{i}", f"p{int(groups[i])}", float(s)) for i, s in zip(idx.tolist(), val.tolist(), strict=True)]
        for idx, val in zip(top.indices, top.values, strict=True)
    ]
    return sums, pos, topk


@pytest.mark.parametrize("normalise", [True, False])
def test_combination_equals_explicit_weighted_normalised_scores(normalise):
    gen = torch.Generator().manual_seed(0)
    groups = torch.randint(0, N_GROUPS, (N_TRAIN,), generator=gen)
    per_ck = [torch.randn(N_QUERY, N_TRAIN, generator=gen, dtype=torch.float64) * scale for scale in (1.0, 5.0)]
    weights = [0.7, 0.3]
    passes = [checkpoint_pass(s, groups) for s in per_ck]
    sums, pos, topk = combine_checkpoints(
        [p[0] for p in passes], [p[1] for p in passes], [p[2] for p in passes], [N_TRAIN] * 2, weights, normalise
    )
    # explicit: per query factor w_c / mean|S_c[q]|
    factors = [
        w / (s.abs().mean(1) if normalise else torch.ones(N_QUERY, dtype=torch.float64))
        for w, s in zip(weights, per_ck, strict=True)
    ]
    combined = sum(f[:, None] * s for f, s in zip(factors, per_ck, strict=True))
    want_sums = torch.zeros(N_QUERY, N_GROUPS, dtype=torch.float64).index_add_(1, groups, combined)
    want_pos = sum(
        f[:, None] * torch.zeros(N_QUERY, N_GROUPS, dtype=torch.float64).index_add_(1, groups, s.clamp_min(0))
        for f, s in zip(factors, per_ck, strict=True)
    )
    torch.testing.assert_close(sums, want_sums, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(pos, want_pos, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(combine_score_matrices(per_ck, weights, normalise), combined, rtol=1e-12, atol=0)
    for q in range(N_QUERY):
        kept = [set(s[q].topk(K).indices.tolist()) for s in per_ck]
        merged = {
            i: sum(float(f[q] * s[q, i]) for f, s, keep in zip(factors, per_ck, kept, strict=True) if i in keep)
            for i in set.union(*kept)
        }
        best = sorted(merged.items(), key=lambda kv: -kv[1])[:K]
        assert [e[0] for e in topk[q]] == [f"ex{i}" for i, _ in best]
        assert [e[3] for e in topk[q]] == pytest.approx([v for _, v in best], rel=1e-12)
        assert [e[2] for e in topk[q]] == [f"p{int(groups[i])}" for i, _ in best]


def test_combination_refuses_ragged_inputs():
    z = torch.zeros(1, 2)
    with pytest.raises(ValueError, match="one entry per checkpoint"):
        combine_checkpoints([z, z], [z], [[[]], [[]]], [1, 1])


def explicit_lr_per_step(log: list[dict], last: int) -> list[float]:
    """η_t for t = 1..last: a logged rate covers the steps since the previous log."""
    out = []
    for t in range(1, last + 1):
        later = [e["learning_rate"] for e in log if e["step"] >= t]
        out.append(later[0] if later else log[-1]["learning_rate"])
    return out


def test_checkpoint_weights_sum_the_learning_rate_over_each_segment(tmp_path):
    log = [
        {"step": 10, "learning_rate": 1.0, "loss": 3.0},
        {"step": 20, "learning_rate": 0.5, "loss": 2.0},
        {"step": 20, "eval_loss": 2.1},  # entries without a rate are skipped
        {"step": 30, "learning_rate": 0.25, "loss": 1.5},
    ]
    ck = [15, 30, 34]
    lr = explicit_lr_per_step([e for e in log if "learning_rate" in e], 34)
    raw = [sum(lr[a:b]) for a, b in zip([0, 15, 30], ck, strict=True)]
    assert checkpoint_weights(log, ck, normalise=False) == pytest.approx(raw, rel=1e-12)
    assert checkpoint_weights(log, ck) == pytest.approx([r / sum(raw) for r in raw], rel=1e-12)
    path = tmp_path / "trainer_state.json"
    path.write_text(json.dumps({"log_history": log, "global_step": 34}))
    assert checkpoint_weights(path, ck) == pytest.approx(checkpoint_weights(log, ck), rel=1e-12)


def test_checkpoint_weights_errors_name_the_file(tmp_path):
    path = tmp_path / "trainer_state.json"
    path.write_text(json.dumps({"log_history": [{"step": 1, "loss": 1.0}]}))
    with pytest.raises(TrainerStateError, match=r"trainer_state\.json: no entry has a learning_rate"):
        checkpoint_weights(path, [1])
    with pytest.raises(ValueError, match="increasing"):
        checkpoint_weights([{"step": 1, "learning_rate": 1.0}], [5, 5])


def test_mean_abs_from_a_sample_is_exact_on_the_population_and_within_its_standard_error():
    gen = torch.Generator().manual_seed(3)
    population = torch.randn(4, 20_000, generator=gen, dtype=torch.float64) * torch.tensor([[1.0], [5.0], [0.1], [2.0]])
    exact = population.abs().mean(1)
    mean, rel = mean_abs_from_sample(population, 20_000)
    torch.testing.assert_close(mean, exact, rtol=1e-12, atol=0)
    assert (rel == 0).all()
    pick = torch.randperm(20_000, generator=gen)[:2_000]
    mean, rel = mean_abs_from_sample(population[:, pick], 20_000)
    sample = population[:, pick].abs()
    # The standard error explicitly: s/√m with the finite-population correction √(1 − m/N).
    want_rel = sample.std(1) / 2_000**0.5 * (1 - 2_000 / 20_000) ** 0.5 / sample.mean(1)
    torch.testing.assert_close(rel, want_rel, rtol=1e-12, atol=0)
    assert ((mean - exact).abs() / exact < 4 * rel).all()
    # An all-zero query has no scale: 1, like the exact normaliser.
    mean, rel = mean_abs_from_sample(torch.zeros(1, 10, dtype=torch.float64), 100)
    assert float(mean[0]) == 1.0 and float(rel[0]) == 0.0


def test_a_given_normaliser_replaces_the_one_from_the_sums():
    gen = torch.Generator().manual_seed(4)
    groups = torch.randint(0, N_GROUPS, (N_TRAIN,), generator=gen)
    scores = [torch.randn(N_QUERY, N_TRAIN, generator=gen, dtype=torch.float64) * (c + 1) for c in range(2)]
    passes = [checkpoint_pass(s, groups) for s in scores]
    given = [torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64), None]
    sums, _, _ = combine_checkpoints(
        [p[0] for p in passes], [p[1] for p in passes], [p[2] for p in passes], [N_TRAIN] * 2, [1.0, 0.5], True, given
    )
    want = torch.zeros(N_QUERY, N_GROUPS, dtype=torch.float64)
    for c, (s, w) in enumerate(zip(scores, [1.0, 0.5], strict=True)):
        norm = given[c] if given[c] is not None else s.abs().mean(1)
        want += torch.zeros_like(want).index_add_(1, groups, w * s / norm[:, None])
    torch.testing.assert_close(sums, want, rtol=1e-12, atol=1e-12)
