"""Loss conventions (docs/ARCHITECTURE.md, "Conventions"): summed token cross-entropy with shifted labels."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from valuation.errors import ConfigurationError

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


def check_temperature(temperature: float) -> float:
    """``temperature`` as a float, refused unless finite and positive."""
    try:
        t = float(temperature)
    except (TypeError, ValueError):
        t = math.nan
    if not math.isfinite(t) or t <= 0:
        raise ConfigurationError(f"temperature must be a finite number > 0, got {temperature!r}")
    return t


class LMLoss:
    """A ``loss_fn(model, batch)``: summed next-token cross-entropy of ``softmax(logits / T)``.

    ``T = 1`` is :func:`default_lm_loss`. With ``T > 1`` the gradient of a token the model has
    memorised no longer vanishes: per token it is ``(softmax(z/T) − e_y) / T`` pulled back through
    the model, where ``T = 1`` gives ``p − e_y ≈ 0`` once ``p_y ≈ 1``; as ``T → ∞``, ``T`` times it
    tends to minus the gradient of the centred logit ``z_y − mean(z)``. Influence from a late, memorised
    checkpoint is dominated by the few tokens still wrong at ``T = 1`` (benchmarks/ACCURACY.md,
    "Loss temperature").
    """

    def __init__(self, temperature: float = 1.0) -> None:
        self.temperature = check_temperature(temperature)

    def __call__(self, model: nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        logits = lm_logits(model, batch)
        if self.temperature != 1.0:
            logits = logits / self.temperature
        return lm_loss(logits, labels_from_batch(batch).to(logits.device))

    def __repr__(self) -> str:
        return f"LMLoss(temperature={self.temperature:g})"


class ClassifierLoss:
    """A ``loss_fn(model, (x, y))``: summed cross-entropy of ``softmax(model(x) / T)``."""

    def __init__(self, temperature: float = 1.0) -> None:
        self.temperature = check_temperature(temperature)

    def __call__(self, model: nn.Module, batch) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(model(x) / self.temperature, y, reduction="sum")


def log_odds_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Summed minus log-odds of the label, ``-(z_y - logsumexp_{v != y} z_v) = -log(p_y / (1 - p_y))``.

    ``logits`` ``(n, classes)``, ``labels`` ``(n,)`` (``-100`` ignored). Per row its gradient in
    the logits is ``(p - e_y) / (1 - p_y)``: the cross-entropy's where the model is unsure
    (``p_y`` small) and, unlike it, of size ≈ 1 where the model is sure (``p_y → 1``), so a memorised
    example keeps a gradient without softening the others (TRAK's model output function).
    """
    counted = labels != IGNORE_INDEX
    z = logits[counted]
    if z.dtype in (torch.float16, torch.bfloat16):
        z = z.float()
    y = labels[counted].unsqueeze(1)
    others = torch.logsumexp(z.scatter(1, y, float("-inf")), dim=1)
    return (others - z.gather(1, y).squeeze(1)).sum()


class LMLogOddsLoss:
    """A ``loss_fn(model, batch)``: :func:`log_odds_loss` of every counted next token, summed.

    The alternative to :class:`LMLoss`'s temperature for memorised checkpoints: per token the
    gradient is ``(p − e_y) / (1 − p_y)``, equal to the cross-entropy's for tokens the model gets
    wrong and not vanishing for tokens it predicts with ``p_y ≈ 1`` (benchmarks/ACCURACY.md,
    "Log-odds gradients").
    """

    def __call__(self, model: nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        logits = lm_logits(model, batch)
        labels = labels_from_batch(batch).to(logits.device)
        shifted = logits[:, :-1, :]
        return log_odds_loss(shifted.reshape(-1, shifted.shape[-1]), labels[:, 1:].reshape(-1))

    def __repr__(self) -> str:
        return "LMLogOddsLoss()"


class ClassifierLogOddsLoss:
    """A ``loss_fn(model, (x, y))``: :func:`log_odds_loss` of ``model(x)``, summed."""

    def __call__(self, model: nn.Module, batch) -> torch.Tensor:
        x, y = batch
        return log_odds_loss(model(x), y)


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

    def __init__(self, seed: int = 0, kind: str = "lm", temperature: float = 1.0) -> None:
        if kind not in ("lm", "classifier"):
            raise ValueError(f"kind must be 'lm' or 'classifier', got {kind!r}")
        self.kind = kind
        self.temperature = check_temperature(temperature)
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, model: nn.Module, batch) -> torch.Tensor:
        # With a temperature the model is softmax(z / T): labels are drawn from it, and scored by it.
        if self.kind == "classifier":
            x, _ = batch
            logits = model(x) / self.temperature
            probs = torch.softmax(logits.detach().double(), -1).cpu()
            y = torch.multinomial(probs, 1, generator=self.generator).squeeze(1).to(logits.device)
            return F.cross_entropy(logits, y, reduction="sum")
        logits = lm_logits(model, batch)
        if self.temperature != 1.0:
            logits = logits / self.temperature
        labels = labels_from_batch(batch).to(logits.device)
        return lm_loss(logits, sample_lm_labels(logits, labels, self.generator))
