"""Loss conventions (docs/ARCHITECTURE.md, "Conventions"): summed token cross-entropy with shifted labels."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

IGNORE_INDEX = -100


def lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Summed next-token cross-entropy.

    Args:
        logits: ``(batch, tokens, vocab)``.
        labels: ``(batch, tokens)``; position ``t`` is predicted from logits at ``t-1``;
            ``-100`` is ignored (padding, prompt tokens of a query).

    Returns:
        A scalar: the **sum** over all counted tokens of all sequences, so that the gradient of
        each sequence is its own, whatever the batch size.
    """
    shifted_logits = logits[:, :-1, :]
    shifted_labels = labels[:, 1:]
    if shifted_logits.dtype in (torch.float16, torch.bfloat16):
        # Rounding the log-softmax in half precision costs accuracy: upcast (float64 stays).
        shifted_logits = shifted_logits.float()
    return F.cross_entropy(
        shifted_logits.reshape(-1, shifted_logits.shape[-1]),
        shifted_labels.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="sum",
    )


def labels_from_batch(batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """``batch["labels"]`` or, if absent, ``input_ids`` with padding set to -100."""
    if "labels" in batch:
        return batch["labels"]
    labels = batch["input_ids"].clone()
    if "attention_mask" in batch:
        labels[batch["attention_mask"] == 0] = IGNORE_INDEX
    return labels


def lm_logits(model: nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """``(batch, tokens, vocab)`` logits of an LM dict batch."""
    kwargs = {}
    if getattr(getattr(model, "config", None), "use_cache", False):
        kwargs["use_cache"] = False  # a key/value cache serves generation only: ~2% of a pass here
    out = model(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask"), **kwargs)
    return out.logits if hasattr(out, "logits") else out[0]


def default_lm_loss(model: nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """The loss of an LM dict batch (``input_ids``, ``attention_mask``, ``labels``)."""
    logits = lm_logits(model, batch)
    return lm_loss(logits, labels_from_batch(batch).to(logits.device))


def sample_lm_labels(logits: torch.Tensor, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Labels drawn from the model's predictive distribution at every counted position.

    ``logits`` ``(batch, tokens, vocab)``, ``labels`` ``(batch, tokens)`` (``-100`` ignored);
    position ``t`` is drawn from ``softmax(logits[:, t-1])`` (the shift of :func:`lm_loss`). Drawn on
    the CPU with ``generator`` so that a seed gives the same labels on every device.
    """
    out = labels.clone()
    counted = labels[:, 1:] != IGNORE_INDEX
    probs = torch.softmax(logits[:, :-1].detach().double(), -1)[counted].cpu()
    if probs.shape[0]:
        drawn = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        out[:, 1:][counted] = drawn.to(labels.device)
    return out


class SampledLabelLoss:
    """A ``loss_fn(model, batch)`` whose labels are sampled from the model itself (seeded).

    Gradients of this loss give the *true* Fisher ``E_{y~p(y|x)}[g gᵀ]`` (for softmax outputs the
    Gauss-Newton matrix) in expectation, where the labels of the data give the empirical Fisher.
    Use it for :meth:`LoGra.fit` (KFAC covariances) and for the gradients fed to
    :class:`ProjectedFisher`; the train vectors that are *scored* keep the data's labels.
    Batches: LM dicts (``kind="lm"``) or ``(x, y)`` pairs of a classifier (``kind="classifier"``).
    Each call draws new labels from one generator, so a run is reproducible from ``seed``.
    """

    def __init__(self, seed: int = 0, kind: str = "lm") -> None:
        if kind not in ("lm", "classifier"):
            raise ValueError(f"kind must be 'lm' or 'classifier', got {kind!r}")
        self.kind = kind
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, model: nn.Module, batch) -> torch.Tensor:
        if self.kind == "classifier":
            x, _ = batch
            logits = model(x)
            probs = torch.softmax(logits.detach().double(), -1).cpu()
            y = torch.multinomial(probs, 1, generator=self.generator).squeeze(1).to(logits.device)
            return F.cross_entropy(logits, y, reduction="sum")
        logits = lm_logits(model, batch)
        labels = labels_from_batch(batch).to(logits.device)
        return lm_loss(logits, sample_lm_labels(logits, labels, self.generator))
