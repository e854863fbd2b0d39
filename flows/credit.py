"""Credit: a valuation → ledger entries (one transaction, idempotent, one credit per query), then
the queries are marked valued. A crash anywhere in between double-credits nothing: the ledger
refuses a second credit of a query, and the next run first marks what the ledger already credited."""

from __future__ import annotations

from flows.app import App
from flows.scores import Valuation
from flows.valuate import digest


def reconcile(app: App) -> int:
    """Pending queries that the ledger already credited (a crash after posting) → valued; returns how many."""
    from ledger import credited_queries

    pending = app.queries.pending().column("query_id").to_pylist()
    done = credited_queries(app.ledger, pending)
    for run_id, ids in _by_run(done).items():
        app.queries.mark_valued(ids, run_id)
    return sum(len(ids) for ids in _by_run(done).values())


def _by_run(credited: dict[str, str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for qid, run in credited.items():
        out.setdefault(run, []).append(qid)
    return out


def post_credits(app: App, val: Valuation, weights: dict | None = None):
    """Policy → ledger (one transaction, idempotent), then mark the queries valued.

    A query the policy refuses (NaN scores...) is set aside with the reason and the others are
    posted; a query the ledger already credited is marked valued with that run.
    """
    from ledger import PolicyInputError, RunCheckpointRef, RunRecord, credited_queries, post_run

    s = app.settings
    weights = weights or {}
    checkpoints = [app.checkpoint(cs.checkpoint_id) for cs in val.per_checkpoint]
    already = credited_queries(app.ledger, val.query_ids)
    results = [
        r for r in val.combined(weights, normalise=s.checkpoint_combine == "normalised") if r.query_id not in already
    ]
    report = None
    while results:
        record = RunRecord(
            batch_id=f"{val.lineage}-batch-" + digest(sorted(r.query_id for r in results)),
            checkpoints=[
                RunCheckpointRef(cs.checkpoint_id, cs.table, cs.version, weights.get(cs.checkpoint_id, 1.0))
                for cs in val.per_checkpoint
            ],
            config_hash=digest([repr(sorted(val.scoring.items()))]),
            queries=results,
            corpus_share=val.corpus_share,
            policy=s.policy,
            config=val.scoring
            | {
                "lineage": val.lineage,
                "weights": weights,
                "topk_method": sorted({cs.topk_method for cs in val.per_checkpoint}),
                "table_tags": {cs.checkpoint_id: cs.tag for cs in val.per_checkpoint},
            },
            artifact_hashes={
                f"{c.checkpoint_id[:16]}/{name}": app.artifacts.digest(c.checkpoint_id, _key(app, c), name)
                for c in checkpoints
                for name in ("projections", "preconditioner")
            },
            code_version=app.code_version,
        )
        try:
            report = post_run(app.ledger, record)
            break
        except PolicyInputError as exc:
            bad = set(getattr(exc, "query_ids", ()) or ())
            if not bad:
                raise
            app.queries.set_aside(sorted(bad), str(exc))
            results = [r for r in results if r.query_id not in bad]
    for run_id, ids in _by_run(already).items():
        app.queries.mark_valued(ids, run_id)
    if report is not None:
        app.queries.mark_valued([r.query_id for r in results], report.run_id)
    return report


def _key(app: App, row) -> str:
    from flows.checkpoint.context import CheckpointContext

    return CheckpointContext(app, row.checkpoint_id).key
