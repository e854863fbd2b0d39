"""Valuation whose cost does not grow with the corpus: provider sums from the aggregate vectors
built at finalize (O(providers × D) per checkpoint) and top-k from the table's vector index
(exact re-rank of the candidates; an exact scan when the table is small or has no index).

Used when the numbers need nothing else: ``positive_share`` needs every score (Σ max(s, 0)) and
``checkpoint_combine = "normalised"`` needs each query's mean |score| (from the same positive
sums); both keep the streamed scan of :func:`flows.valuate.score_checkpoint`, whose numbers the
fast path equals (tests/flows/test_fastpath.py).
"""

from __future__ import annotations

from flows.checkpoint.context import CheckpointContext

FAST_POLICIES = ("topk_share", "fallback_pro_rata")


def fast_path_allowed(settings) -> bool:
    return settings.policy in FAST_POLICIES and settings.checkpoint_combine == "sum"


def build_at_finalize(ctx: CheckpointContext, table, pre) -> dict:
    """Aggregates (provider and document sums, every mode; also the table's self-influence) and,
    above ``index_min_rows`` rows, the vector index. Returns what was built, for the manifest."""
    from storage.aggregates import build_aggregates
    from storage.vector_index import IndexArguments, build_index
    from valuation import MODES

    s = ctx.app.settings
    built: dict = {}
    index_args = IndexArguments(min_rows=s.index_min_rows)
    if table.count_rows() >= s.index_min_rows:
        # The raw index adds a table version: it comes before the aggregates, which record the version.
        built["index"] = build_index(table, index_args, modes=("if",), chunk_rows=s.chunk_rows)
    info = build_aggregates(table, pre, s.damping_ratio, MODES, ("provider", "document"), s.chunk_rows)
    built["aggregates"] = {"version": info.version, "table_version": info.table_version, "rows": info.rows}
    return built


def score_fast(ctx: CheckpointContext, q, q_pre, n_providers: int, tag: str, version: int):
    """``CheckpointScores`` from aggregates + index, or None when the aggregates do not fit (another
    damping or table version): the caller scans."""
    import torch

    from flows.scores import CheckpointScores
    from storage.aggregates import AggregateError, load_aggregates, tag_aggregates
    from storage.vector_index import IndexArguments, topk
    from valuation.aggregate import group_sums_from_aggregates

    s = ctx.app.settings
    table = ctx.table()
    try:
        agg = load_aggregates(table, s.damping_ratio, version, "provider", (s.mode,))
    except AggregateError:
        return None
    existing = agg_tags(table)
    if tag not in existing:
        tag_aggregates(table, tag, agg.info.version)
    query_self = (q_pre * q).sum(1).double() if s.mode == "cosine" else None
    sums = group_sums_from_aggregates(q_pre.double(), agg.by_code(s.mode, n_providers), s.mode, query_self)
    top = topk(
        table,
        q_pre,
        s.topk,
        s.mode,
        query_self,
        IndexArguments(min_rows=s.index_min_rows),
        version,
        chunk_rows=s.chunk_rows,
    )
    best = [
        [(e, d, p, float(sc)) for e, d, p, sc in zip(ids, docs, provs, top.scores[qi].tolist(), strict=False)]
        for qi, (ids, docs, provs) in enumerate(zip(top.example_ids, top.doc_ids, top.provider_ids, strict=True))
    ]
    return CheckpointScores(
        ctx.row.checkpoint_id,
        table.name,
        version,
        sums.cpu(),
        torch.full_like(sums.cpu(), float("nan")),  # Σ max(s, 0) needs every score: not on this path
        best,
        int(agg.rows.sum()),
        tag,
        f"aggregates+{top.method}",
    )


def agg_tags(table) -> dict:
    from storage.aggregates import aggregate_table_name

    try:
        return table.store.db.open_table(aggregate_table_name(table)).tags.list()
    except (ValueError, FileNotFoundError):
        return {}
