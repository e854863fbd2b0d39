"""Dashboard views: one exact type per column on SQLite and PostgreSQL.

PostgreSQL views cast credits to ``NUMERIC(20, 6)`` and days to ``DATE``. SQLite has neither
type, so :data:`VIEW_TYPES` declares every column's SQLAlchemy type and :func:`read_view` reads
through it: on both databases a credit comes back as ``Decimal``, a day as ``datetime.date``,
counts as ``int``, scores as ``float``, JSON as ``str``. Heavy aggregates read the materialised
``provider_credit_day`` deltas that posting and reversal append.
"""

from __future__ import annotations

from sqlalchemy import Date, Engine, Float, Integer, Numeric, String, Text, text

from ledger.errors import UnknownViewError

CREDIT = Numeric(20, 6)


def _views(pg: bool) -> dict[str, str]:
    def dec(expr: str) -> str:
        return f"CAST({expr} AS NUMERIC(20, 6))" if pg else f"({expr})"

    def day(expr: str) -> str:
        return f"CAST({expr} AS DATE)" if pg else expr

    status = (
        "CASE WHEN EXISTS (SELECT 1 FROM run_reversal x WHERE x.run_id = r.run_id) THEN 'reversed' ELSE 'posted' END"
    )

    def run_total(extra: str) -> str:
        return f"(SELECT COALESCE(SUM(d.credit_micros), 0) FROM provider_credit_day d WHERE d.run_id = r.run_id{extra})"

    latest = "(SELECT MAX(day) FROM provider_day_total)"
    since = (lambda n: f"{latest} - {n - 1}") if pg else (lambda n: f"date({latest}, '-{n - 1} days')")
    return {
        "v_provider": """
            SELECT p.provider_id AS provider_id, COALESCE(i.name, p.name) AS name, p.status AS status,
                   COALESCE(i.metadata, '{}') AS metadata
            FROM provider p LEFT JOIN provider_info i ON i.provider_id = p.provider_id
             AND i.version = (SELECT MAX(i2.version) FROM provider_info i2 WHERE i2.provider_id = p.provider_id)
        """,
        "v_provider_credit_daily": f"""
            SELECT day, provider_id, {dec("credit_micros / 1000000.0")} AS credit FROM provider_day_total
        """,
        "v_provider_credit_by_checkpoint": f"""
            SELECT checkpoint_id, provider_id, {dec("SUM(amount_micros) / 1000000.0")} AS credit
            FROM entry_split GROUP BY checkpoint_id, provider_id
        """,
        "v_query_provider_credit": f"""
            SELECT e.run_id AS run_id, e.query_id AS query_id, e.provider_id AS provider_id,
                   MAX(s.score) AS score, {dec("SUM(e.amount_micros) / 1000000.0")} AS credit,
                   MAX(CASE WHEN e.kind = 'credit' THEN e.basis END) AS basis
            FROM ledger_entry e
            LEFT JOIN query_provider_score s
              ON s.run_id = e.run_id AND s.query_id = e.query_id AND s.provider_id = e.provider_id
            WHERE e.query_id IS NOT NULL
            GROUP BY e.run_id, e.query_id, e.provider_id
        """,
        "v_provider_top_documents": """
            SELECT provider_id, doc_id, COUNT(*) AS times_in_topk, SUM(score) AS total_score
            FROM query_attribution GROUP BY provider_id, doc_id
        """,
        "v_run_summary": f"""
            SELECT r.run_id AS run_id,
                   (SELECT COUNT(*) FROM run_checkpoint rc WHERE rc.run_id = r.run_id) AS checkpoints,
                   (SELECT COUNT(DISTINCT e.query_id) FROM ledger_entry e
                     WHERE e.run_id = r.run_id AND e.kind = 'credit') AS queries,
                   (SELECT COUNT(DISTINCT e.provider_id) FROM ledger_entry e
                     WHERE e.run_id = r.run_id AND e.kind = 'credit'
                       AND e.amount_micros > 0) AS providers_credited,
                   {dec(run_total("") + " / 1000000.0")} AS total_credit,
                   {status} AS status
            FROM valuation_run r
        """,
        "v_query_receipt": f"""
            SELECT e.run_id AS run_id, {day("e.day")} AS day, e.query_id AS query_id, q.lineage AS lineage,
                   q.prompt AS prompt, q.response AS response, {dec("q.value_micros / 1000000.0")} AS value,
                   e.provider_id AS provider_id, pv.name AS provider_name, s.score AS score,
                   {dec("e.amount_micros / 1000000.0")} AS credit, e.basis AS basis, q.confidence AS confidence
            FROM ledger_entry e
            LEFT JOIN run_query q ON q.run_id = e.run_id AND q.query_id = e.query_id
            LEFT JOIN v_provider pv ON pv.provider_id = e.provider_id
            LEFT JOIN query_provider_score s
              ON s.run_id = e.run_id AND s.query_id = e.query_id AND s.provider_id = e.provider_id
            WHERE e.kind = 'credit' AND e.query_id IS NOT NULL
        """,
        "v_query_evidence": """
            SELECT a.run_id AS run_id, a.query_id AS query_id, 'influence' AS channel, a.rank AS rank,
                   CAST(NULL AS VARCHAR) AS checkpoint_id, a.example_id AS example_id, a.doc_id AS doc_id,
                   a.provider_id AS provider_id, d.excerpt AS excerpt, a.score AS score
            FROM query_attribution a
            LEFT JOIN run_document d ON d.run_id = a.run_id AND d.doc_id = a.doc_id
            UNION ALL
            SELECT v.run_id, v.query_id, v.channel, v.rank, v.checkpoint_id, v.example_id, v.doc_id,
                   v.provider_id, d.excerpt, v.score
            FROM attribution_evidence v
            LEFT JOIN run_document d ON d.run_id = v.run_id AND d.doc_id = v.doc_id
        """,
        "v_provider_summary": f"""
            SELECT p.provider_id AS provider_id, p.name AS name, p.status AS status,
                   {dec(f"COALESCE(SUM(CASE WHEN d.day >= {since(7)} THEN d.credit_micros END), 0) / 1000000.0")}
                     AS credit_7d,
                   {dec(f"COALESCE(SUM(CASE WHEN d.day >= {since(30)} THEN d.credit_micros END), 0) / 1000000.0")}
                     AS credit_30d,
                   {dec("COALESCE(SUM(d.credit_micros), 0) / 1000000.0")} AS credit_total,
                   COALESCE(SUM(d.queries), 0) AS queries_paid, COALESCE(SUM(d.runs), 0) AS runs,
                   MIN(d.day) AS first_day, MAX(d.day) AS last_day
            FROM v_provider p LEFT JOIN provider_day_total d ON d.provider_id = p.provider_id
            GROUP BY p.provider_id, p.name, p.status
        """,
        "v_run_health": f"""
            SELECT r.run_id AS run_id, {day("r.day")} AS day, {status} AS status, r.policy AS policy,
                   i.mode AS mode, i.topk_method AS topk_method,
                   (SELECT COUNT(*) FROM run_checkpoint rc WHERE rc.run_id = r.run_id) AS checkpoints,
                   (SELECT COUNT(*) FROM run_query q WHERE q.run_id = r.run_id) AS queries,
                   (SELECT COUNT(*) FROM run_query q WHERE q.run_id = r.run_id AND q.value_micros > 0)
                     AS queries_credited,
                   CAST((SELECT COUNT(*) FROM run_query q WHERE q.run_id = r.run_id
                          AND q.basis <> 'fallback_pro_rata') AS {"DOUBLE PRECISION" if pg else "REAL"})
                     / NULLIF((SELECT COUNT(*) FROM run_query q WHERE q.run_id = r.run_id), 0) AS coverage,
                   {dec(run_total(" AND d.event = 'post'") + " / 1000000.0")} AS total_credit,
                   (SELECT x.reversed_by FROM run_reversal x WHERE x.run_id = r.run_id) AS reversed_by,
                   i.metrics AS metrics
            FROM valuation_run r LEFT JOIN run_info i ON i.run_id = r.run_id
        """,
    }


