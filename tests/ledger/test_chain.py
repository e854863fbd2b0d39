"""Tamper evidence: append-only triggers on every table behind a credit, the hash chain, verify_ledger."""

from __future__ import annotations

import multiprocessing as mp

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError

from ledger import make_engine, open_ledger, post_run, reverse_run, set_provider, verify_ledger
from ledger.views import APPEND_ONLY_TABLES
from tests.ledger.helpers import record, setup_ledger, with_evidence


def three_runs(engine) -> list[str]:
    setup_ledger(engine, checkpoints=("ck1", "ck2"))
    runs = [
        post_run(engine, with_evidence(record(batch=f"b{i}", prefix=f"r{i}-", day=f"2026-11-2{i}"))).run_id
        for i in range(3)
    ]
    reverse_run(engine, runs[0], day="2026-11-25")
    return runs


def test_untouched_ledger_verifies_and_every_evidence_table_is_append_only(engine):
    three_runs(engine)
    set_provider(engine, "alpha", name="Alpha Corp")
    report = verify_ledger(engine)
    assert report.ok and report.links == 4 and len(report.head) == 64, str(report)
    for table in (*APPEND_ONLY_TABLES, "ledger_entry"):
        with engine.connect() as c:  # row triggers fire on rows: every table holds some
            assert c.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar() > 0, table
        for sql in (f"UPDATE {table} SET run_id = run_id", f"DELETE FROM {table}"):
            if table == "provider_info":
                sql = sql.replace("run_id = run_id", "name = name")
            with pytest.raises(DBAPIError, match="append-only"), engine.begin() as c:
                c.execute(text(sql))
    if engine.dialect.name == "postgresql":
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as c:
            c.execute(text("TRUNCATE query_attribution CASCADE"))
    assert verify_ledger(engine).ok


def _without_trigger(engine, table: str, trigger: str, sql: str, drop: bool) -> None:
    with engine.begin() as c:
        if drop:
            c.execute(text(f"DROP TRIGGER {trigger}" + (f" ON {table}" if engine.dialect.name == "postgresql" else "")))
        elif engine.dialect.name == "postgresql":
            c.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER {trigger}"))
        else:
            c.execute(text(f"DROP TRIGGER {trigger}"))  # SQLite cannot disable a trigger
        c.execute(text(sql))


def test_verify_names_the_run_after_an_attribution_update_with_the_trigger_disabled(engine):
    runs = three_runs(engine)
    sql = f"UPDATE query_attribution SET score = score * 10 WHERE run_id = '{runs[1]}' AND rank = 1"
    _without_trigger(engine, "query_attribution", "query_attribution_no_update", sql, drop=False)
    report = verify_ledger(engine)
    assert not report.ok and report.run_id == runs[1] and report.tables == ["query_attribution"], str(report)
    assert runs[1] in str(report) and "query_attribution" in str(report)


def test_verify_names_the_run_of_a_forged_entry(engine):
    runs = three_runs(engine)
    with engine.begin() as c:  # inserts are allowed: the chain is what catches them
        c.execute(
            text(
                "INSERT INTO ledger_entry (idempotency_key, run_id, provider_id, query_id, amount_micros, unit, kind,"
                " basis, day, created_at) VALUES ('forged', :r, 'gamma', 'r2-q1', 5000000, 'credit', 'credit',"
                " 'topk_share', '2026-11-22', CURRENT_TIMESTAMP)"
            ),
            {"r": runs[2]},
        )
    report = verify_ledger(engine)
    assert not report.ok and report.run_id == runs[2] and report.tables == ["ledger_entry"], str(report)


def test_verify_names_the_run_after_a_dropped_trigger_then_an_update(engine):
    runs = three_runs(engine)
    sql = f"UPDATE ledger_entry SET amount_micros = amount_micros + 1 WHERE run_id = '{runs[1]}'"
    _without_trigger(engine, "ledger_entry", "ledger_entry_no_update", sql, drop=True)
    report = verify_ledger(engine)
    assert not report.ok and report.run_id == runs[1] and "ledger_entry" in report.tables, str(report)


def test_a_forged_reversal_and_a_run_outside_the_chain_are_named(engine):
    runs = three_runs(engine)
    with engine.begin() as c:
        c.execute(
            text("INSERT INTO run_reversal (run_id, day, reversed_by, created_at) VALUES (:r, '2026-11-30', 'x', :t)"),
            {"r": runs[2], "t": "2026-11-30 00:00:00"},
        )
    report = verify_ledger(engine)
    assert not report.ok and report.run_id == runs[2] and report.event == "reverse", str(report)


def test_verify_checks_the_daily_totals_against_the_chained_deltas(engine):
    three_runs(engine)
    with engine.begin() as c:
        c.execute(text("UPDATE provider_day_total SET credit_micros = credit_micros + 1 WHERE provider_id = 'beta'"))
    report = verify_ledger(engine)
    assert not report.ok and report.tables == ["provider_day_total"] and "beta" in str(report), str(report)


def test_the_chain_cannot_fork(engine):
    three_runs(engine)
    with pytest.raises(IntegrityError), engine.begin() as c:
        prev = c.execute(text("SELECT prev_digest, run_id FROM run_digest WHERE seq = 2")).one()
        c.execute(
            text(
                "INSERT INTO run_digest (seq, run_id, event, prev_digest, digest, parts, created_at)"
                " VALUES (99, :r, 'post', :p, 'x', '{}', CURRENT_TIMESTAMP)"
            ),
            {"r": prev[1], "p": prev[0]},
        )


def _post(url: str, i: int, barrier, out) -> None:
    engine = make_engine(url)
    barrier.wait()
    out.put(post_run(engine, record(batch=f"c{i}", prefix=f"c{i}-")).entries_written)


def test_concurrent_posters_of_different_runs_leave_one_valid_chain(db_url):
    engine = open_ledger(db_url)
    setup_ledger(engine)
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(3), ctx.Queue()
    procs = [ctx.Process(target=_post, args=(db_url, i, barrier, out)) for i in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert sorted(out.get() for _ in procs) == [7, 7, 7]
    report = verify_ledger(engine)
    assert report.ok and report.links == 3, str(report)
