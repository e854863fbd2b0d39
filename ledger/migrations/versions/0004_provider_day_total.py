"""Per-day provider totals (``provider_day_total``) summed from the chained deltas; indexes for
the provider pages (checkpoint split, top documents); the views.

Revision ID: 0004
Revises: 0003

A ledger made by an earlier build of 0003 already has views: they are dropped and rebuilt here.
"""

import sqlalchemy as sa
from alembic import op

from ledger.views import create_views_sql, drop_views_sql

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    conn = op.get_bind()
    for sql in drop_views_sql():
        op.execute(sql)
    op.create_table(
        "provider_day_total",
        sa.Column("day", sa.Date(), primary_key=True),
        sa.Column("provider_id", sa.String(), primary_key=True),
        sa.Column("credit_micros", sa.BigInteger(), nullable=False),
        sa.Column("queries", sa.Integer(), nullable=False),
        sa.Column("runs", sa.Integer(), nullable=False),
    )
    op.create_index("ix_provider_day_total_provider", "provider_day_total", ["provider_id"])
    op.execute(
        "INSERT INTO provider_day_total (day, provider_id, credit_micros, queries, runs)"
        " SELECT day, provider_id, SUM(credit_micros), SUM(queries), SUM(runs) FROM provider_credit_day"
        " GROUP BY day, provider_id"
    )
    op.create_index("ix_entry_split_provider_checkpoint", "entry_split", ["provider_id", "checkpoint_id"])
    op.create_index("ix_query_attribution_provider_doc", "query_attribution", ["provider_id", "doc_id"])
    for sql in create_views_sql(conn.dialect.name):
        op.execute(sql)
