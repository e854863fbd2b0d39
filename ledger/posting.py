"""Posting a valuation run to the ledger: validated first, one locked transaction, idempotent.

Every posting and reversal first bumps the single ``ledger_lock`` row (a row lock on PostgreSQL,
the write lock on SQLite), so postings are serialised: the one-credit-per-query check and the hash
chain see every earlier posting and never fork.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from sqlalchemy import Connection, Engine, insert, select, text
from sqlmodel import Session

from ledger.chain import append_link
from ledger.errors import (
    PolicyInputError,
    QueryAlreadyCreditedError,
    RunReversedError,
    UnknownProviderError,
    UnknownRunError,
)
from ledger.evidence import check_evidence, evidence_rows, excerpt
from ledger.models import (
    Checkpoint,
    EntrySplit,
    LedgerEntry,
    Provider,
    ProviderCreditDay,
    ProviderDayTotal,
    ProviderScore,
    QueryBatch,
    QueryCredit,
    QueryProviderScore,
    RunCheckpoint,
    RunInfo,
    RunQuery,
    RunReversal,
    ValuationRun,
    utcnow,
)
from ledger.policies import QueryResult, TopKEntry, split_by_checkpoint, split_run, to_micros
from ledger.query_credit import live_credits_in
from ledger.rows import CHUNK, append, dialect_insert, lock

EXCERPT_CHARS = 2000


@dataclass(frozen=True)
class RunCheckpointRef:
    checkpoint_id: str
    gradient_table: str
    table_version: int
    weight: float = 1.0


@dataclass
class RunRecord:
    """Everything a run produced and everything needed to trace a credit back to its origin.

    ``config`` holds every scoring setting (mode, damping_ratio, topk, checkpoint_combine, ...); the
    run key hashes all of it, the policy and the checkpoint weights. ``lexical``: per query id, the
    lexical matches shown beside the influence ones (never credited). ``topk_method``: ``"exact"`` or
    ``"index:<params>"``. ``metrics``: the run's accuracy/confidence figures (free JSON).
    ``revaluation``: bump it to value a batch again after its run was reversed.
    """

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
    lexical: dict[str, list[TopKEntry]] = field(default_factory=dict)
    topk_method: str | None = None
    metrics: dict = field(default_factory=dict)
    revaluation: int = 0

    def key(self) -> str:
        blob = json.dumps(
            {
                "batch": self.batch_id,
                "checkpoints": sorted((c.checkpoint_id, c.table_version, c.weight) for c in self.checkpoints),
                "config_hash": self.config_hash,
                "config": self.config,
                "policy": self.policy,
                "params": self.policy_params,
                "revaluation": self.revaluation,
            },
            sort_keys=True,
            default=str,
        )
        return "run-" + hashlib.sha256(blob.encode()).hexdigest()[:20]


@dataclass
class PostReport:
    run_id: str
    entries_written: int
    already_posted: bool


def _eligible(session: Session, providers: set[str], checkpoints: list[Checkpoint]) -> set[str]:
    """Active providers, and withdrawn ones for runs with a checkpoint registered before withdrawal."""
    earliest = min(c.registered_at for c in checkpoints)
    out = set()
    for p in session.execute(select(Provider).where(Provider.provider_id.in_(providers))).scalars():
        if p.status != "withdrawn" or (p.withdrawn_at is not None and earliest < p.withdrawn_at):
            out.add(p.provider_id)
    return out


def post_run(engine: Engine, record: RunRecord, excerpt_chars: int = EXCERPT_CHARS) -> PostReport:
    """Validate, split every query's value by the policy, and write the run in one transaction.

    A retry or a concurrent second poster of the same run writes nothing. Raises, writing nothing:
    :class:`PolicyInputError` on NaN/inf scores, negative values, unknown providers or checkpoints;
    :class:`QueryAlreadyCreditedError` when a live run already credited one of the queries (see
    :func:`credited_queries`); :class:`RunReversedError` when this run was posted then reversed.
    Prompts, responses and document excerpts are stored up to ``excerpt_chars`` characters.
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
            culprit = next(
                (
                    q.query_id
                    for q in record.queries
                    if ({e.provider_id for e in q.topk} | set(q.provider_scores)) - known
                ),
                None,
            )
            where = f"query {culprit}: " if culprit else ""
            raise UnknownProviderError(f"run {run_id}: {where}unknown provider(s) {unknown[:5]}", culprit)
        eligible = _eligible(session, known, checkpoints)
        splits = split_run(record.queries, record.policy, eligible, record.corpus_share, known)
        check_evidence(run_id, record, known)

    now = utcnow()
    wsum = sum(c.weight for c in record.checkpoints)
    weights = {c.checkpoint_id: c.weight for c in record.checkpoints}
    by_query = {q.query_id: q for q in record.queries}
    basis_of = {qid: basis for qid, _, basis in splits}
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
    evidence = evidence_rows(run_id, record, excerpt_chars)
    with engine.begin() as conn:
        lock(conn)
        if conn.execute(text("SELECT 1 FROM valuation_run WHERE run_id = :r"), {"r": run_id}).first():
            if conn.execute(text("SELECT 1 FROM run_reversal WHERE run_id = :r"), {"r": run_id}).first():
                raise RunReversedError(f"run {run_id} was reversed; set RunRecord.revaluation to value the batch again")
            return PostReport(run_id=run_id, entries_written=0, already_posted=True)
        live, releases = live_credits_in(conn, list(by_query))
        if live:
            raise QueryAlreadyCreditedError(run_id, live)
        if not conn.execute(text("SELECT 1 FROM query_batch WHERE batch_id = :b"), {"b": record.batch_id}).first():
            append(
                conn, QueryBatch, [{"batch_id": record.batch_id, "n_queries": len(record.queries), "created_at": now}]
            )
        append(
            conn,
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
        )
        append(
            conn,
            RunInfo,
            [
                {
                    "run_id": run_id,
                    "mode": record.config.get("mode"),
                    "topk_method": record.topk_method,
                    "metrics": json.dumps(record.metrics, sort_keys=True, default=str),
                    "excerpt_chars": excerpt_chars,
                }
            ],
        )
        append(
            conn,
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
        )
        for model, rows in evidence.items():
            append(conn, model, rows)
        append(
            conn,
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
        )
        append(
            conn,
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
        )
        append(
            conn,
            RunQuery,
            [
                {
                    "run_id": run_id,
                    "query_id": q.query_id,
                    "lineage": q.lineage,
                    "prompt": excerpt(q.prompt, excerpt_chars),
                    "response": excerpt(q.response, excerpt_chars),
                    "value_micros": to_micros(q.value, f"query {q.query_id}"),
                    "confidence": q.confidence,
                    "basis": basis_of[q.query_id],
                }
                for q in record.queries
            ],
        )
        append(
            conn,
            QueryCredit,
            [
                {"query_id": qid, "generation": releases.get(qid, 0), "kind": "credit", "run_id": run_id}
                for qid in sorted(by_query)
            ],
        )
        ids = _write_entries(conn, entries)
        split_rows = []
        for e in entries:
            parts, basis = split_by_checkpoint(
                e["amount_micros"], e["provider_id"], by_query[e["query_id"]].by_checkpoint, weights
            )
            split_rows += _split_rows(ids[e["idempotency_key"]], run_id, e["provider_id"], parts, basis)
        append(conn, EntrySplit, split_rows)
        _add_deltas(conn, _day_deltas(entries, run_id, day, "post"))
        append_link(conn, run_id, "post")
    return PostReport(run_id=run_id, entries_written=len(entries), already_posted=False)