_S, _I, _F, _D, _T = String(), Integer(), Float(), Date(), Text()
VIEW_TYPES: dict[str, dict] = {
    "v_provider": {"provider_id": _S, "name": _S, "status": _S, "metadata": _T},
    "v_provider_credit_daily": {"day": _D, "provider_id": _S, "credit": CREDIT},
    "v_provider_credit_by_checkpoint": {"checkpoint_id": _S, "provider_id": _S, "credit": CREDIT},
    "v_query_provider_credit": {
        "run_id": _S,
        "query_id": _S,
        "provider_id": _S,
        "score": _F,
        "credit": CREDIT,
        "basis": _S,
    },
    "v_provider_top_documents": {"provider_id": _S, "doc_id": _S, "times_in_topk": _I, "total_score": _F},
    "v_run_summary": {
        "run_id": _S,
        "checkpoints": _I,
        "queries": _I,
        "providers_credited": _I,
        "total_credit": CREDIT,
        "status": _S,
    },
    "v_query_receipt": {
        "run_id": _S,
        "day": _D,
        "query_id": _S,
        "lineage": _S,
        "prompt": _T,
        "response": _T,
        "value": CREDIT,
        "provider_id": _S,
        "provider_name": _S,
        "score": _F,
        "credit": CREDIT,
        "basis": _S,
        "confidence": _F,
    },
    "v_query_evidence": {
        "run_id": _S,
        "query_id": _S,
        "channel": _S,
        "rank": _I,
        "checkpoint_id": _S,
        "example_id": _S,
        "doc_id": _S,
        "provider_id": _S,
        "excerpt": _T,
        "score": _F,
    },
    "v_provider_summary": {
        "provider_id": _S,
        "name": _S,
        "status": _S,
        "credit_7d": CREDIT,
        "credit_30d": CREDIT,
        "credit_total": CREDIT,
        "queries_paid": _I,
        "runs": _I,
        "first_day": _D,
        "last_day": _D,
    },
    "v_run_health": {
        "run_id": _S,
        "day": _D,
        "status": _S,
        "policy": _S,
        "mode": _S,
        "topk_method": _S,
        "checkpoints": _I,
        "queries": _I,
        "queries_credited": _I,
        "coverage": _F,
        "total_credit": CREDIT,
        "reversed_by": _S,
        "metrics": _T,
    },
}
VIEWS = tuple(VIEW_TYPES)  # creation order: later views may read earlier ones


