"""One read of a gradient table serves every pending query batch (of every lineage that uses it).

A full scan is IO-bound by a wide margin (benchmarks/SCALE.md: compute catches up with a 1.25 GB/s
read only at ~12,500 queries), so the batches waiting for a table are scored in the same pass:
batches that share a mode and top-k are stacked into one matmul per chunk, and the self-influence
of each chunk is looked up once for all normalised batches.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pyarrow as pa
import torch

from storage.gradients import GradientTable
from valuation.scoring import MODES, StreamingScorer, StreamResult


@dataclass
class QueryBatch:
    """One batch to score: preconditioned queries ``(n, dim)``; ``query_self`` ``(n,)`` for cosine."""

    queries_pre: torch.Tensor
    mode: str = "if"
    topk: int = 10
    num_groups: int = 0
    query_self: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.mode == "cosine" and self.query_self is None:
            raise ValueError("a cosine batch needs query_self")


@dataclass
class TableScan:
    """Per batch (input order) a :class:`StreamResult`; ``rows`` maps stream row indices of the
    top-k to ``(example_id, doc_id, provider_id)``; ``version`` is the table version read."""

    results: list[StreamResult]
    version: int
    rows_seen: int
    _pieces: list[tuple[int, pa.Table]]

    def rows(self, indices: Sequence[int]) -> list[tuple[str, str, str]]:
        starts = [s for s, _ in self._pieces]
        out = []
        for i in indices:
            start, columns = self._pieces[bisect.bisect_right(starts, int(i)) - 1]
            r = columns.slice(int(i) - start, 1).to_pylist()[0]
            out.append((r["example_id"], r["doc_id"], r["provider_id"]))
        return out


def score_table(
    table: GradientTable,
    batches: Sequence[QueryBatch],
    version: int | None = None,
    chunk_rows: int = 8192,
    device: torch.device | str | None = None,
    progress: Callable[[int], None] | None = None,
) -> TableScan:
    """Score every batch against every committed row of ``table`` in a single read."""
    if not batches:
        raise ValueError("score_table needs at least one query batch")
    version = table.version if version is None else int(version)
    groups: dict[tuple[str, int], list[int]] = {}
    for i, b in enumerate(batches):
        groups.setdefault((b.mode, b.topk), []).append(i)
    scorers = []
    for (mode, topk), members in groups.items():
        q = torch.cat([batches[i].queries_pre for i in members])
        query_self = torch.cat([batches[i].query_self for i in members]) if mode == "cosine" else None
        num_groups = max(batches[i].num_groups for i in members)
        scorers.append((members, StreamingScorer(q, topk, num_groups, mode, query_self)))
    need_self = any(b.mode != "if" for b in batches)
    self_by_shard: dict[int, dict[str, float]] = {}
    pieces: list[tuple[int, pa.Table]] = []
    seen = 0
    for chunk in table.read(chunk_rows=chunk_rows, version=version, device=device):
        train_self = None
        if need_self:
            shard_of = chunk.shards.tolist()
            for s in set(shard_of) - set(self_by_shard):
                self_by_shard[s] = table.self_influence(s)
            train_self = torch.tensor(
                [self_by_shard[sh][e] for sh, e in zip(shard_of, chunk.example_ids, strict=True)], dtype=torch.float64
            )
        pieces.append((seen, chunk.columns))
        for _, scorer in scorers:
            scorer.update(chunk.vectors, chunk.provider_codes, train_self)
        seen += len(chunk)
        if progress is not None:
            progress(len(chunk))
    results: list[StreamResult | None] = [None] * len(batches)
    for members, scorer in scorers:
        res = scorer.result()
        start = 0
        for i in members:
            n = batches[i].queries_pre.shape[0]
            sl = slice(start, start + n)
            results[i] = StreamResult(
                res.topk_scores[sl],
                res.topk_indices[sl],
                res.group_sums[sl, : batches[i].num_groups],
                res.group_positive_sums[sl, : batches[i].num_groups],
                res.rows_seen,
            )
            start += n
    return TableScan(results, version, seen, pieces)
