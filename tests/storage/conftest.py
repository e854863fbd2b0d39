"""A tokenizer trained here (no hub) and small corpus files."""

from __future__ import annotations

import json

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

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
