"""The lexical evidence channel of a run: per query, the BM25 top-k documents of the corpus version
the checkpoints were trained on. Stored beside the influence top-k (``channel = 'lexical'``),
never credited: it answers "which document states this", not "which data moved the model"."""

from __future__ import annotations

from flows.app import App
from flows.scores import Valuation


def lexical_evidence(app: App, val: Valuation, k: int, version: int) -> dict[str, list]:
    """``{query_id: [TopKEntry]}`` (best first); empty when ``k`` is 0."""
    from ledger import TopKEntry
    from valuation.lexical import BM25, lexical_topk

    if k <= 0 or not val.query_ids:
        return {}
    scanner = app.corpus.documents.to_lance().scanner(
        columns=["doc_id", "provider_id", "text"], filter=f"added_in <= {int(version)}"
    )
    docs = [r for rb in scanner.to_batches() for r in rb.to_pylist()]
    if not docs:
        return {}
    queries = app.queries.rows(val.query_ids)
    texts = [f"{queries[q]['prompt']} {queries[q]['response']}" for q in val.query_ids]
    idx, scores = lexical_topk(BM25([d["text"] for d in docs]).scores(texts), min(k, len(docs)))
    out = {}
    for qi, qid in enumerate(val.query_ids):
        out[qid] = [
            TopKEntry(
                f"{docs[j]['doc_id']}#lexical", docs[j]["doc_id"], docs[j]["provider_id"], float(s), docs[j]["text"]
            )
            for s, j in zip(scores[qi].tolist(), idx[qi].tolist(), strict=True)
            if j >= 0
        ]
    return out
