"""The ledger schema (SQLModel). Amounts are integers of micro-units: exact on every database."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import BigInteger, Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

MICROS = 1_000_000  # the ledger's precision: 6 decimal places


def utcnow() -> datetime:
    return datetime.now(UTC)


class Provider(SQLModel, table=True):
    provider_id: str = Field(primary_key=True)
    name: str = ""
    status: str = "active"  # active | withdrawn
    withdrawn_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)


class Checkpoint(SQLModel, table=True):
    checkpoint_id: str = Field(primary_key=True)  # fingerprint of config + weights
    path: str = ""
    lineage: str = "default"
    step: int | None = None
    registered_at: datetime = Field(default_factory=utcnow)


class QueryBatch(SQLModel, table=True):
    __tablename__ = "query_batch"
    batch_id: str = Field(primary_key=True)
    n_queries: int = 0
    created_at: datetime = Field(default_factory=utcnow)


class ValuationRun(SQLModel, table=True):
    __tablename__ = "valuation_run"
    run_id: str = Field(primary_key=True)
    batch_id: str = Field(foreign_key="query_batch.batch_id")
    config_hash: str
    config: str = Field(sa_column=Column(Text, nullable=False))  # JSON
    artifact_hashes: str = Field(sa_column=Column(Text, nullable=False))  # JSON
    code_version: str
    policy: str
    policy_params: str = Field(sa_column=Column(Text, nullable=False))  # JSON
    status: str = "posted"  # posted | reversed
    started_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None
    day: str  # YYYY-MM-DD of posting: portable day for dashboards


class RunCheckpoint(SQLModel, table=True):
    """A checkpoint a run used, the gradient table version it read, and its weight."""

    __tablename__ = "run_checkpoint"
    run_id: str = Field(foreign_key="valuation_run.run_id", primary_key=True)
    checkpoint_id: str = Field(foreign_key="checkpoint.checkpoint_id", primary_key=True)
    gradient_table: str
    table_version: int
    weight: float = 1.0
    share: float = 1.0  # weight / Σ weights: splits the run's credit per checkpoint in views


class QueryAttribution(SQLModel, table=True):
    __tablename__ = "query_attribution"
    __table_args__ = (UniqueConstraint("run_id", "query_id", "rank"),)
    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(foreign_key="valuation_run.run_id", index=True)
    query_id: str
    rank: int
    example_id: str
    doc_id: str
    provider_id: str
    score: float


class QueryProviderScore(SQLModel, table=True):
    __tablename__ = "query_provider_score"
    __table_args__ = (UniqueConstraint("run_id", "query_id", "provider_id"),)
    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(foreign_key="valuation_run.run_id", index=True)
    query_id: str
    provider_id: str
    score: float
    positive_score: float


class ProviderScore(SQLModel, table=True):
    __tablename__ = "provider_score"
    __table_args__ = (UniqueConstraint("run_id", "provider_id"),)
    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(foreign_key="valuation_run.run_id", index=True)
    provider_id: str
    influence_sum: float
    positive_sum: float
    topk_hits: int


class LedgerEntry(SQLModel, table=True):
    """Append-only: the database refuses UPDATE and DELETE (triggers)."""

    __tablename__ = "ledger_entry"
    __table_args__ = (Index("ix_ledger_entry_provider_day", "provider_id", "day"),)
    entry_id: int | None = Field(default=None, primary_key=True)
    idempotency_key: str = Field(unique=True)
    run_id: str = Field(foreign_key="valuation_run.run_id", index=True)
    provider_id: str = Field(foreign_key="provider.provider_id")
    query_id: str | None = None
    amount_micros: int = Field(sa_column=Column(BigInteger, nullable=False))
    unit: str = "credit"
    kind: str = "credit"  # credit | reversal | adjustment
    basis: str = ""  # the policy that produced it (or fallback_pro_rata)
    reverses_entry_id: int | None = Field(default=None, foreign_key="ledger_entry.entry_id")
    day: str
    created_at: datetime = Field(default_factory=utcnow)
