"""The non-lexical fact suite's generator and metrics (benchmarks/accuracy/facts.py)."""

from __future__ import annotations

import torch

from benchmarks.accuracy.facts import ATTRIBUTES, FactSuiteArguments, generate, provider_top1, retrieval_metrics


def test_facts_are_paraphrased_and_queries_use_unseen_templates():
    docs, queries = generate(FactSuiteArguments(entities=5, seed=1))
    assert len(queries) == 5 * len(ATTRIBUTES)
    texts = [d["text"] for d in docs]
    for _, _, (question, answer) in ATTRIBUTES.values():
        stem_q, stem_a = question.split("{e}")[0].strip(), answer.split("{e}")[0].strip()
        assert stem_q and not any(stem_q in t for t in texts)
        assert stem_a == "" or not any(stem_a in t for t in texts)
    for qi, q in enumerate(queries):
        planted = [docs[i] for i in q["docs"]]
        assert len({d["text"] for d in planted}) == len(planted) == 3  # three different paraphrases
        assert all(d["provider_id"] == q["planted_by"] and d["fact"] == qi for d in planted)
        entity, value = q["entity"], q["value"]
        assert entity in q["prompt"] and value in q["response"]
        distractors = [d for d in docs if d["fact"] == -1 and entity in d["text"] and value in d["text"]]
        assert len(distractors) >= 3 and all(d["provider_id"] != q["planted_by"] for d in distractors)


def test_an_oracle_has_perfect_recall_mrr_and_provider():
    docs, queries = generate(FactSuiteArguments(entities=3))
    oracle = torch.zeros(len(queries), len(docs), dtype=torch.float64)
    for qi, q in enumerate(queries):
        oracle[qi, q["docs"]] = 1.0
    m = retrieval_metrics(oracle, queries, ks=(3,))
    assert m["recall@3"]["mean"] == 1.0 and m["mrr"]["mean"] == 1.0
    assert provider_top1(oracle, docs, queries) == 1.0
