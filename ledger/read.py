"""Read side for the CLI and the dashboard: typed rows (credits as ``Decimal``) on both databases."""

from __future__ import annotations

import json
from decimal import Decimal

from sqlalchemy import Engine, Float, Integer, String, Text, text

from ledger.errors import UnknownQueryError, UnknownRunError
from ledger.views import CREDIT, read_view


def credits(engine: Engine, run_id: str | None = None) -> list[dict]:
    """``[{provider_id, name, credit}]`` net of reversals, all runs (daily totals) or one run."""
    if run_id is None:  # the materialised daily totals: no scan of the entries
        source, params = "SELECT provider_id, SUM(credit_micros) AS micros FROM provider_day_total", {}
    else:
        source = "SELECT provider_id, SUM(amount_micros) AS micros FROM ledger_entry WHERE run_id = :run"
        params = {"run": run_id}
    source += " GROUP BY provider_id"
    sql = (
        f"SELECT c.provider_id AS provider_id, p.name AS name, c.micros AS micros FROM ({source}) c"
        " LEFT JOIN v_provider p ON p.provider_id = c.provider_id ORDER BY c.micros DESC, c.provider_id"
    )
    with engine.connect() as conn:
        if (
            run_id is not None
            and not conn.execute(text("SELECT 1 FROM valuation_run WHERE run_id = :run"), params).first()
        ):
            raise UnknownRunError(f"unknown run {run_id!r}")
        rows = conn.execute(text(sql).columns(provider_id=String(), name=String(), micros=Integer()), params).all()
    return [{"provider_id": p, "name": n, "credit": Decimal(m) / 1_000_000} for p, n, m in rows]


def attributions(engine: Engine, query_id: str | None = None) -> list[dict]:
    """Top-k examples of each query (or one) in the latest run that valued it, with excerpts."""
    where, params = ("AND a.query_id = :q", {"q": query_id}) if query_id else ("", {})
    sql = f"""
        SELECT a.run_id, a.query_id, a.rank, a.example_id, a.doc_id, a.provider_id, a.score, d.excerpt
        FROM query_attribution a
        JOIN run_digest g ON g.run_id = a.run_id AND g.event = 'post'
        LEFT JOIN run_document d ON d.run_id = a.run_id AND d.doc_id = a.doc_id
        WHERE g.seq = (SELECT MAX(g2.seq) FROM run_digest g2 JOIN query_attribution a2 ON a2.run_id = g2.run_id
                       WHERE g2.event = 'post' AND a2.query_id = a.query_id) {where}
        ORDER BY a.query_id, a.rank
    """
    types = {
        "run_id": String(),
        "query_id": String(),
        "rank": Integer(),
        "example_id": String(),
        "doc_id": String(),
        "provider_id": String(),
        "score": Float(),
        "excerpt": Text(),
    }
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(text(sql).columns(**types), params)]


def runs(engine: Engine) -> list[dict]:
    """Every run: ``v_run_summary`` columns plus day, policy, mode, topk_method, coverage, reversed_by, metrics."""
    health = {r["run_id"]: r for r in read_view(engine, "v_run_health")}
    out = []
    for r in read_view(engine, "v_run_summary", order_by="run_id"):
        h = health.get(r["run_id"], {})
        out.append(
            r
            | {
                k: h.get(k)
                for k in ("day", "policy", "mode", "topk_method", "queries_credited", "coverage", "reversed_by")
            }
            | {"metrics": json.loads(h.get("metrics") or "{}")}
        )
    return out


def _receipt_run(engine: Engine, query_id: str) -> str:
    """The run of the query's live credit, else the latest run that valued it."""
    with engine.connect() as conn:
        live = conn.execute(
            text(
                "SELECT c.run_id FROM query_credit c WHERE c.query_id = :q AND c.kind = 'credit' AND NOT EXISTS"
                " (SELECT 1 FROM query_credit x WHERE x.query_id = c.query_id AND x.generation = c.generation"
                " AND x.kind = 'release')"
            ),
            {"q": query_id},
        ).first()
        if live:
            return live[0]
        latest = conn.execute(
            text(
                "SELECT q.run_id FROM run_query q JOIN run_digest g ON g.run_id = q.run_id AND g.event = 'post'"
                " WHERE q.query_id = :q ORDER BY g.seq DESC LIMIT 1"
            ),
            {"q": query_id},
        ).first()
    if latest is None:
        raise UnknownQueryError(f"no run valued query {query_id!r}")
    return latest[0]


def query_receipt(engine: Engine, query_id: str, run_id: str | None = None) -> dict:
    """What a person needs to understand a query's credit, from the views.

    ``{run_id, day, status, policy, mode, topk_method, settings, metrics, query_id, lineage, prompt,
    response, value, confidence, basis, providers: [v_query_receipt rows], evidence:
    [v_query_evidence rows]}``; the run defaults to the query's live credit, else its latest run.
    """
    run_id = run_id or _receipt_run(engine, query_id)
    sql = (
        "SELECT q.lineage, q.prompt, q.response, q.value_micros, q.confidence, q.basis, r.config"
        " FROM run_query q JOIN valuation_run r ON r.run_id = q.run_id WHERE q.run_id = :r AND q.query_id = :q"
    )
    types = {
        "lineage": String(),
        "prompt": Text(),
        "response": Text(),
        "value_micros": Integer(),
        "confidence": Float(),
        "basis": String(),
        "config": Text(),
    }
    params = {"r": run_id, "q": query_id}
    with engine.connect() as conn:
        row = conn.execute(text(sql).columns(**types), params).first()
    if row is None:
        raise UnknownQueryError(f"run {run_id} did not value query {query_id!r}")
    (health,) = read_view(engine, "v_run_health", where="run_id = :r", params=params)
    by = "run_id = :r AND query_id = :q"
    return {
        "run_id": run_id,
        "day": health["day"],
        "status": health["status"],
        "policy": health["policy"],
        "mode": health["mode"],
        "topk_method": health["topk_method"],
        "settings": json.loads(row.config),
        "metrics": json.loads(health["metrics"] or "{}"),
        "query_id": query_id,
        "lineage": row.lineage,
        "prompt": row.prompt,
        "response": row.response,
        "value": CREDIT.python_type(row.value_micros) / 1_000_000,
        "confidence": row.confidence,
        "basis": row.basis,
        "providers": read_view(engine, "v_query_receipt", where=by, params=params, order_by="credit DESC, provider_id"),
        "evidence": read_view(
            engine,
            "v_query_evidence",
            where=by,
            params=params,
            order_by="channel, COALESCE(checkpoint_id, ''), rank",
        ),
    }
