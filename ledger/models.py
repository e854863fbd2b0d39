"""The ledger schema (SQLModel). Amounts are integers of micro-units: exact on every database."""

from __future__ import annotations

from datetime import UTC, datetime
from datetime import date as date_

from sqlalchemy import BigInteger, CheckConstraint, Column, Date, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


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
    __table_args__ = (
        UniqueConstraint("run_id", "query_id", "rank"),
        Index("ix_query_attribution_provider_doc", "provider_id", "doc_id"),
    )
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


# Revision 0003: one credit per query, reversals as rows, evidence, a hash chain. Every table
# below (and every table above that a credit rests on) refuses UPDATE and DELETE.


class LedgerLock(SQLModel, table=True):
    """One row; posters bump it first thing in their transaction, so postings never interleave."""

    __tablename__ = "ledger_lock"
    lock_id: int = Field(primary_key=True)
    n: int = Field(sa_column=Column(BigInteger, nullable=False))


class RunReversal(SQLModel, table=True):
    """A run's reversal (its status is derived from this row: nothing is updated)."""

    __tablename__ = "run_reversal"
    run_id: str = Field(foreign_key="valuation_run.run_id", primary_key=True)
    day: str
    reversed_by: str = ""
    created_at: datetime = Field(default_factory=utcnow)


class QueryCredit(SQLModel, table=True):
    """One ``credit`` row per valued query; a reversal appends a ``release`` row of the same generation.

    ``UNIQUE(query_id, generation, kind)`` with ``generation`` = the query's number of releases so
    far: two live credits of one query cannot both be written.
    """

    __tablename__ = "query_credit"
    __table_args__ = (
        UniqueConstraint("query_id", "generation", "kind"),
        CheckConstraint("kind IN ('credit', 'release')", name="ck_query_credit_kind"),
    )
    id: int | None = Field(default=None, primary_key=True)
    query_id: str
    generation: int
    kind: str
    run_id: str = Field(foreign_key="valuation_run.run_id", index=True)


class RunInfo(SQLModel, table=True):
    __tablename__ = "run_info"
    run_id: str = Field(foreign_key="valuation_run.run_id", primary_key=True)
    mode: str | None = None
    topk_method: str | None = None  # "exact" or "index:<params>"
    metrics: str = Field(sa_column=Column(Text, nullable=False))  # JSON
    excerpt_chars: int = 2000


class RunQuery(SQLModel, table=True):
    """A valued query as the run saw it: bounded prompt/response excerpts, lineage, value, basis."""

    __tablename__ = "run_query"
    __table_args__ = (UniqueConstraint("run_id", "query_id"),)
    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(foreign_key="valuation_run.run_id", index=True)
    query_id: str = Field(index=True)
    lineage: str | None = None
    prompt: str | None = Field(default=None, sa_column=Column(Text))
    response: str | None = Field(default=None, sa_column=Column(Text))
    value_micros: int = Field(sa_column=Column(BigInteger, nullable=False))
    confidence: float | None = None
    basis: str = ""


class RunDocument(SQLModel, table=True):
    __tablename__ = "run_document"
    __table_args__ = (UniqueConstraint("run_id", "doc_id"),)
    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(foreign_key="valuation_run.run_id", index=True)
    doc_id: str
    provider_id: str
    excerpt: str = Field(sa_column=Column(Text, nullable=False))


class AttributionEvidence(SQLModel, table=True):
    """Per-checkpoint influence ranks/scores of the combined top-k, and lexical rows (never credited)."""

    __tablename__ = "attribution_evidence"
    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(foreign_key="valuation_run.run_id", index=True)
    query_id: str
    channel: str  # influence | lexical
    checkpoint_id: str | None = None  # NULL: not tied to one checkpoint (lexical)
    rank: int
    example_id: str
    doc_id: str
    provider_id: str
    score: float


class QueryCheckpointScore(SQLModel, table=True):
    """A checkpoint's own (weighted, normalised) contribution to a query's provider score."""

    __tablename__ = "query_checkpoint_score"
    __table_args__ = (UniqueConstraint("run_id", "query_id", "checkpoint_id", "provider_id"),)
    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(foreign_key="valuation_run.run_id", index=True)
    query_id: str
    checkpoint_id: str
    provider_id: str
    score: float


class EntrySplit(SQLModel, table=True):
    """A ledger entry's amount split across the run's checkpoints (exact micro-units)."""

    __tablename__ = "entry_split"
    __table_args__ = (Index("ix_entry_split_provider_checkpoint", "provider_id", "checkpoint_id"),)
    id: int | None = Field(default=None, primary_key=True)
    entry_id: int = Field(foreign_key="ledger_entry.entry_id", index=True)
    run_id: str = Field(index=True)
    checkpoint_id: str
    provider_id: str
    amount_micros: int = Field(sa_column=Column(BigInteger, nullable=False))
    basis: str  # measured | weight_share


class ProviderCreditDay(SQLModel, table=True):
    """Materialised daily totals: one delta row per (run, event, day, provider), summed by views."""

    __tablename__ = "provider_credit_day"
    __table_args__ = (Index("ix_provider_credit_day_day_provider", "day", "provider_id"),)
    id: int | None = Field(default=None, primary_key=True)
    day: date_ = Field(sa_column=Column(Date, nullable=False))
    provider_id: str = Field(index=True)
    run_id: str = Field(index=True)
    event: str  # post | reverse
    credit_micros: int = Field(sa_column=Column(BigInteger, nullable=False))
    queries: int  # queries paid (negative on reversal)
    runs: int  # 1 on post, -1 on reversal


class ProviderDayTotal(SQLModel, table=True):
    """``provider_credit_day`` summed per (day, provider), kept in step by posting and reversal.

    The one derived, updated table (an upsert adds each delta): dashboards read it instead of
    scanning deltas, and :func:`ledger.verify_ledger` checks it against the chained deltas.
    """

    __tablename__ = "provider_day_total"
    day: date_ = Field(sa_column=Column(Date, primary_key=True))
    provider_id: str = Field(primary_key=True)
    credit_micros: int = Field(sa_column=Column(BigInteger, nullable=False))
    queries: int
    runs: int


class ProviderInfo(SQLModel, table=True):
    """Display name and metadata of a provider, one appended version per change."""

    __tablename__ = "provider_info"
    __table_args__ = (UniqueConstraint("provider_id", "version"),)
    id: int | None = Field(default=None, primary_key=True)
    provider_id: str = Field(foreign_key="provider.provider_id")
    version: int
    name: str
    metadata_json: str = Field(sa_column=Column("metadata", Text, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


class RunDigest(SQLModel, table=True):
    """The hash chain: one link per posting or reversal, each over its rows and the previous digest."""

    __tablename__ = "run_digest"
    seq: int = Field(primary_key=True)
    run_id: str = Field(foreign_key="valuation_run.run_id", index=True)
    event: str  # post | reverse
    prev_digest: str = Field(unique=True)  # one successor per link: the chain cannot fork
    digest: str
    parts: str = Field(sa_column=Column(Text, nullable=False))  # JSON {table: sha256}
    created_at: datetime = Field(default_factory=utcnow)
