"""score_table: one read of a table serves several query batches, each as if scored alone."""

from __future__ import annotations

import pytest
import torch

from storage.aggregates import build_aggregates
from storage.scan import QueryBatch, score_table
from tests.storage.conftest import PROVIDERS, streamed_group_sums
from valuation import StreamingScorer


def test_batches_of_several_modes_in_one_read_equal_separate_scans(grad_table):
    table, pre, ids, docs, _, G, Q = grad_table
    build_aggregates(table, pre, 0.1)  # writes the self-influence the normalised modes read
    gen = torch.Generator().manual_seed(9)
    q1 = pre(torch.randn(3, G.shape[1], generator=gen, dtype=torch.float64))
    q2, q3 = pre(Q), pre(Q[:2])
    batches = [
        QueryBatch(q1, "if", 4, PROVIDERS),
        QueryBatch(q2, "cosine", 3, PROVIDERS, (q2 * Q).sum(1)),
        QueryBatch(q3, "if", 4, 2),
        QueryBatch(q2, "relatif", 5, PROVIDERS),
    ]
    reads = []
    original = table.read
    table.read = lambda **kw: reads.append(kw) or original(**kw)
    scan = score_table(table, batches, chunk_rows=8)
    assert len(reads) == 1 and scan.rows_seen == 73
    for batch, got in zip(batches, scan.results, strict=True):
        want = streamed_group_sums(table, batch.queries_pre, batch.mode, batch.query_self)[:, : batch.num_groups]
        torch.testing.assert_close(got.group_sums, want, rtol=1e-12, atol=1e-12)
        assert got.topk_scores.shape == (batch.queries_pre.shape[0], batch.topk)
        alone = StreamingScorer(batch.queries_pre, batch.topk, 0, batch.mode, batch.query_self)
        for chunk in original(chunk_rows=8):
            ts = None
            if batch.mode != "if":
                stored = table.self_influence(0) | table.self_influence(1)
                ts = torch.tensor([stored[e] for e in chunk.example_ids], dtype=torch.float64)
            alone.update(chunk.vectors, None, ts)
        torch.testing.assert_close(got.topk_scores, alone.result().topk_scores, rtol=1e-12, atol=1e-12)
        assert torch.equal(got.topk_indices, alone.result().topk_indices)
    # Row lookup: the best row of the first query is the dense argmax.
    best = scan.rows([int(scan.results[0].topk_indices[0, 0])])[0]
    dense = q1[0] @ G.T
    assert best[0] == ids[int(dense.argmax())] and best[1] == docs[int(dense.argmax())]


def test_cosine_batch_needs_query_self():
    with pytest.raises(ValueError, match="query_self"):
        QueryBatch(torch.zeros(1, 3), "cosine")
