"""Corpus ingestion (text first, versioned) and examples per tokenizer, on real LanceDB directories."""

from __future__ import annotations

import polars as pl
import pytest

from storage import CorpusError, CorpusStore, CorpusValidationError
from tests.storage.conftest import docs, write_jsonl

KEY = "tok-L4"


def snapshot(store: CorpusStore) -> tuple:
    return (store.documents.version, store.version(), store.num_documents())


def test_ingest_chunks_documents_into_examples(tmp_path, tokenizer):
    store = CorpusStore(tmp_path / "db")
    path = write_jsonl(tmp_path / "c.jsonl", docs(5) + docs(2, provider="p2", start=5))
    report = store.ingest(path)
    assert report.documents_added == 7 and report.new_providers == ["p1", "p2"] and report.version == 1
    store.ensure_examples(KEY, tokenizer, 4, 1)
    ex = [r for b in store.iter_examples(KEY, 1) for r in b.to_pylist()]
    by_doc = {}
    for e in ex:
        by_doc.setdefault(e["doc_id"], []).append(e)
    for doc in docs(5) + docs(2, provider="p2", start=5):
        tokens = tokenizer(doc["text"], add_special_tokens=False)["input_ids"]
        chunks = sorted(by_doc[doc["doc_id"]], key=lambda e: e["chunk"])
        assert [e["example_id"] for e in chunks] == [f"{doc['doc_id']}#{i}" for i in range(len(chunks))]
        assert [t for e in chunks for t in e["input_ids"]] == tokens
        assert all(len(e["input_ids"]) <= 4 for e in chunks)
        assert {e["provider_code"] for e in chunks} == {store.providers()[doc["provider_id"]]}
    meta = store.documents.to_arrow().to_pylist()[0]["metadata"]
    assert '"lang": "en"' in meta


def test_reingest_is_a_no_op_and_new_documents_are_added_incrementally(tmp_path, tokenizer):
    store = CorpusStore(tmp_path / "db")
    path = write_jsonl(tmp_path / "a.jsonl", docs(4))
    store.ingest(path)
    before = snapshot(store)
    again = store.ingest(path)
    assert again.documents_added == 0 and again.already_stored == 4
    assert snapshot(store) == before
    more = store.ingest(write_jsonl(tmp_path / "b.jsonl", docs(6)))
    assert more.documents_added == 2 and more.already_stored == 4
    assert store.num_documents() == 6 and store.version() == 2 and store.num_documents(1) == 4


def test_identical_repeats_collapse(tmp_path, tokenizer):
    store = CorpusStore(tmp_path / "db")
    report = store.ingest(write_jsonl(tmp_path / "a.jsonl", docs(3) + docs(2)))
    assert report.duplicates_collapsed == 2 and store.num_documents() == 3


@pytest.mark.parametrize(
    ("mutate", "row", "field", "reason"),
    [
        (lambda r: r.pop("provider_id"), 2, "provider_id", "missing"),
        (lambda r: r.update(text="   "), 2, "text", "empty"),
        (lambda r: r.update(text=42), 2, "text", "must be a string"),
        (
            lambda r: r.update(doc_id="d0", text="other words"),
            2,
            "doc_id",
            "repeats row 1 with different content",
        ),
    ],
)
def test_each_bad_row_class_is_reported_and_nothing_changes(tmp_path, tokenizer, mutate, row, field, reason):
    store = CorpusStore(tmp_path / "db")
    store.ingest(write_jsonl(tmp_path / "ok.jsonl", docs(2, start=10)))
    before = snapshot(store)
    rows = docs(3)
    mutate(rows[row - 1])
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(CorpusValidationError) as err:
        store.ingest(path)
    issue = err.value.issues[0]
    assert (issue.file, issue.row, issue.field) == (path, row, field)
    assert reason in issue.reason
    assert f"bad.jsonl, row {row}, field '{field}'" in str(err.value)
    assert snapshot(store) == before


def test_invalid_utf8_names_the_row(tmp_path, tokenizer):
    path = tmp_path / "bad.jsonl"
    good = write_jsonl(tmp_path / "g.jsonl", docs(2))
    with open(good, "rb") as fh:
        data = fh.read()
    path.write_bytes(data + b'{"doc_id": "x", "provider_id": "p", "text": "caf\xe9"}\n')
    store = CorpusStore(tmp_path / "db")
    with pytest.raises(CorpusValidationError, match="row 3: invalid UTF-8"):
        store.ingest(path)
    csv = tmp_path / "bad.csv"
    csv.write_bytes(b"doc_id,provider_id,text\na,p,ok\nb,p,caf\xe9\n")
    with pytest.raises(CorpusValidationError, match="row 2: invalid UTF-8"):
        store.ingest(csv)
    assert store.num_documents() == 0


