"""The two pipelines as plain calls: what the CLI runs in its own process when no Prefect server is
configured (no embedded server to start: the command's work begins at once), and what the Prefect
flows in :mod:`flows.flows` run as tracked tasks when one is. Same stages, same order."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from flows.app import App
from flows.checkpoint import finalize as finalize_stage
from flows.checkpoint import fit as fit_stage
from flows.checkpoint import log as log_stage
from flows.checkpoint.context import CheckpointContext
from flows.progress import NULL, Reporter


def orchestrated() -> bool:
    """Run through Prefect: a server is configured (``PREFECT_API_URL``) or asked for (``DATAWORTH_PREFECT=1``)."""
    return bool(os.environ.get("PREFECT_API_URL")) or os.environ.get("DATAWORTH_PREFECT") == "1"


def build_checkpoint(ctx: CheckpointContext, reporter: Reporter = NULL) -> int:
    """fit → every pending shard → finalize; resumable. Returns the rows logged now."""
    if not ctx.exists("projections"):
        fit_stage.fit(ctx, reporter.task("fit (KFAC covariances)", unit="batches"))
    rows = sum(log_stage.log_shard(ctx, shard, reporter) for shard in log_stage.pending_shards(ctx))
    if not ctx.finalized:
        finalize_stage.finalize(ctx, reporter)
    return rows


@dataclass
class CycleResult:
    runs: list[dict] = field(default_factory=list)
    reconciled: int = 0
    waiting: dict[str, str] = field(default_factory=dict)  # lineage → why its queries stay pending


def valuation_cycle(
    app: App,
    checkpoints: str | list[str] = "all",
    weights: dict | None = None,
    lineage: str | None = None,
    reporter: Reporter = NULL,
) -> CycleResult:
    """Every lineage with pending queries (or one): value, then post. Lineages without a finalized
    checkpoint wait; they never block the others."""
    from flows.credit import post_credits, reconcile
    from flows.valuate import checkpoint_set, finalized, load_query_panel, value_lineage, why_waiting

    if app.pending_query_count() == 0:  # nothing to value, nor to reconcile (it reads pending queries)
        return CycleResult()
    load_query_panel(app)  # a bad panel file is refused before any work, naming its file, row and field
    out = CycleResult(reconciled=reconcile(app))
    for name in [lineage] if lineage else app.queries.pending_lineages():
        if not finalized(app, name):
            out.waiting[name] = why_waiting(app, name)
            continue
        queries = app.queries.pending(name).to_pylist()
        if not queries:
            continue
        val = value_lineage(app, name, checkpoint_set(app, name, checkpoints), queries, reporter, weights)
        report = post_credits(app, val, weights)
        if report is not None:
            out.runs.append(
                {
                    "run_id": report.run_id,
                    "lineage": name,
                    "entries": report.entries_written,
                    "already_posted": report.already_posted,
                    "queries": len(val.query_ids),
                    "checkpoints": [c.checkpoint_id for c in val.per_checkpoint],
                }
            )
    return out
