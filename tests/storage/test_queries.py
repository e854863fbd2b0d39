"""Query store: collapse identical repeats, refuse conflicts, value each query once."""

from __future__ import annotations

import pytest

from storage import QueryError, QueryStore, QueryValidationError
from tests.storage.conftest import write_jsonl


def q(i, **kw):
    return {"query_id": f"q{i}", "prompt": f"prompt {i}", "response": f"response {i}", **kw}


def test_add_pending_and_mark_valued(tmp_path):
    store = QueryStore(tmp_path / "db")
    report = store.add_file(write_jsonl(tmp_path / "a.jsonl", [q(1), q(2, value=2.5), q(1)]), "m")
    assert (report.added, report.duplicates_collapsed) == (2, 1)
    pending = store.pending().to_pylist()
    assert {r["query_id"]: r["value"] for r in pending} == {"q1": "1", "q2": "2.5"}
    store.mark_valued(["q1"], "run-1")
    store.mark_valued(["q1"], "run-2")  # already valued: keeps its run
    rows = {r["query_id"]: r for r in store.all().to_pylist()}
    assert rows["q1"]["status"] == "valued" and rows["q1"]["run_id"] == "run-1"
    assert [r["query_id"] for r in store.pending().to_pylist()] == ["q2"]
    again = store.add_file(write_jsonl(tmp_path / "b.jsonl", [q(1), q(3)]), "m")
    assert (again.added, again.already_stored) == (1, 1)


@pytest.mark.parametrize(
    ("row", "field", "reason"),
    [
        ({"query_id": "x", "prompt": "p"}, "response", "missing"),
        ({"query_id": "x", "prompt": "p", "response": "r", "value": -1}, "value", ">= 0"),
        ({"query_id": "x", "prompt": "p", "response": "r", "value": "abc"}, "value", "not a number"),
        ({"query_id": "q1", "prompt": "p", "response": "other"}, "query_id", "different content"),
        ({"query_id": "x", "prompt": "p", "response": "r", "value": True}, "value", "must be a number, got bool"),
        ({"query_id": "x", "prompt": "p", "response": "r", "value": "1e20"}, "value", "<= 1,000,000,000,000"),
        ({"query_id": "x", "prompt": "p", "response": "r", "value": "inf"}, "value", "finite"),
    ],
)
def test_bad_rows_reject_the_file(tmp_path, row, field, reason):
    store = QueryStore(tmp_path / "db")
    store.add_file(write_jsonl(tmp_path / "ok.jsonl", [q(1)]), "m")
    path = write_jsonl(tmp_path / "bad.jsonl", [q(5), row])
    with pytest.raises(QueryValidationError) as err:
        store.add_file(path, "m")
    issue = err.value.issues[0]
    assert (issue.row, issue.field) == (2, field) and reason in issue.reason
    assert store.all().num_rows == 1


def test_a_query_belongs_to_a_lineage(tmp_path):
    store = QueryStore(tmp_path / "db")
    with pytest.raises(QueryValidationError, match=r"row 1, field 'lineage': no lineage.*known: a, b"):
        store.add_file(write_jsonl(tmp_path / "a.jsonl", [q(1)]), known_lineages=["a", "b"])
    store.add_file(write_jsonl(tmp_path / "a.jsonl", [q(1), q(2, lineage="b")]), known_lineages=["a"])
    assert {r["query_id"]: r["lineage"] for r in store.all().to_pylist()} == {"q1": "a", "q2": "b"}
    assert [r["query_id"] for r in store.pending("b").to_pylist()] == ["q2"]
    assert store.lineages() == ["a", "b"]
    assert {q: r["lineage"] for q, r in store.rows(["q2", "q1", "nope"]).items()} == {"q1": "a", "q2": "b"}


def test_empty_files_are_refused_and_set_aside_queries_never_block(tmp_path):
    store = QueryStore(tmp_path / "db")
    empty = tmp_path / "e.jsonl"
    empty.write_text("")
    with pytest.raises(QueryValidationError, match="no rows"):
        store.add_file(empty, "m")
    store.add_file(write_jsonl(tmp_path / "a.jsonl", [q(1), q(2), q(3)]), "m")
    store.set_aside(["q2"], "its lineage has no finalized checkpoint")
    store.drop("q3")
    assert [r["query_id"] for r in store.pending().to_pylist()] == ["q1"]
    aside = store.with_status("set_aside").to_pylist()
    assert [(r["query_id"], r["reason"]) for r in aside] == [("q2", "its lineage has no finalized checkpoint")]
    store.mark_valued(["q1"], "run-1")
    with pytest.raises(QueryError, match="already valued"):
        store.drop("q1")


def test_pending_count_without_lancedb_matches_the_store(tmp_path):
    from storage.peek import pending_query_count

    assert pending_query_count(tmp_path / "none") == 0  # no store yet
    store = QueryStore(tmp_path / "db")
    assert pending_query_count(tmp_path / "db") == 0
    store.add_file(write_jsonl(tmp_path / "a.jsonl", [q(1), q(2), q(3)]), "m")
    assert pending_query_count(tmp_path / "db") == 3
    store.mark_valued(["q1"], "run-1")
    store.set_aside(["q2"], "refused by the policy")
    assert pending_query_count(tmp_path / "db") == len(store.pending()) == 1
