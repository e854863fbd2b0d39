"""What SQL can see: receipts, evidence, measured checkpoint splits, run health, provider summaries."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date
from decimal import Decimal

import pytest
from sqlalchemy import text

from ledger import (
    VIEWS,
    TopKEntry,
    UnknownQueryError,
    UnknownViewError,
    attributions,
    credits,
    open_ledger,
    post_run,
    query_receipt,
    read_view,
    reverse_run,
    runs,
    set_provider,
)
from tests.ledger.helpers import query, record, setup_ledger, with_evidence


def by_checkpoint(engine) -> dict[tuple[str, str], Decimal]:
    return {
        (r["checkpoint_id"], r["provider_id"]): r["credit"]
        for r in read_view(engine, "v_provider_credit_by_checkpoint")
    }


def test_by_checkpoint_credit_is_measured_from_each_checkpoints_scores(engine):
    setup_ledger(engine, checkpoints=("ck1", "ck2"))
    two = (("ck1", 1.0), ("ck2", 1.0))
    post_run(engine, with_evidence(record(checkpoints=two), influence={"ck1": 3.0, "ck2": 1.0}))
    post_run(
        engine, with_evidence(record(checkpoints=two, batch="b2", prefix="x-"), influence={"ck1": 1.0, "ck2": 3.0})
    )
    split = by_checkpoint(engine)
    with engine.connect() as c:
        run1 = dict(
            c.execute(
                text(
                    "SELECT s.checkpoint_id, SUM(s.amount_micros) FROM entry_split s JOIN ledger_entry e"
                    " ON e.entry_id = s.entry_id WHERE e.query_id = 'q2' AND e.provider_id = 'beta'"
                    " GROUP BY s.checkpoint_id"
                )
            ).all()
        )
        run2 = dict(
            c.execute(
                text(
                    "SELECT s.checkpoint_id, SUM(s.amount_micros) FROM entry_split s JOIN ledger_entry e"
                    " ON e.entry_id = s.entry_id WHERE e.query_id = 'x-q1' AND e.provider_id = 'alpha'"
                    " GROUP BY s.checkpoint_id"
                )
            ).all()
        )
        bases = {b for (b,) in c.execute(text("SELECT DISTINCT basis FROM entry_split"))}
    assert run1 == {"ck1": 1_406_250, "ck2": 468_750}  # beta's 1.875 of q2, split 3:1
    assert run2 == {"ck1": 187_500, "ck2": 562_500}  # alpha's 0.75 of x-q1, split 1:3
    assert "measured" in bases
    total = {p: sum(v for (_, q), v in split.items() if q == p) for p in ("alpha", "beta", "gamma")}
    assert total == {r["provider_id"]: r["credit"] for r in credits(engine)}


def test_two_checkpoints_of_different_influence_split_differently(tmp_path):
    splits = []
    for i, influence in enumerate(({"ck1": 9.0, "ck2": 1.0}, {"ck1": 1.0, "ck2": 1.0})):
        engine = open_ledger(f"sqlite:///{tmp_path / f'{i}.db'}")
        setup_ledger(engine, checkpoints=("ck1", "ck2"))
        post_run(engine, with_evidence(record(checkpoints=(("ck1", 1.0), ("ck2", 1.0))), influence=influence))
        splits.append(by_checkpoint(engine))
        engine.dispose()
    assert splits[0][("ck1", "beta")] > splits[0][("ck2", "beta")]
    assert abs(splits[1][("ck1", "beta")] - splits[1][("ck2", "beta")]) <= Decimal("0.000003")  # rounding micros


def test_receipt_explains_every_credit(engine):
    setup_ledger(engine, checkpoints=("ck1", "ck2"))
    set_provider(engine, "gamma", name="Gamma Press", metadata={"country": "FR"})
    rec = with_evidence(record(checkpoints=(("ck1", 1.0), ("ck2", 1.0))))
    run = post_run(engine, rec).run_id
    receipt = query_receipt(engine, "q3")
    assert receipt["run_id"] == run and receipt["prompt"] == "prompt of q3" and receipt["lineage"] == "run-a"
    assert receipt["value"] == Decimal("0.333333") and receipt["confidence"] == 0.9
    assert receipt["settings"] == {"k": 64} and receipt["metrics"]["lds"] == 0.42 and receipt["topk_method"] == "exact"
    gamma = next(p for p in receipt["providers"] if p["provider_id"] == "gamma")
    # A negative score and a positive credit: the basis says why.
    assert gamma["score"] < 0 < gamma["credit"] and gamma["basis"] == "fallback_pro_rata"
    assert gamma["provider_name"] == "Gamma Press" and isinstance(gamma["day"], date)
    assert sum(p["credit"] for p in receipt["providers"]) == receipt["value"]
    channels = {(e["channel"], e["checkpoint_id"]) for e in receipt["evidence"]}
    assert channels == {("influence", None), ("influence", "ck1"), ("influence", "ck2"), ("lexical", None)}
    assert all(e["excerpt"].startswith("text of ") or e["channel"] == "lexical" for e in receipt["evidence"])
    q1 = query_receipt(engine, "q1")
    assert [p["provider_id"] for p in q1["providers"]] == ["alpha", "beta"]  # lexical gamma earns nothing
    with pytest.raises(UnknownQueryError):
        query_receipt(engine, "never-valued")
    with pytest.raises(UnknownViewError, match="v_query_receipt"):
        read_view(engine, "v_nope")


def test_lexical_evidence_never_changes_credit(tmp_path):
    amounts = []
    for name, rec in (("plain", record()), ("evidence", with_evidence(record()))):
        engine = open_ledger(f"sqlite:///{tmp_path / name}.db")
        setup_ledger(engine)
        post_run(engine, rec)
        with engine.connect() as c:
            amounts.append(c.execute(text("SELECT query_id, provider_id, amount_micros FROM ledger_entry")).all())
        engine.dispose()
    assert sorted(amounts[0]) == sorted(amounts[1])


def test_per_checkpoint_ranks_and_bounded_excerpts(engine):
    setup_ledger(engine, checkpoints=("ck1", "ck2"))
    q = query("q1", "1", [("alpha", 3.0), ("beta", 2.0)])
    q.topk = [
        replace(q.topk[0], excerpt="A" * 50, per_checkpoint={"ck1": 2.9, "ck2": 0.1}),
        replace(q.topk[1], excerpt="B" * 50, per_checkpoint={"ck1": 0.0, "ck2": 2.0}),
    ]
    q.prompt, q.response = "p" * 50, "r" * 50
    rec = record(queries=[q], checkpoints=(("ck1", 1.0), ("ck2", 1.0)))
    rec.lexical = {"q1": [TopKEntry("lex#0", "lex", "gamma", 7.0, "C" * 50)]}
    run = post_run(engine, rec, excerpt_chars=10).run_id
    rows = read_view(engine, "v_query_evidence", where="run_id = :r", params={"r": run})
    rank = {(r["channel"], r["checkpoint_id"], r["doc_id"]): (r["rank"], r["score"], r["excerpt"]) for r in rows}
    assert rank[("influence", None, "alpha-doc0")] == (1, 3.0, "A" * 10)
    assert rank[("influence", "ck2", "beta-doc1")] == (1, 2.0, "B" * 10)  # ck2 ranks beta's doc first
    assert rank[("influence", "ck2", "alpha-doc0")][0] == 2
    assert rank[("lexical", None, "lex")] == (1, 7.0, "C" * 10)
    receipt = query_receipt(engine, "q1")
    assert receipt["prompt"] == "p" * 10 and receipt["response"] == "r" * 10


def test_run_health_provider_summary_and_read_side(engine):
    setup_ledger(engine)
    set_provider(engine, "alpha", name="Alpha Corp", metadata={"contract": "A-1"})
    set_provider(engine, "alpha", metadata={"contract": "A-2"})  # the name is kept
    days = ("2026-10-01", "2026-11-10", "2026-11-25")
    ids = [
        post_run(engine, with_evidence(record(batch=f"b{i}", prefix=f"d{i}-", day=d))).run_id
        for i, d in enumerate(days)
    ]
    reverse_run(engine, ids[1], day="2026-11-26", by="checkpoint withdrawn")
    (alpha,) = read_view(engine, "v_provider", where="provider_id = 'alpha'")
    assert alpha["name"] == "Alpha Corp" and json.loads(alpha["metadata"]) == {"contract": "A-2"}
    health = {r["run_id"]: r for r in read_view(engine, "v_run_health")}
    h = health[ids[1]]
    assert (h["status"], h["reversed_by"], h["queries"], h["queries_credited"]) == (
        "reversed",
        "checkpoint withdrawn",
        3,
        3,
    )
    assert h["coverage"] == pytest.approx(2 / 3) and h["topk_method"] == "exact" and h["day"] == date(2026, 11, 10)
    assert json.loads(h["metrics"]) == {"lds": 0.42, "planted_recall": 0.8}
    summary = {r["provider_id"]: r for r in read_view(engine, "v_provider_summary")}
    a = summary["alpha"]
    # alpha earns 0.805556 per run; run 2 (11-10) is reversed on 11-26, inside the 7-day window of 11-26.
    per_run = Decimal("0.805556")
    assert a["credit_total"] == 2 * per_run and a["runs"] == 2 and a["queries_paid"] == 4
    assert a["credit_7d"] == per_run - per_run and a["credit_30d"] == per_run
    assert (a["first_day"], a["last_day"], a["name"]) == (date(2026, 10, 1), date(2026, 11, 26), "Alpha Corp")
    assert credits(engine)[0] | {} == {"provider_id": "beta", "name": "beta", "credit": Decimal("4.472222")}
    assert {r["provider_id"] for r in credits(engine, run_id=ids[1])} == {"alpha", "beta", "gamma"}
    assert sum(r["credit"] for r in credits(engine, run_id=ids[1])) == 0
    top = attributions(engine, query_id="d2-q1")
    assert [(r["rank"], r["provider_id"], r["run_id"]) for r in top] == [
        (1, "alpha", ids[2]),
        (2, "beta", ids[2]),
        (3, "gamma", ids[2]),
    ]
    listed = {r["run_id"]: r for r in runs(engine)}
    assert listed[ids[1]]["status"] == "reversed" and listed[ids[0]]["total_credit"] == Decimal("3.833333")


def test_views_read_the_same_types_and_values_on_sqlite_and_postgresql(tmp_path, postgres):
    results = []
    for url in (f"sqlite:///{tmp_path / 'a.db'}", postgres.create_database("typed_views")):
        engine = open_ledger(url)
        setup_ledger(engine, checkpoints=("ck1", "ck2"))
        set_provider(engine, "beta", name="Beta Books", metadata={"tier": 1})
        two = (("ck1", 1.0), ("ck2", 2.0))
        run = post_run(engine, with_evidence(record(checkpoints=two), {"ck1": 2.0, "ck2": 1.0})).run_id
        post_run(engine, record(batch="b2", prefix="b2-", day="2026-11-22"))
        reverse_run(engine, run, day="2026-11-23")
        out = {}
        for view in VIEWS:
            rows = read_view(engine, view)
            out[view] = sorted(
                (
                    tuple((k, type(v).__name__, round(v, 9) if isinstance(v, float) else v) for k, v in r.items())
                    for r in rows
                ),
                key=repr,
            )
        results.append(out)
        if engine.dialect.name == "postgresql":
            with engine.connect() as c:
                types = dict(
                    c.execute(
                        text(
                            "SELECT table_name || '.' || column_name, data_type FROM information_schema.columns"
                            " WHERE column_name IN ('credit', 'day', 'value', 'credit_7d', 'total_credit')"
                            " AND table_name LIKE 'v\\_%'"
                        )
                    ).all()
                )
            assert {t for k, t in types.items() if not k.endswith(".day")} == {"numeric"}, types
            assert {t for k, t in types.items() if k.endswith(".day")} == {"date"}, types
        engine.dispose()
    for view in VIEWS:
        assert results[0][view] == results[1][view], view
    assert all(results[0][v] for v in VIEWS)