def _write_entries(conn: Connection, entries: list[dict]) -> dict[str, int]:
    """Insert ledger entries; ``{idempotency_key: entry_id}``."""
    ids: dict[str, int] = {}
    stmt = insert(LedgerEntry.__table__).returning(LedgerEntry.entry_id, LedgerEntry.idempotency_key)
    for start in range(0, len(entries), CHUNK):
        ids.update({key: eid for eid, key in conn.execute(stmt, entries[start : start + CHUNK])})
    return ids


def _split_rows(entry_id: int, run_id: str, provider: str, parts: dict[str, int], basis: str) -> list[dict]:
    return [
        {
            "entry_id": entry_id,
            "run_id": run_id,
            "checkpoint_id": ck,
            "provider_id": provider,
            "amount_micros": m,
            "basis": basis,
        }
        for ck, m in sorted(parts.items())
        if m != 0
    ]


def _day_deltas(entries: list[dict], run_id: str, day: str, event: str) -> list[dict]:
    """One materialised delta per provider: credit, queries paid (signed), runs (±1)."""
    sign = 1 if event == "post" else -1
    out: dict[str, dict] = {}
    for e in entries:
        row = out.setdefault(
            e["provider_id"],
            {
                "day": date.fromisoformat(day),
                "provider_id": e["provider_id"],
                "run_id": run_id,
                "event": event,
                "credit_micros": 0,
                "queries": 0,
                "runs": sign,
            },
        )
        row["credit_micros"] += e["amount_micros"]
        row["queries"] += sign if e["query_id"] is not None else 0
    return [out[p] for p in sorted(out)]


