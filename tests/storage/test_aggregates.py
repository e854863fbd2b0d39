"""Aggregate sum vectors: equal to the streamed group sums, refused for another version or damping."""

from __future__ import annotations

import pytest
import torch

from storage import GradientStore
from storage.aggregates import (
    AggregateError,
    aggregate_info,
    build_aggregates,
    load_aggregates,
    tag_aggregates,
)
from tests.storage.conftest import PROVIDERS, streamed_group_sums, write_rows
from valuation import StreamingScorer, influence_scores
from valuation.aggregate import group_sums_from_aggregates, positive_sum_bounds


@pytest.mark.parametrize("mode", ["if", "relatif", "cosine"])
def test_provider_sums_equal_streamed_group_sums(grad_table, mode):
    table, pre, *_, Q = grad_table
    info = build_aggregates(table, pre, 0.1, chunk_rows=9)
    assert info.rows == 73 and info.table_version == table.version
    q_pre = pre(Q)
    query_self = (q_pre * Q).sum(1)
    agg = load_aggregates(table, 0.1, table.version)
    got = group_sums_from_aggregates(q_pre, agg.by_code(mode, PROVIDERS), mode, query_self)
    want = streamed_group_sums(table, q_pre, mode, query_self if mode == "cosine" else None)
    scale = want.abs().max()
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9 * float(scale))
    assert torch.all(got[:, PROVIDERS - 1] == 0)  # a provider without rows sums to zero
    assert agg.rows.sum() == 73 and agg.keys == [f"p{c}" for c in agg.codes.tolist()]


def test_document_sums_equal_brute_force(grad_table):
    table, pre, _, docs, _, G, Q = grad_table
    build_aggregates(table, pre, 0.1, levels=("provider", "document"), chunk_rows=5)
    agg = load_aggregates(table, 0.1, table.version, level="document")
    q_pre = pre(Q)
    train_self = (pre(G) * G).sum(1)
    query_self = (q_pre * Q).sum(1)
    # Rows come back in stream order, not write order: map by example id.
    for mode in ("if", "relatif", "cosine"):
        dense = influence_scores(q_pre, G, mode, train_self, query_self)  # (4, 73)
        want = torch.zeros(4, len(agg.keys), dtype=torch.float64)
        index = {d: j for j, d in enumerate(agg.keys)}
        for i, d in enumerate(docs):
            want[:, index[d]] += dense[:, i]
        got = group_sums_from_aggregates(q_pre, agg.vectors[mode], mode, query_self)
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9 * float(want.abs().max()))
    assert sorted(agg.keys) == sorted(set(docs)) and int(agg.rows.sum()) == 73


def test_self_influence_written_in_float64(grad_table):
    table, pre, ids, _, _, G, _ = grad_table
    build_aggregates(table, pre, 0.1)
    stored = table.self_influence(0) | table.self_influence(1)
    want = (pre(G) * G).sum(1)
    got = torch.tensor([stored[e] for e in ids], dtype=torch.float64)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=0.0)


def test_refused_for_another_damping_or_table_version_and_pinned_by_tag(grad_table):
    table, pre, *_ = grad_table
    info = build_aggregates(table, pre, 0.1, modes=("if",))
    with pytest.raises(AggregateError, match=r"damping_ratio 0\.1, not 0\.01"):
        load_aggregates(table, 0.01, table.version)
    with pytest.raises(AggregateError, match=r"holds? modes"):
        load_aggregates(table, 0.1, table.version, modes=("relatif",))
    tag_aggregates(table, "run-1")
    old_version = table.version
    write_rows(table, 2, 5, 100, 3)
    with pytest.raises(AggregateError, match=rf"table version {old_version}, not the version {table.version}"):
        load_aggregates(table, 0.1, table.version)
    build_aggregates(table, pre.with_damping_ratio(0.3), 0.3, modes=("if",))
    assert aggregate_info(table).rows == 78
    pinned = load_aggregates(table, 0.1, old_version, version="run-1")
    assert pinned.info.version == info.version and pinned.info.rows == 73 and pinned.info.damping_ratio == 0.1


def test_missing_aggregates_are_a_clear_error(tmp_path):
    table = GradientStore(tmp_path / "g").table("ckpt" * 8, "cfg", [("a", 2, 3)], "float32")
    with pytest.raises(AggregateError, match="no aggregates"):
        load_aggregates(table, 0.1, table.version)


@pytest.mark.parametrize("mode", ["if", "relatif", "cosine"])
def test_positive_sum_bounds_hold(grad_table, mode):
    table, pre, *_, Q = grad_table
    build_aggregates(table, pre, 0.1)
    agg = load_aggregates(table, 0.1, table.version)
    q_pre = pre(Q)
    query_self = (q_pre * Q).sum(1)
    scorer_self = query_self if mode == "cosine" else None
    scorer = StreamingScorer(q_pre, 1, PROVIDERS, mode, scorer_self)
    for chunk in table.read():
        stored = table.self_influence(0) | table.self_influence(1)
        scorer.update(chunk.vectors, chunk.provider_codes, torch.tensor([stored[e] for e in chunk.example_ids]))
    positive = scorer.result().group_positive_sums
    sums = group_sums_from_aggregates(q_pre, agg.by_code(mode, PROVIDERS), mode, query_self)
    lower, upper = positive_sum_bounds(
        sums,
        mode,
        agg.by_code_column(agg.rows, PROVIDERS),
        agg.by_code_column(agg.norm_sums, PROVIDERS),
        query_self,
    )
    assert torch.all(lower <= positive + 1e-9) and torch.all(positive <= upper + 1e-9)
    assert torch.all(upper[:, PROVIDERS - 1] == 0)


def test_one_row_documents_are_read_from_the_table_not_stored_again(grad_table):
    from collections import Counter

    from storage.aggregates import aggregate_table_name

    table, pre, _, docs, _, _, _ = grad_table
    singles = {d for d, n in Counter(docs).items() if n == 1}
    assert singles and len(singles) < len(set(docs))  # the fixture has both kinds
    info = build_aggregates(table, pre, 0.1, levels=("provider", "document"), chunk_rows=5)
    assert info.single_row_documents_in_table
    ds = table.store.db.open_table(aggregate_table_name(table)).to_lance().checkout_version(info.version)
    stored = set(ds.to_table(filter="level = 'document'").column("key").to_pylist())
    assert stored == set(docs) - singles
    agg = load_aggregates(table, 0.1, table.version, level="document", modes=("relatif",))
    assert sorted(agg.keys) == sorted(set(docs))  # every document comes back, exact (test above)
