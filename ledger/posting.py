"""Posting a valuation run to the ledger: validated first, one locked transaction, idempotent.

Every posting and reversal first bumps the single ``ledger_lock`` row (a row lock on PostgreSQL,
the write lock on SQLite), so postings are serialised: the one-credit-per-query check and the hash
chain see every earlier posting and never fork.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from sqlalchemy import Connection, Engine, insert, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from ledger.chain import append_link
from ledger.errors import (
    PolicyInputError,
    QueryAlreadyCreditedError,
    RunReversedError,
    UnknownProviderError,
    UnknownRunError,
)
from ledger.models import (
    AttributionEvidence,
    Checkpoint,
    EntrySplit,
    LedgerEntry,
    Provider,
    ProviderCreditDay,
    ProviderDayTotal,
    ProviderInfo,
    ProviderScore,
    QueryAttribution,
    QueryBatch,
    QueryCheckpointScore,
    QueryCredit,
    QueryProviderScore,
    RunCheckpoint,
    RunDocument,
    RunInfo,
    RunQuery,
    RunReversal,
    ValuationRun,
    utcnow,
)
from ledger.policies import QueryResult, TopKEntry, split_by_checkpoint, split_run, to_micros

EXCERPT_CHARS = 2000
_CHUNK = 5000


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
        for start in range(0, len(rows), _CHUNK):
            out.extend(session.execute(stmt, rows[start : start + _CHUNK]).scalars().all())
        return out
    for start in range(0, len(rows), _CHUNK):
        session.execute(stmt, rows[start : start + _CHUNK])
    return []


def _append(conn: Connection, model, rows: list[dict]) -> None:
    for start in range(0, len(rows), _CHUNK):
        conn.execute(insert(model.__table__), rows[start : start + _CHUNK])


def lock(conn: Connection) -> None:
    """Serialise writers: the first statement of the transaction takes the ledger's lock row."""
    conn.execute(text("UPDATE ledger_lock SET n = n + 1 WHERE lock_id = 1"))


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
            raise UnknownProviderError(f"unknown provider {provider_id!r}")
        provider.status, provider.withdrawn_at = "withdrawn", at or utcnow()
        session.add(provider)
        session.commit()


def set_provider(engine: Engine, provider_id: str, name: str | None = None, metadata: dict | None = None) -> dict:
    """Append a new version of the provider's display name and metadata (created if missing).

    Fields left ``None`` keep their current value. Returns ``{"provider_id", "version", "name", "metadata"}``.
    """
    ensure_providers(engine, [provider_id])
    with engine.begin() as conn:
        lock(conn)
        last = conn.execute(
            text(
                "SELECT version, name, metadata FROM provider_info WHERE provider_id = :p ORDER BY version DESC LIMIT 1"
            ),
            {"p": provider_id},
        ).first()
        version = last[0] + 1 if last else 1
        current_name = last[1] if last else provider_id
        current_meta = json.loads(last[2]) if last else {}
        row = {
            "provider_id": provider_id,
            "version": version,
            "name": current_name if name is None else name,
            "metadata": json.dumps(current_meta if metadata is None else metadata, sort_keys=True, default=str),
            "created_at": utcnow(),
        }
        conn.execute(insert(ProviderInfo.__table__), [row])
    return {
        "provider_id": provider_id,
        "version": version,
        "name": row["name"],
        "metadata": json.loads(row["metadata"]),
    }


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


def _live_credits(conn: Connection, query_ids: Sequence[str]) -> tuple[dict[str, str], dict[str, int]]:
    """``({query: run of its live credit}, {query: releases so far})`` for ``query_ids``."""
    t = QueryCredit.__table__.c
    credited: dict[tuple[str, int], str] = {}
    released: set[tuple[str, int]] = set()
    ids = sorted(set(query_ids))
    for start in range(0, len(ids), _CHUNK):
        stmt = select(t.query_id, t.generation, t.kind, t.run_id).where(t.query_id.in_(ids[start : start + _CHUNK]))
        for qid, gen, kind, run in conn.execute(stmt):
            if kind == "release":
                released.add((qid, gen))
            else:
                credited[(qid, gen)] = run
    live = {qid: run for (qid, gen), run in credited.items() if (qid, gen) not in released}
    releases: dict[str, int] = {}
    for qid, _ in released:
        releases[qid] = releases.get(qid, 0) + 1
    return live, releases