def read_view(
    engine: Engine,
    view: str,
    where: str = "",
    params: dict | None = None,
    order_by: str = "",
    limit: int | None = None,
    offset: int = 0,
) -> list[dict]:
    """Rows of ``view`` as dicts with the declared Python types on both databases (paginated)."""
    if view not in VIEW_TYPES:
        raise UnknownViewError(f"unknown view {view!r}; choose one of {', '.join(VIEWS)}")
    types = VIEW_TYPES[view]
    sql = f"SELECT {', '.join(types)} FROM {view}"
    sql += f" WHERE {where}" if where else ""
    sql += f" ORDER BY {order_by}" if order_by else ""
    sql += f" LIMIT {int(limit)} OFFSET {int(offset)}" if limit is not None else ""
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(text(sql).columns(**types), params or {})]


def create_views_sql(dialect: str) -> list[str]:
    # Migrations call this: a revision that changes a view drops and recreates all of them.
    views = _views(dialect == "postgresql")
    return [f"CREATE VIEW {name} AS {views[name].strip()}" for name in VIEWS]


def drop_views_sql() -> list[str]:
    return [f"DROP VIEW IF EXISTS {name}" for name in reversed(VIEWS)]


# The views of revisions 0001 and 0002, frozen: those migrations must build the schema of their day.
VIEWS_0001: dict[str, str] = {
    "v_provider_credit_daily": """
        SELECT day, provider_id, SUM(amount_micros) / 1000000.0 AS credit
        FROM ledger_entry GROUP BY day, provider_id
    """,
    "v_provider_credit_by_checkpoint": """
        SELECT rc.checkpoint_id AS checkpoint_id, e.provider_id AS provider_id,
               SUM(e.amount_micros * rc.share) / 1000000.0 AS credit
        FROM ledger_entry e JOIN run_checkpoint rc ON rc.run_id = e.run_id
        GROUP BY rc.checkpoint_id, e.provider_id
    """,
    "v_query_provider_credit": """
        SELECT e.run_id AS run_id, e.query_id AS query_id, e.provider_id AS provider_id,
               MAX(s.score) AS score, SUM(e.amount_micros) / 1000000.0 AS credit
        FROM ledger_entry e
        LEFT JOIN query_provider_score s
          ON s.run_id = e.run_id AND s.query_id = e.query_id AND s.provider_id = e.provider_id
        WHERE e.query_id IS NOT NULL
        GROUP BY e.run_id, e.query_id, e.provider_id
    """,
    "v_provider_top_documents": """
        SELECT provider_id, doc_id, COUNT(*) AS times_in_topk, SUM(score) AS total_score
        FROM query_attribution GROUP BY provider_id, doc_id
    """,
    "v_run_summary": """
        SELECT r.run_id AS run_id,
               (SELECT COUNT(*) FROM run_checkpoint rc WHERE rc.run_id = r.run_id) AS checkpoints,
               (SELECT COUNT(DISTINCT e.query_id) FROM ledger_entry e
                 WHERE e.run_id = r.run_id AND e.kind = 'credit') AS queries,
               (SELECT COUNT(DISTINCT e.provider_id) FROM ledger_entry e
                 WHERE e.run_id = r.run_id AND e.kind = 'credit'
                   AND e.amount_micros > 0) AS providers_credited,
               (SELECT COALESCE(SUM(e.amount_micros), 0) FROM ledger_entry e
                 WHERE e.run_id = r.run_id) / 1000000.0 AS total_credit,
               r.status AS status
        FROM valuation_run r
    """,
}


