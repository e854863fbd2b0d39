"""One live credit per query: ``query_credit`` rows, read back as live credits."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import Connection, Engine, select

from ledger.models import QueryCredit
from ledger.rows import CHUNK


def live_credits_in(conn: Connection, query_ids: Sequence[str]) -> tuple[dict[str, str], dict[str, int]]:
    """``({query: run of its live credit}, {query: releases so far})`` for ``query_ids``."""
    t = QueryCredit.__table__.c
    credited: dict[tuple[str, int], str] = {}
    released: set[tuple[str, int]] = set()
    ids = sorted(set(query_ids))
    for start in range(0, len(ids), CHUNK):
        stmt = select(t.query_id, t.generation, t.kind, t.run_id).where(t.query_id.in_(ids[start : start + CHUNK]))
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
        return live_credits_in(conn, list(query_ids))[0]


def credited_queries(engine: Engine, query_ids: Iterable[str]) -> set[str]:
    """The queries among ``query_ids`` that a live (posted, not reversed) run has credited."""
    return set(live_credits(engine, query_ids))
