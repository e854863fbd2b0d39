"""The hash chain over postings and reversals, and :func:`verify_ledger` that recomputes it.

Each link (one per posting, one per reversal, ordered by ``seq``) stores a SHA-256 digest per
table of the rows it covers (``parts``) and ``digest = sha256(prev_digest, seq, run, event, parts)``.
Rows are canonicalised (floats by ``repr``, dates as ISO text) and sorted in Python, so SQLite and
PostgreSQL give the same digests. Anyone who can rewrite every later link can forge a chain: keep
the head digest (``VerifyReport.head``) somewhere else to pin it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import Connection, Engine, text

GENESIS = "0" * 64

_NOT_REVERSAL = "kind <> 'reversal'"
POST_PARTS: dict[str, str] = {
    "valuation_run": (
        "SELECT run_id, batch_id, config_hash, config, artifact_hashes, code_version, policy, policy_params, day"
        " FROM valuation_run WHERE run_id = :run"
    ),
    "run_info": "SELECT mode, topk_method, metrics, excerpt_chars FROM run_info WHERE run_id = :run",
    "run_checkpoint": (
        "SELECT checkpoint_id, gradient_table, table_version, weight, share FROM run_checkpoint WHERE run_id = :run"
    ),
    "query_attribution": (
        "SELECT query_id, rank, example_id, doc_id, provider_id, score FROM query_attribution WHERE run_id = :run"
    ),
    "attribution_evidence": (
        "SELECT query_id, channel, checkpoint_id, rank, example_id, doc_id, provider_id, score"
        " FROM attribution_evidence WHERE run_id = :run"
    ),
    "query_provider_score": (
        "SELECT query_id, provider_id, score, positive_score FROM query_provider_score WHERE run_id = :run"
    ),
    "query_checkpoint_score": (
        "SELECT query_id, checkpoint_id, provider_id, score FROM query_checkpoint_score WHERE run_id = :run"
    ),
    "provider_score": (
        "SELECT provider_id, influence_sum, positive_sum, topk_hits FROM provider_score WHERE run_id = :run"
    ),
    "run_query": (
        "SELECT query_id, lineage, prompt, response, value_micros, confidence, basis FROM run_query WHERE run_id = :run"
    ),
    "run_document": "SELECT doc_id, provider_id, excerpt FROM run_document WHERE run_id = :run",
    "ledger_entry": (
        "SELECT entry_id, idempotency_key, provider_id, query_id, amount_micros, unit, kind, basis,"
        f" reverses_entry_id, day FROM ledger_entry WHERE run_id = :run AND {_NOT_REVERSAL}"
    ),
    "entry_split": (
        "SELECT s.entry_id, s.run_id, s.checkpoint_id, s.provider_id, s.amount_micros, s.basis FROM entry_split s"
        " JOIN ledger_entry e ON e.entry_id = s.entry_id WHERE e.run_id = :run AND e.kind <> 'reversal'"
    ),
    "query_credit": "SELECT query_id, generation, kind FROM query_credit WHERE run_id = :run AND kind = 'credit'",
    "provider_credit_day": (
        "SELECT day, provider_id, credit_micros, queries, runs FROM provider_credit_day"
        " WHERE run_id = :run AND event = 'post'"
    ),
}
REVERSE_PARTS: dict[str, str] = {
    "run_reversal": "SELECT run_id, day, reversed_by FROM run_reversal WHERE run_id = :run",
    "ledger_entry": (
        "SELECT entry_id, idempotency_key, provider_id, query_id, amount_micros, unit, kind, basis,"
        " reverses_entry_id, day FROM ledger_entry WHERE run_id = :run AND kind = 'reversal'"
    ),
    "entry_split": (
        "SELECT s.entry_id, s.run_id, s.checkpoint_id, s.provider_id, s.amount_micros, s.basis FROM entry_split s"
        " JOIN ledger_entry e ON e.entry_id = s.entry_id WHERE e.run_id = :run AND e.kind = 'reversal'"
    ),
    "query_credit": "SELECT query_id, generation, kind FROM query_credit WHERE run_id = :run AND kind = 'release'",
    "provider_credit_day": (
        "SELECT day, provider_id, credit_micros, queries, runs FROM provider_credit_day"
        " WHERE run_id = :run AND event = 'reverse'"
    ),
}
PARTS = {"post": POST_PARTS, "reverse": REVERSE_PARTS}


def _canon(v):
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, int | str) or v is None:
        return v
    if isinstance(v, datetime | date):
        return v.isoformat()[:10] if not isinstance(v, datetime) else v.isoformat()
    if isinstance(v, Decimal):
        return str(v)
    return str(v)


def part_digests(conn: Connection, run_id: str, event: str) -> dict[str, str]:
    """``{table: sha256}`` over the rows of ``run_id`` that link ``event`` covers (order-free)."""
    out = {}
    for table, sql in PARTS[event].items():
        lines = sorted(json.dumps([_canon(v) for v in row]) for row in conn.execute(text(sql), {"run": run_id}))
        out[table] = hashlib.sha256("\n".join(lines).encode()).hexdigest()
    return out


def link_digest(prev: str, seq: int, run_id: str, event: str, parts: dict[str, str]) -> str:
    blob = json.dumps({"prev": prev, "seq": seq, "run": run_id, "event": event, "parts": parts}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def append_link(conn: Connection, run_id: str, event: str) -> str:
    """Chain ``run_id``'s rows for ``event``; call inside the posting transaction, holding the lock."""
    last = conn.execute(text("SELECT seq, digest FROM run_digest ORDER BY seq DESC LIMIT 1")).first()
    seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
    parts = part_digests(conn, run_id, event)
    digest = link_digest(prev, seq, run_id, event, parts)
    conn.execute(
        text(
            "INSERT INTO run_digest (seq, run_id, event, prev_digest, digest, parts, created_at)"
            " VALUES (:seq, :run, :event, :prev, :digest, :parts, CURRENT_TIMESTAMP)"
        ),
        {"seq": seq, "run": run_id, "event": event, "prev": prev, "digest": digest, "parts": json.dumps(parts)},
    )
    return digest


