"""Per query × provider positive score sums (for positive_share statements).

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

from ledger.views import create_views_0001_sql, drop_views_0001_sql

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    for sql in drop_views_0001_sql():  # SQLite rebuilds the table in batch mode: views must go first
        op.execute(sql)
    with op.batch_alter_table("query_provider_score") as batch:
        batch.add_column(sa.Column("positive_score", sa.Float(), nullable=False, server_default="0"))
    for sql in create_views_0001_sql():
        op.execute(sql)
