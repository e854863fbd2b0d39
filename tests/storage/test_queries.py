"""Query store: collapse identical repeats, refuse conflicts, value each query once."""

from __future__ import annotations

import pytest

from storage import QueryStore, QueryValidationError
from tests.storage.conftest import write_jsonl


def q(i, **kw):
    return {"query_id": f"q{i}", "prompt": f"prompt {i}", "response": f"response {i}", **kw}


def test_add_pending_and_mark_valued(tmp_path):
    store = QueryStore(tmp_path / "db")
    report = store.add_file(write_jsonl(tmp_path / "a.jsonl", [q(1), q(2, value=2.5), q(1)]))
    assert (report.added, report.duplicates_collapsed) == (2, 1)
    pending = store.pending().to_pylist()
    assert {r["query_id"]: r["value"] for r in pending} == {"q1": "1", "q2": "2.5"}
    store.mark_valued(["q1"], "run-1")
    store.mark_valued(["q1"], "run-2")  # already valued: keeps its run
    rows = {r["query_id"]: r for r in store.all().to_pylist()}
    assert rows["q1"]["status"] == "valued" and rows["q1"]["run_id"] == "run-1"
    assert [r["query_id"] for r in store.pending().to_pylist()] == ["q2"]
    again = store.add_file(write_jsonl(tmp_path / "b.jsonl", [q(1), q(3)]))
    assert (again.added, again.already_stored) == (1, 1)


@pytest.mark.parametrize(
    ("row", "field", "reason"),
    [
        ({"query_id": "x", "prompt": "p"}, "response", "missing"),
        ({"query_id": "x", "prompt": "p", "response": "r", "value": -1}, "value", ">= 0"),
        ({"query_id": "x", "prompt": "p", "response": "r", "value": "abc"}, "value", "not a number"),
        ({"query_id": "q1", "prompt": "p", "response": "other"}, "query_id", "different content"),
    ],
)
def test_bad_rows_reject_the_file(tmp_path, row, field, reason):
    store = QueryStore(tmp_path / "db")
    store.add_file(write_jsonl(tmp_path / "ok.jsonl", [q(1)]))
    path = write_jsonl(tmp_path / "bad.jsonl", [q(5), row])
    with pytest.raises(QueryValidationError) as err:
        store.add_file(path)
    issue = err.value.issues[0]
    assert (issue.row, issue.field) == (2, field) and reason in issue.reason
    assert store.all().num_rows == 1
