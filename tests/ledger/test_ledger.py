"""Posting, idempotency, reversals, append-only entries, views and upgrades on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import multiprocessing as mp
from dataclasses import replace
from decimal import Decimal

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError

from ledger import (
    HEAD,
    PolicyInputError,
    TopKEntry,
    current_revision,
    make_engine,
    open_ledger,
    post_run,
    read_view,
    register_checkpoint,
    reverse_run,
    statement,
    upgrade,
    withdraw_provider,
)
from tests.ledger.helpers import record, setup_ledger

VIEW_COLUMNS = {  # the five original views' contract: names and columns
    "v_provider_credit_daily": ("day, provider_id", ["day", "provider_id", "credit"]),
    "v_provider_credit_by_checkpoint": ("checkpoint_id, provider_id", ["checkpoint_id", "provider_id", "credit"]),
    "v_query_provider_credit": (
        "run_id, query_id, provider_id",
        ["run_id", "query_id", "provider_id", "score", "credit"],
    ),
    "v_provider_top_documents": ("provider_id, doc_id", ["provider_id", "doc_id", "times_in_topk", "total_score"]),
    "v_run_summary": (
        "run_id",
        ["run_id", "checkpoints", "queries", "providers_credited", "total_credit", "status"],
    ),
}


def entries(engine):
    with engine.connect() as c:
        return c.execute(
            text("SELECT run_id, query_id, provider_id, amount_micros, kind, basis FROM ledger_entry ORDER BY entry_id")
        ).all()


def views(engine) -> dict:
    """The five original views, read with their declared types (numbers rounded to compare)."""
    out = {}
    for name, (order, cols) in VIEW_COLUMNS.items():
        out[name] = [
            tuple(round(float(r[c]), 6) if isinstance(r[c], float | Decimal) else r[c] for c in cols)
            for r in read_view(engine, name, order_by=order)
        ]
    return out


def test_post_run_splits_each_query_exactly(engine):
    setup_ledger(engine)
    report = post_run(engine, record())
    assert report.entries_written == 7 and not report.already_posted
    rows = entries(engine)
    by_query: dict[str, int] = {}
    for _, qid, _, micros, kind, _ in rows:
        assert kind == "credit"
        by_query[qid] = by_query.get(qid, 0) + micros
    assert by_query == {"q1": 1_000_000, "q2": 2_500_000, "q3": 333_333}
    q1 = {p: m for _, q, p, m, _, _ in rows if q == "q1"}
    assert q1 == {"alpha": 750_000, "beta": 250_000}
    assert {b for _, q, _, _, _, b in rows if q == "q3"} == {"fallback_pro_rata"}
    v = views(engine)
    assert v["v_run_summary"] == [(report.run_id, 1, 3, 3, 3.833333, "posted")]
    assert ("alpha", "alpha-doc0", 1, 3.0) in v["v_provider_top_documents"]
    assert (report.run_id, "q1", "alpha", 3.0, 0.75) in v["v_query_provider_credit"]


def test_views_are_identical_on_sqlite_and_postgresql(tmp_path, postgres):
    results = []
    for url in (f"sqlite:///{tmp_path / 'a.db'}", postgres.create_database("views_equal")):
        engine = open_ledger(url)
        setup_ledger(engine, checkpoints=("ck1", "ck2"))
        post_run(engine, record())
        post_run(engine, record(batch="b2", checkpoints=(("ck1", 1.0), ("ck2", 3.0)), day="2026-11-21", prefix="b2-"))
        results.append(views(engine))
        engine.dispose()
    assert results[0] == results[1]
    by_ck = dict(((c, p), credit) for c, p, credit in results[0]["v_provider_credit_by_checkpoint"])
    # b2 credits alpha 0.75 (q1) + 0.055556 (q3 fallback, the tie-breaking micro) and ck2 holds 3/4 of b2.
    assert by_ck[("ck2", "alpha")] == pytest.approx((0.75 + 0.055556) * 0.75, abs=1e-6)


def test_posting_twice_is_a_no_op(engine):
    setup_ledger(engine)
    first = post_run(engine, record())
    again = post_run(engine, record())
    assert again.already_posted and again.entries_written == 0 and again.run_id == first.run_id
    assert len(entries(engine)) == 7


def _post_in_process(url: str, barrier, out):
    engine = make_engine(url)
    barrier.wait()
    out.put(post_run(engine, record()).entries_written)


def test_two_processes_posting_the_same_run_leave_one_set(db_url):
    engine = open_ledger(db_url)
    setup_ledger(engine)
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_post_in_process, args=(db_url, barrier, out)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert sorted(out.get() for _ in procs) == [0, 7]
    assert len(entries(engine)) == 7


def test_an_exception_mid_posting_leaves_nothing(engine):
    setup_ledger(engine)
    bad = record()
    # The run row and attributions go in before this NULL doc_id breaks the NOT NULL constraint.
    bad.queries[1].topk.append(TopKEntry("x#0", None, "beta", 0.1))
    with pytest.raises(IntegrityError):
        post_run(engine, bad)
    with engine.connect() as c:
        for table in ("valuation_run", "query_attribution", "provider_score", "ledger_entry", "query_batch"):
            assert c.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar() == 0, table


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda r: r.queries[0].topk.append(TopKEntry("z#0", "z", "zeta", 1.0)), "unknown provider"),
        (lambda r: setattr(r.queries[0], "value", "-2"), ">= 0"),
        (lambda r: r.queries[1].topk.__setitem__(0, TopKEntry("b#0", "b", "beta", float("nan"))), "nan"),
        (lambda r: setattr(r, "checkpoints", [replace(r.checkpoints[0], checkpoint_id="nope")]), "unknown checkpoint"),
        (lambda r: setattr(r, "policy", "everyone_gets_a_pony"), "unknown policy"),
    ],
)
def test_bad_inputs_write_nothing(engine, mutate, match):
    setup_ledger(engine)
    bad = record()
    mutate(bad)
    with pytest.raises(PolicyInputError, match=match):
        post_run(engine, bad)
    assert entries(engine) == []


def test_reversal_nets_to_zero_and_entries_are_append_only(engine):
    setup_ledger(engine)
    run = post_run(engine, record()).run_id
    assert reverse_run(engine, run, day="2026-11-21") == 7
    assert reverse_run(engine, run) == 0  # once
    with engine.connect() as c:
        assert c.execute(text("SELECT SUM(amount_micros) FROM ledger_entry")).scalar() == 0
        linked = c.execute(
            text("SELECT COUNT(*) FROM ledger_entry WHERE kind='reversal' AND reverses_entry_id IS NOT NULL")
        )
        assert linked.scalar() == 7
    assert views(engine)["v_run_summary"][0][-2:] == (0.0, "reversed")
    for sql in ("UPDATE ledger_entry SET amount_micros = 0", "DELETE FROM ledger_entry"):
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as c:
            c.execute(text(sql))
    assert len(entries(engine)) == 14


def test_withdrawn_provider_gets_nothing_for_later_checkpoints(engine):
    setup_ledger(engine)
    withdraw_provider(engine, "alpha")
    register_checkpoint(engine, "ck-later", lineage="run-a", step=9)
    later = post_run(engine, record(checkpoints=(("ck-later", 1.0),)))
    rows = [r for r in entries(engine) if r[0] == later.run_id]
    assert "alpha" not in {r[2] for r in rows}
    assert sum(r[3] for r in rows if r[1] == "q1") == 1_000_000  # beta takes q1 whole
    earlier = post_run(engine, record(batch="b-old", prefix="old-"))  # ck1 predates the withdrawal
    assert "alpha" in {r[2] for r in entries(engine) if r[0] == earlier.run_id}


def test_statement_renders_table_csv_json(engine):
    setup_ledger(engine)
    post_run(engine, record())
    st = statement(engine, "beta", start="2026-11-01", end="2026-11-30")
    assert st.total == Decimal("0.25") + Decimal("2.5") * Decimal("0.75") / Decimal("1") * 1 + Decimal("0.111111")
    assert "q2" in st.to_csv() and "beta-doc0" in st.to_csv()
    assert json.loads(st.to_json())["total"] == str(st.total)
    assert statement(engine, "beta", start="2026-12-01").lines == []


def test_older_schema_upgrades_with_rows_intact(db_url):
    engine = make_engine(db_url)
    upgrade(engine, "0001")
    with engine.begin() as c:
        c.execute(
            text(
                "INSERT INTO provider (provider_id, name, status, created_at) VALUES ('p', 'P', 'active', '2026-01-01')"
            )
        )
        c.execute(text("INSERT INTO query_batch VALUES ('b', 1, '2026-01-01')"))
        c.execute(
            text(
                "INSERT INTO valuation_run (run_id, batch_id, config_hash, config, artifact_hashes, code_version,"
                " policy, policy_params, status, started_at, day)"
                " VALUES ('r', 'b', 'c', '{}', '{}', 'v', 'topk_share', '{}', 'posted', '2026-01-01', '2026-01-01')"
            )
        )
        c.execute(
            text("INSERT INTO query_provider_score (run_id, query_id, provider_id, score) VALUES ('r', 'q', 'p', 2.5)")
        )
        c.execute(
            text(
                "INSERT INTO ledger_entry (idempotency_key, run_id, provider_id, query_id, amount_micros, unit, kind,"
                " basis, day, created_at) VALUES ('k', 'r', 'p', 'q', 1234567, 'credit', 'credit', 'topk_share',"
                " '2026-01-01', '2026-01-01')"
            )
        )
    assert current_revision(engine) == "0001"
    upgraded = open_ledger(db_url)
    assert current_revision(upgraded) == HEAD
    with upgraded.connect() as c:
        assert c.execute(text("SELECT score, positive_score FROM query_provider_score")).one() == (2.5, 0.0)
        assert c.execute(text("SELECT amount_micros FROM ledger_entry")).scalar() == 1234567
        assert float(c.execute(text("SELECT credit FROM v_provider_credit_daily")).scalar()) == pytest.approx(1.234567)
