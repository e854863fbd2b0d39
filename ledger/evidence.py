"""Evidence of a run for receipts: checks, and the rows of the evidence tables."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ledger.errors import PolicyInputError
from ledger.models import AttributionEvidence, QueryAttribution, QueryCheckpointScore, RunDocument
from ledger.policies import TopKEntry

if TYPE_CHECKING:
    from ledger.posting import RunRecord


def check_evidence(run_id: str, record: RunRecord, known: set[str]) -> None:
    checkpoints = {c.checkpoint_id for c in record.checkpoints}
    seen: set[str] = set()

    def bad(qid: str, why: str) -> PolicyInputError:
        return PolicyInputError(f"run {run_id}: query {qid}: {why}", qid)

    for q in record.queries:
        if q.query_id in seen:
            raise bad(q.query_id, "appears twice")
        seen.add(q.query_id)
        if q.confidence is not None and not math.isfinite(q.confidence):
            raise bad(q.query_id, f"confidence is {q.confidence}")
        for ck, scores in (q.by_checkpoint or {}).items():
            if ck not in checkpoints:
                raise bad(q.query_id, f"by_checkpoint names {ck[:16]}, not a checkpoint of the run")
            for p, s in scores.items():
                if not math.isfinite(s) or p not in known:
                    raise bad(q.query_id, f"by_checkpoint[{ck[:16]}][{p!r}] = {s}")
        for e in q.topk:
            for ck, s in (e.per_checkpoint or {}).items():
                if ck not in checkpoints or not math.isfinite(s):
                    raise bad(q.query_id, f"per_checkpoint[{ck[:16]}] = {s} of {e.example_id}")
    for qid, lexical in record.lexical.items():
        if qid not in seen:
            raise bad(qid, "lexical evidence for a query not in the run")
        for e in lexical:
            if e.provider_id not in known or not math.isfinite(e.score):
                raise bad(qid, f"lexical {e.example_id} ({e.provider_id}, {e.score})")


def evidence_rows(run_id: str, record: RunRecord, excerpt_chars: int) -> dict:
    """Rows of the evidence tables (attributions, per-checkpoint ranks, lexical, documents, queries)."""
    attributions, evidence, ck_scores, documents = [], [], [], {}
    for q in record.queries:
        for rank, e in enumerate(q.topk, start=1):
            attributions.append(
                {
                    "run_id": run_id,
                    "query_id": q.query_id,
                    "rank": rank,
                    "example_id": e.example_id,
                    "doc_id": e.doc_id,
                    "provider_id": e.provider_id,
                    "score": e.score,
                }
            )
        # Each checkpoint's rank of the combined top-k entries, by that checkpoint's own score.
        per_ck: dict[str, list[tuple[float, int, TopKEntry]]] = {}
        for rank, e in enumerate(q.topk, start=1):
            for ck, s in (e.per_checkpoint or {}).items():
                per_ck.setdefault(ck, []).append((s, rank, e))
        for ck, items in sorted(per_ck.items()):
            for rank, (s, _, e) in enumerate(sorted(items, key=lambda t: (-t[0], t[1])), start=1):
                evidence.append(_evidence(run_id, q.query_id, "influence", ck, rank, e, s))
        for rank, e in enumerate(record.lexical.get(q.query_id, []), start=1):
            evidence.append(_evidence(run_id, q.query_id, "lexical", None, rank, e, e.score))
        for ck, scores in sorted((q.by_checkpoint or {}).items()):
            ck_scores += [
                {"run_id": run_id, "query_id": q.query_id, "checkpoint_id": ck, "provider_id": p, "score": s}
                for p, s in sorted(scores.items())
            ]
        for e in [*q.topk, *record.lexical.get(q.query_id, [])]:
            if e.excerpt is not None and e.doc_id not in documents:
                documents[e.doc_id] = {
                    "run_id": run_id,
                    "doc_id": e.doc_id,
                    "provider_id": e.provider_id,
                    "excerpt": e.excerpt[:excerpt_chars],
                }
    return {
        QueryAttribution: attributions,
        AttributionEvidence: evidence,
        QueryCheckpointScore: ck_scores,
        RunDocument: list(documents.values()),
    }


def _evidence(run_id, query_id, channel, checkpoint_id, rank, e: TopKEntry, score: float) -> dict:
    return {
        "run_id": run_id,
        "query_id": query_id,
        "channel": channel,
        "checkpoint_id": checkpoint_id,
        "rank": rank,
        "example_id": e.example_id,
        "doc_id": e.doc_id,
        "provider_id": e.provider_id,
        "score": score,
    }


def excerpt(text_: str | None, n: int) -> str | None:
    return None if text_ is None else text_[:n]
