"""Valuation whose cost does not grow with the corpus: provider sums from the aggregate vectors
built at finalize (O(providers × D) per checkpoint) and top-k from the table's vector index
(exact re-rank of the candidates; an exact scan when the table is small or has no index).

Used when the numbers need nothing else: ``positive_share`` needs every score (Σ max(s, 0)) and
keeps the streamed scan of :func:`flows.valuate.score_checkpoint`, whose numbers the fast path
equals (tests/flows/test_fastpath.py). ``checkpoint_combine = "normalised"`` needs each query's
mean |score| over the table: on an indexed table it is estimated from a fixed uniform sample of
``NORMALISER_SAMPLE`` rows (its relative standard error is recorded with the run); on a table the
index does not serve, the scan computes it exactly.
"""

from __future__ import annotations

from flows.checkpoint.context import CheckpointContext

FAST_POLICIES = ("topk_share", "fallback_pro_rata")
# Rows whose scores estimate a query's mean |score| (relative s.e. ≈ CV(|s|)/√8192: about 1% for the
# synthetic 10^6 table, benchmarks/RESULTS.md); the sample is the same for every run of a version.
NORMALISER_SAMPLE = 8192


def fast_path_allowed(settings) -> bool:
    return settings.policy in FAST_POLICIES


def build_at_finalize(ctx: CheckpointContext, table, pre) -> dict:
    """Aggregates (provider and document sums, every mode; also the table's self-influence) and,
    above ``index_min_rows`` rows, the vector index. Returns what was built, for the manifest."""
    from storage.aggregates import build_aggregates
    from storage.vector_index import IndexArguments, build_index
    from valuation import MODES

    s = ctx.app.settings
    built: dict = {}
    index_args = IndexArguments(min_rows=s.index_min_rows)
    indexed = table.count_rows() >= s.index_min_rows
    # The aggregates pass writes the self-influence the unit index reads. Only the configured
    # mode's family is indexed (each family is one more, whitened, copy of the vectors).
    info = build_aggregates(table, pre, s.damping_ratio, MODES, ("provider", "document"), s.chunk_rows)
    if indexed:
        built["index"] = build_index(table, pre, index_args, modes=(s.mode,), chunk_rows=s.chunk_rows)
    built["aggregates"] = {"version": info.version, "table_version": info.table_version, "rows": info.rows}
    return built


def score_fast(ctx: CheckpointContext, q, q_pre, pre, n_providers: int, tag: str, version: int):
    """``CheckpointScores`` from aggregates + index, or None when the caller must scan: the
    aggregates do not fit (another damping or table version), or the normalised combination is
    asked of a table whose top-k the index does not serve (the scan then gives every number exactly)."""
    import torch

    from flows.scores import CheckpointScores
    from storage.aggregates import AggregateError, load_aggregates, tag_aggregates
    from storage.vector_index import IndexArguments, topk, usable_index
    from valuation.aggregate import group_sums_from_aggregates

    s = ctx.app.settings
    table = ctx.table()
    index_args = IndexArguments(min_rows=s.index_min_rows, max_candidate_fraction=s.index_batch_fraction)
    normalised = s.checkpoint_combine == "normalised"
    if normalised and usable_index(table, s.mode, version, index_args, q_pre.shape[0], s.topk) is None:
        return None
    try:
        agg = load_aggregates(table, s.damping_ratio, version, "provider", (s.mode,))
    except AggregateError:
        return None
    existing = agg_tags(table)
    if tag not in existing:
        tag_aggregates(table, tag, agg.info.version)
    query_self = (q_pre * q).sum(1).double() if s.mode == "cosine" else None
    mean_abs, normaliser = None, "exact"
    if normalised:
        estimate = sampled_mean_abs(table, version, q_pre, pre, s.mode, query_self)
        if estimate is None:
            return None
        mean_abs, normaliser = estimate
    sums = group_sums_from_aggregates(q_pre.double(), agg.by_code(s.mode, n_providers), s.mode, query_self)
    top = topk(table, q_pre, s.topk, s.mode, query_self, index_args, version, chunk_rows=s.chunk_rows, pre=pre)
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
        mean_abs,
        normaliser,
    )


def sampled_mean_abs(table, version: int, q_pre, pre, mode: str, query_self) -> tuple[list[float], str] | None:
    """Per query mean |score| over ``NORMALISER_SAMPLE`` rows of the table (all of them when it is
    no larger) and a description with the largest relative standard error; None while a shard is open."""
    from valuation.combine import mean_abs_from_sample
    from valuation.scoring import influence_scores, self_influence

    drawn = table.sample(NORMALISER_SAMPLE, version, seed=version)
    if drawn is None:
        return None
    chunk, population = drawn
    g = chunk.vectors.double()
    train_self = self_influence(g, pre) if mode != "if" else None
    scores = influence_scores(q_pre.double(), g, mode, train_self, query_self)
    mean, rel = mean_abs_from_sample(scores, population)
    if len(chunk) >= population:
        return mean.tolist(), "exact"
    worst = float(rel.max()) if rel.numel() else 0.0
    return mean.tolist(), f"sample({len(chunk)} of {population} rows, max rel s.e. {worst:.4f})"


def agg_tags(table) -> dict:
    from storage.aggregates import aggregate_table_name

    try:
        return table.store.db.open_table(aggregate_table_name(table)).tags.list()
    except (ValueError, FileNotFoundError):
        return {}
