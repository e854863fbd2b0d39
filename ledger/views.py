"""Dashboard views: one SQL text for SQLite and PostgreSQL (a stored ``day`` keeps them portable)."""

from __future__ import annotations

VIEWS: dict[str, str] = {
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


def create_views_sql() -> list[str]:
    # Migrations call this: a revision that changes a view drops and recreates all of them.
    return [f"CREATE VIEW {name} AS {sql.strip()}" for name, sql in VIEWS.items()]


def drop_views_sql() -> list[str]:
    return [f"DROP VIEW IF EXISTS {name}" for name in VIEWS]


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
