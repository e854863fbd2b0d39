"""What one valuation produced, as a file: per checkpoint, the per-provider sums and top-k of every
query (the posting step reads it back; the ledger keeps the evidence)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

TopK = list[tuple[str, str, str, float]]  # (example_id, doc_id, provider_id, score)


@dataclass
class CheckpointScores:
    """One checkpoint's pass over all train vectors for the query batch."""

    checkpoint_id: str
    table: str
    version: int  # gradient table version read (tagged: it survives optimize)
    group_sums: torch.Tensor  # (n_query, n_providers) float64
    group_positive: torch.Tensor  # (n_query, n_providers) float64, sums of max(score, 0)
    topk: list[TopK]  # per query
    examples: int = 0  # train vectors scored
    tag: str | None = None
    topk_method: str = "exact"
    # Per query mean |score| when it was not summed from every score (the aggregate path estimates
    # it from a sample of rows; ``normaliser`` says how), else None.
    mean_abs_scores: list[float] | None = None
    normaliser: str = "exact"

    def mean_abs(self, query: int) -> float:
        """Mean |score| of ``query`` over the train examples (1.0 when undefined)."""
        from valuation.combine import mean_abs_from_sums

        if self.mean_abs_scores is not None:
            return float(self.mean_abs_scores[query])
        return float(
            mean_abs_from_sums(
                self.group_sums[query : query + 1], self.group_positive[query : query + 1], self.examples
            )[0]
        )


@dataclass
class Valuation:
    """The pending queries of one lineage scored against its checkpoint set."""

    lineage: str
    query_ids: list[str]
    values: list[str]
    providers: list[str]  # index = provider code
    scoring: dict = field(default_factory=dict)  # every setting that shaped the numbers
    per_checkpoint: list[CheckpointScores] = field(default_factory=list)
    corpus_share: dict[str, int] = field(default_factory=dict)  # examples per provider, pinned version
    corpus_version: int = 0  # the newest pinned version among the checkpoints (pro-rata, lexical evidence)
    weights: dict[str, float] = field(default_factory=dict)  # per checkpoint id (flows.valuate.set_weights)
    weights_basis: str = "uniform"  # explicit, lr or uniform
    optimizer_scaling: dict[str, bool] = field(default_factory=dict)  # per checkpoint id
    confidence: dict[str, float] = field(default_factory=dict)  # per query id (flows.confidence)
    confidence_details: dict = field(default_factory=dict)  # how the confidence figures were made

    def save(self, path: Path) -> Path:
        blob = {
            "lineage": self.lineage,
            "query_ids": self.query_ids,
            "values": self.values,
            "providers": self.providers,
            "scoring": self.scoring,
            "corpus_share": self.corpus_share,
            "corpus_version": self.corpus_version,
            "weights": self.weights,
            "weights_basis": self.weights_basis,
            "optimizer_scaling": self.optimizer_scaling,
            "confidence": self.confidence,
            "confidence_details": self.confidence_details,
            "per_checkpoint": [
                {
                    "checkpoint_id": cs.checkpoint_id,
                    "table": cs.table,
                    "version": cs.version,
                    "group_sums": cs.group_sums.tolist(),
                    "group_positive": cs.group_positive.tolist(),
                    "topk": cs.topk,
                    "examples": cs.examples,
                    "tag": cs.tag,
                    "topk_method": cs.topk_method,
                    "mean_abs_scores": cs.mean_abs_scores,
                    "normaliser": cs.normaliser,
                }
                for cs in self.per_checkpoint
            ],
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(blob))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: Path) -> Valuation:
        import torch

        blob = json.loads(Path(path).read_text())
        per = [
            CheckpointScores(
                c["checkpoint_id"],
                c["table"],
                c["version"],
                torch.tensor(c["group_sums"], dtype=torch.float64),
                torch.tensor(c["group_positive"], dtype=torch.float64),
                [[tuple(t) for t in q] for q in c["topk"]],
                c.get("examples", 0),
                c.get("tag"),
                c.get("topk_method", "exact"),
                c.get("mean_abs_scores"),
                c.get("normaliser", "exact"),
            )
            for c in blob["per_checkpoint"]
        ]
        return cls(
            blob.get("lineage", "default"),
            blob["query_ids"],
            blob["values"],
            blob["providers"],
            blob.get("scoring", {}),
            per,
            blob.get("corpus_share", {}),
            blob.get("corpus_version", 0),
            blob.get("weights", {}),
            blob.get("weights_basis", "uniform"),
            blob.get("optimizer_scaling", {}),
            blob.get("confidence", {}),
            blob.get("confidence_details", {}),
        )

    def combined(self, weights: dict[str, float] | None = None, normalise: bool = False):
        """Per-query :class:`ledger.QueryResult` of the set (:func:`valuation.combine.combine_checkpoints`)."""
        import torch

        from ledger import QueryResult, TopKEntry
        from valuation.combine import combine_checkpoints

        weights = weights or {}
        if not self.per_checkpoint:
            return []
        sums, positive, topk = combine_checkpoints(
            [cs.group_sums for cs in self.per_checkpoint],
            [cs.group_positive for cs in self.per_checkpoint],
            [cs.topk for cs in self.per_checkpoint],
            [cs.examples for cs in self.per_checkpoint],
            [weights.get(cs.checkpoint_id, 1.0) for cs in self.per_checkpoint],
            normalise,
            [
                None if cs.mean_abs_scores is None else torch.tensor(cs.mean_abs_scores, dtype=torch.float64)
                for cs in self.per_checkpoint
            ],
        )
        # Σ max(s, 0) is unknown on the aggregate path (NaN): such a run records no positive sums.
        exact_positive = not bool(positive.isnan().any())
        return [
            QueryResult(
                qid,
                self.values[qi],
                [TopKEntry(ex, d, p, s) for ex, d, p, s in topk[qi]],
                {p: float(sums[qi, code]) for code, p in enumerate(self.providers)},
                {p: float(positive[qi, code]) for code, p in enumerate(self.providers)} if exact_positive else {},
            )
            for qi, qid in enumerate(self.query_ids)
        ]
