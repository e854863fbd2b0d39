"""The accuracy suites' lever harness (benchmarks/accuracy/levers.py): configs that share
gradients score exactly as if each had fitted and projected on its own."""

from __future__ import annotations

import torch
from torch import nn

from benchmarks.accuracy.levers import (
    LeverConfig,
    gradient_key,
    lever_gradients,
    lever_scores,
    panel_half_scores,
    scores_from_gradients,
)


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
    assert gradient_key(LeverConfig()) != gradient_key(LeverConfig(output="log_odds"))
    # A panel of query vectors for the mixed second moment: the scored queries' own by default.
    mixed = LeverConfig(k=2, mix_alpha=0.5)
    g = lever_gradients(model, train, query, loss_fn, mixed, "classifier", ("",))
    own = scores_from_gradients(g, mixed)
    assert torch.equal(scores_from_gradients(g, mixed, panel=g.query), own)
    other = scores_from_gradients(g, mixed, query=g.query[:2], panel=g.query[2:])
    assert other.shape == (2, 24) and not torch.allclose(other, own[:2])
    # Halves as each other's panel: even queries against the odd ones' second moment and back, so a
    # query's score never depends on its own vector being in the panel.
    halves = panel_half_scores(g, mixed)
    assert torch.equal(halves[0::2], scores_from_gradients(g, mixed, query=g.query[0::2], panel=g.query[1::2]))
    assert torch.equal(halves[1::2], scores_from_gradients(g, mixed, query=g.query[1::2], panel=g.query[0::2]))
    moved = type(g)(g.logra, g.train, g.fisher_rows, g.query.clone())
    moved.query[0] *= 3
    assert torch.equal(panel_half_scores(moved, mixed)[2], halves[2])  # query 0 is not in query 2's panel


def test_a_log_odds_config_scores_with_log_odds_gradients_and_refuses_other_losses():
    import pytest

    from valuation import ClassifierLogOddsLoss

    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(4, 3)).double()
    x, y = torch.randn(10, 4, dtype=torch.float64), torch.randint(0, 3, (10,))
    xq, yq = torch.randn(3, 4, dtype=torch.float64), torch.randint(0, 3, (3,))
    cfg = LeverConfig(k=2, output="log_odds")
    got = lever_gradients(model, [(x, y)], [(xq, yq)], None, cfg, "classifier", ("",))
    assert cfg.label().endswith("log-odds")
    torch.testing.assert_close(got.train, got.logra.gradients((x, y), loss_fn=ClassifierLogOddsLoss()))
    torch.testing.assert_close(got.query, got.logra.gradients((xq, yq), loss_fn=ClassifierLogOddsLoss()))
    for bad in (
        dict(output="margin"),
        dict(output="log_odds", temperature=2.0),
        dict(output="log_odds", fisher="sampled"),
    ):
        with pytest.raises(ValueError):
            LeverConfig(**bad)


def test_sub_trajectories_are_evenly_spaced_and_end_at_the_last_checkpoint():
    from benchmarks.accuracy.levers import sub_trajectories

    assert sub_trajectories(12, 3) == {3: [3, 7, 11], 6: [1, 3, 5, 7, 9, 11], 12: list(range(12))}
    assert sub_trajectories(3, 3) == {3: [0, 1, 2]}
    assert sub_trajectories(8, 2) == {2: [3, 7], 4: [1, 3, 5, 7], 8: list(range(8))}


def test_lm_ground_truth_is_shared_by_runs_that_save_more_checkpoints(tmp_path):
    """Saving more checkpoints leaves the final weights unchanged, so it must not re-key the
    retrained measurements (a denser trajectory is scored against the same ground truth)."""
    from dataclasses import replace

    from benchmarks.accuracy.lm import LMSuite, LMSuiteArguments

    args = LMSuiteArguments.smoke()
    denser = replace(args, recipe=replace(args.recipe, checkpoints=6, save_training_state=False))
    longer = replace(args, recipe=replace(args.recipe, epochs=4))
    key = LMSuite(args, tmp_path / "a").ground_truth_key()
    assert LMSuite(denser, tmp_path / "b").ground_truth_key() == key
    assert LMSuite(longer, tmp_path / "c").ground_truth_key() != key
