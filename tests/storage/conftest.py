"""A tokenizer trained here (no hub) and small corpus files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from storage import GradientStore
from valuation import ProjectedFisher, StreamingScorer

SENTENCES = [
    "the quick brown fox jumps over the lazy dog",
    "data providers deserve credit for what models learn",
    "influence functions estimate the effect of training examples",
    "the capital of varnholm is queltrin",
]


@pytest.fixture(scope="session")
def tokenizer() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(SENTENCES, trainers.WordLevelTrainer(special_tokens=["[PAD]", "[UNK]"]))
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]")


def write_jsonl(path, rows) -> str:
    with open(path, "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")
    return str(path)


def docs(n: int, provider: str = "p1", start: int = 0) -> list[dict]:
    return [
        {
            "doc_id": f"d{i}",
            "provider_id": provider,
            "text": f"{SENTENCES[i % 4]} {SENTENCES[(i + 1) % 4]}",
            "lang": "en",
        }
        for i in range(start, start + n)
    ]


# gradient tables for aggregates, scans and indexes ---------------------------------------------
LAYOUT = [("a", 2, 3), ("b", 2, 2)]  # dim 10
DIM = 10
PROVIDERS = 5


def write_rows(table, shard: int, n: int, start: int, seed: int):
    rng = np.random.default_rng(seed)
    ids = [f"e{i}" for i in range(start, start + n)]
    # Documents of 3 rows, and every 7th row in a document seen earlier: partial document sums.
    docs = [f"d{(i // 3) if i % 7 else (i % 5)}" for i in range(start, start + n)]
    codes = [int(c) for c in rng.integers(0, PROVIDERS - 1, n)]  # the last provider has no rows
    vec = (rng.standard_normal((n, DIM)) * rng.lognormal(0, 1, (n, 1))).astype(np.float32)
    with table.writer(shard, batch_rows=16) as w:
        w.add(ids, docs, [f"p{c}" for c in codes], codes, vec)
    return ids, docs, codes, vec


@pytest.fixture
def grad_table(tmp_path):
    """A float32 table of 73 rows in 2 shards, its float64 preconditioner and 4 queries."""
    table = GradientStore(tmp_path / "g").table("ckpt" * 8, "cfg", LAYOUT, "float32")
    parts = [write_rows(table, 0, 40, 0, 1), write_rows(table, 1, 33, 40, 2)]
    ids = [e for p in parts for e in p[0]]
    docs = [d for p in parts for d in p[1]]
    codes = torch.tensor([c for p in parts for c in p[2]])
    G = torch.from_numpy(np.concatenate([p[3] for p in parts])).double()
    fisher = ProjectedFisher(LAYOUT)
    fisher.update(G)
    pre = fisher.preconditioner(damping_ratio=0.1)
    Q = torch.randn(4, DIM, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    return table, pre, ids, docs, codes, G, Q


def streamed_group_sums(table, q_pre, mode, query_self):
    scorer = StreamingScorer(q_pre, topk=3, num_groups=PROVIDERS, mode=mode, query_self=query_self)
    for chunk in table.read(chunk_rows=7):
        train_self = None
        if mode != "if":
            stored = {}
            for s in set(chunk.shards.tolist()):
                stored |= table.self_influence(s)
            train_self = torch.tensor([stored[e] for e in chunk.example_ids], dtype=torch.float64)
        scorer.update(chunk.vectors, chunk.provider_codes, train_self)
    return scorer.result().group_sums
