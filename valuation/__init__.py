"""dataworth valuation: LoGra influence functions in pure PyTorch (no I/O, no Prefect).

>>> from valuation import LoGra, LoGraConfig, ProjectedFisher, lm_loss
>>> logra = LoGra(model, LoGraConfig(k_in=64, k_out=64, init="pca", include=("mlp", "attn")))
>>> logra.fit(batches)                       # KFAC covariances, PCA projections
>>> with logra.capture() as cap:
...     lm_loss(model(input_ids=ids, attention_mask=mask).logits, labels).backward()
>>> g = cap.gradients                         # (batch, Σ k_out·k_in)
>>> fisher = ProjectedFisher(logra.layout); fisher.update(g)
>>> pre = fisher.preconditioner(damping_ratio=0.1)
>>> scores = influence_scores(pre(q), g)      # (n_query, n_train), positive = helpful
"""

from valuation.aggregate import GroupSumAccumulator, group_sums_from_aggregates, positive_sum_bounds
from valuation.batching import pad_batch, query_batch
from valuation.capture import GradientCapture
from valuation.config import LoGraConfig, ScoreConfig
from valuation.device import default_device
from valuation.fisher import Preconditioner, ProjectedFisher, layout_dim, layout_slices
from valuation.logra import LoGra, top_eigenvectors
from valuation.loss import IGNORE_INDEX, default_lm_loss, labels_from_batch, lm_loss
from valuation.modules import WatchedModule, find_watched_modules
from valuation.scoring import (
    MODES,
    StreamingScorer,
    StreamResult,
    influence_scores,
    score_stream,
    self_influence,
)

__all__ = [
    "IGNORE_INDEX",
    "MODES",
    "GradientCapture",
    "GroupSumAccumulator",
    "LoGra",
    "LoGraConfig",
    "Preconditioner",
    "ProjectedFisher",
    "ScoreConfig",
    "StreamResult",
    "StreamingScorer",
    "WatchedModule",
    "default_device",
    "default_lm_loss",
    "find_watched_modules",
    "group_sums_from_aggregates",
    "influence_scores",
    "labels_from_batch",
    "layout_dim",
    "layout_slices",
    "lm_loss",
    "pad_batch",
    "positive_sum_bounds",
    "query_batch",
    "score_stream",
    "self_influence",
    "top_eigenvectors",
]