def test_a_doc_id_stored_with_other_content_is_refused(tmp_path, tokenizer):
    store = CorpusStore(tmp_path / "db")
    store.ingest(write_jsonl(tmp_path / "a.jsonl", docs(2)))
    changed = docs(2)
    changed[1]["text"] = "rewritten text"
    with pytest.raises(CorpusValidationError, match="already stored with different content"):
        store.ingest(write_jsonl(tmp_path / "b.jsonl", changed))


def test_parquet_and_csv_inputs(tmp_path, tokenizer):
    store = CorpusStore(tmp_path / "db")
    pl.DataFrame(docs(3)).write_parquet(tmp_path / "a.parquet")
    pl.DataFrame(docs(2, start=3)).write_csv(tmp_path / "b.csv")
    assert store.ingest(tmp_path / "a.parquet").documents_added == 3
    assert store.ingest(tmp_path / "b.csv").documents_added == 2
    with pytest.raises(CorpusValidationError, match="unsupported file type"):
        store.ingest(tmp_path / "x.txt")


def test_sharding_partitions_examples(tmp_path, tokenizer):
    store = CorpusStore(tmp_path / "db")
    store.ingest(write_jsonl(tmp_path / "a.jsonl", docs(20)))
    store.ensure_examples("tok-L3", tokenizer, 3, 1)
    ids = [
        eid
        for s in range(3)
        for b in store.iter_examples("tok-L3", 1, shard=s, num_shards=3, batch_size=7, columns=["example_id"])
        for eid in b.column("example_id").to_pylist()
    ]
    assert len(ids) == len(set(ids)) == store.num_examples("tok-L3", 1)


def test_two_tokenizers_on_one_corpus_and_versions_stay_apart(tmp_path, tokenizer):
    store = CorpusStore(tmp_path / "db")
    store.ingest(write_jsonl(tmp_path / "a.jsonl", docs(4)))
    store.ingest(write_jsonl(tmp_path / "b.jsonl", docs(6)))  # version 2 adds d4, d5
    assert store.ensure_examples("tok-L3", tokenizer, 3, 1) > 0
    assert store.ensure_examples("tok-L3", tokenizer, 3, 1) == 0  # cached: a second checkpoint redoes nothing
    store.ensure_examples("tok-L50", tokenizer, 50, 2)
    v1 = {r["doc_id"] for b in store.iter_examples("tok-L3", 1) for r in b.to_pylist()}
    v2 = {r["doc_id"] for b in store.iter_examples("tok-L50", 2) for r in b.to_pylist()}
    assert v1 == {"d0", "d1", "d2", "d3"} and v2 == v1 | {"d4", "d5"}
    assert store.num_examples("tok-L50", 2) == 6  # one chunk per document at max_length 50
    with pytest.raises(CorpusError, match="not made for corpus version 2"):
        next(store.iter_examples("tok-L3", 2))
    store.ensure_examples("tok-L3", tokenizer, 3, 2)  # extends incrementally
    assert {r["doc_id"] for b in store.iter_examples("tok-L3", 2) for r in b.to_pylist()} == v2
    assert store.example_counts("tok-L50", 1) == {"p1": 4}


def test_pins_are_first_come_and_versions_must_exist(tmp_path):
    store = CorpusStore(tmp_path / "db")
    with pytest.raises(CorpusError, match="does not exist"):
        store.pin("ck", None)  # nothing ingested yet
    store.ingest(write_jsonl(tmp_path / "a.jsonl", docs(2)))
    store.ingest(write_jsonl(tmp_path / "b.jsonl", docs(3)))
    assert store.pin("ck", 1) == 1
    assert store.pin("ck") == 1  # re-registration keeps the pin
    with pytest.raises(CorpusError, match="pinned to corpus version 1; asked for 2"):
        store.pin("ck", 2)
    assert store.pin("other") == 2


def test_an_ingest_killed_before_its_version_commits_is_invisible_then_removed(tmp_path):
    store = CorpusStore(tmp_path / "db")
    store.ingest(write_jsonl(tmp_path / "a.jsonl", docs(2)))
    # what a killed ingest leaves: documents of version 2 without the version row
    store.documents.add(store.documents.to_arrow().slice(0, 1).set_column(6, "added_in", [[2]]))
    assert store.num_documents() == 2 and store.version() == 1
    report = store.ingest(write_jsonl(tmp_path / "b.jsonl", docs(3)))
    assert report.documents_added == 1 and store.num_documents() == 3 and store.documents.count_rows() == 3
