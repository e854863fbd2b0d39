"""The analyst's side: ``dashboard`` (served on loopback) and ``report`` (one self-contained HTML file)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flows.cli.context import get_app
from flows.cli.output import say

DbUrlOpt = Annotated[
    str | None, typer.Option("--db-url", help="ledger database URL (default: DATAWORTH_DB_URL or the home's)")
]


def _ledger(db_url: str | None):
    if db_url:
        from ledger import open_ledger

        return open_ledger(db_url)
    return get_app().ledger


def dashboard(
    host: Annotated[str, typer.Option(help="address to listen on (loopback unless you mean to publish it)")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="TCP port")] = 8050,
    db_url: DbUrlOpt = None,
) -> None:
    """Serve the credit dashboard (providers, receipts, runs, statements) from the ledger's SQL views."""
    from flows.dashboard import DashboardArguments, serve

    engine = _ledger(db_url)
    say(f"dashboard on http://{host}:{port}/ (Ctrl-C stops it)")
    serve(engine, DashboardArguments(host=host, port=port))


def report(
    run: Annotated[str | None, typer.Option(help="one run's statement")] = None,
    provider: Annotated[str | None, typer.Option(help="one provider only")] = None,
    start: Annotated[str | None, typer.Option(help="first day, YYYY-MM-DD")] = None,
    end: Annotated[str | None, typer.Option(help="last day, YYYY-MM-DD")] = None,
    out: Annotated[Path, typer.Option(help="HTML file to write")] = Path("report.html"),
    db_url: DbUrlOpt = None,
) -> None:
    """Write a self-contained HTML statement of a run or a period, for one provider or all."""
    from flows.report import ReportArguments, write_report

    args = ReportArguments.parse(run_id=run, provider_id=provider, start=start, end=end)
    path = write_report(_ledger(db_url), out, args)
    say(f"report written to {path}")


def register(app: typer.Typer) -> None:
    for command in (dashboard, report):
        app.command()(command)
