"""Initial ledger: providers, checkpoints, runs, attributions, scores, entries, views.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from ledger.views import APPEND_ONLY_POSTGRES, APPEND_ONLY_SQLITE, create_views_0001_sql

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "provider",
        sa.Column("provider_id", sa.String(), primary_key=True),
        sa.Column("name", sa.String(), nullable=False, server_default=""),
        sa.Column("status", sa.String(), nullable=False, server_default="active"),
        sa.Column("withdrawn_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "checkpoint",
        sa.Column("checkpoint_id", sa.String(), primary_key=True),
        sa.Column("path", sa.String(), nullable=False, server_default=""),
        sa.Column("lineage", sa.String(), nullable=False, server_default="default"),
        sa.Column("step", sa.Integer(), nullable=True),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "query_batch",
        sa.Column("batch_id", sa.String(), primary_key=True),
        sa.Column("n_queries", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "valuation_run",
        sa.Column("run_id", sa.String(), primary_key=True),
        sa.Column("batch_id", sa.String(), sa.ForeignKey("query_batch.batch_id"), nullable=False),
        sa.Column("config_hash", sa.String(), nullable=False),
        sa.Column("config", sa.Text(), nullable=False),
        sa.Column("artifact_hashes", sa.Text(), nullable=False),
        sa.Column("code_version", sa.String(), nullable=False),
        sa.Column("policy", sa.String(), nullable=False),
        sa.Column("policy_params", sa.Text(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("day", sa.String(), nullable=False),
    )
    op.create_table(
        "run_checkpoint",
        sa.Column("run_id", sa.String(), sa.ForeignKey("valuation_run.run_id"), primary_key=True),
        sa.Column("checkpoint_id", sa.String(), sa.ForeignKey("checkpoint.checkpoint_id"), primary_key=True),
        sa.Column("gradient_table", sa.String(), nullable=False),
        sa.Column("table_version", sa.Integer(), nullable=False),
        sa.Column("weight", sa.Float(), nullable=False),
        sa.Column("share", sa.Float(), nullable=False),
    )
    op.create_table(
        "query_attribution",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(), sa.ForeignKey("valuation_run.run_id"), nullable=False, index=True),
        sa.Column("query_id", sa.String(), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("example_id", sa.String(), nullable=False),
        sa.Column("doc_id", sa.String(), nullable=False),
        sa.Column("provider_id", sa.String(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.UniqueConstraint("run_id", "query_id", "rank"),
    )
    op.create_table(
        "query_provider_score",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(), sa.ForeignKey("valuation_run.run_id"), nullable=False, index=True),
        sa.Column("query_id", sa.String(), nullable=False),
        sa.Column("provider_id", sa.String(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.UniqueConstraint("run_id", "query_id", "provider_id"),
    )
    op.create_table(
        "provider_score",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(), sa.ForeignKey("valuation_run.run_id"), nullable=False, index=True),
        sa.Column("provider_id", sa.String(), nullable=False),
        sa.Column("influence_sum", sa.Float(), nullable=False),
        sa.Column("positive_sum", sa.Float(), nullable=False),
        sa.Column("topk_hits", sa.Integer(), nullable=False),
        sa.UniqueConstraint("run_id", "provider_id"),
    )
    op.create_table(
        "ledger_entry",
        sa.Column("entry_id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("idempotency_key", sa.String(), nullable=False, unique=True),
        sa.Column("run_id", sa.String(), sa.ForeignKey("valuation_run.run_id"), nullable=False, index=True),
        sa.Column("provider_id", sa.String(), sa.ForeignKey("provider.provider_id"), nullable=False),
        sa.Column("query_id", sa.String(), nullable=True),
        sa.Column("amount_micros", sa.BigInteger(), nullable=False),
        sa.Column("unit", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("basis", sa.String(), nullable=False),
        sa.Column("reverses_entry_id", sa.Integer(), sa.ForeignKey("ledger_entry.entry_id"), nullable=True),
        sa.Column("day", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_ledger_entry_provider_day", "ledger_entry", ["provider_id", "day"])
    dialect = op.get_bind().dialect.name
    for sql in APPEND_ONLY_POSTGRES if dialect == "postgresql" else APPEND_ONLY_SQLITE:
        op.execute(sql)
    for sql in create_views_0001_sql():
        op.execute(sql)
