"""A small valuation run to post."""

from __future__ import annotations

from dataclasses import replace

from ledger import QueryResult, RunCheckpointRef, RunRecord, TopKEntry, ensure_providers, register_checkpoint

PROVIDERS = ["alpha", "beta", "gamma"]


def setup_ledger(engine, checkpoints=("ck1",)):
    ensure_providers(engine, PROVIDERS)
    for i, ck in enumerate(checkpoints):
        register_checkpoint(engine, ck, path=f"/models/{ck}", lineage="run-a", step=i)


def query(qid: str, value, scores: list[tuple[str, float]]) -> QueryResult:
    topk = [TopKEntry(f"{p}-doc{i}#0", f"{p}-doc{i}", p, s) for i, (p, s) in enumerate(scores)]
    sums: dict[str, float] = {}
    pos: dict[str, float] = {}
    for p, s in scores:
        sums[p] = sums.get(p, 0.0) + s
        pos[p] = pos.get(p, 0.0) + max(s, 0.0)
    return QueryResult(qid, value, topk, sums, pos)


def record(batch="b1", queries=None, checkpoints=(("ck1", 1.0),), policy="topk_share", day="2026-11-20", prefix=""):
    """Queries ``{prefix}q1..q3``: a query can be credited by one live run only."""
    queries = queries or [
        query(f"{prefix}q1", "1", [("alpha", 3.0), ("beta", 1.0), ("gamma", -2.0)]),
        query(f"{prefix}q2", "2.5", [("beta", 0.5), ("beta", 0.25), ("gamma", 0.25)]),
        query(f"{prefix}q3", "0.333333", [("gamma", -1.0)]),  # no positive score: fallback
    ]
    return RunRecord(
        batch_id=batch,
        checkpoints=[RunCheckpointRef(c, f"grad_{c}", 7, w) for c, w in checkpoints],
        config_hash="cfg",
        queries=queries,
        corpus_share={"alpha": 10, "beta": 20, "gamma": 30},
        policy=policy,
        config={"k": 64},
        artifact_hashes={"projections": "abc"},
        code_version="test",
        day=day,
    )


def with_evidence(rec, influence: dict[str, float] | None = None):
    """Fill every optional evidence field: texts, per-checkpoint scores, lexical rows, metrics.

    ``influence``: checkpoint → factor of its share in every score (default: equal shares).
    """
    cks = [c.checkpoint_id for c in rec.checkpoints]
    influence = influence or dict.fromkeys(cks, 1.0)
    total = sum(influence.values())
    queries = []
    for q in rec.queries:
        topk = [
            replace(
                e, excerpt=f"text of {e.doc_id} " * 3, per_checkpoint={c: e.score * influence[c] / total for c in cks}
            )
            for e in q.topk
        ]
        by_ck = {c: {p: s * influence[c] / total for p, s in q.provider_scores.items()} for c in cks}
        queries.append(
            replace(
                q,
                topk=topk,
                prompt=f"prompt of {q.query_id}",
                response=f"response of {q.query_id}",
                lineage="run-a",
                confidence=0.9,
                by_checkpoint=by_ck,
            )
        )
    lexical = {
        q.query_id: [TopKEntry(f"lex-{q.query_id}#0", f"lex-{q.query_id}", "gamma", 12.5, "lexical text")]
        for q in queries
    }
    return replace(
        rec, queries=queries, lexical=lexical, topk_method="exact", metrics={"lds": 0.42, "planted_recall": 0.8}
    )
