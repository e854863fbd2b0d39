"""Posting a valuation run to the ledger: validated first, one transaction, idempotent."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Engine, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from ledger.models import (
    Checkpoint,
    LedgerEntry,
    Provider,
    ProviderScore,
    QueryAttribution,
    QueryBatch,
    QueryProviderScore,
    RunCheckpoint,
    ValuationRun,
    utcnow,
)
from ledger.policies import PolicyInputError, QueryResult, split_run


@dataclass(frozen=True)
class RunCheckpointRef:
    checkpoint_id: str
    gradient_table: str
    table_version: int
    weight: float = 1.0


@dataclass
class RunRecord:
    """Everything a run produced and everything needed to trace a credit back to its origin."""

    batch_id: str
    checkpoints: list[RunCheckpointRef]
    config_hash: str
    queries: list[QueryResult]
    corpus_share: dict[str, int]  # provider → examples in the corpus (fallback_pro_rata)
    policy: str = "topk_share"
    policy_params: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    artifact_hashes: dict = field(default_factory=dict)
    code_version: str = "unknown"
    day: str | None = None  # YYYY-MM-DD; default today (UTC)
    run_id: str | None = None  # default: derived from batch, checkpoints, config and policy

    def key(self) -> str:
        blob = json.dumps(
            {
                "batch": self.batch_id,
                "checkpoints": sorted((c.checkpoint_id, c.table_version, c.weight) for c in self.checkpoints),
                "config": self.config_hash,
                "policy": self.policy,
                "params": self.policy_params,
            },
            sort_keys=True,
        )
        return "run-" + hashlib.sha256(blob.encode()).hexdigest()[:20]


@dataclass
class PostReport:
    run_id: str
    entries_written: int
    already_posted: bool


def _insert(engine: Engine, model):
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    return dialect.insert(model)


def _insert_ignore(session: Session, engine: Engine, model, rows: list[dict], keys: Sequence[str], returning=None):
    if not rows:
        return []
    stmt = _insert(engine, model).on_conflict_do_nothing(index_elements=list(keys))
    if returning is not None:
        stmt = stmt.returning(returning)
        out = []
        for start in range(0, len(rows), 5000):
            out.extend(session.execute(stmt, rows[start : start + 5000]).scalars().all())
        return out
    for start in range(0, len(rows), 5000):
        session.execute(stmt, rows[start : start + 5000])
    return []


def ensure_providers(engine: Engine, provider_ids: Iterable[str]) -> None:
    """Create missing providers (active); existing ones are left as they are."""
    rows = [
        {"provider_id": p, "name": p, "status": "active", "created_at": utcnow()} for p in sorted(set(provider_ids))
    ]
    with Session(engine) as session:
        _insert_ignore(session, engine, Provider, rows, ["provider_id"])
        session.commit()


def withdraw_provider(engine: Engine, provider_id: str, at: datetime | None = None) -> None:
    with Session(engine) as session:
        provider = session.get(Provider, provider_id)
        if provider is None:
            raise PolicyInputError(f"unknown provider {provider_id!r}")
        provider.status, provider.withdrawn_at = "withdrawn", at or utcnow()
        session.add(provider)
        session.commit()


def register_checkpoint(
    engine: Engine, checkpoint_id: str, path: str = "", lineage: str = "default", step: int | None = None
) -> Checkpoint:
    """Idempotent: the same fingerprint registers once (first registration wins)."""
    row = {
        "checkpoint_id": checkpoint_id,
        "path": path,
        "lineage": lineage,
        "step": step,
        "registered_at": utcnow(),
    }
    with Session(engine) as session:
        _insert_ignore(session, engine, Checkpoint, [row], ["checkpoint_id"])
        session.commit()
        return session.get(Checkpoint, checkpoint_id)


def _eligible(session: Session, providers: set[str], checkpoints: list[Checkpoint]) -> set[str]:
    """Active providers, and withdrawn ones for runs with a checkpoint registered before withdrawal."""
    earliest = min(c.registered_at for c in checkpoints)
    out = set()
    for p in session.execute(select(Provider).where(Provider.provider_id.in_(providers))).scalars():
        if p.status != "withdrawn" or (p.withdrawn_at is not None and earliest < p.withdrawn_at):
            out.add(p.provider_id)
    return out


def post_run(engine: Engine, record: RunRecord) -> PostReport:
    """Validate, split every query's value by the policy, and write the run in one transaction.

    A retry or a concurrent second poster writes nothing (unique keys, insert-or-ignore).
    Raises :class:`PolicyInputError` before writing anything on NaN/inf scores, negative
    values, unknown providers or unknown checkpoints.
    """
    run_id = record.run_id or record.key()
    day = record.day or datetime.now(UTC).strftime("%Y-%m-%d")
    if not record.checkpoints:
        raise PolicyInputError(f"run {run_id}: no checkpoint")
    with Session(engine) as session:
        checkpoints = []
        for ref in record.checkpoints:
            ck = session.get(Checkpoint, ref.checkpoint_id)
            if ck is None:
                raise PolicyInputError(f"run {run_id}: unknown checkpoint {ref.checkpoint_id[:16]}")
            if not ref.weight > 0:
                raise PolicyInputError(f"run {run_id}: checkpoint weight must be > 0, got {ref.weight}")
            checkpoints.append(ck)
        mentioned = set(record.corpus_share)
        for q in record.queries:
            mentioned |= {e.provider_id for e in q.topk} | set(q.provider_scores) | set(q.provider_positive)
        known = set(session.execute(select(Provider.provider_id).where(Provider.provider_id.in_(mentioned))).scalars())
        unknown = sorted(mentioned - known)
        if unknown:
            raise PolicyInputError(f"run {run_id}: unknown provider(s) {unknown[:5]}")
        eligible = _eligible(session, known, checkpoints)
        splits = split_run(record.queries, record.policy, eligible, record.corpus_share, known)

    now = utcnow()
    wsum = sum(c.weight for c in record.checkpoints)
    entries = [
        {
            "idempotency_key": f"{run_id}:{qid}:{provider}:credit",
            "run_id": run_id,
            "provider_id": provider,
            "query_id": qid,
            "amount_micros": micros,
            "unit": "credit",
            "kind": "credit",
            "basis": basis,
            "reverses_entry_id": None,
            "day": day,
            "created_at": now,
        }
        for qid, parts, basis in splits
        for provider, micros in sorted(parts.items())
        if micros != 0
    ]
    hits: dict[str, int] = {}
    for q in record.queries:
        for e in q.topk:
            hits[e.provider_id] = hits.get(e.provider_id, 0) + 1
    totals: dict[str, list[float]] = {}
    for q in record.queries:
        for p, s in q.provider_scores.items():
            totals.setdefault(p, [0.0, 0.0])[0] += s
        for p, s in q.provider_positive.items():
            totals.setdefault(p, [0.0, 0.0])[1] += s
    with Session(engine) as session, session.begin():
        _insert_ignore(
            session,
            engine,
            QueryBatch,
            [{"batch_id": record.batch_id, "n_queries": len(record.queries), "created_at": now}],
            ["batch_id"],
        )
        new_run = _insert_ignore(
            session,
            engine,
            ValuationRun,
            [
                {
                    "run_id": run_id,
                    "batch_id": record.batch_id,
                    "config_hash": record.config_hash,
                    "config": json.dumps(record.config, sort_keys=True, default=str),
                    "artifact_hashes": json.dumps(record.artifact_hashes, sort_keys=True),
                    "code_version": record.code_version,
                    "policy": record.policy,
                    "policy_params": json.dumps(record.policy_params, sort_keys=True),
                    "status": "posted",
                    "started_at": now,
                    "finished_at": now,
                    "day": day,
                }
            ],
            ["run_id"],
            returning=ValuationRun.run_id,
        )
        _insert_ignore(
            session,
            engine,
            RunCheckpoint,
            [
                {
                    "run_id": run_id,
                    "checkpoint_id": c.checkpoint_id,
                    "gradient_table": c.gradient_table,
                    "table_version": c.table_version,
                    "weight": c.weight,
                    "share": c.weight / wsum,
                }
                for c in record.checkpoints
            ],
            ["run_id", "checkpoint_id"],
        )
        _insert_ignore(
            session,
            engine,
            QueryAttribution,
            [
                {
                    "run_id": run_id,
                    "query_id": q.query_id,
                    "rank": rank,
                    "example_id": e.example_id,
                    "doc_id": e.doc_id,
                    "provider_id": e.provider_id,
                    "score": e.score,
                }
                for q in record.queries
                for rank, e in enumerate(q.topk, start=1)
            ],
            ["run_id", "query_id", "rank"],
        )
        _insert_ignore(
            session,
            engine,
            QueryProviderScore,
            [
                {
                    "run_id": run_id,
                    "query_id": q.query_id,
                    "provider_id": p,
                    "score": s,
                    "positive_score": q.provider_positive.get(p, 0.0),
                }
                for q in record.queries
                for p, s in sorted(q.provider_scores.items())
            ],
            ["run_id", "query_id", "provider_id"],
        )
        _insert_ignore(
            session,
            engine,
            ProviderScore,
            [
                {
                    "run_id": run_id,
                    "provider_id": p,
                    "influence_sum": t[0],
                    "positive_sum": t[1],
                    "topk_hits": hits.get(p, 0),
                }
                for p, t in sorted(totals.items())
            ],
            ["run_id", "provider_id"],
        )
        written = _insert_ignore(
            session, engine, LedgerEntry, entries, ["idempotency_key"], returning=LedgerEntry.entry_id
        )
    return PostReport(run_id=run_id, entries_written=len(written), already_posted=not new_run)


def reverse_run(engine: Engine, run_id: str, day: str | None = None) -> int:
    """Post reversing entries for every credit of ``run_id`` (once); returns how many were written."""
    day = day or datetime.now(UTC).strftime("%Y-%m-%d")
    with Session(engine) as session, session.begin():
        run = session.get(ValuationRun, run_id)
        if run is None:
            raise PolicyInputError(f"unknown run {run_id!r}")
        credits = (
            session.execute(select(LedgerEntry).where(LedgerEntry.run_id == run_id, LedgerEntry.kind == "credit"))
            .scalars()
            .all()
        )
        rows = [
            {
                "idempotency_key": f"reversal:{e.idempotency_key}",
                "run_id": run_id,
                "provider_id": e.provider_id,
                "query_id": e.query_id,
                "amount_micros": -e.amount_micros,
                "unit": e.unit,
                "kind": "reversal",
                "basis": e.basis,
                "reverses_entry_id": e.entry_id,
                "day": day,
                "created_at": utcnow(),
            }
            for e in credits
        ]
        written = _insert_ignore(
            session, engine, LedgerEntry, rows, ["idempotency_key"], returning=LedgerEntry.entry_id
        )
        run.status = "reversed"
        session.add(run)
    return len(written)
