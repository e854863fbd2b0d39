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

Names load lazily (PEP 562): ``import valuation.errors`` or the CLI's ``--help`` never imports torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from valuation.lazy import lazy_names

_EXPORTS: dict[str, str] = {
    "BLOCKS": "valuation.config",
    "BM25": "valuation.lexical",
    "ConfigurationError": "valuation.errors",
    "Coverage": "valuation.modules",
    "DataworthError": "valuation.errors",
    "GradientCapture": "valuation.capture",
    "GroupSumAccumulator": "valuation.aggregate",
    "ClassifierLoss": "valuation.loss",
    "ClassifierLogOddsLoss": "valuation.loss",
    "LMLogOddsLoss": "valuation.loss",
    "IGNORE_INDEX": "valuation.loss",
    "LMLoss": "valuation.loss",
    "LoGra": "valuation.logra",
    "LoGraConfig": "valuation.config",
    "MODES": "valuation.config",
    "OptimizerStateError": "valuation.optimizer",
    "Preconditioner": "valuation.fisher",
    "ProjectedFisher": "valuation.fisher",
    "SampledLabelLoss": "valuation.loss",
    "StreamResult": "valuation.scoring",
    "StreamingScorer": "valuation.scoring",
    "WatchedModule": "valuation.modules",
    "bm25_scores": "valuation.lexical",
    "checkpoint_weights": "valuation.combine",
    "combine_checkpoints": "valuation.combine",
    "combine_score_matrices": "valuation.combine",
    "coverage": "valuation.modules",
    "default_device": "valuation.device",
    "default_lm_loss": "valuation.loss",
    "factored_scales": "valuation.optimizer",
    "find_watched_modules": "valuation.modules",
    "group_sums_from_aggregates": "valuation.aggregate",
    "influence_scores": "valuation.scoring",
    "labels_from_batch": "valuation.loss",
    "layout_dim": "valuation.fisher",
    "layout_slices": "valuation.fisher",
    "lm_loss": "valuation.loss",
    "load_hf_optimizer_state": "valuation.optimizer",
    "mixed_fisher": "valuation.fisher",
    "panel_preconditioner": "valuation.fisher",
    "pad_batch": "valuation.batching",
    "positive_sum_bounds": "valuation.aggregate",
    "query_batch": "valuation.batching",
    "score_stream": "valuation.scoring",
    "self_influence": "valuation.scoring",
    "spectral_damping": "valuation.fisher",
    "top_eigenvectors": "valuation.logra",
}
__all__ = [
    "BLOCKS",
    "BM25",
    "IGNORE_INDEX",
    "MODES",
    "ClassifierLogOddsLoss",
    "ClassifierLoss",
    "ConfigurationError",
    "Coverage",
    "DataworthError",
    "GradientCapture",
    "GroupSumAccumulator",
    "LMLogOddsLoss",
    "LMLoss",
    "LoGra",
    "LoGraConfig",
    "OptimizerStateError",
    "Preconditioner",
    "ProjectedFisher",
    "SampledLabelLoss",
    "StreamResult",
    "StreamingScorer",
    "WatchedModule",
    "bm25_scores",
    "checkpoint_weights",
    "combine_checkpoints",
    "combine_score_matrices",
    "coverage",
    "default_device",
    "default_lm_loss",
    "factored_scales",
    "find_watched_modules",
    "group_sums_from_aggregates",
    "influence_scores",
    "labels_from_batch",
    "layout_dim",
    "layout_slices",
    "lm_loss",
    "load_hf_optimizer_state",
    "mixed_fisher",
    "pad_batch",
    "panel_preconditioner",
    "positive_sum_bounds",
    "query_batch",
    "score_stream",
    "self_influence",
    "spectral_damping",
    "top_eigenvectors",
]


__getattr__, __dir__ = lazy_names(__name__, _EXPORTS, globals())

if TYPE_CHECKING:  # static names for type checkers and IDEs
    from valuation.aggregate import GroupSumAccumulator, group_sums_from_aggregates, positive_sum_bounds
    from valuation.batching import pad_batch, query_batch
    from valuation.capture import GradientCapture
    from valuation.combine import checkpoint_weights, combine_checkpoints, combine_score_matrices
    from valuation.config import LoGraConfig
    from valuation.device import default_device
    from valuation.errors import ConfigurationError, DataworthError
    from valuation.fisher import (
        Preconditioner,
        ProjectedFisher,
        layout_dim,
        layout_slices,
        mixed_fisher,
        panel_preconditioner,
        spectral_damping,
    )
    from valuation.lexical import BM25, bm25_scores
    from valuation.logra import LoGra, top_eigenvectors
    from valuation.loss import (
        IGNORE_INDEX,
        ClassifierLogOddsLoss,
        ClassifierLoss,
        LMLogOddsLoss,
        LMLoss,
        SampledLabelLoss,
        default_lm_loss,
        labels_from_batch,
        lm_loss,
    )
    from valuation.modules import BLOCKS, Coverage, WatchedModule, coverage, find_watched_modules
    from valuation.optimizer import OptimizerStateError, factored_scales, load_hf_optimizer_state
    from valuation.scoring import MODES, StreamingScorer, StreamResult, influence_scores, score_stream, self_influence
