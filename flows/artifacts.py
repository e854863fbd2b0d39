"""Prefect artifacts a person opens in the UI: per valuation run the credit table, coverage and
settings with where to read the receipts; per checkpoint its coverage. Outside a flow run they are skipped."""

from __future__ import annotations

import json

from flows.app import App
from flows.checkpoint.context import CheckpointContext


def _in_run() -> bool:
    from prefect.context import FlowRunContext, TaskRunContext

    return FlowRunContext.get() is not None or TaskRunContext.get() is not None


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower())[:60].strip("-")


def publish_coverage(ctx: CheckpointContext) -> None:
    if not _in_run():
        return
    from prefect.artifacts import create_table_artifact

    manifest = ctx.manifest("preconditioner")
    cov = manifest.get("extra", {}).get("coverage", {})
    row = {"checkpoint_id": ctx.row.checkpoint_id[:16], "lineage": ctx.row.lineage, "step": ctx.row.step, **cov}
    create_table_artifact(
        [row], key=f"coverage-{_slug(ctx.row.checkpoint_id[:16])}", description="Examples logged vs the pinned corpus"
    )


def publish_run(app: App, result: dict) -> None:
    if not _in_run():
        return
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    from ledger import credits

    run_id = result["run_id"]
    rows = [{"provider_id": r["provider_id"], "credit": str(r["credit"])} for r in credits(app.ledger, run_id)]
    create_table_artifact(rows, key=f"credits-{_slug(run_id)}", description=f"Credit per provider, run {run_id}")
    s = app.settings
    md = [
        f"# Valuation run `{run_id}`",
        f"- lineage: `{result['lineage']}`; queries: {result['queries']}; checkpoints: {len(result['checkpoints'])}",
        f"- ledger entries: {result['entries']} ({'already posted' if result['already_posted'] else 'posted now'})",
        "",
        "## Settings",
        "```json",
        json.dumps(s.scoring_config(), indent=1, sort_keys=True, default=list),
        "```",
        "## Receipts",
        f"`dataworth attributions --query QUERY_ID`, or the SQL view `v_query_receipt` (`WHERE run_id = '{run_id}'`).",
    ]
    create_markdown_artifact("\n".join(md), key=f"run-{_slug(run_id)}", description="Run settings and receipts")
