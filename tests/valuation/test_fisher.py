"""Projected Fisher, damping and preconditioned influence against explicit damped inverses."""

from __future__ import annotations

import pytest
import torch

from tests.valuation.conftest import padded_batch
from tests.valuation.reference import damped_inverses, explicit_influence, per_example_weight_grads
from valuation import LoGra, LoGraConfig, ProjectedFisher, influence_scores


@pytest.fixture
def train_and_queries(model):
    logra = LoGra(model, LoGraConfig(k_in=3, k_out=2, seed=1))
    train = torch.cat([logra.gradients(padded_batch([8, 6, 4, 7], seed=s)) for s in range(4)])
    queries = logra.gradients(padded_batch([8, 5], seed=99))
    return logra, train, queries


def test_fisher_and_damped_influence_equal_explicit_inverse(train_and_queries):
    logra, G, Q = train_and_queries
    # Small blocks, tiles and folds on purpose: the block-triangle and fold paths all run.
    fisher = ProjectedFisher(logra.layout, block_rows=5, fold_rows=7, tile=2)
    for start in range(0, G.shape[0], 3):
        fisher.update(G[start : start + 3])
    assert fisher.count == G.shape[0]
    for ratio in (0.01, 0.1, 1.0):
        pre = fisher.preconditioner(damping_ratio=ratio)
        invs = damped_inverses(G, logra.layout, ratio)
        want = explicit_influence(Q, G, logra.layout, invs)
        got = influence_scores(pre(Q), G)
        torch.testing.assert_close(got, want, rtol=1e-8, atol=1e-12)
    # H_l itself and λ_l = ratio × mean eigenvalue.
    name, k_out, k_in = logra.layout[0]
    block = G[:, : k_out * k_in]
    torch.testing.assert_close(fisher.matrix(name), block.T @ block / G.shape[0], rtol=1e-12, atol=1e-15)
    pre = fisher.preconditioner(damping_ratio=0.1)
    assert pre.damping[name] == pytest.approx(0.1 * torch.linalg.eigvalsh(fisher.matrix(name)).mean().item())


def test_merged_shard_fishers_equal_one_pass(train_and_queries):
    logra, G, _ = train_and_queries
    whole = ProjectedFisher(logra.layout)
    whole.update(G)
    a, b = ProjectedFisher(logra.layout, tile=4), ProjectedFisher(logra.layout, tile=3, block_rows=2)
    a.update(G[:5])
    b.update(G[5:9])
    b.update(G[9:])
    merged = a.merge(b)
    assert merged.count == whole.count
    for name, _, _ in logra.layout:
        torch.testing.assert_close(merged.sum(name), whole.sum(name), rtol=1e-12, atol=1e-15)
    # And via the serialised form (what shards on other machines send).
    restored = ProjectedFisher.from_state_dict(logra.layout, a.state_dict())
    for name, _, _ in logra.layout:
        torch.testing.assert_close(restored.sum(name), a.sum(name), rtol=0, atol=0)


def test_identity_projection_reproduces_exact_influence_with_damped_empirical_fisher(model):
    """k = full dims: LoGra equals exact (block-diagonal) influence on raw per-example gradients."""
    train = [padded_batch([8, 6, 4], seed=s) for s in range(3)]
    query = padded_batch([7, 5], seed=42)
    names = LoGra(model, LoGraConfig(init="identity")).layout
    raw = [g for b in train for g in per_example_weight_grads(model, b)]
    G = torch.stack([torch.cat([g[n].reshape(-1) for n, _, _ in names]) for g in raw])
    Q = torch.stack(
        [torch.cat([g[n].reshape(-1) for n, _, _ in names]) for g in per_example_weight_grads(model, query)]
    )
    want = explicit_influence(Q, G, names, damped_inverses(G, names, 0.1))
    for init in ("identity", "pca"):  # PCA with k ≥ n is an orthogonal change of basis
        logra = LoGra(model, LoGraConfig(k_in=1000, k_out=1000, init=init))
        if init == "pca":
            logra.fit(train)
        g = torch.cat([logra.gradients(b) for b in train])
        fisher = ProjectedFisher(logra.layout)
        fisher.update(g)
        got = influence_scores(fisher.preconditioner(0.1)(logra.gradients(query)), g)
        torch.testing.assert_close(got, want, rtol=1e-7, atol=1e-10)


def test_preconditioner_round_trips_through_state_dict(train_and_queries):
    logra, G, Q = train_and_queries
    fisher = ProjectedFisher(logra.layout)
    fisher.update(G)
    pre = fisher.preconditioner(0.1)
    from valuation import Preconditioner

    again = Preconditioner.from_state_dict(logra.layout, pre.state_dict())
    torch.testing.assert_close(again(Q), pre(Q), rtol=0, atol=0)


def test_bad_shapes_are_refused(train_and_queries):
    logra, G, _ = train_and_queries
    fisher = ProjectedFisher(logra.layout)
    with pytest.raises(ValueError, match="shape"):
        fisher.update(G[:, :-1])
    with pytest.raises(ValueError, match="no examples"):
        fisher.preconditioner()
    other = ProjectedFisher([("x", 1, 1)])
    with pytest.raises(ValueError, match="layout"):
        fisher.merge(other)


def test_with_damping_ratio_equals_a_fresh_preconditioner(train_and_queries):
    logra, G, Q = train_and_queries
    fisher = ProjectedFisher(logra.layout)
    fisher.update(G)
    again = fisher.preconditioner(0.1).with_damping_ratio(1.0)
    torch.testing.assert_close(again(Q), fisher.preconditioner(1.0)(Q), rtol=1e-10, atol=1e-14)


def test_whitening_powers_equal_explicit_matrix_powers(train_and_queries):
    logra, G, Q = train_and_queries
    fisher = ProjectedFisher(logra.layout)
    fisher.update(G)
    pre = fisher.preconditioner(0.1)
    white, half = pre.power(G, -0.5), pre.power(Q, 0.5)
    for name, sl in pre.slices:
        # The damped block explicitly, and its square roots by eigh of the explicit matrix.
        block = G[:, sl].double().T @ G[:, sl].double() / G.shape[0]
        vals, vecs = torch.linalg.eigh(block + pre.damping[name] * torch.eye(block.shape[0], dtype=torch.float64))
        inv_sqrt = vecs @ torch.diag(vals**-0.5) @ vecs.T
        sqrt = vecs @ torch.diag(vals**0.5) @ vecs.T
        torch.testing.assert_close(white[:, sl], G[:, sl].double() @ inv_sqrt, rtol=1e-8, atol=1e-10)
        torch.testing.assert_close(half[:, sl], Q[:, sl].double() @ sqrt, rtol=1e-8, atol=1e-10)
    # Whitened vectors against the half power of the preconditioned queries give the influence.
    torch.testing.assert_close(
        pre.power(pre(Q.double()), 0.5) @ white.T, pre(Q.double()) @ G.double().T, rtol=1e-9, atol=1e-9
    )