def create_views_0001_sql() -> list[str]:
    return [f"CREATE VIEW {name} AS {sql.strip()}" for name, sql in VIEWS_0001.items()]


def drop_views_0001_sql() -> list[str]:
    return [f"DROP VIEW IF EXISTS {name}" for name in VIEWS_0001]


# Append-only: every table a credit rests on refuses UPDATE and DELETE (and TRUNCATE on PostgreSQL).
APPEND_ONLY_TABLES = (
    "valuation_run",
    "run_checkpoint",
    "query_attribution",
    "query_provider_score",
    "provider_score",
    "run_reversal",
    "query_credit",
    "run_info",
    "run_query",
    "run_document",
    "attribution_evidence",
    "query_checkpoint_score",
    "entry_split",
    "provider_credit_day",
    "provider_info",
    "run_digest",
)
APPEND_ONLY_SQLITE = [
    """CREATE TRIGGER ledger_entry_no_update BEFORE UPDATE ON ledger_entry
       BEGIN SELECT RAISE(ABORT, 'ledger_entry is append-only: post a reversal instead'); END""",
    """CREATE TRIGGER ledger_entry_no_delete BEFORE DELETE ON ledger_entry
       BEGIN SELECT RAISE(ABORT, 'ledger_entry is append-only: post a reversal instead'); END""",
]
APPEND_ONLY_POSTGRES = [
    """CREATE OR REPLACE FUNCTION ledger_entry_append_only() RETURNS trigger AS $$
       BEGIN RAISE EXCEPTION 'ledger_entry is append-only: post a reversal instead'; END;
       $$ LANGUAGE plpgsql""",
    """CREATE TRIGGER ledger_entry_no_update BEFORE UPDATE OR DELETE ON ledger_entry
       FOR EACH ROW EXECUTE FUNCTION ledger_entry_append_only()""",
]


def append_only_sql(dialect: str, tables=APPEND_ONLY_TABLES) -> list[str]:
    """Triggers that make ``tables`` refuse UPDATE and DELETE (the error names the table)."""
    if dialect == "postgresql":
        out = [
            """CREATE OR REPLACE FUNCTION dataworth_append_only() RETURNS trigger AS $$
               BEGIN RAISE EXCEPTION '% is append-only: post a reversal instead', TG_TABLE_NAME; END;
               $$ LANGUAGE plpgsql"""
        ]
        for t in (*tables, "ledger_entry"):
            if t != "ledger_entry":
                out.append(
                    f"CREATE TRIGGER {t}_no_update BEFORE UPDATE OR DELETE ON {t}"
                    " FOR EACH ROW EXECUTE FUNCTION dataworth_append_only()"
                )
            out.append(
                f"CREATE TRIGGER {t}_no_truncate BEFORE TRUNCATE ON {t}"
                " FOR EACH STATEMENT EXECUTE FUNCTION dataworth_append_only()"
            )
        return out
    return [
        f"CREATE TRIGGER {t}_no_{op.lower()} BEFORE {op} ON {t}"
        f" BEGIN SELECT RAISE(ABORT, '{t} is append-only: post a reversal instead'); END"
        for t in tables
        for op in ("UPDATE", "DELETE")
    ]