@dataclass
class VerifyReport:
    """``ok`` or the first link that does not match: its run, event, the tables that differ and why."""

    ok: bool
    links: int
    head: str | None = None
    run_id: str | None = None
    seq: int | None = None
    event: str | None = None
    tables: list[str] = field(default_factory=list)
    reason: str = ""

    def __str__(self) -> str:
        if self.ok:
            return f"ledger verified: {self.links} links, head {self.head}"
        where = f"link {self.seq} ({self.event})" if self.seq is not None else "outside the chain"
        tables = f" in {', '.join(self.tables)}" if self.tables else ""
        run = f"run {self.run_id}, {where}" if self.run_id else "derived totals"
        return f"ledger does not verify: {run}{tables}: {self.reason}"


def verify_ledger(engine: Engine) -> VerifyReport:
    """Recompute the chain from the rows; name the first run whose rows or link do not match."""
    with engine.connect() as conn:
        links = conn.execute(
            text("SELECT seq, run_id, event, prev_digest, digest, parts FROM run_digest ORDER BY seq")
        ).all()
        prev, chained = GENESIS, set()
        for expected, (seq, run_id, event, prev_digest, digest, parts_json) in enumerate(links, start=1):
            bad = VerifyReport(False, len(links), run_id=run_id, seq=seq, event=event)
            if seq != expected or prev_digest != prev:
                bad.reason = f"the chain is broken before this link (expected seq {expected} after {prev[:12]})"
                return bad
            stored = json.loads(parts_json)
            parts = part_digests(conn, run_id, event)
            differ = sorted(t for t in parts.keys() | stored.keys() if parts.get(t) != stored.get(t))
            if differ:
                bad.tables, bad.reason = differ, "rows differ from the ones chained at posting"
                return bad
            if link_digest(prev, seq, run_id, event, parts) != digest:
                bad.tables, bad.reason = ["run_digest"], "the link's digest does not match its contents"
                return bad
            prev = digest
            chained.add((run_id, event))
        unchained = [(r, "post", "valuation_run") for (r,) in conn.execute(text("SELECT run_id FROM valuation_run"))]
        for table, where in (
            ("run_reversal", ""),
            ("ledger_entry", " WHERE kind = 'reversal'"),
            ("query_credit", " WHERE kind = 'release'"),
            ("provider_credit_day", " WHERE event = 'reverse'"),
        ):
            rows = conn.execute(text(f"SELECT DISTINCT run_id FROM {table}{where}"))
            unchained += [(r, "reverse", table) for (r,) in rows]
        for run_id, event, table in sorted(unchained):
            if (run_id, event) not in chained:
                return VerifyReport(
                    False, len(links), run_id=run_id, event=event, tables=[table], reason="this run is not in the chain"
                )
        # Totals are compared in Python: a join of two aggregates has no index to use on SQLite.
        chained = {
            (str(d), p): (c, q, n)
            for d, p, c, q, n in conn.execute(
                text(
                    "SELECT day, provider_id, SUM(credit_micros), SUM(queries), SUM(runs) FROM provider_credit_day"
                    " GROUP BY day, provider_id"
                )
            )
        }
        kept = {
            (str(d), p): (c, q, n)
            for d, p, c, q, n in conn.execute(
                text("SELECT day, provider_id, credit_micros, queries, runs FROM provider_day_total")
            )
        }
        differ = sorted(k for k in chained.keys() | kept.keys() if chained.get(k) != kept.get(k))
        if differ:
            day, provider = differ[0]
            return VerifyReport(
                False,
                len(links),
                tables=["provider_day_total"],
                reason=f"the totals of provider {provider} on {day} differ from the chained deltas",
            )
    return VerifyReport(True, len(links), head=prev if links else None)