def live_credits(engine: Engine, query_ids: Iterable[str]) -> dict[str, str]:
    """``{query_id: run_id}`` for the queries among ``query_ids`` that a live (not reversed) run credited."""
    with engine.connect() as conn:
        return _live_credits(conn, list(query_ids))[0]


def credited_queries(engine: Engine, query_ids: Iterable[str]) -> set[str]:
    """The queries among ``query_ids`` that a live (posted, not reversed) run has credited."""
    return set(live_credits(engine, query_ids))


def _check_evidence(run_id: str, record: RunRecord, known: set[str]) -> None:
    checkpoints = {c.checkpoint_id for c in record.checkpoints}
    seen: set[str] = set()

    def bad(qid: str, why: str) -> PolicyInputError:
        return PolicyInputError(f"run {run_id}: query {qid}: {why}", qid)

    for q in record.queries:
        if q.query_id in seen:
            raise bad(q.query_id, "appears twice")
        seen.add(q.query_id)
        if q.confidence is not None and not math.isfinite(q.confidence):
            raise bad(q.query_id, f"confidence is {q.confidence}")
        for ck, scores in (q.by_checkpoint or {}).items():
            if ck not in checkpoints:
                raise bad(q.query_id, f"by_checkpoint names {ck[:16]}, not a checkpoint of the run")
            for p, s in scores.items():
                if not math.isfinite(s) or p not in known:
                    raise bad(q.query_id, f"by_checkpoint[{ck[:16]}][{p!r}] = {s}")
        for e in q.topk:
            for ck, s in (e.per_checkpoint or {}).items():
                if ck not in checkpoints or not math.isfinite(s):
                    raise bad(q.query_id, f"per_checkpoint[{ck[:16]}] = {s} of {e.example_id}")
    for qid, lexical in record.lexical.items():
        if qid not in seen:
            raise bad(qid, "lexical evidence for a query not in the run")
        for e in lexical:
            if e.provider_id not in known or not math.isfinite(e.score):
                raise bad(qid, f"lexical {e.example_id} ({e.provider_id}, {e.score})")


def _evidence_rows(run_id: str, record: RunRecord, excerpt_chars: int) -> dict:
    """Rows of the evidence tables (attributions, per-checkpoint ranks, lexical, documents, queries)."""
    attributions, evidence, ck_scores, documents = [], [], [], {}
    for q in record.queries:
        for rank, e in enumerate(q.topk, start=1):
            attributions.append(
                {
                    "run_id": run_id,
                    "query_id": q.query_id,
                    "rank": rank,
                    "example_id": e.example_id,
                    "doc_id": e.doc_id,
                    "provider_id": e.provider_id,
                    "score": e.score,
                }
            )
        # Each checkpoint's rank of the combined top-k entries, by that checkpoint's own score.
        per_ck: dict[str, list[tuple[float, int, TopKEntry]]] = {}
        for rank, e in enumerate(q.topk, start=1):
            for ck, s in (e.per_checkpoint or {}).items():
                per_ck.setdefault(ck, []).append((s, rank, e))
        for ck, items in sorted(per_ck.items()):
            for rank, (s, _, e) in enumerate(sorted(items, key=lambda t: (-t[0], t[1])), start=1):
                evidence.append(_evidence(run_id, q.query_id, "influence", ck, rank, e, s))
        for rank, e in enumerate(record.lexical.get(q.query_id, []), start=1):
            evidence.append(_evidence(run_id, q.query_id, "lexical", None, rank, e, e.score))
        for ck, scores in sorted((q.by_checkpoint or {}).items()):
            ck_scores += [
                {"run_id": run_id, "query_id": q.query_id, "checkpoint_id": ck, "provider_id": p, "score": s}
                for p, s in sorted(scores.items())
            ]
        for e in [*q.topk, *record.lexical.get(q.query_id, [])]:
            if e.excerpt is not None and e.doc_id not in documents:
                documents[e.doc_id] = {
                    "run_id": run_id,
                    "doc_id": e.doc_id,
                    "provider_id": e.provider_id,
                    "excerpt": e.excerpt[:excerpt_chars],
                }
    return {
        QueryAttribution: attributions,
        AttributionEvidence: evidence,
        QueryCheckpointScore: ck_scores,
        RunDocument: list(documents.values()),
    }


