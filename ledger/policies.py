"""Crediting policies: how one query's value is split among providers, exactly.

Every policy returns, per query, integer micro-unit amounts per provider that add up exactly to
the query's value (largest-remainder rounding at the ledger's 6-decimal precision):

- ``topk_share`` (default): ``amount_p ∝ Σ_{e ∈ topk(q), provider(e)=p} max(score_e, 0)``.
- ``positive_share``: ``amount_p ∝ Σ_{e ∈ provider p} max(score_e, 0)`` over all its examples.
- ``fallback_pro_rata``: ``amount_p ∝ examples of p in the corpus``; used, and marked as the
  basis, for a query whose attribution is unreliable (no positive score among eligible
  providers) under either policy above.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from fractions import Fraction

from ledger.errors import PolicyInputError
from ledger.units import MICROS

POLICIES = ("topk_share", "positive_share", "fallback_pro_rata")


@dataclass(frozen=True)
class TopKEntry:
    """One training example in a query's top-k (influence) or lexical list.

    ``excerpt``: the document's text (the ledger stores ``excerpt_chars`` of it);
    ``per_checkpoint``: ``{checkpoint_id: that checkpoint's (weighted, normalised) score}``.
    """

    example_id: str
    doc_id: str
    provider_id: str
    score: float
    excerpt: str | None = None
    per_checkpoint: dict[str, float] | None = field(default=None, compare=False, hash=False)


@dataclass
class QueryResult:
    """What valuation produced for one query (scores summed over the run's checkpoints).

    Optional evidence the ledger stores for receipts: ``prompt``/``response`` (bounded excerpts
    are kept), ``lineage``, ``confidence``, and ``by_checkpoint`` = ``{checkpoint_id: {provider:
    that checkpoint's (weighted, normalised) term of provider_scores[provider]}}``.
    """

    query_id: str
    value: Decimal | str | int | float
    topk: list[TopKEntry] = field(default_factory=list)
    provider_scores: dict[str, float] = field(default_factory=dict)  # Σ scores per provider
    provider_positive: dict[str, float] = field(default_factory=dict)  # Σ max(score, 0) per provider
    prompt: str | None = None
    response: str | None = None
    lineage: str | None = None
    confidence: float | None = None
    by_checkpoint: dict[str, dict[str, float]] | None = None


def to_micros(value: Decimal | str | int | float, where: str) -> int:
    """Exact decimal → integer micro-units, rounded half-even at 6 places; refuses NaN, inf, negatives."""
    try:
        dec = Decimal(str(value))
    except InvalidOperation as exc:
        raise PolicyInputError(f"{where}: value {value!r} is not a number") from exc
    if not dec.is_finite() or dec < 0:
        raise PolicyInputError(f"{where}: value must be a finite number >= 0, got {value!r}")
    micros = (dec * MICROS).quantize(Decimal(1), rounding=ROUND_HALF_EVEN)
    return int(micros)


def largest_remainder(total: int, weights: Mapping[str, Fraction | int]) -> dict[str, int]:
    """Split integer ``total`` ∝ ``weights`` (≥ 0, not all 0) so the parts add up exactly.

    Each part gets its floor; the leftover units go to the largest remainders (ties by key).
    """
    keys = sorted(weights)
    wsum = sum(Fraction(weights[k]) for k in keys)
    if wsum <= 0:
        raise PolicyInputError("weights are all zero")
    exact = {k: Fraction(total) * Fraction(weights[k]) / wsum for k in keys}
    parts = {k: math.floor(v) for k, v in exact.items()}
    left = total - sum(parts.values())
    for k in sorted(keys, key=lambda k: (-(exact[k] - parts[k]), k))[:left]:
        parts[k] += 1
    return parts


def _check_scores(q: QueryResult, known: set[str]) -> None:
    for e in q.topk:
        if not math.isfinite(e.score):
            raise PolicyInputError(f"query {q.query_id}: score of {e.example_id} is {e.score}", q.query_id)
        if e.provider_id not in known:
            raise PolicyInputError(
                f"query {q.query_id}: unknown provider {e.provider_id!r} ({e.example_id})", q.query_id
            )
    for table in (q.provider_scores, q.provider_positive):
        for p, s in table.items():
            if not math.isfinite(s):
                raise PolicyInputError(f"query {q.query_id}: score of provider {p!r} is {s}", q.query_id)
            if p not in known:
                raise PolicyInputError(f"query {q.query_id}: unknown provider {p!r}", q.query_id)


def split_query(
    q: QueryResult,
    policy: str,
    eligible: set[str],
    corpus_share: Mapping[str, int],
    known: set[str] | None = None,
) -> tuple[dict[str, int], str]:
    """``({provider: micros}, basis)`` for one query; providers outside ``eligible`` get nothing."""
    if policy not in POLICIES:
        raise PolicyInputError(f"unknown policy {policy!r}; choose one of {POLICIES}")
    _check_scores(q, known if known is not None else set(eligible))
    try:
        total = to_micros(q.value, f"query {q.query_id}")
    except PolicyInputError as exc:
        raise PolicyInputError(str(exc), q.query_id) from exc
    if total == 0:
        return {}, policy
    weights: dict[str, Fraction] = {}
    if policy == "topk_share":
        for e in q.topk:
            if e.provider_id in eligible and e.score > 0:
                weights[e.provider_id] = weights.get(e.provider_id, Fraction(0)) + Fraction(e.score)
    elif policy == "positive_share":
        for p, s in q.provider_positive.items():
            if p in eligible and s > 0:
                weights[p] = Fraction(s)
    basis = policy
    if not weights:
        basis = "fallback_pro_rata"
        weights = {p: Fraction(n) for p, n in corpus_share.items() if p in eligible and n > 0}
        if not weights:
            raise PolicyInputError(f"query {q.query_id}: no eligible provider to credit", q.query_id)
    return largest_remainder(total, weights), basis


def split_run(
    queries: Sequence[QueryResult],
    policy: str,
    eligible: set[str],
    corpus_share: Mapping[str, int],
    known: set[str],
) -> list[tuple[str, dict[str, int], str]]:
    """``[(query_id, {provider: micros}, basis)]``; validates every query before returning."""
    return [(q.query_id, *split_query(q, policy, eligible, corpus_share, known)) for q in queries]


def split_by_checkpoint(
    amount: int,
    provider: str,
    by_checkpoint: Mapping[str, Mapping[str, float]] | None,
    weights: Mapping[str, float],
) -> tuple[dict[str, int], str]:
    """Split one entry's ``amount`` (micro-units, any sign) across the run's checkpoints, exactly.

    ``measured``: ``part_c ∝ max(by_checkpoint[c][provider], 0)``, each checkpoint's own positive
    (weighted, normalised) contribution to the provider's score for this query.
    ``weight_share``: ``part_c ∝ weights[c]`` when nothing was measured or no contribution is > 0.
    """
    measured = (
        {c: Fraction(max(by_checkpoint.get(c, {}).get(provider, 0.0), 0.0)) for c in weights} if by_checkpoint else {}
    )
    if measured and sum(measured.values()) > 0:
        share, basis = measured, "measured"
    else:
        share, basis = {c: Fraction(w) for c, w in weights.items()}, "weight_share"
    sign = -1 if amount < 0 else 1
    return {c: sign * m for c, m in largest_remainder(abs(amount), share).items()}, basis
