"""Revisions 0003 and 0004 upgrade a 0002 ledger with its rows intact, backfilled and chained."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import text

from ledger import (
    HEAD,
    VIEWS,
    credited_queries,
    current_revision,
    make_engine,
    open_ledger,
    post_run,
    read_view,
    reverse_run,
    upgrade,
    verify_ledger,
)
from tests.ledger.helpers import record, setup_ledger

OLD_ROWS = [
    "INSERT INTO provider (provider_id, name, status, created_at) VALUES ('p', 'P', 'active', '2026-01-01')",
    "INSERT INTO provider (provider_id, name, status, created_at) VALUES ('q', 'Q', 'active', '2026-01-01')",
    "INSERT INTO checkpoint (checkpoint_id, path, lineage, registered_at) VALUES ('c1', '', 'l', '2026-01-01')",
    "INSERT INTO checkpoint (checkpoint_id, path, lineage, registered_at) VALUES ('c2', '', 'l', '2026-01-01')",
    "INSERT INTO query_batch VALUES ('b', 2, '2026-01-01')",
    *(
        "INSERT INTO valuation_run (run_id, batch_id, config_hash, config, artifact_hashes, code_version, policy,"
        f" policy_params, status, started_at, day) VALUES ('{r}', 'b', 'c', '{{\"mode\": \"kfac\"}}', '{{}}', 'v',"
        f" 'topk_share', '{{}}', '{status}', '2026-01-0{i + 1} 00:00:00', '2026-01-0{i + 1}')"
        for i, (r, status) in enumerate([("r1", "reversed"), ("r2", "posted")])
    ),
    "INSERT INTO run_checkpoint VALUES ('r1', 'c1', 't', 1, 1.0, 0.25)",
    "INSERT INTO run_checkpoint VALUES ('r1', 'c2', 't', 1, 3.0, 0.75)",
    "INSERT INTO run_checkpoint VALUES ('r2', 'c1', 't', 2, 1.0, 1.0)",
    "INSERT INTO query_attribution (run_id, query_id, rank, example_id, doc_id, provider_id, score)"
    " VALUES ('r1', 'x', 1, 'd#0', 'd', 'p', 2.5)",
    "INSERT INTO query_provider_score (run_id, query_id, provider_id, score, positive_score)"
    " VALUES ('r1', 'x', 'p', 2.5, 2.5)",
    "INSERT INTO provider_score (run_id, provider_id, influence_sum, positive_sum, topk_hits)"
    " VALUES ('r1', 'p', 2.5, 2.5, 1)",
    *(
        "INSERT INTO ledger_entry (idempotency_key, run_id, provider_id, query_id, amount_micros, unit, kind, basis,"
        f" reverses_entry_id, day, created_at) VALUES ('k{n}', '{r}', '{p}', '{qid}', {m}, 'credit', '{kind}',"
        f" 'topk_share', {rev}, '{day}', '{day} 00:00:00')"
        for n, (r, p, qid, m, kind, rev, day) in enumerate(
            [
                ("r1", "p", "x", 1_000_001, "credit", "NULL", "2026-01-01"),
                ("r1", "q", "x", 999_999, "credit", "NULL", "2026-01-01"),
                ("r1", "p", "x", -1_000_001, "reversal", 1, "2026-01-03"),
                ("r1", "q", "x", -999_999, "reversal", 2, "2026-01-03"),
                ("r2", "p", "x", 2_000_000, "credit", "NULL", "2026-01-02"),
                ("r2", "q", "y", 500_000, "credit", "NULL", "2026-01-02"),
            ]
        )
    ),
]


def test_a_0002_ledger_upgrades_with_rows_intact(db_url):
    engine = make_engine(db_url)
    upgrade(engine, "0002")
    with engine.begin() as c:
        for sql in OLD_ROWS:
            c.execute(text(sql))
        before = {
            t: sorted(map(tuple, c.execute(text(f"SELECT * FROM {t}")).all()))
            for t in ("ledger_entry", "valuation_run", "run_checkpoint", "query_attribution", "provider_score")
        }
    assert current_revision(engine) == "0002"
    upgrade(engine, "0003")  # a stop at 0003, as ledgers made before 0004 are
    assert current_revision(engine) == "0003"
    engine.dispose()
    engine = open_ledger(db_url)
    assert current_revision(engine) == HEAD
    with engine.connect() as c:
        for table, rows in before.items():
            assert sorted(map(tuple, c.execute(text(f"SELECT * FROM {table}")).all())) == rows, table
        splits = dict(
            c.execute(text("SELECT checkpoint_id, SUM(amount_micros) FROM entry_split GROUP BY checkpoint_id")).all()
        )
    assert splits == {"c1": 2_500_000, "c2": 0}  # r1 split 1:3 by weight then reversed; r2 all on c1
    assert all(read_view(engine, v) for v in VIEWS)
    summary = {r["run_id"]: r for r in read_view(engine, "v_run_summary")}
    assert summary["r1"]["status"] == "reversed" and summary["r1"]["total_credit"] == Decimal(0)
    assert summary["r2"]["total_credit"] == Decimal("2.5")
    daily = {(str(r["day"]), r["provider_id"]): r["credit"] for r in read_view(engine, "v_provider_credit_daily")}
    assert daily[("2026-01-03", "p")] == Decimal("-1.000001")
    assert verify_ledger(engine).ok
    assert credited_queries(engine, ["x", "y"]) == {"x", "y"}  # x: released by r1's reversal, credited by r2
    assert reverse_run(engine, "r2", day="2026-01-04") == 2
    assert credited_queries(engine, ["x", "y"]) == set()
    setup_ledger(engine)
    post_run(engine, record(prefix="new-"))
    report = verify_ledger(engine)
    assert report.ok and report.links == 5, str(report)
