"""Reading and correcting the ledger: ``credits``, ``attributions``, ``statement``, ``runs``,
``reverse``, ``provider withdraw|set``, ``ledger verify``."""

from __future__ import annotations

from typing import Annotated

import typer

from flows.cli.context import get_app, require_home
from flows.cli.output import print_rows, say

FormatOpt = Annotated[str, typer.Option("--format", help="table, csv or json")]
provider_app = typer.Typer(
    help="Provider records: withdrawal, display name.", no_args_is_help=True, rich_markup_mode=None
)
ledger_app = typer.Typer(help="Ledger integrity.", no_args_is_help=True, rich_markup_mode=None)


def credits(fmt: FormatOpt = "table", run: Annotated[str | None, typer.Option(help="one run only")] = None) -> None:
    """Credit per provider (all runs, or one)."""
    require_home()
    from ledger import credits as read_credits

    print_rows(read_credits(get_app().ledger, run), ["provider_id", "credit"], fmt, "Provider credit")


def attributions(
    query: Annotated[str | None, typer.Option(help="one query id")] = None, fmt: FormatOpt = "table"
) -> None:
    """Top training examples per query (latest run of each query)."""
    require_home()
    from ledger import attributions as read_attributions

    rows = read_attributions(get_app().ledger, query)
    print_rows(rows, ["query_id", "rank", "doc_id", "provider_id", "score"], fmt, "Attributions")


def statement(
    provider: str,
    start: Annotated[str | None, typer.Option(help="first day, YYYY-MM-DD")] = None,
    end: Annotated[str | None, typer.Option(help="last day, YYYY-MM-DD")] = None,
    fmt: FormatOpt = "table",
) -> None:
    """A provider's statement: entries, totals, the queries and documents behind them."""
    require_home()
    import sys

    from flows.cli.output import console
    from flows.errors import NotReadyError
    from ledger import statement as make_statement

    st = make_statement(get_app().ledger, provider, start, end)
    if not st.lines:
        raise NotReadyError(f"no ledger entry for provider {provider!r} in that period")
    if fmt == "json":
        print(st.to_json())
    elif fmt == "csv":
        sys.stdout.write(st.to_csv())
    else:
        console().print(st.to_rich())


def runs(fmt: FormatOpt = "table") -> None:
    """Valuation runs (the v_run_summary view)."""
    require_home()
    from ledger import runs as read_runs

    columns = ["run_id", "checkpoints", "queries", "providers_credited", "total_credit", "status"]
    print_rows(read_runs(get_app().ledger), columns, fmt, "Runs")


def reverse(run_id: str) -> None:
    """Reverse a run: new entries that net its credits to zero (nothing is deleted); its queries may be valued again."""
    require_home()
    from ledger import reverse_run

    n = reverse_run(get_app().ledger, run_id)
    say(f"run {run_id} reversed: {n} reversing entries posted")


@provider_app.command("withdraw")
def provider_withdraw(provider_id: str) -> None:
    """A provider leaves: not credited for runs whose checkpoints were all registered after now."""
    require_home()
    from ledger import withdraw_provider

    withdraw_provider(get_app().ledger, provider_id)
    say(f"provider {provider_id} withdrawn")


@provider_app.command("set")
def provider_set(
    provider_id: str,
    name: Annotated[str | None, typer.Option(help="display name")] = None,
    metadata: Annotated[str | None, typer.Option(help="JSON object of metadata")] = None,
) -> None:
    """Set a provider's display name or metadata."""
    require_home()
    import json

    from flows.errors import ConfigurationError
    from ledger import set_provider

    try:
        meta = json.loads(metadata) if metadata else None
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"--metadata is not JSON: {exc}") from exc
    set_provider(get_app().ledger, provider_id, name=name, metadata=meta)
    say(f"provider {provider_id} updated")


@ledger_app.command("verify")
def ledger_verify() -> None:
    """Recompute the runs' hash chain; names the first run that does not match."""
    require_home()
    from ledger import verify_ledger

    report = verify_ledger(get_app().ledger)
    if not report.ok:
        from ledger.errors import LedgerError

        raise LedgerError(str(report))
    say(str(report))


def register(app: typer.Typer) -> None:
    for command in (credits, attributions, statement, runs, reverse):
        app.command()(command)
    app.add_typer(provider_app, name="provider")
    app.add_typer(ledger_app, name="ledger")
