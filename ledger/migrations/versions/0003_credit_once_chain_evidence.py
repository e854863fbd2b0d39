"""One credit per query, reversals as rows, evidence for receipts, measured checkpoint splits,
daily totals, provider versions, a hash chain, append-only triggers on every table behind a credit.

Revision ID: 0003
Revises: 0002

Existing rows are kept and backfilled: a reversed run gets its ``run_reversal`` row, every entry
its checkpoint split by weight (``weight_share``: older runs measured nothing per checkpoint),
every query its ``query_credit`` row in posting order (a query an older ledger credited twice
keeps one live credit there: its first run still live), the daily totals, and the chain over all of it.
"""

import json
from collections import defaultdict
from datetime import date

import sqlalchemy as sa
from alembic import op

from ledger.chain import append_link
from ledger.policies import split_by_checkpoint
from ledger.views import append_only_sql, drop_views_0001_sql

revision = "0003"
down_revision = "0002"


def _id() -> sa.Column:
    return sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True)


def _run(index: bool = True) -> sa.Column:
    return sa.Column("run_id", sa.String(), sa.ForeignKey("valuation_run.run_id"), nullable=False, index=index)


def _tables() -> None:
    op.create_table(
        "ledger_lock", sa.Column("lock_id", sa.Integer(), primary_key=True), sa.Column("n", sa.BigInteger())
    )
    op.create_table(
        "run_reversal",
        sa.Column("run_id", sa.String(), sa.ForeignKey("valuation_run.run_id"), primary_key=True),
        sa.Column("day", sa.String(), nullable=False),
        sa.Column("reversed_by", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "query_credit",
        _id(),
        sa.Column("query_id", sa.String(), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        _run(),
        sa.UniqueConstraint("query_id", "generation", "kind"),
        sa.CheckConstraint("kind IN ('credit', 'release')", name="ck_query_credit_kind"),
    )
    op.create_table(
        "run_info",
        sa.Column("run_id", sa.String(), sa.ForeignKey("valuation_run.run_id"), primary_key=True),
        sa.Column("mode", sa.String(), nullable=True),
        sa.Column("topk_method", sa.String(), nullable=True),
        sa.Column("metrics", sa.Text(), nullable=False),
        sa.Column("excerpt_chars", sa.Integer(), nullable=False),
    )
    op.create_table(
        "run_query",
        _id(),
        _run(),
        sa.Column("query_id", sa.String(), nullable=False, index=True),
        sa.Column("lineage", sa.String(), nullable=True),
        sa.Column("prompt", sa.Text(), nullable=True),
        sa.Column("response", sa.Text(), nullable=True),
        sa.Column("value_micros", sa.BigInteger(), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column("basis", sa.String(), nullable=False),
        sa.UniqueConstraint("run_id", "query_id"),
    )
    op.create_table(
        "run_document",
        _id(),
        _run(),
        sa.Column("doc_id", sa.String(), nullable=False),
        sa.Column("provider_id", sa.String(), nullable=False),
        sa.Column("excerpt", sa.Text(), nullable=False),
        sa.UniqueConstraint("run_id", "doc_id"),
    )
    op.create_table(
        "attribution_evidence",
        _id(),
        _run(),
        sa.Column("query_id", sa.String(), nullable=False),
        sa.Column("channel", sa.String(), nullable=False),
        sa.Column("checkpoint_id", sa.String(), nullable=True),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("example_id", sa.String(), nullable=False),
        sa.Column("doc_id", sa.String(), nullable=False),
        sa.Column("provider_id", sa.String(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
    )
    op.create_table(
        "query_checkpoint_score",
        _id(),
        _run(),
        sa.Column("query_id", sa.String(), nullable=False),
        sa.Column("checkpoint_id", sa.String(), nullable=False),
        sa.Column("provider_id", sa.String(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.UniqueConstraint("run_id", "query_id", "checkpoint_id", "provider_id"),
    )
    op.create_table(
        "entry_split",
        _id(),
        sa.Column("entry_id", sa.Integer(), sa.ForeignKey("ledger_entry.entry_id"), nullable=False, index=True),
        sa.Column("run_id", sa.String(), nullable=False, index=True),
        sa.Column("checkpoint_id", sa.String(), nullable=False),
        sa.Column("provider_id", sa.String(), nullable=False),
        sa.Column("amount_micros", sa.BigInteger(), nullable=False),
        sa.Column("basis", sa.String(), nullable=False),
    )
    op.create_table(
        "provider_credit_day",
        _id(),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("provider_id", sa.String(), nullable=False, index=True),
        sa.Column("run_id", sa.String(), nullable=False, index=True),
        sa.Column("event", sa.String(), nullable=False),
        sa.Column("credit_micros", sa.BigInteger(), nullable=False),
        sa.Column("queries", sa.Integer(), nullable=False),
        sa.Column("runs", sa.Integer(), nullable=False),
    )
    op.create_index("ix_provider_credit_day_day_provider", "provider_credit_day", ["day", "provider_id"])
    op.create_table(
        "provider_info",
        _id(),
        sa.Column("provider_id", sa.String(), sa.ForeignKey("provider.provider_id"), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("metadata", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("provider_id", "version"),
    )
    op.create_table(
        "run_digest",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=False),
        _run(),
        sa.Column("event", sa.String(), nullable=False),
        sa.Column("prev_digest", sa.String(), nullable=False, unique=True),
        sa.Column("digest", sa.String(), nullable=False),
        sa.Column("parts", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def _insert(conn, table: str, rows: list[dict]) -> None:
    if rows:
        cols = list(rows[0])
        sql = f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join(':' + c for c in cols)})"
        conn.execute(sa.text(sql), rows)


def _backfill(conn) -> None:
    q = lambda sql, **p: conn.execute(sa.text(sql), p).all()  # noqa: E731
    runs = q("SELECT run_id, day, status, config, started_at FROM valuation_run")
    entries = q(
        "SELECT entry_id, run_id, provider_id, query_id, amount_micros, kind, basis, day, created_at"
        " FROM ledger_entry ORDER BY entry_id"
    )
    weights: dict[str, dict[str, float]] = defaultdict(dict)
    for run_id, ck, w in q("SELECT run_id, checkpoint_id, weight FROM run_checkpoint"):
        weights[run_id][ck] = w
    by_run = defaultdict(list)
    for e in entries:
        by_run[e.run_id].append(e)
    queries: dict[str, dict[str, list]] = defaultdict(dict)  # run → query → [micros, basis]
    for run_id, qid in q("SELECT DISTINCT run_id, query_id FROM query_provider_score"):
        queries[run_id].setdefault(qid, [0, ""])
    events = []
    for r in runs:
        for e in by_run[r.run_id]:
            if e.kind != "reversal" and e.query_id is not None:
                row = queries[r.run_id].setdefault(e.query_id, [0, ""])
                row[0] += e.amount_micros
                row[1] = max(row[1], e.basis)
        config = json.loads(r.config or "{}")
        mode = config.get("mode") if isinstance(config, dict) else None
        _insert(
            conn,
            "run_info",
            [{"run_id": r.run_id, "mode": mode, "topk_method": None, "metrics": "{}", "excerpt_chars": 0}],
        )
        _insert(
            conn,
            "run_query",
            [
                {
                    "run_id": r.run_id,
                    "query_id": qid,
                    "lineage": None,
                    "prompt": None,
                    "response": None,
                    "value_micros": v[0],
                    "confidence": None,
                    "basis": v[1],
                }
                for qid, v in sorted(queries[r.run_id].items())
            ],
        )
        reversals = [e for e in by_run[r.run_id] if e.kind == "reversal"]
        reversed_ = r.status == "reversed" or bool(reversals)
        events.append((int(not reversed_), str(r.started_at), 0, r.run_id, "post"))
        if reversed_:
            when = min((str(e.created_at) for e in reversals), default=str(r.started_at))
            day = min((e.day for e in reversals), default=r.day)
            _insert(conn, "run_reversal", [{"run_id": r.run_id, "day": day, "reversed_by": "", "created_at": when}])
            events.append((0, when, 1, r.run_id, "reverse"))
    live: dict[str, int] = {}  # query → generation of its live credit
    releases: dict[str, int] = defaultdict(int)
    # Reversed runs first (credit, then release), then the live ones: a query an older ledger
    # credited in overlapping runs ends with its live run's credit.
    for *_, run_id, event in sorted(events):
        kinds = ("reversal",) if event == "reverse" else ("credit", "adjustment")
        mine = [e for e in by_run[run_id] if e.kind in kinds]
        splits = []
        for e in mine:
            parts, basis = split_by_checkpoint(e.amount_micros, e.provider_id, None, weights[run_id] or {"": 1.0})
            splits += [
                {
                    "entry_id": e.entry_id,
                    "run_id": run_id,
                    "checkpoint_id": ck,
                    "provider_id": e.provider_id,
                    "amount_micros": m,
                    "basis": basis,
                }
                for ck, m in sorted(parts.items())
                if m
            ]
        _insert(conn, "entry_split", splits)
        deltas: dict[tuple, dict] = {}
        for e in mine:
            d = deltas.setdefault(
                (e.day, e.provider_id),
                {
                    "day": date.fromisoformat(e.day),
                    "provider_id": e.provider_id,
                    "run_id": run_id,
                    "event": event,
                    "credit_micros": 0,
                    "queries": 0,
                    "runs": -1 if event == "reverse" else 1,
                },
            )
            d["credit_micros"] += e.amount_micros
            d["queries"] += (-1 if event == "reverse" else 1) if e.query_id is not None else 0
        _insert(conn, "provider_credit_day", [deltas[k] for k in sorted(deltas)])
        credit_rows = []
        if event == "post":
            for qid in sorted(queries[run_id]):
                if qid not in live:
                    live[qid] = releases[qid]
                    credit_rows.append(
                        {"query_id": qid, "generation": releases[qid], "kind": "credit", "run_id": run_id}
                    )
        else:
            for qid, gen, run in q(
                "SELECT query_id, generation, run_id FROM query_credit WHERE run_id = :r AND kind = 'credit'", r=run_id
            ):
                if live.get(qid) == gen:
                    del live[qid]
                    releases[qid] += 1
                    credit_rows.append({"query_id": qid, "generation": gen, "kind": "release", "run_id": run})
        _insert(conn, "query_credit", credit_rows)
        append_link(conn, run_id, event)


def upgrade() -> None:
    conn = op.get_bind()
    for sql in drop_views_0001_sql():
        op.execute(sql)
    _tables()
    op.execute("INSERT INTO ledger_lock (lock_id, n) VALUES (1, 0)")
    _backfill(conn)
    for sql in append_only_sql(conn.dialect.name):
        op.execute(sql)
    # The views come back in 0004, over the per-day totals it adds.