def _evidence(run_id, query_id, channel, checkpoint_id, rank, e: TopKEntry, score: float) -> dict:
    return {
        "run_id": run_id,
        "query_id": query_id,
        "channel": channel,
        "checkpoint_id": checkpoint_id,
        "rank": rank,
        "example_id": e.example_id,
        "doc_id": e.doc_id,
        "provider_id": e.provider_id,
        "score": score,
    }


def _excerpt(text_: str | None, n: int) -> str | None:
    return None if text_ is None else text_[:n]


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
        _check_evidence(run_id, record, known)

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
    evidence = _evidence_rows(run_id, record, excerpt_chars)
    with engine.begin() as conn:
        lock(conn)
        if conn.execute(text("SELECT 1 FROM valuation_run WHERE run_id = :r"), {"r": run_id}).first():
            if conn.execute(text("SELECT 1 FROM run_reversal WHERE run_id = :r"), {"r": run_id}).first():
                raise RunReversedError(f"run {run_id} was reversed; set RunRecord.revaluation to value the batch again")
            return PostReport(run_id=run_id, entries_written=0, already_posted=True)
        live, releases = _live_credits(conn, list(by_query))
        if live:
            raise QueryAlreadyCreditedError(run_id, live)
        if not conn.execute(text("SELECT 1 FROM query_batch WHERE batch_id = :b"), {"b": record.batch_id}).first():
            _append(
                conn, QueryBatch, [{"batch_id": record.batch_id, "n_queries": len(record.queries), "created_at": now}]
            )
        _append(
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
        _append(
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
        _append(
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
            _append(conn, model, rows)
        _append(
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
        _append(
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
        _append(
            conn,
            RunQuery,
            [
                {
                    "run_id": run_id,
                    "query_id": q.query_id,
                    "lineage": q.lineage,
                    "prompt": _excerpt(q.prompt, excerpt_chars),
                    "response": _excerpt(q.response, excerpt_chars),
                    "value_micros": to_micros(q.value, f"query {q.query_id}"),
                    "confidence": q.confidence,
                    "basis": basis_of[q.query_id],
                }
                for q in record.queries
            ],
        )
        _append(
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
        _append(conn, EntrySplit, split_rows)
        _add_deltas(conn, _day_deltas(entries, run_id, day, "post"))
        append_link(conn, run_id, "post")
    return PostReport(run_id=run_id, entries_written=len(entries), already_posted=False)


def _write_entries(conn: Connection, entries: list[dict]) -> dict[str, int]:
    """Insert ledger entries; ``{idempotency_key: entry_id}``."""
    ids: dict[str, int] = {}
    stmt = insert(LedgerEntry.__table__).returning(LedgerEntry.entry_id, LedgerEntry.idempotency_key)
    for start in range(0, len(entries), _CHUNK):
        ids.update({key: eid for eid, key in conn.execute(stmt, entries[start : start + _CHUNK])})
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
    _append(conn, ProviderCreditDay, deltas)
    if not deltas:
        return
    cols = ("credit_micros", "queries", "runs")
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(ProviderDayTotal.__table__)
    stmt = stmt.on_conflict_do_update(
        index_elements=["day", "provider_id"],
        set_={c: getattr(ProviderDayTotal.__table__.c, c) + getattr(stmt.excluded, c) for c in cols},
    )
    rows = [{k: d[k] for k in ("day", "provider_id", *cols)} for d in deltas]
    for start in range(0, len(rows), _CHUNK):
        conn.execute(stmt, rows[start : start + _CHUNK])


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
        _append(conn, RunReversal, [{"run_id": run_id, "day": day, "reversed_by": by, "created_at": now}])
        ids = _write_entries(conn, rows)
        originals = conn.execute(
            text(
                "SELECT s.entry_id, s.checkpoint_id, s.provider_id, s.amount_micros, s.basis FROM entry_split s"
                " JOIN ledger_entry e ON e.entry_id = s.entry_id WHERE e.run_id = :r AND e.kind = 'credit'"
            ),
            {"r": run_id},
        ).all()
        new_id = {e.entry_id: ids[f"reversal:{e.idempotency_key}"] for e in credits}
        _append(
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
        _append(
            conn,
            QueryCredit,
            [{"query_id": q, "generation": g, "kind": "release", "run_id": run_id} for q, g in sorted(released)],
        )
        _add_deltas(conn, _day_deltas(rows, run_id, day, "reverse"))
        append_link(conn, run_id, "reverse")
    return len(rows)
