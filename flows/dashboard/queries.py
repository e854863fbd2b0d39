"""What the dashboard and the HTML report read: the ledger's SQL views, paginated.

Everything here goes through :func:`ledger.read_view` (typed rows: credits as ``Decimal``, days as
``date``) so a page shows exactly what a BI tool pointed at the views sees. Three reads go past the
views because no view carries them: the statement (:func:`ledger.statement`, the same lines as
``dataworth statement``, and its line count and totals by kind), a query's receipt
(:func:`ledger.query_receipt`: the run's settings JSON) and a run's settings and checkpoint list.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal

from sqlalchemy import Engine, Float, Integer, String, Text, text

from ledger import UnknownProviderError, UnknownRunError, read_view

WINDOWS = ("day", "week", "month")
PAGE_SIZE = 25


def count(engine: Engine, view: str, where: str = "", params: dict | None = None) -> int:
    """Rows of ``view`` matching ``where``."""
    sql = f"SELECT COUNT(*) FROM {view}" + (f" WHERE {where}" if where else "")
    with engine.connect() as conn:
        return int(conn.execute(text(sql), params or {}).scalar_one())


def period_start(day: date, window: str) -> date:
    """First day of the day/week (Monday)/month that holds ``day``."""
    if window == "day":
        return day
    if window == "week":
        return day - timedelta(days=day.weekday())
    if window == "month":
        return day.replace(day=1)
    raise ValueError(f"window must be one of {WINDOWS}, got {window!r}")


def _day_filter(start: date | None, end: date | None, column: str = "day") -> tuple[list[str], dict]:
    where, params = [], {}
    if start is not None:
        where.append(f"{column} >= :start")
        params["start"] = start
    if end is not None:
        where.append(f"{column} <= :end")
        params["end"] = end
    return where, params


def credit_series(
    engine: Engine,
    window: str = "day",
    provider_ids: list[str] | None = None,
    start: date | None = None,
    end: date | None = None,
) -> list[dict]:
    """``[{period, provider_id, credit}]`` summed per ``window`` from ``v_provider_credit_daily``.

    The view reads the materialised daily totals, so this costs O(days × providers), not O(entries).
    """
    where, params = _day_filter(start, end)
    if provider_ids is not None:
        if not provider_ids:
            return []
        names = [f":p{i}" for i in range(len(provider_ids))]
        where.append(f"provider_id IN ({', '.join(names)})")
        params |= {f"p{i}": p for i, p in enumerate(provider_ids)}
    rows = read_view(engine, "v_provider_credit_daily", " AND ".join(where), params, order_by="day, provider_id")
    sums: dict[tuple[date, str], Decimal] = defaultdict(Decimal)
    for r in rows:
        sums[(period_start(r["day"], window), r["provider_id"])] += r["credit"]
    return [{"period": d, "provider_id": p, "credit": c} for (d, p), c in sorted(sums.items())]


def providers(engine: Engine, offset: int = 0, limit: int | None = PAGE_SIZE) -> list[dict]:
    """``v_provider_summary`` rows ranked by total credit (then id).

    The page's ids are ranked on ``v_provider_credit_daily`` (one sum per provider), then only their
    summary rows are read: ordering the whole summary view computes every provider's 7/30-day windows.
    """
    sql = (
        "SELECT p.provider_id FROM v_provider p LEFT JOIN (SELECT provider_id, ROUND(SUM(credit), 6) AS total"
        " FROM v_provider_credit_daily GROUP BY provider_id) c ON c.provider_id = p.provider_id"
        " ORDER BY COALESCE(c.total, 0) DESC, p.provider_id"
    )
    if limit is not None:
        sql += f" LIMIT {int(limit)} OFFSET {int(offset)}"
    with engine.connect() as conn:
        ids = list(conn.execute(text(sql)).scalars())
    if not ids:
        return []
    names = {f"p{i}": p for i, p in enumerate(ids)}
    rows = read_view(engine, "v_provider_summary", f"provider_id IN ({', '.join(':' + n for n in names)})", names)
    rank = {p: i for i, p in enumerate(ids)}
    return sorted(rows, key=lambda r: rank[r["provider_id"]])


def provider(engine: Engine, provider_id: str) -> dict:
    """One provider's ``v_provider_summary`` row with its metadata (``v_provider``) parsed."""
    rows = read_view(engine, "v_provider_summary", "provider_id = :p", {"p": provider_id})
    if not rows:
        raise UnknownProviderError(f"unknown provider {provider_id!r}")
    (info,) = read_view(engine, "v_provider", "provider_id = :p", {"p": provider_id})
    return rows[0] | {"metadata": json.loads(info["metadata"] or "{}")}