def _add_deltas(conn: Connection, deltas: list[dict]) -> None:
    """Append the chained deltas and add them to the per-day totals (one upsert per row)."""
    append(conn, ProviderCreditDay, deltas)
    if not deltas:
        return
    cols = ("credit_micros", "queries", "runs")
    stmt = dialect_insert(conn, ProviderDayTotal)
    stmt = stmt.on_conflict_do_update(
        index_elements=["day", "provider_id"],
        set_={c: getattr(ProviderDayTotal.__table__.c, c) + getattr(stmt.excluded, c) for c in cols},
    )
    rows = [{k: d[k] for k in ("day", "provider_id", *cols)} for d in deltas]
    for start in range(0, len(rows), CHUNK):
        conn.execute(stmt, rows[start : start + CHUNK])


def reverse_run(engine: Engine, run_id: str, day: str | None = None, by: str = "") -> int:
    """Reverse every credit of ``run_id`` (once) and release its queries for a re-valuation.

    Appends a ``run_reversal`` row, reversing entries (and their checkpoint splits), ``release``
    rows in ``query_credit`` and negative daily totals; returns how many entries were written.
    """
    day = day or datetime.now(UTC).strftime("%Y-%m-%d")
    with engine.begin() as conn:
        lock(conn)
        if not conn.execute(text("SELECT 1 FROM valuation_run WHERE run_id = :r"), {"r": run_id}).first():
            raise UnknownRunError(f"unknown run {run_id!r}")
        if conn.execute(text("SELECT 1 FROM run_reversal WHERE run_id = :r"), {"r": run_id}).first():
            return 0
        credits = conn.execute(
            text(
                "SELECT entry_id, idempotency_key, provider_id, query_id, amount_micros, unit, basis FROM ledger_entry"
                " WHERE run_id = :r AND kind = 'credit' ORDER BY entry_id"
            ),
            {"r": run_id},
        ).all()
        now = utcnow()
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
                "created_at": now,
            }
            for e in credits
        ]
        append(conn, RunReversal, [{"run_id": run_id, "day": day, "reversed_by": by, "created_at": now}])
        ids = _write_entries(conn, rows)
        originals = conn.execute(
            text(
                "SELECT s.entry_id, s.checkpoint_id, s.provider_id, s.amount_micros, s.basis FROM entry_split s"
                " JOIN ledger_entry e ON e.entry_id = s.entry_id WHERE e.run_id = :r AND e.kind = 'credit'"
            ),
            {"r": run_id},
        ).all()
        new_id = {e.entry_id: ids[f"reversal:{e.idempotency_key}"] for e in credits}
        append(
            conn,
            EntrySplit,
            [
                {
                    "entry_id": new_id[s.entry_id],
                    "run_id": run_id,
                    "checkpoint_id": s.checkpoint_id,
                    "provider_id": s.provider_id,
                    "amount_micros": -s.amount_micros,
                    "basis": s.basis,
                }
                for s in originals
            ],
        )
        released = conn.execute(
            text(
                "SELECT c.query_id, c.generation FROM query_credit c WHERE c.run_id = :r AND c.kind = 'credit'"
                " AND NOT EXISTS (SELECT 1 FROM query_credit x WHERE x.query_id = c.query_id"
                " AND x.generation = c.generation AND x.kind = 'release')"
            ),
            {"r": run_id},
        ).all()
        append(
            conn,
            QueryCredit,
            [{"query_id": q, "generation": g, "kind": "release", "run_id": run_id} for q, g in sorted(released)],
        )
        _add_deltas(conn, _day_deltas(rows, run_id, day, "reverse"))
        append_link(conn, run_id, "reverse")
    return len(rows)
