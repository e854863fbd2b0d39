"""Influence scores: dense, and streamed over train-vector chunks with bounded memory.

Sign convention: a positive score means the train example helps the query (lowers its loss).
``IF(te, tr) = Σ_l g_te,lᵀ (H_l + λ_l I)^-1 g_tr,l``; callers precondition the query vectors once
(:class:`~valuation.fisher.Preconditioner`) and score them against raw train vectors.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import torch

from valuation.config import MODES
from valuation.fisher import Preconditioner

Mode = Literal["if", "relatif", "cosine"]
_EPS = 1e-30


def self_influence(g: torch.Tensor, pre: Preconditioner, chunk_size: int = 4096) -> torch.Tensor:
    """``g_nᵀ (H + λI)^-1 g_n`` per row of ``g`` ``(n, dim)`` → ``(n,)``, chunked."""
    out = torch.empty(g.shape[0], dtype=g.dtype, device=g.device)
    for start in range(0, g.shape[0], chunk_size):
        block = g[start : start + chunk_size]
        out[start : start + chunk_size] = (pre(block) * block).sum(1)
    return out


def _normalise(
    scores: torch.Tensor,
    mode: str,
    train_self: torch.Tensor | None,
    query_self: torch.Tensor | None,
) -> torch.Tensor:
    if mode == "if":
        return scores
    if train_self is None:
        raise ValueError(f"mode {mode!r} needs the train examples' self-influence")
    scores = scores / train_self.to(scores).clamp_min(_EPS).sqrt()[None, :]
    if mode == "relatif":
        return scores
    if mode == "cosine":
        if query_self is None:
            raise ValueError("mode 'cosine' needs the queries' self-influence")
        return scores / query_self.to(scores).clamp_min(_EPS).sqrt()[:, None]
    raise ValueError(f"mode must be one of {MODES}, got {mode!r}")


def influence_scores(
    queries_pre: torch.Tensor,
    train: torch.Tensor,
    mode: Mode = "if",
    train_self: torch.Tensor | None = None,
    query_self: torch.Tensor | None = None,
) -> torch.Tensor:
    """Dense scores ``(n_query, n_train)`` from preconditioned queries ``(n_query, dim)``.

    ``relatif`` divides by ``sqrt(train_self)``; ``cosine`` also by ``sqrt(query_self)`` (both
    self-influences in the same preconditioned metric).
    """
    scores = queries_pre @ train.to(queries_pre).T
    return _normalise(scores, mode, train_self, query_self)


@dataclass
class StreamResult:
    """What one streamed pass over the train vectors leaves per query.

    Attributes:
        topk_scores: ``(n_query, k)`` descending; ``-inf`` where fewer than k rows were seen.
        topk_indices: ``(n_query, k)`` int64 row indices in stream order (``-1`` padding).
        group_sums: ``(n_query, n_groups)`` float64 sum of scores per group.
        group_positive_sums: ``(n_query, n_groups)`` float64 sum of positive scores per group.
        rows_seen: number of train rows streamed.
    """

    topk_scores: torch.Tensor
    topk_indices: torch.Tensor
    group_sums: torch.Tensor
    group_positive_sums: torch.Tensor
    rows_seen: int


class StreamingScorer:
    """Scores preconditioned queries against train chunks; memory is independent of ``n_train``.

    Per chunk the ``(n_query, chunk)`` block is reduced at once into a running top-k and float64
    per-group sums (``index_add_``); no ``n_query × n_train`` matrix is ever held.
    """

    def __init__(
        self,
        queries_pre: torch.Tensor,
        topk: int = 10,
        num_groups: int = 0,
        mode: Mode = "if",
        query_self: torch.Tensor | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if mode == "cosine" and query_self is None:
            raise ValueError("mode 'cosine' needs query_self")
        self.queries = queries_pre
        self.mode = mode
        self.query_self = query_self
        self.k = topk
        n_query, device = queries_pre.shape[0], queries_pre.device
        self._top_scores = torch.full((n_query, 0), float("-inf"), dtype=queries_pre.dtype, device=device)
        self._top_index = torch.zeros((n_query, 0), dtype=torch.int64, device=device)
        self._sums = torch.zeros(n_query, num_groups, dtype=torch.float64, device=device)
        self._pos_sums = torch.zeros(n_query, num_groups, dtype=torch.float64, device=device)
        self.rows_seen = 0

    def update(
        self,
        train_chunk: torch.Tensor,
        groups: torch.Tensor | None = None,
        train_self: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Fold in train vectors ``(chunk, dim)`` with their group codes ``(chunk,)``.

        Returns the chunk's ``(n_query, chunk)`` scores (callers may ignore them).
        """
        device = self.queries.device
        chunk = train_chunk.to(device=device, dtype=self.queries.dtype, non_blocking=True)
        with torch.autocast(device_type=device.type, enabled=False):
            scores = influence_scores(
                self.queries,
                chunk,
                self.mode,
                None if train_self is None else train_self.to(device),
                self.query_self,
            )
        n = chunk.shape[0]
        index = torch.arange(self.rows_seen, self.rows_seen + n, device=device)
        all_scores = torch.cat([self._top_scores, scores], 1)
        all_index = torch.cat([self._top_index, index.expand(scores.shape[0], n)], 1)
        keep = min(self.k, all_scores.shape[1])
        top, pos = all_scores.topk(keep, dim=1)
        self._top_scores, self._top_index = top, all_index.gather(1, pos)
        if groups is not None and self._sums.shape[1]:
            codes = groups.to(device=device, dtype=torch.int64)
            wide = scores.double()
            self._sums.index_add_(1, codes, wide)
            self._pos_sums.index_add_(1, codes, wide.clamp_min(0.0))
        self.rows_seen += n
        return scores

    def result(self) -> StreamResult:
        scores, index = self._top_scores, self._top_index
        missing = self.k - scores.shape[1]
        if missing > 0:
            scores = torch.cat([scores, scores.new_full((scores.shape[0], missing), float("-inf"))], 1)
            index = torch.cat([index, index.new_full((index.shape[0], missing), -1)], 1)
        return StreamResult(scores, index, self._sums, self._pos_sums, self.rows_seen)


def score_stream(
    queries_pre: torch.Tensor,
    chunks: Iterable[tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]],
    topk: int = 10,
    num_groups: int = 0,
    mode: Mode = "if",
    query_self: torch.Tensor | None = None,
) -> StreamResult:
    """One pass over ``chunks`` of ``(train vectors, group codes, train self-influence)``."""
    scorer = StreamingScorer(queries_pre, topk, num_groups, mode, query_self)
    for chunk, groups, train_self in chunks:
        scorer.update(chunk, groups, train_self)
    return scorer.result()
