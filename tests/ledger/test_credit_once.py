"""One live credit per query, enforced by the database; reversal then re-valuation; the run key."""

from __future__ import annotations

from dataclasses import replace

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from ledger import (
    LedgerError,
    PolicyInputError,
    QueryAlreadyCreditedError,
    RunReversedError,
    UnknownRunError,
    credited_queries,
    live_credits,
    post_run,
    reverse_run,
)
from tests.ledger.helpers import query, record, setup_ledger
from valuation.errors import DataworthError

TABLES = (
    "valuation_run",
    "run_checkpoint",
    "query_attribution",
    "query_provider_score",
    "provider_score",
    "ledger_entry",
    "query_credit",
    "run_query",
    "entry_split",
    "provider_credit_day",
    "run_digest",
)


def counts(engine) -> dict[str, int]:
    with engine.connect() as c:
        return {t: c.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar() for t in TABLES}


def test_a_query_credited_by_a_live_run_is_refused_and_nothing_is_written(engine):
    setup_ledger(engine)
    first = post_run(engine, record())
    assert credited_queries(engine, ["q1", "q2", "zz"]) == {"q1", "q2"}
    before = counts(engine)
    other = record(batch="b2", queries=[query("q2", "1", [("alpha", 1.0)]), query("new", "1", [("beta", 1.0)])])
    with pytest.raises(QueryAlreadyCreditedError, match="q2") as err:
        post_run(engine, other)
    assert err.value.credited == {"q2": first.run_id}
    assert counts(engine) == before
    skipped = replace(other, queries=[q for q in other.queries if q.query_id not in credited_queries(engine, ["q2"])])
    assert post_run(engine, skipped).entries_written == 1


def test_reversal_releases_the_queries_for_an_explicit_revaluation(engine):
    setup_ledger(engine)
    run = post_run(engine, record()).run_id
    reverse_run(engine, run, day="2026-11-21", by="wrong checkpoint")
    assert credited_queries(engine, ["q1", "q2", "q3"]) == set()
    with pytest.raises(RunReversedError):  # the same record again: the reversed run, not a new one
        post_run(engine, record())
    again = post_run(engine, replace(record(), revaluation=1))
    assert again.run_id != run and again.entries_written == 7
    assert credited_queries(engine, ["q1", "q2", "q3"]) == {"q1", "q2", "q3"}
    with engine.connect() as c:
        gens = c.execute(text("SELECT kind, generation FROM query_credit WHERE query_id = 'q1' ORDER BY id")).all()
        total = c.execute(text("SELECT SUM(amount_micros) FROM ledger_entry WHERE query_id = 'q1'")).scalar()
    assert [tuple(g) for g in gens] == [("credit", 0), ("release", 0), ("credit", 1)]
    assert total == 1_000_000  # credited exactly once, net


def test_the_database_refuses_a_second_live_credit(engine):
    setup_ledger(engine)
    run = post_run(engine, record()).run_id
    with pytest.raises(IntegrityError), engine.begin() as c:
        c.execute(
            text("INSERT INTO query_credit (query_id, generation, kind, run_id) VALUES ('q1', 0, 'credit', :r)"),
            {"r": run},
        )
    with pytest.raises(IntegrityError), engine.begin() as c:
        c.execute(
            text("INSERT INTO query_credit (query_id, generation, kind, run_id) VALUES ('q9', 0, 'bogus', :r)"),
            {"r": run},
        )


def test_unknown_run_and_duplicate_query_are_named_errors(engine):
    setup_ledger(engine)
    with pytest.raises(UnknownRunError, match="nope"):
        reverse_run(engine, "nope")
    dup = record(queries=[query("q1", "1", [("alpha", 1.0)]), query("q1", "1", [("beta", 1.0)])])
    with pytest.raises(PolicyInputError, match="q1: appears twice"):
        post_run(engine, dup)
    assert issubclass(PolicyInputError, LedgerError) and issubclass(PolicyInputError, ValueError)
    assert issubclass(LedgerError, DataworthError) and issubclass(QueryAlreadyCreditedError, LedgerError)


@pytest.mark.parametrize(
    "change",
    [
        {"mode": "ekfac"},
        {"damping_ratio": 0.01},
        {"topk": 20},
        {"checkpoint_combine": "raw"},
    ],
)
def test_the_run_key_covers_every_scoring_setting(change):
    base = record()
    base.config = {"k": 64, "mode": "kfac", "damping_ratio": 0.1, "topk": 10, "checkpoint_combine": "normalised"}
    changed = replace(base, config=base.config | change)
    assert changed.key() != base.key()
    assert replace(base, policy="positive_share").key() != base.key()
    reweighted = replace(base, checkpoints=[replace(base.checkpoints[0], weight=2.0)])
    assert reweighted.key() != base.key()
    assert replace(base).key() == base.key()


@pytest.mark.parametrize(
    ("bad", "query_id"),
    [
        (query("nan", "1", [("alpha", float("nan"))]), "nan"),
        (query("negative", "-1", [("alpha", 1.0)]), "negative"),
        (query("stranger", "1", [("zeta", 1.0)]), "stranger"),
    ],
)
def test_a_refused_query_is_named_so_the_others_can_be_posted(engine, bad, query_id):
    setup_ledger(engine)
    rec = record()
    rec.queries.append(bad)
    with pytest.raises(PolicyInputError) as err:
        post_run(engine, rec)
    assert err.value.query_id == query_id
    rec.queries = [q for q in rec.queries if q.query_id != err.value.query_id]
    run = post_run(engine, rec).run_id
    assert live_credits(engine, ["q1", "q2", "q3", query_id]) == {"q1": run, "q2": run, "q3": run}