def top_documents(engine: Engine, provider_id: str, offset: int = 0, limit: int = PAGE_SIZE) -> list[dict]:
    """The provider's documents most often in a top-k (``v_provider_top_documents``), with an excerpt."""
    rows = read_view(
        engine,
        "v_provider_top_documents",
        "provider_id = :p",
        {"p": provider_id},
        order_by="times_in_topk DESC, total_score DESC, doc_id",
        limit=limit,
        offset=offset,
    )
    if rows:
        names = {f"d{i}": r["doc_id"] for i, r in enumerate(rows)}
        sql = (
            "SELECT doc_id, MAX(excerpt) AS excerpt FROM v_query_evidence WHERE provider_id = :p"
            f" AND doc_id IN ({', '.join(':' + n for n in names)}) GROUP BY doc_id"
        )
        with engine.connect() as conn:
            found = conn.execute(text(sql).columns(doc_id=String(), excerpt=Text()), {"p": provider_id} | names)
            excerpts = dict(found.all())
        for r in rows:
            r["excerpt"] = excerpts.get(r["doc_id"])
    return rows


def paying_queries(engine: Engine, provider_id: str, offset: int = 0, limit: int = PAGE_SIZE) -> list[dict]:
    """The credits that paid the provider, largest first (``v_query_receipt``)."""
    return read_view(
        engine,
        "v_query_receipt",
        "provider_id = :p",
        {"p": provider_id},
        order_by="credit DESC, run_id, query_id",
        limit=limit,
        offset=offset,
    )


def statement_summary(engine: Engine, provider_id: str) -> dict:
    """``{"lines": n, "by_kind": {kind: Decimal}}`` of the provider's statement (its ledger entries)."""
    sql = "SELECT kind, COUNT(*), SUM(amount_micros) FROM ledger_entry WHERE provider_id = :p GROUP BY kind"
    with engine.connect() as conn:
        rows = conn.execute(text(sql), {"p": provider_id}).all()
    return {
        "lines": sum(n for _, n, _ in rows),
        "by_kind": {kind: Decimal(int(m)) / 1_000_000 for kind, _, m in sorted(rows)},
    }


def run_status(engine: Engine, run_ids: list[str]) -> dict[str, str]:
    """``{run_id: "posted" | "reversed"}`` (``v_run_health``) for ``run_ids``."""
    if not run_ids:
        return {}
    names = {f"r{i}": r for i, r in enumerate(sorted(set(run_ids)))}
    where = f"run_id IN ({', '.join(':' + n for n in names)})"
    return {r["run_id"]: r["status"] for r in read_view(engine, "v_run_health", where, names)}


def by_checkpoint(engine: Engine, provider_id: str) -> list[dict]:
    """The provider's credit per checkpoint, measured from each checkpoint's own scores."""
    return read_view(
        engine,
        "v_provider_credit_by_checkpoint",
        "provider_id = :p",
        {"p": provider_id},
        order_by="credit DESC, checkpoint_id",
    )


def run_health(engine: Engine, offset: int = 0, limit: int | None = PAGE_SIZE, where: str = "", params=None):
    """``v_run_health`` rows, newest day first, with ``metrics`` parsed."""
    rows = read_view(engine, "v_run_health", where, params, order_by="day DESC, run_id", limit=limit, offset=offset)
    return [r | {"metrics": json.loads(r["metrics"] or "{}")} for r in rows]


def run(engine: Engine, run_id: str) -> dict:
    """One run: its ``v_run_health`` and ``v_run_summary`` rows, settings and checkpoints."""
    health = run_health(engine, limit=None, where="run_id = :r", params={"r": run_id})
    if not health:
        raise UnknownRunError(f"unknown run {run_id!r}")
    (summary,) = read_view(engine, "v_run_summary", "run_id = :r", {"r": run_id})
    with engine.connect() as conn:
        settings = conn.execute(text("SELECT config FROM valuation_run WHERE run_id = :r"), {"r": run_id}).scalar_one()
        cks = conn.execute(
            text(
                "SELECT rc.checkpoint_id, c.lineage, c.step, rc.weight, rc.share FROM run_checkpoint rc"
                " LEFT JOIN checkpoint c ON c.checkpoint_id = rc.checkpoint_id WHERE rc.run_id = :r"
                " ORDER BY c.step, rc.checkpoint_id"
            ).columns(checkpoint_id=String(), lineage=String(), step=Integer(), weight=Float(), share=Float()),
            {"r": run_id},
        )
        checkpoints = [dict(r._mapping) for r in cks]
    return health[0] | {
        "providers_credited": summary["providers_credited"],
        "settings": json.loads(settings or "{}"),
        "checkpoints_list": checkpoints,
    }


def run_credits(engine: Engine, run_id: str) -> list[dict]:
    """Net credit per provider of one run (``v_query_provider_credit``), largest first."""
    sql = (
        "SELECT provider_id, SUM(credit) AS credit FROM v_query_provider_credit WHERE run_id = :r"
        " GROUP BY provider_id ORDER BY SUM(credit) DESC, provider_id"
    )
    with engine.connect() as conn:
        rows = conn.execute(text(sql), {"r": run_id}).all()
    return [{"provider_id": p, "credit": Decimal(str(c)).quantize(Decimal("0.000001"))} for p, c in rows]


def run_queries(engine: Engine, run_id: str, offset: int = 0, limit: int | None = PAGE_SIZE) -> list[dict]:
    """The run's credited (query, provider) rows (``v_query_receipt``), by query then credit."""
    return read_view(
        engine,
        "v_query_receipt",
        "run_id = :r",
        {"r": run_id},
        order_by="query_id, credit DESC, provider_id",
        limit=limit,
        offset=offset,
    )
