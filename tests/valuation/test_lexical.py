"""BM25 against a hand computation on three documents."""

from __future__ import annotations

import math

import pytest

from valuation.lexical import BM25, bm25_scores, lexical_topk, tokenize

DOCS = ["the cat sat", "the dog sat on the mat", "cats and dogs"]


def test_tokenize_lowercases_words():
    assert tokenize("The Cat, sat!") == ["the", "cat", "sat"]


def test_bm25_equals_the_hand_computation():
    k1, b = 1.2, 0.75
    avgdl = (3 + 6 + 3) / 3  # 4

    def idf(df):
        return math.log(1 + (3 - df + 0.5) / (df + 0.5))

    def term(tf, dl, df):
        return idf(df) * tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl))

    # "the": df 2 (tf 1 in doc 0, tf 2 in doc 1); "sat": df 2; "mat": df 1; "cats": df 1.
    want = [
        [term(1, 3, 2) + term(1, 3, 2), term(2, 6, 2) + term(1, 6, 2) + term(1, 6, 1), 0.0],
        [0.0, 0.0, 2 * term(1, 3, 1)],  # "cats cats": the query term counts twice
    ]
    got = bm25_scores(["The sat mat", "cats cats"], DOCS, k1=k1, b=b)
    for row in range(2):
        assert got[row].tolist() == pytest.approx(want[row], rel=1e-12)


def test_lexical_topk_drops_documents_without_a_shared_term():
    idx, scores = lexical_topk(BM25(DOCS).scores(["mat"]), 2)
    assert idx.tolist() == [[1, -1]]
    assert scores[0, 0] > 0
