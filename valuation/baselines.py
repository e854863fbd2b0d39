"""Baseline valuation methods, each giving ``(n_query, n_train)`` scores (positive = helpful)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import torch


def grad_dot(q: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Gradient dot product (TracIn at one checkpoint): ``q @ gᵀ``."""
    return q.double() @ g.double().T


def grad_cosine(q: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Cosine of the raw gradients."""
    qn = q.double() / q.double().norm(dim=1, keepdim=True).clamp_min(1e-30)
    gn = g.double() / g.double().norm(dim=1, keepdim=True).clamp_min(1e-30)
    return qn @ gn.T


def exact_influence(
    q: torch.Tensor, g: torch.Tensor, damping_ratio: float = 0.1, layout: Sequence | None = None
) -> torch.Tensor:
    """``q (H + λI)^-1 gᵀ`` with the damped empirical Fisher ``H = gᵀg / N`` of raw gradients and
    ``λ = damping_ratio × mean eigenvalue of H``; with ``layout`` (``[(name, n_out, n_in)]``) the
    Fisher is block-diagonal per layer (LoGra's structure with identity projections), else full.

    Exact through Woodbury with an ``N × N`` solve, so it needs no ``D × D`` matrix:
    ``(H + λI)^-1 v = (v - gᵀ (NλI + g gᵀ)^-1 g v) / λ``.
    """
    if layout is not None:
        out, start = 0, 0
        for _, k_out, k_in in layout:
            sl = slice(start, start + k_out * k_in)
            out = out + exact_influence(q[:, sl], g[:, sl], damping_ratio)
            start = sl.stop
        return out
    g, q = g.double(), q.double()
    n, d = g.shape
    lam = damping_ratio * float(g.square().sum()) / (n * d)
    kernel = g @ g.T + n * lam * torch.eye(n, dtype=torch.float64)
    solved = torch.linalg.solve(kernel, g @ q.T)  # (n, n_query)
    pre_q = (q - (g.T @ solved).T) / lam
    return pre_q @ g.T


def representation_similarity(q_features: torch.Tensor, t_features: torch.Tensor, center: bool = True) -> torch.Tensor:
    """Cosine of hidden representations ``(n_query, d)`` and ``(n_train, d)`` (e.g. the last
    hidden state). ``center`` subtracts the train mean first: hidden states share a large common
    direction, which otherwise makes every cosine close to 1."""
    if center:
        mean = t_features.double().mean(0, keepdim=True)
        q_features, t_features = q_features.double() - mean, t_features.double() - mean
    return grad_cosine(q_features, t_features)


def _ngrams(text: str, lo: int, hi: int) -> Counter:
    text = f" {text.lower()} "
    return Counter(text[i : i + n] for n in range(lo, hi + 1) for i in range(len(text) - n + 1))


def tfidf_similarity(queries: Sequence[str], train: Sequence[str], n: tuple[int, int] = (3, 5)) -> torch.Tensor:
    """Character n-gram TF-IDF cosine similarity (the lexical baseline for text)."""
    train_grams = [_ngrams(t, *n) for t in train]
    df: Counter = Counter()
    for grams in train_grams:
        df.update(grams.keys())
    idf = {k: math.log((1 + len(train)) / (1 + v)) + 1 for k, v in df.items()}

    def vec(grams: Counter) -> dict:
        v = {k: c * idf.get(k, 0.0) for k, c in grams.items() if k in idf}
        norm = math.sqrt(sum(x * x for x in v.values())) or 1.0
        return {k: x / norm for k, x in v.items()}

    tv = [vec(g) for g in train_grams]
    out = torch.zeros(len(queries), len(train), dtype=torch.float64)
    for qi, text in enumerate(queries):
        qv = vec(_ngrams(text, *n))
        for ti, t in enumerate(tv):
            small, big = (qv, t) if len(qv) < len(t) else (t, qv)
            out[qi, ti] = sum(x * big.get(k, 0.0) for k, x in small.items())
    return out
