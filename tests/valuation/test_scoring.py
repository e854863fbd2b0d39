"""Scoring modes, self-influence, the sign convention and the streaming reducer."""

from __future__ import annotations

import pytest
import torch

from tests.valuation.conftest import padded_batch, tiny_gpt2
from tests.valuation.reference import damped_inverses, explicit_influence
from valuation import (
    LoGra,
    LoGraConfig,
    ProjectedFisher,
    StreamingScorer,
    influence_scores,
    lm_loss,
    score_stream,
    self_influence,
)


@pytest.fixture(scope="module")
def vectors():
    model = tiny_gpt2()
    logra = LoGra(model, LoGraConfig(k_in=3, k_out=3, seed=2))
    G = torch.cat([logra.gradients(padded_batch([8, 7, 5, 3], seed=s)) for s in range(6)])
    Q = logra.gradients(padded_batch([8, 6, 4], seed=77))
    fisher = ProjectedFisher(logra.layout)
    fisher.update(G)
    return logra.layout, G, Q, fisher.preconditioner(0.1)


def test_relatif_and_cosine_equal_explicit_formulas(vectors):
    layout, G, Q, pre = vectors
    invs = damped_inverses(G, layout, 0.1)
    raw = explicit_influence(Q, G, layout, invs)
    self_tr = torch.diag(explicit_influence(G, G, layout, invs))
    self_te = torch.diag(explicit_influence(Q, Q, layout, invs))
    torch.testing.assert_close(self_influence(G, pre, chunk_size=5), self_tr, rtol=1e-9, atol=1e-12)
    qp = pre(Q)
    relatif = influence_scores(qp, G, "relatif", train_self=self_tr)
    torch.testing.assert_close(relatif, raw / self_tr.sqrt()[None], rtol=1e-9, atol=1e-12)
    cosine = influence_scores(qp, G, "cosine", train_self=self_tr, query_self=self_te)
    torch.testing.assert_close(cosine, raw / self_tr.sqrt()[None] / self_te.sqrt()[:, None], rtol=1e-9, atol=1e-12)
    assert cosine.abs().max() <= 1 + 1e-9  # Cauchy-Schwarz in the preconditioned metric


@pytest.mark.parametrize("mode", ["if", "relatif", "cosine"])
def test_streaming_topk_and_group_sums_equal_dense(vectors, mode):
    _, G, Q, pre = vectors
    qp = pre(Q)
    self_tr, self_te = self_influence(G, pre), self_influence(Q, pre)
    groups = torch.arange(G.shape[0]) % 4
    dense = influence_scores(qp, G, mode, self_tr, self_te)
    chunks = [(G[s : s + 5], groups[s : s + 5], self_tr[s : s + 5]) for s in range(0, G.shape[0], 5)]
    res = score_stream(qp, chunks, topk=7, num_groups=4, mode=mode, query_self=self_te)
    top, idx = dense.topk(7, dim=1)
    torch.testing.assert_close(res.topk_scores, top, rtol=1e-12, atol=0)
    assert torch.equal(res.topk_indices, idx)
    want_sums = torch.zeros(Q.shape[0], 4, dtype=torch.float64).index_add_(1, groups, dense)
    want_pos = torch.zeros(Q.shape[0], 4, dtype=torch.float64).index_add_(1, groups, dense.clamp_min(0))
    torch.testing.assert_close(res.group_sums, want_sums, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(res.group_positive_sums, want_pos, rtol=1e-12, atol=1e-15)
    assert res.rows_seen == G.shape[0]


def test_streaming_with_fewer_rows_than_k_pads(vectors):
    _, G, Q, pre = vectors
    scorer = StreamingScorer(pre(Q), topk=50)
    scorer.update(G[:3])
    res = scorer.result()
    assert res.topk_scores.shape == (Q.shape[0], 50)
    assert (res.topk_indices[:, 3:] == -1).all() and torch.isinf(res.topk_scores[:, 3:]).all()


def test_float32_streaming_matches_float64_dense(vectors):
    _, G, Q, pre = vectors
    qp = pre(Q)
    res = score_stream(qp.float(), [(G.float(), None, None)], topk=5)
    torch.testing.assert_close(
        res.topk_scores.double(), influence_scores(qp, G).topk(5, 1).values, rtol=1e-4, atol=1e-6
    )


def test_positive_score_means_the_example_helps():
    """One SGD step on a train example with a high score lowers the query loss; a negative one raises it."""
    model = tiny_gpt2()
    logra = LoGra(model, LoGraConfig(k_in=1000, k_out=1000, init="identity"))
    train = padded_batch([8, 8, 8, 8, 8, 8], seed=3)
    query = {k: v[:1] for k, v in train.items()}  # the query repeats train example 0
    G = logra.gradients(train)
    fisher = ProjectedFisher(logra.layout)
    fisher.update(G)
    scores = influence_scores(fisher.preconditioner(0.1)(logra.gradients(query)), G)[0]

    def query_loss_after_step(i: int) -> float:
        m = tiny_gpt2()
        one = {k: v[i : i + 1] for k, v in train.items()}
        lm_loss(m(input_ids=one["input_ids"]).logits, one["labels"]).backward()
        with torch.no_grad():
            for p in m.parameters():
                if p.grad is not None:
                    p -= 1e-3 * p.grad
            return lm_loss(m(input_ids=query["input_ids"]).logits, query["labels"]).item()

    base = lm_loss(model(input_ids=query["input_ids"]).logits, query["labels"]).item()
    best, worst = int(scores.argmax()), int(scores.argmin())
    assert best == 0 and scores[best] > 0
    assert query_loss_after_step(best) < base
    if scores[worst] < 0:
        assert query_loss_after_step(worst) > query_loss_after_step(best)


def test_unknown_mode_is_refused(vectors):
    _, G, Q, pre = vectors
    with pytest.raises(ValueError, match="mode"):
        StreamingScorer(pre(Q), mode="dot")
    with pytest.raises(ValueError, match="self-influence"):
        influence_scores(pre(Q), G, "relatif")
