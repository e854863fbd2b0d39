"""The dashboard's reads against brute-force sums of the views, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

import pytest

from flows.dashboard import queries
from ledger import UnknownProviderError, UnknownRunError, credits, read_view
from tests.dashboard.ledger_data import ALL_PROVIDERS, EVIL


def brute_period(day, window: str) -> str:
    if window == "day":
        return day.isoformat()
    if window == "week":
        year, week, _ = day.isocalendar()
        return f"{year}-W{week:02d}"
    return f"{day.year}-{day.month:02d}"


@pytest.mark.parametrize("window", queries.WINDOWS)
def test_credit_series_sums_the_daily_view_per_window(engine, window):
    expected: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for r in read_view(engine, "v_provider_credit_daily"):
        expected[(brute_period(r["day"], window), r["provider_id"])] += r["credit"]
    got = {
        (brute_period(r["period"], window), r["provider_id"]): r["credit"]
        for r in queries.credit_series(engine, window)
    }
    assert got == dict(expected)
    for r in queries.credit_series(engine, window):
        assert queries.period_start(r["period"], window) == r["period"]  # periods start on their first day
    one = queries.credit_series(engine, window, [EVIL])
    assert {r["provider_id"] for r in one} == {EVIL}
    assert queries.credit_series(engine, window, []) == []


def test_period_start_refuses_an_unknown_window():
    from datetime import date

    with pytest.raises(ValueError, match="window must be one of"):
        queries.period_start(date(2026, 1, 1), "year")


def test_provider_pages_concatenate_to_the_ranked_view(engine):
    everything = queries.providers(engine, limit=None)
    assert [r["provider_id"] for r in everything] == [
        r["provider_id"] for r in sorted(everything, key=lambda r: (-r["credit_total"], r["provider_id"]))
    ]
    pages = [queries.providers(engine, offset, 3) for offset in range(0, len(everything), 3)]
    assert [r for page in pages for r in page] == everything
    assert queries.count(engine, "v_provider_summary") == len(ALL_PROVIDERS) == len(everything)
    total = {r["provider_id"]: r["credit"] for r in credits(engine)}
    assert {r["provider_id"]: r["credit_total"] for r in everything} == total


def test_provider_reads(engine):
    p = queries.provider(engine, "alpha")
    assert p["name"] == "Alpha Press" and p["metadata"]["licence"] == "CC-BY"
    with pytest.raises(UnknownProviderError, match="nobody"):
        queries.provider(engine, "nobody")
    paid = queries.paying_queries(engine, EVIL, 0, 100)
    assert paid and all(r["provider_id"] == EVIL for r in paid)
    assert [r["credit"] for r in paid] == sorted((r["credit"] for r in paid), reverse=True)
    docs = queries.top_documents(engine, EVIL, 0, 10)
    assert docs[0]["excerpt"].startswith(f"text of {EVIL}-doc")
    by_ck = queries.by_checkpoint(engine, EVIL)
    assert {r["checkpoint_id"] for r in by_ck} == {"ck1", "ck2"}
    assert sum(r["credit"] for r in by_ck) == p_total(engine, EVIL)


def p_total(engine, provider_id: str) -> Decimal:
    return queries.provider(engine, provider_id)["credit_total"]


def test_run_reads(engine):
    health = queries.run_health(engine, limit=None)
    reversed_run = next(r for r in health if r["status"] == "reversed")
    run = queries.run(engine, reversed_run["run_id"])
    assert run["reversed_by"] == "analyst: bad checkpoint"
    assert run["settings"] == {"k": 64}
    assert [c["checkpoint_id"] for c in run["checkpoints_list"]] == ["ck1", "ck2"]
    assert run["metrics"] == {"lds": 0.42, "planted_recall": 0.8}
    assert all(r["credit"] == 0 for r in queries.run_credits(engine, reversed_run["run_id"]))  # net of the reversal
    live = next(r for r in health if r["status"] == "posted")
    assert {r["provider_id"]: r["credit"] for r in queries.run_credits(engine, live["run_id"])} == {
        r["provider_id"]: r["credit"] for r in credits(engine, live["run_id"])
    }
    rows = queries.run_queries(engine, live["run_id"], 0, None)
    assert len(rows) == queries.count(engine, "v_query_receipt", "run_id = :r", {"r": live["run_id"]})
    with pytest.raises(UnknownRunError):
        queries.run(engine, "run-nope")


@pytest.mark.parametrize("provider", ["alpha", EVIL])
def test_statement_pages_and_summary_equal_the_whole_statement(engine, provider):
    from ledger import statement

    whole = statement(engine, provider)
    pages = [statement(engine, provider, limit=5, offset=o).lines for o in range(0, len(whole.lines), 5)]
    assert [line for page in pages for line in page] == whole.lines  # top documents included
    assert statement(engine, provider, limit=5, offset=len(whole.lines)).lines == []
    summary = queries.statement_summary(engine, provider)
    assert summary == {"lines": len(whole.lines), "by_kind": whole.totals_by_kind()}
