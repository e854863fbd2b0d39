"""The lexical evidence channel: Okapi BM25 over documents (pure Python and torch, no I/O).

Influence answers "which data moved the model"; BM25 answers "which document states this". The
two are different questions: keep BM25's top-k beside the influence top-k, never inside it.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

import torch

_TOKEN = re.compile(r"\w+", re.UNICODE)


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens (``\\w+``)."""
    return _TOKEN.findall(text.lower())


class BM25:
    """Okapi BM25 over ``documents``.

    ``score(q, d) = Σ_{t ∈ q} idf(t) · tf(t, d) (k1 + 1) / (tf(t, d) + k1 (1 − b + b |d| / avgdl))``
    with ``idf(t) = ln(1 + (N − df(t) + 0.5) / (df(t) + 0.5))`` (never negative); a term repeated
    in the query counts once per occurrence.
    """

    def __init__(self, documents: Sequence[str], k1: float = 1.5, b: float = 0.75) -> None:
        if not documents:
            raise ValueError("BM25 needs at least one document")
        self.k1, self.b = k1, b
        self.tf = [Counter(tokenize(d)) for d in documents]
        self.lengths = torch.tensor([sum(c.values()) for c in self.tf], dtype=torch.float64)
        self.avgdl = float(self.lengths.mean()) or 1.0
        df: Counter = Counter()
        for c in self.tf:
            df.update(c.keys())
        n = len(documents)
        self.idf = {t: math.log(1 + (n - f + 0.5) / (f + 0.5)) for t, f in df.items()}
        # Postings: term -> (doc indices, term frequencies), so a query touches only its terms' docs.
        postings: dict[str, tuple[list[int], list[float]]] = {}
        for i, c in enumerate(self.tf):
            for t, f in c.items():
                entry = postings.setdefault(t, ([], []))
                entry[0].append(i)
                entry[1].append(float(f))
        self.postings = {
            t: (torch.tensor(ix), torch.tensor(fs, dtype=torch.float64)) for t, (ix, fs) in postings.items()
        }
        self.norm = k1 * (1 - b + b * self.lengths / self.avgdl)  # (n_docs,)

    def scores(self, queries: Sequence[str]) -> torch.Tensor:
        """``(n_query, n_docs)`` float64 BM25 scores."""
        out = torch.zeros(len(queries), len(self.tf), dtype=torch.float64)
        for qi, q in enumerate(queries):
            for term, count in Counter(tokenize(q)).items():
                if term not in self.postings:
                    continue
                ix, tf = self.postings[term]
                out[qi].index_add_(0, ix, count * self.idf[term] * tf * (self.k1 + 1) / (tf + self.norm[ix]))
        return out


def bm25_scores(queries: Sequence[str], documents: Sequence[str], k1: float = 1.5, b: float = 0.75) -> torch.Tensor:
    """BM25 scores ``(n_query, n_docs)`` of ``queries`` against ``documents``."""
    return BM25(documents, k1, b).scores(queries)


def lexical_topk(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per query the ``k`` best documents: ``(indices (n_query, k), scores (n_query, k))``,
    best first; documents with score 0 (no shared term) are dropped as index -1."""
    top = scores.topk(min(k, scores.shape[1]), dim=1)
    idx = torch.where(top.values > 0, top.indices, torch.full_like(top.indices, -1))
    return idx, top.values
