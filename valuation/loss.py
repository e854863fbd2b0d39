"""Loss conventions (DESIGN §4): summed token cross-entropy with shifted labels."""

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


def default_lm_loss(model: nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """The loss of an LM dict batch (``input_ids``, ``attention_mask``, ``labels``)."""
    out = model(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask"))
    logits = out.logits if hasattr(out, "logits") else out[0]
    return lm_loss(logits, labels_from_batch(batch).to(logits.device))
