"""``init``, ``ingest`` and the query queue (``query add|list|drop``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flows.cli.context import get_app, require_home, settings
from flows.cli.output import print_rows, say

FormatOpt = Annotated[str, typer.Option("--format", help="table, csv or json")]
query_app = typer.Typer(help="Queue and inspect the queries to value.", no_args_is_help=True, rich_markup_mode=None)


def init() -> None:
    """Create $DATAWORTH_HOME with the ledger, the stores and a dataworth.toml to edit."""
    from flows.config import settings_toml

    s = settings()
    s.home.mkdir(parents=True, exist_ok=True)
    toml = s.home / "dataworth.toml"
    if not toml.exists():
        toml.write_text(settings_toml(s))
    app = get_app(need_home=False)
    app.ledger, app.corpus, app.queries  # noqa: B018 - opening creates the tables
    say(f"dataworth home: {s.home.resolve()} (ledger, LanceDB stores, {toml.name})")


def ingest(file: Path) -> None:
    """Ingest a corpus file (Parquet / JSONL / CSV with doc_id, provider_id, text): a new corpus version."""
    require_home()
    from flows.cli.live import live_progress
    from flows.ingest import ingest as ingest_file
    from flows.progress import reporter_for_run

    app = get_app()
    with live_progress():
        report = ingest_file(app, file, reporter_for_run())
    say(
        f"{file}: {report.rows} rows, {report.documents_added} new documents, {report.already_stored} already "
        f"stored, {report.duplicates_collapsed} duplicates collapsed; corpus version {report.version}; "
        f"new providers: {', '.join(report.new_providers) or 'none'}"
    )


@query_app.command("add")
def query_add(
    file: Path,
    lineage: Annotated[
        str | None, typer.Option(help="lineage of the model that answered (else the file's column)")
    ] = None,
) -> None:
    """Queue queries (JSONL / Parquet: query_id, prompt, response, optional value and lineage)."""
    require_home()
    app = get_app()
    known = sorted({c.lineage for c in app.checkpoints()})
    report = app.queries.add_file(file, lineage, known)
    say(
        f"{file}: {report.added} queries queued, {report.already_stored} already stored, "
        f"{report.duplicates_collapsed} duplicates collapsed"
    )


@query_app.command("list")
def query_list(
    status: Annotated[str | None, typer.Option(help="pending, valued, set_aside or dropped")] = None,
    fmt: FormatOpt = "table",
) -> None:
    """Queued queries with their status, run and, for those waiting, why."""
    require_home()
    from flows.valuate import finalized, why_waiting

    app = get_app()
    rows = app.queries.with_status(status).to_pylist()
    waiting: dict[str, str | None] = {}
    for r in rows:
        if r["status"] == "pending" and r["reason"] is None:
            lineage = r["lineage"]
            if lineage not in waiting:
                waiting[lineage] = None if finalized(app, lineage) else why_waiting(app, lineage)
            r["reason"] = waiting[lineage]
    columns = ["query_id", "lineage", "value", "status", "run_id", "reason"]
    print_rows(sorted(rows, key=lambda r: r["query_id"]), columns, fmt, "Queries")


@query_app.command("drop")
def query_drop(query_id: str) -> None:
    """Never value this query (pending or set aside)."""
    require_home()
    get_app().queries.drop(query_id)
    say(f"query {query_id} dropped")


def register(app: typer.Typer) -> None:
    app.command()(init)
    app.command()(ingest)
    app.add_typer(query_app, name="query")
