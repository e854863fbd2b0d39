"""A tiny demo world (corpus, tokenizer, two checkpoints) and one Prefect test server per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flows.demo.corpus import documents, queries, write_jsonl
from flows.demo.model import TrainArguments, train_demo_model


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory):
    os.environ["PREFECT_HOME"] = str(tmp_path_factory.mktemp("prefect"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("world")
    docs = [d for d in documents(docs_per_provider=10, fact_repeats=2)]
    qs = queries()[::3]  # one query per provider
    for q in qs:
        q.pop("planted_by")
    paths = train_demo_model(
        [d["text"] for d in docs],
        root / "model",
        TrainArguments(vocab_size=300, n_layer=1, n_embd=32, n_head=2, max_length=48, epochs=2, checkpoints=2),
    )
    return {
        "corpus": write_jsonl(docs, root / "corpus.jsonl"),
        "queries": write_jsonl(qs, root / "queries.jsonl"),
        "checkpoints": [Path(p) for p in paths],
        "n_docs": len(docs),
    }


@pytest.fixture
def settings(tmp_path):
    from flows.config import load_settings

    return load_settings(
        home=str(tmp_path / "home"), k_in=4, k_out=4, num_shards=2, batch_size=8, max_length=48, fit_examples=32
    )
