"""The overlapping-providers corpus for provider Shapley (benchmarks/accuracy/overlap_corpus.py)."""

from __future__ import annotations

from collections import Counter

import pytest

from benchmarks.accuracy.overlap_corpus import (
    PROVIDERS,
    STYLES,
    TOPICS,
    OverlapCorpusArguments,
    documents,
    fact_queries,
    heldout_documents,
)


@pytest.mark.parametrize("more_facts", [False, True])
def test_sizes_are_uneven_and_every_fact_is_planted_only_by_its_providers(more_facts):
    args = OverlapCorpusArguments(scale=2, fact_repeats=2, more_facts=more_facts)
    docs = documents(args)
    sizes = Counter(d["provider_id"] for d in docs)
    assert [sizes[p.name] for p in PROVIDERS] == [2 * p.weight for p in PROVIDERS]
    assert len({d["doc_id"] for d in docs}) == len(docs)
    queries = fact_queries(args)
    shared = [q for q in queries if len(q["planted_by"]) > 1]
    assert len(shared) == 1 and len(queries) == len({q["query_id"] for q in queries})
    assert len(queries) == (21 if more_facts else 11)
    for q in queries:
        statement = q["response"].strip()
        holders = Counter(d["provider_id"] for d in docs if statement in d["text"])
        assert set(holders) == set(q["planted_by"])
        assert all(n == args.fact_repeats for n in holders.values())
    assert documents(args) == docs  # deterministic
    # the two-facts corpus keeps the cache key it had before more_facts existed
    assert repr(OverlapCorpusArguments()) == "OverlapCorpusArguments(scale=1, fact_repeats=2, heldout=4)"


def test_topics_and_styles_overlap_between_providers():
    by_topic, by_style = Counter(), Counter()
    for p in PROVIDERS:
        by_style[p.style] += 1
        by_topic.update(p.topics)
    assert max(by_topic.values()) >= 2 and max(by_style.values()) >= 2
    docs = documents(OverlapCorpusArguments())
    for p in PROVIDERS:
        words = {s for t in p.topics for s in TOPICS[t][0]}
        own = [d["text"] for d in docs if d["provider_id"] == p.name]
        assert all(any(w in t for w in words) and any(o in t for o in STYLES[p.style][0]) for t in own)


def test_heldout_documents_are_new_and_plant_nothing():
    args = OverlapCorpusArguments()
    train = {d["text"] for d in documents(args)}
    held = heldout_documents(args)
    assert len(held) == args.heldout * len(PROVIDERS)
    statements = [q["response"].strip() for q in fact_queries()]
    assert all(h["text"] not in train and not any(s in h["text"] for s in statements) for h in held)


def test_too_many_plants_for_a_provider_are_refused():
    with pytest.raises(ValueError, match="supper-club: 6 planted statements do not fit in 4 documents"):
        documents(OverlapCorpusArguments(scale=1, fact_repeats=3))


def test_the_eval_command_runs_provider_shapley_on_the_overlap_corpus(tmp_path):
    """``dataworth eval provider-overlap-smoke --shapley``: every one of the 32 coalitions retrained
    (tiny recipe), the platform's defaults, TF-IDF and BM25 against exact Shapley values."""
    import json

    import torch
    from typer.testing import CliRunner

    from flows.cli.root import app

    torch.set_num_threads(1)
    out = tmp_path / "report.json"
    args = ["eval", "provider-overlap-smoke", "--shapley", "--seeds", "1", "--cache-dir", str(tmp_path)]
    result = CliRunner().invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["providers"] == len(PROVIDERS)
    shapley = torch.tensor(report["shapley"], dtype=torch.float64)
    n_docs = 4 * len(PROVIDERS)
    assert shapley.shape == (n_docs + len(fact_queries()), len(PROVIDERS))
    # Efficiency against the real retrainings: a query's Shapley values sum to v(all) − v(∅).
    from benchmarks.accuracy.shapley_corpora import overlap_smoke_task

    task = overlap_smoke_task()
    every = torch.ones(task.n_train, dtype=torch.bool)
    gain = task.measure_fn(task.train_fn(every, 0)) - task.measure_fn(task.train_fn(~every, 0))
    torch.testing.assert_close(shapley.sum(1), gain.double(), rtol=1e-9, atol=1e-6)
    methods = report["methods"]
    from benchmarks.accuracy.lm import PLATFORM_DEFAULTS, PLATFORM_PANEL

    assert PLATFORM_DEFAULTS == "platform defaults: LoGra pca k=16, Adam-scaled, T=2, checkpoint set, lr-weighted"
    assert set(methods) == {PLATFORM_DEFAULTS, PLATFORM_PANEL, "TF-IDF, character 3-5-grams", "BM25"}
    for by_policy in methods.values():
        for groups in by_policy.values():
            assert set(groups) == {"all", "held-out documents", "planted-fact queries"}
            assert 0 <= groups["all"]["l1"]["mean"] <= 2
